"""Coupling layers on the torus: splines of some axes of every particle, given the other axes.

A layer acts on mobile-particle positions ``[..., P, 3]`` (length unit) in the box
``[0, L_x) x [0, L_y) x [0, L_z)``. It transforms the chosen axes of every particle with a
circular rational-quadratic spline (``freeflow.flows.spline``) whose parameters the equivariant
conditioner computes from the remaining axes of all particles. The conditioning coordinates
pass through unchanged, so the Jacobian is block-triangular and its log-determinant is the sum
of the splines' elementwise log-slopes. Orthorhombic boxes work because every axis has its own
interval ``[0, L_axis)``.

Layers must be built inside a haiku transform (the conditioner holds haiku parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import jax.numpy as jnp
import numpy as np

from freeflow.flows.conditioner import EquivariantConditioner
from freeflow.flows.spline import CircularRationalQuadraticSpline, num_spline_parameters


def transformed_axes_of_layer(layer: int) -> tuple[int, ...]:
    """Axis transformed by coupling layer ``layer``: z, x, y, z, x, ... (each given the rest)."""
    return ((2 + layer) % 3,)


class AxisCoupling(distrax.Bijector):
    """One coupling layer over positions ``[..., P, 3]`` (event = all particles and axes).

    Args:
      transformed_axes: the axes (subset of 0, 1, 2) this layer changes.
      box: ``[3]`` box edges (length unit).
      num_bins: spline bins K.
      conditioner_kwargs: ``EquivariantConditioner`` settings (embedding_size, num_heads,
        num_blocks, num_frequencies, hidden_width).
      min_bin_size, min_derivative: spline safety margins (``freeflow.flows.spline``).
      name: haiku module name of the conditioner.
    """

    def __init__(self, transformed_axes: Sequence[int], box, num_bins: int,
                 conditioner_kwargs: dict, min_bin_size: float = 1e-3,
                 min_derivative: float = 1e-3, name: str | None = None):
        super().__init__(event_ndims_in=2)
        transformed = tuple(sorted(int(a) for a in transformed_axes))
        if not transformed or len(transformed) > 2 or not set(transformed) <= {0, 1, 2}:
            raise ValueError(f"transformed_axes must be 1 or 2 of the axes 0, 1, 2; got "
                             f"{transformed_axes}")
        self.transformed = np.asarray(transformed)
        self.conditioning = np.asarray([a for a in range(3) if a not in transformed])
        self.box = np.asarray(box, dtype=np.float64)
        self.num_bins = num_bins
        self.min_bin_size = min_bin_size
        self.min_derivative = min_derivative
        self.conditioner = EquivariantConditioner(
            num_outputs=len(transformed) * num_spline_parameters(num_bins),
            periods=self.box[self.conditioning], name=name, **conditioner_kwargs)

    def _splines(self, positions):
        raw = self.conditioner(positions[..., self.conditioning])
        raw = raw.reshape(*raw.shape[:-1], len(self.transformed), -1)
        upper = jnp.asarray(self.box[self.transformed], positions.dtype)
        return CircularRationalQuadraticSpline(
            raw, jnp.zeros_like(upper), upper, min_bin_size=self.min_bin_size,
            min_derivative=self.min_derivative)

    def _apply(self, positions, inverse: bool):
        splines = self._splines(positions)
        values = positions[..., self.transformed]
        if inverse:
            new_values, log_det = splines.inverse_and_log_det(values)
        else:
            new_values, log_det = splines.forward_and_log_det(values)
        return (positions.at[..., self.transformed].set(new_values),
                jnp.sum(log_det, axis=(-2, -1)))

    def forward_and_log_det(self, x):
        """``[..., P, 3] -> ([..., P, 3], ln|det J| [...])``."""
        return self._apply(x, inverse=False)

    def inverse_and_log_det(self, y):
        """``[..., P, 3] -> ([..., P, 3], ln|det J^-1| [...])``."""
        return self._apply(y, inverse=True)


def coupling_layers(box, config) -> list[AxisCoupling]:
    """The coupling layers of a ``ModelConfig``, in the order they act on base samples."""
    kwargs = dict(embedding_size=config.embedding_size, num_heads=config.num_heads,
                  num_blocks=config.num_blocks, num_frequencies=config.num_frequencies,
                  hidden_width=config.hidden_width)
    return [AxisCoupling(transformed_axes_of_layer(i), box, config.num_bins, kwargs,
                         min_bin_size=config.min_bin_size,
                         min_derivative=config.min_derivative, name=f"coupling_{i}")
            for i in range(config.num_layers)]


def coupling_flow(box, config) -> distrax.Bijector:
    """All coupling layers as one bijector, base -> mobile positions (forward)."""
    # distrax.Chain applies its last bijector first.
    return distrax.Chain(list(reversed(coupling_layers(box, config))))
