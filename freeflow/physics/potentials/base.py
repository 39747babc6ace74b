"""Pieces shared by the potentials: safe distances, softening, batching over configurations."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.physics.neighbors import Strategy, plan_neighbors
from freeflow.physics.validation import check_number

EnergyFn = Callable[[jax.Array], jax.Array]

#: Training-energy softening: distances are clipped below this value, so the reverse-KL loss
#: stays finite for the overlapping particles an untrained flow produces.
SOFT_MIN_DISTANCE = 0.01


#: Gradient routes of ``energy_fn``: the plan's analytic pull-back of the potential's own
#: entry derivatives (default), or plain reverse-mode autodiff of the same energy (the
#: reference the tests compare with; it scatter-adds through every gather).
GRADIENTS = ("analytic", "autodiff")


def squared_distances(d, mask, min_distance: float = 0.0):
    """``|d|^2`` of every entry, safe to differentiate, and the entries to count.

    ``d``: three coordinate arrays of one shape; entries outside ``mask`` get the placeholder
    1. A zero distance between distinct particles is a real (infinite-energy) configuration;
    the floor ``max(min_distance, 1e-18)^2`` keeps every derivative finite there, and below
    ``min_distance`` it is the training energy's clip.

    Returns ``(r2, raw)``: ``raw`` is the unfloored value, the variable the potentials
    differentiate by (``value_and_slope``), so that the clip's zero derivative is kept.
    """
    raw = jnp.where(mask, d[0] * d[0] + d[1] * d[1] + d[2] * d[2], 1.0)
    return floored(raw, min_distance), raw


def floored(r2, min_distance: float):
    return jnp.maximum(r2, max(min_distance, 1e-18) ** 2)


def value_and_slope(fn: Callable, r2):
    """``fn(r2)`` and its elementwise derivative ``d fn / d r2`` (one forward-mode pass).

    ``fn`` maps an array of squared distances to arrays of the same shape (or a tuple of
    them); the derivative is exact and, being elementwise, fuses with the value.
    """
    return jax.jvp(fn, (r2,), (jnp.ones_like(r2),))


def entry_sums(*arrays):
    """Sums of several arrays of one shape over every axis but the first, ``[B]`` each.

    One variadic reduction lets XLA fuse the per-entry arithmetic of all of them into a single
    loop over the entries; separate sums materialise the entries in memory, which made
    Lennard-Jones energy + forces 2-4x slower on CPU (docs/benchmarks.md, "Forces against
    the energy alone").
    """
    axes = tuple(range(1, arrays[0].ndim))
    zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)
    return jax.lax.reduce(tuple(arrays), zeros,
                          lambda a, b: tuple(x + y for x, y in zip(a, b)), axes)


def row_scalars(values, like):
    """Per-row values ``[B]`` broadcast against entries shaped like ``like`` ``[B, ...]``."""
    return values.reshape(values.shape + (1,) * (like.ndim - 1))


def planned_energy(plan, rows_energy, rows_gradient=None, symmetric: bool = False,
                   total_and_gradient=None) -> EnergyFn:
    """The energy of one configuration ``[N, 3]`` as the plan's sum of ``rows_energy``.

    Configurations the plan flags (``overflow``) get NaN. With ``rows_gradient`` (see
    ``freeflow.physics.neighbors.RowsGradient``) its derivative is defined by a custom JVP:
    the plan's ``total_and_gradient``, which forward and reverse mode both use, and which is
    itself differentiable (so Hessians work). ``symmetric``: the rows are a halved pair sum,
    whose gradient needs no transpose of the partner table. ``total_and_gradient(x) -> (U,
    dU/dx, overflow)`` replaces the plan's own route where a potential has a faster one
    (``DenseNeighbors.pair_total_and_gradient``; EAM's whole-pair forces on the all-pairs
    and site-list plans).
    """

    def energy(x):
        u, overflow = plan.total(x, rows_energy)
        return jnp.where(overflow, jnp.nan, u)

    if rows_gradient is None:
        return energy
    if total_and_gradient is None:
        def total_and_gradient(x):
            return plan.total_and_gradient(x, rows_gradient, symmetric)
    energy = jax.custom_jvp(energy)

    @energy.defjvp
    def _(primals, tangents):
        (x,), (dx,) = primals, tangents
        u, grad, overflow = total_and_gradient(x)
        u = jnp.where(overflow, jnp.nan, u)
        grad = jnp.where(overflow, jnp.nan, grad)
        return u, jnp.sum(grad * dx)

    return energy


def shift_summed(slopes, shifts):
    """The all-pairs pull-back for boxes with several image shifts, as two plain sums.

    Entry ``(i, j, s)`` is ``d_ijs = m_ij + shift_s`` with ``m_ij = d_ij0`` the minimum image
    (the zero shift comes first), so the row sum of ``g_ijs d_ijs`` is
    ``sum_j G_ij m_ij + sum_s H_is shift_s`` with ``G = sum_s g`` and ``H = sum_j g``. The
    entries' slopes are then summed twice by XLA's vectorised reduction instead of four
    products summed by one variadic reduction (a scalar loop on CPU): ``lj_32``'s training
    energy, 27 shifts, 2.7-2.8x the energy against 5.7-6.1x; one shift gains nothing
    (docs/benchmarks.md, "Other layouts of the all-pairs row sums"). ``slopes(d, mask)``: each
    entry's ``u`` and ``du/dr^2``.
    """
    shifts = np.asarray(shifts)

    def summed(d, mask):
        u, slope = slopes(d, mask)
        # Without the barrier XLA fuses the slope into both sums and computes it twice.
        total, slope = jax.lax.optimization_barrier((jnp.sum(u), slope))
        per_partner = jnp.sum(slope, axis=2)  # G [N, N]
        per_shift = jnp.sum(slope, axis=1)  # H [N, S]
        pulls = tuple(jnp.sum(per_partner * d[a][:, :, 0], axis=1)
                      + per_shift @ jnp.asarray(shifts[:, a], slope.dtype) for a in range(3))
        return 0.5 * total, pulls, tuple(slope * a for a in d)

    return summed


def linearised_below(pair_fn: Callable, r_linear: float) -> Callable:
    """``pair_fn`` continued below ``r_linear`` by its tangent there (value and slope match)."""
    u0, du0 = jax.value_and_grad(pair_fn)(jnp.float32(r_linear))

    def soft(r):
        r_safe = jnp.maximum(r, r_linear)
        return jnp.where(r < r_linear, u0 + du0 * (r - r_linear), pair_fn(r_safe))

    return soft


def over_configurations(energy: EnergyFn, single_unbatched: bool = False) -> EnergyFn:
    """Lift an energy of one configuration ``[N, 3]`` to any batch shape ``[..., N, 3]``.

    ``single_unbatched``: call ``energy`` itself on one configuration instead of through a
    ``jax.vmap`` of size 1. For a gradient with a loop inside, that size-1 vmap under the
    samplers' outer ``vmap`` of ``value_and_grad`` made it 2.7x slower (lj_256, all pairs:
    0.73 against 0.27 ms per configuration on 2 CPU cores; docs/benchmarks.md, "Other layouts
    of the all-pairs row sums").
    """

    def batched(positions):
        positions = jnp.asarray(positions)
        if positions.ndim < 2 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape [..., N, 3]; got {positions.shape}")
        if single_unbatched and positions.ndim == 2:
            return energy(positions)
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


#: The chemical symbol of an unlabelled site (ASE's dummy atom, what ``build_lattice`` writes
#: by default); every potential accepts it.
UNLABELLED = "X"


class CheckedParameters:
    """Mixin for potentials (frozen dataclasses): their parameters checked on construction.

    A potential lists ``parameter_domains``, pairs ``(name, Domain)`` from
    ``freeflow.physics.validation``; a parameter outside its domain (a negative ``epsilon``, a
    zero ``sigma``, a NaN) is refused with one line naming the potential, the parameter and the
    value. ``species``: the chemical symbols the potential was parameterised for (mW: ``("O",)``,
    the water molecule sits on its oxygen), or ``None`` for a model of any one species (reduced
    Lennard-Jones units, Einstein springs); ``"X"`` (``UNLABELLED``) is accepted by every
    potential. ``System`` checks a structure's symbols against it.
    """

    parameter_domains: tuple = ()
    species: tuple[str, ...] | None = None

    def __post_init__(self):
        where = f"potential {self.kind!r}"
        for name, domain in self.parameter_domains:
            check_number(getattr(self, name), name, domain, where)


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
