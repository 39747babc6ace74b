"""Stillinger-Weber: silicon against LAMMPS ``pair_style sw``, mW as one of its parameter sets.

Both sides sum the same two- and three-body terms in float64 (LAMMPS over triplets, freeflow
through the moments of each neighbour shell, ``StillingerWeberForm``), so they differ by
summation order alone: ~1e-15 relative per term over ~10^3-10^4 terms. 1e-11 relative (of the
energy, and of the largest force component for the forces) leaves three orders of magnitude.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lammps_oracle import lammps_energy_and_forces, require_lammps

from freeflow.physics.lattice import build_lattice, nearest_neighbour_distance
from freeflow.physics.potentials import MonatomicWater, StillingerWeber, potential_from_config
from freeflow.physics.potentials.stillinger_weber import PARAMETER_SETS
from freeflow.physics.system_files import load_system

RTOL = 1e-11
#: Stillinger and Weber's zero-temperature lattice constant of diamond silicon (Angstrom).
SI_LATTICE_CONSTANT = 5.431


def sw_file(path, p: StillingerWeber) -> str:
    """A LAMMPS ``sw`` file for the one-species potential ``p`` (one ``Si Si Si`` line:
    epsilon sigma a lambda gamma costheta0 A B p q tol)."""
    values = [p.epsilon, p.sigma, p.a, p.lam, p.gamma, p.cos_theta0, p.A, p.B, p.p, p.q, 0.0]
    path.write_text("Si Si Si " + " ".join(repr(float(v)) for v in values) + "\n")
    return str(path)


def float64_energy_and_forces(potential, atoms, x, neighbors):
    box = np.diag(np.asarray(atoms.cell))
    half = 0.5 * nearest_neighbour_distance(atoms.positions, box)  # the site list's bound
    with jax.enable_x64(True):
        fn = potential.energy_fn(box, atoms.positions, max_displacement=half,
                                 neighbors=neighbors, allow_sites=True)
        u, g = jax.jit(jax.value_and_grad(fn))(jnp.asarray(x, jnp.float64))
    return float(u), -np.asarray(g, np.float64)


@pytest.mark.parametrize("cells, scale, neighbors", [
    (1, 1.0, "dense"), (2, 0.97, "sites"),
    (2, 1.05, "cells")])  # a cell list needs 3 cutoffs a side: 11.3 Angstrom
def test_silicon_matches_lammps(tmp_path, cells, scale, neighbors):
    """Perturbed diamond silicon, N = 8 (a box of 5.4 Angstrom: every atom meets several
    images of each neighbour inside the 3.77 Angstrom cutoff) and N = 64, compressed and
    stretched, against LAMMPS, with the all-pairs, cell-list and site-list plans."""
    require_lammps()
    potential = StillingerWeber.silicon()
    n = 8 * cells**3
    atoms = build_lattice("diamond", n, 8.0 / (scale * SI_LATTICE_CONSTANT) ** 3, "Si")
    pair_lines = ["pair_style sw", f"pair_coeff * * {sw_file(tmp_path / 'Si.sw', potential)} Si"]
    rng = np.random.default_rng(cells)
    for _ in range(2):
        x = atoms.positions + 0.12 * rng.standard_normal(atoms.positions.shape)
        moved = atoms.copy()
        moved.positions = x
        e_ref, f_ref = lammps_energy_and_forces(moved, "metal", pair_lines, masses=28.0855)
        u, f = float64_energy_and_forces(potential, atoms, x, neighbors)
        assert abs(u - e_ref) <= RTOL * abs(e_ref), (u, e_ref)
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=RTOL * np.abs(f_ref).max())


def test_silicon_lattice_energy():
    """si_64 at SW's 0 K lattice constant: -4.3366 eV per atom, -2 epsilon (Stillinger and
    Weber's cohesive energy). 5.431 Angstrom is rounded to 4 digits; at the minimum the energy
    changes by ~1e-7 eV per atom over that rounding, so 1e-6 eV per atom."""
    system = load_system("si_64")
    assert system.box == pytest.approx([2 * SI_LATTICE_CONSTANT] * 3, rel=1e-10)
    assert system.lattice_energy() / 64 == pytest.approx(-4.3366, abs=1e-6)
    assert system.units.energy == "eV" and system.units.boltzmann_constant == 8.617333262e-5


def test_named_silicon_systems_load():
    for name, n in (("si_64", 64), ("si_216", 216)):
        system = load_system(name)
        assert system.num_particles == n and system.potential == StillingerWeber.silicon()
        assert system.atoms.get_chemical_symbols() == ["Si"] * n


def test_mw_is_a_parameter_set_of_stillinger_weber():
    """``MonatomicWater`` and ``StillingerWeber.named("mw")`` give bit-identical exact
    energies; a system file's ``parameters = "mw"`` builds the same potential."""
    system = load_system("mw_cubic_8")
    general = potential_from_config({"kind": "stillinger_weber", "parameters": "mw"},
                                    require_all=True)
    assert general == StillingerWeber.named("mw") and general.units == system.units
    mw = MonatomicWater()
    assert all(getattr(mw, k) == v for k, v in PARAMETER_SETS["mw"].items()
               if k not in ("energy_unit", "species"))
    kwargs = dict(max_displacement=0.5 * system.nearest_neighbour_distance)
    x = system.lattice + 0.1 * np.random.default_rng(0).standard_normal((3, 8, 3))
    np.testing.assert_array_equal(
        np.asarray(general.energy_fn(system.box, system.lattice, **kwargs)(x)),
        np.asarray(mw.energy_fn(system.box, system.lattice, **kwargs)(x)))


@pytest.mark.parametrize("config, message", [
    ({"parameters": "carbon"}, "unknown parameter set 'carbon'; known sets: mw, silicon"),
    ({"parameters": "silicon", "energy_unit": "Ry"}, "unknown energy_unit 'Ry'"),
    ({"parameters": "silicon", "species": ["Qq"]}, "species must be a list of chemical"),
    ({"parameters": "silicon", "p": 0.0}, "p must exceed q"),
    ({"parameters": "silicon", "sigma": -1.0}, "sigma must be positive"),
    ({"epsilon": 2.0}, "lacks sigma, a, lam"),
    ({"parameters": "silicon", "lambda": 21.0}, "unknown key 'lambda'"),
])
def test_bad_stillinger_weber_input(config, message):
    with pytest.raises(ValueError, match="potential 'stillinger_weber'") as error:
        potential_from_config({"kind": "stillinger_weber", **config}, require_all=True)
    assert message in str(error.value)
