"""The conditioner: periodic embedding, zero at initialisation, permutation-equivariant."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from freeflow.flows.conditioner import (
    EquivariantConditioner,
    circular_embedding,
    randomize_heads,
)

PERIODS = (2.0, 3.0)


def conditioner():
    def forward(x):
        return EquivariantConditioner(num_outputs=5, periods=PERIODS, embedding_size=16,
                                      num_heads=2, num_blocks=1, num_frequencies=3,
                                      hidden_width=32)(x)
    return hk.without_apply_rng(hk.transform(forward))


def coordinates(seed=0, particles=7):
    return jax.random.uniform(jax.random.PRNGKey(seed), (particles, 2)) * jnp.asarray(PERIODS)


def test_embedding_sees_the_torus_not_the_box():
    x = coordinates()
    features = circular_embedding(x, PERIODS, 3)
    assert features.shape == (7, 2 * 2 * 3)
    shifted = circular_embedding(x + jnp.asarray(PERIODS) * jnp.asarray([1.0, -2.0]), PERIODS, 3)
    np.testing.assert_allclose(shifted, features, atol=2e-5)


def test_fresh_conditioner_outputs_exactly_zero():
    net = conditioner()
    params = net.init(jax.random.PRNGKey(1), coordinates())
    assert np.all(np.asarray(net.apply(params, coordinates(seed=2))) == 0.0)


def test_outputs_permute_with_the_particles():
    net = conditioner()
    params = randomize_heads(net.init(jax.random.PRNGKey(1), coordinates()), 0.5,
                             jax.random.PRNGKey(3))
    x = coordinates(seed=4)
    out = np.asarray(net.apply(params, x))
    assert np.abs(out).max() > 1e-2  # the randomised head makes the test able to fail
    order = np.random.default_rng(0).permutation(len(x))
    np.testing.assert_allclose(np.asarray(net.apply(params, x[order])), out[order],
                               rtol=1e-5, atol=1e-5)


def test_published_blocks_start_as_the_identity_without_layer_norm():
    """layer_norm=False, zero_init_residual=True: a fresh stack of blocks is the identity, so
    the output is head(embed(features)); no layer norm parameters exist; the attention has
    biased query/key/value/output linears (4 (E^2 + E) parameters)."""
    def forward(x):
        return EquivariantConditioner(num_outputs=5, periods=PERIODS, embedding_size=16,
                                      num_heads=2, num_blocks=2, num_frequencies=3,
                                      hidden_width=64, layer_norm=False,
                                      zero_init_residual=True, init_depth_power=0.5,
                                      name="net")(x)

    net = hk.without_apply_rng(hk.transform(forward))
    params = randomize_heads(net.init(jax.random.PRNGKey(1), coordinates()), 0.5,
                             jax.random.PRNGKey(2))
    assert not any("norm" in name for name in params)
    attention = {k: v for k, v in params.items() if "block_0/self_attention" in k}
    assert sum(a.size for v in attention.values() for a in v.values()) == 4 * (16**2 + 16)
    assert params["net/block_1/linear"]["w"].shape == (16, 64)
    assert not np.any(params["net/block_1/self_attention/linear"]["w"])
    assert not np.any(params["net/block_1/linear_1"]["w"])
    x = coordinates(seed=3)
    embed = params["net/embed"]
    embedded = circular_embedding(x, PERIODS, 3) @ embed["w"] + embed["b"]
    expected = embedded @ params["net/head"]["w"] + params["net/head"]["b"]
    np.testing.assert_allclose(np.asarray(net.apply(params, x)), expected, rtol=1e-5,
                               atol=1e-5)
    order = np.random.default_rng(1).permutation(len(x))
    moved = jax.tree.map(lambda a: a + 0.1, params)  # every branch active
    out = np.asarray(net.apply(moved, x))
    np.testing.assert_allclose(np.asarray(net.apply(moved, x[order])), out[order], rtol=1e-4,
                               atol=1e-4)
