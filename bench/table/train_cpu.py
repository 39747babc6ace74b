"""Train the ``cpu`` preset for a fixed wall-clock budget, then estimate beta F / N by LFEP.

For each system: time a few training steps, size the run (its learning-rate warm-up over the
first 5% and decays at 60% and 85% of it) to fill the budget, train into ``--out/SYSTEM``, and
draw LFEP samples with the exact energy. Prints one JSON line per system on stdout (steps,
steps per second, the LFEP value, its error, ESS and Pareto k) and a summary on stderr.

    python bench/table/train_cpu.py --systems lj_32 --minutes 30 --samples 100000 \\
        --gradient reparameterized >> bench/results/train_cpu.jsonl
    python bench/table/train_cpu.py --systems lj_32 --base effective_harmonic \\
        --learning-rate 1e-4 --gradient path --out runs/bench_train_cpu_path
    python bench/table/train_cpu.py --quick          # 2 minutes per system, 10^4 samples

The run directories (default ``runs/bench_train_cpu/SYSTEM``) are what ``freeflow table``
reads by default for the LFEP and LBAR cells (the small-systems CPU table of
docs/benchmarks.md); the JSON lines, kept in ``bench/results/train_cpu*.jsonl``, are the flow
rows of ``bench/suite/time_to_answer.py`` and the runs of docs/training.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax

import freeflow
from freeflow.flows.config import BASES
from freeflow.training.config import GRADIENT_ESTIMATORS, presets, scheduled_over
from freeflow.workflows.train import train


def run(name: str, minutes: float, samples: int, out: Path, seed: int,
        learning_rate: float | None = None, base: str | None = None,
        batch_size: int | None = None, gradient: str | None = None,
        layers: int | None = None) -> dict:
    model_config, training = presets("cpu")
    if layers is not None:
        model_config = dataclasses.replace(model_config, num_layers=layers)
    if batch_size is not None:
        training = dataclasses.replace(training, batch_size=batch_size)
    if base is not None:
        model_config = dataclasses.replace(model_config, **BASES[base])
    if learning_rate is not None:
        training = dataclasses.replace(training, learning_rate=learning_rate)
    if gradient is not None:
        training = dataclasses.replace(training, gradient_estimator=gradient)
    # Time steps 11..40 of a throwaway run (the first ones include compilation).
    stamps = []
    train(name, None, model_config=model_config,
          training=dataclasses.replace(training, num_steps=40, eval_every=0, seed=seed),
          callback=lambda step, record: stamps.append(time.perf_counter()))
    step_s = (stamps[-1] - stamps[9]) / 30
    num_steps = max(100, int(minutes * 60 / step_s))
    training = scheduled_over(dataclasses.replace(training, seed=seed), num_steps)
    start = time.perf_counter()
    result = train(name, out / name, model_config=model_config, training=training,
                   max_wall_time=minutes * 60 * 1.1)
    train_s = time.perf_counter() - start
    steps_done = result.metrics[-1]["step"] if result.metrics else 0
    start = time.perf_counter()
    estimate = freeflow.estimate(out / name, config=freeflow.WorksConfig(samples),
                                 seed=seed + 1)
    estimate_s = time.perf_counter() - start
    return {"bench": "train_cpu", "system": name, "preset": "cpu",
            # As the rows written before ModelConfig.base: the kind, or None for the paper's.
            "base": None if model_config.base == "truncated_gaussian" else model_config.base,
            "layers": model_config.num_layers,
            "learning_rate": training.learning_rate,
            "batch_size": training.batch_size, "gradient": training.gradient_estimator,
            "pareto_k": estimate.details.get("pareto_k"),
            "planned_steps": num_steps, "steps": steps_done, "train_s": train_s,
            "steps_per_s": steps_done / train_s, "lfep_samples": estimate.num_samples,
            "lfep_s": estimate_s, "beta_f_per_particle": estimate.value,
            "stderr": estimate.stderr, "ess": estimate.ess,
            "devices": len(jax.devices()), "cores": os.cpu_count(), "run_dir": str(out / name)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_32", "mw_cubic_8"])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_train_cpu"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="Adam's initial learning rate (default: the cpu preset's)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per training step (default: the cpu preset's)")
    parser.add_argument("--base", choices=list(BASES), default=None,
                        help="base distribution (default: the cpu preset's)")
    parser.add_argument("--gradient", choices=GRADIENT_ESTIMATORS, default=None,
                        help="reverse-KL gradient estimator (default: the cpu preset's)")
    parser.add_argument("--layers", type=int, default=None,
                        help="coupling layers of the flow (default: the cpu preset's)")
    parser.add_argument("--quick", action="store_true", help="2 minutes, 10^4 samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.samples = 2.0, 10_000
    rows = []
    for name in args.systems:
        row = run(name, args.minutes, args.samples, args.out, args.seed, args.learning_rate,
                  args.base, args.batch_size, args.gradient, args.layers)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\nsystem        steps  steps/s   ESS     beta F / N (LFEP)", file=sys.stderr)
    for r in rows:
        print(f"{r['system']:<12}{r['steps']:>7}{r['steps_per_s']:>9.2f}{100 * r['ess']:>7.1f}%"
              f"   {r['beta_f_per_particle']:.5f} +- {r['stderr']:.5f}", file=sys.stderr)


if __name__ == "__main__":
    main()
