"""Learned free-energy perturbation (LFEP) from the works of model samples, and its diagnostics.

The work of a model sample ``x ~ q`` is ``beta Phi(x) = beta U(x) + ln q(x)`` (dimensionless)
and its importance weight ``w = exp(-beta Phi)``, so that ``Z_q-covered = E_q[w]`` exactly.
``lfep`` turns an array of works into ``beta F / N`` in the convention of
``freeflow.estimators.conventions``, with a bootstrap standard error, the effective sample size
and the Pareto k of the weights' tail. Drawing the samples is the caller's business
(``freeflow.workflows.estimate.lfep_from_model``).
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.special import logsumexp

from freeflow.estimators.conventions import beta_f_per_particle, log_z_from_flow
from freeflow.estimators.result import FreeEnergy


def effective_sample_size(log_weights) -> float:
    """``(sum w)^2 / (n sum w^2)``, as a fraction of n, computed from log-weights."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    return float(np.exp(2 * logsumexp(log_weights) - logsumexp(2 * log_weights))
                 / len(log_weights))




def pareto_k(log_weights) -> float:
    """Shape ``k`` of a generalised Pareto distribution fitted to the largest weights.

    ``P(w > t)`` falls like ``t^(-1/k)`` in the tail, so the weights have ``1/k`` finite
    moments: ``k < 0.5`` is a finite variance (the bootstrap error means something), ``k >
    result.PARETO_K_LIMIT`` an estimate dominated by weights not yet drawn. The tail is the largest
    ``min(n / 5, 3 sqrt(n))`` weights above the next one; ``k`` is the posterior mean estimate
    of Zhang and Stephens (Technometrics 51, 2009) with the weak prior towards 0.5 used by
    Pareto-smoothed importance sampling. Dimensionless; NaN for fewer than 25 samples.
    """
    log_weights = np.sort(np.asarray(log_weights, dtype=np.float64))
    n = len(log_weights)
    tail = int(min(n / 5, 3 * math.sqrt(n)))
    if n < 25 or tail < 5 or not np.isfinite(log_weights[-1]):
        return float("nan")
    top = log_weights[-tail - 1:]
    # Exceedances over the threshold, scaled by the largest weight (k is scale-free).
    excess = np.exp(top[1:] - top[-1]) - math.exp(top[0] - top[-1])
    if not excess[-1] > 0:
        return 0.0
    # b = k / sigma on the grid of Zhang and Stephens; k(b) = mean ln(1 + b x) maximises the
    # likelihood at fixed b, and ell(b) is the profile log-likelihood.
    grid_size = 30 + int(math.sqrt(tail))
    quartile = excess[int(tail / 4 + 0.5) - 1]
    j = np.arange(1, grid_size + 1)
    b = -(1.0 / excess[-1] + (1.0 - np.sqrt(grid_size / (j - 0.5))) / (3.0 * quartile))
    shape = np.mean(np.log1p(b[:, None] * excess[None, :]), axis=1)
    ell = tail * (np.log(b / shape) - shape - 1.0)
    posterior = np.exp(ell - logsumexp(ell))
    b_hat = float(np.sum(posterior * b))
    k = float(np.mean(np.log1p(b_hat * excess)))
    return (tail * k + 10 * 0.5) / (tail + 10)


def log_mean_exp(log_weights) -> float:
    log_weights = np.asarray(log_weights, dtype=np.float64)
    return float(logsumexp(log_weights) - math.log(len(log_weights)))


