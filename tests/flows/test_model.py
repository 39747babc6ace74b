"""Coupling layers and the full flow model: bijectivity, exact log-det, symmetries, densities."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from freeflow.flows.bases import effective_temperature_factor
from freeflow.flows.conditioner import randomize_heads
from freeflow.flows.config import (
    PRESETS,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    model_preset,
)
from freeflow.flows.model import BaseModel, FlowModel, canonicalize, num_parameters
from freeflow.physics.space import minimum_image

TINY = ModelConfig(num_layers=3, num_bins=4, embedding_size=16, num_heads=2, num_blocks=1,
                   num_frequencies=2)
# The published model's structure at TINY's size: 3 split layers (6 conditioners) with circular
# shifts, no conditioned spline shift, no layer norm, zero-initialised residual branches.
TINY_SPLIT = dataclasses.replace(TINY, coupling="split", circular_shift=True,
                                 conditioned_shift=False, layer_norm=False,
                                 zero_init_residual=True, init_depth_power=0.5, mlp_width=32,
                                 min_bin_size=1e-4, min_derivative=1e-4)
CONFIGS = {"axis": TINY, "split": TINY_SPLIT}
# Random heads of this size move particles by O(0.1-1) length units and give per-configuration
# log-dets of O(1-10), yet keep the flow well-conditioned enough for float32 round trips.
HEAD_SCALE = 0.05
EPS32 = float(np.finfo(np.float32).eps)


def randomize_zeros(params, scale, key):
    """Copy of ``params`` with every all-zero leaf outside the heads set to random normal values
    of ``scale``: biases, circular shifts and zero-initialised residual outputs, so that a
    split model's attention, MLPs and shifts all act."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, leaf), k in zip(leaves, keys):
        is_head = any(str(getattr(p, "key", "")).endswith("head") for p in path)
        if not is_head and not np.any(np.asarray(leaf)):
            leaf = scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def water8(systems, request):
    model = FlowModel(systems("mw_cubic_8"), CONFIGS[request.param])
    params = randomize_heads(model.init(jax.random.PRNGKey(0)), HEAD_SCALE,
                             jax.random.PRNGKey(1))
    if request.param == "split":
        params = randomize_zeros(params, 0.1, jax.random.PRNGKey(2))
    return model, params


def periodic_error(a, b, box):
    return np.max(np.abs(minimum_image(np.asarray(a) - np.asarray(b), np.asarray(box))))


def test_flow_inverts(water8):
    model, params = water8
    z = model.base.sample(jax.random.PRNGKey(5), 16)
    y, log_det = model.forward(params, z)
    assert periodic_error(y, z, model.box) > 0.1
    assert np.all(np.abs(log_det) > 0.01)
    z_back, inverse_log_det = model.inverse(params, y)
    assert periodic_error(z_back, z, model.box) < 1e-4
    np.testing.assert_allclose(log_det + inverse_log_det, 0.0, atol=1e-3)


def test_log_det_matches_autodiff_jacobian(water8):
    model, params = water8
    z32 = model.base.sample(jax.random.PRNGKey(6), 1)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        z = jnp.asarray(z32, jnp.float64)
        num = model.num_mobile * 3

        def flat_forward(v):
            return model.forward(params64, v.reshape(model.num_mobile, 3))[0].reshape(num)

        for sample in z:
            _, log_det = model.forward(params64, sample)
            assert log_det.dtype == jnp.float64
            jacobian = jax.jacfwd(flat_forward)(sample.reshape(num))
            sign, log_abs_det = np.linalg.slogdet(np.asarray(jacobian))
            assert sign > 0  # each spline is increasing: orientation preserved
            # float64 with a condition number < 1e7 here: agreement to ~1e-8.
            np.testing.assert_allclose(float(log_det), log_abs_det, atol=1e-7)
            assert abs(log_abs_det) > 0.01


