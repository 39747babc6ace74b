"""Works of a flow's samples against a target: what LFEP, LBAR and training evaluate.

The work of ``x ~ q`` is ``beta Phi(x) = beta U(x) + ln q(x)`` (dimensionless), with the
target's exact energy; ``freeflow.estimators`` turns arrays of works into free energies.
"""

from __future__ import annotations

import jax
import numpy as np

from freeflow.progress import progress_bar

__all__ = ["model_works", "reverse_works"]


def model_works(model, params, system, key, num_samples: int,
                batch_size: int = 256) -> np.ndarray:
    """Works ``beta U(x) + ln q(x)`` (exact energy) of ``num_samples`` model samples, float64.

    Samples are drawn in batches of ``batch_size`` so that 10^5 to 10^6 fit in memory.
    Returns ``[num_samples]``.
    """
    energy = system.energy_fn()
    beta = system.beta

    @jax.jit
    def batch_work(k):
        x, log_q = model.sample_and_log_prob(params, k, batch_size)
        return beta * energy(x), log_q

    num_batches = -(-num_samples // batch_size)
    works = []
    with progress_bar(num_batches, f"flow works {system.name}", "batch") as bar:
        for b in range(num_batches):
            beta_u, log_q = jax.device_get(batch_work(jax.random.fold_in(key, b)))
            works.append(np.asarray(beta_u, np.float64) + np.asarray(log_q, np.float64))
            bar.update(1)
    return np.concatenate(works)[:num_samples]


def reverse_works(model, params, system, positions, batch_size: int = 256) -> np.ndarray:
    """``-(beta U(y) + ln q(y))`` of target samples ``y`` ``[m, N, 3]`` (exact energy), float64.

    What BAR needs of the target's side. It is ``+inf`` where the flow's density is zero (a
    target sample outside its support), which ``freeflow.estimators.bar.bar`` allows.
    Returns ``[m]``.
    """
    energy = jax.jit(system.energy_fn())
    log_prob = jax.jit(model.log_prob)
    out = []
    starts = range(0, len(positions), batch_size)
    with progress_bar(len(starts), f"target works {system.name}", "batch") as bar:
        for i in starts:
            y = jax.numpy.asarray(positions[i:i + batch_size])
            u = np.asarray(energy(y), np.float64)
            log_q = np.asarray(log_prob(params, y), np.float64)
            out.append(-(system.beta * u + log_q))
            bar.update(1)
    return np.concatenate(out)
