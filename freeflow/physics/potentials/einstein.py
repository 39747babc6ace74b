"""Harmonic Einstein crystal: independent springs tying each particle to its lattice site."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from scipy.special import erf

from freeflow.physics.potentials.base import (
    CheckedParameters,
    EnergyFn,
    over_configurations,
)
from freeflow.physics.space import minimum_image
from freeflow.physics.units import Units, reduced_units
from freeflow.physics.validation import POSITIVE


@dataclasses.dataclass(frozen=True)
class EinsteinCrystal(CheckedParameters):
    """``U = (k / 2) sum_i |x_i - site_i|^2`` with minimum-image displacements.

    Particle i is tied to site i (the particles are labelled). ``spring_constant`` k is in
    energy per length squared (Hooke's convention, with the 1/2); ``k = 1 / (beta s^2)`` gives
    each Cartesian coordinate the standard deviation ``s``. The Frenkel-Ladd literature writes
    ``U = k' sum |d|^2`` without the 1/2, so its ``k' = 1 / (2 beta s^2)`` is
    ``k / 2`` here.
    """

    spring_constant: float
    units: Units = reduced_units()

    kind = "einstein_crystal"
    cutoff = 0.0
    #: ``k`` in energy / length^2.
    parameter_domains = (("spring_constant", POSITIVE),)

    @classmethod
    def from_width(cls, beta: float, width: float, units: Units = reduced_units()) -> "EinsteinCrystal":
        """Spring constant ``1 / (beta width^2)``: each coordinate has standard deviation
        ``width`` (length unit)."""
        return cls(spring_constant=1.0 / (beta * width**2), units=units)

    def neighbor_plan(self, box, sites, **kwargs):
        """``None``: springs tie particles to sites, there are no pairs to find."""
        return None

    def energy_fn(self, box, sites, *, max_displacement: float = 0.0, softened: bool = False,
                  neighbors: str = "auto", allow_sites: bool | None = None) -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]``; softening does not apply."""
        del max_displacement, softened, neighbors, allow_sites  # no pairs to find
        box = np.asarray(box)
        sites = np.asarray(sites)

        def energy(x):
            d = minimum_image(x - jnp.asarray(sites, x.dtype), jnp.asarray(box, x.dtype))
            return 0.5 * self.spring_constant * jnp.sum(d**2)

        return over_configurations(energy)


@dataclasses.dataclass(frozen=True)
class SymmetricEinsteinCrystal(CheckedParameters):
    """A harmonic crystal with the symmetries of the flow, and an exact partition function.

    Relative to particle 0 (which sits on site 0), every other particle is tied by a spring of
    constant ``k`` to the nearest lattice site. The exact energy is infinite unless each of
    sites 1..N-1 holds exactly one particle inside its sphere of radius ``R`` (half the
    nearest-neighbour distance), so the density is invariant under global translations and
    permutations of particles 1..N-1 and its partition function is known in closed form
    (``log_partition_function``). The softened (training) energy drops the infinite walls.
    Used to test estimators against an analytic free energy.
    """

    spring_constant: float
    units: Units = reduced_units()

    kind = "symmetric_einstein_crystal"
    cutoff = 0.0
    #: ``k`` in energy / length^2.
    parameter_domains = (("spring_constant", POSITIVE),)

    def neighbor_plan(self, box, sites, **kwargs):
        """``None``: springs tie particles to sites, there are no pairs to find."""
        return None

    def energy_fn(self, box, sites, *, max_displacement: float, softened: bool = False,
                  neighbors: str = "auto", allow_sites: bool | None = None) -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]``."""
        del neighbors, allow_sites
        box = np.asarray(box)
        others = np.asarray(sites)[1:] - np.asarray(sites)[0]
        radius2 = max_displacement**2

        def energy(x):
            b = jnp.asarray(box, x.dtype)
            y = minimum_image(x[1:] - x[0], b)
            d = minimum_image(y[:, None, :] - jnp.asarray(others, x.dtype)[None], b)
            d2 = jnp.sum(d**2, axis=-1)
            nearest = jnp.min(d2, axis=1)
            u = 0.5 * self.spring_constant * jnp.sum(nearest)
            if softened:
                return u
            occupancy = jnp.zeros(len(others), jnp.int32).at[jnp.argmin(d2, axis=1)].add(1)
            valid = jnp.all(nearest < radius2) & jnp.all(occupancy == 1)
            return jnp.where(valid, u, jnp.inf)

        return over_configurations(energy)

    def log_partition_function(self, system) -> float:
        """Exact ``ln Z`` over box^N: ``ln V + ln (N-1)! + (N-1) ln(P_R (2 pi / (beta k))^(3/2))``
        with ``P_R`` the Gaussian mass inside the sphere of radius R."""
        from math import erf, exp, lgamma, log, pi, sqrt
        n = system.num_particles
        s = 1.0 / sqrt(system.beta * self.spring_constant)
        r = 0.5 * system.nearest_neighbour_distance
        inside = erf(r / (s * sqrt(2.0))) - sqrt(2.0 / pi) * (r / s) * exp(-r * r / (2 * s * s))
        return (log(system.volume) + lgamma(n)
                + (n - 1) * (1.5 * log(2 * pi * s * s) + log(inside)))


def einstein_ln_z_fixed(beta: float, spring_constant: float, box, num_mobile: int) -> float:
    """``ln Z`` of ``num_mobile`` particles on springs ``(k / 2) |minimum_image(d)|^2``.

    Args:
      beta: inverse energy unit. spring_constant: energy / length^2. box: ``[3]`` edges.

    Returns:
      ``ln`` of the integral over the mobile particles' positions in the periodic box of
      ``exp(-beta U_EC)`` (length^(3 num_mobile)); exact, including the minimum-image cut.
    """
    bk = beta * spring_constant
    box = np.asarray(box, dtype=np.float64)
    per_axis = 0.5 * np.log(2 * np.pi / bk) + np.log(erf(box * np.sqrt(bk / 8.0)))
    return float(num_mobile * np.sum(per_axis))


def com_fixed_einstein_beta_f(num_particles: int, beta: float, width: float, volume: float,
                              reference_length: float = 1.0) -> float:
    """Published ``beta F / N`` of the Einstein crystal with fixed centre of mass.

    ``beta F_EC / N = (1/N) ln(N Lambda^3 / V) + (3/2)(1 - 1/N) ln(beta k Lambda^2 / pi)
    - (3 / (2N)) ln N`` with ``k = 1 / (2 beta width^2)`` (the Frenkel-Ladd literature's
    centre-of-mass-fixed reference); ``width``
    is the springs' standard deviation per coordinate (length unit).
    """
    n = num_particles
    k = 1.0 / (2.0 * beta * width**2)
    lam = reference_length
    return (math.log(n * lam**3 / volume) / n
            + 1.5 * (1 - 1 / n) * math.log(beta * k * lam**2 / math.pi)
            - 1.5 * math.log(n) / n)
