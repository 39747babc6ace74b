"""The table's SMC column: beta F / N by annealed SMC from a base (or a trained run).

Runs ``freeflow.smc_free_energy`` for each system and prints one ``FreeEnergy`` row per system
on stdout, appending it to ``--out``: the value, its error, the energy evaluations, the
sampling wall time and wall time x stderr^2 (the time that would buy an error of 1; divide by
the square of the error wanted); then beta (F_Ih - F_Ic) / N where both ices of one N ran.
``--start`` is a base name (no training) or a directory of run directories named after the
systems (``--start RUNS_DIR`` looks for ``RUNS_DIR/SYSTEM``; the training's cost is recorded).

    python bench/table/smc.py --systems mw_cubic_64 mw_hex_64 --start harmonic --particles 512 \\
        --repeats 32 --workdir bench/work/smc --out freeflow/data/results/smc.jsonl

``freeflow/data/results/smc.jsonl`` is the stored SMC column that ``freeflow table`` and
``bench/suite/time_to_answer.py`` read (the last row of a system wins). Every finished run is
kept in ``--workdir`` (``freeflow.rundir.SmcWorkdir``), so an interrupted run continues with
the same command, and a larger ``--repeats`` extends a finished one. bench/README.md lists the
commands behind every stored row.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path

import jax

from freeflow.estimators.result import delta_f
from freeflow.flows.config import BASES
from freeflow.rundir import training_cost
from freeflow.sampling.smc import AnnealConfig
from freeflow.workflows.smc import SMCConfig, smc_free_energy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", required=True)
    parser.add_argument("--start", default="harmonic",
                        help=f"a base ({', '.join(BASES)}) or a directory of run directories "
                             "named after the systems")
    parser.add_argument("--particles", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=1)
    parser.add_argument("--mcmc-steps", type=int, default=5)
    parser.add_argument("--integration-steps", type=int, default=8)
    parser.add_argument("--target-ess", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="particles evaluated together (memory and cache; default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="bench/work/smc")
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    args = parser.parse_args(argv)

    results = {}
    for name in args.systems:
        if args.start in BASES:
            start = dict(system=name, base=args.start)
            label = args.start
        else:
            start = dict(run=str(Path(args.start) / name))
            label = "flow"
        tag = (f"{name}-{label}-P{args.particles}-M{args.mcmc_steps}-L{args.integration_steps}"
               f"-e{args.target_ess:g}-s{args.seed}")
        config = SMCConfig(particles=args.particles, repeats=args.repeats,
                           group_size=args.group_size,
                           anneal=AnnealConfig(target_ess=args.target_ess,
                                               mcmc_steps=args.mcmc_steps,
                                               integration_steps=args.integration_steps,
                                               batch_size=args.batch_size))
        result = smc_free_energy(**start, config=config, seed=args.seed,
                                 workdir=Path(args.workdir) / tag)
        results[name] = result
        row = result.to_dict()
        for bulky in ("temperatures", "ln_z_fixed_runs", "final_ess", "num_temperatures"):
            row.pop(bulky, None)
        temps = result.details["num_temperatures"]
        if "run" in start:  # the flow's training is part of the cost of this route
            steps, train_wall, train_evals = training_cost(start["run"])
            row.update(training_steps=steps, training_wall_time=train_wall,
                       training_energy_evaluations=train_evals)
        row.update(bench="smc", workdir=str(Path(args.workdir) / tag),
                   median_temperatures=sorted(temps)[len(temps) // 2],
                   time_x_stderr2=result.details["sampling_wall_time"] * result.stderr**2,
                   evaluations_x_stderr2=result.energy_evaluations * result.stderr**2,
                   machine=f"{platform.machine()} {jax.devices()[0].platform} x "
                           f"{jax.device_count()}")
        line = json.dumps(row)
        print(line, flush=True)
        print(f"{name}: beta F / N = {result.value:.5f} +- {result.stderr:.5f} "
              f"({result.details['repeats']} runs of {args.particles}, "
              f"{result.energy_evaluations:.3g} evaluations, "
              f"{result.details['sampling_wall_time']:.0f} s sampling)", file=sys.stderr)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    pairs = [(a, b) for a, b in (("mw_cubic_64", "mw_hex_64"), ("mw_cubic_216", "mw_hex_216"),
                                 ("mw_cubic_512", "mw_hex_512")) if a in results and b in results]
    for a, b in pairs:
        d = delta_f(results[a], results[b])
        n = results[a].details["num_particles"]
        line = json.dumps({"quantity": "beta (F_Ih - F_Ic) / N", "num_particles": n,
                           "value": d.value, "stderr": d.stderr, "method": "smc",
                           "start": label, "counting": results[a].details["counting"]})
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    return 0 if all(math.isfinite(r.value) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
