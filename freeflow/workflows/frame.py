"""The frame SMC anneals a crystal in: sites labelled relative to particle 0, whitened
coordinates, and the start and target densities there.

``freeflow.workflows.smc`` (an estimate at one temperature) and ``freeflow.workflows.sweep``
(along temperature) both anneal in it:

* ``SiteFrame``: particle 0 held on site 0 and the ``P = N - 1`` others labelled by the site
  they vibrate about; the crystal's region is every particle within half the
  nearest-neighbour distance of its own site.
* ``Whitening``: linear coordinates in which the harmonic crystal is standard normal, so that
  HMC moves the soft and the stiff normal modes alike.
* ``crystal_densities``: ``ln q`` and ``ln p`` (``-beta U`` on the crystal's region) as
  functions of the whitened coordinates of one configuration.

``harmonic_preconditioner`` gives the HMC chains of the MBAR route along temperature
(``freeflow.workflows.temperature_ladder``) the same coordinates.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.flows.bases import harmonic_base
from freeflow.physics.harmonic import GaussianCrystal, harmonic_crystal
from freeflow.physics.space import minimum_image, wrap
from freeflow.sampling.hmc import Preconditioner

__all__ = ["START_STEP_SIZE", "SiteFrame", "Whitening", "absolute_positions", "crystal_densities",
           "crystal_energy", "harmonic_preconditioner"]

#: The first leapfrog step in whitened coordinates (harmonic modes of period 2 pi); later
#: ones adapt.
START_STEP_SIZE = 0.2


@dataclasses.dataclass(frozen=True)
class SiteFrame:
    """The labelled frame of a crystal: mobile sites ``[P, 3]`` relative to site 0, the box,
    the crystal region's radius and site 0's absolute position."""

    sites: np.ndarray
    box: np.ndarray
    radius: float
    origin: np.ndarray

    @classmethod
    def of(cls, system, mobile_sites):
        return cls(np.asarray(mobile_sites, np.float64), np.asarray(system.box, np.float64),
                   0.5 * float(system.nearest_neighbour_distance),
                   np.asarray(system.lattice[0], np.float64))

    def offsets(self, y):
        """Minimum-image displacements ``[..., P, 3]`` of particle ``i`` from site ``i``."""
        return minimum_image(y - jnp.asarray(self.sites, y.dtype), jnp.asarray(self.box, y.dtype))

    def inside(self, y):
        """Whether every particle is within ``radius`` of its own site (``[...]``)."""
        return jnp.all(jnp.sum(self.offsets(y) ** 2, axis=-1) < self.radius**2, axis=-1)

    def full(self, y):
        """All ``N`` absolute positions ``[..., N, 3]`` from mobile ones (site 0's frame)."""
        origin = jnp.asarray(self.origin, y.dtype)
        box = jnp.asarray(self.box, y.dtype)
        zero = jnp.broadcast_to(jnp.zeros(3, y.dtype), y.shape[:-2] + (1, 3))
        return wrap(jnp.concatenate([zero, y], axis=-2) + origin, box)

    def label(self, y):
        """Relabel each configuration ``y [n, P, 3]`` so that particle ``i`` is the one nearest
        site ``i``, where that is a one-to-one assignment (others are left as they are: they
        lie outside the crystal region and get weight zero)."""
        def one(c):
            d = minimum_image(c[:, None, :] - jnp.asarray(self.sites, c.dtype),
                              jnp.asarray(self.box, c.dtype))
            nearest = jnp.argmin(jnp.sum(d**2, axis=-1), axis=-1)
            bijective = jnp.all(jnp.bincount(nearest, length=len(self.sites)) == 1)
            return jnp.where(bijective, c[jnp.argsort(nearest)], c)
        return jax.lax.map(one, y, batch_size=64)


@dataclasses.dataclass(frozen=True)
class Whitening:
    """Linear coordinates ``u`` of the mobile displacements ``d = y - sites`` (site order):
    ``d = u C`` with ``C`` the colouring of a harmonic crystal
    (``freeflow.physics.harmonic.GaussianCrystal.colour``; ``u`` is standard normal under it,
    and ``whiten`` its inverse), or ``C = width I``. Annealing in ``u`` is HMC with the
    harmonic crystal's precision as its mass matrix: every normal mode then has the same
    period, so one trajectory moves the soft and the stiff modes alike. The map is linear, so
    ``Z_p / Z_q`` is unchanged. The crystal is the base's own where the base is a harmonic
    one (``HarmonicLatticeBase.crystal``), else the system's ``harmonic_base``."""

    colour: np.ndarray
    whiten: np.ndarray
    kind: str

    @classmethod
    def of(cls, system, base=None):
        crystal = getattr(base, "crystal", None)
        if crystal is None:
            try:
                crystal = harmonic_base(system).crystal
            except ValueError:  # not a stable minimum: no harmonic crystal to scale by
                crystal = None
        if crystal is not None:
            return cls(np.asarray(crystal.colour, np.float64),
                       np.asarray(crystal.whiten, np.float64), "harmonic")
        width = float(system.einstein_width)
        size = 3 * (system.num_particles - 1)
        return cls(width * np.eye(size), np.eye(size) / width, "einstein")

    def displacement(self, u):
        """``d [..., P, 3]`` from ``u [..., 3P]``."""
        d = u @ jnp.asarray(self.colour, u.dtype)
        return d.reshape(*u.shape[:-1], -1, 3)

    def coordinates(self, d):
        """``u [..., 3P]`` from ``d [..., P, 3]``."""
        return d.reshape(*d.shape[:-2], -1) @ jnp.asarray(self.whiten, d.dtype)


def absolute_positions(frame: SiteFrame, whitening: "Whitening", u):
    """All ``N`` absolute positions ``[..., N, 3]`` of whitened configurations ``u [..., 3P]``,
    in ``u``'s precision."""
    return frame.full(jnp.asarray(frame.sites, u.dtype) + whitening.displacement(u))


def crystal_energy(system, frame: SiteFrame, whitening: "Whitening"):
    """``U(u)`` of one whitened configuration ``u [3P]`` where every particle is within ``R``
    of its own site (the displacements themselves, not their images: one copy of the crystal
    region), ``+inf`` elsewhere."""
    energy = system.energy_fn(strays="nan")

    def of(u):
        d = whitening.displacement(u)
        inside = jnp.all(jnp.sum(d**2, axis=-1) < frame.radius**2)
        return jnp.where(inside, energy(frame.full(jnp.asarray(frame.sites, u.dtype) + d)),
                         jnp.inf)

    return of


def crystal_densities(system, frame: SiteFrame, whitening: "Whitening", log_start):
    """``(ln q(u), ln p(u))`` in the whitened coordinates of one configuration ``u [3P]``:
    ``ln p = -beta U`` on the crystal's region (``crystal_energy``), ``-inf`` elsewhere."""
    beta = float(system.beta)
    sites = jnp.asarray(frame.sites, jnp.float32)
    energy = crystal_energy(system, frame, whitening)

    def log_start_u(u):
        return log_start(sites + whitening.displacement(u))

    def log_target_u(u):
        return -beta * energy(u)

    return log_start_u, log_target_u


def harmonic_preconditioner(system, temperature: float | None = None) -> Preconditioner:
    """HMC coordinates in which ``system``'s harmonic crystal (particle 0 held) is standard
    normal at ``temperature`` (default the system's; ``Preconditioner``,
    ``scaled(sqrt(T / T_0))`` carries it to another temperature). Raises ``ValueError`` for a
    lattice that is not a stable minimum (``freeflow.physics.harmonic.GaussianCrystal``)."""
    if temperature is None:
        crystal = harmonic_crystal(system)
    else:  # the system's own (cached) Hessian, not a new System's
        crystal = GaussianCrystal(system.lattice, system.box, system.lattice_hessian()[3:, 3:],
                                  system.units.beta(temperature),
                                  remedy="use the Einstein reference")
    return Preconditioner(np.mod(np.asarray(system.lattice, np.float64), system.box),
                          crystal.colour, crystal.whiten)
