"""Flow rows of the results table: train a flow, sample the target, store its LFEP and LBAR.

    python bench/table/flow_estimates.py --systems mw_cubic_216 mw_hex_216 --base harmonic \\
        --steps 0 --target-samples 20000 --samples 200000 --runs bench/work/flows \\
        --out freeflow/data/results/flows.jsonl

Per system, three stages, each resumed from ``--runs``:

1. train the ``cpu`` preset (with ``--base`` and ``--learning-rate``) for ``--steps`` steps
   into ``RUNS/NAME`` (an interrupted run continues from its last checkpoint); with
   ``--steps 0`` there is no training and the estimates are those of the base alone (an
   untrained flow is exactly its base): one-step FEP and BAR from the harmonic crystal;
2. draw ``--target-samples`` HMC samples of the target into ``RUNS/NAME-target.npz``
   (continued where it stopped); LBAR's reference set keeps every g-th sample of each chain,
   g the larger statistical inefficiency of the energy and of the reverse work (see
   ``reference_stride``), because BAR's error bar assumes independent samples;
3. LFEP and LBAR from one set of ``--samples`` flow samples, with the exact energy (the
   reverse works of every saved target sample are computed once, for the stride and for
   LBAR).

Printed on stdout and appended to ``--out``: one ``FreeEnergy`` row per method (``method``
``"lfep"`` or ``"lbar"``) whose wall time and energy evaluations include the training's, as in
``freeflow table``; the target sampling's cost is recorded beside it (``target_*``) and, as in
the table, not added to LBAR's. ``freeflow/data/results/flows.jsonl`` is what ``freeflow
table`` reads (``--flows``) for systems with no trained run of their own, so a clean checkout
shows the cells, and what ``bench/suite/time_to_answer.py`` reads for its LBAR rows.
bench/README.md lists the commands behind every stored row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

import jax

from freeflow.flows.config import BASES
from freeflow.flows.model import BaseModel
from freeflow.physics.system_files import load_system
from freeflow.reports.tables import with_training
from freeflow.rundir import load_run, load_samples, training_cost
from freeflow.training.config import GRADIENT_ESTIMATORS, presets, scheduled_over
from freeflow.workflows.estimate import lfep_and_lbar
from freeflow.workflows.sampling import sample_to_file
from freeflow.workflows.train import train


def configs(base: str, learning_rate: float | None, gradient: str | None, steps: int,
            seed: int):
    """The ``cpu`` preset with ``base``, ``learning_rate`` and ``gradient``, scheduled over
    ``steps`` steps as ``bench/table/train_cpu.py`` schedules its runs."""
    model_config, training = presets("cpu")
    model_config = dataclasses.replace(model_config, **BASES[base])
    if learning_rate is not None:
        training = dataclasses.replace(training, learning_rate=learning_rate)
    if gradient is not None:
        training = dataclasses.replace(training, gradient_estimator=gradient)
    return model_config, scheduled_over(dataclasses.replace(training, seed=seed), steps)


def run(name: str, args) -> list[dict]:
    runs = Path(args.runs)
    run_dir = runs / name
    model_config, training = configs(args.base, args.learning_rate, args.gradient, args.steps,
                                     args.seed)
    if args.steps:
        print(f"{name}: training {args.steps} steps in {run_dir}", file=sys.stderr, flush=True)
        train(name, run_dir, model_config=model_config, training=training)
        step, train_wall, train_evals = training_cost(run_dir)
        system, model, params, _ = load_run(run_dir)
    else:  # the untrained flow, which is exactly its base: no layers to evaluate
        system = load_system(name)
        model, params, run_dir = BaseModel(system, model_config), None, None
        step, train_wall, train_evals = 0, 0.0, 0

    target_file = runs / f"{name}-target.npz"
    print(f"{name}: {args.target_samples} target samples in {target_file}", file=sys.stderr,
          flush=True)
    sampled = sample_to_file(load_system(name), target_file, num_samples=args.target_samples,
                             num_chains=args.chains, num_warmup=args.warmup, thin=args.thin,
                             seed=args.seed)
    positions, _, _ = load_samples(target_file)
    print(f"{name}: LFEP and LBAR from {args.samples} flow samples", file=sys.stderr,
          flush=True)
    by_lfep, by_lbar = lfep_and_lbar(model, params, system, positions,
                                     num_chains=args.chains, energy_tau=sampled["tau"],
                                     num_samples=args.samples,
                                     key=jax.random.PRNGKey(args.seed + 1))
    results = [by_lfep, by_lbar]
    reference = {k: by_lbar.details[k]
                 for k in ("target_samples", "target_stride", "target_work_tau")}
    target = {**reference, "target_saved": sampled["num_saved"], "target_tau": sampled["tau"],
              "target_continued": sampled["continued"],
              "target_wall_time_this_call": sampled["wall_time"],
              "target_energy_evaluations_this_call": sampled["energy_evaluations"],
              "target_file": str(target_file)}

    cost = {"train_steps": step, "train_wall_time": train_wall,
            "train_energy_evaluations": train_evals}
    context = {"bench": "flow_estimates", "base": args.base,
               "learning_rate": training.learning_rate,
               "gradient": training.gradient_estimator, "preset": "cpu",
               "run_dir": None if run_dir is None else str(run_dir), "seed": args.seed,
               "machine":
               f"{platform.machine()} {jax.default_backend()} x {len(jax.devices())}",
               "cores": os.cpu_count()}
    return [{**with_training(result, cost).to_dict(), **context,
             **(target if result.method == "lbar" else {})} for result in results]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", required=True)
    parser.add_argument("--base", choices=list(BASES), default="harmonic")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="Adam's initial learning rate (default: the cpu preset's)")
    parser.add_argument("--gradient", choices=GRADIENT_ESTIMATORS, default=None,
                        help="reverse-KL gradient estimator (default: the cpu preset's)")
    parser.add_argument("--steps", type=int, default=1100,
                        help="training steps; 0: no training, the flow's base alone (exactly "
                             "an untrained flow, without evaluating its identity layers)")
    parser.add_argument("--samples", type=int, default=100_000, help="flow samples")
    parser.add_argument("--target-samples", type=int, default=20_000)
    parser.add_argument("--chains", type=int, default=32, help="HMC chains of the target")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--thin", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="bench/work/flows")
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    args = parser.parse_args(argv)
    # Checked before hours of training, not after.
    for name, value, least in (("--steps", args.steps, 0), ("--samples", args.samples, 2),
                               ("--target-samples", args.target_samples, 2),
                               ("--chains", args.chains, 1), ("--thin", args.thin, 1),
                               ("--warmup", args.warmup, 0)):
        if value < least:
            parser.error(f"{name} must be at least {least}; got {value}")

    for name in args.systems:
        rows = run(name, args)
        for row in rows:
            print(json.dumps(row), flush=True)
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
        for row in rows:
            ess = f", ESS {100 * row['ess']:.2f}%" if row.get("ess") is not None else ""
            print(f"{name} {row['method'].upper()}: {row['beta_f_per_particle']:.5f} +- "
                  f"{row['stderr']:.5f}{ess}, {row['wall_time']:.0f} s with training",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
