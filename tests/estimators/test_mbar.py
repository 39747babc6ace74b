"""MBAR on reduced energies (estimators.mbar): an analytic pair of states, excluded samples."""

import math

import numpy as np
import pytest
from scipy.special import erf

from freeflow.estimators.mbar import mbar


def two_gaussians(n=20_000, seed=0, restrict=False):
    """Samples of exp(-x^2 / 2) and of exp(-2 x^2) (the second restricted to |x| < 1 if asked),
    and the exact f_1 - f_0."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n)
    x1 = rng.standard_normal(4 * n) / 2
    if restrict:
        x1 = x1[np.abs(x1) < 1]
    x1 = x1[:n]
    x = np.concatenate([x0, x1])
    u1 = 2 * x**2
    if restrict:
        u1 = np.where(np.abs(x) < 1, u1, np.inf)
    z1 = math.sqrt(2 * math.pi / 4) * (erf(math.sqrt(2)) if restrict else 1.0)
    return np.stack([0.5 * x**2, u1]), np.array([n, len(x1)]), -math.log(z1 / math.sqrt(2 * math.pi))


@pytest.mark.parametrize("restrict", [False, True])
def test_mbar_recovers_the_analytic_difference(restrict):
    u_kn, n_k, exact = two_gaussians(restrict=restrict)
    result = mbar(u_kn, n_k)
    assert abs(result.delta_f - exact) < 3 * result.stderr
    assert 0 < result.stderr < 0.02  # able to fail
    assert result.num_samples == n_k.sum() and 0 < result.details["min_neighbour_overlap"] < 1


def test_mbar_refuses_bad_input():
    u_kn, n_k, _ = two_gaussians(n=100)
    with pytest.raises(ValueError, match="u_kn must be"):
        mbar(u_kn[:, :-1], n_k)
    bad = u_kn.copy()
    bad[1, 5] = np.nan
    with pytest.raises(FloatingPointError, match="NaN"):
        mbar(bad, n_k)
    bad = u_kn.copy()
    bad[1, -1] = np.inf  # a sample of state 1 that state 1 excludes
    with pytest.raises(FloatingPointError, match="its own state"):
        mbar(bad, n_k)
