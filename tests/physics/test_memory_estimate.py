"""The memory a system needs is estimated from N and the neighbour plan, and a system the
machine cannot hold is refused before anything is allocated (issue 39, case 9)."""

import math
import re
import resource
import time

import numpy as np
import pytest

import freeflow.physics.memory as memory
import freeflow.physics.system_files as system_module
from freeflow import LennardJones, build_lattice, load_system, system_from_atoms
from freeflow.physics.memory import (
    BYTES_PER_ELEMENT,
    BYTES_PER_ENTRY,
    BYTES_PER_LISTED_PAIR,
    BYTES_PER_PARTICLE,
    available_memory,
    check_memory,
    estimated_memory,
    format_bytes,
)
from freeflow.physics.neighbors import (
    CELL_ENTRIES_PER_PARTNER,
    estimated_partners,
    plan_memory,
    plan_neighbors,
)
from freeflow.physics.system_files import systems_directory


def _limit(monkeypatch, available):
    monkeypatch.setattr(memory, "available_memory", lambda: (int(available), "a test limit"))


def test_estimated_memory_is_the_documented_sum():
    assert estimated_memory(1000) == 1000 * BYTES_PER_PARTICLE
    assert estimated_memory(1000, listed_partners=100, entries=100, configurations=2) == (
        1000 * (BYTES_PER_PARTICLE + 100 * BYTES_PER_LISTED_PAIR + 2 * 100 * BYTES_PER_ENTRY))
    # Square [3N, 3N] float64 matrices grow as N^2.
    assert estimated_memory(100, square_matrices=3) == (
        100 * BYTES_PER_PARTICLE + 3 * BYTES_PER_ELEMENT * 300**2)
    # A number of particles no machine holds is plain arithmetic, not an overflow.
    assert estimated_memory(10**12, entries=10**12) > 10**25


def test_plan_memory_from_the_density_and_the_image_shifts():
    # 4 x 4 x 4 box, cutoff 2.7: |n| <= floor(2.7 / 4 + 1/2) = 1 per axis, 27 shifts.
    need, what = plan_memory("dense", 32, [4.0, 4.0, 4.0], 2.7, 0.5)
    assert need == estimated_memory(32, entries=32 * 27)
    assert what == "the all-pairs sum (32 x 27 partners per particle)"
    partners = 32 / 64.0 * 4.0 / 3.0 * math.pi * (2.7 + 1.0) ** 3
    assert estimated_partners(32, 64.0, 3.7) == pytest.approx(partners, rel=1e-15)
    need, _ = plan_memory("sites", 32, [4.0, 4.0, 4.0], 2.7, 0.5, configurations=5)
    assert need == estimated_memory(32, listed_partners=partners, entries=partners,
                                    configurations=5)
    need, _ = plan_memory("cells", 32, [4.0, 4.0, 4.0], 2.7, 0.5)
    assert need == estimated_memory(32, listed_partners=partners,
                                    entries=partners * CELL_ENTRIES_PER_PARTNER)


def test_the_estimate_bounds_a_real_site_list():
    """The density estimate against the site list lj_500 builds (320 partners per particle)."""
    system = load_system("lj_500")
    plan = system.neighbor_plan()
    assert plan.strategy == "sites"
    estimate = estimated_partners(500, system.volume,
                                  2.7 + system.nearest_neighbour_distance)
    assert 0.8 < estimate / plan.num_candidates(500) < 1.2


def test_available_memory_reads_meminfo_then_a_cgroup(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    1000 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    monkeypatch.setattr(memory, "CGROUP_MAX", tmp_path / "absent")
    assert available_memory() == (1024000, f"MemAvailable in {meminfo}")
    (tmp_path / "memory.max").write_text("600000\n")
    (tmp_path / "memory.current").write_text("100000\n")
    monkeypatch.setattr(memory, "CGROUP_MAX", tmp_path / "memory.max")
    monkeypatch.setattr(memory, "CGROUP_CURRENT", tmp_path / "memory.current")
    assert available_memory() == (500000, f"the cgroup limit {tmp_path / 'memory.max'}")
    (tmp_path / "memory.max").write_text("max\n")
    assert available_memory()[0] == 1024000


def test_without_meminfo_the_check_falls_back_or_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "absent")
    monkeypatch.setattr(memory, "CGROUP_MAX", tmp_path / "absent")
    found = available_memory()
    assert found is None or found[1] == "free physical pages"

    def no_sysconf(name):
        raise ValueError(name)
    monkeypatch.setattr(memory.os, "sysconf", no_sysconf)
    assert available_memory() is None
    check_memory(10**30, "anything", "nothing to do")  # nothing to compare with: no refusal


