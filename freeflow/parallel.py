"""The device mesh that training and sampling share: one ``"batch"`` axis over every device.

With ``jax.distributed.initialize()`` called first in every process, ``jax.devices()`` lists
the devices of all hosts and the mesh spans them. On a multi-core CPU, ``split_cpu`` makes
each core a JAX device, so that the mesh splits the batch over the cores. Imports nothing
else of freeflow.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

import jax
import numpy as np

__all__ = ["batch_mesh", "batch_sharding", "replicated", "split_cpu", "usable_cores"]

#: The XLA flag that also sets the number of CPU devices; a user's value is left alone.
HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def batch_mesh() -> jax.sharding.Mesh:
    """A one-axis mesh named ``"batch"`` over ``jax.devices()``."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Split an array's leading axis (samples, chains) across the mesh's devices."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """The same array on every device of the mesh."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _accelerator_possible() -> bool:
    """Whether JAX may pick an accelerator: ``JAX_PLATFORMS`` names one first, or (unset) a
    GPU or TPU plugin is installed."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip() != "cpu"
    return (importlib.util.find_spec("libtpu") is not None
            or importlib.util.find_spec("jax_plugins") is not None
            or bool(importlib.metadata.entry_points(group="jax_plugins")))


def split_cpu(batch_size: int, devices: int | None = None) -> int:
    """Make the CPU ``devices`` JAX devices, so that training splits its batch over the cores.

    On one device, XLA overlaps a step's independent operations on the cores, which leaves
    cores idle where the operations are small and follow each other (``bench/step_cores.py``:
    mw_cubic_8's step kept 1.2 of 2 cores busy). As separate devices the cores each take a
    share of the batch (data-parallel, as on several accelerators), and the results agree with
    one device's to float32 rounding. ``bench/train_cpu_devices.py`` measures what it buys
    ``freeflow train``; see ``bench/README.md``, "Training on the cores of a CPU".

    Must run before JAX's first computation: the number of CPU devices is fixed when JAX
    starts its backends.

    Args:
      batch_size: samples per training step; every device gets the same share.
      devices: CPU devices wanted; ``None`` (automatic) takes one per usable core, at most as
        many as split ``batch_size`` evenly, and leaves JAX alone when it may run on an
        accelerator, when ``XLA_FLAGS`` or ``jax_num_cpu_devices`` already set the count, or
        when JAX has already started.

    Returns:
      the number of CPU devices this call set, or 0 when it left JAX's count alone.

    Raises:
      ValueError: an explicit ``devices`` that does not divide ``batch_size``, that disagrees
        with a count set elsewhere, or that comes after JAX has started.
    """
    preset = _count_set_elsewhere()
    explicit = devices is not None
    if explicit:
        if devices < 1:
            raise ValueError(f"--cpu-devices must be at least 1; got {devices}")
        if batch_size % devices:
            raise ValueError(f"--cpu-devices {devices} does not split the batch of "
                             f"{batch_size} evenly; pick a divisor of {batch_size}")
        if preset is not None and preset != devices:
            raise ValueError(f"the number of CPU devices is already set to {preset} (XLA_FLAGS "
                             f"or JAX_NUM_CPU_DEVICES); drop that setting or --cpu-devices")
    elif preset is not None or _accelerator_possible():
        return 0
    else:
        devices = max(d for d in range(1, usable_cores() + 1) if batch_size % d == 0)
    if preset is not None or devices == 1:
        return 0
    try:
        jax.config.update("jax_num_cpu_devices", devices)
    except RuntimeError:  # JAX has started, and with it the CPU's devices
        if explicit:
            raise ValueError("split_cpu must run before JAX's first computation (the number "
                             "of CPU devices is fixed when JAX starts)") from None
        return 0
    return devices


def _count_set_elsewhere() -> int | None:
    """The CPU device count that ``XLA_FLAGS`` or ``jax_num_cpu_devices`` already sets."""
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith(HOST_DEVICES_FLAG + "="):
            return int(flag.split("=", 1)[1])
    configured = jax.config.jax_num_cpu_devices
    return configured if configured > 0 else None
