"""The device mesh that training and sampling share: one ``"batch"`` axis over every device.

With ``jax.distributed.initialize()`` called first in every process, ``jax.devices()`` lists
the devices of all hosts and the mesh spans them: a training batch, the chains of an HMC state
and the particles of SMC are split over every process's devices, and every process runs the
same program on its share. Two rules keep the processes in step: an array that lies partly on
other processes' devices comes to the host through ``to_host`` (which gathers it, in every
process), and only process 0 writes files (``writes_files``). On a multi-core CPU,
``split_cpu`` makes each core a JAX device, so that the mesh splits the batch over the cores.
Imports nothing else of freeflow.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

import jax
import numpy as np

__all__ = ["automatic_count", "batch_mesh", "batch_sharding", "decided_by_process_0",
           "replicated", "split_cpu", "to_host", "usable_cores", "writes_files"]

#: The XLA flag that also sets the number of CPU devices; a user's value is left alone.
HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"
#: The most devices the automatic count takes. Measured on 2 cores only (docs/scaling.md,
#: "The cores of one CPU"); past a few devices each one's share of a batch of 128 is a
#: handful of samples. ``--cpu-devices`` sets more.
MAX_AUTOMATIC_DEVICES = 8


def batch_mesh() -> jax.sharding.Mesh:
    """A one-axis mesh named ``"batch"`` over ``jax.devices()``."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("batch",))


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Split an array's leading axis (samples, chains) across the mesh's devices."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """The same array on every device of the mesh."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def to_host(x) -> np.ndarray:
    """``x`` as one NumPy array on this host, also where its shards lie on the devices of other
    processes (``jax.distributed``): those are gathered, so every process must call this for
    the same array at the same point. Anything else goes through ``np.asarray``."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def decided_by_process_0(flag: bool) -> bool:
    """``flag`` as process 0 has it, in every process of a ``jax.distributed`` job (a decision
    from a process's own clock, say, that all must take alike or the others would wait at the
    next collective); ``flag`` itself in a single process."""
    if not jax.distributed.is_initialized() or jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(bool(flag))))


def writes_files() -> bool:
    """Whether this process writes run and work directories: always, except in a job of
    several processes joined by ``jax.distributed``, where process 0 writes and the others,
    which compute the same values, only read."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (where the platform reports one),
    capped by a container's CPU quota (cgroup v2 ``cpu.max``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = cores or os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return min(cores, quota) if quota else cores


def _cgroup_cpu_quota() -> int | None:
    """Whole CPUs of this process's cgroup v2 quota, or ``None`` where none is set."""
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return max(1, int(fields[0]) // int(fields[1]))
    except (OSError, ValueError, IndexError, ZeroDivisionError):  # "max 100000": no quota
        return None


def automatic_count(batch_size: int, cores: int) -> int:
    """CPU devices for ``split_cpu``'s automatic count: one per core, at most
    ``MAX_AUTOMATIC_DEVICES``, and at most as many as split ``batch_size`` evenly."""
    limit = max(1, min(cores, MAX_AUTOMATIC_DEVICES))
    return max(d for d in range(1, limit + 1) if batch_size % d == 0)


def _accelerator_possible() -> bool:
    """Whether JAX may pick an accelerator: ``jax_platforms`` (``JAX_PLATFORMS``) names one
    first, or, unset, a GPU or TPU plugin is installed."""
    platforms = (jax.config.jax_platforms or "").strip()
    if platforms:
        return platforms.split(",")[0].strip() != "cpu"
    return (importlib.util.find_spec("libtpu") is not None
            or importlib.util.find_spec("jax_plugins") is not None
            or bool(importlib.metadata.entry_points(group="jax_plugins")))


def split_cpu(batch_size: int, devices: int | None = None) -> int:
    """Make the CPU ``devices`` JAX devices, so that training splits its batch over the cores.

    On one device, XLA overlaps a step's independent operations on the cores, which leaves
    cores idle where the operations are small and follow each other (mw_cubic_8's step kept
    1.2 of 2 cores busy). As separate devices the cores each take a share of the batch
    (data-parallel, as on several accelerators), and the results agree with one device's to
    float32 rounding. On 2 cores ``freeflow train``'s steps ran 1.18x (lj_32) to 1.57x
    (mw_cubic_8) faster (docs/scaling.md, "The cores of one CPU").

    Must run before JAX's first computation: the number of CPU devices is fixed when JAX
    starts its backends.

    Args:
      batch_size: samples per training step; every device gets the same share.
      devices: CPU devices wanted; ``None`` (automatic) takes ``automatic_count`` of the
        usable cores, and leaves JAX alone when ``XLA_FLAGS`` or ``jax_num_cpu_devices``
        (``JAX_NUM_CPU_DEVICES``) already set the count or when JAX has already started.
        Either way nothing changes where JAX may run on an accelerator: the devices that
        train are then the accelerators.

    Returns:
      the number of CPU devices this call set, or 0 when it left JAX's count alone.

    Raises:
      ValueError: an explicit ``devices`` that does not divide ``batch_size``, that disagrees
        with a count set elsewhere, or that comes after JAX has started.
    """
    if _accelerator_possible():
        return 0
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
    if preset is not None:
        return 0
    if not explicit:
        devices = automatic_count(batch_size, usable_cores())
    if devices == 1:
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
    """The CPU device count already set: ``jax_num_cpu_devices`` (or ``JAX_NUM_CPU_DEVICES``),
    which JAX lets override ``XLA_FLAGS``, else the last count in ``XLA_FLAGS``."""
    configured = jax.config.jax_num_cpu_devices
    if configured > 0:
        return configured
    counts = [flag.split("=", 1)[1] for flag in os.environ.get("XLA_FLAGS", "").split()
              if flag.startswith(HOST_DEVICES_FLAG + "=")]
    if not counts:
        return None
    try:
        return int(counts[-1])
    except ValueError:
        raise ValueError(f"XLA_FLAGS sets {HOST_DEVICES_FLAG}={counts[-1]!r}, not a number of "
                         f"devices; fix or drop it") from None
