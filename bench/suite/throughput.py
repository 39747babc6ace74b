"""Throughput of the estimator paths: LFEP evaluation, the reference sampler, the MBAR solve.

* ``lfep``: model samples with their exact-energy work per second (``cpu`` preset, a fresh
  flow, batch 256), i.e. what ``freeflow estimate`` costs per sample.
* ``sampler``: HMC energy-and-gradient evaluations per second and autocorrelation-corrected
  samples per second (``chains * samples / tau`` divided by production wall time);
  ``--neighbors`` forces a neighbour plan, to compare plans inside the sampler.
* ``mbar``: wall time of one ``pymbar.MBAR`` solve on the linear Einstein-to-target path
  versus the number of states K and of samples per state (synthetic harmonic energies, so
  the timing is independent of any sampling).

Each row is a JSON line on stdout; a readable summary goes to stderr.

    python bench/suite/throughput.py                 # all parts
    python bench/suite/throughput.py --part mbar
    python bench/suite/throughput.py --quick         # smaller sizes

``bash bench/suite/run_all`` runs it with ``--quick`` into
``bench/results/suite/throughput.jsonl``; docs/benchmarks.md, "Estimator throughput", has the
last run's figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from freeflow import FlowModel, load_system, model_preset, sample_system  # noqa: E402
from freeflow.sampling.hmc import HMCConfig  # noqa: E402
from freeflow.flows.works import model_works  # noqa: E402
from freeflow.estimators.mbar import linear_path_mbar  # noqa: E402

SYSTEMS = ["lj_32", "mw_cubic_64"]


def lfep_throughput(name: str, num_samples: int) -> dict:
    system = load_system(name)
    model = FlowModel(system, model_preset("cpu"))
    params = model.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    model_works(model, params, system, key, 256)  # compiles
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    works = model_works(model, params, system, jax.random.fold_in(key, 1), num_samples)
    seconds = time.perf_counter() - start
    if not np.all(np.isfinite(works)):
        raise RuntimeError(f"non-finite works for {name}")
    return {"bench": "lfep_throughput", "system": name, "num_samples": len(works),
            "samples_per_s": len(works) / seconds, "compile_s": compile_s}


def sampler_throughput(name: str, num_chains: int, num_samples: int,
                       neighbors: str = "auto") -> dict:
    system = load_system(name)
    energy = system.energy_fn(neighbors=neighbors, strays="nan")
    key = jax.random.PRNGKey(0)
    # A first short run compiles the kernels (cached on the energy function) and equilibrates.
    warm = sample_system(system, key, HMCConfig(num_chains=num_chains, num_samples=10,
                                                num_warmup=200, thin=2),
                         energy_fn=energy)
    start = time.perf_counter()
    result = sample_system(system, jax.random.fold_in(key, 1),
                           HMCConfig(num_chains=num_chains, num_samples=num_samples,
                                     num_warmup=0, thin=2, step_size=warm.step_size),
                           energy_fn=energy, initial_positions=warm.final_positions,
                           keep_positions=False)
    seconds = time.perf_counter() - start
    effective = num_chains * num_samples / result.tau
    return {"bench": "sampler_throughput", "system": name, "chains": num_chains,
            "neighbors": system.neighbor_plan(neighbors=neighbors).strategy,
            "samples_per_chain": num_samples, "acceptance": result.acceptance,
            "tau": result.tau, "energy_evaluations": result.energy_evaluations,
            "energy_evals_per_s": result.energy_evaluations / seconds,
            "effective_samples_per_s": effective / seconds, "seconds": seconds}


def mbar_solve_time(num_states: int, samples_per_state: int, seed: int = 0) -> dict:
    """MBAR on U_lambda = (1 - lambda) U_0 + lambda U_1 between two 30-d harmonic wells.

    Exact samples of each state are drawn directly (Gaussian with stiffness k_lambda), so only
    the solve is timed.
    """
    rng = np.random.default_rng(seed)
    dim, k0, k1 = 30, 1.0, 4.0
    lambdas = np.linspace(0.0, 1.0, num_states)
    components = []
    for lam in lambdas:
        x = rng.standard_normal((samples_per_state, dim)) / np.sqrt((1 - lam) * k0 + lam * k1)
        r2 = np.sum(x**2, axis=1)
        components.append(np.stack([0.5 * k0 * r2, 0.5 * k1 * r2], axis=1))
    start = time.perf_counter()
    result = linear_path_mbar(components, lambdas, beta=1.0)
    delta, stderr = result.delta_f, result.stderr
    seconds = time.perf_counter() - start
    exact = 0.5 * dim * np.log(k1 / k0)
    return {"bench": "mbar_solve", "num_states": num_states,
            "samples_per_state": samples_per_state, "seconds": seconds,
            "delta_f": delta, "stderr": stderr, "exact": exact}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["lfep", "sampler", "mbar", "all"], default="all")
    parser.add_argument("--systems", nargs="+", default=SYSTEMS)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--neighbors", nargs="+", default=["auto"],
                        choices=["auto", "dense", "cells", "sites"],
                        help="HMC: the exact energy's neighbour plans to time side by side "
                             "(what auto's cost model was fitted to)")
    args = parser.parse_args(argv)
    lfep_n, chains, per_chain = (4096, 16, 100) if args.quick else (16384, 32, 400)
    states = [8, 16, 32]
    per_state = [1000, 4000] if args.quick else [1000, 4000, 16000]

    def emit(row, text):
        print(json.dumps(row), flush=True)
        print(text, file=sys.stderr, flush=True)

    if args.part in ("lfep", "all"):
        for name in args.systems:
            r = lfep_throughput(name, lfep_n)
            emit(r, f"LFEP {name}: {r['samples_per_s']:.0f} samples/s "
                    f"(model + exact energy, {r['num_samples']} samples)")
    if args.part in ("sampler", "all"):
        for name, plan in itertools.product(args.systems, args.neighbors):
            r = sampler_throughput(name, chains, per_chain, plan)
            emit(r, f"HMC {name} ({r['neighbors']}): {r['energy_evals_per_s']:.0f} "
                    f"energy+force evals/s, tau {r['tau']:.1f}, "
                    f"{r['effective_samples_per_s']:.1f} effective samples/s "
                    f"(acceptance {r['acceptance']:.2f})")
    if args.part in ("mbar", "all"):
        for k in states:
            for m in per_state:
                r = mbar_solve_time(k, m)
                emit(r, f"MBAR K={k:>3} n/state={m:>6}: {r['seconds']:.2f} s "
                        f"(Delta f {r['delta_f']:.4f} +- {r['stderr']:.4f}, "
                        f"exact {r['exact']:.4f})")


if __name__ == "__main__":
    main()
