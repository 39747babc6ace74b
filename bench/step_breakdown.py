"""Where a training step's time goes: the flow against the energy, forward against backward.

For each system, builds the ``cpu`` preset's flow (fresh parameters; the cost does not depend
on their values) and times, at the training batch size, on whole jitted calls (median of
``--repeats`` after a warm-up call):

* ``flow_sample``: ``sample_and_log_prob`` (base draw and forward pass);
* ``flow_gradient``: the gradient of a loss that uses the samples and ``ln q`` but no energy;
* ``energy``, ``energy_gradient``: the softened training energy and its gradient on those
  samples;
* ``step_gradient``: the gradient of the reparameterized reverse-KL loss (flow and energy);
* ``inverse``: one ``log_prob`` pass, the path gradient's extra cost before its backward.

    python bench/step_breakdown.py --systems lj_32 mw_cubic_64
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


def median_seconds(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def breakdown(name: str, repeats: int) -> dict:
    system = freeflow.load_system(name)
    model_config, training = presets("cpu")
    model = freeflow.FlowModel(system, model_config)
    params = model.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    batch = training.batch_size
    energy = system.energy_fn(softened=True)
    beta = system.beta

    def sample(p, k):
        return model.sample_and_log_prob(p, k, batch)

    def flow_only(p, k):  # the samples enter the loss, so their backward runs too
        x, log_q = sample(p, k)
        return jnp.mean(log_q) + jnp.mean(jnp.sum(jnp.sin(x), axis=(-2, -1)))

    def loss(p, k):
        x, log_q = sample(p, k)
        return jnp.mean(beta * energy(x) + log_q)

    x, _ = jax.jit(sample)(params, key)
    times = {
        "flow_sample": median_seconds(jax.jit(sample), params, key, repeats=repeats),
        "flow_gradient": median_seconds(jax.jit(jax.grad(flow_only)), params, key,
                                        repeats=repeats),
        "energy": median_seconds(jax.jit(energy), x, repeats=repeats),
        "energy_gradient": median_seconds(jax.jit(jax.grad(lambda y: jnp.sum(energy(y)))), x,
                                          repeats=repeats),
        "step_gradient": median_seconds(jax.jit(jax.grad(loss)), params, key, repeats=repeats),
        "inverse": median_seconds(jax.jit(model.log_prob), params, x, repeats=repeats),
    }
    return {"bench": "step_breakdown", "system": name, "batch_size": batch,
            "num_layers": model_config.num_layers, "repeats": repeats,
            "devices": len(jax.devices()), **{f"{k}_s": v for k, v in times.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_32", "mw_cubic_64"])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    rows = []
    for name in args.systems:
        rows.append(breakdown(name, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    parts = ("flow_sample", "flow_gradient", "energy", "energy_gradient", "step_gradient",
             "inverse")
    print("\nsystem       " + "".join(f"{p:>17}" for p in parts) + "   (ms)", file=sys.stderr)
    for r in rows:
        print(f"{r['system']:<13}" + "".join(f"{1e3 * r[p + '_s']:>17.1f}" for p in parts),
              file=sys.stderr)


if __name__ == "__main__":
    main()
