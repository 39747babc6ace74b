"""freeflow.parallel.split_cpu: one JAX device per core, set before JAX starts."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from freeflow.cli import main
from freeflow.parallel import (_accelerator_possible, _count_set_elsewhere, automatic_count,
                               split_cpu)


def run_fresh(code: str, **env) -> subprocess.CompletedProcess:
    """``code`` in a new Python process (JAX not yet started), with ``env`` added."""
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=dict(base, JAX_PLATFORMS="cpu", **env), timeout=300)


def test_importing_freeflow_leaves_jax_unstarted():
    # blackjax computes when imported; freeflow must load it late, or split_cpu could never
    # take effect after `import freeflow`.
    done = run_fresh("""
        import freeflow, freeflow.cli
        import jax
        jax.config.update("jax_num_cpu_devices", 2)
        print(len(jax.devices()))
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "2"


def test_explicit_devices_split_the_cpu():
    done = run_fresh("""
        import freeflow
        from freeflow.parallel import batch_mesh, split_cpu
        n = split_cpu(128, 4)
        import jax
        print(n, len(jax.devices()), batch_mesh().size)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["4", "4", "4"]


@pytest.mark.parametrize("batch, cores, want", [(6, 4, 3), (128, 3, 2), (128, 2, 2),
                                                 (128, 1, 1), (7, 4, 1), (128, 64, 8),
                                                 (96, 12, 8), (90, 8, 6)])
def test_automatic_count_is_the_largest_divisor_of_the_batch_within_the_cores(batch, cores,
                                                                              want):
    assert automatic_count(batch, cores) == want


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
@pytest.mark.parametrize("cores", [1, 2])
def test_automatic_count_follows_the_cores_this_process_may_use(cores):
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < cores:
        pytest.skip(f"this machine lets the tests use {len(allowed)} core(s)")
    done = run_fresh(f"""
        import os
        os.sched_setaffinity(0, {set(allowed[:cores])!r})
        from freeflow.parallel import split_cpu
        import jax
        print(split_cpu(6), len(jax.devices()))
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == (["0", "1"] if cores == 1 else ["2", "2"])


@pytest.mark.parametrize("env, want", [
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, "3"),
    # XLA takes the last of repeated flags, and JAX's own setting over XLA_FLAGS.
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=4 "
                   "--xla_force_host_platform_device_count=3"}, "3"),
    ({"JAX_NUM_CPU_DEVICES": "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
     "3"),
])
def test_automatic_count_leaves_a_count_set_elsewhere(env, want):
    done = run_fresh("""
        from freeflow.parallel import split_cpu
        import jax
        print(split_cpu(128), len(jax.devices()))
    """, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["0", want]


def test_a_malformed_count_in_xla_flags_is_named():
    done = run_fresh("""
        from freeflow.parallel import split_cpu
        split_cpu(128)
    """, XLA_FLAGS="--xla_force_host_platform_device_count=two")
    assert done.returncode != 0
    assert "XLA_FLAGS sets --xla_force_host_platform_device_count='two'" in done.stderr


def test_nothing_changes_where_jax_may_pick_an_accelerator():
    done = run_fresh("""
        import jax
        jax.config.update("jax_platforms", "cuda,cpu")  # not started: nothing is looked up
        from freeflow.parallel import split_cpu
        print(split_cpu(128), split_cpu(128, 3), jax.config.jax_num_cpu_devices)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["0", "0", "-1"]


def test_explicit_count_disagreeing_with_xla_flags_is_refused():
    done = run_fresh("""
        from freeflow.parallel import split_cpu
        split_cpu(128, 2)
    """, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    assert done.returncode != 0
    assert "already set to 4" in done.stderr


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="does not split the batch of 128"):
        split_cpu(128, 3)
    with pytest.raises(ValueError, match="at least 1"):
        split_cpu(128, 0)


def test_explicit_count_after_jax_started_is_refused():
    jax.devices()  # this process has started JAX
    if _count_set_elsewhere() is not None or _accelerator_possible():
        pytest.skip("the environment sets the device count or offers an accelerator")
    with pytest.raises(ValueError, match="before JAX's first computation"):
        split_cpu(128, 2)
    assert split_cpu(128) == 0  # the automatic count gives way silently


def test_cli_refuses_a_device_count_that_does_not_divide_the_batch(tmp_path, capsys):
    assert main(["train", "mw_cubic_8", "--steps", "1", "--out", str(tmp_path / "run"),
                 "--cpu-devices", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["freeflow train: error: --cpu-devices 3 does not split the batch of 128 "
                   "evenly; pick a divisor of 128"]
    assert not (tmp_path / "run").exists()


def test_cli_trains_on_the_devices_it_asks_for(tmp_path):
    out = tmp_path / "run"
    done = run_fresh(f"""
        import sys
        from freeflow.cli import main
        code = main(["train", "mw_cubic_8", "--steps", "2", "--batch-size", "8", "--layers",
                     "2", "--out", {str(out)!r}, "--cpu-devices", "2"])
        import jax
        print("devices", len(jax.devices()))
        sys.exit(code)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the batch is split over 2 CPU devices" in done.stderr
    assert "devices 2" in done.stdout
    assert (out / "metrics.jsonl").read_text().count("\n") == 2
