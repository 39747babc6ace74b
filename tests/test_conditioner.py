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
