"""Combining independent SMC (or AIS) runs into one ``ln Z`` with a standard error.

Each run ``r`` returns ``ln Z_r``, the log of an estimate ``Z_r`` that is unbiased for ``Z``.
Their mean ``Z_bar = (1/R) sum_r Z_r`` is unbiased too, so the combined value is
``ln Z_bar`` (a log-mean-exp), whose bias is ``-Var(Z_r / Z) / (2R)``: ``R`` times smaller
than that of the plain mean of the ``ln Z_r``, which never shrinks with more runs. The
standard error is that of ``Z_bar`` relative to itself (the delta method),

    stderr(ln Z_bar) = std_r(Z_r / Z_bar) / sqrt(R)         (sample std, ddof = 1),

which for small spreads equals ``std_r(ln Z_r) / sqrt(R)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

__all__ = ["combine_log_z"]


def combine_log_z(log_z_runs) -> tuple[float, float]:
    """``(ln Z_bar, stderr)`` of ``R >= 2`` independent runs' ``ln Z_r`` (``[R]``; module
    docstring). Raises ``ValueError`` for fewer than 2 runs or a non-finite run."""
    log_z_runs = np.asarray(log_z_runs, dtype=np.float64).reshape(-1)
    if len(log_z_runs) < 2:
        raise ValueError(f"an error bar needs at least 2 independent runs; got "
                         f"{len(log_z_runs)}")
    if not np.all(np.isfinite(log_z_runs)):
        raise ValueError("a run's ln Z is not finite (its particles all left the target's "
                         "support)")
    runs = len(log_z_runs)
    log_mean = float(logsumexp(log_z_runs) - math.log(runs))
    relative = np.exp(log_z_runs - log_mean)
    return log_mean, float(np.std(relative, ddof=1) / math.sqrt(runs))
