"""How fast a training run's loss was still falling, and how long its trend needs to a target.

Reads a run directory's ``metrics.jsonl`` and prints the mean batch loss (reverse KL plus the
constant -ln Z, in nats) with its standard error over doubling windows of steps (steps
n/2..n for n = 100, 200, 400, ...; the last window ends at the final step), the elapsed
training time at each window's end, and the slope of the mean loss per doubling of the step
count over the last ``--fit`` windows (least squares in log2 of the window's end step; a
trend, not a prediction). If
``--target-kl`` is given with the exact ``ln Z`` (from the MBAR value in
``freeflow/data/results/baseline.jsonl``), it also prints the number of steps, and the training time at
the run's mean step rate, at which that log-linear trend would reach ``-ln Z + target_kl``.

For a flow whose works are Gaussian with variance s^2, KL = s^2 / 2 and ESS = exp(-s^2), so
ESS 10% needs KL = ln(10) / 2 = 1.15 nats (the default target).

    python bench/loss_trend.py runs/bench_train_cpu_path/lj_32
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import freeflow
from freeflow.estimators.conventions import beta_f_from_flow_log_z
from freeflow.rundir import read_baseline, read_metrics, read_run_record


def flow_log_z_exact(system, beta_f: float) -> float:
    """The ``ln Z`` on the flow's scale (the one ``-loss`` bounds) for a given ``beta F / N``.

    ``beta F / N`` is affine in the flow's ``ln Z``; solve it from two points.
    """
    f0 = beta_f_from_flow_log_z(system, 0.0)
    f1 = beta_f_from_flow_log_z(system, 1.0)
    return (beta_f - f0) / (f1 - f0)


def windows(loss: np.ndarray, first: int = 100):
    """``(start, end)`` step windows n/2..n for doubling n, the last one ending at the end.

    A doubling window ending within the last third of the run is left out: the final window
    would mostly repeat it.
    """
    out, end = [], first
    while 1.5 * end < len(loss):
        out.append((end // 2, end))
        end *= 2
    out.append((len(loss) // 2, len(loss)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--fit", type=int, default=3, help="windows in the slope fit")
    parser.add_argument("--target-kl", type=float, default=0.5 * math.log(10.0),
                        help="KL (nats) the extrapolation aims at (default: ESS 10%% if the "
                             "works were Gaussian)")
    parser.add_argument("--baseline", type=Path, default=Path("freeflow/data/results/baseline.jsonl"))
    args = parser.parse_args(argv)
    run = read_run_record(args.run_dir)
    if run is None:
        parser.error(f"{args.run_dir} is not a run directory written by freeflow train")
    rows = [r for r in read_metrics(args.run_dir) if "loss" in r]
    if len(rows) < 200:
        parser.error(f"{args.run_dir} has {len(rows)} steps; the trend needs at least 200")
    loss = np.array([r["loss"] for r in rows], np.float64)
    times = np.array([r.get("time", np.nan) for r in rows], np.float64)
    elapsed = times - times[0]
    system = freeflow.physics.system.system_from_dict(run["system"])
    print(f"{args.run_dir}: {len(loss)} steps in {elapsed[-1] / 60:.1f} min "
          f"({(len(loss) - 1) / elapsed[-1]:.2f} steps/s)")
    print("  steps          mean loss     minutes")
    points = []
    for start, end in windows(loss):
        part = loss[start:end]
        error = part.std(ddof=1) / math.sqrt(len(part))
        points.append((end, part.mean()))
        print(f"  {start:>5}-{end:<5} {part.mean():>10.3f}({round(error * 1000):>2})"
              f"{elapsed[end - 1] / 60:>10.1f}")
    fit = points[-args.fit:]
    if len(fit) < 2:
        return
    slope, intercept = np.polyfit(np.log2([p[0] for p in fit]), [p[1] for p in fit], 1)
    print(f"slope over the last {len(fit)} windows: {slope:+.3f} nats per doubling of steps")
    baseline = read_baseline(args.baseline) if args.baseline.is_file() else {}
    if system.name not in baseline:
        print(f"(no MBAR value for {system.name} in {args.baseline}: no extrapolation)")
        return
    bound = -flow_log_z_exact(system, baseline[system.name].value)
    target = bound + args.target_kl
    print(f"lower bound -ln Z = {bound:.3f}; final window {points[-1][1] - bound:.2f} nats "
          f"above it; target KL {args.target_kl:.2f} -> loss {target:.3f}")
    if slope >= 0:
        print("the loss was not falling: no extrapolation")
        return
    doublings = (target - points[-1][1]) / slope
    steps = points[-1][0] * 2.0**doublings
    hours = steps / ((len(loss) - 1) / elapsed[-1]) / 3600
    print(f"the log-linear trend reaches it after {doublings:.1f} more doublings: "
          f"{steps:.3g} steps, {hours:.3g} h at this run's step rate")


if __name__ == "__main__":
    main()
