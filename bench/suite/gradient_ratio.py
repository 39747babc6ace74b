"""Energy + forces against energy alone, per system and neighbour plan.

A batch of harmonic-crystal configurations (64 by default) goes through ``jax.vmap`` of the
exact energy (``--softened``: the training energy) and of its ``value_and_grad``, both jitted;
the median of 10 calls each (``--repeats``). The gradient is timed twice, by the default
analytic route and by plain autodiff of the same energy (``energy_fn(gradient="autodiff")``),
interleaved call by call. One JSON line per system and plan on stdout (and appended to
``--out``): milliseconds per configuration, the ratio energy + forces / energy, the same by
autodiff, and the analytic route's speed-up. A plan that does not apply to a box (cells in a
box under three cutoffs) is skipped. Absolute times depend on what else runs on the machine;
compare the ratios of one run.

    python bench/suite/gradient_ratio.py                          # lj_32 lj_256 mw_cubic_64
    python bench/suite/gradient_ratio.py --systems lj_32 lj_108 lj_256 lj_500 mw_cubic_8 \\
        mw_cubic_64 mw_hex_64 mw_cubic_216 mw_cubic_512 --plans dense sites cells \\
        --out bench/results/gradient_ratio.jsonl
    python bench/suite/gradient_ratio.py --softened --systems lj_32 lj_256 mw_cubic_8 \\
        mw_cubic_64 mw_cubic_216 --plans dense cells --out bench/results/gradient_ratio.jsonl

Not part of ``run_all``. docs/benchmarks.md, "Energy + forces against energy alone", has the
stored runs (``bench/results/gradient_ratio*.jsonl``).
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
from freeflow.physics.system_files import load_system


def median_times(fns, arg, repeats: int) -> list[float]:
    """Median seconds per call of each function, called in turn (so load hits all alike)."""
    for fn in fns:
        jax.block_until_ready(fn(arg))  # compile
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            jax.block_until_ready(fn(arg))
            record.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def harmonic_configurations(system, batch: int):
    """``[batch, N, 3]`` harmonic-crystal samples with the fixed particle at the origin."""
    base = base_distribution(system, ModelConfig(base="harmonic"))
    mobile = base.sample(jax.random.PRNGKey(0), batch)
    return jnp.concatenate([jnp.zeros((batch, 1, 3), mobile.dtype), mobile], axis=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_32", "lj_256", "mw_cubic_64"])
    parser.add_argument("--plans", nargs="+", default=["dense", "sites"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--softened", action="store_true",
                        help="time the training energy (the site list is then skipped)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    for name in args.systems:
        system = load_system(name)
        x = harmonic_configurations(system, args.batch)
        for plan in args.plans:
            if plan == "sites" and args.softened:
                continue
            kwargs = dict(max_displacement=0.5 * system.nearest_neighbour_distance,
                          softened=args.softened, neighbors=plan, allow_sites=True)
            try:
                energy, autodiff = (system.potential.energy_fn(
                    system.box, system.lattice, gradient=route, **kwargs)
                    for route in ("analytic", "autodiff"))
            except ValueError as error:  # e.g. a cell list in a box under three cutoffs
                print(f"{name} {plan}: skipped ({error})", file=sys.stderr)
                continue
            value, both, both_autodiff = median_times(
                [jax.jit(jax.vmap(energy)), jax.jit(jax.vmap(jax.value_and_grad(energy))),
                 jax.jit(jax.vmap(jax.value_and_grad(autodiff)))], x, args.repeats)
            row = {"system": name, "plan": plan, "softened": args.softened,
                   "batch": args.batch, "energy_ms": 1e3 * value / args.batch,
                   "energy_and_gradient_ms": 1e3 * both / args.batch,
                   "energy_and_autodiff_gradient_ms": 1e3 * both_autodiff / args.batch,
                   "ratio": both / value, "autodiff_ratio": both_autodiff / value,
                   "analytic_speedup": both_autodiff / both, "machine": platform.machine()}
            print(json.dumps(row), flush=True)
            print(f"{name} {plan}: energy {row['energy_ms']:.3f} ms, + gradient "
                  f"{row['energy_and_gradient_ms']:.3f} ms (ratio {row['ratio']:.2f}); "
                  f"by autodiff {row['energy_and_autodiff_gradient_ms']:.3f} ms (ratio "
                  f"{row['autodiff_ratio']:.2f})", file=sys.stderr)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
