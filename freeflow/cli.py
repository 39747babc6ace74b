"""The ``freeflow`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from freeflow.estimators.conventions import COUNTINGS, DEFAULT_COUNTING
from freeflow.estimators.result import PARETO_K_LIMIT
from freeflow.flows.config import BASES, model_preset
from freeflow.parallel import split_cpu
from freeflow.physics.system import load_system, named_systems, system_from_atoms
from freeflow.progress import progress_bar
from freeflow import rundir
from freeflow.reports import compare as compare_report
from freeflow.reports.diagnostics import baseline_references, diagnose
from freeflow.reports.tables import (PUBLISHED_SYSTEMS, SHIPPED_RESULTS, TableConfig,
                                     TableSources, build_table, to_csv, to_markdown)
from freeflow.rundir import (SAMPLE_SUFFIXES, check_writable_dir, check_writable_file,
                             load_run, read_jsonl, read_run_record, save_samples)
from freeflow.training.config import GRADIENT_ESTIMATORS, TRAINING_PRESETS, TrainingConfig
from freeflow.training.trainer import TrainingDiverged
from freeflow.workflows.baseline import REFERENCES, PathConfig, mbar_free_energy
from freeflow.workflows.compare import CompareConfig, compare
from freeflow.workflows.estimate import FromBase, WorksConfig, estimate
from freeflow.workflows.sampling import sample_to_file
from freeflow.sampling.smc import AnnealConfig
from freeflow.workflows.smc import SMCConfig
from freeflow.workflows.sweep import SweepConfig, free_energy_curve, parse_temperatures
from freeflow.estimators.curve import delta_f_curve
from freeflow.reports import limit as limit_report
from freeflow.reports import sweep as sweep_report
from freeflow.workflows.train import train


def _systems(args) -> int:
    rows = []
    names = named_systems()
    with progress_bar(len(names), "lattice energies", "system") as bar:
        for name in names:
            system = load_system(name)
            summary = system.summary()
            u = system.lattice_energy() / system.num_particles
            summary.update(lattice=system.definition["lattice"]["kind"],
                           energy_per_particle=u, beta_energy_per_particle=system.beta * u)
            rows.append(summary)
            bar.update(1)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("system", "potential", "lattice", "N", "T", "density", "box", "beta", "U/N",
              "beta U/N")
    table = [header]
    for r in rows:
        table.append((r["system"], r["potential"], r["lattice"], str(r["num_particles"]),
                      f"{r['temperature']:g} {r['temperature_unit']}",
                      f"{r['number_density']:.6g}/{r['length_unit']}^3",
                      " x ".join(f"{b:.4f}" for b in r["box"]),
                      f"{r['beta']:.5f}",
                      f"{r['energy_per_particle']:.5f} {r['energy_unit']}",
                      f"{r['beta_energy_per_particle']:.5f}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _energy(args) -> int:
    system = load_system(args.system)
    if args.structure:
        target = system_from_atoms(args.structure, system.potential, system.temperature)
        positions = target.atoms.positions
    else:
        target, positions = system, system.lattice
    energy = float(target.energy(jnp.asarray(positions, jnp.float32)))
    n = target.num_particles
    if not np.isfinite(energy):
        raise ValueError(f"the energy of {args.structure or 'the lattice'} is not finite "
                         f"({energy}): overlapping particles, or a structure outside the "
                         "potential's range")
    result = {
        "system": system.name,
        "structure": args.structure or "perfect lattice",
        "num_particles": n,
        "energy_per_particle": energy / n,
        "beta_energy_per_particle": system.beta * energy / n,
        "energy_unit": system.units.energy,
        "beta": system.beta,
    }
    if args.json:
        print(_strict_json(result))
    else:
        print(f"{system.name} ({result['structure']}, N = {n}, beta = {system.beta:.6g}):")
        print(f"  U/N      = {energy / n:.6f} {system.units.energy}")
        print(f"  beta U/N = {system.beta * energy / n:.6f}")
    return 0


def _strict_json(data) -> str:
    """JSON text with non-finite numbers written as ``null`` (``NaN`` is not JSON)."""
    def clean(value):
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value
    return json.dumps(clean(data), allow_nan=False)


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise ValueError(f"{flag} must be at least 1; got {value}")
    return value


def _sample(args) -> int:
    _positive(args.samples, "--samples")
    _positive(args.chains, "--chains")
    _positive(args.thin, "--thin")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be at least 0; got {args.warmup}")
    check_writable_file(args.out, SAMPLE_SUFFIXES)
    system = load_system(args.system)
    saved = -(-args.samples // args.chains) * args.chains
    if saved != args.samples:
        print(f"freeflow sample: saving {saved} samples (--samples {args.samples} rounded up "
              f"to a multiple of --chains {args.chains})", file=sys.stderr)
    summary = sample_to_file(system, args.out, num_samples=args.samples, num_chains=args.chains,
                             num_warmup=args.warmup, thin=args.thin, seed=args.seed)
    n = system.num_particles
    stderr = summary["energy_stderr"]
    summary.update(energy_per_particle=summary["energy_mean"] / n,
                   energy_per_particle_stderr=None if stderr is None else stderr / n,
                   energy_unit=system.units.energy)
    if args.json:
        print(_strict_json(summary))
        return 0
    extra = f", {summary['continued']} of them continued" if summary["continued"] else ""
    print(f"{system.name}: {summary['num_saved']} samples ({args.chains} chains{extra}) -> "
          f"{args.out}")
    acceptance = summary["acceptance"]
    if acceptance is not None:
        print(f"  acceptance {acceptance:.3f}, step {summary['step_size']:.4g} "
              f"{system.units.length}, tau(U) {summary['tau']:.2f} saved samples")
    error = summary["energy_per_particle_stderr"]
    print(f"  U/N = {summary['energy_per_particle']:.6f} "
          + (f"+- {error:.6f} " if error is not None else "")
          + system.units.energy + (" (one sample: no error estimate)" if error is None else ""))
    print(f"  energy evaluations: {summary['energy_evaluations']}, "
          f"{summary['wall_time']:.1f} s")
    return 0


def _baseline(args) -> int:
    _positive(args.samples_per_state, "--samples-per-state")
    _positive(args.chains, "--chains")
    if args.workdir is not None:
        check_writable_dir(args.workdir)
    system = load_system(args.system)
    config = PathConfig(reference=args.reference, num_states=args.states,
                        samples_per_state=args.samples_per_state, num_chains=args.chains,
                        num_warmup=args.warmup, width=args.width)
    result = mbar_free_energy(system, config, workdir=args.workdir,
                              seed=args.seed).recounted(args.counting)
    row = result.to_dict()
    if args.json:
        print(_strict_json(row))
        return 0 if np.isfinite(result.value) else 1
    print(f"{system.name}: beta F / N = {result.value:.6f} +- {result.stderr:.6f} (MBAR, "
          f"{result.num_states} states, {result.num_samples} decorrelated samples, "
          f"{row['counting']} counting)")
    start = (f"Einstein crystal of width {row['einstein_width']:.4g} {system.units.length}"
             if row["reference"] == "einstein" else "harmonic crystal")
    print(f"  reference: {start}; smallest neighbour overlap "
          f"{row['min_neighbour_overlap']:.3f}")
    print(f"  energy evaluations: {result.energy_evaluations}, {result.wall_time:.1f} s")
    return 0 if np.isfinite(result.value) else 1


def _train(args) -> int:
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


def _cpu_devices(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer; got {text!r}")
    return value


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


def _estimate(args) -> int:
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
        print(_strict_json(row))
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


def _duration(text: str) -> float:
    """Seconds of a ``--budget``: ``20m``, ``1.5h``, ``900s`` or plain minutes (``20``)."""
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in scale else (text, "m")
    try:
        seconds = float(number) * scale[unit.lower()]
    except ValueError:
        seconds = float("nan")
    if not (np.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 20m, 1.5h or "
                                         f"900s; got {text!r}")
    return seconds


def _compare(args) -> int:
    out = args.out or f"compare-{Path(args.system).stem}"
    config = CompareConfig(budget=args.budget, seed=args.seed, counting=args.counting)
    comparison = compare(args.system, out, config)
    rows = comparison.rows()
    compare_report.to_csv(rows, Path(out) / "compare.csv")
    compare_report.to_png(comparison.system, rows, comparison.published,
                          Path(out) / "compare.png")
    record = {"system": comparison.system, "out": str(out), "routes": rows,
              "plan": dataclasses.asdict(comparison.plan)}
    rundir.write_json(Path(out) / "compare.json", json.loads(_strict_json(record)))
    if args.json:
        print(_strict_json(record))
    else:
        print(compare_report.to_text(comparison.system, rows, comparison.published,
                                     comparison.unfinished), end="")
        print(f"written: {out}/compare.json, compare.csv, compare.png, compare.log")
    return 0


def _sweep(args) -> int:
    temperatures = parse_temperatures(args.temperatures)
    if len(args.systems) > 2:
        raise ValueError(f"sweep takes one system, or two to compare; got {len(args.systems)}")
    names = [Path(name).stem for name in args.systems]
    if len(set(names)) != len(names):
        raise ValueError(f"give two different systems to compare; got {names[0]} twice")
    config = SweepConfig(particles=_positive(args.particles, "--particles"),
                         repeats=args.repeats,
                         anneal=AnnealConfig(mcmc_steps=args.mcmc_steps,
                                             integration_steps=args.integration_steps))
    systems = [load_system(name) for name in args.systems]
    if len({(s.units.energy, s.units.temperature) for s in systems}) > 1:
        raise ValueError(f"{names[0]} and {names[1]} are in different units; compare crystals "
                         "of one potential")
    out = Path(args.out) if args.out else None
    if out is not None:
        rundir.check_writable_dir(out)
    curves = [free_energy_curve(system, temperatures, config, seed=args.seed,
                                workdir=None if out is None else out / name,
                                progress=None).recounted(args.counting)
              for system, name in zip(systems, names)]
    delta = delta_f_curve(*curves) if len(curves) == 2 else None
    data = json.loads(_strict_json(sweep_report.record(curves, delta)))
    if out is not None:
        rundir.write_json(out / "sweep.json", data)
        sweep_report.to_csv(curves, out / "sweep.csv", delta)
        sweep_report.to_png(curves, out, delta)
    if args.json:
        print(json.dumps(data))
    else:
        print(sweep_report.to_text(curves, delta), end="")
        if out is not None:
            logs = ", ".join(f"{name}/sweep.log" for name in names)
            print(f"written: {out}/sweep.json, sweep.csv, sweep_*.png, {logs}")
    return 0


def _limit(args) -> int:
    crystals = limit_report.crystals_from_results(
        args.crystals, args.results, method=args.method, counting=args.counting,
        min_particles=_positive(args.min_particles, "--min-particles"))
    fits = limit_report.limits(crystals, fit_log_coefficient=args.fit_log_coefficient)
    if args.json:
        print(_strict_json(limit_report.record(fits, args.method)))
    else:
        print(limit_report.to_text(fits, args.method), end="")
    return 0


def _diagnose(args) -> int:
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


def _table(args) -> int:
    if args.samples < 2:
        raise ValueError(f"--samples must be at least 2; got {args.samples}")
    if args.out and Path(args.out).suffix.lower() not in (".md", ".csv"):
        raise ValueError(f"--out must end in .md or .csv; got {args.out}")
    sources = TableSources.from_results(args.results, runs_dir=args.runs,
                                        reference_dir=args.references, cache_file=args.cache)
    read = ", ".join(f"{Path(path).name} ({len(read_jsonl(path))} rows)"
                     for path in (sources.baseline_file, sources.smc_file, sources.flow_file)
                     if path is not None)
    print(f"freeflow table: results from {Path(args.results).resolve()}: {read}",
          file=sys.stderr)
    config = TableConfig(preset=args.preset, num_samples=args.samples, seed=args.seed,
                         compute_baseline=args.compute_baseline)
    rows = build_table(args.systems, sources, config, counting=args.counting)
    if args.out and args.out.lower().endswith(".csv"):
        to_csv(rows, args.out)
        print(f"{len(rows)} rows -> {args.out}")
        return 0
    text = to_markdown(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"{len(rows)} rows -> {args.out}")
    else:
        print(text, end="")
    return 0


def _parents() -> dict[str, argparse.ArgumentParser]:
    """The options several commands share, each defined once: ``seed``, ``counting``,
    ``json`` and the SMC runs' ``smc``."""
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    counting = argparse.ArgumentParser(add_help=False)
    counting.add_argument("--counting", default=DEFAULT_COUNTING, choices=list(COUNTINGS),
                          help="how a crystal's regions are counted: 'bravais' as in the "
                               "published tables and the Frenkel-Ladd literature (default), "
                               "or 'exact' (adds ln m / N per sublattice translation; differs "
                               "for ice)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true",
                         help="print JSON on stdout (progress stays on stderr)")
    smc = argparse.ArgumentParser(add_help=False)
    smc.add_argument("--particles", type=int, default=256,
                     help="SMC particles per run (default 256)")
    smc.add_argument("--repeats", type=int, default=8,
                     help="independent SMC runs; their spread is the error bar (default 8)")
    smc.add_argument("--mcmc-steps", type=int, default=5,
                     help="SMC: HMC transitions per particle and temperature (default 5)")
    return {"seed": seed, "counting": counting, "json": as_json, "smc": smc}


