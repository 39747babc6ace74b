"""Truncated-and-shifted Lennard-Jones potential (reduced units)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from freeflow.physics.neighbors import Strategy
from freeflow.physics.potentials.base import (
    SOFT_MIN_DISTANCE,
    EnergyFn,
    PairNeighbors,
    linearised_below,
    over_configurations,
    safe_distances,
)
from freeflow.physics.units import Units, reduced_units


@dataclasses.dataclass(frozen=True)
class LennardJones(PairNeighbors):
    """``u(r) = 4 eps [(s/r)^12 - (s/r)^6] - u(rc)`` for ``r < rc``, zero beyond.

    Energies in units of ``epsilon``, lengths in units of ``sigma`` (reduced units, k_B = 1).
    Set ``shift=False`` for the plain truncated potential.
    """

    epsilon: float = 1.0
    sigma: float = 1.0
    cutoff: float = 2.7
    shift: bool = True

    #: Parameters a system definition must give (``potential_from_config(require_all=True)``).
    required_parameters = ("epsilon", "sigma", "cutoff")
    #: Cost of one pair entry relative to the cell list's distance pass (see plan_neighbors).
    neighbor_pair_cost = 1.5
    kind = "lennard_jones"
    #: Below this distance (in sigma) the training energy is linearised.
    soft_linear_below = 0.8

    @property
    def units(self) -> Units:
        return reduced_units(self.sigma)

    def pair(self, r):
        """Pair energy at distance ``r`` (inside the cutoff)."""
        def bare(x):
            s6 = (self.sigma / x) ** 6
            return 4.0 * self.epsilon * (s6 * s6 - s6)
        return bare(r) - (bare(self.cutoff) if self.shift else 0.0)

    def energy_fn(self, box, sites, *, max_displacement: float, softened: bool = False,
                  neighbors: Strategy = "auto", allow_sites: bool | None = None) -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]`` for this box.

        ``softened=True`` gives the training energy: distances clipped below 0.01 and the pair
        potential linearised below 0.8 sigma. Estimators must use the exact energy.
        ``allow_sites`` (default: not ``softened``) lets ``auto`` use the lattice-bound site
        list (``freeflow.physics.neighbors.plan_neighbors``).
        """
        plan = self.neighbor_plan(box, sites, max_displacement=max_displacement,
                                  softened=softened, neighbors=neighbors, allow_sites=allow_sites)
        pair = self.pair
        min_distance = 0.0
        if softened:
            pair = linearised_below(self.pair, self.soft_linear_below * self.sigma)
            min_distance = SOFT_MIN_DISTANCE

        def rows_energy(d, mask):
            r, inside = safe_distances(d, mask, self.cutoff, min_distance)
            return 0.5 * jnp.sum(jnp.where(inside, pair(r), 0.0))  # each pair seen twice

        def energy(x):
            u, overflow = plan.total(x, rows_energy)
            return jnp.where(overflow, jnp.nan, u)

        return over_configurations(energy)
