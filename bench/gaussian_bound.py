"""The best Gaussian base in reverse KL: how much of a crystal's KL no Gaussian can remove.

The harmonic crystal's displacements are ``d = eps C`` (``eps`` standard normal, ``C`` the
colouring matrix of ``freeflow.flows.bases.harmonic_base(system)``, particle 0 held at its site). This script
replaces ``C`` by ``T C`` with a full learnable ``[3P, 3P]`` matrix ``T`` (every Gaussian of the
displacements with zero mean), starts at ``T = I`` (the harmonic crystal at the system's
temperature) and minimises the reverse-KL loss ``E[beta U + ln q]`` with Adam on the exact
energy, the same objective a flow is trained on. The learning rate drops tenfold at 60% and
again at 80% of the steps: at a constant rate the jitter of the 9 P^2 entries of ``T`` keeps
the loss a few tenths of a nat above the optimum. ``ln q`` carries the same ``-ln P!`` and
``-ln V`` as the flow's base, so the final works are directly comparable with
``bench/base_overlap.py``: the script prints the variance of the work, the ESS and
KL(q || p) = <beta Phi> + ln Z in nats (``ln Z`` from the MBAR value in
``freeflow/data/results/baseline.jsonl``) for the start and for the optimised Gaussian. Where the
optimised Gaussian ends at the effective harmonic crystal's KL, the whole remaining KL is
non-Gaussian, and only the flow's coupling layers can remove it.

    python bench/gaussian_bound.py --systems lj_32 --steps 2000 --samples 20000 \\
        --out bench/results/gaussian_bound.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from base_overlap import kl_divergence

import freeflow
from freeflow.estimators.conventions import beta_f_from_flow_log_z
from freeflow.estimators.lfep import effective_sample_size, log_mean_exp
from freeflow.flows.bases import harmonic_base
from freeflow.rundir import read_baseline


def gaussian_works(system, batch_size: int):
    """``works(T, key) -> [batch_size]`` of the Gaussian ``d = eps T C`` (float32)."""
    base = harmonic_base(system)
    colour = jnp.asarray(base.colour, jnp.float32)
    lattice = jnp.asarray(system.lattice, jnp.float32)
    size = colour.shape[0]
    energy = system.energy_fn()
    # The base's normaliser (its colouring, the label permutations) and the flow's uniform
    # translation over the box; T's own determinant is added per call.
    constant = base.log_normalizer - float(np.sum(np.log(system.box)))

    def works(transform, key):
        eps = jax.random.normal(key, (batch_size, size))
        d = (eps @ transform @ colour).reshape(batch_size, -1, 3)
        x = jnp.concatenate([jnp.broadcast_to(lattice[:1], (batch_size, 1, 3)),
                             lattice[1:] + d], axis=1)
        log_q = -0.5 * jnp.sum(eps**2, axis=-1) - jnp.linalg.slogdet(transform)[1] + constant
        return system.beta * energy(x) + log_q

    return works, size


def summarise(system, works_fn, transform, key, samples: int, batch_size: int,
              beta_f_exact: float | None) -> dict:
    batch = jax.jit(works_fn)
    keys = jax.random.split(key, -(-samples // batch_size))
    work = np.concatenate([np.asarray(batch(transform, k), np.float64) for k in keys])[:samples]
    beta_f = beta_f_from_flow_log_z(system, log_mean_exp(-work))
    return {"mean_work": float(np.mean(work)), "work_variance": float(np.var(work)),
            "ess": effective_sample_size(-work), "beta_f_per_particle": beta_f,
            "kl_nats": kl_divergence(work, beta_f, beta_f_exact, system.num_particles)}


def run(name: str, steps: int, learning_rate: float, batch_size: int, samples: int, seed: int,
        beta_f_exact: float | None) -> dict:
    system = freeflow.load_system(name)
    works_fn, size = gaussian_works(system, batch_size)
    schedule = optax.piecewise_constant_schedule(
        learning_rate, {int(0.6 * steps): 0.1, int(0.8 * steps): 0.1})
    optimiser = optax.adam(schedule)

    @jax.jit
    def step(transform, state, key):
        loss, grad = jax.value_and_grad(lambda t: jnp.mean(works_fn(t, key)))(transform)
        updates, state = optimiser.update(grad, state)
        return optax.apply_updates(transform, updates), state, loss

    transform = jnp.eye(size, dtype=jnp.float32)
    key = jax.random.PRNGKey(seed)
    key, k_start = jax.random.split(key)
    start = summarise(system, works_fn, transform, k_start, samples, batch_size, beta_f_exact)
    state = optimiser.init(transform)
    losses = []
    began = time.perf_counter()
    for i in range(steps):
        key, k = jax.random.split(key)
        transform, state, loss = step(transform, state, k)
        losses.append(float(loss))
        if (i + 1) % max(steps // 10, 1) == 0:
            print(f"{name}: step {i + 1}/{steps}, mean loss of the last {steps // 10} "
                  f"{np.mean(losses[-(steps // 10):]):.3f}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - began
    key, k_end = jax.random.split(key)
    end = summarise(system, works_fn, transform, k_end, samples, batch_size, beta_f_exact)
    # How far the optimum moved from the harmonic crystal: the scale of T's spectrum.
    singular = np.linalg.svd(np.asarray(transform, np.float64), compute_uv=False)
    window = max(steps // 10, 1)
    return {"bench": "gaussian_bound", "system": name, "steps": steps,
            "learning_rate": learning_rate, "batch_size": batch_size, "samples": samples,
            "seed": seed, "start": start, "optimised": end,
            "loss_first_window": float(np.mean(losses[:window])),
            "loss_last_window": float(np.mean(losses[-window:])),
            "transform_singular_values": [float(singular.min()), float(np.median(singular)),
                                          float(singular.max())],
            "effective_temperature_factor": float(np.mean(singular**2)),
            "seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_32"])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", type=Path, default=Path("freeflow/data/results/baseline.jsonl"))
    parser.add_argument("--out", type=Path, help="append one JSON line per system here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.samples < 1:
        parser.error("--steps and --samples must be positive")
    exact = read_baseline(args.baseline) if args.baseline.is_file() else {}
    rows = []
    for name in args.systems:
        beta_f_exact = exact[name].value if name in exact else None
        row = run(name, args.steps, args.learning_rate, args.batch_size, args.samples,
                  args.seed, beta_f_exact)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    print("\nsystem        Gaussian         var(beta Phi)      ESS     KL (nats)", file=sys.stderr)
    for r in rows:
        for label in ("start", "optimised"):
            s = r[label]
            kl = "-" if s["kl_nats"] is None else f"{s['kl_nats']:.3g}"
            print(f"{r['system']:<14}{label:<14}{s['work_variance']:>16.3g}"
                  f"{100 * s['ess']:>12.4f}%{kl:>12}", file=sys.stderr)


if __name__ == "__main__":
    main()
