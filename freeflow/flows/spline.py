"""Circular rational-quadratic splines: diffeomorphisms of the circle ``[lower, upper)``.

A monotone rational-quadratic (RQ) spline with ``K`` bins maps ``[lower, upper]`` onto itself
(Durkan et al., "Neural spline flows", 2019). Giving it the same slope at both ends makes it a
smooth bijection of the circle of period ``upper - lower``; a learned rotation (circular shift)
follows, so that the point ``lower`` can move too.

Raw parameters per coordinate, last axis of size ``3 K + 1``:

  ``[0:K]``      bin widths (softmax; uniform when zero),
  ``[K:2K]``     bin heights (softmax; uniform when zero),
  ``[2K:3K]``    knot slopes ``d_0 .. d_{K-1}`` (``d_K = d_0``; softplus shifted so zero gives 1),
  ``[3K]``       shift as a fraction of the period (zero gives no shift); ignored when the
                 spline is built with ``shift=False``, as in the published model, whose
                 circular splines leave this last parameter unused (``lower`` stays fixed and
                 an unconditioned ``freeflow.flows.couplings.CircularShift`` moves it instead).

All-zero raw parameters are exactly the identity. Coordinates and the shift are in the length
unit of ``lower``/``upper``; log-determinants are per coordinate (elementwise bijector).
"""

from __future__ import annotations

import math

import distrax
import jax
import jax.numpy as jnp


def num_spline_parameters(num_bins: int) -> int:
    """Raw parameters per coordinate for ``num_bins`` bins (widths, heights, slopes, shift)."""
    return 3 * num_bins + 1


def _normalised_bins(raw, min_size):
    """Bin sizes summing to 1, each at least ``min_size`` (fractions of the period)."""
    num_bins = raw.shape[-1]
    return min_size + (1.0 - num_bins * min_size) * jax.nn.softmax(raw, axis=-1)


def _knots(sizes, lower, period):
    """Knot positions ``[..., K + 1]`` from bin fractions; the ends are exactly lower/upper."""
    cumulative = jnp.cumsum(sizes[..., :-1], axis=-1)
    inner = lower[..., None] + period[..., None] * cumulative
    return jnp.concatenate([lower[..., None], inner, (lower + period)[..., None]], axis=-1)


def _select(table, one_hot):
    """``table[..., k]`` at the bin marked in ``one_hot [..., K]`` (exact: one term is nonzero).

    A masked sum rather than ``take_along_axis``: its backward is a multiply, where a gather's
    is a scatter-add, which XLA on CPU does element by element.
    """
    return jnp.sum(jnp.where(one_hot, table, 0.0), axis=-1)


