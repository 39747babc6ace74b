"""The normalizing-flow model of an atomic solid: base lattice, coupling flow, canonicalisation.

Sampling a configuration ``x`` of all ``N`` particles:

1. ``z ~ b``: the ``P = N - 1`` mobile particles from ``freeflow.flows.bases.LatticeBase`` (or
   ``HarmonicLatticeBase``); particle 0 is held at the box corner, the origin.
2. ``y = f(z)``: the coupling flow (``freeflow.flows.couplings``), a diffeomorphism of the torus^P.
3. ``x = wrap([0, y] + u)`` with one uniform translation ``u`` of the box for all particles.

The density over box^N is ``ln q(x) = ln b(z) - ln|det df/dz| - ln V``. Evaluating ``ln q`` at
an arbitrary ``x`` canonicalises it (positions relative to particle 0, wrapped, particle 0
dropped) and inverts the flow. The base is permutation-invariant and the layers equivariant, so
``q`` is invariant to global translations and to relabelling particles 1..N-1.

Positions are in the system's length unit; log densities are natural logs per
(length unit)^(3N).
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from freeflow.flows.bases import base_distribution
from freeflow.flows.config import ModelConfig, model_preset
from freeflow.flows.couplings import coupling_flow
from freeflow.physics.space import wrap


def canonicalize(positions, box):
    """Positions ``[..., N, 3]`` -> mobile positions ``[..., N - 1, 3]`` relative to particle 0,
    wrapped into ``[0, L)`` (length unit). Removes the global translation."""
    positions = jnp.asarray(positions)
    box = jnp.asarray(box, positions.dtype)
    return wrap(positions[..., 1:, :] - positions[..., :1, :], box)


def num_parameters(params) -> int:
    """Number of scalar parameters in a parameter pytree."""
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


class FlowModel:
    """Normalizing flow over configurations of ``system`` (see the module docstring).

    Args:
      system: a ``freeflow.physics.system.System`` (its lattice, box and potential kind are used).
      config: a ``ModelConfig``; default the ``"cpu"`` preset.

    All public methods are pure functions of ``(params, ...)``, jitted (``num_samples`` static),
    and safe under an outer ``jax.jit``, ``jax.vmap`` and ``jax.grad``.
    """

    def __init__(self, system, config: ModelConfig | None = None):
        self.system = system
        self.config = config if config is not None else model_preset("cpu")
        self.num_particles = int(system.num_particles)
        self.box = np.asarray(system.box, dtype=np.float64)
        self.log_volume = float(np.sum(np.log(self.box)))
        self.base = base_distribution(system, self.config)
        box, config = self.box, self.config

        def functions():
            flow = coupling_flow(box, config)

            def init(z):
                return flow.forward_and_log_det(z)

            return init, (flow.forward_and_log_det, flow.inverse_and_log_det)

        self._transformed = hk.without_apply_rng(hk.multi_transform(functions))
        self.forward = jax.jit(self._forward)
        self.inverse = jax.jit(self._inverse)
        self.sample_and_log_prob = jax.jit(self._sample_and_log_prob, static_argnums=2)
        self.sample_base = jax.jit(self._sample_base, static_argnums=1)
        self.log_prob = jax.jit(self._log_prob)
        self.sample_mobile = jax.jit(self._sample_mobile, static_argnums=2)
        self.mobile_log_prob = jax.jit(self._mobile_log_prob)
        self.base_log_prob = jax.jit(self._base_log_prob)

    @property
    def num_mobile(self) -> int:
        return self.num_particles - 1

    # -- parameters ----------------------------------------------------------------------------

    def init(self, key):
        """Fresh parameters; the conditioner heads are zero, so the flow is the identity."""
        dummy = jnp.asarray(self.base.mobile_sites, jnp.float32)
        return self._transformed.init(key, dummy)

    # -- the coupling flow on mobile positions -------------------------------------------------

    def _forward(self, params, z):
        """Flow ``z [..., P, 3] -> (y [..., P, 3], ln|det dy/dz| [...])`` (length unit)."""
        return self._transformed.apply[0](params, z)

    def _inverse(self, params, y):
        """Inverse flow ``y [..., P, 3] -> (z [..., P, 3], ln|det dz/dy| [...])``."""
        return self._transformed.apply[1](params, y)

    # -- full configurations ------------------------------------------------------------------

    def _translate(self, key, mobile):
        """Prepend particle 0 at the origin and add one uniform box translation per sample."""
        num_samples = mobile.shape[0]
        box = jnp.asarray(self.box, mobile.dtype)
        origin = jnp.zeros((num_samples, 1, 3), mobile.dtype)
        shift = box * jax.random.uniform(key, (num_samples, 1, 3), mobile.dtype)
        return wrap(jnp.concatenate([origin, mobile], axis=1) + shift, box)

    def _sample_and_log_prob(self, params, key, num_samples: int):
        """``num_samples`` configurations ``x [n, N, 3]`` in ``[0, L)`` and ``ln q(x) [n]``."""
        k_base, k_shift = jax.random.split(key)
        z, log_base = self.base.sample_and_log_prob(k_base, num_samples)
        y, log_det = self.forward(params, z)
        x = self._translate(k_shift, y)
        return x, log_base - log_det - self.log_volume

    def _sample_mobile(self, params, key, num_samples: int):
        """Mobile positions ``y [n, P, 3]`` (particle 0 at the origin, not translated) and
        their ``ln q_m(y) [n]``, the flow's density on box^P before the uniform translation."""
        z, log_base = self.base.sample_and_log_prob(key, num_samples)
        y, log_det = self.forward(params, z)
        return y, log_base - log_det

    def _mobile_log_prob(self, params, y):
        """``ln q_m(y)`` of mobile positions ``y [..., P, 3]`` (periodic): the inverse flow
        and the base, without the ``-ln V`` of the translation."""
        z, log_det = self.inverse(params, wrap(y, jnp.asarray(self.box, y.dtype)))
        return self.base.log_prob(z) + log_det

    def _sample_base(self, key, num_samples: int):
        """Base configurations ``[n, N, 3]`` (no flow), randomly translated like the model's."""
        k_base, k_shift = jax.random.split(key)
        return self._translate(k_shift, self.base.sample(k_base, num_samples))

    def _mobile_base_log_prob(self, z):
        # The base compares every particle with every site; chunk the batch to bound memory.
        batch_shape = z.shape[:-2]
        flat = z.reshape(-1, *z.shape[-2:])
        log_b = jax.lax.map(self.base.log_prob, flat, batch_size=16)
        return log_b.reshape(batch_shape)

    def _log_prob(self, params, x):
        """``ln q(x)`` of configurations ``x [..., N, 3]`` (any positions; periodic)."""
        x = jnp.asarray(x)
        self._check_shape(x)
        z, log_det = self.inverse(params, canonicalize(x, self.box))
        return self._mobile_base_log_prob(z) + log_det - self.log_volume

    def _base_log_prob(self, x):
        """Log density of the translated base (no flow) at ``x [..., N, 3]``."""
        x = jnp.asarray(x)
        self._check_shape(x)
        return self._mobile_base_log_prob(canonicalize(x, self.box)) - self.log_volume

    def _check_shape(self, x):
        if x.shape[-2:] != (self.num_particles, 3):
            raise ValueError(f"{self.system.name} has {self.num_particles} particles; positions "
                             f"must have shape [..., {self.num_particles}, 3], got {x.shape}")

    def __repr__(self):
        return f"FlowModel({self.system.name}, {self.config})"


