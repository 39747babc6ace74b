"""Truncated-and-shifted Lennard-Jones potential (reduced units)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from freeflow.physics.neighbors import Strategy
from freeflow.physics.potentials.base import (
    GRADIENTS,
    SOFT_MIN_DISTANCE,
    CheckedParameters,
    EnergyFn,
    PairNeighbors,
    entry_sums,
    floored,
    linearised_below,
    over_configurations,
    planned_energy,
    shift_summed,
    squared_distances,
    value_and_slope,
)
from freeflow.physics.units import Units, reduced_units
from freeflow.physics.validation import POSITIVE


@dataclasses.dataclass(frozen=True)
class LennardJones(CheckedParameters, PairNeighbors):
    """``u(r) = 4 eps [(s/r)^12 - (s/r)^6] - u(rc)`` for ``r < rc``, zero beyond.

    Energies in units of ``epsilon``, lengths in units of ``sigma`` (reduced units, k_B = 1).
    Set ``shift=False`` for the plain truncated potential. ``epsilon`` (the well depth),
    ``sigma`` and ``cutoff`` (lengths) must be positive and finite. In reduced units the model
    stands for any one species (``species = None``).
    """

    epsilon: float = 1.0
    sigma: float = 1.0
    cutoff: float = 2.7
    shift: bool = True

    #: Parameters a system definition must give (``potential_from_config(require_all=True)``).
    required_parameters = ("epsilon", "sigma", "cutoff")
    parameter_domains = (("epsilon", POSITIVE), ("sigma", POSITIVE), ("cutoff", POSITIVE))
    #: Cost of one pair entry relative to the cell list's distance pass (see plan_neighbors).
    neighbor_pair_cost = 1.5
    kind = "lennard_jones"
    #: Below this distance (in sigma) the training energy is linearised.
    soft_linear_below = 0.8

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.shift, (bool, np.bool_)):
            raise ValueError(f"potential {self.kind!r}: shift must be true or false; "
                             f"got {self.shift!r}")

    @property
    def units(self) -> Units:
        return reduced_units(self.sigma)

    def pair(self, r):
        """Pair energy at distance ``r`` (inside the cutoff)."""
        def bare(x):
            s6 = (self.sigma / x) ** 6
            return 4.0 * self.epsilon * (s6 * s6 - s6)
        return bare(r) - (bare(self.cutoff) if self.shift else 0.0)

    def pair_of_squared_distance(self, softened: bool = False):
        """``u(r^2)`` inside the cutoff: the exact pair energy needs no square root.

        ``softened``: the training energy's pair term, linearised below 0.8 sigma.
        """
        if softened:
            soft = linearised_below(self.pair, self.soft_linear_below * self.sigma)
            return lambda r2: soft(jnp.sqrt(r2))
        sigma2 = self.sigma**2
        c6 = (self.sigma / self.cutoff) ** 6
        offset = 4.0 * self.epsilon * (c6 * c6 - c6) if self.shift else 0.0

        def exact(r2):
            s6 = (sigma2 / r2) ** 3
            return 4.0 * self.epsilon * (s6 * s6 - s6) - offset
        return exact

    def energy_fn(self, box, sites, *, max_displacement: float, softened: bool = False,
                  neighbors: Strategy = "auto", allow_sites: bool | None = None,
                  gradient: str = "analytic") -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]`` for this box.

        ``softened=True`` gives the training energy: distances clipped below 0.01 and the pair
        potential linearised below 0.8 sigma. Estimators must use the exact energy.
        ``allow_sites`` (default: not ``softened``) lets ``auto`` use the lattice-bound site
        list (``freeflow.physics.neighbors.plan_neighbors``). ``gradient``: ``"analytic"``
        (the pair forces pulled back by the plan, see ``planned_energy``) or ``"autodiff"``.
        """
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, not {gradient!r}")
        plan = self.neighbor_plan(box, sites, max_displacement=max_displacement,
                                  softened=softened, neighbors=neighbors, allow_sites=allow_sites)
        pair = self.pair_of_squared_distance(softened)
        min_distance = SOFT_MIN_DISTANCE if softened else 0.0
        cutoff2 = self.cutoff**2

        def entries(r2, mask):
            """Each entry's pair energy as a function of its unfloored ``r^2``."""
            inside = mask & (floored(r2, min_distance) < cutoff2)
            def fn(raw):
                # Outside the cutoff the placeholder r^2 keeps every branch finite.
                return jnp.where(inside, pair(jnp.where(inside, floored(raw, min_distance),
                                                        cutoff2)), 0.0)
            return fn

        def rows_energy(d, mask):
            _, raw = squared_distances(d, mask, min_distance)
            return 0.5 * jnp.sum(entries(raw, mask)(raw))  # each pair is seen from both ends

        def slopes(d, mask):
            """Each entry's pair energy and its derivative by ``r^2``."""
            _, raw = squared_distances(d, mask, min_distance)
            return value_and_slope(entries(raw, mask), raw)

        def rows_gradient(d, mask):
            u, slope = slopes(d, mask)
            # d(1/2 u(|d|^2))/dd = u'(r^2) d: the half and the 2 of the square cancel.
            sums = entry_sums(u, slope * d[0], slope * d[1], slope * d[2])
            return 0.5 * jnp.sum(sums[0]), sums[1:], tuple(slope * a for a in d)

        pair_gradient = None
        if plan.strategy == "dense" and len(plan.shifts) > 1:
            rows_gradient = shift_summed(slopes, plan.shifts)
        elif plan.strategy == "dense" and gradient == "analytic":
            def pair_gradient(x):
                return plan.pair_total_and_gradient(x, slopes)
        return over_configurations(planned_energy(
            plan, rows_energy, rows_gradient if gradient == "analytic" else None,
            symmetric=True, total_and_gradient=pair_gradient),
            single_unbatched=pair_gradient is not None)
