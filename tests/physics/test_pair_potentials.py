"""Pair potentials from a function: Morse and Buckingham against LAMMPS, a user's function.

LAMMPS's ``morse`` and ``buck`` with ``pair_modify shift yes`` are the same truncated-and-shifted
functions as ``Morse`` and ``Buckingham``; both sides sum the same ~10^4 pair terms in float64,
so they differ by rounding and summation order alone (~1e-15 relative per term): 1e-11 relative
(of the energy; of the largest force component for forces) leaves three orders of magnitude.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed
from lammps_oracle import lammps_energy_and_forces, require_lammps

from freeflow.physics.lattice import build_lattice, nearest_neighbour_distance
from freeflow.physics.potentials import (
    Buckingham,
    LennardJones,
    Morse,
    PairPotential,
    potential_from_config,
)
from freeflow.physics.system_files import load_system, system_from_atoms
from freeflow.physics.units import physical_units, reduced_units

RTOL = 1e-11
#: Girifalco and Weizer's Morse copper (eV, Angstrom), on fcc copper (a = 3.615 Angstrom).
MORSE_CU = dict(D0=0.3429, alpha=1.3588, r0=2.866)
CU_DENSITY = 4.0 / 3.615**3
#: A Buckingham solid of argon-like spacing (fcc, a = 5.3 Angstrom); only agreement matters.
BUCK = dict(A=2000.0, rho=0.27, C=60.0)
BUCK_DENSITY = 4.0 / 5.3**3


def float64_energy_and_forces(potential, atoms, x, neighbors):
    box = np.diag(np.asarray(atoms.cell))
    half = 0.5 * nearest_neighbour_distance(atoms.positions, box)  # the site list's bound
    with jax.enable_x64(True):
        fn = potential.energy_fn(box, atoms.positions, max_displacement=half,
                                 neighbors=neighbors, allow_sites=True)
        u, g = jax.jit(jax.value_and_grad(fn))(jnp.asarray(x, jnp.float64))
    return float(u), -np.asarray(g, np.float64)


def assert_matches_lammps(potential, atoms, pair_lines, neighbors, scale, seed=0):
    require_lammps()
    rng = np.random.default_rng(seed)
    for _ in range(2):
        x = atoms.positions + scale * rng.standard_normal(atoms.positions.shape)
        moved = atoms.copy()
        moved.positions = x
        e_ref, f_ref = lammps_energy_and_forces(moved, "metal", pair_lines)
        u, f = float64_energy_and_forces(potential, atoms, x, neighbors)
        assert abs(u - e_ref) <= RTOL * abs(e_ref), (u, e_ref)
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=RTOL * np.abs(f_ref).max())


@pytest.mark.parametrize("n, cutoff, neighbors", [(32, 6.0, "dense"), (108, 5.0, "sites")])
def test_morse_matches_lammps(n, cutoff, neighbors):
    """N = 32 in a 7.2 Angstrom box with a 6 Angstrom cutoff (several images of each
    neighbour), and the site list at N = 108."""
    potential = Morse(**MORSE_CU, cutoff=cutoff, species=["Cu"])
    atoms = build_lattice("fcc", n, CU_DENSITY, "Cu")
    lines = [f"pair_style morse {cutoff!r}", "pair_modify shift yes",
             "pair_coeff 1 1 {D0!r} {alpha!r} {r0!r}".format(**MORSE_CU)]
    assert_matches_lammps(potential, atoms, lines, neighbors, 0.1)


@pytest.mark.parametrize("n, cutoff, neighbors", [(32, 8.0, "dense"), (108, 7.0, "sites")])
def test_buckingham_matches_lammps(n, cutoff, neighbors):
    potential = Buckingham(**BUCK, cutoff=cutoff)
    atoms = build_lattice("fcc", n, BUCK_DENSITY, "Ar")
    lines = [f"pair_style buck {cutoff!r}", "pair_modify shift yes",
             "pair_coeff 1 1 {A!r} {rho!r} {C!r}".format(**BUCK)]
    assert_matches_lammps(potential, atoms, lines, neighbors, 0.15)


def test_buckingham_training_energy_avoids_the_collapse():
    """The training energy is linearised below the spurious maximum r_max (phi'(r_max) = 0),
    so it stays finite and bounded where the exact energy falls to minus infinity."""
    p = Buckingham(**BUCK, cutoff=8.0)
    r_max = p.soft_linear_below
    slope = jax.grad(lambda r: p.bare_pair(r))(jnp.float32(r_max))
    assert 0.3 < r_max < 7 * p.rho and abs(float(slope)) < 1e-3 * p.A / p.rho
    soft = p.pair_of_squared_distance(softened=True)
    exact = p.pair_of_squared_distance(softened=False)
    assert float(exact(jnp.float32(0.2**2))) < -1e3
    assert abs(float(soft(jnp.float32(0.2**2))) - float(p.pair(r_max))) < 1e-3 * abs(
        float(p.pair(r_max)))


def lj_phi(r):
    s6 = r**-6
    return 4.0 * (s6 * s6 - s6)


def test_user_pair_function_equals_lennard_jones(systems):
    """A user's LJ function through ``PairPotential`` gives LennardJones's energies and forces
    (float64; the two evaluate u(r) from r and from r^2, so rounding alone: 1e-12 relative),
    and the same System through ``system_from_atoms``."""
    lj = systems("lj_32")
    user = PairPotential(lj_phi, cutoff=2.7, units=reduced_units())
    x = perturbed(lj, 0.08, 0, count=2)
    kwargs = dict(max_displacement=0.5 * lj.nearest_neighbour_distance)
    with jax.enable_x64(True):
        for neighbors in ("dense",):
            ours = user.energy_fn(lj.box, lj.lattice, neighbors=neighbors, **kwargs)
            theirs = LennardJones().energy_fn(lj.box, lj.lattice, neighbors=neighbors, **kwargs)
            xs = jnp.asarray(x, jnp.float64)
            u, g = jax.jit(jax.vmap(jax.value_and_grad(ours)))(xs)
            u_ref, g_ref = jax.jit(jax.vmap(jax.value_and_grad(theirs)))(xs)
            np.testing.assert_allclose(np.asarray(u), np.asarray(u_ref), rtol=1e-12)
            np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=0,
                                       atol=1e-12 * float(jnp.abs(g_ref).max()))
    system = system_from_atoms(lj.atoms, user, 2.0)
    assert system.lattice_energy() == pytest.approx(lj.lattice_energy(), rel=1e-12)
    assert "PairPotential(lj_phi, cutoff=2.7" in repr(user)


def test_morse_and_buckingham_system_files(tmp_path):
    """The TOML kinds ``morse`` and ``buckingham`` build systems; units are eV and K."""
    for kind, table in (("morse", "D0 = 0.3429\nalpha = 1.3588\nr0 = 2.866\ncutoff = 6.0"),
                        ("buckingham", "A = 2000.0\nrho = 0.27\nC = 60.0\ncutoff = 8.0")):
        path = tmp_path / f"{kind}.toml"
        path.write_text(f'name = "{kind}_32"\n[potential]\nkind = "{kind}"\n{table}\n'
                        f'energy_unit = "eV"\nspecies = ["Cu"]\n[state]\ntemperature = 300.0\n'
                        f'number_density = {CU_DENSITY!r}\n[lattice]\nkind = "fcc"\n'
                        f'num_particles = 32\nsymbol = "Cu"\n')
        system = load_system(path)
        assert system.potential.kind == kind and system.units == physical_units("eV", 1.0)
        assert np.isfinite(system.lattice_energy())


@pytest.mark.parametrize("config, message", [
    ({"kind": "morse", "D0": 1.0, "alpha": 1.0, "r0": 1.0}, "lacks cutoff"),
    ({"kind": "morse", "D0": -1.0, "alpha": 1.0, "r0": 1.0, "cutoff": 3.0,
      "energy_unit": "eV"}, "D0 must be positive"),
    ({"kind": "buckingham", "A": 1.0, "rho": 1.0, "C": 1.0, "cutoff": 3.0,
      "energy_unit": "hartree"}, "unknown energy_unit 'hartree'; give one of eV"),
    ({"kind": "buckingham", "A": 1.0, "rho": 1.0, "C": 1.0, "cutoff": 3.0,
      "energy_unit": "eV", "shift": "yes"}, "shift must be true or false"),
])
def test_bad_pair_input(config, message):
    with pytest.raises(ValueError, match=f"potential '{config['kind']}'") as error:
        potential_from_config(config, require_all=True)
    assert message in str(error.value)


def test_bad_user_pair_function():
    with pytest.raises(ValueError, match="potential 'pair': phi must be a function"):
        PairPotential(1.0, cutoff=2.0, units=reduced_units())
    with pytest.raises(ValueError, match="potential 'pair': units must be"):
        PairPotential(lj_phi, cutoff=2.0, units="eV")
    with pytest.raises(ValueError, match="potential 'pair': cutoff must be positive"):
        PairPotential(lj_phi, cutoff=-2.0, units=reduced_units())
