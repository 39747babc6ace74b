"""Gaussian crystals: analytic references for free-energy paths, sampled exactly.

A ``GaussianCrystal`` holds particle 0 on its site and gives the displacements ``d`` of the
other ``P = N - 1`` particles from their own sites the energy ``U_ref = (1/2) d^T K d``, with
``K`` a symmetric positive-definite ``[3P, 3P]`` stiffness (energy / length^2). Two choices
matter to freeflow:

* the Einstein crystal, ``K = k I`` (independent springs of constant ``k``);
* the harmonic crystal, ``K = H_mm``: the Hessian of the system's energy at its lattice with
  particle 0's rows and columns removed, the harmonic approximation of the crystal in the
  frame where particle 0 is held.

At inverse temperature ``beta`` the displacements are exactly Gaussian with precision
``beta K``, so ``sample`` draws independent configurations and
``ln Z_fixed = (3P / 2) ln(2 pi) - (1/2) ln det(beta K)`` exactly. That integral runs over all
of R^3P, while positions live in a periodic box with displacements taken as minimum images:
the two agree to within the Gaussian mass beyond half a box edge, ``exp(-L^2 / (8 s^2))`` with
``s`` the widest marginal standard deviation, which ``GaussianCrystal`` checks is below 1e-30.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.physics.space import minimum_image

__all__ = ["GaussianCrystal", "einstein_crystal", "harmonic_crystal"]


class GaussianCrystal:
    """A crystal of labelled particles with harmonic energy ``(1/2) d^T K d`` about its sites.

    Args:
      sites: ``[N, 3]`` lattice sites (length unit); particle 0 is held on site 0.
      box: ``[3]`` orthorhombic box edges (length unit).
      stiffness: ``K``, ``[3P, 3P]`` with rows ordered (particle 1..N-1, axis), energy /
        length^2, symmetric positive definite; or a positive number ``k`` for ``K = k I``
        (the Einstein crystal, evaluated without the matrix).
      beta: inverse temperature (inverse energy unit).
    """

    def __init__(self, sites, box, stiffness, beta: float):
        self.sites = np.asarray(sites, dtype=np.float64)
        self.box = np.asarray(box, dtype=np.float64)
        self.beta = float(beta)
        stiffness = np.asarray(stiffness, dtype=np.float64)
        size = 3 * (len(self.sites) - 1)
        isotropic = stiffness.ndim == 0
        if isotropic:
            if not stiffness > 0:
                raise ValueError(f"the spring constant must be positive; got {stiffness}")
        elif stiffness.shape != (size, size):
            raise ValueError(f"stiffness must be [{size}, {size}] for {len(self.sites)} "
                             f"particles with particle 0 held; got {stiffness.shape}")
        try:
            cholesky = (np.sqrt(self.beta * stiffness) * np.eye(size) if isotropic
                        else np.linalg.cholesky(self.beta * stiffness))
        except np.linalg.LinAlgError:
            raise ValueError("the stiffness is not positive definite: the lattice is not a "
                             "stable minimum with particle 0 held; use the Einstein "
                             "reference") from None
        self.stiffness = stiffness
        #: Standard-normal rows times this are displacement rows with covariance (beta K)^-1.
        self.colour = np.linalg.inv(cholesky)
        widest = math.sqrt(float(np.max(np.sum(self.colour**2, axis=0))))
        if float(np.min(self.box)) ** 2 / (8 * widest**2) < 70:
            raise ValueError(f"the reference's widest vibration ({widest:.3g}) is not small "
                             f"against the box {self.box.tolist()}: it would not be a crystal")
        #: ``ln`` of the integral of ``exp(-beta U_ref)`` over the mobile particles.
        self.ln_z_fixed = float(0.5 * size * math.log(2 * math.pi)
                                - np.sum(np.log(np.diag(cholesky))))
        stiff = jnp.asarray(stiffness, jnp.float32)
        sites32 = jnp.asarray(self.sites, jnp.float32)
        box32 = jnp.asarray(self.box, jnp.float32)

        def energy(x):
            d = minimum_image(x[1:] - sites32[1:], box32).reshape(-1)
            return 0.5 * (stiff * jnp.sum(d * d) if isotropic else d @ (stiff @ d))

        #: Pure ``U_ref(positions [N, 3]) -> scalar`` (energy unit).
        self.energy_fn = energy

    def sample(self, key, num_samples: int) -> np.ndarray:
        """``[num_samples, N, 3]`` independent configurations (float32, wrapped into the box)."""
        white = jax.random.normal(key, (num_samples, self.colour.shape[0]), jnp.float64
                                  if jax.config.read("jax_enable_x64") else jnp.float32)
        d = np.asarray(white, np.float64) @ self.colour
        x = np.broadcast_to(self.sites, (num_samples,) + self.sites.shape).copy()
        x[:, 1:] += d.reshape(num_samples, -1, 3)
        return np.mod(x, self.box).astype(np.float32)


def einstein_crystal(system, spring_constant: float) -> GaussianCrystal:
    """Independent springs ``(k / 2) |d_i|^2`` on the mobile particles of ``system``."""
    return GaussianCrystal(system.lattice, system.box, float(spring_constant), system.beta)


def harmonic_crystal(system) -> GaussianCrystal:
    """The harmonic approximation of ``system`` about its lattice, particle 0 held."""
    return GaussianCrystal(system.lattice, system.box, system.lattice_hessian()[3:, 3:],
                           system.beta)
