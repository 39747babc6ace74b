"""What one SMC evaluation costs when the start density is a flow rather than its base.

    python bench/smc_start_cost.py --systems mw_cubic_216 lj_256 \
        --out bench/results/smc_start_cost.jsonl

Every HMC leapfrog step of ``freeflow.smc_free_energy`` evaluates the tempered density
``(1 - t) ln q + t ln p`` and its gradient at every particle: the exact energy with its forces,
and the start's ``ln q`` with its gradient. From the harmonic base ``ln q`` is a quadratic
form; from a flow it is the flow's inverse pass and its backward pass through the
transformer conditioners. This script times, per configuration, jitted ``vmap``s of

* ``energy``: ``value_and_grad`` of ``beta U`` (the exact energy SMC uses, its default plan);
* ``base``: ``value_and_grad`` of the harmonic base's ``ln q`` on labelled configurations;
* ``flow``: ``value_and_grad`` of a ``cpu``-preset flow's ``ln q`` (``mobile_log_prob``), a
  fresh one: training changes the parameters' values, not the work of evaluating them;

called in alternating rounds, medians of ``--repeats`` calls at batch ``--batch``. One JSON line
per system: the three times and ``flow_over_base``, the cost of one SMC evaluation from the
flow (energy + flow) over one from the base (energy + base). A flow start pays off only if it
cuts the evaluations a run needs (the temperatures, through the start's overlap with the
target) by more than that factor.
"""

from __future__ import annotations

import argparse
import json
import platform

import jax
import jax.numpy as jnp
import numpy as np
from gradient_ratio import median_times  # bench/, beside this file

from freeflow.flows.bases import base_distribution
from freeflow.flows.config import ModelConfig, model_preset
from freeflow.flows.model import FlowModel
from freeflow.physics.system import load_system


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["mw_cubic_216", "lj_256"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    for name in args.systems:
        system = load_system(name)
        base = base_distribution(system, ModelConfig(base="harmonic"))
        model = FlowModel(system, model_preset("cpu"))
        params = model.init(jax.random.PRNGKey(0))
        # Labelled configurations near the sites (particle i by site i), as SMC's particles are.
        sites = jnp.asarray(base.mobile_sites, jnp.float32)
        noise = jax.random.normal(jax.random.PRNGKey(1), (args.batch,) + sites.shape)
        mobile = sites + 0.02 * system.nearest_neighbour_distance * noise  # [B, N - 1, 3]
        # The base's sites are relative to the fixed particle, which sits at the origin.
        full = jnp.concatenate([jnp.zeros((args.batch, 1, 3)), mobile], axis=1)
        energy = system.energy_fn(strays="nan")
        beta = float(system.beta)
        fns = {
            "energy": (jax.jit(jax.vmap(jax.value_and_grad(lambda x: -beta * energy(x)))), full),
            "base": (jax.jit(jax.vmap(jax.value_and_grad(base.labelled_log_prob))), mobile),
            "flow": (jax.jit(jax.vmap(jax.value_and_grad(
                lambda y: model.mobile_log_prob(params, y)))), mobile),
        }
        for fn, arg in fns.values():
            value, _ = fn(arg)
            if not np.all(np.isfinite(np.asarray(value))):
                raise SystemExit(f"{name}: a non-finite log density on base samples")
        seconds = median_times([lambda _, fn=fn, arg=arg: fn(arg) for fn, arg in fns.values()],
                               None, args.repeats)
        ms = {key: 1e3 * s / args.batch for key, s in zip(fns, seconds)}
        row = {"bench": "smc_start_cost", "system": name, "batch": args.batch,
               "energy_ms": ms["energy"], "base_ms": ms["base"], "flow_ms": ms["flow"],
               "flow_over_base": (ms["energy"] + ms["flow"]) / (ms["energy"] + ms["base"]),
               "machine": f"{platform.machine()}, {jax.devices()[0].platform}"}
        print(f"{name}: per configuration, energy + forces {ms['energy']:.3f} ms, base ln q + "
              f"gradient {ms['base']:.3f} ms, flow ln q + gradient {ms['flow']:.2f} ms; one SMC "
              f"evaluation from the flow costs {row['flow_over_base']:.0f}x one from the base",
              flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
