"""BAR / LBAR on cases with analytic normalisers."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from freeflow.estimators.bar import bar, lbar


def gaussian_case(seed, n=4000, m=4000, dim=6, width=1.3, offset=0.4, c=-2.0):
    """Model q = N(0, I) (normalised); target exp(-|x - offset|^2 / (2 width^2) + c)."""
    rng = np.random.default_rng(seed)

    def log_q(x):
        return -0.5 * np.sum(x**2, -1) - 0.5 * dim * math.log(2 * math.pi)

    def beta_u(x):
        return 0.5 * np.sum((x - offset) ** 2, -1) / width**2 - c

    x = rng.standard_normal((n, dim))
    y = offset + width * rng.standard_normal((m, dim))
    ln_z = 0.5 * dim * math.log(2 * math.pi * width**2) + c
    return beta_u(x) + log_q(x), -(beta_u(y) + log_q(y)), ln_z


def test_lbar_recovers_analytic_ln_z():
    forward, reverse, ln_z = gaussian_case(0)
    result = lbar(forward, reverse, num_particles=2, reference_length=1.0)
    err = result.details["ln_z_stderr"]
    assert abs(result.details["ln_z"] - ln_z) < 3 * err, (result.details, ln_z)
    # Able to fail: the error bar is much smaller than the quantity's scale.
    assert 0 < err < 0.05
    # beta F / N = -(ln Z - ln N!) / N with Lambda = 1.
    assert math.isclose(result.value, -(result.details["ln_z"] - math.log(2)) / 2)
    assert math.isclose(result.stderr, err / 2)
    assert result.method == "lbar" and result.to_dict()["beta_f_per_particle"] == result.value


def test_bar_sign_convention_and_dtype():
    forward, reverse, ln_z = gaussian_case(1)
    result = bar(forward, reverse)
    delta_f, err = result.delta_f, result.stderr
    assert abs(delta_f + ln_z) < 3 * err
    # pymbar must not leave JAX in float64 mode.
    assert jnp.zeros(2).dtype == jnp.float32
    assert jnp.asarray(1.0).dtype == jnp.float32


def test_bar_with_samples_outside_the_other_support():
    # State 0: uniform on [0, 1]; state 1: uniform on [0, 2]; Z_1 / Z_0 = 2. Samples of state
    # 1 above 1 have zero density under state 0: reverse work +inf. BAR stays exact.
    rng = np.random.default_rng(3)
    n = m = 20000
    forward = np.zeros(n)                                  # u_1 - u_0 on [0, 1]
    y = rng.uniform(0.0, 2.0, m)
    reverse = np.where(y < 1.0, 0.0, np.inf)               # u_0 - u_1
    result = bar(forward, reverse)
    delta_f, err = result.delta_f, result.stderr
    # ln(fraction of state-1 samples inside [0, 1]) has binomial error sqrt(1/m) here.
    assert err < 0.03
    assert abs(delta_f + math.log(2.0)) < 3 * err


def test_bar_refuses_nan_works():
    forward, reverse, _ = gaussian_case(2, n=50, m=50)
    reverse[3] = np.nan
    try:
        bar(forward, reverse)
    except FloatingPointError as error:
        assert "NaN" in str(error)
    else:
        raise AssertionError("a NaN work must raise")


def test_bar_is_shift_covariant_and_survives_huge_works():
    forward, reverse, ln_z = gaussian_case(4)
    reverse[:5] = 900.0  # target samples the model almost never produces
    result = bar(forward, reverse)
    delta_f, err = result.delta_f, result.stderr
    result = bar(forward + 1000.0, reverse - 1000.0)
    shifted, err_shifted = result.delta_f, result.stderr
    assert np.isfinite(err) and err > 0
    assert shifted - 1000.0 == pytest.approx(delta_f, abs=1e-9)
    assert err_shifted == pytest.approx(err, rel=1e-9)
    assert abs(delta_f + ln_z) < 3 * err