def bootstrap_stderr(log_weights, num_resamples: int = 200, seed: int = 0) -> float:
    """Bootstrap standard error of ``ln mean(w)``."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(log_weights)
    estimates = np.empty(num_resamples)
    for b in range(num_resamples):
        estimates[b] = logsumexp(log_weights[rng.integers(0, n, n)])
    return float(np.std(estimates - math.log(n), ddof=1))


def lfep(work, num_particles: int, *, reference_length: float = 1.0, multiplicity: int = 1,
         system: str = "", bootstrap: int = 200) -> FreeEnergy:
    """Learned free-energy perturbation: ``ln Z = ln mean(exp(-beta Phi))`` over model samples.

    Args:
      work: ``[n]`` works ``beta Phi(x) = beta U(x) + ln q(x)`` of independent samples ``x ~ q``
        (dimensionless; float64 recommended). ``+inf`` (a sample the target forbids) is
        allowed; NaN raises.
      num_particles: N. reference_length: Lambda, in the positions' length unit.
      multiplicity: ``m`` of ``freeflow.estimators.conventions.translation_multiplicity`` for a
        crystal flow (``ln m`` is added to the flow's ``ln Z``); 1 for a model covering the
        target's whole support.
      system: name recorded in the result.
      bootstrap: bootstrap resamples for the standard error (0: the delta-method error
        ``sqrt((1/ESS - 1) / n)`` instead).

    With fewer than ~100 effective samples (``ess * num_samples``), or a heavy tail of the
    weights (``details["pareto_k"]`` above ``result.PARETO_K_LIMIT``, see ``pareto_k``), both the
    value (biased towards the flow's own free energy, i.e. too high) and the bootstrap error
    (blind to the unseen tail of the weights) are unreliable; the CLI warns in either case.
    """
    start = time.perf_counter()
    work = np.asarray(work, dtype=np.float64).reshape(-1)
    if len(work) < 2:
        raise ValueError(f"LFEP needs at least 2 works; got {len(work)}")
    finite = np.isfinite(work) | (work == np.inf)
    if not np.all(finite):
        raise FloatingPointError(f"{int(np.sum(~finite))} of {len(work)} works are NaN: the "
                                 "energy or the model density failed on some samples")
    log_w = -work
    log_z_flow = log_mean_exp(log_w)
    ess = effective_sample_size(log_w)
    if bootstrap:
        se_log_z = bootstrap_stderr(log_w, bootstrap)
    else:
        se_log_z = math.sqrt(max(1.0 / ess - 1.0, 0.0) / len(work)) if ess > 0 else math.inf
    log_z = log_z_from_flow(log_z_flow, multiplicity)
    return FreeEnergy(value=beta_f_per_particle(log_z, num_particles, reference_length),
                      stderr=se_log_z / num_particles, method="lfep", system=system,
                      num_samples=len(work), ess=ess, log_z=log_z, work=work,
                      energy_evaluations=len(work), wall_time=time.perf_counter() - start,
                      details={"multiplicity": int(multiplicity), "pareto_k": pareto_k(log_w)})


def running_lfep(work, num_particles: int, beta_f_offset: float = 0.0):
    """LFEP ``beta F / N`` from the first n works, for every n = 1..len(work).

    ``beta F / N (n) = beta_f_offset - ln((1/n) sum_{i<=n} exp(-beta Phi_i)) / N``; its
    delta-method standard error is ``sqrt((1 / ESS_n - 1) / n) / N`` with ``ESS_n`` the
    effective sample size as a fraction of n.

    Args:
      work: ``[n]`` works ``beta Phi`` in sampling order (NaN entries are dropped; ``+inf``
        means zero weight).
      num_particles: N.
      beta_f_offset: ``beta_f_from_flow_log_z(system, 0)``; 0 gives ``-ln Z_flow / N``.

    Returns:
      ``(n [K] int, estimate [K], stderr [K], ess_fraction [K])`` float64 arrays.
    """
    w = np.asarray(work, dtype=np.float64).reshape(-1)
    w = w[~np.isnan(w)]
    if len(w) == 0:
        raise ValueError("no works to estimate from")
    log_w = -w
    n = np.arange(1, len(w) + 1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cum = np.logaddexp.accumulate(log_w)
        cum2 = np.logaddexp.accumulate(2.0 * log_w)
        ess = np.exp(2.0 * cum - cum2) / n
        estimate = beta_f_offset - (cum - np.log(n)) / num_particles
        stderr = np.sqrt(np.maximum(1.0 / ess - 1.0, 0.0) / n) / num_particles
    return n.astype(np.int64), estimate, stderr, ess
