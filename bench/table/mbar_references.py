"""The MBAR path's two references side by side: standard error against energy evaluations.

For each system, reference (``harmonic``, ``einstein``) and samples per state (in increasing
order: each continues the saved chains of the one before, from ``--workdir``), one JSON line:
beta F / N, its standard error, the energy evaluations and the sampling wall time, and
``cost = stderr^2 x energy evaluations`` (the evaluations that would buy a standard error of
1; lower is better; MBAR's variance falls as 1 / samples, so it is nearly independent of the
budget once the run is long enough). The runs alternate between the references, so that both
see the same load on the machine. Resumable: re-running skips what is saved.

    python bench/table/mbar_references.py --systems lj_32 mw_cubic_64 mw_hex_64 \\
        --samples-per-state 1024 --out bench/results/mbar_references.jsonl

This comparison chose the harmonic crystal as the MBAR reference, and its harmonic runs of the
64-molecule ices, continued by ``bench/table/baseline.py --workdir bench/work/references``
to 1536 samples per state, are the table's N = 64 MBAR rows. Its rows go to
``bench/results/mbar_references.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from freeflow.physics.system_files import load_system
from freeflow.workflows.baseline import REFERENCES, PathConfig, mbar_free_energy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_32", "mw_cubic_64", "mw_hex_64"])
    parser.add_argument("--references", nargs="+", default=list(REFERENCES))
    parser.add_argument("--states", type=int, default=16)
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--samples-per-state", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="bench/work/references")
    parser.add_argument("--out", default=None, help="also append the JSON lines here")
    args = parser.parse_args(argv)
    out = open(args.out, "a") if args.out else None
    for name in args.systems:
        system = load_system(name)
        for samples in sorted(args.samples_per_state):
            for reference in args.references:
                workdir = (Path(args.workdir)
                           / f"{name}-{reference}-K{args.states}-C{args.chains}-s{args.seed}")
                start = time.perf_counter()
                config = PathConfig(reference=reference, num_states=args.states,
                                    samples_per_state=samples, num_chains=args.chains)
                res = mbar_free_energy(system, config, workdir=workdir, seed=args.seed)
                row = {"bench": "mbar_references", "system": name, "reference": reference,
                       "num_states": args.states, "num_chains": args.chains,
                       "samples_per_state": samples, "beta_f_per_particle": res.value,
                       "stderr": res.stderr, "energy_evaluations": res.energy_evaluations,
                       "sampling_wall_time": res.details["sampling_wall_time"],
                       "cost": res.stderr**2 * res.energy_evaluations,
                       "min_neighbour_overlap": res.details["min_neighbour_overlap"],
                       "counting": res.details["counting"],
                       "call_wall_time": time.perf_counter() - start}
                line = json.dumps(row)
                print(line, flush=True)
                print(f"{name} {reference:8s} {samples:6d}/state: {res.value:.5f} +- "
                      f"{res.stderr:.5f}, {res.energy_evaluations:.3g} evaluations, cost "
                      f"{row['cost']:.3g}", file=sys.stderr, flush=True)
                if out:
                    out.write(line + "\n")
                    out.flush()
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
