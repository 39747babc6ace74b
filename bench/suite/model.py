"""Flow-model cost on this machine: parameters, compile time, sampling and training-step speed.

For each (preset, system): parameter count; compile time of sample+log_prob and of a training
step; sample+log_prob throughput (configurations/s); and the wall time of one reverse-KL
training step (``beta U_softened(x) + ln q(x)`` averaged over the batch, Adam), all at batch 128
in float32. Prints a readable table and one JSON line per row.

    python bench/suite/model.py           # cpu and paper presets on lj_32, lj_256, mw_cubic_64
    python bench/suite/model.py --quick   # fewer repeats
    python bench/suite/model.py --presets cpu --systems lj_32 --batch 64

Heavy rows (the paper preset on hundreds of particles on a CPU) are timed with fewer repeats:
a step is repeated until ``--budget`` seconds are spent (at least once after compiling). When
a training step at the requested batch runs out of memory, the batch is halved until it fits
and the row reports the ``train_batch`` used.

``bash bench/suite/run_all`` runs it twice with ``--quick``, for the ``cpu`` preset on five
systems and the ``paper`` preset on two, into ``bench/results/suite/model_cpu.jsonl`` and
``model_paper.jsonl``; docs/benchmarks.md, "Flow model", has the last run's table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from freeflow.flows.config import ModelConfig, model_preset  # noqa: E402
from freeflow.flows.model import FlowModel, num_parameters  # noqa: E402
from freeflow.physics.system_files import load_system  # noqa: E402

PRESETS = ["cpu", "paper"]
SYSTEMS = ["lj_32", "lj_256", "mw_cubic_64"]


def _timed(fn, repeats: int, budget_s: float):
    """Median wall time of ``fn()`` over up to ``repeats`` calls, stopping after ``budget_s``."""
    times = []
    spent = 0.0
    while len(times) < repeats and (not times or spent < budget_s):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return float(np.median(times)), len(times)


def measure(preset: str, name: str, batch: int, repeats: int, budget_s: float,
            config: ModelConfig | None = None) -> dict:
    system = load_system(name)
    config = config or model_preset(preset)
    model = FlowModel(system, config)
    params = model.init(jax.random.PRNGKey(0))
    energy = system.energy_fn(softened=True)
    beta = system.beta
    optimizer = optax.adam(1e-4)
    opt_state = optimizer.init(params)

    sample = jax.jit(lambda p, k: model.sample_and_log_prob(p, k, batch))

    def make_step(train_batch):
        def loss(p, key):
            x, log_q = model.sample_and_log_prob(p, key, train_batch)
            return jnp.mean(beta * energy(x) + log_q)

        @jax.jit
        def step(p, s, key):
            value, grads = jax.value_and_grad(loss)(p, key)
            updates, s = optimizer.update(grads, s, p)
            return optax.apply_updates(p, updates), s, value

        return step

    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    jax.block_until_ready(sample(params, key))
    sample_compile = time.perf_counter() - start
    sample_s, sample_repeats = _timed(lambda: sample(params, key), repeats, budget_s)

    # Backpropagation keeps every layer's activations; when batch 128 does not fit in memory
    # (the paper preset on hundreds of particles), halve the training batch until it does.
    train_batch = batch
    while True:
        step = make_step(train_batch)
        try:
            start = time.perf_counter()
            jax.block_until_ready(step(params, opt_state, key))
            break
        except jax.errors.JaxRuntimeError as error:
            if "RESOURCE_EXHAUSTED" not in str(error) or train_batch == 1:
                raise
            print(f"# {preset} {name}: training step out of memory at batch {train_batch}",
                  flush=True)
            train_batch //= 2
    step_compile = time.perf_counter() - start
    step_s, step_repeats = _timed(lambda: step(params, opt_state, key), repeats, budget_s)
    return {"bench": "model", "preset": preset, "system": name,
            "num_particles": system.num_particles, "batch": batch,
            "num_parameters": num_parameters(params),
            "compile_sample_s": sample_compile, "compile_step_s": step_compile,
            "sample_configs_per_s": batch / sample_s, "sample_batch_s": sample_s,
            "train_step_s": step_s, "train_batch": train_batch, "sample_repeats": sample_repeats,
            "step_repeats": step_repeats, "config": config.__dict__}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--systems", nargs="+", default=SYSTEMS)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timing per measurement after the first repeat")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 5
    budget = args.budget if args.budget is not None else (5.0 if args.quick else 20.0)

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} on {jax.default_backend()}, float32, batch {args.batch}",
          flush=True)
    rows = []
    for preset in args.presets:
        for name in args.systems:
            row = measure(preset, name, args.batch, repeats, budget)
            rows.append(row)
            print(json.dumps(row), flush=True)

    header = (f"{'preset':>6} {'system':>12} {'N':>4} {'params':>9} {'compile s':>10} "
              f"{'sample cfg/s':>13} {'train step s':>13} {'train batch':>11} {'reps':>5}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['preset']:>6} {r['system']:>12} {r['num_particles']:>4} "
              f"{r['num_parameters']:>9,d} "
              f"{r['compile_sample_s'] + r['compile_step_s']:>10.1f} "
              f"{r['sample_configs_per_s']:>13.1f} {r['train_step_s']:>13.3f} {r['train_batch']:>11d} "
              f"{r['step_repeats']:>5d}")


if __name__ == "__main__":
    main()
