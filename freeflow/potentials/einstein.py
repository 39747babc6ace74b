"""Harmonic Einstein crystal: independent springs tying each particle to its lattice site."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from freeflow.potentials.base import EnergyFn, over_configurations
from freeflow.space import minimum_image
from freeflow.units import Units, reduced_units


@dataclasses.dataclass(frozen=True)
class EinsteinCrystal:
    """``U = (k / 2) sum_i |x_i - site_i|^2`` with minimum-image displacements.

    Particle i is tied to site i (the particles are labelled). ``spring_constant`` is in energy
    per length squared of the system it is used with; ``k = 1 / (2 beta s^2)`` gives each
    Cartesian coordinate the standard deviation ``s``.
    """

    spring_constant: float
    units: Units = reduced_units()

    kind = "einstein_crystal"
    cutoff = 0.0

    @classmethod
    def from_width(cls, beta: float, width: float, units: Units = reduced_units()) -> "EinsteinCrystal":
        """Spring constant giving each coordinate the standard deviation ``width``."""
        return cls(spring_constant=1.0 / (2.0 * beta * width**2), units=units)

    def energy_fn(self, box, sites, *, max_displacement: float = 0.0, softened: bool = False,
                  neighbors: str = "auto") -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]``; softening does not apply."""
        del max_displacement, softened, neighbors
        box = np.asarray(box)
        sites = np.asarray(sites)

        def energy(x):
            d = minimum_image(x - jnp.asarray(sites, x.dtype), jnp.asarray(box, x.dtype))
            return 0.5 * self.spring_constant * jnp.sum(d**2)

        return over_configurations(energy)
