"""Coverage of the temperature routes' error bars, on a crystal with exact thermodynamics.

Runs ``freeflow.free_energy_curve`` many times with different seeds on the Einstein-spring
crystal of ``tests/springs_oracle.py`` (8 particles; exact ``ln Z``, ``U`` and ``C_v``) at the
tests' T = 0.5, 1.3, 1.5 or at ``--temperatures``, by the SMC sweep and by the MBAR ladder,
with the settings of the tests or those the options give, and
records for each quantity (``beta F / N``, ``U / N``, ``C_v / N``, ``S / N``, ``P``) the
fraction of values within 1 and 2 standard errors of the exact one. Honest error bars give
about 68% and 95%; the binomial spread of that fraction over ``repeats x K`` values is
printed with it. For ``beta F / N`` the lowest temperature is left out: both routes start
there from the harmonic crystal, which is the springs themselves but for the region's cut,
so its error is ~1e-9 (the ladder) or 0 (the sweep), below float32 rounding.
The ladder runs with the bootstrap over chains (``LadderConfig(bootstrap=200)``, or
``--bootstrap 0`` for pymbar's errors, the route's default) and its ``beta F / N`` is also
scored against pymbar's asymptotic errors (``beta_f_pymbar_errors``). ``beta_f_chi2`` tests
the whole covariance: ``d^T C^-1 d`` over the temperatures above the lowest, whose law is
chi^2 with ``K - 1`` degrees of freedom when the covariance is right.

    python bench/suite/sweep_coverage.py --repeats 40 --out bench/results/sweep_coverage.jsonl

docs/sweep.md ("Checks") quotes the stored run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from springs_oracle import TEMPERATURES, exact, springs  # noqa: E402

from freeflow.progress import showing  # noqa: E402
from freeflow.sampling.hmc import HMCConfig  # noqa: E402
from freeflow.sampling.smc import AnnealConfig  # noqa: E402
from freeflow.workflows.baseline import PathConfig  # noqa: E402
from freeflow.workflows.sweep import (LadderConfig, SweepConfig, free_energy_curve,  # noqa: E402
                                      parse_temperatures)

#: The tests' settings (tests/workflows/test_sweep.py and test_temperature_ladder.py, which
#: explain the 4 leapfrog steps); the ladder's errors by the bootstrap over chains, its
#: pymbar errors scored beside them.
ROUTES = {
    "smc": SweepConfig(particles=128, repeats=16,
                       anneal=AnnealConfig(mcmc_steps=10, integration_steps=4)),
    "mbar": LadderConfig(anchor=PathConfig(num_states=3, samples_per_state=256, num_chains=4),
                         sampling=HMCConfig(num_chains=8, num_samples=300, num_warmup=100,
                                            thin=2, num_integration_steps=4), bootstrap=200),
}
QUANTITIES = ("beta_f_per_particle", "u_per_particle", "cv_per_particle", "s_per_particle",
              "pressure")


def _z_scores(system, k, radius, curve, route) -> tuple[dict, dict]:
    """``(z, raw)``: each quantity's z-scores, and ``beta F / N``'s errors and stderrs."""
    z = {q: [] for q in QUANTITIES}
    raw = {"difference": [], "stderr": []}
    if route == "mbar":
        # The ladder's values against pymbar's asymptotic errors instead of the bootstrap's
        # over chains (what the route reported before the bootstrap).
        z["beta_f_pymbar_errors"] = []
        pymbar = np.hypot(curve.details["ladder_stderr_pymbar"],
                          curve.details["anchor"]["stderr"])
    for i, row in enumerate(curve.rows()):
        beta_f, u, cv = exact(system, k, radius, row["temperature"])
        truth = {"beta_f_per_particle": beta_f, "u_per_particle": u, "cv_per_particle": cv,
                 "s_per_particle": u / row["temperature"] - beta_f,
                 "pressure": row["temperature"] / system.volume}
        for q in QUANTITIES:
            if q == "beta_f_per_particle" and i == 0:
                continue  # from the harmonic crystal itself: exact to float32 rounding
            error = row["stderr" if q == "beta_f_per_particle" else
                        q.replace("_per_particle", "") + "_stderr"]
            z[q].append((row[q] - truth[q]) / error)
            if q == "beta_f_per_particle":
                raw["difference"].append(row[q] - truth[q])
                raw["stderr"].append(error)
        if route == "mbar" and i > 0:
            z["beta_f_pymbar_errors"].append((row["beta_f_per_particle"]
                                              - truth["beta_f_per_particle"]) / pymbar[i])
    return z, raw


def _chi2(system, k, radius, curve) -> float:
    """``d^T C^-1 d`` of ``beta F / N`` against the exact values, the lowest temperature (the
    start, exact to rounding) left out."""
    truth = np.array([exact(system, k, radius, t)[0] for t in curve.temperatures])
    d = (np.asarray(curve.beta_f_per_particle) - truth)[1:]
    c = np.asarray(curve.covariance)[1:, 1:]
    return float(d @ np.linalg.solve(c, d))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    parser.add_argument("--particles", type=int, default=None,
                        help="SMC sweep: particles per run (default: the tests' 128)")
    parser.add_argument("--chains", type=int, default=None,
                        help="MBAR route: HMC chains per temperature (default: the tests' 8)")
    parser.add_argument("--samples", type=int, default=None,
                        help="MBAR route: samples per chain (default: the tests' 300)")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help="MBAR route: bootstrap resamplings (0: pymbar's errors, the "
                             "route's default; default here: 200)")
    parser.add_argument("--temperatures", default=None,
                        help="START:STOP:STEP or a list (default: the tests' 0.5, 1.3, 1.5)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    temperatures = (TEMPERATURES if args.temperatures is None
                    else parse_temperatures(args.temperatures))
    routes = dict(ROUTES)
    if args.particles is not None:
        routes["smc"] = dataclasses.replace(routes["smc"], particles=args.particles)
    sampling = routes["mbar"].sampling
    if args.chains is not None:
        sampling = dataclasses.replace(sampling, num_chains=args.chains)
    if args.samples is not None:
        sampling = dataclasses.replace(sampling, num_samples=args.samples)
    routes["mbar"] = dataclasses.replace(routes["mbar"], sampling=sampling)
    if args.bootstrap is not None:
        routes["mbar"] = dataclasses.replace(routes["mbar"], bootstrap=args.bootstrap)
    directory = Path(tempfile.mkdtemp())
    _, system, k, radius = springs(directory)
    for route in args.routes:
        began = time.perf_counter()
        z, beta_f, chi2 = {}, {}, []
        with showing(False):
            for seed in range(100, 100 + args.repeats):
                curve = free_energy_curve(system, temperatures, routes[route], seed=seed)
                scores, raw = _z_scores(system, k, radius, curve, route)
                chi2.append(_chi2(system, k, radius, curve))
                for q, values in scores.items():
                    z.setdefault(q, []).extend(values)
                for q, values in raw.items():
                    beta_f.setdefault(q, []).extend(values)
        settings = ({"particles": routes[route].particles, "runs": routes[route].repeats}
                    if route == "smc" else {"chains": routes[route].sampling.num_chains,
                                            "samples": routes[route].sampling.num_samples,
                                            "bootstrap": routes[route].bootstrap})
        record = {"bench": "sweep_coverage", "route": route, "repeats": args.repeats,
                  **settings,
                  "temperatures": list(temperatures), "wall_time": time.perf_counter() - began,
                  "machine": f"{platform.machine()} cpu x {jax.device_count()}"}
        # The whole covariance of beta F / N: d^T C^-1 d over the temperatures but the lowest
        # follows a chi^2 law with K - 1 degrees of freedom when the covariance is right.
        dof = len(temperatures) - 1
        record["beta_f_chi2"] = {"repeats": len(chi2), "dof": dof,
                                 "mean_chi2_per_dof": float(np.mean(chi2) / dof),
                                 "below_95th_percentile": float(np.mean(
                                     np.asarray(chi2) <= stats.chi2.ppf(0.95, dof)))}
        print(f"{route} beta F / N: chi^2 per dof {record['beta_f_chi2']['mean_chi2_per_dof']:.2f}"
              f", {100 * record['beta_f_chi2']['below_95th_percentile']:.1f}% of repeats below "
              f"the 95th percentile", file=sys.stderr)
        # The bias of beta F / N in absolute terms: its mean error against its mean stderr.
        record["beta_f_mean_difference"] = float(np.mean(beta_f["difference"]))
        record["beta_f_mean_stderr"] = float(np.mean(beta_f["stderr"]))
        for q, values in z.items():
            values = np.abs(np.asarray(values))
            within2 = float(np.mean(values <= 2))
            signed = np.asarray(z[q])
            record[q] = {"values": len(values), "mean_z": float(signed.mean()),
                         "within_1_sigma": float(np.mean(values <= 1)),
                         "within_2_sigma": within2,
                         "binomial_sd_at_95": math.sqrt(0.95 * 0.05 / len(values)),
                         "max_abs_z": float(values.max())}
            print(f"{route} {q}: {100 * within2:.1f}% within 2 sigma of {len(values)} "
                  f"(binomial sd {100 * record[q]['binomial_sd_at_95']:.1f}%), "
                  f"{100 * record[q]['within_1_sigma']:.1f}% within 1", file=sys.stderr)
        line = json.dumps(record)
        print(line)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
