"""Three routes to ``beta F / N`` at several temperatures of one crystal, at equal error.

1. **The sweep** (``freeflow sweep``): SMC from the harmonic crystal at the lowest temperature,
   then the same particles along beta. Read from the ``sweep.json`` of a finished sweep of the
   same settings (``--sweep``), with its wall time.
2. **Separate estimates**: SMC from the harmonic crystal at each temperature on its own
   (``freeflow.smc_free_energy`` with the sweep's particles and runs).
3. **An MBAR temperature ladder**: HMC at each temperature (``sample_system``), MBAR over the
   temperatures on the decorrelated energies (``u_kn = beta_k U(x_n)``, no new energy
   evaluations), anchored at separate estimate 2's lowest temperature.

For each route it records each temperature's value and error, the wall time, and
``wall x max stderr^2`` (the time that would buy an error of 1 on every temperature; smaller
wins). For the ladder, whose error is the anchor's and the ladder's in quadrature, the cost at
equal error is ``(sqrt(W_a e_a^2) + sqrt(W_l e_l^2))^2`` with the best split of the error
between the two. It also compares the sweep's U/N with the HMC mean energy at each
temperature, and the sweep's values with the separate estimates (combined sigma).

    freeflow sweep mw_cubic_64 mw_hex_64 --temperatures 180:220:20 --out bench/work/sweep-ice64
    python bench/suite/sweep_routes.py --system mw_hex_64 \\
        --sweep bench/work/sweep-ice64/sweep.json --out bench/results/sweep_routes.jsonl

Run it with the cores otherwise idle, and the sweep too: the routes are compared by wall time.
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

import jax
import numpy as np

from freeflow.estimators.mbar import mbar, uncorrelated_indices
from freeflow.physics.system_files import load_system
from freeflow.sampling.hmc import HMCConfig, sample_system
from freeflow.workflows.smc import SMCConfig, smc_free_energy


def _sweep_record(path, system_name):
    data = json.loads(open(path).read())
    for entry in data["systems"]:
        if entry["system"] == system_name:
            return entry
    raise SystemExit(f"{path} has no sweep of {system_name}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", required=True)
    parser.add_argument("--sweep", required=True, help="sweep.json of a finished sweep")
    parser.add_argument("--chains", type=int, default=16, help="HMC chains per temperature")
    parser.add_argument("--samples", type=int, default=500,
                        help="HMC samples per chain (thinned by 2) per temperature")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    sweep = _sweep_record(args.sweep, args.system)
    rows = sweep["temperatures"]
    temperatures = [r["temperature"] for r in rows]
    system = load_system(args.system)
    n = system.num_particles
    config = SMCConfig(particles=sweep["smc_particles"], repeats=sweep["repeats"])

    separate = []
    for k, temperature in enumerate(temperatures):
        at = dataclasses.replace(system, temperature=temperature)
        began = time.perf_counter()
        result = smc_free_energy(system=at, base="harmonic", config=config,
                                 seed=args.seed + k)
        separate.append({"temperature": temperature, "value": result.value,
                         "stderr": result.stderr, "wall_time": time.perf_counter() - began})
        print(f"separate T = {temperature:g}: {result.value:.6f} +- {result.stderr:.6f} "
              f"in {separate[-1]['wall_time']:.1f} s", file=sys.stderr, flush=True)

    began = time.perf_counter()
    energies, n_k, hmc = [], [], []
    hmc_config = HMCConfig(num_chains=args.chains, num_samples=args.samples, thin=2)
    for k, temperature in enumerate(temperatures):
        at = dataclasses.replace(system, temperature=temperature)
        result = sample_system(at, jax.random.PRNGKey(args.seed + 100 + k), hmc_config,
                               keep_positions=False)
        per_chain = np.asarray(result.energies, np.float64).reshape(args.chains, -1)
        keep, g = uncorrelated_indices(per_chain)
        kept = np.concatenate([chain[i] for chain, i in zip(per_chain, keep)])
        energies.append(kept)
        n_k.append(len(kept))
        chain_means = per_chain.mean(axis=1) / n
        hmc.append({"temperature": temperature, "u_per_particle": float(chain_means.mean()),
                    "u_stderr": float(chain_means.std(ddof=1) / math.sqrt(args.chains)),
                    "statistical_inefficiency": g, "decorrelated_samples": len(kept),
                    "acceptance": float(result.acceptance)})
    betas = np.array([system.units.beta(t) for t in temperatures])
    all_u = np.concatenate(energies)
    ladder = mbar(betas[:, None] * all_u[None, :], np.array(n_k))
    ladder_time = time.perf_counter() - began
    anchor = separate[0]
    # beta F / N (T_k) = anchor + (f_k - f_0) / N: MBAR's f_k = -ln Z_k + ln Z_0.
    f_k = np.array(ladder.details["f_k"])
    with_ladder = [{"temperature": t, "value": anchor["value"] + f / n}
                   for t, f in zip(temperatures, f_k)]
    # MBAR's error of f_{K-1} - f_0, the largest of the ladder's, per particle.
    ladder_error = ladder.stderr / n

    def cost(wall, errors):
        return wall * max(e**2 for e in errors)

    sweep_errors = [r["stderr"] for r in rows]
    costs = {
        "sweep": cost(sweep["wall_time"], sweep_errors),
        "separate": sum(s["wall_time"] * s["stderr"]**2 for s in separate),
        "mbar_ladder": (math.sqrt(anchor["wall_time"] * anchor["stderr"]**2)
                        + math.sqrt(ladder_time * ladder_error**2))**2,
    }
    record = {
        "bench": "sweep_routes", "system": args.system, "temperatures": temperatures,
        "smc_particles": config.particles, "repeats": config.repeats,
        "sweep": {"wall_time": sweep["wall_time"], "values": [r["beta_f_per_particle"]
                                                               for r in rows],
                  "stderrs": sweep_errors},
        "separate": separate,
        "mbar_ladder": {"wall_time": ladder_time, "anchor": anchor["temperature"],
                        "values": [w["value"] for w in with_ladder],
                        "ladder_stderr_last": ladder_error,
                        "min_neighbour_overlap": ladder.details["min_neighbour_overlap"],
                        "hmc": hmc, "chains": args.chains, "samples": args.samples},
        "wall_x_max_stderr2": costs,
        "sweep_minus_separate_sigma": [
            (r["beta_f_per_particle"] - s["value"]) / math.hypot(r["stderr"], s["stderr"])
            for r, s in zip(rows, separate)],
        "sweep_u_minus_hmc_sigma": [
            (r["u_per_particle"] - h["u_per_particle"]) / math.hypot(r["u_stderr"],
                                                                      h["u_stderr"])
            for r, h in zip(rows, hmc)],
        "machine": f"{platform.machine()} cpu x {jax.device_count()}",
    }
    line = json.dumps(record)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    for route, value in costs.items():
        print(f"{route}: wall x max stderr^2 = {value:.3g} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
