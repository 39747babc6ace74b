"""Bennett acceptance ratio (BAR) and the learned BAR (LBAR) estimator.

``bar(forward_work, reverse_work)`` is the generic two-state estimator (reduced units):
state 0 sampled by ``x_i``, state 1 by ``y_j``, ``forward_work = u_1(x_i) - u_0(x_i)``,
``reverse_work = u_0(y_j) - u_1(y_j)``; it returns a ``ReducedFreeEnergy`` of ``Delta f = f_1 - f_0 = -ln(Z_1 / Z_0)``.

LBAR takes state 0 = the flow model q (normalised: ``u_0 = -ln q``, ``Z_0 = 1``) and state 1 =
the target (``u_1 = beta U``). The forward work of a model sample is ``beta Phi(x) = beta U(x) +
ln q(x)``, the reverse work of a target sample ``-beta Phi(y)``, and ``ln Z = -Delta f``, reported
as ``beta F / N = -(ln Z - ln N!) / N + 3 ln Lambda``. A flow whose base
permutes the N - 1 mobile particles and translates uniformly covers ``Z / m`` (``m`` sites per
primitive cell, see ``freeflow.estimators.conventions``): the estimate is ``ln((N-1)! V Z_fixed)`` and
``ln m`` is added back (``multiplicity``), the same counting as the MBAR baseline.

pymbar is imported lazily inside ``pymbar_guard`` (JAX's float64 switch is undone afterwards).
"""

from __future__ import annotations

import time

import numpy as np

from freeflow.estimators.conventions import beta_f_per_particle, log_z_from_flow
from freeflow.estimators.mbar import pymbar_guard
from freeflow.estimators.result import FreeEnergy, ReducedFreeEnergy

__all__ = ["bar", "lbar"]

_WORK_CLIP = 600.0  # reduced units, after centring (see ``bar``)


def bar(forward_work, reverse_work) -> ReducedFreeEnergy:
    """Bennett's estimate of ``Delta f = f_1 - f_0`` (dimensionless) and its standard error.

    Args:
      forward_work: ``[n]`` reduced works ``u_1(x) - u_0(x)`` of samples ``x`` of state 0.
      reverse_work: ``[m]`` reduced works ``u_0(y) - u_1(y)`` of samples ``y`` of state 1.
        Both must be independent (decorrelated) samples.

    A work of ``+inf`` is allowed: a sample of one state where the other state's density is
    zero (a target sample outside the flow's support, say). It adds nothing to BAR's sums but
    still counts as a sample, which keeps the estimate exact when one state's support only
    partly covers the other's. NaN or ``-inf`` works raise.
    """
    w_f = np.asarray(forward_work, dtype=np.float64).reshape(-1)
    w_r = np.asarray(reverse_work, dtype=np.float64).reshape(-1)
    if len(w_f) == 0 or len(w_r) == 0:
        raise ValueError("BAR needs at least one forward and one reverse work")
    bad = int(np.sum(np.isnan(w_f) | (w_f == -np.inf)) + np.sum(np.isnan(w_r) | (w_r == -np.inf)))
    if bad:
        raise FloatingPointError(f"{bad} BAR works are NaN or -inf: an energy or a model "
                                 "log-density failed on some samples")
    finite = np.concatenate([w_f[np.isfinite(w_f)], -w_r[np.isfinite(w_r)]])
    if finite.size == 0:
        raise FloatingPointError("every BAR work is infinite: the two states do not overlap")
    # BAR is unchanged by w_f -> w_f - c, w_r -> w_r + c, Delta f -> Delta f - c. Centring
    # the works on a rough Delta f and clipping them to +-600 keeps pymbar's exponentials
    # finite (its uncertainty turns NaN beyond ~700) and maps +inf to a Fermi weight of
    # e^-600 relative to works near Delta f: far below float64 round-off.
    shift = float(np.median(finite))
    w_f = np.clip(w_f - shift, -_WORK_CLIP, _WORK_CLIP)
    w_r = np.clip(w_r + shift, -_WORK_CLIP, _WORK_CLIP)
    with pymbar_guard() as pymbar:
        out = pymbar.other_estimators.bar(w_f, w_r, compute_uncertainty=True)
    return ReducedFreeEnergy(delta_f=float(out["Delta_f"]) + shift,
                             stderr=float(out["dDelta_f"]), num_samples=len(w_f) + len(w_r),
                             details={"num_forward": len(w_f), "num_reverse": len(w_r)})


def lbar(model_work, target_reverse_work, num_particles: int, reference_length: float = 1.0,
         multiplicity: int = 1, system: str = "",
         energy_evaluations: int = 0) -> FreeEnergy:
    """Learned BAR between a normalised model and the target.

    Args:
      model_work: ``[n]`` ``beta Phi(x_i) = beta U(x_i) + ln q(x_i)`` for ``x_i ~ q``.
      target_reverse_work: ``[m]`` ``-(beta U(y_j) + ln q(y_j))`` for target samples ``y_j``
        (MCMC/MD, decorrelated).
      num_particles: N. reference_length: Lambda (length unit of the positions).
      multiplicity: ``m`` of ``freeflow.estimators.conventions.translation_multiplicity`` for a crystal
        flow (``ln m`` is added to the model-relative ``ln Z``); 1 for a model covering all of
        the target's support.

    Returns:
      ``FreeEnergy`` (method ``"lbar"``) with ``beta F / N`` and its standard error;
      ``details`` has ``ln_z`` (full), ``ln_z_model`` (= ``ln Z_target - ln Z_model``,
      before adding ``ln m``) and ``ln_z_stderr``.
    """
    start = time.perf_counter()
    estimate = bar(model_work, target_reverse_work)
    err = estimate.stderr
    ln_z_model = -estimate.delta_f  # f_model = -ln 1 = 0
    ln_z = log_z_from_flow(ln_z_model, multiplicity)
    n = num_particles
    value = beta_f_per_particle(ln_z, n, reference_length)
    num = int(np.size(model_work) + np.size(target_reverse_work))
    return FreeEnergy(value=value, stderr=err / n, method="lbar", num_states=2,
                      num_samples=num, energy_evaluations=int(energy_evaluations),
                      wall_time=time.perf_counter() - start, system=system, log_z=ln_z,
                      details={"ln_z": ln_z, "ln_z_model": ln_z_model, "ln_z_stderr": err,
                               "multiplicity": int(multiplicity),
                               "num_model_samples": int(np.size(model_work)),
                               "num_target_samples": int(np.size(target_reverse_work))})