def _add_systems(commands, shared: dict) -> None:
    """The ``systems`` command's options."""
    p = commands.add_parser("systems", parents=[shared["json"]],
                            help="table of the named systems and their lattice energies")
    p.set_defaults(run=_systems)


def _add_energy(commands, shared: dict) -> None:
    """The ``energy`` command's options."""
    p = commands.add_parser("energy", parents=[shared["json"]],
                            help="U/N and beta U/N of the perfect lattice or of a structure file")
    p.add_argument("system", help="a named system (see 'freeflow systems') or a .toml file")
    p.add_argument("--structure", metavar="FILE",
                   help="any file ase.io.read understands; its own orthorhombic cell is used")
    p.set_defaults(run=_energy)


def _add_sample(commands, shared: dict) -> None:
    """The ``sample`` command's options."""
    p = commands.add_parser("sample", parents=[shared["seed"], shared["json"]],
                            help="Metropolis-corrected HMC samples of a system (particle 0 "
                                 "fixed), saved to .npz or .extxyz")
    p.add_argument("system", help="a named system or a .toml file")
    p.add_argument("--out", required=True, metavar="FILE", help="output .npz or .extxyz")
    p.add_argument("--samples", type=int, default=1000,
                   help="samples to save, over all chains (default 1000)")
    p.add_argument("--chains", type=int, default=16, help="parallel chains (default 16)")
    p.add_argument("--warmup", type=int, default=300,
                   help="warm-up transitions per chain (default 300)")
    p.add_argument("--thin", type=int, default=4,
                   help="transitions between saved samples (default 4)")
    p.set_defaults(run=_sample)