def test_fresh_model_is_the_base(systems):
    model = FlowModel(systems("lj_32"), TINY)
    params = model.init(jax.random.PRNGKey(7))
    key = jax.random.PRNGKey(8)
    x, log_q = model.sample_and_log_prob(params, key, 8)
    # Identity up to the rounding of the spline's knot sums: a few ulps of the box edge.
    np.testing.assert_allclose(x, model.sample_base(key, 8), atol=8 * EPS32 * model.box.max())
    z = model.base.sample(jax.random.split(key)[0], 8)
    y, log_det = model.forward(params, z)
    np.testing.assert_allclose(y, z, atol=8 * EPS32 * model.box.max())
    np.testing.assert_allclose(log_det, 0.0, atol=1e-4)
    np.testing.assert_allclose(log_q, model.base_log_prob(x), atol=1e-3)
    np.testing.assert_allclose(model.log_prob(params, x), model.base_log_prob(x), atol=1e-3)
    # ln q includes -ln V of the translation and -ln (N-1)! of the base.
    _, log_base = model.base.sample_and_log_prob(jax.random.split(key)[0], 8)
    np.testing.assert_allclose(log_q, log_base - model.log_volume, atol=1e-3)


def test_base_model_is_an_untrained_flow(systems):
    """BaseModel draws the samples of a fresh flow with the same key, and gives them the
    same density, without the flow's layers."""
    system = systems("mw_cubic_8")
    flow = FlowModel(system, TINY)
    params = flow.init(jax.random.PRNGKey(3))
    base = BaseModel(system, TINY)
    key = jax.random.PRNGKey(4)
    x_flow, log_q_flow = flow.sample_and_log_prob(params, key, 16)
    x, log_q = base.sample_and_log_prob(None, key, 16)
    assert x.shape == (16, 8, 3) and log_q.shape == (16,)
    np.testing.assert_allclose(x, x_flow, atol=8 * EPS32 * flow.box.max())
    np.testing.assert_allclose(log_q, log_q_flow, atol=1e-3)
    np.testing.assert_allclose(base.log_prob(None, x), log_q, atol=1e-3)
    # Any configuration, not only its own samples: a translated, relabelled one.
    moved = jnp.mod(x[:, ::-1] + 0.3, flow.box)
    np.testing.assert_allclose(base.log_prob(None, moved), flow.log_prob(params, moved),
                               atol=1e-3)


def test_log_prob_of_samples_matches(water8):
    model, params = water8
    x, log_q = model.sample_and_log_prob(params, jax.random.PRNGKey(9), 32)
    assert x.shape == (32, 8, 3) and log_q.shape == (32,)
    assert np.all((np.asarray(x) >= 0) & (np.asarray(x) < model.box))
    # Canonicalisation and inversion in float32: O(1e-3) in ln q at these log-det sizes.
    np.testing.assert_allclose(model.log_prob(params, x), log_q, atol=5e-3)


def test_equivariance_and_invariances(water8):
    model, params = water8
    z = model.base.sample(jax.random.PRNGKey(10), 4)
    perm = np.random.default_rng(1).permutation(model.num_mobile)
    y, log_det = model.forward(params, z)
    y_perm, log_det_perm = model.forward(params, z[:, perm])
    # Attention sums over particles in another order: float32 rounding only.
    assert periodic_error(y_perm, y[:, perm], model.box) < 1e-4
    np.testing.assert_allclose(log_det_perm, log_det, atol=1e-4)

    x, log_q = model.sample_and_log_prob(params, jax.random.PRNGKey(11), 4)
    log_q = model.log_prob(params, x)
    mobile_perm = np.concatenate([[0], 1 + perm])
    np.testing.assert_allclose(model.log_prob(params, x[:, mobile_perm]), log_q, atol=5e-3)
    for shift in ([0.3, -1.7, 2.2], [5.0, 5.0, -11.0]):
        moved = np.mod(np.asarray(x) + np.asarray(shift), model.box)
        np.testing.assert_allclose(model.log_prob(params, moved), log_q, atol=5e-3)


