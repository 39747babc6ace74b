"""The commands that need no flow: ``systems``, ``energy``, ``sample``, ``baseline``,
``sweep``, ``limit`` and ``table``. Each parses nothing itself (``freeflow.cli.options`` does),
calls one workflow or report, and prints."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from freeflow import rundir
from freeflow.cli.common import positive, strict_json
from freeflow.estimators.curve import delta_f_curve
from freeflow.physics.system_files import load_system, named_systems, system_from_atoms
from freeflow.progress import progress_bar
from freeflow.reports import limit as limit_report
from freeflow.reports import sweep as sweep_report
from freeflow.reports.table_text import to_csv, to_markdown
from freeflow.reports.tables import TableConfig, TableSources, build_table
from freeflow.rundir import SAMPLE_SUFFIXES, check_writable_dir, check_writable_file, read_jsonl
from freeflow.sampling.smc import AnnealConfig
from freeflow.workflows.baseline import PathConfig, mbar_free_energy
from freeflow.workflows.sampling import sample_to_file
from freeflow.workflows.sweep import (LadderConfig, SweepConfig, free_energy_curve,
                                      parse_temperatures)


def run_systems(args) -> int:
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


def run_energy(args) -> int:
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
        print(strict_json(result))
    else:
        print(f"{system.name} ({result['structure']}, N = {n}, beta = {system.beta:.6g}):")
        print(f"  U/N      = {energy / n:.6f} {system.units.energy}")
        print(f"  beta U/N = {system.beta * energy / n:.6f}")
    return 0


def run_sample(args) -> int:
    positive(args.samples, "--samples")
    positive(args.chains, "--chains")
    positive(args.thin, "--thin")
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
        print(strict_json(summary))
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


def run_baseline(args) -> int:
    positive(args.samples_per_state, "--samples-per-state")
    positive(args.chains, "--chains")
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
        print(strict_json(row))
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


#: The options of each route of ``freeflow sweep`` and their defaults there.
_ROUTE_OPTIONS = {
    "smc": {"particles": 256, "repeats": 8, "mcmc_steps": 5},
    "mbar": {"chains": 16, "samples": 500, "anchor_temperature": None, "anchor_states": 16,
             "anchor_samples": 1024},
}


def _route_options(args) -> dict:
    """The chosen route's options, defaults filled in; refuses the other route's."""
    other = "smc" if args.route == "mbar" else "mbar"
    given = [name for name in _ROUTE_OPTIONS[other] if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        default = " (the default since the SMC sweep became --route smc)" \
            if args.route == "mbar" else ""
        raise ValueError(f"{flags} {'belongs' if len(given) == 1 else 'belong'} to --route "
                         f"{other}, but this sweep runs --route {args.route}{default}: add "
                         f"--route {other} or leave {'it' if len(given) == 1 else 'them'} out")
    return {name: default if getattr(args, name) is None else getattr(args, name)
            for name, default in _ROUTE_OPTIONS[args.route].items()}


def _sweep_config(args) -> SweepConfig | LadderConfig:
    """The route's settings from the options (``--route``)."""
    o = _route_options(args)
    if args.route == "mbar":
        return LadderConfig(
            anchor=PathConfig(num_states=o["anchor_states"],
                              samples_per_state=positive(o["anchor_samples"],
                                                         "--anchor-samples")),
            anchor_temperature=o["anchor_temperature"],
            sampling=dataclasses.replace(
                LadderConfig().sampling, num_chains=o["chains"],
                num_samples=positive(o["samples"], "--samples"),
                # --integration-steps fixes the leapfrog steps; left out, production's last
                # a quarter of the harmonic period.
                **({} if args.integration_steps is None else
                   {"num_integration_steps": args.integration_steps, "trajectory": None})))
    return SweepConfig(particles=positive(o["particles"], "--particles"),
                       repeats=o["repeats"],
                       anneal=AnnealConfig(mcmc_steps=o["mcmc_steps"],
                                           integration_steps=_integration_steps(args)))


def _integration_steps(args) -> int:
    """``--integration-steps``, 8 when left out (``None``, so that a sweep that runs nothing
    can refuse it)."""
    return 8 if args.integration_steps is None else args.integration_steps


