"""Permutation-equivariant conditioner: circular embedding, transformer over particles, zero head.

Input: the conditioning coordinates of every mobile particle, ``[..., P, C]`` (length unit), each
axis periodic with its box edge. Output: ``[..., P, num_outputs]`` raw parameters, one row per
particle. Attention has no positional encoding and every other operation acts per particle, so
permuting the particles permutes the output rows in the same way. The output head starts at
zero (weights and biases), so a fresh conditioner outputs exactly zero.

The network, for conditioning coordinates ``x [P, C]`` with periods ``L [C]``:

  ``h_0 = W_e phi(x) + b_e``, ``phi`` the circular embedding ``[P, 2 C F]``, ``h_0 [P, E]``;
  per block ``b = 1..B``: ``h <- h + A(n_1(h))`` then ``h <- h + M(n_2(h))``, with ``A``
  multi-head self-attention over the particle axis (``H`` heads of size ``E / H``, biased
  query/key/value/output linears), ``M(u) = W_2 gelu(W_1 u + b_1) + b_2`` (hidden width
  ``D``), and ``n_i`` a layer norm or, with ``layer_norm=False``, the identity;
  ``out = W_o n_f(h) + b_o`` (``n_f`` the final layer norm, or the identity), ``[P, O]``.

The default (``layer_norm=True``, ``zero_init_residual=False``) is freeflow's pre-layer-norm
transformer; ``layer_norm=False, zero_init_residual=True`` is the published one (Wirnsberger et
al. 2022, no layer norm anywhere, the attention's output linear and ``W_2`` zero-initialised so
that every block starts as the identity).
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


def _maybe_layer_norm(h, enabled: bool):
    """A fresh learned layer norm over the last axis, or the identity when not ``enabled``.

    A function, not a module method: a method would open one name scope shared by its calls.
    """
    if not enabled:
        return h
    return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(h)


class SelfAttention(hk.Module):
    """Multi-head self-attention over the particle axis with a configurable output init.

    ``h [..., P, E] -> [..., P, E]``: ``q, k, v = h W_q + b_q, h W_k + b_k, h W_v + b_v``, each
    split into ``H`` heads of size ``E / H``; per head ``softmax(q k^T / sqrt(E / H)) v``; the
    heads concatenated and projected by ``W_out, b_out``. Every linear has a bias (zero at
    init); ``W_q, W_k, W_v`` start from ``w_init`` and ``W_out`` from ``w_init_final``.
    Parameters: ``4 (E^2 + E)``. (Used where the output projection must start at zero, which
    ``hk.MultiHeadAttention`` cannot do: it shares one initialiser among all four linears.)
    """

    def __init__(self, num_heads: int, w_init, w_init_final, name: str | None = None):
        super().__init__(name=name)
        self.num_heads = num_heads
        self.w_init = w_init
        self.w_init_final = w_init_final

    def __call__(self, h):
        size = h.shape[-1]
        head_size = size // self.num_heads

        def heads(name):
            out = hk.Linear(size, w_init=self.w_init, name=name)(h)
            return out.reshape(*h.shape[:-1], self.num_heads, head_size)

        q, k, v = heads("query"), heads("key"), heads("value")
        logits = jnp.einsum("...phd,...Phd->...hpP", q, k) / jnp.sqrt(
            jnp.asarray(head_size, h.dtype))
        weights = jax.nn.softmax(logits, axis=-1)
        attended = jnp.einsum("...hpP,...Phd->...phd", weights, v).reshape(h.shape)
        return hk.Linear(size, w_init=self.w_init_final, name="linear")(attended)


class TransformerBlock(hk.Module):
    """One block over the particle axis: ``h + MHA(n(h))`` then ``h + MLP(n(h))``.

    Args:
      num_heads: attention heads (size ``E / num_heads`` each).
      hidden_width: the MLP's hidden width.
      init_scale: ``VarianceScaling`` scale of the weights that are not zero-initialised.
      layer_norm: ``n`` is a (learned) layer norm before each branch (pre-layer-norm block);
        ``False``: ``n`` is the identity and the block has no normalisation at all.
      zero_init_residual: the attention's output projection and the MLP's output linear start
        at zero (weights; biases are always zero at init), so a fresh block is the identity.
    """

    def __init__(self, num_heads: int, hidden_width: int, init_scale: float,
                 layer_norm: bool = True, zero_init_residual: bool = False,
                 name: str | None = None):
        super().__init__(name=name)
        self.num_heads = num_heads
        self.hidden_width = hidden_width
        self.init_scale = init_scale
        self.layer_norm = layer_norm
        self.zero_init_residual = zero_init_residual

    def __call__(self, h):
        """``h [..., P, E] -> [..., P, E]``."""
        size = h.shape[-1]
        w_init = hk.initializers.VarianceScaling(self.init_scale)
        w_final = jnp.zeros if self.zero_init_residual else w_init
        normed = _maybe_layer_norm(h, self.layer_norm)
        if self.zero_init_residual:
            attention = SelfAttention(self.num_heads, w_init, w_final)
            h = h + attention(normed)
        else:
            # The original parameterisation (and parameter names) of freeflow's blocks.
            attention = hk.MultiHeadAttention(num_heads=self.num_heads,
                                              key_size=size // self.num_heads,
                                              w_init=w_init, model_size=size)
            h = h + attention(normed, normed, normed)
        normed = _maybe_layer_norm(h, self.layer_norm)
        hidden = jax.nn.gelu(hk.Linear(self.hidden_width, w_init=w_init)(normed))
        return h + hk.Linear(size, w_init=w_final)(hidden)


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
      layer_norm: pre-layer-norm blocks and a final layer norm (default); ``False``: no
        layer norm anywhere.
      zero_init_residual: every block's residual branches start at zero (``TransformerBlock``).
      init_depth_power: the blocks' weights are ``VarianceScaling(2 / num_blocks ** power)``;
        1 (default) keeps the residual stack's variance O(1), 0.5 is the published scaling.
    """

    def __init__(self, num_outputs: int, periods: Sequence[float], embedding_size: int,
                 num_heads: int, num_blocks: int, num_frequencies: int, hidden_width: int,
                 layer_norm: bool = True, zero_init_residual: bool = False,
                 init_depth_power: float = 1.0, name: str | None = None):
        super().__init__(name=name)
        self.num_outputs = num_outputs
        self.periods = tuple(float(p) for p in periods)
        self.embedding_size = embedding_size
        self.num_heads = num_heads
        self.num_blocks = num_blocks
        self.num_frequencies = num_frequencies
        self.hidden_width = hidden_width
        self.layer_norm = layer_norm
        self.zero_init_residual = zero_init_residual
        self.init_depth_power = init_depth_power

    def __call__(self, conditioning):
        """``[..., P, C]`` coordinates (length unit) -> ``[..., P, num_outputs]`` raw params."""
        features = circular_embedding(conditioning, self.periods, self.num_frequencies)
        h = hk.Linear(self.embedding_size, name="embed")(features)
        # Residual branches scaled down with depth keep the stack's output variance O(1).
        init_scale = 2.0 / self.num_blocks ** self.init_depth_power  # power 1: 2 / num_blocks
        for i in range(self.num_blocks):
            h = TransformerBlock(self.num_heads, self.hidden_width, init_scale,
                                 layer_norm=self.layer_norm,
                                 zero_init_residual=self.zero_init_residual,
                                 name=f"block_{i}")(h)
        if self.layer_norm:
            h = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True,
                             name="final_norm")(h)
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

