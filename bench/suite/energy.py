"""Energy + force throughput of freeflow's potentials on this machine.

Three parts (``--part``), each printing JSON lines on stdout and a readable summary on stderr:

* ``named``: energy + forces per second for the named systems (batch 64);
* ``scaling``: Lennard-Jones FCC from N = 500 to 4000 and mW diamond ice from N = 216 to 4096
  (batch 8), milliseconds per configuration and the exponent b of a least-squares fit
  time-per-configuration ~ N^b;
* ``compaction``: side by side, in one run: the cell list with and without its cutoff
  compaction at the largest sizes (what the compaction bought); the site list against the plan
  ``auto`` used before it (all pairs or the cell list), and in blocks against
  whole-configuration arrays.

Energies are called on whole batches, as the estimators call them, so the exact energy's
stray guard (a branch taken only for flagged configurations, none here) costs nothing.

    python bench/suite/energy.py                  # all three
    python bench/suite/energy.py --part scaling   # one part
    python bench/suite/energy.py --quick          # 3 repeats instead of 10

``bash bench/suite/run_all`` runs it with ``--quick`` into ``bench/results/suite/energy.jsonl``
(and ``energy.txt``); docs/benchmarks.md, "Energies", has the last run's tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from freeflow import (
    LennardJones,
    MonatomicWater,
    build_lattice,
    load_system,
    system_from_atoms,
)

SYSTEMS = ["lj_256", "lj_500", "mw_cubic_64", "mw_cubic_216", "mw_cubic_512"]
LJ_SIZES = [500, 864, 1372, 2048, 2916, 4000]          # 4 n^3
MW_SIZES = [216, 512, 1000, 1728, 2744, 4096]          # 8 n^3
LJ_DENSITY, MW_DENSITY = 1.28, 0.033567184


def scaling_system(potential: str, n: int):
    if potential == "lennard_jones":
        return system_from_atoms(build_lattice("fcc", n, LJ_DENSITY), LennardJones(),
                                 temperature=2.0)
    return system_from_atoms(build_lattice("diamond", n, MW_DENSITY), MonatomicWater(),
                             temperature=200.0)


def time_energy(system, energy, plan, batch: int, repeats: int, noise: float = 0.05) -> dict:
    """Median wall time of one jitted energy + forces call on ``batch`` perturbed crystals."""
    # The energy is called on the whole batch (as the estimators do), not under vmap, so that
    # the exact energy's stray guard stays a branch taken only for flagged configurations.
    def total(x):
        u = energy(x)
        return jnp.sum(u), u

    grad_fn = jax.jit(jax.value_and_grad(total, has_aux=True))

    def energy_and_forces(x):
        (_, u), g = grad_fn(x)
        return u, -g

    rng = np.random.default_rng(0)
    x = system.lattice + noise * system.nearest_neighbour_distance * rng.standard_normal(
        (batch,) + system.lattice.shape)
    x = jnp.asarray(np.mod(x, system.box), jnp.float32)
    start = time.perf_counter()
    u, _ = jax.block_until_ready(energy_and_forces(x))
    compile_s = time.perf_counter() - start
    if not np.all(np.isfinite(np.asarray(u))):
        raise RuntimeError(f"non-finite energy for N = {system.num_particles}")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(energy_and_forces(x))
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"num_particles": system.num_particles, "neighbors": plan.strategy,
            "candidates": plan.num_candidates(system.num_particles), "batch": batch,
            "configs_per_s": batch / median, "seconds_per_config": median / batch,
            "compile_s": compile_s, "repeats": repeats}


def fit_exponent(rows) -> float:
    n = np.log([r["num_particles"] for r in rows])
    t = np.log([r["seconds_per_config"] for r in rows])
    return float(np.polyfit(n, t, 1)[0])


def named(args, machine):
    print(f"\nenergy + forces, batch 64, median of {args.repeats} ({machine})", file=sys.stderr)
    print(f"{'system':<14}{'N':>6}{'neighbours':>12}{'configs/s':>12}{'compile s':>11}",
          file=sys.stderr)
    for name in SYSTEMS:
        system = load_system(name)
        row = {"bench": "energy", "system": name, "machine": machine,
               **time_energy(system, system.energy_fn(), system.neighbor_plan(), 64,
                               args.repeats)}
        print(json.dumps(row), flush=True)
        print(f"{name:<14}{row['num_particles']:>6}{row['neighbors']:>12}"
              f"{row['configs_per_s']:>12.1f}{row['compile_s']:>11.2f}", file=sys.stderr)


def scaling(args, machine):
    for potential, sizes in (("lennard_jones", LJ_SIZES), ("monatomic_water", MW_SIZES)):
        rows = []
        print(f"\n{potential}: energy + forces, batch {args.batch}", file=sys.stderr)
        print(f"{'N':>6}{'neighbours':>12}{'entries':>9}{'ms/config':>11}{'compile s':>11}",
              file=sys.stderr)
        for n in sizes:
            system = scaling_system(potential, n)
            row = {"bench": "energy_vs_n", "potential": potential, "machine": machine,
                   **time_energy(system, system.energy_fn(), system.neighbor_plan(),
                                   args.batch, args.repeats)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            print(f"{n:>6}{row['neighbors']:>12}{row['candidates']:>9}"
                  f"{1e3 * row['seconds_per_config']:>11.2f}{row['compile_s']:>11.1f}",
                  file=sys.stderr)
        exponent = fit_exponent(rows)
        print(json.dumps({"bench": "energy_scaling", "potential": potential,
                          "sizes": sizes, "exponent": exponent, "machine": machine}))
        print(f"{potential}: cost per configuration ~ N^{exponent:.2f} over N = "
              f"{sizes[0]}..{sizes[-1]}", file=sys.stderr)


def compaction(args, machine):
    print(f"\ncell list with and without compaction, batch {args.batch}", file=sys.stderr)
    for potential, n in (("lennard_jones", LJ_SIZES[-1]), ("monatomic_water", MW_SIZES[-1])):
        system = scaling_system(potential, n)
        plan = system.neighbor_plan(neighbors="cells")
        seconds = {}
        for label, compact in (("compact", plan.compact), ("all_cell_candidates", 0)):
            variant = system.potential.energy_fn(
                system.box, system.lattice, neighbors=dataclasses.replace(plan, compact=compact),
                max_displacement=0.5 * system.nearest_neighbour_distance)
            row = time_energy(system, variant, dataclasses.replace(plan, compact=compact),
                              args.batch, args.repeats)
            seconds[label] = row["seconds_per_config"]
            print(json.dumps({"bench": "energy_compaction", "potential": potential,
                              "variant": label, "machine": machine, **row}), flush=True)
        ratio = seconds["all_cell_candidates"] / seconds["compact"]
        print(f"{potential} N = {n}: {1e3 * seconds['compact']:.1f} ms/config compacted vs "
              f"{1e3 * seconds['all_cell_candidates']:.1f} uncompacted ({ratio:.1f}x)",
              file=sys.stderr)
    # The site list against what auto picked before it existed (the all-pairs sum below the
    # cell-list sizes, the cell list above), and blocked against whole-configuration arrays.
    for potential, n, before in (("lennard_jones", 500, "dense"), ("lennard_jones", 4000, "cells"),
                                 ("monatomic_water", 216, "cells"),
                                 ("monatomic_water", 4096, "cells")):
        system = scaling_system(potential, n)
        sites = system.energy_fn(neighbors="sites", strays="nan")
        site_plan = system.neighbor_plan(neighbors="sites")
        variants = [(before, system.energy_fn(neighbors=before),
                     system.neighbor_plan(neighbors=before)), ("sites", sites, site_plan)]
        if n > site_plan.block:
            whole = dataclasses.replace(site_plan, block=n)
            variants.append(("sites_unblocked", system.potential.energy_fn(
                system.box, system.lattice, neighbors=whole,
                max_displacement=0.5 * system.nearest_neighbour_distance), whole))
        seconds = {}
        for label, energy, plan in variants:
            row = time_energy(system, energy, plan, args.batch, args.repeats)
            seconds[label] = row["seconds_per_config"]
            print(json.dumps({"bench": "energy_site_list", "potential": potential,
                              "variant": label, "machine": machine, **row}), flush=True)
        line = (f"{potential} N = {n}: site list {1e3 * seconds['sites']:.1f} ms/config vs "
                f"{before} {1e3 * seconds[before]:.1f} ({seconds[before] / seconds['sites']:.1f}x)")
        if "sites_unblocked" in seconds:
            line += (f"; unblocked {1e3 * seconds['sites_unblocked']:.1f} "
                     f"({seconds['sites_unblocked'] / seconds['sites']:.1f}x)")
        print(line, file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["named", "scaling", "compaction", "all"],
                        default="all")
    parser.add_argument("--batch", type=int, default=8, help="batch for scaling and compaction")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 3
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
              f"{jax.devices()[0].platform}"
    for part, fn in (("named", named), ("scaling", scaling), ("compaction", compaction)):
        if args.part in (part, "all"):
            fn(args, machine)


if __name__ == "__main__":
    main()
