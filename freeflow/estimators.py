"""Free-energy estimates and their uncertainties.

Work of a model sample (dimensionless): ``beta Phi(x) = beta U(x) + ln q(x)``, importance weight
``w = exp(-beta Phi)`` (science.md section 4). Values are reported as ``beta F / N`` in the
convention of ``freeflow.conventions``; every result carries its standard error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np
from scipy.special import logsumexp

from freeflow.conventions import (beta_f_per_particle, log_z_from_flow,
                                  translation_multiplicity)


@dataclasses.dataclass(frozen=True)
class FreeEnergy:
    """A free-energy estimate from any of freeflow's methods.

    Attributes:
      value: ``beta F / N`` (dimensionless, convention of ``freeflow.conventions``).
      stderr: its standard error.
      method: ``"lfep"``, ``"lbar"`` or ``"mbar"``.
      system: system name.
      num_samples: samples entering the estimator (after decorrelation for MBAR).
      ess: effective sample size as a fraction of ``num_samples`` (LFEP), else ``None``.
      num_states: thermodynamic states combined (MBAR, LBAR), else ``None``.
      energy_evaluations: target (and reference) energy evaluations spent, warm-up included.
      wall_time: seconds.
      log_z: the full configurational ``ln Z`` behind ``value``.
      work: the works ``beta Phi`` of the model samples (LFEP), float64, or ``None``.
      details: method-specific numbers (overlaps, spring constants, multiplicity, ...).
    """

    value: float
    stderr: float
    method: str
    system: str
    num_samples: int
    ess: float | None = None
    num_states: int | None = None
    energy_evaluations: int | None = None
    wall_time: float | None = None
    log_z: float | None = None
    work: Any = dataclasses.field(default=None, repr=False, compare=False)
    details: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able summary (the works are left out)."""
        out = {"system": self.system, "method": self.method, "beta_f_per_particle": self.value,
               "stderr": self.stderr, "num_samples": self.num_samples}
        for name in ("ess", "num_states", "energy_evaluations", "wall_time", "log_z"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update(self.details)
        return out

    def __str__(self):
        ess = f", ESS {100 * self.ess:.1f}%" if self.ess is not None else ""
        return (f"{self.system} {self.method.upper()}: beta F / N = {self.value:.6f} "
                f"+- {self.stderr:.6f} ({self.num_samples} samples{ess})")


@dataclasses.dataclass(frozen=True)
class FreeEnergyDifference:
    """``beta (F_B - F_A) / N`` with the propagated standard error (independent estimates)."""

    value: float
    stderr: float
    a: str
    b: str

    def __str__(self):
        return f"beta (F[{self.b}] - F[{self.a}]) / N = {self.value:.6f} +- {self.stderr:.6f}"


def delta_f(result_a: FreeEnergy, result_b: FreeEnergy) -> FreeEnergyDifference:
    """``beta (F_B - F_A) / N`` per particle, errors added in quadrature."""
    return FreeEnergyDifference(value=result_b.value - result_a.value,
                                stderr=math.hypot(result_a.stderr, result_b.stderr),
                                a=result_a.system, b=result_b.system)


def effective_sample_size(log_weights) -> float:
    """``(sum w)^2 / (n sum w^2)``, as a fraction of n, computed from log-weights."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    return float(np.exp(2 * logsumexp(log_weights) - logsumexp(2 * log_weights))
                 / len(log_weights))


#: Above this tail shape the importance-weight estimate and its error bar are not to be trusted
#: (Vehtari et al., "Pareto smoothed importance sampling": the weights' variance is infinite
#: beyond 0.5 and the estimate converges impractically slowly beyond 0.7).
PARETO_K_LIMIT = 0.7


def pareto_k(log_weights) -> float:
    """Shape ``k`` of a generalised Pareto distribution fitted to the largest weights.

    ``P(w > t)`` falls like ``t^(-1/k)`` in the tail, so the weights have ``1/k`` finite
    moments: ``k < 0.5`` is a finite variance (the bootstrap error means something), ``k >
    PARETO_K_LIMIT`` an estimate dominated by weights not yet drawn. The tail is the largest
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


def _multiplicity(system) -> int:
    return translation_multiplicity(system.lattice, system.box)


def beta_f_from_flow_log_z(system, log_z_flow: float, multiplicity: int | None = None) -> float:
    """``beta F / N`` from a flow's estimate of ``ln Z`` (adds the lattice's ``ln m``)."""
    m = multiplicity if multiplicity is not None else _multiplicity(system)
    return beta_f_per_particle(log_z_from_flow(log_z_flow, m), system.num_particles,
                               system.units.reference_length)


def model_works(model, params, system, key, num_samples: int, batch_size: int = 256,
                progress: bool = True) -> np.ndarray:
    """Works ``beta U(x) + ln q(x)`` (exact energy) of ``num_samples`` model samples, float64.

    Samples are drawn in batches of ``batch_size`` so that 10^5 to 10^6 fit in memory.
    """
    energy = system.energy_fn()
    beta = system.beta

    @jax.jit
    def batch_work(k):
        x, log_q = model.sample_and_log_prob(params, k, batch_size)
        return beta * energy(x), log_q

    num_batches = -(-num_samples // batch_size)
    works = []
    from tqdm import tqdm
    for b in tqdm(range(num_batches), desc=f"LFEP {system.name}", unit="batch",
                  disable=not progress or None):
        beta_u, log_q = jax.device_get(batch_work(jax.random.fold_in(key, b)))
        works.append(np.asarray(beta_u, np.float64) + np.asarray(log_q, np.float64))
    return np.concatenate(works)[:num_samples]


def lfep(model, params, system, key, num_samples: int = 100_000, batch_size: int = 256,
         progress: bool = True, bootstrap: int = 200) -> FreeEnergy:
    """Learned free-energy perturbation: ``ln Z = ln mean(exp(-beta Phi))`` over model samples.

    Args:
      model, params: a ``FlowModel`` and its parameters.
      system: the target ``System`` (its exact energy is used).
      key: JAX PRNG key.
      num_samples: number of model samples.
      batch_size: samples per device call.
      bootstrap: number of bootstrap resamples for the standard error (0: use the delta-method
        error ``sqrt((1/ESS - 1) / n)`` instead).

    With fewer than ~100 effective samples (``ess * num_samples``), or a heavy tail of the
    weights (``details["pareto_k"]`` above ``PARETO_K_LIMIT``, see ``pareto_k``), both the
    value (biased towards the flow's own free energy, i.e. too high) and the bootstrap error
    (blind to the unseen tail of the weights) are unreliable; the CLI warns in either case.
    """
    import time
    start = time.perf_counter()
    work = model_works(model, params, system, key, num_samples, batch_size, progress)
    finite = np.isfinite(work) | (work == np.inf)
    if not np.all(finite):
        raise FloatingPointError(f"{int(np.sum(~finite))} of {len(work)} works are NaN: the "
                                 "energy or the model density failed on some samples")
    log_w = -work
    log_z_flow = log_mean_exp(log_w)
    ess = effective_sample_size(log_w)
    n = system.num_particles
    if bootstrap:
        se_log_z = bootstrap_stderr(log_w, bootstrap)
    else:
        se_log_z = math.sqrt(max(1.0 / ess - 1.0, 0.0) / len(work)) if ess > 0 else math.inf
    m = _multiplicity(system)
    return FreeEnergy(value=beta_f_from_flow_log_z(system, log_z_flow, m), stderr=se_log_z / n,
                      method="lfep", system=system.name, num_samples=len(work), ess=ess,
                      log_z=log_z_from_flow(log_z_flow, m), work=work,
                      energy_evaluations=len(work), wall_time=time.perf_counter() - start,
                      details={"multiplicity": m, "pareto_k": pareto_k(log_w)})


def estimate(run, num_samples: int = 100_000, *, method: str = "lfep", reference=None,
             seed: int = 0, batch_size: int = 256, progress: bool = True) -> FreeEnergy:
    """``beta F / N`` of a trained run.

    Args:
      run: a run directory (``freeflow train --out DIR``) or a ``TrainResult``.
      num_samples: model samples to draw.
      method: ``"lfep"`` (model samples only) or ``"lbar"`` (also needs ``reference``).
      reference: for LBAR, a sample file of the target (``freeflow sample``) or an array of
        target configurations ``[M, N, 3]``.
      seed: PRNG seed of the model samples.
    """
    from pathlib import Path

    if isinstance(run, (str, Path)):
        from freeflow.train import load_run
        system, model, params, _ = load_run(run)
    else:
        system, model, params = run.system, run.model, run.params
    if num_samples < 2:
        raise ValueError(f"need at least 2 samples; got {num_samples}")
    key = jax.random.PRNGKey(seed)
    if method == "lfep":
        return lfep(model, params, system, key, num_samples, batch_size, progress)
    if method == "lbar":
        if reference is None:
            raise ValueError("LBAR needs target samples: pass --reference FILE (made with "
                             "'freeflow sample SYSTEM --out FILE')")
        from freeflow.bar import lbar_from_model
        if isinstance(reference, (str, Path)):
            from freeflow.trajectory import load_samples
            reference = load_samples(reference)[0]
        return lbar_from_model(model, params, system, key, num_samples, np.asarray(reference))
    raise ValueError(f"unknown method {method!r}; use 'lfep' or 'lbar'")
