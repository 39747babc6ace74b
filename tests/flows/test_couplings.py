"""Coupling layers: the axis cycle, invertibility, conditioning axes left unchanged, and the
split layers of the published model (rebuilt literally from its construction)."""


import distrax
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from freeflow.flows.conditioner import EquivariantConditioner, randomize_heads
from freeflow.flows.config import ModelConfig
from freeflow.flows.couplings import (
    AxisCoupling,
    CircularShift,
    coupling_flow,
    coupling_layers,
    split_slots_of_layer,
    transformed_axes_of_layer,
)
from freeflow.physics.space import minimum_image


def periodic_error(a, b, box):
    return np.max(np.abs(minimum_image(np.asarray(a) - np.asarray(b), np.asarray(box))))


def test_layers_cycle_through_axes():
    assert [transformed_axes_of_layer(i) for i in range(4)] == [(2,), (0,), (1,), (2,)]


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2)])
def test_each_layer_inverts_and_keeps_conditioning_axes(systems, axes):
    box = systems("mw_hex_64").box  # non-cubic
    kwargs = dict(embedding_size=16, num_heads=2, num_blocks=1, num_frequencies=2,
                  hidden_width=16)

    def functions():
        layer = AxisCoupling(axes, box, 4, kwargs, name="layer")
        return layer.forward_and_log_det, (layer.forward_and_log_det, layer.inverse_and_log_det)

    layer = hk.without_apply_rng(hk.multi_transform(functions))
    z = jax.random.uniform(jax.random.PRNGKey(2), (3, 9, 3)) * box
    params = randomize_heads(layer.init(jax.random.PRNGKey(3), z), 0.1, jax.random.PRNGKey(4))
    y, log_det = layer.apply[0](params, z)
    others = [a for a in range(3) if a not in axes]
    np.testing.assert_array_equal(y[..., others], z[..., others])
    assert periodic_error(y[..., list(axes)], z[..., list(axes)], box[list(axes)]) > 0.1
    z_back, inverse_log_det = layer.apply[1](params, y)
    # One layer: the inverse sees bit-identical conditioning inputs, so only the spline's own
    # float32 rounding (magnified by steep bins) remains.
    assert periodic_error(z_back, z, box) < 2e-4
    np.testing.assert_allclose(log_det + inverse_log_det, 0.0, atol=2e-3)


SPLIT = ModelConfig(num_layers=3, num_bins=4, embedding_size=16, num_heads=2, num_blocks=1,
                    num_frequencies=2, mlp_width=32, min_bin_size=1e-4, min_derivative=1e-4,
                    coupling="split", circular_shift=True, conditioned_shift=False,
                    layer_norm=False, zero_init_residual=True, init_depth_power=0.5)


