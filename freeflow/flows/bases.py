"""The flow's base distribution: a randomly permuted, thermally smeared lattice.

Particle 0 of the crystal is held at the box corner (the origin) by the translation
canonicalisation of ``freeflow.flows.model``, so the base distribution lives on the other
``P = N - 1`` "mobile" particles. Each mobile particle sits on its own lattice site (the site at the
box corner removed), displaced by isotropic Gaussian noise of standard deviation ``s``
truncated to the ball of radius ``R`` = half the nearest-neighbour distance, and the particle
labels are then shuffled uniformly at random. The balls of different sites are disjoint, so any
configuration has at most one assignment of particles to sites, and the density is

    ln b(z) = sum_i ln g(z_i - site_{a(i)}) - ln(P!)

when every ball holds exactly one particle (``a`` the assignment), and ``-inf`` otherwise. Here
``g(d) = N(d; 0, s^2 I) / P(|d| < R)`` with the Gaussian ball probability

    P(|d| < R) = erf(rho / sqrt 2) - sqrt(2 / pi) rho exp(-rho^2 / 2),    rho = R / s.

``HarmonicLatticeBase`` replaces the isotropic noise by the harmonic crystal (correlated
Gaussian displacements with the precision ``beta H`` of the energy's Hessian at the lattice: a
``freeflow.physics.harmonic.GaussianCrystal``),
which starts training much closer to a crystal's Boltzmann distribution.

Lengths (positions, ``noise_scale``, ``radius``) are in the system's length unit; log densities
are natural logs of densities per (length unit)^(3P).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import brentq

from freeflow.flows.config import ModelConfig, default_noise_scale
from freeflow.physics.harmonic import GaussianCrystal
from freeflow.physics.lattice import nearest_neighbour_distance
from freeflow.physics.space import minimum_image, wrap


def gaussian_ball_log_probability(radius: float, scale: float) -> float:
    """``ln P(|d| < radius)`` for ``d ~ N(0, scale^2 I_3)`` (float64, stable for large rho)."""
    rho = radius / scale
    inside = math.erf(rho / math.sqrt(2.0)) - math.sqrt(2.0 / math.pi) * rho * math.exp(
        -0.5 * rho * rho)
    if inside > 0.5:
        # Outside mass is tiny here: compute it directly so ln(1 - outside) keeps its digits.
        outside = math.erfc(rho / math.sqrt(2.0)) + math.sqrt(2.0 / math.pi) * rho * math.exp(
            -0.5 * rho * rho)
        return math.log1p(-outside)
    return math.log(inside)


def truncated_chi3_cdf(r, rho):
    """CDF at ``r`` of the radius ``|d| / s`` of a 3-D standard Gaussian truncated at ``rho``.

    ``r`` and ``rho`` are in units of the noise scale ``s`` (dimensionless).
    """
    def untruncated(t):
        return (jax.scipy.special.erf(t / jnp.sqrt(2.0))
                - jnp.sqrt(2.0 / jnp.pi) * t * jnp.exp(-0.5 * t * t))

    return untruncated(jnp.clip(r, 0.0, rho)) / untruncated(rho)


def mobile_sites(sites, box):
    """``(box [3], mobile sites [N - 1, 3])`` in float64: sites relative to site 0, wrapped
    into the box, site 0 dropped (length unit)."""
    sites = np.asarray(sites, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    if sites.ndim != 2 or sites.shape[1] != 3 or len(sites) < 2:
        raise ValueError(f"sites must have shape [N >= 2, 3]; got {sites.shape}")
    return box, np.mod(sites[1:] - sites[0], box)


def site_offsets(z, sites, box):
    """Minimum-image offsets ``[..., particle, site, 3]`` of positions ``z [..., P, 3]`` from
    the ``P`` mobile sites (length unit), in the dtype of ``z`` (float32 for integers)."""
    z = jnp.asarray(z)
    if z.shape[-2:] != sites.shape:
        raise ValueError(f"expected positions [..., {len(sites)}, 3]; got {z.shape}")
    dtype = z.dtype if jnp.issubdtype(z.dtype, jnp.floating) else jnp.float32
    return minimum_image(z[..., :, None, :].astype(dtype) - jnp.asarray(sites, dtype),
                         jnp.asarray(box, dtype))


def place_and_shuffle(key, sites, box, displacement):
    """Put displacements ``[n, P, 3]`` (site order) on their sites, wrap into the box and
    relabel the particles of each sample by an independent uniform permutation."""
    num_samples, num_mobile = displacement.shape[:2]
    positions = wrap(jnp.asarray(sites, displacement.dtype) + displacement,
                     jnp.asarray(box, displacement.dtype))
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_mobile))(
        jax.random.split(key, num_samples))
    return jnp.take_along_axis(positions, perms[..., None], axis=1)


class LatticeBase:
    """Truncated-Gaussian smeared, randomly permuted lattice on the ``P = N - 1`` mobile sites.

    Args:
      sites: ``[N, 3]`` lattice sites (length unit) of the full crystal; site 0 is the one the
        canonicalisation fixes. Sites are taken relative to site 0 and wrapped into the box,
        so site 0 lands on the origin.
      box: ``[3]`` orthorhombic box edges (length unit).
      noise_scale: standard deviation ``s`` of the Gaussian noise per axis (length unit).
      radius: truncation radius ``R`` (length unit); default half the nearest-neighbour
        distance of the sites, the largest radius for which the balls do not overlap.
      num_rejection_rounds: Gaussian proposals drawn per particle before falling back to
        inverse-CDF sampling of the radius; ``None`` picks enough rounds that the fallback is
        needed with probability below 1e-6 per particle; 0 uses the inverse CDF only. Any
        value gives exact samples.
    """

    def __init__(self, sites, box, noise_scale: float, radius: float | None = None,
                 num_rejection_rounds: int | None = None):
        if not noise_scale > 0:
            raise ValueError(f"noise_scale must be positive; got {noise_scale}")
        self.box, self.mobile_sites = mobile_sites(sites, box)
        if radius is None:
                radius = 0.5 * nearest_neighbour_distance(
                np.vstack([np.zeros(3), self.mobile_sites]), self.box)
        if not radius > 0:
            raise ValueError(f"truncation radius must be positive; got {radius}")
        self.radius = float(radius)
        self.noise_scale = float(noise_scale)
        self.num_mobile = len(self.mobile_sites)
        self.log_ball_probability = gaussian_ball_log_probability(self.radius, self.noise_scale)
        # Per-particle constant of ln g(d) = -|d|^2 / (2 s^2) + log_density_offset.
        self.log_density_offset = (-1.5 * math.log(2.0 * math.pi * self.noise_scale**2)
                                   - self.log_ball_probability)
        self.log_num_permutations = math.lgamma(self.num_mobile + 1)
        if num_rejection_rounds is None:
            accept = math.exp(self.log_ball_probability)
            if accept >= 1.0 - 1e-12:
                num_rejection_rounds = 1
            else:
                num_rejection_rounds = math.ceil(math.log(1e-6) / math.log1p(-accept))
            num_rejection_rounds = int(min(max(num_rejection_rounds, 1), 16))
        if num_rejection_rounds < 0:
            raise ValueError(f"num_rejection_rounds must be >= 0; got {num_rejection_rounds}")
        self.num_rejection_rounds = int(num_rejection_rounds)
        # Jitted once per instance: eager dispatch of the many small ops is far slower.
        self.sample_and_log_prob = jax.jit(self._sample_and_log_prob, static_argnums=1)
        self.log_prob = jax.jit(self._log_prob)

    # -- displacements -------------------------------------------------------------------------

    def displacement_log_density(self, squared_norm):
        """``ln g(d)`` from ``|d|^2`` (inside the ball; no check), per length unit cubed."""
        return -0.5 * squared_norm / self.noise_scale**2 + self.log_density_offset

    def _sample_displacements(self, key, shape):
        """Exact draws ``[*shape, 3]`` from the ball-truncated Gaussian (length unit)."""
        rounds = self.num_rejection_rounds
        k_proposal, k_direction, k_radius = jax.random.split(key, 3)
        if rounds > 0:
            proposals = self.noise_scale * jax.random.normal(k_proposal, (rounds, *shape, 3))
            accepted = jnp.sum(proposals**2, axis=-1) < self.radius**2
            first = jnp.argmax(accepted, axis=0)
            chosen = jnp.take_along_axis(proposals, first[None, ..., None], axis=0)[0]
            any_accepted = jnp.any(accepted, axis=0)
        else:
            chosen = jnp.zeros((*shape, 3))
            any_accepted = jnp.zeros(shape, bool)
        # Fallback when every proposal left the ball: the radius by inverse CDF (bisection,
        # monotone, so exact to float precision) and an isotropic direction. Independent of
        # the rejected proposals, so the mixture of both branches is exactly the target.
        direction = jax.random.normal(k_direction, (*shape, 3))
        direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
        rho = self.radius / self.noise_scale
        target = jax.random.uniform(k_radius, shape)

        def bisect(_, bounds):
            low, high = bounds
            mid = 0.5 * (low + high)
            below = truncated_chi3_cdf(mid, rho) < target
            return jnp.where(below, mid, low), jnp.where(below, high, mid)

        low, high = jax.lax.fori_loop(
            0, 40, bisect, (jnp.zeros(shape), jnp.full(shape, rho)))
        fallback = direction * (self.noise_scale * 0.5 * (low + high))[..., None]
        return jnp.where(any_accepted[..., None], chosen, fallback)

    # -- distribution ----------------------------------------------------------------------

    def _sample_and_log_prob(self, key, num_samples: int):
        """Draw ``num_samples`` configurations of the mobile particles.

        Returns:
          z: ``[num_samples, P, 3]`` positions (length unit) wrapped into ``[0, L)``.
          log_prob: ``[num_samples]`` base log density (natural log, per length^(3P)).
        """
        k_noise, k_perm = jax.random.split(key)
        shape = (num_samples, self.num_mobile)
        displacement = self._sample_displacements(k_noise, shape)
        log_prob = (jnp.sum(self.displacement_log_density(jnp.sum(displacement**2, -1)), -1)
                    - self.log_num_permutations)
        return place_and_shuffle(k_perm, self.mobile_sites, self.box, displacement), log_prob

    def sample(self, key, num_samples: int):
        """``[num_samples, P, 3]`` base configurations (length unit)."""
        return self.sample_and_log_prob(key, num_samples)[0]

    def _log_prob(self, z):
        """Exact base log density of any configuration ``z [..., P, 3]`` (length unit).

        Periodic: displacements to the sites are minimum-image. ``-inf`` unless every site's
        ball holds exactly one particle.
        """
        # [..., particle, site]: the balls are disjoint, so a row has at most one True.
        displacement = site_offsets(z, self.mobile_sites, self.box)
        squared = jnp.sum(displacement**2, axis=-1)
        inside = squared < self.radius**2
        per_pair = jnp.where(inside, self.displacement_log_density(squared), 0.0)
        one_site_each = jnp.all(jnp.sum(inside, axis=-1) == 1, axis=-1)
        one_particle_each = jnp.all(jnp.sum(inside, axis=-2) == 1, axis=-1)
        log_prob = jnp.sum(per_pair, axis=(-2, -1)) - self.log_num_permutations
        return jnp.where(one_site_each & one_particle_each, log_prob, -jnp.inf)

    def labelled_log_prob(self, z):
        """``ln b(z) + ln P!`` for ``z [..., P, 3]`` with particle ``i`` in the ball of site
        ``i`` (``-inf`` otherwise): the density of the base before its labels are shuffled.
        O(P) where ``log_prob`` compares every particle with every site."""
        d = minimum_image(jnp.asarray(z) - jnp.asarray(self.mobile_sites, z.dtype),
                          jnp.asarray(self.box, z.dtype))
        squared = jnp.sum(d**2, axis=-1)
        log_prob = jnp.sum(self.displacement_log_density(squared), axis=-1)
        return jnp.where(jnp.all(squared < self.radius**2, axis=-1), log_prob, -jnp.inf)


class HarmonicLatticeBase:
    """The harmonic crystal on the ``P = N - 1`` mobile sites, randomly permuted.

    The displacements ``d [3P]`` (site order) of the mobile particles from their sites are
    those of a ``freeflow.physics.harmonic.GaussianCrystal``: Gaussian with precision
    ``A = beta H_mm / c``. ``H_mm`` is the energy's Hessian at the lattice with the rows and
    columns of particle 0 removed, which is the harmonic approximation of the target *given*
    particle 0 at its site - exactly the frame of the translation canonicalisation; ``c`` is a
    temperature factor (``harmonic_base``). Then the particle labels are shuffled. With the
    crystal's ``A = L L^T`` and ``ln Z_fixed = (3P / 2) ln 2 pi - sum ln diag L``,

        ln b(z) = -|d L|^2 / 2 - ln Z_fixed - ln(P!).

    Unlike ``LatticeBase`` the Gaussian is not truncated. The formula keeps one term of the
    sum over permutations (and over periodic images) of the symmetrised density; the others
    need a particle at least half the nearest-neighbour distance ``R`` from its site, ``rho``
    = ``R`` over the largest marginal standard deviation of one particle, so they are of order
    ``exp(-rho^2 / 2)`` (``rho`` is 5.3 to 6.8 for the named small systems). Construction
    refuses ``rho < 3``. ``log_prob`` assigns each particle to
    its nearest site and is ``-inf`` if two particles share one.

    Args:
      crystal: the ``GaussianCrystal`` of the lattice (particle 0 held on site 0); its sites
        are taken relative to site 0 and wrapped into the box, so site 0 lands on the origin.
        ``harmonic_base`` builds it for a system, with the refusal of an unstable lattice
        naming the other bases.

    Attributes:
      crystal: that ``GaussianCrystal`` (precision, whitening, colouring, ``ln Z_fixed``).
      box: ``[3]`` float64 box edges (length unit).
      mobile_sites: ``[P, 3]`` float64 sites relative to site 0, wrapped (length unit).
      num_mobile: ``P``.
      radius: ``R``, half the nearest-neighbour distance (length unit).
      rho: ``R`` over the largest marginal standard deviation of one particle.
      log_normalizer: ``-ln Z_fixed - ln(P!)``, the constant of ``ln b``.
    """

    def __init__(self, crystal: GaussianCrystal):
        self.crystal = crystal
        self.box, self.mobile_sites = mobile_sites(crystal.sites, crystal.box)
        self.num_mobile = len(self.mobile_sites)
        if np.ndim(crystal.precision) != 2:
            raise ValueError("the harmonic base needs a crystal with a stiffness matrix; an "
                             "Einstein crystal is the 'einstein' base")
        covariance = np.linalg.inv(crystal.precision)
        marginal = max(np.linalg.eigvalsh(covariance[3 * i:3 * i + 3, 3 * i:3 * i + 3])[-1]
                       for i in range(self.num_mobile))
        self.radius = 0.5 * nearest_neighbour_distance(
            np.vstack([np.zeros(3), self.mobile_sites]), self.box)
        self.rho = float(self.radius / math.sqrt(marginal))
        if self.rho < 3.0:
            raise ValueError(f"the harmonic crystal's vibrations (largest marginal width "
                             f"{math.sqrt(marginal):.3g}) are comparable with half the "
                             f"nearest-neighbour distance ({self.radius:.3g}): particles would "
                             f"swap sites; {_OTHER_BASES}")
        self.log_normalizer = -crystal.ln_z_fixed - math.lgamma(self.num_mobile + 1)
        self.sample_and_log_prob = jax.jit(self._sample_and_log_prob, static_argnums=1)
        self.log_prob = jax.jit(self._log_prob)

    @property
    def precision(self) -> np.ndarray:
        """``[3P, 3P]`` float64 precision ``A`` of the site-ordered displacements, length^-2."""
        return self.crystal.precision

    @property
    def colour(self) -> np.ndarray:
        """``[3P, 3P]`` float64 ``L^-1``: standard-normal rows ``eps`` times this are
        displacement rows ``d`` (site order, (particle, axis)) with covariance ``A^-1``."""
        return self.crystal.colour

    def _log_density(self, white):
        return -0.5 * jnp.sum(white**2, axis=-1) + self.log_normalizer

    def _sample_and_log_prob(self, key, num_samples: int):
        """``z [num_samples, P, 3]`` (length unit, in ``[0, L)``) and ``ln b(z) [num_samples]``."""
        k_noise, k_perm = jax.random.split(key)
        white = jax.random.normal(k_noise, (num_samples, 3 * self.num_mobile))
        displacement = self.crystal.colour_white_noise(white)
        positions = place_and_shuffle(k_perm, self.mobile_sites, self.box, displacement)
        return positions, self._log_density(white)

    def sample(self, key, num_samples: int):
        """``[num_samples, P, 3]`` base configurations (length unit)."""
        return self.sample_and_log_prob(key, num_samples)[0]

    def _log_prob(self, z):
        """Base log density of any configuration ``z [..., P, 3]`` (length unit; periodic)."""
        offsets = site_offsets(z, self.mobile_sites, self.box)  # [..., particle, site, 3]
        nearest = jnp.argmin(jnp.sum(offsets**2, axis=-1), axis=-1)
        displacement = jnp.take_along_axis(offsets, nearest[..., None, None], axis=-2)[..., 0, :]
        one_each = jnp.all(jax.nn.one_hot(nearest, self.num_mobile).sum(-2) == 1, axis=-1)
        # Site order: the particle assigned to site s goes to row s.
        order = jnp.argsort(nearest, axis=-1)
        in_site_order = jnp.take_along_axis(displacement, order[..., None], axis=-2)
        white = self.crystal.whiten_displacements(in_site_order)
        return jnp.where(one_each, self._log_density(white), -jnp.inf)

    def labelled_log_prob(self, z):
        """``ln b(z) + ln P!`` for ``z [..., P, 3]`` taking particle ``i`` to vibrate about site
        ``i``: the Gaussian before the labels are shuffled (equal to the symmetrised density
        times ``P!`` wherever particle ``i`` is nearest to site ``i``). Cost of one
        ``[3P] x [3P, 3P]`` product, no particle-site search."""
        d = minimum_image(jnp.asarray(z) - jnp.asarray(self.mobile_sites, z.dtype),
                          jnp.asarray(self.box, z.dtype))
        white = self.crystal.whiten_displacements(d)
        return self._log_density(white) + math.lgamma(self.num_mobile + 1)


#: What to use where the harmonic base does not exist.
_OTHER_BASES = "use the 'einstein' or 'truncated_gaussian' base (freeflow train --base einstein)"


def harmonic_base(system, temperature_factor: float = 1.0) -> HarmonicLatticeBase:
    """The harmonic crystal of ``system`` at ``temperature_factor`` times its temperature.

    Particle 0 is held at its site; the others' displacements are Gaussian with precision
    ``beta H_mm / temperature_factor`` (``H_mm``: ``system.lattice_hessian()`` without particle
    0's rows and columns): ``GaussianCrystal(lattice, box, H_mm, beta, temperature_factor)``.
    Raises ``ValueError`` (naming the fix) for a lattice that is not a stable minimum. The
    crystal's box check is off: the base's own ``rho >= 3`` bounds the terms it leaves out
    (neighbouring sites are nearer than periodic images).
    """
    crystal = GaussianCrystal(
        system.lattice, system.box, system.lattice_hessian()[3:, 3:], system.beta,
        temperature_factor,
        remedy=f"no harmonic base exists: {_OTHER_BASES}", ln_box_tail_limit=None)
    return HarmonicLatticeBase(crystal)


@functools.lru_cache(maxsize=4)
def effective_temperature_factor(system, num_samples: int = 1024, seed: int = 0) -> float:
    """Factor ``c`` by which the harmonic crystal's temperature is scaled to obey the virial.

    The harmonic crystal (particle 0 held at its site, the others Gaussian about theirs with
    covariance ``c (beta H_mm)^-1``) is the best Gaussian of its shape in reverse KL when its
    displacements ``d`` satisfy the equipartition (virial) theorem of the target, ``<d .
    grad(beta U)> = 3 (N - 1)``: that is the stationarity condition of ``KL(c)``. ``c < 1``
    for a crystal stiffer than its Hessian (Lennard-Jones at T* = 2, whose repulsive wall
    dominates the vibrations), ``c > 1`` for a softer one. Solved by Brent's method in ``ln c``
    on ``num_samples`` fixed standard-normal draws (common random numbers, so the answer is a
    deterministic function of ``seed``), with the exact energy; dimensionless. Its relative
    sampling error, ``sqrt(2 / (3 (N - 1) num_samples))`` for a nearly harmonic crystal (0.5%
    for 32 particles), costs the base about ``3 (N - 1) / 4`` times its square in KL (5e-4
    nats there), since KL is flat at its minimum.

    The solve takes seconds, so results are cached per ``System`` object (by identity: a
    system rebuilt from the same definition is solved again) for the life of the process.
    """
    # harmonic_base refuses a lattice that is not a stable minimum.
    colour = harmonic_base(system).crystal.colour
    white = np.random.default_rng(seed).standard_normal((num_samples, colour.shape[0]))
    unit = (white @ colour).astype(np.float32).reshape(num_samples, -1, 3)
    lattice = jnp.asarray(system.lattice, jnp.float32)
    energy = system.energy_fn()
    dof = unit.shape[1] * 3
    beta = system.beta

    @jax.jit
    def virial(d):
        positions = jnp.concatenate(
            [jnp.broadcast_to(lattice[:1], (len(d), 1, 3)), lattice[1:] + d], axis=1)
        force = -jax.grad(lambda x: jnp.sum(energy(x)))(positions)[:, 1:]
        return -beta * jnp.sum(d * force, axis=(-2, -1))

    def excess(log_c):
        scale = np.float32(np.exp(0.5 * log_c))
        total = sum(float(jnp.sum(virial(jnp.asarray(scale * unit[i:i + 512]))))
                    for i in range(0, num_samples, 512))
        value = total / num_samples / dof - 1.0
        # Overlapping particles: the configuration is far too wide.
        return value if np.isfinite(value) else 1e30

    low, high = -0.5, 0.5
    for _ in range(12):
        if excess(low) < 0:
            break
        low -= 1.0
    for _ in range(12):
        if excess(high) > 0:
            break
        high += 1.0
    if not excess(low) < 0 < excess(high):
        raise ValueError(f"{system.name}: no temperature factor in [{np.exp(low):.3g}, "
                         f"{np.exp(high):.3g}] makes the harmonic crystal obey the virial "
                         f"theorem; use the 'harmonic' or 'einstein' base")
    return float(np.exp(brentq(excess, low, high, xtol=1e-3)))


def base_distribution(system, config: ModelConfig):
    """The base distribution that ``config.base`` names, built for ``system``."""
    if config.base == "harmonic":
        return harmonic_base(system)
    if config.base == "effective_harmonic":
        return harmonic_base(system, effective_temperature_factor(system))
    if config.base == "einstein":
        width = system.einstein_width
    else:
        width = (config.noise_scale if config.noise_scale is not None
                 else default_noise_scale(system.potential))
    return LatticeBase(system.lattice, system.box, width)
