"""Importance-weight diagnostics of the estimators on weights with a known tail."""

import numpy as np
import pytest
from scipy.special import logsumexp

from freeflow.estimators.lfep import effective_sample_size, pareto_k, running_lfep
from freeflow.estimators.result import PARETO_K_LIMIT


@pytest.mark.parametrize("k_true", [0.25, 0.5, 0.8, 1.25])
def test_pareto_k_recovers_the_tail_of_pareto_weights(k_true):
    """Weights with P(w > t) = t^(-1/k): ln w is exponential with mean k. With the tail's 424
    largest of 2 x 10^4 weights the estimate's spread is about (1 + k) / sqrt(424) <= 0.11, so
    0.3 is about 3 of them (and the weak prior towards 0.5 pulls a little)."""
    rng = np.random.default_rng(1)
    log_w = rng.exponential(k_true, 20_000)
    assert pareto_k(log_w) == pytest.approx(k_true, abs=0.3)
    # Scale-free: shifting every log-weight changes nothing.
    assert pareto_k(log_w - 1e3) == pytest.approx(pareto_k(log_w), abs=1e-9)


def test_pareto_k_separates_light_and_heavy_works():
    """Gaussian works of variance s^2 give log-normal weights: every moment is finite, but the
    tail a finite sample sees is heavier the wider the works (PSIS's known behaviour)."""
    rng = np.random.default_rng(2)
    light = rng.normal(0.0, 0.3, 100_000)
    heavy = rng.normal(0.0, 3.0, 100_000)
    assert pareto_k(light) < 0.2
    assert pareto_k(heavy) > PARETO_K_LIMIT
    assert effective_sample_size(light) > 0.9
    assert np.isnan(pareto_k(light[:10]))


def test_running_lfep_matches_direct_estimate():
    work = np.random.default_rng(0).normal(10.0, 1.0, 1000)
    n, est, err, ess = running_lfep(work, 10, beta_f_offset=0.5)
    direct = 0.5 - (logsumexp(-work[:100]) - np.log(100)) / 10
    assert est[99] == pytest.approx(direct)
    assert 0 < ess[-1] < 1 and err[-1] > 0
