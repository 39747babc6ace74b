"""Two processes joined by ``jax.distributed`` give what one process with two devices gives.

``tests/multiprocess_worker.py`` trains a tiny flow for 3 steps, runs a 3-state MBAR path
and a 2-run SMC estimate of mw_cubic_8, once in one process with two CPU devices and once as
two processes of one CPU device each (gloo collectives), where the same two-device mesh spans
the processes. The programs and their random numbers are the same, so the results must agree
to float32 rounding of the reductions (collectives may sum in another order): 1e-5 relative
on the training losses and parameters, and 1e-6 absolute on ``beta F / N``, about 10 float32
ulps of the works summed per particle. Process 0 alone writes the run directory.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("multiprocess_worker.py")
TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    return dict(env, JAX_PLATFORMS="cpu")


def run_worker(out: Path, *extra: str) -> subprocess.Popen:
    out.mkdir(parents=True)
    return subprocess.Popen([sys.executable, str(WORKER), str(out), *extra], env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> None:
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert process.returncode == 0, output[-3000:]


def test_two_processes_agree_with_one(tmp_path):
    one = run_worker(tmp_path / "one")
    finish(one)
    port = str(free_port())
    processes = [run_worker(tmp_path / f"p{i}", "--process-id", str(i), "--num-processes", "2",
                            "--port", port) for i in range(2)]
    for process in processes:
        finish(process)
    reference = json.loads((tmp_path / "one" / "results.json").read_text())
    for i in range(2):
        split = json.loads((tmp_path / f"p{i}" / "results.json").read_text())
        assert split["losses"] == pytest.approx(reference["losses"], rel=1e-5)
        assert split["params_norm"] == pytest.approx(reference["params_norm"], rel=1e-5)
        for method in ("mbar", "smc"):
            assert split[method][0] == pytest.approx(reference[method][0], abs=1e-6), method
            assert split[method][1] == pytest.approx(reference[method][1], rel=1e-3), method
    # Process 0 wrote the run directory; process 1, computing the same, wrote nothing.
    assert "checkpoint.npz" in reference["run_files"]
    assert json.loads((tmp_path / "p0" / "results.json").read_text())["run_files"] \
        == reference["run_files"]
    assert json.loads((tmp_path / "p1" / "results.json").read_text())["run_files"] == []