def _add_baseline(commands, shared: dict) -> None:
    """The ``baseline`` command's options."""
    p = commands.add_parser("baseline",
                            parents=[shared["seed"], shared["counting"], shared["json"]],
                            help="beta F / N by MBAR from a harmonic or Einstein crystal "
                                 "(resumable with --workdir)")
    p.add_argument("system", help="a named system or a .toml file")
    p.add_argument("--reference", default="harmonic", choices=list(REFERENCES),
                   help="the path's analytic start: the harmonic crystal of the system's "
                        "lattice Hessian (default) or an Einstein crystal")
    p.add_argument("--states", type=int, default=16, help="MBAR states K (default 16)")
    p.add_argument("--samples-per-state", type=int, default=2048,
                   help="saved samples per state over all chains (default 2048)")
    p.add_argument("--chains", type=int, default=32, help="parallel chains (default 32)")
    p.add_argument("--warmup", type=int, default=200,
                   help="warm-up transitions of the first state (default 200)")
    p.add_argument("--width", type=float, default=None,
                   help="Einstein springs' standard deviation (length unit; --reference "
                        "einstein only); default: measured in a pilot run")
    p.add_argument("--workdir", default=None, metavar="DIR",
                   help="keep finished states here and skip them when re-run; a larger "
                        "--samples-per-state then continues the saved chains")
    p.set_defaults(run=_baseline)


