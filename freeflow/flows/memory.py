"""A lower bound on the memory one training step of a flow holds, from the model's shape alone.

Reverse mode keeps the attention weights of the forward pass until the backward pass has used
them (XLA does not recompute them unless told to): per configuration, per conditioner call
and per transformer block, ``H`` heads of ``[P, P]`` softmax weights (``P = N - 1`` mobile
particles). With everything else a step holds left out,

  ``bytes >= 4 x batch x calls x num_blocks x H x P^2``

(float32; ``calls`` is ``num_layers`` conditioners for the ``axis`` coupling and
``2 num_layers`` for ``split``). ``tests/flows/test_memory.py`` checks it against XLA's buffer
assignment of the compiled step, which is several times larger. The bound exists to refuse,
before any parameter is built, a crystal whose attention alone no machine could hold
(N = 10^6 particles, say); the exact figure comes from the compiled step
(``freeflow.physics.memory.check_program_memory``).
"""

from __future__ import annotations

from freeflow.flows.config import ModelConfig

BYTES_PER_FLOAT = 4


def conditioner_calls(config: ModelConfig) -> int:
    """Conditioners one pass through the flow evaluates."""
    return config.num_layers * (2 if config.coupling == "split" else 1)


def attention_memory(config: ModelConfig, num_particles: int, batch_size: int) -> int:
    """The lower bound of the module docstring, in bytes, for ``batch_size`` configurations of
    ``num_particles`` particles (python integers: no overflow at any size)."""
    mobile = int(num_particles) - 1
    return (BYTES_PER_FLOAT * int(batch_size) * conditioner_calls(config) * config.num_blocks
            * config.num_heads * mobile * mobile)