def perturbed(params, scale, key):
    """Every leaf plus random normal noise of ``scale``: no branch of the flow stays idle."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
                  for leaf, k in zip(leaves, keys)])


def transformed_flow(box, config):
    def functions():
        flow = coupling_flow(box, config)
        return flow.forward_and_log_det, (flow.forward_and_log_det, flow.inverse_and_log_det)

    return hk.without_apply_rng(hk.multi_transform(functions))


def test_split_layers_rotate_the_axis_roles():
    assert [split_slots_of_layer(i) for i in range(4)] == [(0, 1, 2), (2, 0, 1), (1, 2, 0),
                                                           (0, 1, 2)]
    built = {}

    def build():  # the layers hold haiku modules: build them inside a transform
        built["split"] = coupling_layers(np.ones(3), SPLIT)
        built["axis"] = coupling_layers(np.ones(3), ModelConfig(num_layers=4))

    hk.transform(build).init(None)
    assert len(built["split"]) == 9  # pair coupling, single coupling, shift per layer
    pair, single, shift = built["split"][3:6]  # layer 1: slots (2, 0, 1)
    assert list(pair.transformed) == [0, 1] and list(pair.conditioning) == [2]
    assert list(single.transformed) == [2] and list(single.conditioning) == [0, 1]
    assert isinstance(shift, CircularShift) and list(shift.slot_of_axis) == [1, 2, 0]
    assert [list(layer.transformed) for layer in built["axis"]] == [[2], [0], [1], [2]]


def test_split_flow_starts_as_the_identity_and_inverts(systems):
    box = systems("mw_hex_64").box  # non-cubic
    flow = transformed_flow(box, SPLIT)
    z = jax.random.uniform(jax.random.PRNGKey(0), (2, 9, 3)) * box
    fresh = flow.init(jax.random.PRNGKey(1), z)
    y, log_det = flow.apply[0](fresh, z)
    np.testing.assert_allclose(y, z, atol=1e-5)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-5)
    params = perturbed(fresh, 0.1, jax.random.PRNGKey(2))
    y, log_det = flow.apply[0](params, z)
    assert periodic_error(y, z, box) > 0.1 and np.all(np.abs(log_det) > 0.01)
    z_back, inverse_log_det = flow.apply[1](params, y)
    assert periodic_error(z_back, z, box) < 1e-4
    np.testing.assert_allclose(log_det + inverse_log_det, 0.0, atol=2e-3)


def test_circular_shift_moves_each_axis_by_its_slot():
    box = np.array([2.0, 3.0, 4.0])

    def functions():
        shift = CircularShift(box, slots=(2, 0, 1), name="shift")
        return shift.forward_and_log_det, (shift.forward_and_log_det, shift.inverse_and_log_det)

    layer = hk.without_apply_rng(hk.multi_transform(functions))
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 5, 3)) * box
    params = layer.init(jax.random.PRNGKey(1), x)
    assert params["shift"]["shift"].shape == (3,) and not np.any(params["shift"]["shift"])
    params = {"shift": {"shift": jnp.asarray([0.25, -0.5, 1.75])}}  # slots 0, 1, 2
    y, log_det = layer.apply[0](params, x)
    # Slot 0 is axis 2, slot 1 axis 0, slot 2 axis 1.
    expected = np.mod(np.asarray(x) + box * np.array([-0.5, 1.75, 0.25]), box)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert log_det.shape == (4,) and not np.any(log_det)
    x_back, _ = layer.apply[1](params, y)
    assert periodic_error(x_back, x, box) < 1e-5


def test_split_flow_is_the_published_construction(systems):
    """The published make_split_coupling_flow, rebuilt literally on a cubic box: layers in
    reverse order, each [permute, shift, couple slot 0 | slots 1-2, couple slots 1-2 | slot 0]
    as a distrax Chain (applied right to left), distrax's circular RQ splines."""
    box = systems("mw_cubic_8").box
    edge = float(box[0])
    assert np.allclose(box, edge)
    num_layers, outputs = SPLIT.num_layers, 3 * SPLIT.num_bins + 1
    conditioner_kwargs = {"embedding_size": 16, "num_heads": 2, "num_blocks": 1,
                          "num_frequencies": 2, "hidden_width": 32, "layer_norm": False,
                          "zero_init_residual": True, "init_depth_power": 0.5}

    def published(x, shifts):
        log_det = jnp.zeros(x.shape[:-2], x.dtype)
        for j in reversed(range(num_layers)):  # distrax.Chain(layers): the last acts first
            i = num_layers - 1 - j  # freeflow's layer of the same place in the flow
            for name, cond, moved in ((f"coupling_{i}_pair", [0], [1, 2]),
                                      (f"coupling_{i}_single", [1, 2], [0])):
                raw = EquivariantConditioner(len(moved) * outputs, [edge] * len(cond),
                                             name=name, **conditioner_kwargs)(x[..., cond])
                raw = raw.reshape(*raw.shape[:-1], len(moved), outputs)
                spline = distrax.RationalQuadraticSpline(
                    raw, range_min=0.0, range_max=edge, boundary_slopes="circular",
                    min_bin_size=edge * 1e-4)  # min_knot_slope: distrax's 1e-4
                new, ld = spline.forward_and_log_det(x[..., moved])
                x = x.at[..., moved].set(new)
                log_det = log_det + jnp.sum(ld, axis=(-2, -1))
            x = jnp.mod(x + edge * shifts[f"circular_shift_{i}"], edge)  # CircularShift
            x = x[..., np.roll(np.arange(3), 1)]  # tfp Permute([2, 0, 1]) forward
        return x, log_det

    ours = transformed_flow(box, SPLIT)
    z32 = jax.random.uniform(jax.random.PRNGKey(3), (2, 7, 3)) * box
    params = perturbed(ours.init(jax.random.PRNGKey(4), z32), 0.1, jax.random.PRNGKey(5))
    reference = hk.without_apply_rng(hk.transform(published))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        z = jnp.asarray(z32, jnp.float64)
        conditioners = {k: v for k, v in params.items() if not k.startswith("circular_shift")}
        shifts = {k: v["shift"] for k, v in params.items() if k.startswith("circular_shift")}
        # Jitted: op-by-op, the two flows' thousands of small ops cost more than compiling.
        y, log_det = jax.jit(ours.apply[0])(params, z)
        y_ref, log_det_ref = jax.jit(reference.apply)(conditioners, z, shifts)
        assert periodic_error(y, z, box) > 0.1
        np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), atol=1e-9)
        np.testing.assert_allclose(np.asarray(log_det), np.asarray(log_det_ref), atol=1e-9)
