"""HMC of a crystal with unit mass in the positions against HMC in the harmonic crystal's
coordinates (``freeflow.sampling.hmc.Preconditioner``): the energy's integrated
autocorrelation time and the wall time per independent energy sample.

For each system, ``--chains`` chains at the system's temperature: first with unit mass and
``--unit-mass-steps`` leapfrog steps (the MBAR route's chains before the change), then in the
harmonic crystal's coordinates with each of ``--steps`` leapfrog steps, and with a quarter of
the harmonic period (``HMCConfig.trajectory``). Every run has ``--warmup`` transitions of
warm-up and ``--samples`` saved samples per chain, one per transition; each is compiled by a
short run first, so that its wall time is sampling alone. One JSON line per run on stdout
(and appended to ``--out``): ``tau`` in transitions, milliseconds per chain-transition, and
milliseconds per independent energy sample (their product), the quantity the MBAR route's
error per unit of wall time follows. Absolute times depend on what else runs; compare one
run's lines.

    python bench/suite/hmc_coordinates.py --systems mw_cubic_216 \\
        --out bench/results/hmc_coordinates.jsonl

Not part of ``run_all``. docs/sweep.md, "The chains' coordinates", has the stored run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import jax
import numpy as np

from freeflow.physics.system_files import load_system
from freeflow.sampling.hmc import QUARTER_PERIOD, HMCConfig, sample_system
from freeflow.workflows.frame import harmonic_preconditioner


def timed(system, config: HMCConfig, preconditioner) -> tuple:
    """``(SampleResult, seconds)`` of one run, compiled beforehand by a short one."""
    key = jax.random.PRNGKey(0)
    warm = HMCConfig(num_chains=config.num_chains, num_samples=2, num_warmup=2,
                     num_integration_steps=config.num_integration_steps,
                     trajectory=config.trajectory)
    sample_system(system, key, warm, preconditioner=preconditioner, keep_positions=False)
    start = time.perf_counter()
    result = sample_system(system, key, config, preconditioner=preconditioner,
                           keep_positions=False)
    return result, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["mw_cubic_216"])
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--unit-mass-steps", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 4, 3])
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    for name in args.systems:
        system = load_system(name)
        coordinates = harmonic_preconditioner(system)
        runs = [("unit mass", None, args.unit_mass_steps, None)]
        runs += [("harmonic", coordinates, steps, None) for steps in args.steps]
        runs += [("harmonic", coordinates, min(args.steps), QUARTER_PERIOD)]
        for label, preconditioner, steps, trajectory in runs:
            config = HMCConfig(num_chains=args.chains, num_samples=args.samples,
                               num_warmup=args.warmup, thin=1, num_integration_steps=steps,
                               trajectory=trajectory)
            result, seconds = timed(system, config, preconditioner)
            per_transition = seconds / (args.chains * (args.warmup + args.samples))
            row = {"system": name, "coordinates": label, "trajectory": trajectory,
                   "leapfrog_steps": result.num_integration_steps,
                   "step_size": result.step_size, "acceptance": result.acceptance,
                   "tau_transitions": result.tau,
                   "ms_per_chain_transition": 1e3 * per_transition,
                   "ms_per_independent_energy": 1e3 * per_transition * max(result.tau, 1.0),
                   "u_per_particle": float(np.mean(result.energies)) / system.num_particles,
                   "chains": args.chains, "samples": args.samples, "warmup": args.warmup,
                   "machine": f"{platform.machine()} {jax.device_count()} device(s)",
                   "command": "python bench/suite/hmc_coordinates.py " + " ".join(
                       argv if argv is not None else sys.argv[1:])}
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
