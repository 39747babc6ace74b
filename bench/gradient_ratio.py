"""Energy + gradient against energy alone, per system and neighbour plan (issue: fast forces).

    python bench/gradient_ratio.py --systems lj_32 lj_256 mw_cubic_64 --plans dense sites \
        --out bench/results/gradient_ratio.jsonl

A batch of harmonic-crystal configurations (64 by default) goes through ``jax.vmap`` of the
exact energy and of its ``value_and_grad``, both jitted; the median of 10 calls each. One JSON
line per system and plan: milliseconds per configuration and their ratio. The ratio is what
matters (a reverse-mode pair sum should cost 2-3x the energy); absolute times depend on what
else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.flows.bases import base_distribution
from freeflow.flows.config import ModelConfig
from freeflow.physics.system import load_system


def _median_time(fn, arg, repeats: int) -> float:
    jax.block_until_ready(fn(arg))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_32", "lj_256", "mw_cubic_64"])
    parser.add_argument("--plans", nargs="+", default=["dense", "sites"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    for name in args.systems:
        system = load_system(name)
        base = base_distribution(system, ModelConfig(base="harmonic"))
        mobile = base.sample(jax.random.PRNGKey(0), args.batch)
        x = jnp.concatenate([jnp.zeros((args.batch, 1, 3), mobile.dtype), mobile], axis=1)
        for plan in args.plans:
            energy = system.energy_fn(strays="nan", neighbors=plan)
            value = _median_time(jax.jit(jax.vmap(energy)), x, args.repeats)
            both = _median_time(jax.jit(jax.vmap(jax.value_and_grad(energy))), x,
                                args.repeats)
            row = {"system": name, "plan": plan, "batch": args.batch,
                   "energy_ms": 1e3 * value / args.batch,
                   "energy_and_gradient_ms": 1e3 * both / args.batch,
                   "ratio": both / value, "machine": platform.machine()}
            print(json.dumps(row), flush=True)
            print(f"{name} {plan}: energy {row['energy_ms']:.3f} ms, energy + gradient "
                  f"{row['energy_and_gradient_ms']:.3f} ms per configuration, ratio "
                  f"{row['ratio']:.2f}", file=sys.stderr)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