def run_sweep(args) -> int:
    stored = {k: [c.recounted(args.counting) for c in sweep_report.read(name)]
              for k, name in enumerate(args.systems) if _is_stored(name)}
    to_run = [name for name in args.systems if not _is_stored(name)]
    systems = {name: load_system(name) for name in to_run}
    _check_comparable(args.systems, stored, [(name, systems[name]) for name in to_run])
    if to_run:
        if args.temperatures is None:
            raise ValueError(f"sweeping {' and '.join(to_run)} needs --temperatures "
                             "START:STOP:STEP or a comma list")
        temperatures = parse_temperatures(args.temperatures)
        _check_stored_temperatures(stored, temperatures)
        if args.route is None:
            args.route = "mbar"
        config = _sweep_config(args)
    else:
        _nothing_to_run(args)
    out = Path(args.out) if args.out else None
    if out is not None:
        rundir.check_writable_dir(out)
        inputs = [Path(args.systems[k]).resolve() for k in stored]
        if (out / "sweep.json").resolve() in inputs:
            raise ValueError(f"--out {out} would overwrite the stored sweep it reads; give "
                             "another --out")
    curves = []
    for k, name in enumerate(args.systems):
        if k in stored:
            curves += stored[k]
        else:
            curves.append(free_energy_curve(
                systems[name], temperatures, config, seed=args.seed,
                workdir=None if out is None else out / Path(name).stem).recounted(args.counting))
    delta = delta_f_curve(*curves) if len(curves) == 2 else None
    data = json.loads(strict_json(sweep_report.record(curves, delta)))
    if out is not None:
        rundir.write_json(out / "sweep.json", data)
        sweep_report.to_csv(curves, out / "sweep.csv", delta)
        sweep_report.to_png(curves, out, delta)
    if args.json:
        print(json.dumps(data))
    else:
        print(sweep_report.to_text(curves, delta), end="")
        if out is not None:
            log = "ladder.log" if args.route == "mbar" else "sweep.log"
            logs = "".join(f", {Path(name).stem}/{log}" for name in to_run)
            print(f"written: {out}/sweep.json, sweep.csv, sweep_*.png{logs}")
    return 0


def _is_stored(name: str) -> bool:
    """A ``SYSTEM`` argument that names a stored ``sweep.json`` rather than a system."""
    return Path(name).suffix.lower() == ".json"


def _check_comparable(arguments, stored: dict, systems: list) -> None:
    """One system or two, distinct and in one potential's units (stored curves included),
    checked before anything runs. ``systems``: ``(argument, System)`` of those to run."""
    labels = [(name, (s.units.energy, s.units.temperature)) for name, s in systems]
    labels += [(c.system, (c.energy_unit, c.temperature_unit))
               for cs in stored.values() for c in cs]
    if len(labels) > 2:
        held = "".join(f"; {arguments[k]} holds {len(cs)}" for k, cs in stored.items())
        raise ValueError(f"sweep takes one system, or two to compare; got {len(labels)}"
                         f"{held}")
    names = [Path(name).stem for name, _ in labels]
    if len(set(names)) != len(names):
        raise ValueError(f"give two different systems to compare; got {names[0]} twice")
    if len({units for _, units in labels}) > 1:
        (a, ua), (b, ub) = labels
        raise ValueError(f"{a} ({ua[0]}, {ua[1]}) and {b} ({ub[0]}, {ub[1]}) are in different "
                         "units; compare crystals of one potential")


def _check_stored_temperatures(stored: dict, temperatures) -> None:
    """Before anything runs: a stored curve to compare with has the requested temperatures."""
    for curve in (c for cs in stored.values() for c in cs):
        if (len(curve.temperatures) != len(temperatures)
                or not np.allclose(curve.temperatures, temperatures, rtol=0, atol=1e-9)):
            listed = ",".join(f"{t:.12g}" for t in curve.temperatures)
            raise ValueError(f"{curve.details['read_from']} holds {curve.system} at other "
                             f"temperatures than --temperatures; give --temperatures {listed}")


def _nothing_to_run(args) -> None:
    """Refuses the options of a run when every SYSTEM is a stored sweep."""
    names = [name for route in _ROUTE_OPTIONS.values() for name in route]
    given = [name for name in ("temperatures", "route", "integration_steps", *names)
             if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        which = "it" if len(given) == 1 else "them"
        raise ValueError(f"{flags} set how a system is swept, but every SYSTEM here is a "
                         f"stored sweep.json, read as it was run; leave {which} out")


def run_limit(args) -> int:
    crystals = limit_report.crystals_from_results(
        args.crystals, args.results, method=args.method, counting=args.counting,
        min_particles=positive(args.min_particles, "--min-particles"))
    fits = limit_report.limits(crystals, fit_log_coefficient=args.fit_log_coefficient)
    if args.json:
        print(strict_json(limit_report.record(fits, args.method)))
    else:
        print(limit_report.to_text(fits, args.method), end="")
    return 0


def run_table(args) -> int:
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

