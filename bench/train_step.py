"""Training-step time with and without donating the state's buffers, side by side.

``freeflow.training.trainer.make_step`` donates the training state (parameters and Adam moments), so XLA
may write the updated state in place. This times the same jitted step both ways, alternating
blocks of steps so that both see the same machine load, and prints one JSON line per system
and preset plus a summary with the median time per step and the ratio.

    python bench/train_step.py --systems lj_32 mw_cubic_64 --presets cpu --blocks 5 --steps 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import freeflow
from freeflow.training.config import presets
from freeflow.training.trainer import TrainState, make_step, optimizer


def measure(name: str, preset: str, blocks: int, steps: int) -> dict:
    system = freeflow.load_system(name)
    model_config, training = presets(preset)
    model = freeflow.FlowModel(system, model_config)
    optim = optimizer(training)
    key = jax.random.PRNGKey(0)
    params = model.init(key)
    fns = {True: make_step(model, system, training, optim, donate=True),
           False: make_step(model, system, training, optim, donate=False)}
    states, times = {}, {True: [], False: []}
    for donate, fn in fns.items():
        # Each variant gets its own copy of the state (donation invalidates what it is given).
        state = TrainState(jax.tree.map(jnp.array, params), optim.init(params),
                           jnp.asarray(0, jnp.int32))
        state, metrics = fn(state, key)  # compile
        jax.block_until_ready(metrics)
        states[donate] = state
    for _ in range(blocks):
        for donate, fn in fns.items():
            state = states[donate]
            start = time.perf_counter()
            for _ in range(steps):
                state, metrics = fn(state, key)
            jax.block_until_ready((state, metrics))
            times[donate].append((time.perf_counter() - start) / steps)
            states[donate] = state
    donated, copied = float(np.median(times[True])), float(np.median(times[False]))
    return {"bench": "train_step", "system": name, "preset": preset,
            "batch_size": training.batch_size, "blocks": blocks, "steps_per_block": steps,
            "donated_step_s": donated, "undonated_step_s": copied,
            "speedup": copied / donated, "devices": len(jax.devices())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_32", "mw_cubic_64"])
    parser.add_argument("--presets", nargs="+", default=["cpu"], choices=["cpu", "paper"])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    args = parser.parse_args(argv)
    rows = []
    for preset in args.presets:
        for name in args.systems:
            rows.append(measure(name, preset, args.blocks, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    print("\nsystem        preset  batch  donated s/step  not donated  ratio", file=sys.stderr)
    for r in rows:
        print(f"{r['system']:<14}{r['preset']:<8}{r['batch_size']:>5}{r['donated_step_s']:>16.4f}"
              f"{r['undonated_step_s']:>13.4f}{r['speedup']:>7.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
