"""The analytic energy gradient against reverse-mode autodiff of the same energy (float64).

``energy_fn(gradient="analytic")`` (the default) defines the gradient by a custom JVP: the
potential's own entry derivatives pulled back through the neighbour plan
(``freeflow.physics.potentials.base.planned_energy``). ``gradient="autodiff"`` differentiates
the identical energy sum by plain autodiff, so in float64 the two must agree to rounding:
1e-10 relative leaves four orders of magnitude for summation order over ~10^4 terms.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed

from freeflow import MonatomicWater, system_from_atoms
from freeflow.physics.lattice import build_lattice
from freeflow.physics.potentials import LennardJones

RTOL = 1e-10


def energies(system, plan, softened):
    kwargs = dict(max_displacement=0.5 * system.nearest_neighbour_distance, softened=softened,
                  neighbors=plan, allow_sites=True)
    fast = system.potential.energy_fn(system.box, system.lattice, **kwargs)
    reference = system.potential.energy_fn(system.box, system.lattice, gradient="autodiff",
                                           **kwargs)
    return fast, reference


def assert_same_gradient(fast, reference, x):
    with jax.enable_x64(True):
        x = jnp.asarray(x, jnp.float64)
        # Jitted: op by op, the first use of each (system, plan) compiled hundreds of
        # float64 primitives one at a time, 10-20 s per test.
        u, g = jax.jit(jax.vmap(jax.value_and_grad(fast)))(x)
        u_ref, g_ref = jax.jit(jax.vmap(jax.value_and_grad(reference)))(x)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(np.asarray(u), np.asarray(u_ref), rtol=RTOL)
    scale = np.abs(np.asarray(g_ref)).max()
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=0, atol=RTOL * scale)


def assert_same_hessian(fast, reference, x):
    """Forward-over-reverse Hessians of one configuration ``x`` agree (float64)."""
    with jax.enable_x64(True):
        y = jnp.asarray(x, jnp.float64)
        h = np.asarray(jax.jit(jax.hessian(fast))(y))
        h_ref = np.asarray(jax.jit(jax.hessian(reference))(y))
    np.testing.assert_allclose(h, h_ref, rtol=0, atol=1e-9 * np.abs(h_ref).max())


def off_site(system, seed):
    """Perturbed configurations; in the second one particle moved 0.6 of the way to a
    neighbouring site, beyond the site list's bound of half the neighbour distance."""
    x = perturbed(system, 0.03 * system.nearest_neighbour_distance, seed, count=2)
    lattice = system.lattice
    d = lattice - lattice[5]
    d -= system.box * np.round(d / system.box)
    r = np.linalg.norm(d, axis=1)
    r[5] = np.inf
    neighbour = int(np.argmin(r))
    x[1, 5] = np.mod(lattice[5] + 0.6 * d[neighbour], system.box)
    return x


@pytest.mark.parametrize("name", ["lj_32", "lj_108", "mw_cubic_8", "mw_cubic_64", "mw_hex_64"])
# Training energies (softened) never use the site list.
@pytest.mark.parametrize("plan, softened", [("dense", False), ("dense", True), ("sites", False)])
def test_analytic_gradient_equals_autodiff(systems, name, plan, softened):
    system = systems(name)
    fast, reference = energies(system, plan, softened)
    x = perturbed(system, 0.06 * system.nearest_neighbour_distance, seed=1, count=3)
    assert_same_gradient(fast, reference, x)


@pytest.mark.parametrize("name", ["lj_32", "mw_cubic_64"])
def test_a_particle_off_its_site(systems, name):
    """0.6 of the way to a neighbour: outside the site list's bound, so its energy is NaN
    there and the default energy recomputes it with all images; both gradients stay exact."""
    system = systems(name)
    x = off_site(system, seed=2)
    fast, reference = energies(system, "dense", softened=False)
    assert_same_gradient(fast, reference, x)
    fast, _ = energies(system, "sites", softened=False)
    with jax.enable_x64(True):
        assert np.isnan(float(jax.jit(fast)(jnp.asarray(x[1], jnp.float64))))
        default = system.energy_fn(neighbors="sites")  # strays="recompute"
        g = jax.jit(jax.grad(lambda y: jnp.sum(default(y))))(jnp.asarray(x, jnp.float64))
        g_ref = jax.jit(jax.vmap(jax.grad(reference)))(jnp.asarray(x, jnp.float64))
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=0,
                               atol=RTOL * np.abs(np.asarray(g_ref)).max())


