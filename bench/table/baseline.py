"""The table's MBAR column: beta F / N by MBAR from an analytic reference, one JSON line each.

Runs ``freeflow.mbar_free_energy`` (16 states from the harmonic crystal to the target, HMC
chains at each state; ``--reference einstein`` starts from the Einstein crystal instead) for
each system and prints one ``FreeEnergy`` row per system on stdout, appending it to ``--out``.
After the systems, for every N at which both ice Ic (mw_cubic_N) and ice Ih (mw_hex_N) were
run, it prints beta (F_Ih - F_Ic) / N with the two standard errors added in quadrature (the runs
are independent). Values are in the literature's (Bravais) counting unless ``--counting
exact``.

    python bench/table/baseline.py --quick        # smoke test, a minute or two
    python bench/table/baseline.py --systems mw_cubic_216 mw_hex_216 lj_256 \\
        --reference harmonic --states 16 --chains 64 --samples-per-state 1024 \\
        --workdir bench/work --out freeflow/data/results/baseline.jsonl

``freeflow/data/results/baseline.jsonl`` is the stored MBAR column that ``freeflow table`` and
``bench/suite/time_to_answer.py`` read (the last non-quick row of a system wins). Each
system's run is resumable: its states are kept under ``--workdir`` (one sub-directory per
system and setting), so re-running the same command skips finished states, and re-running it
with a larger ``--samples-per-state`` continues the saved chains instead of starting again.
bench/README.md lists the commands behind every stored row.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

SYSTEMS = ["lj_32", "mw_cubic_8", "mw_cubic_64", "mw_hex_64"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=SYSTEMS)
    parser.add_argument("--states", type=int, default=None, help="MBAR states K")
    parser.add_argument("--samples-per-state", type=int, default=None,
                        help="saved samples per state over all chains (before decorrelation)")
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default="harmonic", choices=["harmonic", "einstein"],
                        help="the MBAR path's analytic start (default harmonic)")
    parser.add_argument("--counting", default="bravais", choices=["bravais", "exact"])
    parser.add_argument("--quick", action="store_true", help="tiny run to check the pipeline")
    parser.add_argument("--workdir", default="bench/work", help="root of the resumable runs")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)

    from freeflow.physics.system_files import load_system
    from freeflow.workflows.baseline import PathConfig, mbar_free_energy

    defaults = (dict(states=4, samples=128, chains=16, warmup=60) if args.quick
                else dict(states=16, samples=8192, chains=64, warmup=200))
    states = args.states or defaults["states"]
    samples = args.samples_per_state or defaults["samples"]
    chains = args.chains or defaults["chains"]
    warmup = args.warmup or defaults["warmup"]
    out = open(args.out, "a") if args.out else None
    if out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)

    def emit(row):
        line = json.dumps(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    results = {}
    for name in args.systems:
        system = load_system(name)
        # Not keyed by the sample count: a larger --samples-per-state extends the saved chains.
        workdir = (Path(args.workdir)
                   / f"{name}-{args.reference}-K{states}-C{chains}-s{args.seed}")
        start = time.perf_counter()
        config = PathConfig(reference=args.reference, num_states=states,
                            samples_per_state=samples, num_chains=chains, num_warmup=warmup)
        res = mbar_free_energy(system, config, workdir=workdir,
                               seed=args.seed).recounted(args.counting)
        row = res.to_dict()
        row.pop("states", None)
        row.pop("lambdas", None)
        row["bench_wall_time"] = time.perf_counter() - start
        row["quick"] = bool(args.quick)
        results[name] = res
        emit(row)
    for n in (64, 216, 512):
        if f"mw_cubic_{n}" in results and f"mw_hex_{n}" in results:
            ic, ih = results[f"mw_cubic_{n}"], results[f"mw_hex_{n}"]
            emit({"quantity": "beta (F_Ih - F_Ic) / N", "num_particles": n,
                  "value": ih.value - ic.value, "counting": args.counting,
                  "stderr": math.sqrt(ih.stderr**2 + ic.stderr**2), "method": "mbar",
                  "quick": bool(args.quick)})
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
