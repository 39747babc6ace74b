"""``freeflow train`` on one CPU device against one device per core (``--cpu-devices``).

    python bench/train_cpu_devices.py --systems mw_cubic_8 lj_32 mw_cubic_64 --steps 80 \\
        --rounds 2 --out bench/results/train_cpu_devices.jsonl

For each system and round, the CLI trains a fresh run of ``--steps`` steps (the ``cpu``
preset as ``freeflow train`` runs it: path gradient, layer norm, batch 128) once with
``--cpu-devices 1`` and once with ``--cpu-devices N`` (N: what ``auto`` takes,
``freeflow.parallel.automatic_count`` of the usable cores), alternating which goes first from round to round; each is its own process,
since the number of devices is fixed when JAX starts. The seconds per step come from the
``time`` stamps of the run's ``metrics.jsonl`` over steps ``--skip``..``--steps`` (after the
compilation and the first steps). Reported per system: the median seconds per step of each
setting over the rounds, the speed-up (one device's time over N devices'), and the first
step's loss of both (the same parameters and batch, so they agree to float32 rounding).

One JSON line per system on stdout (and appended to ``--out``), a summary on stderr. Needs at
least two usable cores; the runs go to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freeflow.parallel import automatic_count, usable_cores  # noqa: E402
from freeflow.training.config import TRAINING_PRESETS  # noqa: E402


def timed_run(system: str, devices: int, steps: int, skip: int, out: Path) -> dict:
    """Train ``system`` for ``steps`` steps on ``devices`` CPU devices; its seconds per step."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "freeflow.cli", "train", system, "--steps",
                           str(steps), "--out", str(out), "--cpu-devices", str(devices)],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"freeflow train {system} --cpu-devices {devices} failed: "
                         f"{done.stderr.strip().splitlines()[-1]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = {r["step"]: r["time"] for r in records}
    return {"step_s": (times[steps] - times[skip]) / (steps - skip), "wall_s": wall,
            "first_loss": records[0]["loss"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["mw_cubic_8", "lj_32", "mw_cubic_64"])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--skip", type=int, default=20,
                        help="steps left out of the timing (compilation, warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.skip < args.steps:
        parser.error("--skip must be at least 1 and below --steps")
    batch = TRAINING_PRESETS["cpu"].batch_size
    cores = usable_cores()
    split = automatic_count(batch, cores)  # what --cpu-devices auto takes
    if split < 2:
        print(f"error: {cores} usable core(s) give no second device for a batch of {batch}; "
              f"run this on a machine with at least 2 cores", file=sys.stderr)
        return 2
    settings = [1, split]
    print(f"# {platform.machine()}, {cores} usable cores, devices {settings}, {args.steps} "
          f"steps timed from step {args.skip}, {args.rounds} rounds", file=sys.stderr,
          flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for system in args.systems:
            runs = {d: [] for d in settings}
            for round_index in range(args.rounds):
                order = settings if round_index % 2 == 0 else settings[::-1]
                for devices in order:
                    out = Path(scratch) / f"{system}_{devices}_{round_index}"
                    runs[devices].append(timed_run(system, devices, args.steps, args.skip, out))
                    print(f"# {system}: round {round_index + 1}, {devices} device(s): "
                          f"{runs[devices][-1]['step_s']:.3f} s/step", file=sys.stderr,
                          flush=True)
            step_s = {str(d): float(np.median([r["step_s"] for r in runs[d]])) for d in settings}
            first = [runs[d][0]["first_loss"] for d in settings]
            row = {"bench": "train_cpu_devices", "system": system, "batch": batch,
                   "steps": args.steps, "timed_from_step": args.skip, "rounds": args.rounds,
                   "machine": platform.machine(), "usable_cores": cores,
                   "step_s": step_s, "runs": {str(d): runs[d] for d in settings},
                   "speedup": step_s["1"] / step_s[str(split)],
                   "first_loss_relative_difference": abs(first[0] - first[1]) / abs(first[0])}
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
            print(f"{system}: {step_s['1']:.3f} s/step on 1 device, {step_s[str(split)]:.3f} on "
                  f"{split}: {row['speedup']:.2f}x; first losses agree to "
                  f"{row['first_loss_relative_difference']:.1e}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
