"""How close each base distribution starts to the target: an untrained flow's works.

For every system and base (the paper's fixed noise, the Einstein width, the harmonic
crystal, and the same at the temperature at which it obeys the virial theorem), draw samples
from a fresh ``cpu``-preset flow (the identity, so from the base itself) and print the
variance of the work beta Phi = beta U + ln q, the ESS on the exact energy, and the KL
divergence KL(q || p) = <beta Phi> + ln Z in nats, with ln Z from the MBAR value in
``freeflow/data/results/baseline.jsonl`` (where it has the system).

    python bench/base_overlap.py --systems lj_32 mw_cubic_8 mw_cubic_64 mw_hex_64 --samples 20000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import freeflow
from freeflow.flows.bases import effective_temperature_factor
from freeflow.flows.config import BASES
from freeflow.rundir import read_baseline
from freeflow.training.config import presets


def kl_divergence(work, beta_f_lfep: float, beta_f_exact: float | None, num_particles: int):
    """``<beta Phi> + ln Z`` in nats. LFEP's own ``ln Z`` (``ln mean exp(-beta Phi)``) and
    value differ from the exact ones by the same amount, which is the correction."""
    if beta_f_exact is None:
        return None
    log_z_lfep = float(np.log(np.mean(np.exp(-(work - work.min())))) - work.min())
    return float(np.mean(work) + log_z_lfep + num_particles * (beta_f_lfep - beta_f_exact))


def run(name: str, base: str, samples: int, seed: int, beta_f_exact: float | None) -> dict:
    system = freeflow.load_system(name)
    model_config, _ = presets("cpu")
    model = freeflow.FlowModel(system, dataclasses.replace(model_config,
                                                           **BASES[base]))
    params = model.init(jax.random.PRNGKey(seed))
    start = time.perf_counter()
    result = freeflow.lfep_from_model(model, params, system, jax.random.PRNGKey(seed + 1),
                                      num_samples=samples, progress=False, bootstrap=0)
    work = np.asarray(result.work, np.float64)
    finite = np.isfinite(work)
    return {"bench": "base_overlap", "system": name, "base": base, "samples": samples,
            "infinite_works": int(np.sum(~finite)), "work_variance": float(np.var(work[finite])),
            "kl_nats": kl_divergence(work, result.value, beta_f_exact, system.num_particles),
            "ess": result.ess, "beta_f_per_particle": result.value,
            "wall_s": time.perf_counter() - start,
            "temperature_factor": (effective_temperature_factor(system)
                                   if base == "effective_harmonic" else None)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_32", "mw_cubic_8", "mw_cubic_64",
                                                         "mw_hex_64"])
    parser.add_argument("--bases", nargs="+",
                        default=["paper", "einstein", "harmonic", "effective_harmonic"],
                        choices=list(BASES))
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", type=Path, default=Path("freeflow/data/results/baseline.jsonl"))
    args = parser.parse_args(argv)
    exact = read_baseline(args.baseline) if args.baseline.is_file() else {}
    rows = []
    for name in args.systems:
        beta_f_exact = exact[name].value if name in exact else None
        for base in args.bases:
            rows.append(run(name, base, args.samples, args.seed, beta_f_exact))
            print(json.dumps(rows[-1]), flush=True)
    print("\nsystem        base                  var(beta Phi)      ESS     KL (nats)",
          file=sys.stderr)
    for r in rows:
        kl = "-" if r["kl_nats"] is None else f"{r['kl_nats']:.3g}"
        print(f"{r['system']:<14}{r['base']:<20}{r['work_variance']:>14.3g}"
              f"{100 * r['ess']:>12.4f}%{kl:>12}", file=sys.stderr)


if __name__ == "__main__":
    main()
