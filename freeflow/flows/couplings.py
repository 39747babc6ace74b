"""Coupling layers on the torus: splines of some axes of every particle, given the other axes.

A layer acts on mobile-particle positions ``[..., P, 3]`` (length unit) in the box
``[0, L_x) x [0, L_y) x [0, L_z)``. It transforms the chosen axes of every particle with a
circular rational-quadratic spline (``freeflow.flows.spline``) whose parameters the equivariant
conditioner computes from the remaining axes of all particles. The conditioning coordinates
pass through unchanged, so the Jacobian is block-triangular and its log-determinant is the sum
of the splines' elementwise log-slopes. Orthorhombic boxes work because every axis has its own
interval ``[0, L_axis)``.

Two layer structures (``ModelConfig.coupling``):

``"axis"`` (freeflow's default): layer ``i`` is one ``AxisCoupling`` of the axis
``(2 + i) mod 3`` given the other two (z, x, y, z, ...); ``num_layers`` conditioners.

``"split"`` (the published model of Wirnsberger et al. 2022): layer ``i`` has the axis slots
``a = split_slots_of_layer(i) = ((0 - i) mod 3, (1 - i) mod 3, (2 - i) mod 3)`` and applies, in
the sampling direction (base -> sample),

  1. ``AxisCoupling`` of the two axes ``a[1], a[2]`` given ``a[0]``,
  2. ``AxisCoupling`` of the axis ``a[0]`` given ``a[1], a[2]``,
  3. optionally (``circular_shift``) a ``CircularShift`` ``y_a <- (y_a + L_a s_slot) mod L_a``,
     one learned ``s [3]`` per layer (slot order, zero at init) for all particles alike;

``2 num_layers`` conditioners. This is the published ``make_split_coupling_flow`` (permute the
three axes cyclically, circular shift, split couplings ``1 | 2`` then ``2 | 1``) read in its
sampling direction, with the permutation done by relabelling the slots instead of moving the
data. That permutation has period 3: for ``num_layers`` a multiple of 3 (the published 24)
the base's and the sample's axes coincide in both; for other counts the published flow would
also permute the axes between base and sample, which this one does not. Per-axis box edges
play the part of the published flow's rescaling of a non-cubic box to the unit cube (splines,
embeddings and shifts all scale with the period).

Layers must be built inside a haiku transform (the conditioner holds haiku parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import haiku as hk
import jax.numpy as jnp
import numpy as np

from freeflow.flows.conditioner import EquivariantConditioner
from freeflow.flows.config import COUPLINGS
from freeflow.flows.spline import CircularRationalQuadraticSpline, num_spline_parameters


def transformed_axes_of_layer(layer: int) -> tuple[int, ...]:
    """Axis transformed by coupling layer ``layer``: z, x, y, z, x, ... (each given the rest)."""
    return ((2 + layer) % 3,)


def split_slots_of_layer(layer: int) -> tuple[int, int, int]:
    """The axes in slots 0, 1, 2 of ``"split"`` layer ``layer`` (sampling order): ``(s - i) % 3``.

    Layer 0 is (0, 1, 2), layer 1 (2, 0, 1), layer 2 (1, 2, 0), then the cycle repeats.
    """
    return tuple((slot - layer) % 3 for slot in range(3))


class AxisCoupling(distrax.Bijector):
    """One coupling layer over positions ``[..., P, 3]`` (event = all particles and axes).

    ``y_t = spline_{theta(x_c)}(x_t)`` for the transformed axes ``t`` (``T`` of them) and
    ``y_c = x_c`` for the conditioning axes ``c``, where ``theta [..., P, T, 3 K + 1]`` is the
    conditioner's output on ``x_c [..., P, 3 - T]``; ``ln|det J| = sum_{p, t} ln spline'``.

    Args:
      transformed_axes: the axes (1 or 2 of 0, 1, 2) this layer changes, in the order of the
        conditioner's output rows.
      box: ``[3]`` box edges (length unit).
      num_bins: spline bins K.
      conditioner_kwargs: ``EquivariantConditioner`` settings (embedding_size, num_heads,
        num_blocks, num_frequencies, hidden_width, and optionally layer_norm,
        zero_init_residual, init_depth_power).
      min_bin_size, min_derivative: spline safety margins (``freeflow.flows.spline``).
      conditioned_shift: the spline's last parameter rotates its output (freeflow's default);
        ``False`` leaves it unused, as the published circular splines do.
      conditioning_axes: the remaining axes in the order the conditioner embeds them; default
        ascending.
      name: haiku module name of the conditioner.
    """

    def __init__(self, transformed_axes: Sequence[int], box, num_bins: int,
                 conditioner_kwargs: dict, min_bin_size: float = 1e-3,
                 min_derivative: float = 1e-3, conditioned_shift: bool = True,
                 conditioning_axes: Sequence[int] | None = None, name: str | None = None):
        super().__init__(event_ndims_in=2)
        transformed = tuple(int(a) for a in transformed_axes)
        if (not transformed or len(transformed) > 2 or not set(transformed) <= {0, 1, 2}
                or len(set(transformed)) != len(transformed)):
            raise ValueError(f"transformed_axes must be 1 or 2 of the axes 0, 1, 2; got "
                             f"{transformed_axes}")
        rest = [a for a in range(3) if a not in transformed]
        if conditioning_axes is None:
            conditioning = rest
        else:
            conditioning = [int(a) for a in conditioning_axes]
            if sorted(conditioning) != rest:
                raise ValueError(f"conditioning_axes must be the axes {rest} not transformed; "
                                 f"got {conditioning_axes}")
        self.transformed = np.asarray(transformed)
        self.conditioning = np.asarray(conditioning)
        self.box = np.asarray(box, dtype=np.float64)
        self.num_bins = num_bins
        self.min_bin_size = min_bin_size
        self.min_derivative = min_derivative
        self.conditioned_shift = conditioned_shift
        self.conditioner = EquivariantConditioner(
            num_outputs=len(transformed) * num_spline_parameters(num_bins),
            periods=self.box[self.conditioning], name=name, **conditioner_kwargs)

    def _splines(self, positions):
        raw = self.conditioner(_columns(positions, self.conditioning))
        raw = raw.reshape(*raw.shape[:-1], len(self.transformed), -1)
        upper = jnp.asarray(self.box[self.transformed], positions.dtype)
        return CircularRationalQuadraticSpline(
            raw, jnp.zeros_like(upper), upper, min_bin_size=self.min_bin_size,
            min_derivative=self.min_derivative, shift=self.conditioned_shift)

    def _apply(self, positions, inverse: bool):
        splines = self._splines(positions)
        values = _columns(positions, self.transformed)
        if inverse:
            new_values, log_det = splines.inverse_and_log_det(values)
        else:
            new_values, log_det = splines.forward_and_log_det(values)
        slot = {int(a): i for i, a in enumerate(self.transformed)}
        columns = [new_values[..., slot[a]] if a in slot else positions[..., a] for a in range(3)]
        return jnp.stack(columns, axis=-1), jnp.sum(log_det, axis=(-2, -1))

    def forward_and_log_det(self, x):
        """``[..., P, 3] -> ([..., P, 3], ln|det J| [...])``."""
        return self._apply(x, inverse=False)

    def inverse_and_log_det(self, y):
        """``[..., P, 3] -> ([..., P, 3], ln|det J^-1| [...])``."""
        return self._apply(y, inverse=True)


def _columns(positions, axes):
    """``positions[..., axes]`` for static ``axes`` by slicing: an index array would make it a
    gather, whose backward (a scatter) XLA on CPU runs element by element."""
    return jnp.stack([positions[..., int(a)] for a in axes], axis=-1)


class _ShiftParameter(hk.Module):
    """The ``[3]`` shift fractions of one ``CircularShift`` (haiku parameter ``shift``, zero)."""

    def __call__(self):
        return hk.get_parameter("shift", (3,), init=jnp.zeros)


class CircularShift(distrax.Bijector):
    """A learned translation of every particle on the torus, the same for all of them.

    ``y_{p, a[s]} = (x_{p, a[s]} + L_{a[s]} s_s) mod L_{a[s]}`` for slots ``s = 0, 1, 2``,
    with ``s [3]`` a haiku parameter (fractions of the box edge, zero at init) and ``a`` the
    layer's slot -> axis labels. Volume-preserving: ``ln|det J| = 0``. Positions
    ``[..., P, 3]`` in ``[0, L)`` (length unit).

    Args:
      box: ``[3]`` box edges (length unit).
      slots: the axis in each slot (a permutation of 0, 1, 2), so that ``s_slot`` belongs to
        the axis the published model's permuted layout has there.
      name: haiku module name of the parameter.
    """

    def __init__(self, box, slots: Sequence[int] = (0, 1, 2), name: str | None = None):
        super().__init__(event_ndims_in=2, is_constant_jacobian=True)
        slots = tuple(int(a) for a in slots)
        if sorted(slots) != [0, 1, 2]:
            raise ValueError(f"slots must be a permutation of (0, 1, 2); got {slots}")
        self.box = np.asarray(box, dtype=np.float64)
        # The slot of each axis, so that shift[slot_of_axis] lines up with the axes.
        self.slot_of_axis = np.argsort(np.asarray(slots))
        self.parameter = _ShiftParameter(name=name)

    def shift(self, dtype):
        """``[3]`` shift per axis in ``[0, L)`` (length unit)."""
        box = jnp.asarray(self.box, dtype)
        fractions = jnp.asarray(self.parameter(), dtype)[self.slot_of_axis]
        # Wrapping the shift first keeps x + shift small when the parameter is large.
        return jnp.mod(box * fractions, box)

    def forward_and_log_det(self, x):
        """``[..., P, 3] -> ([..., P, 3], 0 [...])``."""
        box = jnp.asarray(self.box, x.dtype)
        return jnp.mod(x + self.shift(x.dtype), box), jnp.zeros(x.shape[:-2], x.dtype)

    def inverse_and_log_det(self, y):
        """``[..., P, 3] -> ([..., P, 3], 0 [...])``."""
        box = jnp.asarray(self.box, y.dtype)
        return jnp.mod(y - self.shift(y.dtype), box), jnp.zeros(y.shape[:-2], y.dtype)


def coupling_layers(box, config) -> list[distrax.Bijector]:
    """The bijectors of a ``ModelConfig``, in the order they act on base samples.

    ``"axis"``: ``num_layers`` ``AxisCoupling`` (modules ``coupling_{i}``); ``"split"``: per
    layer ``i`` the pair coupling ``coupling_{i}_pair`` (axes ``a[1], a[2]`` given ``a[0]``)
    then the single coupling ``coupling_{i}_single`` (``a[0]`` given ``a[1], a[2]``), with
    ``a = split_slots_of_layer(i)``. With ``circular_shift`` each layer ends with a
    ``CircularShift`` (``circular_shift_{i}``).
    """
    kwargs = dict(embedding_size=config.embedding_size, num_heads=config.num_heads,
                  num_blocks=config.num_blocks, num_frequencies=config.num_frequencies,
                  hidden_width=config.hidden_width, layer_norm=config.layer_norm,
                  zero_init_residual=config.zero_init_residual,
                  init_depth_power=config.init_depth_power)
    spline = dict(min_bin_size=config.min_bin_size, min_derivative=config.min_derivative,
                  conditioned_shift=config.conditioned_shift)
    if config.coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}; got {config.coupling!r}")
    layers: list[distrax.Bijector] = []
    for i in range(config.num_layers):
        if config.coupling == "axis":
            slots = (0, 1, 2)
            layers.append(AxisCoupling(transformed_axes_of_layer(i), box, config.num_bins,
                                       kwargs, name=f"coupling_{i}", **spline))
        else:
            slots = split_slots_of_layer(i)
            layers.append(AxisCoupling(slots[1:], box, config.num_bins, kwargs,
                                       conditioning_axes=slots[:1], name=f"coupling_{i}_pair",
                                       **spline))
            layers.append(AxisCoupling(slots[:1], box, config.num_bins, kwargs,
                                       conditioning_axes=slots[1:],
                                       name=f"coupling_{i}_single", **spline))
        if config.circular_shift:
            layers.append(CircularShift(box, slots, name=f"circular_shift_{i}"))
    return layers


def coupling_flow(box, config) -> distrax.Bijector:
    """All layers of ``coupling_layers`` as one bijector, base -> mobile positions (forward)."""
    # distrax.Chain applies its last bijector first.
    return distrax.Chain(list(reversed(coupling_layers(box, config))))
