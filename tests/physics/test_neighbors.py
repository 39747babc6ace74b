"""Neighbour plans: cell and site lists against all images, stray and overflow flags."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed

from freeflow import MonatomicWater, build_lattice, system_from_atoms
from freeflow.physics.neighbors import plan_neighbors
from freeflow.physics.potentials import LennardJones

# float32 energies summed over up to ~10^5 pair terms: relative error ~1e-6, well inside 1e-5.
RTOL = 1e-5


def test_cell_list_agrees_with_all_images():
    for potential, kind, n, density, noise in [
        (LennardJones(), "fcc", 864, 1.28, 0.08),
        (MonatomicWater(), "diamond", 216, 0.033567184, 0.25),
    ]:
        atoms = build_lattice(kind, n, density)
        system = system_from_atoms(atoms, potential, temperature=1.0)
        x = perturbed(system, noise, seed=7, count=2).astype(np.float32)
        assert system.neighbor_plan(neighbors="cells").strategy == "cells"
        # Energy and gradient from one compiled program per plan (compilation is the cost).
        u_dense, g_dense = jax.jit(jax.vmap(jax.value_and_grad(
            system.energy_fn(neighbors="dense"))))(x)
        u_cells, g_cells = jax.jit(jax.vmap(jax.value_and_grad(
            system.energy_fn(neighbors="cells"))))(x)
        np.testing.assert_allclose(np.asarray(u_cells), np.asarray(u_dense), rtol=RTOL)
        g_dense, g_cells = np.asarray(g_dense), np.asarray(g_cells)
        np.testing.assert_allclose(g_cells, g_dense, rtol=1e-4, atol=1e-4 * np.abs(g_dense).max())


@pytest.mark.parametrize("kind, n, density, noise, potential", [
    ("fcc", 32, 1.28, 0.08, LennardJones()),          # box < 2 x (cutoff + 2 bound): images
    ("fcc", 500, 1.28, 0.08, LennardJones()),         # 8 blocks of 63 rows, the last padded
    ("diamond", 512, 0.033567184, 0.25, MonatomicWater()),  # 2 blocks of 256
])
def test_site_list_agrees_with_all_images(kind, n, density, noise, potential):
    atoms = build_lattice(kind, n, density)
    system = system_from_atoms(atoms, potential, temperature=1.0)
    x = perturbed(system, noise, seed=3, count=2).astype(np.float32)
    # The whole crystal moved by almost half a box: the translation must not matter.
    x[1] = np.mod(x[1] + 0.49 * system.box, system.box)
    assert system.neighbor_plan(neighbors="sites").strategy == "sites"
    u_dense, g_dense = jax.jit(jax.vmap(jax.value_and_grad(
        system.energy_fn(neighbors="dense"))))(x)
    u_listed, g_listed = jax.jit(jax.vmap(jax.value_and_grad(
        system.energy_fn(neighbors="sites", strays="nan"))))(x)
    np.testing.assert_allclose(np.asarray(u_listed), np.asarray(u_dense), rtol=RTOL)
    for g, g_ref in zip(np.asarray(g_listed), np.asarray(g_dense)):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4 * np.abs(g_ref).max())


def test_site_list_flags_a_stray_at_its_bound_and_the_default_recomputes_it(systems):
    system = systems("lj_32")
    bound = 0.5 * system.nearest_neighbour_distance
    n = system.num_particles
    fast = system.energy_fn(neighbors="sites", strays="nan")
    exact = system.energy_fn(neighbors="sites")
    dense = system.energy_fn(neighbors="dense")
    assert system.neighbor_plan(neighbors="sites").strategy == "sites"
    x = np.repeat(np.asarray(system.lattice, np.float32)[None], 3, axis=0)
    # Moving one particle by a shifts the crystal's mean by a / N: its displacement from its
    # site, relative to the crystal, is a (1 - 1/N).
    for row, fraction in [(1, 0.99), (2, 1.01)]:
        x[row, 5, 0] += fraction * bound / (1.0 - 1.0 / n)
    flagged = np.isnan(np.asarray(fast(x)))
    assert flagged.tolist() == [False, False, True]
    np.testing.assert_allclose(np.asarray(exact(x)), np.asarray(dense(x)), rtol=RTOL)
    # The recomputed configuration's forces are exact too.
    g_exact = jax.jit(jax.grad(lambda y: jnp.sum(exact(y))))(jnp.asarray(x))
    g_dense = jax.jit(jax.grad(lambda y: jnp.sum(dense(y))))(jnp.asarray(x))
    np.testing.assert_allclose(g_exact, g_dense, rtol=1e-4, atol=1e-4 * np.abs(g_dense).max())


def test_auto_never_gives_training_energies_the_site_list(systems):
    for name in ("lj_108", "mw_cubic_8"):
        system = systems(name)
        assert system.neighbor_plan().strategy == "sites"
        assert system.neighbor_plan(softened=True).strategy == "dense"
    with pytest.raises(ValueError, match="strays"):
        systems("lj_32").energy_fn(strays="ignore")


def test_cell_overflow_is_loud_not_silent():
    atoms = build_lattice("diamond", 216, 0.033567184)
    system = system_from_atoms(atoms, MonatomicWater(), temperature=200.0)
    energy = system.energy_fn(neighbors="cells")
    x = np.array(system.lattice, dtype=np.float32)
    x[1:40] = 0.5 + 0.01 * np.arange(39)[:, None]  # crowd one cell far beyond its capacity
    assert np.isnan(float(energy(x)))


def test_compact_list_overflow_is_flagged_exactly_at_its_capacity():
    # A perfect diamond lattice gives every atom 4 partners inside the mW cutoff.
    atoms = build_lattice("diamond", 216, 0.033567184)
    system = system_from_atoms(atoms, MonatomicWater(), temperature=200.0)
    plan = plan_neighbors(system.lattice, system.box, system.potential.cutoff,
                          0.5 * system.nearest_neighbour_distance, "cells")
    x = jnp.asarray(system.lattice, jnp.float32)
    _, mask, overflow = dataclasses.replace(plan, compact=4)(x)
    assert not bool(overflow) and np.all(np.asarray(mask).sum(axis=1) == 4)
    _, _, overflow = dataclasses.replace(plan, compact=3)(x)
    assert bool(overflow)