def test_check_memory_names_the_estimate_and_the_limit(monkeypatch):
    _limit(monkeypatch, 8e9)
    check_memory(int(7e9), "a small job", "never mind")
    with pytest.raises(ValueError, match="^" + re.escape(
            "a big job needs about 12 GB, more than the 8 GB available (a test limit); use "
            "fewer particles") + "$"):
        check_memory(int(12e9), "a big job", "use fewer particles")
    assert format_bytes(1.5e12) == "1.5 TB" and format_bytes(512) == "512 B"


def _huge_definition(tmp_path, cells_per_edge):
    text = (systems_directory() / "lj_32.toml").read_text()
    n = 4 * cells_per_edge**3
    path = tmp_path / "huge.toml"
    path.write_text(text.replace("num_particles = 32", f"num_particles = {n}"))
    return path, n


def test_a_system_far_too_large_is_refused_before_allocation(tmp_path, monkeypatch):
    """N = 1 000 188 FCC sites grew to 22 GB until the kernel killed it; now the definition is
    refused from N and the plan's size before its lattice is built."""
    _limit(monkeypatch, 8e9)

    def no_lattice(*args, **kwargs):
        raise AssertionError("the lattice was built")
    monkeypatch.setattr(system_module, "build_lattice", no_lattice)
    path, n = _huge_definition(tmp_path, 63)
    assert n == 1_000_188
    volume = n / 1.28
    spacing = (math.sqrt(2) * volume / n) ** (1 / 3)  # close packing bounds the excursions
    partners = estimated_partners(n, volume, 2.7 + spacing)
    # auto builds the cell list (the larger need of the two lists) and the site list.
    need = estimated_memory(n, listed_partners=partners,
                            entries=partners * CELL_ENTRIES_PER_PARTNER)
    start = time.perf_counter()
    with pytest.raises(ValueError) as refused:
        load_system(path)
    assert time.perf_counter() - start < 1.0
    assert str(refused.value) == (
        f"{path}: the energy of N = {n} particles, with a neighbour list of about "
        f"{partners:.3g} partners per particle, needs about {format_bytes(need)}, more than "
        f"the 8 GB available (a test limit); use fewer particles or a lower number density")


def test_this_machine_refuses_a_system_no_machine_holds(tmp_path):
    if available_memory() is None:
        pytest.skip("this machine does not say how much memory it has")
    path, n = _huge_definition(tmp_path, 2000)  # 3.2e10 sites: petabytes of neighbour list
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: the energy of N = {n} "
                                         f"particles, .* needs about [0-9.e+]+ TB, more than "):
        load_system(path)
    assert time.perf_counter() - start < 1.0
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kb < 100_000


def test_user_systems_plans_and_hessians_are_checked_too(monkeypatch):
    atoms = build_lattice("fcc", 108, 1.28)
    system = system_from_atoms(atoms, LennardJones(), 2.0, name="small")
    _limit(monkeypatch, 1e6)  # 1 MB: less than any plan of 108 particles
    with pytest.raises(ValueError, match=r"^small: the energy of N = 108 particles, with a "
                                         r"neighbour list of about \d+ partners per particle, "
                                         r"needs about .* more than the 1 MB available"):
        system_from_atoms(atoms, LennardJones(), 2.0, name="small")
    with pytest.raises(ValueError, match=r"^the energy of N = 108 particles, with the "
                                         r"all-pairs sum \(108 x 27 partners per particle\)"):
        plan_neighbors(system.lattice, system.box, 2.7, 0.5, "dense")
    _limit(monkeypatch, 2e6)  # less than three [324, 324] float64 matrices
    with pytest.raises(ValueError, match="^" + re.escape(
            "small: the lattice Hessian of N = 108 particles ([3N, 3N] in float64) needs about "
            f"{format_bytes(estimated_memory(108, square_matrices=3))}, more than the 2 MB "
            "available (a test limit); use fewer particles") + "$"):
        system.lattice_hessian()
    _limit(monkeypatch, 1e12)
    assert np.isfinite(system.lattice_energy())


def test_a_batch_too_large_for_memory_is_refused_before_sampling():
    """HMC of 10^12 chains of a small crystal: refused in one line naming the job, the
    estimate and the limit, before the chains are allocated."""
    import jax

    from freeflow import sample_system
    from freeflow.sampling.hmc import HMCConfig

    system = load_system("mw_cubic_8")
    with pytest.raises(ValueError, match=r"mw_cubic_8: HMC of 1000000000000 chains \(N = 8, "
                                         r".*\) needs about .* more than the .* available"):
        sample_system(system, jax.random.key(0), HMCConfig(num_chains=10**12, num_samples=1))
