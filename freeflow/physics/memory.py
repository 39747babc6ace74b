"""How much memory evaluating a system's energy needs, and refusing what the machine cannot hold.

What grows with the number of particles N (``freeflow.physics.neighbors``):

* a site or cell list: ``K`` partners per particle, ``N K`` pairs. ASE's neighbour list, which
  builds both, holds every candidate pair of neighbouring bins while it works: its peak, not
  the stored tables, dominates (``BYTES_PER_LISTED_PAIR``);
* the entries one energy evaluation computes on (displacements, masks, pair terms, slopes):
  ``N K`` for a list, ``N^2 S`` for all pairs with ``S`` image shifts, once per configuration
  evaluated together (``BYTES_PER_ENTRY``);
* square float64 matrices ``[3N, 3N]``, such as the lattice Hessian (``BYTES_PER_ELEMENT``).

``estimated_memory`` is that arithmetic, ``available_memory`` reads what the machine has, and
``check_memory`` refuses a need above it in one line with both numbers, before anything is
allocated.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

#: Peak bytes per listed pair while ASE's neighbour list builds a site or cell list. Measured
#: (peak resident memory of ``System.neighbor_plan()``): 2050 for Lennard-Jones FCC N = 4000
#: (1.28 M pairs, 2.6 GB), 1280 at N = 32 000 (10.2 M pairs, 13.1 GB), 1200 for mW diamond
#: N = 4096 (0.19 M pairs, 0.23 GB).
BYTES_PER_LISTED_PAIR = 2_000
#: Bytes per entry per configuration of one energy (and gradient) evaluation. Measured: 57 for
#: mW's all-pairs energy + forces at N = 4096 (8 for the energy alone; Lennard-Jones fuses its
#: all-pairs sums into blocks and needs almost none).
BYTES_PER_ENTRY = 64
#: Bytes per particle outside the pair arrays: positions and sites in several precisions, the
#: ``ase.Atoms`` (measured about 140 for a System of N = 32 000; rounded up).
BYTES_PER_PARTICLE = 1_000
#: One float64 element of a ``[3N, 3N]`` matrix.
BYTES_PER_ELEMENT = 8

#: Where ``available_memory`` reads the machine's free memory (Linux).
MEMINFO = Path("/proc/meminfo")
#: A cgroup v2 memory limit and use (containers); read where present.
CGROUP_MAX = Path("/sys/fs/cgroup/memory.max")
CGROUP_CURRENT = Path("/sys/fs/cgroup/memory.current")


def estimated_memory(num_particles: int, listed_partners: float = 0.0, entries: float = 0.0,
                     configurations: int = 1, square_matrices: int = 0) -> int:
    """Peak bytes to build a neighbour plan and evaluate energies with it (an estimate).

    Args:
      num_particles: N.
      listed_partners: partners per particle of a site or cell list built with ASE's neighbour
        list (0 for the all-pairs plan, which lists nothing).
      entries: entries per particle one evaluation computes on: ``K`` for a list, ``N S`` for
        all pairs (``S`` image shifts).
      configurations: configurations evaluated together (a batch).
      square_matrices: float64 ``[3N, 3N]`` matrices held at once (a Hessian and its copies).

    Returns:
      ``N (BYTES_PER_PARTICLE + BYTES_PER_LISTED_PAIR listed_partners + BYTES_PER_ENTRY entries
      configurations) + BYTES_PER_ELEMENT square_matrices (3N)^2`` bytes.
    """
    n = float(num_particles)
    per_particle = (BYTES_PER_PARTICLE + BYTES_PER_LISTED_PAIR * float(listed_partners)
                    + BYTES_PER_ENTRY * float(entries) * configurations)
    return int(n * per_particle + BYTES_PER_ELEMENT * square_matrices * (3.0 * n) ** 2)


def available_memory() -> tuple[int, str] | None:
    """Bytes the machine can still give this process, and where that number comes from.

    ``MemAvailable`` of ``/proc/meminfo``, lowered to a cgroup v2 limit's headroom where one
    is set (a container); else the free physical pages (``os.sysconf``); ``None`` where none
    of these can be read (the memory check is then skipped).
    """
    found = []
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, f"MemAvailable in {MEMINFO}"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = CGROUP_MAX.read_text().strip()
        if limit != "max":
            headroom = int(limit) - int(CGROUP_CURRENT.read_text().strip())
            found.append((max(headroom, 0), f"the cgroup limit {CGROUP_MAX}"))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            found.append((int(pages), "free physical pages"))
        except (OSError, ValueError, AttributeError):
            return None
    return min(found)


def check_memory(needed: int, what: str, fix: str) -> None:
    """Refuse ``what`` (a phrase such as ``"lj_big: a neighbour list of N = ..."``) when its
    estimated ``needed`` bytes exceed ``available_memory()``, in one line with both numbers and
    ``fix``. Does nothing where the available memory cannot be read."""
    available = available_memory()
    if available is None or needed <= available[0]:
        return
    raise ValueError(f"{what} needs about {format_bytes(needed)}, more than the "
                     f"{format_bytes(available[0])} available ({available[1]}); {fix}")


def program_memory(compiled) -> int | None:
    """Bytes a compiled XLA program allocates per device beyond its arguments, by XLA's own
    buffer assignment (``compiled.memory_analysis()``): its temporaries (every activation a
    reverse pass keeps) and outputs, less the outputs written into donated arguments. ``None``
    where the backend does not report it.
    """
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    return int(analysis.temp_size_in_bytes + analysis.output_size_in_bytes
               - analysis.alias_size_in_bytes)


def check_program_memory(compiled, what: str, fix: str) -> None:
    """Refuse to run ``compiled`` (a ``jax.stages.Compiled``) when its ``program_memory`` does
    not fit the devices (``check_device_memory``). Nothing has run yet, so nothing is
    allocated; a backend that reports no memory analysis is not checked."""
    per_device = program_memory(compiled)
    if per_device is not None:
        check_device_memory(per_device, what, fix)


def check_device_memory(per_device: int, what: str, fix: str) -> None:
    """Refuse ``what`` when ``per_device`` bytes on every local device do not fit: CPU
    devices share the host's memory, so all of them together against ``available_memory()``;
    on accelerators one device's share against the least free memory of any of them
    (``memory_stats``; not checked where a device reports none). Each process decides for its
    own devices and host."""
    devices = jax.local_devices()
    if devices[0].platform == "cpu":
        check_memory(per_device * len(devices), what, fix)
        return
    stats = [device.memory_stats() or {} for device in devices]
    if any("bytes_limit" not in s for s in stats):
        return
    free = min(int(s["bytes_limit"]) - int(s.get("bytes_in_use", 0)) for s in stats)
    if per_device > free:
        raise ValueError(f"{what} needs about {format_bytes(per_device)} per device, more "
                         f"than the {format_bytes(free)} free on the fullest "
                         f"{devices[0].device_kind}; {fix}")


def format_bytes(count: float) -> str:
    """``1.5 GB``-style text (decimal units)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} B"
