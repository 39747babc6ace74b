"""Loading named systems, building user systems, and the errors bad input must give."""


import numpy as np
import pytest
from ase.build import bulk

import freeflow
from freeflow import (
    FreeflowCalculator,
    LennardJones,
    build_lattice,
    load_system,
    named_systems,
    system_from_atoms,
)

REQUIRED = ["lj_32", "lj_108", "lj_256", "lj_500", "mw_cubic_8", "mw_cubic_64", "mw_cubic_216",
            "mw_cubic_512", "mw_hex_64", "mw_hex_216", "mw_hex_512"]


def test_named_systems_carry_their_definition():
    assert set(REQUIRED) <= set(named_systems())
    for name in REQUIRED:
        system = load_system(name)
        expected_n = int(name.rsplit("_", 1)[1])
        assert system.num_particles == expected_n == len(system.lattice)
        box = system.box
        assert np.allclose(system.atoms.cell, np.diag(box))
        assert system.atoms.pbc.all()
        assert np.allclose(system.lattice[0], 0.0)
        if name.startswith("lj"):
            assert system.beta == pytest.approx(0.5)
            assert system.number_density == pytest.approx(1.28)
            assert box[0] == box[1] == box[2]
        else:
            assert system.beta == pytest.approx(2.51610, abs=1e-5)
            assert system.number_density == pytest.approx(0.033567184)
            assert system.units.reference_length == pytest.approx(2.3925)
        if name.startswith("mw_hex"):
            assert box[1] / box[0] == pytest.approx(np.sqrt(3))
            assert box[2] / box[0] == pytest.approx(np.sqrt(8 / 3))


def test_lattice_coordination():
    from ase.neighborlist import neighbor_list
    for kind, n, density, z in [("fcc", 108, 1.28, 12), ("diamond", 64, 0.033567184, 4),
                                ("hexagonal_ice", 64, 0.033567184, 4)]:
        atoms = build_lattice(kind, n, density)
        system = system_from_atoms(atoms, LennardJones(), 1.0)
        i = neighbor_list("i", atoms, 1.05 * system.nearest_neighbour_distance)
        assert np.all(np.bincount(i, minlength=n) == z)


def test_user_crystal_from_atoms_and_file(tmp_path):
    atoms = bulk("Ar", "fcc", a=(4 / 1.28) ** (1 / 3), cubic=True).repeat(3)
    atoms.translate([0.3, 0.2, 0.1])
    system = system_from_atoms(atoms, LennardJones(), temperature=2.0, name="mine")
    assert system.num_particles == 108 and system.beta == 0.5
    assert np.allclose(system.lattice[0], 0.0)
    assert system.lattice_energy() == pytest.approx(load_system("lj_108").lattice_energy(),
                                                    rel=1e-6)
    path = tmp_path / "crystal.extxyz"
    atoms.write(path)
    from_file = system_from_atoms(path, LennardJones(), temperature=2.0)
    assert from_file.name == "crystal" and from_file.num_particles == 108


def test_ase_optimiser_runs_on_freeflow_calculator():
    from ase.optimize import BFGS
    system = load_system("mw_cubic_8")
    atoms = system.atoms.copy()
    atoms.positions += np.random.default_rng(0).normal(scale=0.1, size=atoms.positions.shape)
    atoms.calc = FreeflowCalculator(system)
    start = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=1e-2, steps=200)
    assert atoms.get_potential_energy() < start
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(
        system.lattice_energy() / 8, abs=1e-3)


@pytest.mark.parametrize("bad, message", [
    (lambda: system_from_atoms(bulk("Ar", "fcc", a=1.5), LennardJones(), 2.0), "orthorhombic"),
    (lambda: build_lattice("fcc", 100, 1.28), "cannot hold N = 100"),
    (lambda: build_lattice("diamond", 64, -0.03), "density must be positive"),
    (lambda: system_from_atoms(build_lattice("fcc", 32, 1.28), LennardJones(), -1.0),
     "temperature must be positive"),
    (lambda: load_system("lj_33"), "unknown system 'lj_33'"),
    (lambda: build_lattice("sc", 16, 1.0),
     "unknown lattice 'sc'; known lattices: .'bcc', 'diamond', 'fcc', 'hcp'"),
    (lambda: system_from_atoms("/no/such/file.xyz", LennardJones(), 1.0), "does not exist"),
])
def test_bad_input_gives_clear_errors(bad, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        bad()


def test_non_periodic_cell_is_refused():
    atoms = build_lattice("fcc", 32, 1.28)
    atoms.pbc = [True, True, False]
    with pytest.raises(ValueError, match="periodic along all three axes"):
        system_from_atoms(atoms, LennardJones(), 2.0)


def _definition_path(name):
    from freeflow.physics.system_files import systems_directory
    return systems_directory() / f"{name}.toml"


def test_einstein_width_of_a_harmonic_crystal_is_exact():
    """One atom in the frozen lattice of springs k feels curvature k: width 1/sqrt(beta k)."""
    atoms = freeflow.load_system("lj_32").atoms
    system = freeflow.System(name="springs", atoms=atoms,
                             potential=freeflow.EinsteinCrystal(spring_constant=400.0),
                             temperature=2.0)
    assert system.einstein_width == pytest.approx(1.0 / np.sqrt(0.5 * 400.0), rel=1e-5)


@pytest.mark.parametrize("name", ["lj_32", "mw_cubic_8"])
def test_lattice_hessian_against_energy_differences(systems, name):
    """Autodiff Hessian vs central second differences of the float64 energy along random
    directions; rows sum to zero (translation invariance)."""
    import jax
    system = systems(name)
    hessian = system.lattice_hessian()
    n3 = 3 * system.num_particles
    assert hessian.shape == (n3, n3)
    np.testing.assert_allclose(hessian, hessian.T, atol=0)
    scale = np.abs(hessian).max()
    np.testing.assert_allclose(hessian.reshape(n3, -1, 3).sum(axis=1), 0.0, atol=1e-9 * scale)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        energy = jax.jit(system.energy_fn(neighbors="dense", strays="nan"))
        lattice = np.asarray(system.lattice, np.float64)
        h = 1e-4 * system.nearest_neighbour_distance
        for _ in range(3):
            u = rng.standard_normal(lattice.shape)
            second = (float(energy(lattice + h * u)) - 2 * float(energy(lattice))
                      + float(energy(lattice - h * u))) / h**2
            # Difference error ~ h^2 U'''' (relative ~1e-8 here) plus rounding ~1e-16 U / h^2.
            assert second == pytest.approx(u.ravel() @ hessian @ u.ravel(), rel=1e-5)
