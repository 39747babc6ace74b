"""Gaussian crystals: analytic references for free-energy paths, sampled exactly.

A ``GaussianCrystal`` holds particle 0 on its site and gives the displacements ``d`` of the
other ``P = N - 1`` particles from their own sites the energy ``U_ref = (1/2) d^T K d``, with
``K`` a symmetric positive-definite ``[3P, 3P]`` stiffness (energy / length^2). Two choices
matter to freeflow:

* the Einstein crystal, ``K = k I`` (independent springs of constant ``k``);
* the harmonic crystal, ``K = H_mm``: the Hessian of the system's energy at its lattice with
  particle 0's rows and columns removed, the harmonic approximation of the crystal in the
  frame where particle 0 is held.

At inverse temperature ``beta / c`` (``c`` a temperature factor, 1 for the MBAR references)
the displacements are exactly Gaussian with precision ``A = beta K / c``. Its Cholesky factor
``A = L L^T`` (numpy float64, computed once, here) gives everything else:

* white coordinates ``eps = d L`` (rows), standard normal: ``|eps|^2 = d^T A d``;
* the colouring ``d = eps L^-1``, which turns standard-normal draws into exact draws;
* ``ln Z_fixed = (3P / 2) ln(2 pi) - sum ln diag L = (3P / 2) ln(2 pi) - (1/2) ln det A``,
  the log integral of ``exp(-beta U_ref / c)`` over the mobile particles.

That integral runs over all of R^3P, while positions live in a periodic box with displacements
taken as minimum images: the two agree to within the Gaussian mass beyond half a box edge,
``exp(-L^2 / (8 s^2))`` with ``s`` the widest marginal standard deviation, which
``GaussianCrystal`` checks is below ``exp(-70)`` (about 4e-31) unless told otherwise.

Users: the MBAR references of ``freeflow.workflows.baseline`` (``einstein_crystal``,
``harmonic_crystal``), the flow's harmonic base (``freeflow.flows.bases.harmonic_base``) and
the whitened coordinates of ``freeflow.workflows.frame``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.physics.space import minimum_image

__all__ = ["LN_BOX_TAIL_LIMIT", "GaussianCrystal", "einstein_crystal", "harmonic_crystal"]

#: Default largest ``ln`` of the Gaussian mass beyond half the shortest box edge.
LN_BOX_TAIL_LIMIT = -70.0


def _lower_cholesky(precision, size: int, remedy: str | None) -> np.ndarray:
    """Lower-triangular ``L`` with ``precision = L L^T`` (``[size, size]`` float64); a number
    ``a`` stands for ``a I``. Refuses a precision that is not positive definite."""
    if precision.ndim == 0:
        return np.sqrt(precision) * np.eye(size)
    try:
        return np.linalg.cholesky(precision)
    except np.linalg.LinAlgError:
        lowest = float(np.linalg.eigvalsh(precision)[0])
        raise ValueError(
            f"the stiffness is not positive definite (lowest eigenvalue of the precision "
            f"beta K / c: {lowest:.3g}): the lattice is not a stable minimum of the energy "
            f"with particle 0 held"
            + (f"; {remedy}" if remedy else "")) from None


class GaussianCrystal:
    """A crystal of labelled particles with harmonic energy ``(1/2) d^T K d`` about its sites.

    Args:
      sites: ``[N, 3]`` lattice sites (length unit); particle 0 is held on site 0.
      box: ``[3]`` orthorhombic box edges (length unit).
      stiffness: ``K``, ``[3P, 3P]`` with rows ordered (particle 1..N-1, axis), energy /
        length^2, symmetric positive definite; or a positive number ``k`` for ``K = k I``
        (the Einstein crystal, evaluated without the matrix).
      beta: inverse temperature (inverse energy unit).
      temperature_factor: ``c > 0``; the crystal is drawn at ``c`` times the temperature
        ``1 / beta``, with precision ``beta K / c`` (computed in that order; ``c = 1`` gives
        ``beta K`` to the bit).
      remedy: what to use instead, appended to the refusal of a stiffness that is not
        positive definite.
      ln_box_tail_limit: refuse a crystal whose mass beyond half the shortest box edge,
        ``exp(-L^2 / (8 s^2))``, has a larger ``ln`` than this; ``None``: no such check (for a
        caller that bounds the error of ignoring periodic images in its own way).

    Attributes:
      sites: ``[N, 3]`` float64, as given (length unit).
      box: ``[3]`` float64, as given (length unit).
      stiffness: ``K`` as a float64 array, ``[3P, 3P]`` or a number (energy / length^2).
      beta: the inverse temperature given (inverse energy unit).
      temperature_factor: ``c``.
      num_mobile: ``P = N - 1``.
      precision: ``A = beta K / c``, ``[3P, 3P]`` float64 in length^-2, or a number ``a`` for
        ``A = a I`` (Einstein crystal).
      whiten: ``L``, ``[3P, 3P]`` float64 lower triangular, ``A = L L^T``: a displacement row
        ``d`` times it is the white row ``eps = d L``, standard normal, ``|eps|^2 = d^T A d``.
      colour: ``L^-1``, ``[3P, 3P]`` float64: a standard-normal row ``eps`` times it is a
        displacement row ``d`` with covariance ``A^-1`` (length unit).
      widest_width: ``s``, the largest marginal standard deviation of one coordinate (length).
      ln_box_tail: ``-L^2 / (8 s^2)``, ``L`` the shortest box edge: the ``ln`` of the bound on
        the Gaussian mass beyond half a box edge, which ``ln_z_fixed`` leaves in.
      ln_z_fixed: ``ln`` of the integral of ``exp(-beta U_ref / c)`` over the mobile
        particles' displacements (``ln`` of a length^(3P)).
      energy_fn: pure ``U_ref(positions [N, 3]) -> scalar`` (energy unit), float32,
        minimum-image displacements.
    """

    def __init__(self, sites, box, stiffness, beta: float, temperature_factor: float = 1.0,
                 *, remedy: str | None = None,
                 ln_box_tail_limit: float | None = LN_BOX_TAIL_LIMIT):
        self.sites = np.asarray(sites, dtype=np.float64)
        self.box = np.asarray(box, dtype=np.float64)
        self.beta = float(beta)
        self.temperature_factor = float(temperature_factor)
        if not self.temperature_factor > 0:
            raise ValueError(f"the temperature factor must be positive; got {temperature_factor}")
        self.num_mobile = len(self.sites) - 1
        self.stiffness = _checked_stiffness(stiffness, self.num_mobile)
        size = 3 * self.num_mobile
        precision = self.beta * self.stiffness / self.temperature_factor
        self.precision = float(precision) if precision.ndim == 0 else precision
        self.whiten = _lower_cholesky(precision, size, remedy)
        self.colour = np.linalg.inv(self.whiten)
        self.widest_width = math.sqrt(float(np.max(np.sum(self.colour**2, axis=0))))
        self.ln_box_tail = -float(np.min(self.box)) ** 2 / (8 * self.widest_width**2)
        if ln_box_tail_limit is not None and self.ln_box_tail > ln_box_tail_limit:
            raise ValueError(f"the reference's widest vibration ({self.widest_width:.3g}) is "
                             f"not small against the box {self.box.tolist()}: it would not be "
                             f"a crystal")
        self.ln_z_fixed = float(0.5 * size * math.log(2 * math.pi)
                                - np.sum(np.log(np.diag(self.whiten))))
        self.energy_fn = _energy_fn(self.sites, self.box, self.stiffness)

    # -- white coordinates (pure JAX, any leading shape, the dtype of the input) ------------

    def whiten_displacements(self, d):
        """``eps [..., 3P] = d L`` from displacements ``d [..., P, 3]`` (site order)."""
        d = jnp.asarray(d)
        return d.reshape(*d.shape[:-2], -1) @ jnp.asarray(self.whiten, d.dtype)

    def colour_white_noise(self, eps):
        """Displacements ``d [..., P, 3] = eps L^-1`` (length unit) from ``eps [..., 3P]``."""
        eps = jnp.asarray(eps)
        return (eps @ jnp.asarray(self.colour, eps.dtype)).reshape(*eps.shape[:-1], -1, 3)

    # -- exact draws -------------------------------------------------------------------------

    def sample_displacements(self, key, num_samples: int) -> np.ndarray:
        """``[num_samples, P, 3]`` independent displacements (float64, length unit), covariance
        ``A^-1``: standard normals (float64 under ``jax_enable_x64``, else float32) times
        ``L^-1`` in float64."""
        white = jax.random.normal(key, (num_samples, self.colour.shape[0]), jnp.float64
                                  if jax.config.read("jax_enable_x64") else jnp.float32)
        d = np.asarray(white, np.float64) @ self.colour
        return d.reshape(num_samples, -1, 3)

    def sample(self, key, num_samples: int) -> np.ndarray:
        """``[num_samples, N, 3]`` independent configurations (float32, wrapped into the box):
        particle 0 on site 0, the others ``sample_displacements`` from their sites."""
        d = self.sample_displacements(key, num_samples)
        x = np.broadcast_to(self.sites, (num_samples,) + self.sites.shape).copy()
        x[:, 1:] += d
        return np.mod(x, self.box).astype(np.float32)


def _checked_stiffness(stiffness, num_mobile: int) -> np.ndarray:
    """``stiffness`` as float64: a positive number, or a symmetric ``[3P, 3P]`` matrix."""
    stiffness = np.asarray(stiffness, dtype=np.float64)
    size = 3 * num_mobile
    if stiffness.ndim == 0:
        if not stiffness > 0:
            raise ValueError(f"the spring constant must be positive; got {stiffness}")
        return stiffness
    if stiffness.shape != (size, size):
        raise ValueError(f"the stiffness must have shape [{size}, {size}] (3 (N - 1) mobile "
                         f"coordinates, particle 0 held); got {stiffness.shape}")
    if not np.allclose(stiffness, stiffness.T, rtol=1e-8,
                       atol=1e-12 * np.abs(stiffness).max()):
        raise ValueError("the stiffness must be symmetric")
    return stiffness


def _energy_fn(sites, box, stiffness):
    """Pure float32 ``U_ref(positions [N, 3]) = (1/2) d^T K d``, ``d`` the minimum-image
    displacements of particles 1..N-1 from their sites (energy unit)."""
    isotropic = stiffness.ndim == 0
    stiff = jnp.asarray(stiffness, jnp.float32)
    sites32 = jnp.asarray(sites, jnp.float32)
    box32 = jnp.asarray(box, jnp.float32)

    def energy(x):
        d = minimum_image(x[1:] - sites32[1:], box32).reshape(-1)
        return 0.5 * (stiff * jnp.sum(d * d) if isotropic else d @ (stiff @ d))

    return energy


def einstein_crystal(system, spring_constant: float) -> GaussianCrystal:
    """Independent springs ``(k / 2) |d_i|^2`` on the mobile particles of ``system``."""
    return GaussianCrystal(system.lattice, system.box, float(spring_constant), system.beta)


def harmonic_crystal(system) -> GaussianCrystal:
    """The harmonic approximation of ``system`` about its lattice, particle 0 held."""
    return GaussianCrystal(system.lattice, system.box, system.lattice_hessian()[3:, 3:],
                           system.beta, remedy="use the Einstein reference")
