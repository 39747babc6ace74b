"""Loading named systems, building user systems, and the errors bad input must give."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

import freeflow
from freeflow import (FreeflowCalculator, LennardJones, MonatomicWater, build_lattice,
                      load_system, named_systems, system_from_atoms)
from freeflow.cli import main

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
    (lambda: build_lattice("bcc", 16, 1.0), "unknown lattice"),
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


def test_cli_energy_json(capsys):
    assert main(["energy", "mw_cubic_8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"system", "num_particles", "energy_per_particle", "beta_energy_per_particle"} <= set(
        result)
    assert result["num_particles"] == 8
    assert result["beta_energy_per_particle"] == pytest.approx(
        result["energy_per_particle"] * 2.51609, rel=1e-5)


def test_cli_energy_of_structure_file(tmp_path, capsys):
    system = load_system("lj_32")
    atoms = system.atoms.copy()
    atoms.positions += 0.05
    path = tmp_path / "shifted.extxyz"
    atoms.write(path)
    assert main(["energy", "lj_32", "--structure", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["energy_per_particle"] == pytest.approx(system.lattice_energy() / 32, rel=1e-5)


def test_cli_errors_are_messages_not_tracebacks(capsys):
    assert main(["energy", "lj_33"]) == 2
    err = capsys.readouterr().err
    assert "unknown system 'lj_33'" in err and "Traceback" not in err


def test_cli_systems_table(capsys, monkeypatch, tmp_path):
    # Two systems are enough to check the table; a folder of definitions stands in for all.
    for name in ("lj_32", "mw_cubic_8"):
        (tmp_path / f"{name}.toml").write_text(_definition_path(name).read_text())
    monkeypatch.setenv("FREEFLOW_SYSTEMS_DIR", str(tmp_path))
    assert main(["systems"]) == 0
    out = capsys.readouterr().out
    assert "lj_32" in out and "mw_cubic_8" in out and "-6.30323" in out and "-12.37799" in out


def _definition_path(name):
    from freeflow.system import systems_directory
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


def test_harmonic_temperature_factor_of_a_harmonic_crystal_is_one():
    """For a quadratic energy the virial is c |eps|^2 exactly, so the factor is
    3 (N - 1) / mean |eps|^2 over the fixed draws: 1 within sqrt(2 / (3 (N - 1) n))."""
    atoms = freeflow.load_system("lj_32").atoms
    system = freeflow.System(name="springs", atoms=atoms,
                             potential=freeflow.EinsteinCrystal(spring_constant=400.0),
                             temperature=2.0)
    draws = np.random.default_rng(0).standard_normal((1024, 93))
    expected = 93 / np.mean(np.sum(draws**2, axis=1))
    factor = system.harmonic_temperature_factor(num_samples=1024, seed=0)
    # brentq's xtol 1e-3 in ln c, plus float32 virials.
    assert factor == pytest.approx(expected, rel=2e-3)
    assert abs(factor - 1.0) < 4 * np.sqrt(2 / (93 * 1024))


def test_effective_harmonic_base_minimises_kl_along_the_temperature_scale(systems):
    """On lj_32 (stiffer than its Hessian at T* = 2) the factor is below 1, and the mean work
    <beta U + ln b>, which is KL + const, is lower there than at the factor times or over 1.2
    (same draws, so the differences are not sampling noise)."""
    import jax
    import jax.numpy as jnp

    from freeflow.base import HarmonicLatticeBase

    system = systems("lj_32")
    factor = system.harmonic_temperature_factor()
    assert 0.5 < factor < 0.9
    precision = system.beta * system.lattice_hessian()[3:, 3:]
    energy = jax.jit(system.energy_fn())

    def mean_work(c):
        base = HarmonicLatticeBase(system.lattice, system.box, precision / c)
        mobile, log_b = base.sample_and_log_prob(jax.random.PRNGKey(0), 4096)
        positions = jnp.concatenate([jnp.zeros((4096, 1, 3)), mobile], axis=1)
        return float(np.mean(system.beta * np.asarray(energy(positions), np.float64)
                             + np.asarray(log_b, np.float64)))

    best = mean_work(factor)
    # KL rises ~ (3 (N - 1) / 4) (ln 1.2)^2 ~ 0.8 nats either side; sampling noise of the
    # differences under common draws is a few hundredths.
    assert mean_work(factor * 1.2) > best + 0.2
    assert mean_work(factor / 1.2) > best + 0.2
