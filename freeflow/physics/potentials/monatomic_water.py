"""Monatomic water (mW): the Stillinger-Weber functional form with Molinero's parameters."""

from __future__ import annotations

import dataclasses
import math

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
from freeflow.physics.units import Units, molar_units


@dataclasses.dataclass(frozen=True)
class MonatomicWater(PairNeighbors):
    """mW water: two-body ``phi2`` plus three-body ``phi3`` terms, both cut at ``a * sigma``.

    ``phi2(r) = A eps [B (sigma/r)^p - (sigma/r)^q] exp(sigma / (r - a sigma))`` (p = 4, q = 0)
    ``phi3 = lambda eps (cos theta_jik - cos theta0)^2 exp(gamma sigma/(r_ij - a sigma))
    exp(gamma sigma/(r_ik - a sigma))`` for each centre i and unordered pair {j, k} of distinct
    neighbours (periodic images count as distinct neighbours).

    Energies in kcal/mol, lengths in Angstrom.
    """

    epsilon: float = 6.189
    sigma: float = 2.3925
    a: float = 1.8
    lam: float = 23.15
    gamma: float = 1.2
    cos_theta0: float = math.cos(math.radians(109.47))
    A: float = 7.049556277
    B: float = 0.6022245584
    p: float = 4.0
    q: float = 0.0

    #: Parameters a system definition must give (``potential_from_config(require_all=True)``).
    required_parameters = ("epsilon", "sigma", "a", "lam", "gamma", "cos_theta0", "A", "B")
    #: Cost of one pair entry relative to the cell list's distance pass (see plan_neighbors).
    neighbor_pair_cost = 15.0
    kind = "monatomic_water"
    #: Below this distance (Angstrom) the training energy's pair term is linearised.
    soft_linear_below = 1.2

    @property
    def cutoff(self) -> float:
        return self.a * self.sigma

    @property
    def units(self) -> Units:
        return molar_units(reference_length=self.sigma)

    def pair(self, r):
        """Two-body energy phi2 at distance ``r < a sigma`` (kcal/mol)."""
        x = self.sigma / r
        return (self.A * self.epsilon * (self.B * x**self.p - x**self.q)
                * jnp.exp(self.sigma / (r - self.cutoff)))

    def energy_fn(self, box, sites, *, max_displacement: float, softened: bool = False,
                  neighbors: Strategy = "auto", allow_sites: bool | None = None) -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]`` in kcal/mol.

        The three-body sum over pairs of neighbours of each atom is evaluated exactly through
        moments of that atom's neighbour shell: with ``f_j = exp(gamma sigma/(r_ij - a sigma))``
        and unit vectors ``e_j``, ``sum_{j != k} f_j f_k (e_j.e_k - c0)^2 = |T|^2 - 2 c0 |v|^2
        + c0^2 s^2 - sum_j f_j^2 (|e_j|^2 - c0)^2`` with ``T = sum f e e^T``, ``v = sum f e`` and
        ``s = sum f``. That costs O(neighbours) per atom instead of O(neighbours^2) and needs no
        cap on the number of neighbours.

        ``softened=True`` gives the training energy: distances clipped below 0.01 Angstrom and
        phi2 linearised below 1.2 Angstrom.
        """
        plan = self.neighbor_plan(box, sites, max_displacement=max_displacement,
                                  softened=softened, neighbors=neighbors, allow_sites=allow_sites)
        pair = self.pair
        min_distance = 0.0
        if softened:
            pair = linearised_below(self.pair, self.soft_linear_below)
            min_distance = SOFT_MIN_DISTANCE
        c0 = self.cos_theta0

        def rows_energy(d, mask):
            # Pair terms are seen from both ends (halved); each three-body term belongs to
            # its central particle, the row it is computed in.
            r, inside = safe_distances(d, mask, self.cutoff, min_distance)
            two_body = 0.5 * jnp.sum(jnp.where(inside, pair(r), 0.0))

            f = jnp.where(inside, jnp.exp(self.gamma * self.sigma / (r - self.cutoff)), 0.0)
            e = d / r[..., None]
            s = jnp.sum(f, axis=-1)
            v = jnp.einsum("nc,ncd->nd", f, e)
            t = jnp.einsum("nc,ncd,nce->nde", f, e, e)
            # The j == k terms are removed with |e_j|^2 rather than 1: under the training
            # energy's distance clip, e_j = d_j / max(r_j, 0.01) is shorter than a unit vector.
            self_terms = jnp.sum(f**2 * (jnp.sum(e**2, axis=-1) - c0) ** 2, axis=-1)
            ordered = (jnp.sum(t**2, axis=(-1, -2)) - 2.0 * c0 * jnp.sum(v**2, axis=-1)
                       + c0**2 * s**2 - self_terms)
            three_body = 0.5 * self.lam * self.epsilon * jnp.sum(ordered)
            return two_body + three_body

        def energy(x):
            u, overflow = plan.total(x, rows_energy)
            return jnp.where(overflow, jnp.nan, u)

        return over_configurations(energy)