def _add_train(commands, shared: dict) -> None:
    """The ``train`` command's options."""
    p = commands.add_parser("train", help="train a flow by reverse KL (resumes from the "
                                          "run directory's last checkpoint)",
                            description="Train a flow by reverse KL. The same command on the "
                                        "same --out resumes from the last checkpoint. Every "
                                        "setting but --steps must then be the same (a changed "
                                        "--batch-size, --seed, --learning-rate, --base, "
                                        "--layers, --gradient or --preset is refused); "
                                        "--extend N continues a finished run.")
    p.add_argument("system", help="a named system or a .toml file")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"],
                   help="model and training settings (default cpu)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (preset default); the preset's warm-up and "
                        "learning-rate decays are rescaled to the same fractions of the run")
    p.add_argument("--batch-size", type=int, default=None, help="samples per step")
    p.add_argument("--cpu-devices", type=_cpu_devices, default=None, metavar="N|auto",
                   help="on a CPU, split the batch over N JAX devices (default auto: one per "
                        "core, at most as many as divide the batch; 1 keeps one device). "
                        "Faster steps for small systems; results agree to float32 "
                        "rounding. Ignored where JAX may run on an accelerator; auto leaves a "
                        "count set by XLA_FLAGS or JAX_NUM_CPU_DEVICES, and N refuses a "
                        "different one")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the initial parameters and of every batch (preset default: "
                        "0 for cpu, 42 for paper); part of the run's identity")
    p.add_argument("--extend", type=int, default=None, metavar="STEPS",
                   help="continue the finished run in --out for STEPS more steps with its "
                        "own settings; the learning rate follows the same schedule (after its "
                        "last decay it stays at the final rate)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="steps between checkpoints (preset default "
                        f"{TrainingConfig().checkpoint_every}); an interrupted run resumes "
                        "from the last one")
    p.add_argument("--base", default=None, choices=list(BASES),
                   help="base distribution: the harmonic crystal, the same at the "
                        "temperature that obeys the target's virial theorem "
                        "(effective_harmonic; best for anharmonic crystals such as LJ), "
                        "isotropic noise of the Einstein width, or the paper's noise "
                        "(default: the preset's, harmonic for cpu, paper for paper)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="Adam's initial learning rate (preset default)")
    p.add_argument("--layers", type=int, default=None,
                   help="coupling layers of the flow (preset default: 12 for cpu, each "
                        "transforming one axis, cycling z, x, y; 24 for paper, each two "
                        "couplings, one axis given two and two given one)")
    p.add_argument("--gradient", default=None, choices=list(GRADIENT_ESTIMATORS),
                   help="reverse-KL gradient: 'path' drops the zero-mean score term (lower "
                        "variance near the target, one more inverse pass per step); default "
                        "the preset's (path for cpu, reparameterized for paper)")
    p.set_defaults(run=_train)


def _add_estimate(commands, shared: dict) -> None:
    """The ``estimate`` command's options."""
    p = commands.add_parser("estimate",
                            parents=[shared["seed"], shared["counting"], shared["json"],
                                     shared["smc"]],
                            help="beta F / N of a trained run (LFEP, LBAR or SMC), or by "
                                 "SMC from a base alone")
    p.add_argument("run_dir", metavar="DIR", help="run directory made by 'freeflow train' (a "
                                                  "system name or .toml file with --base)")
    p.add_argument("--samples", type=int, default=100_000,
                   help="model samples for LFEP and LBAR (default 100000)")
    p.add_argument("--method", default="lfep", choices=["lfep", "lbar", "smc"],
                   help="lfep: the flow's samples reweighted; lbar: BAR between the flow and "
                        "target samples (--target-samples); smc: annealed sequential Monte Carlo "
                        "from the flow (or --base) to the target (default lfep)")
    p.add_argument("--target-samples", metavar="FILE", default=None,
                   help="target samples for LBAR ('freeflow sample SYSTEM --out FILE', or "
                        "--samples-out of an SMC estimate)")
    p.add_argument("--base", default=None, choices=list(BASES),
                   help="start from this base distribution of the system named by DIR, "
                        "with no training (for LFEP and LBAR it is exactly an untrained "
                        "flow: FEP and BAR from the harmonic crystal, say)")
    p.add_argument("--target-ess", type=float, default=0.9,
                   help="SMC: conditional ESS kept by each temperature increment (default "
                        "0.9)")
    p.add_argument("--samples-out", metavar="FILE", default=None,
                   help="SMC: save the final particles (target samples) here (.npz, .extxyz)")
    p.add_argument("--workdir", metavar="DIR", default=None,
                   help="SMC: save each finished group of runs here; the same command again "
                        "continues an interrupted estimate (other settings are refused)")
    p.add_argument("--group-size", type=int, default=None,
                   help="SMC: runs annealed together (default all, or 1 with --workdir)")
    p.set_defaults(run=_estimate)


def _add_compare(commands, shared: dict) -> None:
    """The ``compare`` command's options."""
    p = commands.add_parser("compare",
                            parents=[shared["seed"], shared["counting"], shared["json"]],
                            help="every route to beta F / N of one system side by side: MBAR "
                                 "and SMC from the harmonic crystal, a trained flow's LFEP and "
                                 "LBAR (resumable from --out)",
                            description="Run MBAR and SMC from the harmonic crystal, train a "
                                        "flow and estimate by LFEP and LBAR, within one "
                                        "wall-clock budget, and print every route's beta F / N "
                                        "with its error, cost and agreement with MBAR. The "
                                        "same command on the same --out continues an "
                                        "interrupted comparison.")
    p.add_argument("system", help="a named system or a .toml file (try mw_cubic_64)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output directory (default compare-SYSTEM): plan, work directories, "
                        "compare.json, compare.csv, compare.png, compare.log")
    p.add_argument("--budget", type=_duration, default=1200.0, metavar="TIME",
                   help="wall time for all routes, e.g. 20m (default), 1h, 900s; split into "
                        "shares at the first call from timings of this machine")
    p.set_defaults(run=_compare)


def _add_sweep(commands, shared: dict) -> None:
    """The ``sweep`` command's options."""
    p = commands.add_parser("sweep",
                            parents=[shared["seed"], shared["counting"], shared["json"],
                                     shared["smc"]],
                            help="beta F / N, U, S and C_v of a crystal (or two) along "
                                 "temperature in one SMC run (resumable from --out)",
                            description="Anneal by SMC from the harmonic crystal at the "
                                        "lowest temperature, then along beta through every "
                                        "requested temperature with the same particles. "
                                        "With two systems, also their difference and where "
                                        "it changes sign.")
    p.add_argument("systems", nargs="+", metavar="SYSTEM",
                   help="a named system or a .toml file; a second one to compare")
    p.add_argument("--temperatures", required=True, metavar="RANGE",
                   help="START:STOP:STEP (both ends included), e.g. 180:220:20, or a comma "
                        "list, increasing, in the system's temperature unit")
    p.add_argument("--integration-steps", type=int, default=8,
                   help="leapfrog steps per HMC transition (default 8)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="keep every finished stage in DIR/SYSTEM (a rerun continues) and "
                        "write sweep.json, sweep.csv and sweep_*.png there")
    p.set_defaults(run=_sweep)


def _add_limit(commands, shared: dict) -> None:
    """The ``limit`` command's options."""
    p = commands.add_parser("limit", parents=[shared["counting"], shared["json"]],
                            help="beta f of the infinite crystal from stored results at "
                                 "several sizes (fit of beta F / N against N)")
    p.add_argument("crystals", nargs="+", metavar="CRYSTAL",
                   help="a name prefix such as mw_cubic (every stored size mw_cubic_N), or "
                        "systems' names; two crystals also give the difference of limits")
    p.add_argument("--method", default="smc", choices=sorted(limit_report.LIMIT_METHODS),
                   help="whose stored rows to fit: smc (smc.jsonl, default) or mbar "
                        "(baseline.jsonl)")
    p.add_argument("--results", default=str(SHIPPED_RESULTS), metavar="DIR",
                   help="stored results, as for freeflow table (default: those shipped "
                        "with freeflow)")
    p.add_argument("--min-particles", type=int, default=2, metavar="N",
                   help="leave out stored sizes below N particles when a CRYSTAL is a prefix "
                        "(default: none left out)")
    p.add_argument("--fit-log-coefficient", action="store_true",
                   help="fit the ln(N)/N coefficient too instead of holding it at the "
                        "derived -1/2 (needs 4 sizes to check the fit)")
    p.set_defaults(run=_limit)


def _add_diagnose(commands, shared: dict) -> None:
    """The ``diagnose`` command's options."""
    p = commands.add_parser("diagnose", parents=[shared["seed"]],
                            help="g(r), energy and work histograms, training curves and the "
                                 "running LFEP estimate of a run")
    p.add_argument("run_dir", metavar="DIR", help="run directory made by 'freeflow train'")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--target-samples", metavar="FILE", default=None,
                   help="target samples of the same system ('freeflow sample SYSTEM --out "
                        "FILE') for g(r) and the energy histogram")
    p.add_argument("--samples", type=int, default=2000,
                   help="model and base samples to draw (default 2000)")
    p.add_argument("--baseline", metavar="FILE", default=None,
                   help="MBAR results (JSONL) whose value for this system is drawn as a "
                        "reference line")
    p.set_defaults(run=_diagnose)


def _add_table(commands, shared: dict) -> None:
    """The ``table`` command's options."""
    p = commands.add_parser("table", parents=[shared["seed"], shared["counting"]],
                            help="beta F / N by LFEP, LBAR and MBAR per system with costs "
                                 "(computes only what is missing, resumable)")
    p.add_argument("--systems", nargs="+", default=list(PUBLISHED_SYSTEMS), metavar="SYSTEM",
                   help="named systems (default: the published table's "
                        + " ".join(PUBLISHED_SYSTEMS) + ")")
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"],
                   help="model preset the runs must have been trained with (default cpu)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="directory holding one trained run directory per system, named "
                        "after it (default: none; the flow columns then come from --results)")
    p.add_argument("--results", default=str(SHIPPED_RESULTS), metavar="DIR",
                   help="stored results: baseline.jsonl (MBAR), smc.jsonl and flows.jsonl "
                        "(LFEP and LBAR rows for systems with no run in --runs), as "
                        "bench/table writes them (default: those shipped with freeflow)")
    p.add_argument("--references", default=None, metavar="DIR",
                   help="directory of target samples SYSTEM.npz for LBAR (default: no LBAR)")
    p.add_argument("--samples", type=int, default=100_000,
                   help="model samples per LFEP/LBAR estimate (default 100000)")
    p.add_argument("--cache", default=None, metavar="FILE",
                   help="JSON lines of computed estimates, reused when re-run (default "
                        "RUNS/table_PRESET.jsonl; none without --runs)")
    p.add_argument("--compute-baseline", action="store_true",
                   help="run the MBAR baseline for systems the baseline file lacks (long)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write Markdown (.md) or CSV (.csv) here instead of printing Markdown")
    p.set_defaults(run=_table)