class CircularRationalQuadraticSpline(distrax.Bijector):
    """Elementwise circular RQ spline followed by a circular shift.

    Args:
      params: ``[..., 3 K + 1]`` raw parameters (see module docstring), broadcastable against
        the coordinates with the trailing parameter axis added.
      lower, upper: interval ends (length unit), broadcastable against the coordinates, for
        example ``[3]`` per axis of an orthorhombic box.
      min_bin_size: smallest bin width and height, as a fraction of the period.
      min_derivative: smallest knot slope (dimensionless).
      shift: apply the conditioned rotation ``params[..., 3 K]`` after the spline (default);
        ``False`` ignores that parameter, so the map fixes ``lower`` (``y(lower) = lower``).
    """

    def __init__(self, params, lower, upper, min_bin_size: float = 1e-3,
                 min_derivative: float = 1e-3, shift: bool = True):
        super().__init__(event_ndims_in=0)
        if params.shape[-1] < 4 or (params.shape[-1] - 1) % 3:
            raise ValueError(f"the last axis of params must be 3 K + 1; got {params.shape[-1]}")
        num_bins = (params.shape[-1] - 1) // 3
        if not 0 < min_bin_size * num_bins < 1:
            raise ValueError(f"min_bin_size * num_bins must lie in (0, 1); got "
                             f"{min_bin_size} * {num_bins}")
        dtype = params.dtype
        lower = jnp.asarray(lower, dtype)
        upper = jnp.asarray(upper, dtype)
        batch_shape = jnp.broadcast_shapes(params.shape[:-1], lower.shape, upper.shape)
        params = jnp.broadcast_to(params, (*batch_shape, params.shape[-1]))
        self._lower = jnp.broadcast_to(lower, batch_shape)
        self._period = jnp.broadcast_to(upper - lower, batch_shape)
        widths = _normalised_bins(params[..., :num_bins], min_bin_size)
        heights = _normalised_bins(params[..., num_bins:2 * num_bins], min_bin_size)
        self._x_knots = _knots(widths, self._lower, self._period)
        self._y_knots = _knots(heights, self._lower, self._period)
        # softplus(0 + offset) + min = 1, so zero raw slopes give the identity.
        offset = math.log(math.expm1(1.0 - min_derivative))
        slopes = min_derivative + jax.nn.softplus(params[..., 2 * num_bins:3 * num_bins] + offset)
        # Equal slope at both ends: the spline is C^1 across the point lower == upper.
        self._slopes = jnp.concatenate([slopes, slopes[..., :1]], axis=-1)
        # The rotation as a length; zero (an exact identity rotation) when not used.
        self._shift = (self._period * params[..., 3 * num_bins] if shift
                       else jnp.zeros_like(self._period))
        self._num_bins = num_bins

    # The bin of a point, and that bin's knots and slopes. Comparing against the interior
    # knots only puts a point at the upper end into the last bin (no out-of-range index).
    def _bin(self, value, knots):
        index = jnp.sum(value[..., None] >= knots[..., 1:-1], axis=-1)
        one_hot = index[..., None] == jnp.arange(self._num_bins)
        x0, x1 = _select(self._x_knots[..., :-1], one_hot), _select(self._x_knots[..., 1:], one_hot)
        y0, y1 = _select(self._y_knots[..., :-1], one_hot), _select(self._y_knots[..., 1:], one_hot)
        d0, d1 = _select(self._slopes[..., :-1], one_hot), _select(self._slopes[..., 1:], one_hot)
        return x0, x1 - x0, y0, y1 - y0, d0, d1

    def _broadcast(self, value):
        value = jnp.asarray(value, self._lower.dtype)
        return jnp.broadcast_to(value, jnp.broadcast_shapes(value.shape, self._lower.shape))

    def _spline_forward(self, x):
        x = self._broadcast(x)
        x = jnp.clip(x, self._lower, self._lower + self._period)
        x0, width, y0, height, d0, d1 = self._bin(x, self._x_knots)
        slope = height / width
        xi = jnp.clip((x - x0) / width, 0.0, 1.0)
        mix = xi * (1.0 - xi)
        denominator = slope + (d0 + d1 - 2.0 * slope) * mix
        y = y0 + height * (slope * xi**2 + d0 * mix) / denominator
        derivative = slope**2 * (d1 * xi**2 + 2.0 * slope * mix + d0 * (1.0 - xi)**2)
        log_det = jnp.log(derivative) - 2.0 * jnp.log(denominator)
        return y, log_det

    def _spline_inverse(self, y):
        y = self._broadcast(y)
        y = jnp.clip(y, self._lower, self._lower + self._period)
        x0, width, y0, height, d0, d1 = self._bin(y, self._y_knots)
        slope = height / width
        dy = y - y0
        curvature = d0 + d1 - 2.0 * slope
        # Root of a xi^2 + b xi + c = 0 in [0, 1]; the form 2c / (-b - sqrt(.)) avoids the
        # cancellation of the textbook formula and never divides by zero (b > 0 at dy = 0).
        a = height * (slope - d0) + dy * curvature
        b = height * d0 - dy * curvature
        c = -slope * dy
        discriminant = jnp.maximum(b**2 - 4.0 * a * c, 0.0)
        xi = jnp.clip(2.0 * c / (-b - jnp.sqrt(discriminant)), 0.0, 1.0)
        x = x0 + width * xi
        mix = xi * (1.0 - xi)
        denominator = slope + curvature * mix
        derivative = slope**2 * (d1 * xi**2 + 2.0 * slope * mix + d0 * (1.0 - xi)**2)
        log_det = 2.0 * jnp.log(denominator) - jnp.log(derivative)
        return x, log_det

    def _rotate(self, value, shift):
        return self._lower + jnp.mod(value - self._lower + shift, self._period)

    def forward_and_log_det(self, x):
        """``y = rotate(spline(x))`` and ``ln |dy/dx|`` elementwise; ``x`` in [lower, upper)."""
        y, log_det = self._spline_forward(x)
        return self._rotate(y, self._shift), log_det

    def inverse_and_log_det(self, y):
        """``x = spline^-1(rotate^-1(y))`` and ``ln |dx/dy|`` elementwise."""
        return self._spline_inverse(self._rotate(self._broadcast(y), -self._shift))

    def spline_forward_and_log_det(self, x):
        """The spline alone, without the shift (for inspecting the endpoint behaviour)."""
        return self._spline_forward(x)
