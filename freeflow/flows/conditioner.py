"""Permutation-equivariant conditioner: circular embedding, transformer over particles, zero head.

Input: the conditioning coordinates of every mobile particle, ``[..., P, C]`` (length unit), each
axis periodic with its box edge. Output: ``[..., P, num_outputs]`` raw parameters, one row per
particle. Attention has no positional encoding and every other operation acts per particle, so
permuting the particles permutes the output rows in the same way. The output head starts at
zero (weights and biases), so a fresh conditioner outputs exactly zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import haiku as hk
import jax
import jax.numpy as jnp


def circular_embedding(coordinates, periods, num_frequencies: int):
    """Fourier features of periodic coordinates.

    Args:
      coordinates: ``[..., C]`` (length unit).
      periods: ``[C]`` period of each coordinate (box edge, length unit).
      num_frequencies: ``K``; features use k = 1..K.

    Returns:
      ``[..., 2 C K]``: ``cos`` then ``sin`` of ``2 pi k x / L`` for every axis and k.
      Continuous on the circle, so the conditioner sees the torus, not a cut box.
    """
    periods = jnp.asarray(periods, coordinates.dtype)
    k = jnp.arange(1, num_frequencies + 1, dtype=coordinates.dtype)
    angles = (2.0 * jnp.pi / periods)[:, None] * k * coordinates[..., :, None]
    angles = angles.reshape(*coordinates.shape[:-1], -1)
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class TransformerBlock(hk.Module):
    """Pre-layer-norm block: ``h + MHA(LN h)`` then ``h + MLP(LN h)``, over the particle axis."""

    def __init__(self, num_heads: int, hidden_width: int, init_scale: float,
                 name: str | None = None):
        super().__init__(name=name)
        self.num_heads = num_heads
        self.hidden_width = hidden_width
        self.init_scale = init_scale

    def __call__(self, h):
        size = h.shape[-1]
        w_init = hk.initializers.VarianceScaling(self.init_scale)
        normed = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(h)
        attention = hk.MultiHeadAttention(num_heads=self.num_heads,
                                          key_size=size // self.num_heads,
                                          w_init=w_init, model_size=size)
        h = h + attention(normed, normed, normed)
        normed = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(h)
        hidden = jax.nn.gelu(hk.Linear(self.hidden_width, w_init=w_init)(normed))
        return h + hk.Linear(size, w_init=w_init)(hidden)


class EquivariantConditioner(hk.Module):
    """Raw spline parameters of every particle from the conditioning coordinates of all.

    Args:
      num_outputs: outputs per particle (transformed axes times spline parameters).
      periods: ``[C]`` box edges of the conditioning axes (length unit).
      embedding_size: transformer width.
      num_heads: attention heads per block.
      num_blocks: transformer blocks.
      num_frequencies: Fourier frequencies of the circular embedding.
      hidden_width: MLP hidden width.
    """

    def __init__(self, num_outputs: int, periods: Sequence[float], embedding_size: int,
                 num_heads: int, num_blocks: int, num_frequencies: int, hidden_width: int,
                 name: str | None = None):
        super().__init__(name=name)
        self.num_outputs = num_outputs
        self.periods = tuple(float(p) for p in periods)
        self.embedding_size = embedding_size
        self.num_heads = num_heads
        self.num_blocks = num_blocks
        self.num_frequencies = num_frequencies
        self.hidden_width = hidden_width

    def __call__(self, conditioning):
        """``[..., P, C]`` coordinates (length unit) -> ``[..., P, num_outputs]`` raw params."""
        features = circular_embedding(conditioning, self.periods, self.num_frequencies)
        h = hk.Linear(self.embedding_size, name="embed")(features)
        # Residual branches scaled down with depth keep the stack's output variance O(1).
        init_scale = 2.0 / self.num_blocks
        for i in range(self.num_blocks):
            h = TransformerBlock(self.num_heads, self.hidden_width, init_scale,
                                 name=f"block_{i}")(h)
        h = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True, name="final_norm")(h)
        # Zero head: a fresh flow is exactly the identity, so it starts as its base.
        return hk.Linear(self.num_outputs, w_init=jnp.zeros, b_init=jnp.zeros, name="head")(h)


def randomize_heads(params, scale: float, key) -> dict:
    """Copy of ``params`` with every conditioner head set to random normal values of ``scale``.

    For tests and diagnostics: a flow whose layers are far from the identity.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, leaf), k in zip(leaves, keys):
        names = [getattr(p, "key", "") for p in path]
        if any(isinstance(n, str) and n.endswith("head") for n in names):
            leaf = scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)