class BaseModel:
    """A flow model's base alone, with ``FlowModel``'s sampling interface (``params`` ignored).

    A fresh ``FlowModel`` is exactly its base (the conditioners' heads start at zero), so this
    is the density of an untrained flow: ``x = wrap([0, z] + u)`` with ``z ~ b`` and one uniform
    box translation ``u``, ``ln q(x) = ln b(z) - ln V``, without the cost of the identity
    layers. LFEP and LBAR from it are the classical one-step free-energy perturbation and BAR
    from the base (for the harmonic bases, from the harmonic crystal) to the target, in the
    same conventions as a flow's.

    Args:
      system: a ``freeflow.physics.system.System``.
      config: a ``ModelConfig`` naming the base (``config.base``); default the ``cpu`` preset's.
    """

    def __init__(self, system, config: ModelConfig | None = None):
        self._flow = FlowModel(system, config)
        self.system, self.config, self.base = system, self._flow.config, self._flow.base
        self.sample_and_log_prob = jax.jit(self._sample_and_log_prob, static_argnums=2)
        self.log_prob = jax.jit(self._log_prob)

    def _sample_and_log_prob(self, params, key, num_samples: int):
        """``num_samples`` configurations ``x [n, N, 3]`` in ``[0, L)`` and ``ln q(x) [n]``;
        the same key gives the same samples as an untrained ``FlowModel``."""
        k_base, k_shift = jax.random.split(key)
        z, log_base = self.base.sample_and_log_prob(k_base, num_samples)
        return self._flow._translate(k_shift, z), log_base - self._flow.log_volume

    def _log_prob(self, params, x):
        """``ln q(x)`` of configurations ``x [..., N, 3]`` (any positions; periodic)."""
        return self._flow.base_log_prob(x)

    def __repr__(self):
        return f"BaseModel({self.system.name}, base={self.config.base!r})"