def test_overlapping_particles_under_the_training_clip(systems):
    """Two particles closer than the training energy's 0.01 clip: zero slope below it."""
    system = systems("mw_cubic_8")
    x = perturbed(system, 0.05, seed=4, count=2)
    x[1, 3] = np.mod(x[1, 2] + 0.003, system.box)
    assert_same_gradient(*energies(system, "dense", softened=True), x)


@pytest.mark.parametrize("potential, kind, n, density, plans", [
    (LennardJones(), "fcc", 500, 1.28, ("sites",)),  # the site list in 8 blocks
    (MonatomicWater(), "diamond", 216, 0.033567184, ("cells", "sites")),
    (MonatomicWater(), "diamond", 512, 0.033567184, ("sites",)),  # 2 blocks
])
def test_blocked_site_list_and_cell_list(potential, kind, n, density, plans):
    system = system_from_atoms(build_lattice(kind, n, density), potential, temperature=1.0)
    x = perturbed(system, 0.05 * system.nearest_neighbour_distance, seed=5, count=2)
    for plan in plans:
        for softened in (False, True):
            if plan == "sites" and softened:
                continue
            assert_same_gradient(*energies(system, plan, softened), x)


def test_hessian_through_the_analytic_gradient(systems):
    """Forward-over-reverse (``jax.hessian``) differentiates the custom JVP's own rule."""
    system = systems("mw_cubic_8")
    x = perturbed(system, 0.05, seed=6)
    assert_same_hessian(*energies(system, "sites", softened=False), x)


def test_unknown_gradient_route_is_refused(systems):
    system = systems("lj_32")
    with pytest.raises(ValueError, match="gradient must be one of"):
        system.potential.energy_fn(system.box, system.lattice, max_displacement=0.5,
                                   gradient="numeric")


@pytest.mark.parametrize("softened", [False, True])
def test_mw_pair_at_the_cutoff_in_float32(softened):
    """A pair whose float32 distance rounds to the cutoff is outside it (phi2 and f vanish
    there). Counted as inside because its r^2 is below cutoff^2, exp(sigma / (r - a sigma))
    was infinite and the energy NaN (a flow in training met one at step 18)."""
    potential = MonatomicWater()
    # Found by search: r^2 < float32(cutoff^2) and sqrt(r^2) == float32(cutoff) in float32.
    d = np.array([3.1932919025421143, 2.3192529678344727, -1.7233375310897827], np.float32)
    r2 = np.float32(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    assert r2 < np.float32(potential.cutoff**2) and np.sqrt(r2) == np.float32(potential.cutoff)
    sites = np.array([np.zeros(3), d, [0.0, 2.6, 0.0]])
    energy = potential.energy_fn(np.full(3, 20.0), sites, max_displacement=1.0,
                                 softened=softened, neighbors="dense")
    u, g = jax.value_and_grad(energy)(jnp.asarray(sites, jnp.float32))
    assert np.isfinite(float(u)) and np.all(np.isfinite(np.asarray(g)))


# One image shift (box edges at least twice the cutoff): the all-pairs plan with no image
# copies, as lj_256 and lj_500 take it, and a small box with a short cutoff that has the same.
ONE_SHIFT = [(LennardJones(), 256, 1.28), (LennardJones(cutoff=1.2), 108, 1.28)]


@pytest.mark.parametrize("potential, n, density", ONE_SHIFT)
@pytest.mark.parametrize("softened", [False, True])
def test_one_shift_all_pairs(potential, n, density, softened):
    system = system_from_atoms(build_lattice("fcc", n, density), potential, temperature=1.0)
    plan = potential.neighbor_plan(system.box, system.lattice, neighbors="dense",
                                   max_displacement=0.5 * system.nearest_neighbour_distance)
    assert len(plan.shifts) == 1
    x = perturbed(system, 0.06 * system.nearest_neighbour_distance, seed=7, count=2)
    assert_same_gradient(*energies(system, "dense", softened), x)


def test_hessian_through_the_one_shift_gradient():
    potential, n, density = ONE_SHIFT[1]
    system = system_from_atoms(build_lattice("fcc", n, density), potential, temperature=1.0)
    x = perturbed(system, 0.05 * system.nearest_neighbour_distance, seed=8)
    assert_same_hessian(*energies(system, "dense", softened=False), x)
