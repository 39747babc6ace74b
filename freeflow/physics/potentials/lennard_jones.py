"""Truncated-and-shifted Lennard-Jones potential (reduced units)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from freeflow.physics.potentials.base import CheckedParameters, linearised_below
from freeflow.physics.potentials.pair import PairForm
from freeflow.physics.units import Units, reduced_units
from freeflow.physics.validation import POSITIVE


@dataclasses.dataclass(frozen=True)
class LennardJones(CheckedParameters, PairForm):
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
