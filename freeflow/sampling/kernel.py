"""One Metropolis-corrected HMC transition of one configuration: the move every sampler uses.

``freeflow.sampling.hmc`` (chains of one density, the MBAR states and the target samples) and
``freeflow.sampling.smc`` (the particles of an annealing) both move a configuration ``y [P,
D]`` with blackjax's HMC kernel, unit mass, under a density that may vanish (``-inf`` or NaN:
a proposal there is rejected), in a periodic box or none. This module builds that transition
once for both.

A fixed leapfrog step can make HMC trajectories periodic (a chain that returns to where it
started); drawing the step of each transition uniformly in ``step (1 +- STEP_JITTER)``,
independently of the state, breaks them and keeps every transition an exact kernel.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["STEP_JITTER", "hmc_init", "hmc_transition", "jittered"]

#: Relative jitter of the leapfrog step per transition (uniform in ``1 +- STEP_JITTER``).
STEP_JITTER = 0.1


def jittered(key, step_size, shape=()):
    """``step_size`` times factors uniform in ``1 +- STEP_JITTER`` (``shape``: one factor per
    entry; ``()``: one for all)."""
    return step_size * jax.random.uniform(key, shape, minval=1.0 - STEP_JITTER,
                                          maxval=1.0 + STEP_JITTER)


def hmc_init(position, logdensity: Callable):
    """The HMC state of one configuration under ``logdensity`` (its value and gradient)."""
    import blackjax  # loaded late: importing it starts JAX's backends (see freeflow.parallel)

    return blackjax.hmc.init(position, logdensity)


def hmc_transition(num_integration_steps: int, periodic: bool) -> Callable:
    """``transition(key, state, logdensity, step_size, box) -> (state, acceptance)``.

    One HMC transition of ``num_integration_steps`` leapfrog steps of ``step_size`` (length
    unit, unit mass) and its Metropolis correction. ``periodic``: wrap the position into
    ``[0, box)`` afterwards; the densities are periodic, so wrapping changes neither the
    density nor its gradient and only keeps float32 coordinates small (``box`` is ignored
    when not periodic). The acceptance probability of a proposal whose density is not finite
    is reported as 0 (blackjax rejects such proposals; its own rate would be NaN).
    """
    import blackjax

    kernel = blackjax.hmc.build_kernel()

    def transition(key, state, logdensity: Callable, step_size, box):
        ones = jnp.ones(state.position.size, state.position.dtype)
        state, info = kernel(key, state, logdensity, step_size, ones, num_integration_steps)
        if periodic:
            state = state._replace(position=jnp.mod(state.position, box))
        rate = info.acceptance_rate
        return state, jnp.where(jnp.isfinite(rate), rate, 0.0)

    return transition
