"""Pieces shared by the potentials: safe distances, softening, batching over configurations."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from freeflow.physics.neighbors import Strategy, plan_neighbors

EnergyFn = Callable[[jax.Array], jax.Array]

#: Training-energy softening: distances are clipped below this value, so the reverse-KL loss
#: stays finite for the overlapping particles an untrained flow produces.
SOFT_MIN_DISTANCE = 0.01


def safe_distances(displacements, mask, cutoff: float, min_distance: float = 0.0):
    """Distances of the masked pairs that lie inside ``cutoff``, safe to differentiate.

    Entries outside the mask or the cutoff get the placeholder ``cutoff / 2`` so that no
    NaN or infinity can leak into gradients through ``jnp.where``.

    Returns:
      ``(r, inside)``: distances ``[..., C]`` and the boolean ``[..., C]`` of pairs to count.
    """
    r2 = jnp.sum(displacements**2, axis=-1)
    r2 = jnp.where(mask, r2, 1.0)
    # A zero distance between distinct particles is a real (infinite-energy) configuration;
    # the floor keeps sqrt's derivative finite there.
    r2 = jnp.maximum(r2, max(min_distance, 1e-18) ** 2)
    r = jnp.sqrt(r2)
    inside = mask & (r < cutoff)
    return jnp.where(inside, r, 0.5 * cutoff), inside


def linearised_below(pair_fn: Callable, r_linear: float) -> Callable:
    """``pair_fn`` continued below ``r_linear`` by its tangent there (value and slope match)."""
    u0, du0 = jax.value_and_grad(pair_fn)(jnp.float32(r_linear))

    def soft(r):
        r_safe = jnp.maximum(r, r_linear)
        return jnp.where(r < r_linear, u0 + du0 * (r - r_linear), pair_fn(r_safe))

    return soft


def over_configurations(energy: EnergyFn) -> EnergyFn:
    """Lift an energy of one configuration ``[N, 3]`` to any batch shape ``[..., N, 3]``."""

    def batched(positions):
        positions = jnp.asarray(positions)
        if positions.ndim < 2 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape [..., N, 3]; got {positions.shape}")
        lead = positions.shape[:-2]
        flat = positions.reshape((-1,) + positions.shape[-2:])
        return jax.vmap(energy)(flat).reshape(lead)

    return batched


def recompute_flagged(fast: EnergyFn, robust: EnergyFn) -> EnergyFn:
    """``fast`` over a batch, with the configurations it returns NaN for evaluated by ``robust``.

    ``fast`` flags what it cannot evaluate exactly with NaN (a neighbour list whose bounds a
    configuration breaks); those configurations alone are evaluated again, one at a time, so
    the extra cost is one ``robust`` evaluation (and gradient) per flagged configuration. The
    gradient is defined by a custom VJP, so that reverse mode does not carry the residuals of
    the branch not taken; use ``fast`` itself for forward-mode derivatives. Meant for whole
    batches: under an outer ``vmap`` the branches become selects and ``robust`` would run for
    every configuration (such callers use ``fast`` itself, NaN included, as the Metropolis
    sampler does through ``System.energy_fn(strays="nan")``).
    """

    def redo_values(flat, u, flagged):
        def one(args):
            x, value, flag = args
            return jax.lax.cond(flag, robust, lambda _: value, x)
        return jax.lax.cond(jnp.any(flagged), lambda: jax.lax.map(one, (flat, u, flagged)),
                            lambda: u)

    @jax.custom_vjp
    def guarded(flat):
        u = fast(flat)
        return redo_values(flat, u, jnp.isnan(u))

    def forward(flat):
        u, pullback = jax.vjp(fast, flat)
        flagged = jnp.isnan(u)
        return redo_values(flat, u, flagged), (flat, flagged, pullback)

    def backward(residuals, cotangent):
        flat, flagged, pullback = residuals
        (grads,) = pullback(jnp.where(flagged, 0.0, cotangent))

        def one(args):
            x, flag, c, g = args
            return jax.lax.cond(flag, lambda x: c * jax.grad(robust)(x), lambda _: g, x)

        grads = jax.lax.cond(jnp.any(flagged),
                             lambda: jax.lax.map(one, (flat, flagged, cotangent, grads)),
                             lambda: grads)
        return (grads,)

    guarded.defvjp(forward, backward)

    def batched(positions):
        positions = jnp.asarray(positions)
        if positions.ndim < 2 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape [..., N, 3]; got {positions.shape}")
        lead = positions.shape[:-2]
        return guarded(positions.reshape((-1,) + positions.shape[-2:])).reshape(lead)

    return batched


class PairNeighbors:
    """Mixin for potentials with a ``cutoff`` and a ``neighbor_pair_cost``: their plan."""

    def neighbor_plan(self, box, sites, *, max_displacement: float, softened: bool = False,
                      neighbors: Strategy = "auto", allow_sites: bool | None = None):
        """The pair-finding plan ``energy_fn`` uses for these arguments (a value: see
        ``freeflow.physics.neighbors.plan_neighbors``). ``allow_sites`` (default: not
        ``softened``) lets ``auto`` use the lattice-bound site list."""
        return plan_neighbors(sites, box, self.cutoff, max_displacement, neighbors,
                              pair_cost=self.neighbor_pair_cost,
                              allow_sites=not softened if allow_sites is None else allow_sites)
