"""The commands of the flow: ``train``, ``estimate``, ``compare`` and ``diagnose``."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from freeflow import rundir
from freeflow.cli.common import strict_json
from freeflow.estimators.result import PARETO_K_LIMIT
from freeflow.flows.config import BASES, model_preset
from freeflow.parallel import split_cpu
from freeflow.physics.system_files import load_system
from freeflow.reports import compare as compare_report
from freeflow.reports.diagnostics import baseline_references, diagnose
from freeflow.rundir import load_run, read_run_record, save_samples
from freeflow.sampling.smc import AnnealConfig
from freeflow.training.config import TRAINING_PRESETS
from freeflow.training.trainer import TrainingDiverged
from freeflow.workflows.compare import CompareConfig, compare
from freeflow.workflows.estimate import FromBase, WorksConfig, estimate
from freeflow.workflows.smc import SMCConfig
from freeflow.workflows.train import train


def run_train(args) -> int:
    # Before anything runs JAX: the number of CPU devices is fixed once JAX starts.
    devices = split_cpu(_training_batch_size(args), args.cpu_devices)
    if devices > 1:
        print(f"freeflow train: the batch is split over {devices} CPU devices "
              f"(--cpu-devices 1 keeps one)", file=sys.stderr, flush=True)
    overrides = {k: v for k, v in (("num_steps", args.steps), ("batch_size", args.batch_size),
                                   ("seed", args.seed), ("learning_rate", args.learning_rate),
                                   ("gradient_estimator", args.gradient),
                                   ("checkpoint_every", args.checkpoint_every))
                 if v is not None}
    if args.extend is not None:
        if overrides or args.base is not None or args.layers is not None:
            raise ValueError("--extend continues a run with its own settings; leave out the "
                             "other training options")
        result = train(args.system, args.out, extend=args.extend)
        return _report_training(result, args)
    model_overrides = {}
    if args.base is not None:
        model_overrides.update(BASES[args.base])
    if args.layers is not None:
        model_overrides["num_layers"] = args.layers
    model_config = (dataclasses.replace(model_preset(args.preset, args.system), **model_overrides)
                    if model_overrides else None)
    try:
        result = train(args.system, args.out, preset=args.preset, model_config=model_config,
                       **overrides)
    except TrainingDiverged as error:
        print(f"freeflow train: error: {error}", file=sys.stderr)
        return 2
    return _report_training(result, args)


def _training_batch_size(args) -> int:
    """The batch the run will use: ``--batch-size``, an extended run's own, or the preset's
    (a resumed run whose batch differs from that is refused later, by ``train``)."""
    if args.batch_size is not None:
        return args.batch_size
    saved = read_run_record(args.out) if args.extend is not None else None
    if saved is not None:
        return int(saved["training"]["batch_size"])
    return TRAINING_PRESETS[args.preset].batch_size


def _report_training(result, args) -> int:
    last = result.metrics[-1] if result.metrics else {}
    print(f"{result.system.name}: {len(result.metrics)} steps in {args.out}; "
          f"last batch ESS {100 * last.get('ess', float('nan')):.1f}%")
    if "eval_beta_f_per_particle" in last:
        print(f"  evaluation: beta F / N = {last['eval_beta_f_per_particle']:.5f} "
              f"(ESS {100 * last['eval_ess']:.1f}% of {last['eval_samples']} samples)")
    print(f"  next: freeflow estimate {args.out}")
    return 0


def _estimate_start(args):
    """What ``estimate`` starts from: the run directory, or with ``--base`` the system's
    base."""
    return FromBase(args.run_dir, args.base) if args.base is not None else args.run_dir


def _estimate_config(args):
    if args.method == "smc":
        return SMCConfig(particles=args.particles, repeats=args.repeats,
                         group_size=args.group_size,
                         anneal=AnnealConfig(target_ess=args.target_ess,
                                             mcmc_steps=args.mcmc_steps))
    return WorksConfig(samples=args.samples)


def _print_smc(result) -> None:
    d = result.details
    temps = d["num_temperatures"]
    start = (f"the {d['start'][len('base:'):]} base" if d["start"].startswith("base:")
             else "the flow")
    steps = str(min(temps)) if min(temps) == max(temps) else f"{min(temps)}-{max(temps)}"
    print(f"  {d['repeats']} runs of {d['smc_particles']} particles from {start}; "
          f"{steps} temperatures; final ESS "
          f"{100 * float(np.mean(d['final_ess'])):.0f}%; HMC acceptance "
          f"{100 * d['acceptance']:.0f}%")
    model = d.get("model_evaluations", d.get("base_evaluations"))
    what = "flow" if "model_evaluations" in d else "base"
    print(f"  {result.energy_evaluations:.3g} energy and {model:.3g} {what} evaluations")


def run_estimate(args) -> int:
    if args.method != "smc" and (args.workdir or args.samples_out):
        raise ValueError("--workdir and --samples-out apply to --method smc only")
    if args.method != "lbar" and args.target_samples:
        raise ValueError("--target-samples applies to --method lbar only")
    result = estimate(_estimate_start(args), args.method, _estimate_config(args),
                      target_samples=args.target_samples, seed=args.seed,
                      workdir=args.workdir, counting=args.counting)
    if args.samples_out:
        system = (load_system(args.run_dir) if args.base is not None
                  else load_run(args.run_dir)[0])
        path = save_samples(args.samples_out, result.samples, system)
        print(f"  {len(result.samples)} target samples -> {path}", file=sys.stderr)
    row = result.to_dict()
    if args.json:
        print(strict_json(row))
        return 0 if np.isfinite(result.value) else 1
    digits = max(5, 1 - int(np.floor(np.log10(result.stderr)))) if result.stderr > 0 else 6
    print(f"{result.system}: beta F / N = {result.value:.{digits}f} +- "
          f"{result.stderr:.{digits}f} ({result.method.upper()}, {result.num_samples} samples)")
    if result.method == "smc":
        _print_smc(result)
    elif result.ess is not None:
        print(f"  ESS {100 * result.ess:.2f}% ({result.ess * result.num_samples:.0f} of "
              f"{result.num_samples})")
        k = result.details.get("pareto_k", float("nan"))
        print(f"  Pareto k of the weights' tail {k:.2f} (reliable below {PARETO_K_LIMIT})")
    reasons = result.untrustworthy_because()
    if reasons:
        # A few weights dominate: the bootstrap sees only them and understates the error,
        # and LFEP is biased towards the flow's own (higher) free energy.
        train = (f"Train a flow (freeflow train {result.system} --out DIR)"
                 if args.base is not None else
                 f"Train longer (freeflow train {result.system} --out {args.run_dir} "
                 f"--extend N)")
        print(f"  warning: {'; '.join(reasons)}; this value and its error bar are not "
              f"trustworthy. {train}, use --method smc (or lbar with target samples), or "
              f"compare with 'freeflow baseline {result.system}'.", file=sys.stderr)
    if result.wall_time is not None:
        print(f"  {result.wall_time:.1f} s")
    return 0 if np.isfinite(result.value) else 1


def run_compare(args) -> int:
    out = args.out or f"compare-{Path(args.system).stem}"
    config = CompareConfig(budget=args.budget, seed=args.seed, counting=args.counting)
    comparison = compare(args.system, out, config)
    rows = comparison.rows()
    compare_report.to_csv(rows, Path(out) / "compare.csv")
    compare_report.to_png(comparison.system, rows, comparison.published,
                          Path(out) / "compare.png")
    record = {"system": comparison.system, "out": str(out), "routes": rows,
              "plan": dataclasses.asdict(comparison.plan)}
    rundir.write_json(Path(out) / "compare.json", json.loads(strict_json(record)))
    if args.json:
        print(strict_json(record))
    else:
        print(compare_report.to_text(comparison.system, rows, comparison.published,
                                     comparison.unfinished), end="")
        print(f"written: {out}/compare.json, compare.csv, compare.png, compare.log")
    return 0


def run_diagnose(args) -> int:
    references = None
    if args.baseline:

        references = baseline_references(args.baseline, load_run(args.run_dir)[0].name) or None
    paths = diagnose(args.run_dir, args.out, reference=args.target_samples,
                     num_samples=args.samples, seed=args.seed, references=references)
    summary = json.loads(paths["summary"].read_text())
    lfep = summary["lfep"]
    print(f"{summary['system']}: diagnostics of {args.run_dir} in {args.out}")
    if lfep["beta_f_per_particle"] is not None:
        print(f"  LFEP of these {summary['num_samples']} samples: beta F / N = "
              f"{lfep['beta_f_per_particle']:.5f} +- {lfep['stderr']:.5f}, "
              f"ESS {100 * lfep['ess']:.2f}%")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0

