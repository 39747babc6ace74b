"""Every input identified, every failure one line, nothing silently wrong (the probes of the
reliability issue, one test per case)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import freeflow
from freeflow import rundir
from freeflow.cli import main
from freeflow.physics.system_files import systems_directory
from freeflow.physics.identity import system_to_dict


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _definition(tmp_path, name="mw_cubic_8", edit=None, filename=None):
    text = (systems_directory() / f"{name}.toml").read_text()
    if edit is not None:
        text = edit(text)
    path = tmp_path / (filename or f"{name}_edited.toml")
    path.write_text(text)
    return path


# -- silent wrong numbers ----------------------------------------------------------------------


def test_lbar_refuses_a_reference_of_another_temperature(tiny_run, tmp_path, capsys):
    hot = freeflow.load_system(_definition(
        tmp_path, edit=lambda t: t.replace("temperature = 200.0", "temperature = 300.0")))
    reference = tmp_path / "ref_hot.npz"
    freeflow.save_samples(reference, np.repeat(hot.lattice[None], 4, axis=0), hot)
    assert main(["estimate", str(tiny_run), "--method", "lbar", "--target-samples",
                 str(reference), "--samples", "16"]) == 2
    _one_line_error(capsys, "ref_hot.npz", "T = 300 K", "T = 200 K")


@pytest.mark.parametrize("other", ["lj_32", "mw_hex_64", "hot"])
def test_a_checkpoint_does_not_load_into_another_system(tiny_run, tmp_path, capsys, other):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    record = json.loads((run / "run.json").read_text())
    if other == "hot":
        system = freeflow.load_system(_definition(
            tmp_path, edit=lambda t: t.replace("temperature = 200.0", "temperature = 250.0")))
    else:
        system = freeflow.load_system(other)
    record["system"] = json.loads(json.dumps(system_to_dict(system)))
    (run / "run.json").write_text(json.dumps(record))
    assert main(["estimate", str(run), "--samples", "16"]) == 2
    # Both sides named: the checkpoint's state point and flow, and what run.json says now.
    line = _one_line_error(capsys, "was trained for mw_cubic_8 (monatomic_water, N = 8, "
                                   "T = 200 K", "-layer flow on the ", " base, but ")
    assert f"run.json names {system.name} (" in line


@pytest.mark.parametrize("argv, needle", [
    (["sample", "mw_cubic_8", "--samples", "0"], "--samples must be at least 1"),
    (["sample", "mw_cubic_8", "--samples", "-5"], "--samples must be at least 1"),
    (["sample", "mw_cubic_8", "--chains", "0"], "--chains must be at least 1"),
    (["baseline", "mw_cubic_8", "--samples-per-state", "0"],
     "--samples-per-state must be at least 1"),
])
def test_bad_counts_are_errors(argv, needle, tmp_path, capsys):
    if argv[0] == "sample":
        argv = argv + ["--out", str(tmp_path / "s.npz")]
    start = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - start < 5  # refused before any sampling
    _one_line_error(capsys, needle)


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.replace("num_particles = 8", "num_particles = 8.7"), "positive whole number"),
    (lambda t: t.replace("epsilon = 6.189\n", ""), "lacks epsilon"),
    (lambda t: t.replace("temperature = 200.0", ""), "lacks temperature"),
    (lambda t: t.replace("num_particles = 8\n", ""), "num_particles"),
    (lambda t: t.replace("number_density = 0.033567184", "number_density = inf"),
     "positive and finite"),
    (lambda t: t + "\n[broken\n", "not valid TOML"),
])
def test_bad_system_definitions_are_one_line(tmp_path, capsys, edit, needle):
    path = _definition(tmp_path, edit=edit)
    assert main(["energy", str(path)]) == 2
    _one_line_error(capsys, needle)


def test_system_file_names(tmp_path, capsys):
    upper = _definition(tmp_path, filename="mysys.TOML")
    assert main(["energy", str(upper), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_particles"] == 8
    (tmp_path / "dir.toml").mkdir()
    assert main(["energy", str(tmp_path / "dir.toml")]) == 2
    _one_line_error(capsys, "is a directory")


def test_an_overlapping_structure_is_refused_like_any_bad_input(tmp_path, capsys):
    atoms = freeflow.load_system("mw_cubic_8").atoms.copy()
    atoms.positions[1] = atoms.positions[0]  # two molecules on one spot
    path = tmp_path / "overlap.extxyz"
    atoms.write(path)
    assert main(["energy", "mw_cubic_8", "--structure", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no half-valid JSON
    assert captured.err.count("\n") == 1 and "is not finite" in captured.err
    assert "overlapping particles" in captured.err


# -- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("out, needle", [
    ("samples.txt", "unsupported format"),
    ("adir.npz", "is a directory"),
    ("afile/s.npz", "is a file"),
])
def test_sample_output_is_checked_before_sampling(tmp_path, capsys, out, needle):
    (tmp_path / "adir.npz").mkdir()
    (tmp_path / "afile").write_text("x")
    start = time.perf_counter()
    assert main(["sample", "mw_cubic_8", "--out", str(tmp_path / out)]) == 2
    assert time.perf_counter() - start < 5
    _one_line_error(capsys, needle)


def test_baseline_workdir_is_checked_before_sampling(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["baseline", "mw_cubic_8", "--workdir", str(tmp_path / "file")]) == 2
    _one_line_error(capsys, "is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_directory(tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["sample", "mw_cubic_8", "--out", str(locked / "s.npz")]) == 2
        _one_line_error(capsys, "cannot write")
    finally:
        locked.chmod(0o700)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.npz"
    target.write_bytes(b"old")
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="cannot write .*checkpoint.npz: No space left"):
        rundir.atomic_write_bytes(target, b"new")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_bytes() == b"old"
    assert not (tmp_path / "checkpoint.npz.tmp").exists()


def test_truncated_run_json_names_the_file(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    text = (run / "run.json").read_text()
    (run / "run.json").write_text(text[: len(text) // 2])
    assert main(["estimate", str(run), "--samples", "16"]) == 2
    _one_line_error(capsys, str(run / "run.json"), "not a valid run record")


@pytest.mark.parametrize("name, content, needle", [
    ("garbage.npz", b"this is not a zip file", "not a readable sample file"),
    ("garbage.extxyz", b"3\nno lattice here\nX 0 0\n", "not a readable sample file"),
    ("plain.extxyz", None, "no freeflow system record"),
])
def test_bad_reference_files(tiny_run, tmp_path, capsys, name, content, needle):
    path = tmp_path / name
    if content is None:
        freeflow.load_system("mw_cubic_8").atoms.write(path)  # ASE's own extxyz
    else:
        path.write_bytes(content)
    assert main(["estimate", str(tiny_run), "--method", "lbar", "--target-samples", str(path),
                 "--samples", "16"]) == 2
    _one_line_error(capsys, needle)


def test_a_second_writer_is_refused(tmp_path, capsys):
    workdir = tmp_path / "work"
    with rundir.DirectoryLock(workdir):
        assert main(["baseline", "mw_cubic_8", "--workdir", str(workdir), "--states", "2",
                     "--samples-per-state", "8", "--chains", "2"]) == 2
        _one_line_error(capsys, "is in use by freeflow process", str(workdir))
    with rundir.DirectoryLock(workdir):  # released by the first holder: free again
        pass


# -- processes: devices, signals ----------------------------------------------------------------


def _freeflow(args, env_extra=None, **kwargs):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "freeflow.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def test_a_refused_start_writes_nothing(tmp_path):
    """--batch-size 33 on two devices is refused before run.json is written, so the corrected
    command is accepted afterwards."""
    out = tmp_path / "run"
    proc = _freeflow(["train", "mw_cubic_8", "--out", str(out), "--batch-size", "33",
                      "--steps", "1"],
                     {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "multiple of the number of devices (2)" in err
    assert "Traceback" not in err
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("signum, status, delay", [
    (signal.SIGINT, 130, 1.0), (signal.SIGINT, 130, 6.0), (signal.SIGINT, 130, 15.0),
    (signal.SIGTERM, 143, 1.0), (signal.SIGTERM, 143, 6.0), (signal.SIGTERM, 143, 15.0)])
def test_ctrl_c_and_sigterm_stop_promptly(tmp_path, signum, status, delay):
    """SIGINT or SIGTERM (what batch schedulers send) during start-up, during the training
    step's compilation and during training: exit 130 or 143 within a few seconds, one
    message, no traceback; once running, the message says the finished work is kept."""
    proc = _freeflow(["train", "mw_cubic_8", "--out", str(tmp_path / "run"), "--steps",
                      "100000", "--batch-size", "8"])
    time.sleep(delay)
    sent = time.perf_counter()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert time.perf_counter() - sent < 5
    assert proc.returncode == status, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    if delay > 10:
        assert "finished work is kept" in err


RESUMABLE = {
    "baseline": ["baseline", "mw_cubic_8", "--states", "64", "--samples-per-state", "100000",
                 "--workdir", "{tmp}/mbar"],
    "sample": ["sample", "mw_cubic_8", "--out", "{tmp}/samples.npz", "--samples", "10000000"],
    "smc": ["estimate", "mw_cubic_8", "--method", "smc", "--base", "harmonic", "--repeats",
            "200", "--workdir", "{tmp}/smc"],
}
STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _signal_when(proc, phase: str, signum) -> float:
    """Send ``signum`` to ``proc`` at ``phase``: ``start`` 1 s after it started (Python and
    freeflow still importing), ``compile`` as JAX reports its first compilation (the process
    runs with JAX_LOG_COMPILES=1), ``steady`` after 12 s (sampling, past every compilation).
    Returns when it was sent (``time.perf_counter``)."""
    if phase == "compile":
        for line in proc.stderr:  # JAX logs "Compiling <function> ..." before each compilation
            if "Compiling" in line:
                break
        else:
            raise AssertionError("the command ended before it compiled anything")
    else:
        time.sleep({"start": 1.0, "steady": 12.0}[phase])
    sent = time.perf_counter()
    proc.send_signal(signum)
    return sent


@pytest.mark.parametrize("command", sorted(RESUMABLE))
@pytest.mark.parametrize("phase, signum", [
    ("start", signal.SIGINT), ("start", signal.SIGTERM), ("compile", signal.SIGINT),
    ("compile", signal.SIGTERM), ("steady", signal.SIGINT), ("steady", signal.SIGTERM)])
def test_signals_stop_the_resumable_commands_promptly(tmp_path, command, phase, signum):
    """SIGINT or SIGTERM at start-up, during compilation and in the middle of MBAR, sampling
    or SMC with a work directory: exit 130 or 143 within a few seconds, one line, no
    traceback; once the command runs, the line says the finished work is kept."""
    argv = [arg.format(tmp=tmp_path) for arg in RESUMABLE[command]]
    proc = _freeflow(argv, {"JAX_LOG_COMPILES": "1"} if phase == "compile" else None)
    sent = _signal_when(proc, phase, signum)
    _, err = proc.communicate(timeout=60)
    assert time.perf_counter() - sent < 5
    assert proc.returncode == STATUS[signum], err[-2000:]
    assert "Traceback" not in err
    if phase == "start":
        assert err.strip().splitlines()[-1] in ("freeflow: interrupted",
                                                f"freeflow {argv[0]}: interrupted; finished "
                                                "work is kept (run the same command to "
                                                "continue)")
    else:
        assert f"freeflow {argv[0]}: interrupted; finished work is kept" in err


def test_interrupted_smc_without_workdir_says_nothing_was_kept(tmp_path):
    proc = _freeflow(["estimate", "mw_cubic_8", "--method", "smc", "--base", "harmonic",
                      "--particles", "64", "--repeats", "64"])
    time.sleep(12.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "nothing was kept (--workdir or --out makes this command resumable)" in err


# -- continuing a run, compiling once -------------------------------------------------------


def test_extend_a_finished_run_and_compile_the_step_once(tmp_path, caplog):
    from freeflow.flows.config import ModelConfig
    from freeflow.training.config import TrainingConfig
    import logging
    import jax

    tiny = ModelConfig(num_layers=1, num_bins=4, embedding_size=8, num_heads=1, num_blocks=1,
                       num_frequencies=1)
    training = TrainingConfig(num_steps=2, batch_size=8, decay_steps=(1,), eval_every=0,
                              checkpoint_every=1)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        freeflow.train("mw_cubic_8", out, model_config=tiny, training=training)
    compiled = [r.getMessage() for r in caplog.records if "Compiling step" in r.getMessage()
                or "Compiling jit(step)" in r.getMessage()]
    assert len(compiled) == 1, compiled
    extended = freeflow.train("mw_cubic_8", out, extend=3)
    assert [m["step"] for m in extended.metrics] == [1, 2, 3, 4, 5]
    record = json.loads((out / "run.json").read_text())
    assert record["training"]["num_steps"] == 5 and record["training"]["decay_steps"] == [1]
    with pytest.raises(ValueError, match="leave out the other"):
        freeflow.train("mw_cubic_8", out, extend=1, batch_size=16)
    with pytest.raises(ValueError, match="nothing to extend"):
        freeflow.train("mw_cubic_8", tmp_path / "none", extend=1)


def test_sample_writes_as_it_goes_and_continues(tmp_path, capsys, monkeypatch):
    """The file holds every finished chunk with the chains' state; the same command with more
    samples continues the chains instead of starting again."""
    from freeflow.workflows import sampling
    monkeypatch.setattr(sampling, "_MIN_CHUNK", 4)
    out = tmp_path / "s.npz"
    assert main(["sample", "mw_cubic_8", "--out", str(out), "--samples", "16", "--chains", "2",
                 "--warmup", "20", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["num_saved"] == 16 and first["continued"] == 0
    chains = rundir.read_chains(out)
    assert chains["positions"].shape == (2, 8, 3) and chains["step_size"] > 0
    positions, _, _ = freeflow.load_samples(out)
    assert main(["sample", "mw_cubic_8", "--out", str(out), "--samples", "24", "--chains", "2",
                 "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["num_saved"] == 24 and second["continued"] == 16
    more, _, _ = freeflow.load_samples(out)
    # chain-major: each chain's first 8 samples are the ones saved before
    np.testing.assert_array_equal(more.reshape(2, 12, 8, 3)[:, :8],
                                  positions.reshape(2, 8, 8, 3))
    assert main(["sample", "mw_cubic_8", "--out", str(out), "--samples", "32", "--chains", "4"
                 ]) == 2
    _one_line_error(capsys, "holds 2 chains, not 4")


def test_a_structure_with_nan_positions_is_refused(tmp_path, capsys):
    atoms = freeflow.load_system("mw_cubic_8").atoms.copy()
    positions = atoms.positions.copy()
    positions[2] = np.nan
    atoms.positions = positions
    path = tmp_path / "nan.extxyz"
    atoms.write(path)
    assert main(["energy", "mw_cubic_8", "--structure", str(path), "--json"]) == 2
    _one_line_error(capsys, "positions of atoms 2 are not finite")
