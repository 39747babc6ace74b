"""The samplers on one CPU device against one device per core: wall time at equal work.

Runs the same command (SMC from the harmonic crystal and the MBAR baseline, through the
command line, start-up and compilation included) with ``JAX_NUM_CPU_DEVICES`` 1 and 2, in
alternating rounds, and prints one JSON line per run (``devices``, ``wall_time``, the value,
its standard error and ``time_x_stderr2``), appended to ``--out``. The two settings run the
same chains with the same random numbers, so the values agree to float32 rounding and only
the wall time differs.

    python bench/suite/sampler_devices.py --systems mw_cubic_64 --rounds 2 \\
        --out bench/results/sampler_devices.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def commands(system: str, args) -> dict[str, list[str]]:
    return {
        "smc": ["freeflow", "estimate", system, "--base", "harmonic", "--method", "smc",
                "--particles", str(args.particles), "--repeats", str(args.repeats), "--json"],
        "mbar": ["freeflow", "baseline", system, "--states", str(args.states),
                 "--samples-per-state", str(args.samples_per_state), "--json"],
    }


def run(command: list[str], devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_NUM_CPU_DEVICES"] = str(devices)
    start = time.perf_counter()
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout
    wall = time.perf_counter() - start
    result = json.loads(out)
    return {"wall_time": wall, "beta_f_per_particle": result["beta_f_per_particle"],
            "stderr": result["stderr"], "time_x_stderr2": wall * result["stderr"] ** 2}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", nargs="+", default=["mw_cubic_64"])
    parser.add_argument("--methods", nargs="+", default=["smc", "mbar"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--particles", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--states", type=int, default=16)
    parser.add_argument("--samples-per-state", type=int, default=1024)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    for system in args.systems:
        for method in args.methods:
            command = commands(system, args)[method]
            for round_ in range(args.rounds):
                # Alternate the order so that a drift of the machine hits both settings.
                for devices in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                    row = {"system": system, "method": method, "devices": devices,
                           "round": round_, "command": " ".join(command), **run(command, devices)}
                    print(json.dumps(row), flush=True)
                    print(f"{system} {method} devices={devices}: {row['wall_time']:.1f} s, "
                          f"{row['beta_f_per_particle']:.5f} +- {row['stderr']:.1e}",
                          file=sys.stderr, flush=True)
                    if args.out:
                        with open(args.out, "a") as fh:
                            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
