"""Circular rational-quadratic spline: identity at zero, bijection of the circle, exact log-det."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from freeflow.flows.spline import CircularRationalQuadraticSpline, num_spline_parameters

EPS32 = float(np.finfo(np.float32).eps)
K = 6


def random_spline(key, shape, scale, lower=0.0, upper=3.0):
    params = scale * jax.random.normal(key, (*shape, num_spline_parameters(K)))
    return CircularRationalQuadraticSpline(params, lower, upper)


def circular_distance(a, b, period):
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) % period
    return np.minimum(d, period - d)


def test_zero_parameters_are_identity():
    x = jnp.linspace(0.0, 5.0, 101)[:-1]
    spline = CircularRationalQuadraticSpline(jnp.zeros((100, num_spline_parameters(K))), 0.0, 5.0)
    y, log_det = spline.forward_and_log_det(x)
    # Identity evaluated through knots and softmax: only rounding, a few ulps of the period.
    np.testing.assert_allclose(y, x, atol=8 * EPS32 * 5.0)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-5)
    x_back, inv_log_det = spline.inverse_and_log_det(x)
    np.testing.assert_allclose(x_back, x, atol=8 * EPS32 * 5.0)
    np.testing.assert_allclose(inv_log_det, 0.0, atol=1e-5)


def test_forward_inverse_round_trip():
    n = 20_000
    period = 3.0
    spline = random_spline(jax.random.PRNGKey(0), (n,), 1.0, upper=period)
    x = period * jax.random.uniform(jax.random.PRNGKey(1), (n,))
    y, log_det = spline.forward_and_log_det(x)
    assert np.all((y >= 0) & (y <= period))
    x_back, inv_log_det = spline.inverse_and_log_det(y)
    # y is known to ~ulp(period); the inverse magnifies that by dx/dy = exp(-log_det).
    tolerance = 16 * EPS32 * period * (1.0 + np.exp(-np.asarray(log_det)))
    assert np.all(circular_distance(x_back, x, period) <= tolerance)
    # The inverse's log-det is minus the forward's at the point it returned (where the slope
    # is tiny, x_back is only close to x, and so are the log-slopes at the two points).
    _, log_det_back = spline.forward_and_log_det(x_back)
    np.testing.assert_allclose(log_det_back + inv_log_det, 0.0, atol=1e-4)


def test_log_det_is_log_derivative():
    n = 2_000
    params = jax.random.normal(jax.random.PRNGKey(2), (n, num_spline_parameters(K)))
    x = 3.0 * jax.random.uniform(jax.random.PRNGKey(3), (n,))

    def forward(xi, p):
        return CircularRationalQuadraticSpline(p, 0.0, 3.0).forward(xi)

    def inverse(yi, p):
        return CircularRationalQuadraticSpline(p, 0.0, 3.0).inverse(yi)

    slope = jax.vmap(jax.grad(forward))(x, params)
    _, log_det = CircularRationalQuadraticSpline(params, 0.0, 3.0).forward_and_log_det(x)
    np.testing.assert_allclose(np.log(slope), log_det, atol=1e-4)
    inverse_slope = jax.vmap(jax.grad(inverse))(x, params)
    _, inv_log_det = CircularRationalQuadraticSpline(params, 0.0, 3.0).inverse_and_log_det(x)
    np.testing.assert_allclose(np.log(inverse_slope), inv_log_det, atol=1e-4)


def test_monotone_endpoints_fixed_and_matching_end_slopes():
    lower, upper = -1.0, 2.5
    spline = random_spline(jax.random.PRNGKey(4), (8, 1), 1.5, lower, upper)
    grid = jnp.linspace(lower, upper, 4001)
    y, log_det = spline.spline_forward_and_log_det(jnp.broadcast_to(grid, (8, 4001)))
    assert np.all(np.diff(np.asarray(y), axis=-1) >= 0)
    # Before the shift the spline maps the interval onto itself, ends to ends.
    np.testing.assert_allclose(y[:, 0], lower, atol=4 * EPS32 * 3.5)
    np.testing.assert_allclose(y[:, -1], upper, atol=4 * EPS32 * 3.5)
    # Equal slopes at both ends: the spline is C^1 on the circle.
    np.testing.assert_allclose(log_det[:, 0], log_det[:, -1], atol=1e-5)
    assert np.all(np.isfinite(log_det))


def test_shift_rotates_the_circle_and_stays_continuous():
    period = 2.0
    params = jnp.zeros(num_spline_parameters(K)).at[-1].set(0.3)
    spline = CircularRationalQuadraticSpline(params, 0.0, period)
    x = jnp.array([0.0, 0.5, 1.6, 1.9])
    y = spline.forward(x)
    np.testing.assert_allclose(y, np.mod(np.asarray(x) + 0.3 * period, period), atol=1e-6)
    # Just below the upper end and at the lower end: the same point of the circle.
    spline = random_spline(jax.random.PRNGKey(5), (), 1.0, 0.0, period)
    below = spline.forward(jnp.float32(period) - 1e-5)
    at_lower = spline.forward(jnp.float32(0.0))
    assert circular_distance(below, at_lower, period) < 1e-3


def test_no_nan_at_endpoints_values_and_gradients():
    period = 4.0
    params = 2.0 * jax.random.normal(jax.random.PRNGKey(6), (4, num_spline_parameters(K)))
    ends = jnp.array([0.0, period, 0.0, np.nextafter(np.float32(period), np.float32(0))])

    def total(p, x):
        b = CircularRationalQuadraticSpline(p, 0.0, period)
        y, ld = b.forward_and_log_det(x)
        xb, ild = b.inverse_and_log_det(x)
        return jnp.sum(y) + jnp.sum(ld) + jnp.sum(xb) + jnp.sum(ild)

    value, (g_params, g_x) = jax.value_and_grad(total, argnums=(0, 1))(params, ends)
    assert np.isfinite(value)
    assert np.all(np.isfinite(g_params)) and np.all(np.isfinite(g_x))


def test_per_axis_intervals_of_an_orthorhombic_box():
    box = jnp.array([2.0, 3.5, 5.0])
    params = 0.5 * jax.random.normal(jax.random.PRNGKey(7), (50, 3, num_spline_parameters(K)))
    spline = CircularRationalQuadraticSpline(params, jnp.zeros(3), box)
    x = box * jax.random.uniform(jax.random.PRNGKey(8), (50, 3))
    y = spline.forward(x)
    assert np.all((np.asarray(y) >= 0) & (np.asarray(y) <= np.asarray(box)))
    x_back = spline.inverse(y)
    assert np.all(circular_distance(x_back, x, np.asarray(box)) < 1e-4)


def test_rejects_malformed_parameters():
    with pytest.raises(ValueError):
        CircularRationalQuadraticSpline(jnp.zeros((3, 5)), 0.0, 1.0)