@pytest.mark.parametrize("name", ["lj_32", "mw_hex_64"])
def test_fcc_and_hexagonal_ice(systems, name):
    system = systems(name)
    model = FlowModel(system, TINY)
    params = randomize_heads(model.init(jax.random.PRNGKey(12)), 0.02, jax.random.PRNGKey(13))
    x, log_q = model.sample_and_log_prob(params, jax.random.PRNGKey(14), 4)
    assert x.shape == (4, system.num_particles, 3)
    assert np.all((np.asarray(x) >= 0) & (np.asarray(x) < system.box))
    assert np.all(np.isfinite(log_q))
    np.testing.assert_allclose(model.log_prob(params, x), log_q, atol=5e-3)


def test_jit_vmap_and_training_gradient(systems):
    system = systems("mw_cubic_8")
    model = FlowModel(system, TINY)
    params = model.init(jax.random.PRNGKey(15))
    energy = system.energy_fn(softened=True)

    def loss(p, keys):
        x, log_q = jax.vmap(lambda k: model.sample_and_log_prob(p, k, 1))(keys)
        return jnp.mean(system.beta * energy(x[:, 0]) + log_q[:, 0])

    optimizer = optax.adam(1e-3)
    state = optimizer.init(params)

    @jax.jit
    def step(p, s, key):
        value, grads = jax.value_and_grad(loss)(p, jax.random.split(key, 8))
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value, grads

    params, state, value, grads = step(params, state, jax.random.PRNGKey(16))
    assert np.isfinite(value)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    # Only the zero heads get gradient at the identity; it must be non-zero.
    assert any(np.any(g != 0) for g in leaves)
    x, log_q = model.sample_and_log_prob(params, jax.random.PRNGKey(17), 4)
    np.testing.assert_allclose(model.log_prob(params, x), log_q, atol=5e-3)


def test_canonicalize_removes_translation():
    box = np.array([2.0, 3.0, 4.0])
    x = np.random.default_rng(2).uniform(0, 1, (5, 3)) * box
    c = canonicalize(np.mod(x + [0.7, 2.9, -1.0], box), box)
    np.testing.assert_allclose(c, canonicalize(x, box), atol=1e-5)
    assert c.shape == (4, 3)


def test_configs_round_trip_and_presets():
    assert model_preset("paper") == PRESETS["paper"]
    assert model_preset("paper").num_layers == 24 and model_preset("paper").num_bins == 16
    for config in PRESETS.values():
        data = json.loads(json.dumps(config_to_dict(config)))
        assert config_from_dict(ModelConfig, data) == config
    with pytest.raises(ValueError):
        config_from_dict(ModelConfig, {"num_layer": 3})
    with pytest.raises(ValueError):
        model_preset("gpu")
    with pytest.raises(ValueError):
        ModelConfig(embedding_size=10, num_heads=3)
    with pytest.raises(ValueError, match="base must be one of"):
        ModelConfig(base="harmonik")
    with pytest.raises(ValueError, match="noise_scale belongs to the 'truncated_gaussian' base"):
        ModelConfig(base="harmonic", noise_scale=0.1)


def test_parameter_count_and_default_noise(systems):
    model = FlowModel(systems("mw_cubic_8"), TINY)
    assert model.base.noise_scale == pytest.approx(0.2)
    assert FlowModel(systems("lj_32"), TINY).base.noise_scale == pytest.approx(0.01)
    assert num_parameters(model.init(jax.random.PRNGKey(0))) > 0


def test_named_bases_use_the_harmonic_precision(systems):
    """'harmonic' is beta H_mm; 'effective_harmonic' the same over the temperature factor."""
    system = systems("mw_cubic_8")
    precision = system.beta * system.lattice_hessian()[3:, 3:]
    harmonic = FlowModel(system, dataclasses.replace(TINY, base="harmonic")).base
    effective = FlowModel(system, dataclasses.replace(TINY, base="effective_harmonic")).base
    np.testing.assert_allclose(harmonic.precision, precision, rtol=1e-12)
    np.testing.assert_allclose(effective.precision,
                               precision / effective_temperature_factor(system), rtol=1e-12)
