"""Energy + force throughput of freeflow's potentials on this machine.

Prints one JSON line per system and a readable table, then the exponent b of a fit
time-per-configuration ~ N^b over the monatomic-water sizes.

    python bench/energy.py             # the issue's systems, batch 64
    python bench/energy.py --quick     # fewer repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from freeflow import load_system

SYSTEMS = ["lj_256", "lj_500", "mw_cubic_64", "mw_cubic_216", "mw_cubic_512"]


def measure(name: str, batch: int, repeats: int, noise: float = 0.05) -> dict:
    system = load_system(name)
    energy = system.energy_fn()
    energy_and_forces = jax.jit(jax.vmap(jax.value_and_grad(lambda x: energy(x))))
    rng = np.random.default_rng(0)
    x = system.lattice + noise * system.nearest_neighbour_distance * rng.standard_normal(
        (batch,) + system.lattice.shape)
    x = jnp.asarray(np.mod(x, system.box), jnp.float32)
    start = time.perf_counter()
    jax.block_until_ready(energy_and_forces(x))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(energy_and_forces(x))
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"bench": "energy", "system": name, "num_particles": system.num_particles,
            "neighbors": energy.neighbors.strategy, "batch": batch,
            "configs_per_s": batch / median, "median_batch_s": median,
            "compile_s": compile_s, "repeats": repeats}


def fit_exponent(rows) -> float:
    n = np.log([r["num_particles"] for r in rows])
    t = np.log([r["median_batch_s"] for r in rows])
    return float(np.polyfit(n, t, 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=SYSTEMS)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
              f"{jax.devices()[0].platform}"
    rows = []
    for name in args.systems:
        row = measure(name, args.batch, repeats)
        row["machine"] = machine
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nenergy + forces, batch {args.batch}, median of {repeats} ({machine})",
          file=sys.stderr)
    print(f"{'system':<14}{'N':>6}{'neighbours':>12}{'configs/s':>12}{'compile s':>11}",
          file=sys.stderr)
    for r in rows:
        print(f"{r['system']:<14}{r['num_particles']:>6}{r['neighbors']:>12}"
              f"{r['configs_per_s']:>12.1f}{r['compile_s']:>11.2f}", file=sys.stderr)
    mw = [r for r in rows if r["system"].startswith("mw")]
    if len(mw) >= 2:
        exponent = fit_exponent(mw)
        print(json.dumps({"bench": "energy_scaling", "potential": "monatomic_water",
                          "sizes": [r["num_particles"] for r in mw], "exponent": exponent}))
        print(f"mW cost ~ N^{exponent:.2f} over N = "
              f"{', '.join(str(r['num_particles']) for r in mw)}", file=sys.stderr)


if __name__ == "__main__":
    main()
