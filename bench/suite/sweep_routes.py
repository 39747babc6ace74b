"""Three routes to ``beta F / N`` at several temperatures of one crystal, at equal error.

1. **The SMC sweep** (``free_energy_curve`` with a ``SweepConfig``): SMC from the harmonic
   crystal at the lowest temperature, then the same particles along beta.
2. **Separate estimates**: SMC from the harmonic crystal at each temperature on its own
   (``smc_free_energy`` with the sweep's particles and runs).
3. **The MBAR route** (``free_energy_curve`` with a ``LadderConfig``, ``freeflow sweep
   --route mbar``): MBAR from the harmonic crystal at the lowest temperature, HMC at every
   temperature, MBAR over the temperatures.

Each route runs through the package's own API, in its own work directory under ``--work``
(an interrupted run continues where it stopped; the wall times of a continued run are then
those of the stages it ran, so time a run from an empty directory). For each route it records
every temperature's value and error, the wall time and ``wall x max stderr^2`` (the time that
would buy an error of 1 on every temperature; smaller wins), and every route's values against
the MBAR route's in combined standard errors, and the sweep's ``U / N`` against the MBAR
route's HMC mean energies.

    python bench/suite/sweep_routes.py --system mw_hex_64 --temperatures 180:220:20 \\
        --work bench/work/sweep-routes --out bench/results/sweep_routes.jsonl

Run it with the cores otherwise idle: the routes are compared by wall time.
docs/sweep.md, "Which route", quotes the stored run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import jax

from freeflow.physics.system_files import load_system
from freeflow.workflows.smc import SMCConfig, smc_free_energy
from freeflow.workflows.sweep import (LadderConfig, SweepConfig, free_energy_curve,
                                      parse_temperatures)


def _route(values, stderrs, wall_time) -> dict:
    values, stderrs = [float(v) for v in values], [float(e) for e in stderrs]
    return {"values": values, "stderrs": stderrs, "wall_time": wall_time,
            "wall_x_max_stderr2": wall_time * max(e * e for e in stderrs)}


def _sigmas(route: dict, other: dict) -> list[float]:
    return [(a - b) / math.hypot(ea, eb) for a, b, ea, eb in
            zip(route["values"], other["values"], route["stderrs"], other["stderrs"])]


def _separate(system, temperatures, config: SMCConfig, seed: int, work: Path) -> dict:
    values, stderrs, wall = [], [], 0.0
    for k, temperature in enumerate(temperatures):
        at = dataclasses.replace(system, temperature=temperature)
        result = smc_free_energy(system=at, base="harmonic", config=config, seed=seed + k,
                                 workdir=work / f"separate-{k:02d}")
        values.append(result.value)
        stderrs.append(result.stderr)
        wall += result.wall_time
        print(f"separate T = {temperature:g}: {result.value:.6f} +- {result.stderr:.6f} "
              f"in {result.wall_time:.1f} s", file=sys.stderr, flush=True)
    return _route(values, stderrs, wall)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", required=True)
    parser.add_argument("--temperatures", required=True, help="START:STOP:STEP or a list")
    parser.add_argument("--particles", type=int, default=256, help="SMC particles per run")
    parser.add_argument("--repeats", type=int, default=8, help="independent SMC runs")
    parser.add_argument("--chains", type=int, default=16, help="HMC chains per temperature")
    parser.add_argument("--samples", type=int, default=500,
                        help="HMC samples per chain (thinned by 2) per temperature")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", required=True, help="work directory (resumable)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    temperatures = parse_temperatures(args.temperatures)
    system = load_system(args.system)
    work = Path(args.work)
    # All runs of a temperature at once, as the sweep runs them.
    smc = SMCConfig(particles=args.particles, repeats=args.repeats, group_size=args.repeats)
    sweep_config = SweepConfig(particles=args.particles, repeats=args.repeats)
    ladder_config = LadderConfig(sampling=dataclasses.replace(
        LadderConfig().sampling, num_chains=args.chains, num_samples=args.samples))

    began = time.perf_counter()
    sweep = free_energy_curve(system, temperatures, sweep_config, seed=args.seed,
                              workdir=work / "sweep")
    sweep_route = _route(sweep.beta_f_per_particle, sweep.stderr, time.perf_counter() - began)
    separate = _separate(system, temperatures, smc, args.seed, work)
    began = time.perf_counter()
    ladder = free_energy_curve(system, temperatures, ladder_config, seed=args.seed,
                               workdir=work / "mbar")
    ladder_route = _route(ladder.beta_f_per_particle, ladder.stderr,
                          time.perf_counter() - began)

    record = {
        "bench": "sweep_routes", "system": args.system, "temperatures": temperatures,
        "smc_particles": args.particles, "repeats": args.repeats,
        "chains": args.chains, "samples": args.samples, "seed": args.seed,
        "sweep": sweep_route, "separate": separate, "mbar_route": ladder_route,
        "minus_mbar_route_sigma": {"sweep": _sigmas(sweep_route, ladder_route),
                                   "separate": _sigmas(separate, ladder_route)},
        "sweep_u_minus_hmc_sigma": [
            (a - b) / math.hypot(ea, eb) for a, b, ea, eb in
            zip(sweep.u_per_particle, ladder.u_per_particle, sweep.u_stderr,
                ladder.u_stderr)],
        "machine": f"{platform.machine()} cpu x {jax.device_count()}",
    }
    line = json.dumps(record)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    for route in ("sweep", "separate", "mbar_route"):
        print(f"{route}: {record[route]['wall_time']:.0f} s, wall x max stderr^2 = "
              f"{record[route]['wall_x_max_stderr2']:.3g} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