def build_parser() -> argparse.ArgumentParser:
    shared = _parents()
    parser = argparse.ArgumentParser(
        prog="freeflow",
        description="Free energies of atomic solids with normalizing flows.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    # One function per command, in the order of the help.
    for add in (_add_systems, _add_energy, _add_sample, _add_baseline, _add_train,
                _add_estimate, _add_compare, _add_sweep, _add_limit, _add_diagnose,
                _add_table):
        add(commands, shared)
    return parser


def _keeps_work(args) -> bool:
    """Whether the command keeps finished work on disk, so that running it again continues."""
    if args.command in ("train", "sample", "compare"):
        return True
    if args.command == "sweep":
        return args.out is not None
    if args.command == "baseline":
        return args.workdir is not None
    if args.command == "estimate":
        return args.method == "smc" and args.workdir is not None
    return False


def _exit_on_signal(command: str, keeps_work: bool, status: int):
    """A SIGINT or SIGTERM handler that stops the process at once with ``status`` (130 for
    SIGINT, 143 for SIGTERM, what batch schedulers send).

    A ``KeyboardInterrupt`` raised inside XLA's compilation or its callbacks can hang the
    process or crash it; stopping at once is safe because every file freeflow writes is
    replaced atomically (an interrupted run resumes from its last checkpoint, as after
    ``kill -9``)."""
    def handler(signum, frame):
        kept = ("finished work is kept (run the same command to continue)" if keeps_work
                else "nothing was kept (--workdir or --out makes this command resumable)"
                if command in ("baseline", "estimate") else "nothing was kept")
        message = f"freeflow {command}: interrupted; {kept}\n"
        try:
            sys.stdout.flush()
            os.write(2, message.encode())
        finally:
            os._exit(status)
    return handler


def _message(error: BaseException) -> str:
    """One line for an error: an ``OSError``'s own words without the ``[Errno N]`` prefix."""
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            previous[signum] = signal.signal(signum, _exit_on_signal(
                args.command, _keeps_work(args), status))
    try:
        return args.run(args)
    except (ValueError, OSError, FloatingPointError, RuntimeError) as error:
        print(f"freeflow {args.command}: error: {_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"freeflow {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
