"""The device mesh that training and sampling share: one ``"batch"`` axis over every device.

With ``jax.distributed.initialize()`` called first in every process, ``jax.devices()`` lists
the devices of all hosts and the mesh spans them. Imports nothing else of freeflow.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["batch_mesh", "batch_sharding", "replicated"]


def batch_mesh() -> jax.sharding.Mesh:
    """A one-axis mesh named ``"batch"`` over ``jax.devices()``."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Split an array's leading axis (samples, chains) across the mesh's devices."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """The same array on every device of the mesh."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
