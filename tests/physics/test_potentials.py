"""Energies against independent implementations, symmetries, and gradient safety."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones as AseLennardJones
from conftest import perturbed

from freeflow import FreeflowCalculator, MonatomicWater, system_from_atoms
from freeflow.physics.potentials import EinsteinCrystal, LennardJones

# float32 energies summed over up to ~10^5 pair terms: relative error ~1e-6, well inside 1e-5.
RTOL = 1e-5


def ase_lj_reference(system, positions):
    atoms = system.atoms.copy()
    atoms.positions = positions
    atoms.calc = AseLennardJones(sigma=1.0, epsilon=1.0, rc=2.7, smooth=False)
    return atoms.get_potential_energy(), atoms.get_forces()


@pytest.mark.parametrize("name", ["lj_32", "lj_256"])
def test_lennard_jones_matches_ase(systems, name):
    system = systems(name)
    calc = FreeflowCalculator(system)
    for seed in range(2):
        x = perturbed(system, 0.08, seed)
        e_ref, f_ref = ase_lj_reference(system, x)
        atoms = system.atoms.copy()
        atoms.positions = x
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(e_ref, rel=RTOL)
        forces = atoms.get_forces()
        np.testing.assert_allclose(forces, f_ref, rtol=RTOL, atol=RTOL * np.abs(f_ref).max())


def mw_reference(positions, box, p=MonatomicWater()):
    """Straightforward mW energy: every periodic image, every triplet (float64 numpy)."""
    x = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    rc = p.a * p.sigma
    reach = np.ceil(rc / box).astype(int) + 1
    shifts = np.array(list(itertools.product(*[range(-n, n + 1) for n in reach]))) * box
    two, three = 0.0, 0.0
    for i in range(len(x)):
        vectors = (x[None, :, :] + shifts[:, None, :] - x[i]).reshape(-1, 3)
        r = np.linalg.norm(vectors, axis=1)
        keep = (r > 1e-12) & (r < rc)
        vectors, r = vectors[keep], r[keep]
        phi2 = p.A * p.epsilon * (p.B * (p.sigma / r) ** p.p - 1.0) * np.exp(p.sigma / (r - rc))
        two += 0.5 * phi2.sum()
        g = np.exp(p.gamma * p.sigma / (r - rc))
        for j in range(len(r)):
            for k in range(j + 1, len(r)):
                cos = vectors[j] @ vectors[k] / (r[j] * r[k])
                three += p.lam * p.epsilon * (cos - p.cos_theta0) ** 2 * g[j] * g[k]
    return two + three


@pytest.mark.parametrize("name", ["mw_cubic_8", "mw_hex_64"])
def test_monatomic_water_matches_all_triplets_reference(systems, name):
    system = systems(name)
    for seed in range(2):
        x = perturbed(system, 0.25, seed)
        assert float(system.energy(jnp.asarray(x, jnp.float32))) == pytest.approx(
            mw_reference(x, system.box), rel=RTOL)


def test_perfect_ice_ic_energy_is_twice_phi2(systems):
    system = systems("mw_cubic_64")
    p = system.potential
    d = (8 / 0.033567184) ** (1 / 3) * np.sqrt(3) / 4
    phi2 = p.A * p.epsilon * (p.B * (p.sigma / d) ** 4 - 1) * np.exp(p.sigma / (d - p.a * p.sigma))
    u = system.lattice_energy() / system.num_particles
    assert u == pytest.approx(2 * phi2, rel=RTOL)
    assert system.nearest_neighbour_distance == pytest.approx(d, rel=1e-12)


@pytest.mark.parametrize("name", ["lj_32", "mw_cubic_8", "mw_hex_64"])
def test_forces_are_minus_gradient_and_match_finite_differences(systems, name):
    system = systems(name)
    x = perturbed(system, 0.05 if name.startswith("lj") else 0.2, seed=3)
    atoms = system.atoms.copy()
    atoms.positions = x
    atoms.calc = FreeflowCalculator(system)
    forces = atoms.get_forces()
    gradient = jax.jit(jax.grad(lambda y: system.energy(y)))(jnp.asarray(x, jnp.float32))
    # Same float32 arithmetic, but jit may reorder sums: agree to float32 resolution of the scale.
    np.testing.assert_allclose(forces, -np.asarray(gradient), rtol=1e-6,
                               atol=1e-6 * np.abs(forces).max())

    with jax.enable_x64(True):
        energy = system.potential.energy_fn(system.box, system.lattice,
                                            max_displacement=0.5 * system.nearest_neighbour_distance)
        x64 = jnp.asarray(x, jnp.float64)
        grad64 = np.asarray(jax.jit(jax.grad(energy))(x64))
        energy = jax.jit(energy)
        h = 1e-5
        rng = np.random.default_rng(0)
        for _ in range(6):
            i, a = rng.integers(system.num_particles), rng.integers(3)
            step = jnp.zeros_like(x64).at[i, a].set(h)
            fd = (float(energy(x64 + step)) - float(energy(x64 - step))) / (2 * h)
            assert fd == pytest.approx(grad64[i, a], rel=1e-5, abs=1e-6 * np.abs(grad64).max())
    np.testing.assert_allclose(forces, -grad64, rtol=1e-4, atol=1e-4 * np.abs(grad64).max())


@pytest.mark.parametrize("name", ["lj_32", "mw_cubic_8", "mw_hex_64"])
def test_energy_symmetries(systems, name):
    system = systems(name)
    x = perturbed(system, 0.05 if name.startswith("lj") else 0.2, seed=5)
    rng = np.random.default_rng(1)
    e0 = float(system.energy(x.astype(np.float32)))
    shift = rng.uniform(-3, 3, size=3) * system.box
    translated = np.mod(x + shift, system.box)
    permuted = x[rng.permutation(len(x))]
    images = rng.integers(-2, 3, size=x.shape) * system.box
    for y in (translated, permuted, x + images):
        assert float(system.energy(y.astype(np.float32))) == pytest.approx(e0, rel=RTOL)


def test_batched_energies_match_single(systems):
    system = systems("mw_cubic_8")
    x = perturbed(system, 0.2, seed=2, count=6).reshape(2, 3, 8, 3).astype(np.float32)
    batched = np.asarray(system.energy(x))
    assert batched.shape == (2, 3)
    single = [[float(system.energy(x[a, b])) for b in range(3)] for a in range(2)]
    np.testing.assert_allclose(batched, single, rtol=1e-6)


def test_einstein_crystal_is_its_formula(systems):
    system = systems("lj_32")
    crystal = EinsteinCrystal(spring_constant=3.5)
    energy = crystal.energy_fn(system.box, system.lattice)
    x = perturbed(system, 0.1, seed=4)
    d = x - system.lattice
    d -= system.box * np.round(d / system.box)
    assert float(energy(x.astype(np.float32))) == pytest.approx(0.5 * 3.5 * np.sum(d**2), rel=1e-6)
    # (k/2) d^2 with k = 1 / (beta s^2): each coordinate has variance 1 / (beta k) = s^2.
    assert EinsteinCrystal.from_width(beta=0.5, width=0.05).spring_constant == pytest.approx(800.0)


@pytest.mark.parametrize("name", ["lj_32", "mw_cubic_8"])
def test_gradients_finite_at_cutoff_and_coincident_particles(systems, name):
    system = systems(name)
    cutoff = system.potential.cutoff
    x = np.array(system.lattice, dtype=np.float32)
    # Put particle 1 exactly at the cutoff distance from particle 0 along x.
    x[1] = x[0] + np.array([cutoff, 0.0, 0.0], dtype=np.float32)
    g = jax.jit(jax.grad(lambda y: system.energy(y)))(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(g)))
    # Softened training energy: even coincident particles have finite energy and gradient.
    x = np.array(system.lattice, dtype=np.float32)
    x[1] = x[0]
    soft = system.energy_fn(softened=True)
    value, g = jax.jit(jax.value_and_grad(lambda y: soft(y)))(jnp.asarray(x))
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("potential, r_linear", [(LennardJones(), 0.8), (MonatomicWater(), 1.2)])
def test_softening_is_explicit_and_continuous(potential, r_linear):
    # Two particles in a box far larger than the cutoff: U is the pair potential itself.
    atoms = Atoms("XX", positions=[[0, 0, 0], [1, 0, 0]], cell=[20.0] * 3, pbc=True)
    system = system_from_atoms(atoms, potential, temperature=1.0)
    exact, soft = system.energy_fn(), system.energy_fn(softened=True)

    def pair(fn, r):
        return float(fn(jnp.asarray([[5.0, 5.0, 5.0], [5.0 + r, 5.0, 5.0]], jnp.float32)))

    eps = 1e-3
    for r in (r_linear + eps, 1.5 * r_linear, 0.99 * potential.cutoff):
        assert pair(soft, r) == pytest.approx(pair(exact, r), rel=1e-6)
    # Value and slope are continuous across r_linear (the slope varies by ~eps u''/u' ~ 2%).
    below = pair(soft, r_linear) - pair(soft, r_linear - eps)
    above = pair(soft, r_linear + eps) - pair(soft, r_linear)
    assert below == pytest.approx(above, rel=0.05)
    # Linear below r_linear (zero second difference), while the exact energy is far from it.
    a, b, c = pair(soft, 0.3), pair(soft, 0.4), pair(soft, 0.5)
    assert a - 2 * b + c == pytest.approx(0.0, abs=1e-5 * abs(a))
    assert pair(exact, 0.5) > 10 * pair(soft, 0.5) > 0
    # Clipped at 0.01: coincident particles have the energy of particles 0.01 apart.
    assert pair(soft, 0.0) == pytest.approx(pair(soft, 0.01), rel=1e-6)
    # The default is exact: a perturbed crystal sees no difference above r_linear.
