"""Lennard-Jones all-pairs forces: other ways of writing the row sums, timed against the default.

    python bench/gradient_layouts.py --systems lj_256 lj_32 \
        --out bench/results/gradient_layouts.jsonl

The all-pairs (``dense``) plan's energy + forces cost 3.6-5.3x its energy alone
(``bench/gradient_ratio.py``), above the 3x asked for. The energy is one elementwise pass
written to memory and reduced by XLA's vectorised reduction; the forces need four sums per
row (energy and three force components), which the default writes as one variadic reduction
(``freeflow.physics.potentials.base.entry_sums``), and XLA's CPU backend emits a variadic
reduction as a scalar loop. This script writes the same sums in other ways and times each
against the energy alone, in alternating calls in one process:

* ``default``: ``jax.value_and_grad`` of ``energy_fn`` (the plan's analytic pull-back; for
  one-shift boxes, since 4 December 2026, ``slopes_matmul_rows`` in the package);
* ``default_size1_vmap``: the same with one configuration passed as a batch of one (the
  size-1 ``jax.vmap`` that ``over_configurations`` puts around a single configuration on the
  other plans);
* ``separate``: three ordinary ``jnp.sum`` calls, one per force component;
* ``stacked_leading`` / ``stacked_trailing``: the four per-entry arrays stacked on a leading
  or trailing axis and summed by one ordinary reduction;
* ``lanes``: the partner axis split into 8 lanes kept in the variadic reduction's output (so
  the loop could vectorise across them), the lanes summed afterwards;
* ``slopes_matmul``: the entries' slopes materialised once, then the forces as
  ``G x - x rowsum(G) + H shifts`` minus the minimum-image corrections (matrix products);
* ``slopes_matmul_rows``: ``slopes_matmul`` over blocks of 32 rows in turn (``jax.lax.map``
  inside one configuration, so still vectorised over the batch), to keep the entries of a
  block in the caches; ``separate_rows``: the same blocks with the slopes and displacements
  materialised and the three force components as plain sums;
* ``*_looped``: the same function applied to one configuration at a time (``jax.lax.map``)
  instead of to the whole batch at once (``jax.vmap``), so that one configuration's entries
  stay in the caches between the passes over them; ``energy_looped`` is the energy alone,
  looped the same way, and these variants' ratios are to the faster of the two energies.

Every variant is first checked against the default (forces within 1e-5 of the largest force,
energies within 1e-5 relative); a variant that disagrees is reported and not timed. Softened
(training) energies are left out: they differ only in the pair function. One JSON line per
system and variant: ms per configuration and the ratio to the energy alone.
"""

from __future__ import annotations

import argparse
import json
import platform

import jax
import jax.numpy as jnp
from gradient_ratio import harmonic_configurations, median_times  # bench/, beside this file

from freeflow.physics.potentials.base import floored, value_and_slope
from freeflow.physics.space import minimum_image
from freeflow.physics.system import load_system

LANES = 8
#: Rows per block of ``slopes_matmul_rows``.
ROW_BLOCK = 32
#: Variants also timed one configuration at a time (``jax.lax.map`` over the batch).
LOOPED = ("default", "slopes_matmul")


def _variants(system):
    """``{name: positions [N, 3] -> (U, dU/dx [N, 3])}`` for the system's dense plan."""
    potential = system.potential
    kwargs = dict(max_displacement=0.5 * system.nearest_neighbour_distance,
                  neighbors="dense", allow_sites=False)
    energy = potential.energy_fn(system.box, system.lattice, **kwargs)
    plan = potential.neighbor_plan(system.box, system.lattice, **kwargs)
    box = jnp.asarray(plan.box, jnp.float32)
    shifts = jnp.asarray(plan.shifts, jnp.float32)
    num_shifts = shifts.shape[0]
    pair = potential.pair_of_squared_distance(False)
    cutoff2 = potential.cutoff**2

    def entry_energy(raw, mask):
        inside = mask & (floored(raw, 0.0) < cutoff2)
        return lambda r2: jnp.where(inside, pair(jnp.where(inside, floored(r2, 0.0), cutoff2)),
                                    0.0)

    def entries(x):
        """Displacements ``[N, N, S]`` each, the mask, and u and du/dr^2 of every entry."""
        n = x.shape[0]
        d = tuple(minimum_image(x[None, :, a] - x[:, None, a], box[a])[:, :, None]
                  + shifts[:, a] for a in range(3))
        mask = ~(jnp.eye(n, dtype=bool)[:, :, None] & (jnp.arange(num_shifts) == 0))
        raw = jnp.where(mask, d[0] * d[0] + d[1] * d[1] + d[2] * d[2], 1.0)
        u, slope = value_and_slope(entry_energy(raw, mask), raw)
        return d, u, slope

    def separate(x):
        d, u, slope = entries(x)
        return 0.5 * jnp.sum(u), -2.0 * jnp.stack(
            [jnp.sum(slope * d[a], axis=(1, 2)) for a in range(3)], -1)

    def stacked(axis):
        def fn(x):
            d, u, slope = entries(x)
            q = jnp.stack([u, slope * d[0], slope * d[1], slope * d[2]], axis=axis)
            sums = jnp.sum(q, axis=(2, 3)) if axis == 0 else jnp.sum(q, axis=(1, 2)).T
            return 0.5 * jnp.sum(sums[0]), -2.0 * sums[1:].T
        return fn

    def lanes(x):
        n = x.shape[0]
        pad = (-n) % LANES
        rows = (n + pad) // LANES
        padded = jnp.concatenate([x, jnp.zeros((pad, 3), x.dtype)], 0)
        partner = jnp.arange(n + pad).reshape(rows, LANES)
        d = tuple(minimum_image(padded[:, a].reshape(rows, LANES)[None, :, None, :]
                                - x[:, a][:, None, None, None], box[a])
                  + shifts[:, a][None, None, :, None] for a in range(3))  # [N, J, S, L]
        self_copy = ((jnp.arange(n)[:, None, None, None] == partner[None, :, None, :])
                     & (jnp.arange(num_shifts) == 0)[None, None, :, None])
        mask = (partner < n)[None, :, None, :] & ~self_copy
        raw = jnp.where(mask, d[0] * d[0] + d[1] * d[1] + d[2] * d[2], 1.0)
        u, slope = value_and_slope(entry_energy(raw, mask), raw)
        zero = jnp.zeros((), u.dtype)
        sums = jax.lax.reduce((u, slope * d[0], slope * d[1], slope * d[2]), (zero,) * 4,
                              lambda a, b: tuple(p + q for p, q in zip(a, b)), (1, 2))
        sums = [s.sum(-1) for s in sums]
        return 0.5 * jnp.sum(sums[0]), -2.0 * jnp.stack(sums[1:], -1)

    def slopes_matmul(x):
        diff = tuple(x[None, :, a] - x[:, None, a] for a in range(3))
        image = tuple(jnp.round(diff[a] / box[a]) for a in range(3))
        d = tuple((diff[a] - box[a] * image[a])[:, :, None] + shifts[:, a] for a in range(3))
        mask = ~(jnp.eye(x.shape[0], dtype=bool)[:, :, None] & (jnp.arange(num_shifts) == 0))
        raw = jnp.where(mask, d[0] * d[0] + d[1] * d[1] + d[2] * d[2], 1.0)
        u, slope = value_and_slope(entry_energy(raw, mask), raw)
        u, slope = jax.lax.optimization_barrier((jnp.sum(u), slope))
        g = jnp.sum(slope, axis=2)  # [N, N]
        h = jnp.sum(slope, axis=1)  # [N, S]
        pulls = g @ x - x * jnp.sum(g, axis=1)[:, None] + h @ shifts
        images = jnp.stack([jnp.sum(g * image[a], axis=1) for a in range(3)], -1) * box
        return 0.5 * u, -2.0 * (pulls - images)

    def row_block(x, start, rows):
        """Rows ``start..start+rows``: their positions, minimum images, displacements
        ``[R, N, S]`` each, and the entries' u and du/dr^2."""
        n = x.shape[0]
        mine = jax.lax.dynamic_slice_in_dim(x, start, rows)
        diff = tuple(x[None, :, a] - mine[:, None, a] for a in range(3))  # [R, N]
        image = tuple(jnp.round(diff[a] / box[a]) for a in range(3))
        d = tuple((diff[a] - box[a] * image[a])[:, :, None] + shifts[:, a] for a in range(3))
        self_copy = ((start + jnp.arange(rows))[:, None] == jnp.arange(n))[:, :, None]
        mask = ~(self_copy & (jnp.arange(num_shifts) == 0))
        raw = jnp.where(mask, d[0] * d[0] + d[1] * d[1] + d[2] * d[2], 1.0)
        u, slope = value_and_slope(entry_energy(raw, mask), raw)
        return mine, image, d, u, slope

    def in_row_blocks(block_pulls):
        """``block_pulls(x, start, rows) -> (u, pulls [R, 3])`` over blocks of ROW_BLOCK rows."""
        def fn(x):
            n = x.shape[0]
            rows = ROW_BLOCK if n % ROW_BLOCK == 0 else n
            u, pulls = jax.lax.map(lambda start: block_pulls(x, start, rows),
                                   jnp.arange(0, n, rows))
            return 0.5 * jnp.sum(u), -2.0 * pulls.reshape(n, 3)
        return fn

    def separate_block(x, start, rows):
        _, _, d, u, slope = row_block(x, start, rows)
        u, slope, d = jax.lax.optimization_barrier((jnp.sum(u), slope, d))
        return u, jnp.stack([jnp.sum(slope * d[a], axis=(1, 2)) for a in range(3)], -1)

    def slopes_matmul_block(x, start, rows):
        mine, image, _, u, slope = row_block(x, start, rows)
        u, slope = jax.lax.optimization_barrier((jnp.sum(u), slope))
        g = jnp.sum(slope, axis=2)  # [R, N]
        h = jnp.sum(slope, axis=1)  # [R, S]
        pulls = g @ x - mine * jnp.sum(g, axis=1)[:, None] + h @ shifts
        images = jnp.stack([jnp.sum(g * image[a], axis=1) for a in range(3)], -1) * box
        return u, pulls - images

    return energy, {"default": jax.value_and_grad(energy),
                    "default_size1_vmap": jax.value_and_grad(lambda y: energy(y[None])[0]),
                    "separate": separate,
                    "stacked_leading": stacked(0), "stacked_trailing": stacked(-1),
                    "lanes": lanes, "slopes_matmul": slopes_matmul,
                    "slopes_matmul_rows": in_row_blocks(slopes_matmul_block),
                    "separate_rows": in_row_blocks(separate_block)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["lj_256", "lj_32"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    for name in args.systems:
        system = load_system(name)
        x = harmonic_configurations(system, args.batch)
        energy, variants = _variants(system)
        fns = {"energy": jax.jit(jax.vmap(energy))}
        fns.update({key: jax.jit(jax.vmap(fn)) for key, fn in variants.items()})
        looped = {"energy": energy} | {key: variants[key] for key in LOOPED}
        fns.update({f"{key}_looped": jax.jit(lambda x, fn=fn: jax.lax.map(fn, x))
                    for key, fn in looped.items()})
        variants.update({f"{key}_looped": None for key in LOOPED})
        u_ref, g_ref = fns["default"](x)
        scale = float(jnp.max(jnp.abs(g_ref)))
        agree = {}
        for key in variants:
            u, g = fns[key](x)
            agree[key] = bool(float(jnp.max(jnp.abs(g - g_ref))) <= 1e-5 * scale
                              and float(jnp.max(jnp.abs(u - u_ref))) <= 1e-5 * float(
                                  jnp.max(jnp.abs(u_ref))))
        timed = ["energy", "energy_looped"] + [key for key in variants if agree[key]]
        seconds = dict(zip(timed, median_times([fns[key] for key in timed], x, args.repeats)))
        for key in variants:
            energy_s = seconds["energy"]
            if key.endswith("_looped"):
                energy_s = min(energy_s, seconds["energy_looped"])
            row = {"bench": "gradient_layouts", "system": name, "variant": key,
                   "agrees_with_default": agree[key], "batch": args.batch,
                   "energy_ms": 1e3 * energy_s / args.batch,
                   "energy_looped_ms": 1e3 * seconds["energy_looped"] / args.batch,
                   "machine": f"{platform.machine()}, {jax.devices()[0].platform}"}
            if agree[key]:
                both_s = seconds[key]
                row.update(energy_and_forces_ms=1e3 * both_s / args.batch,
                           ratio=both_s / energy_s)
            print(f"{name:8s} {key:18s} " + (f"{row['energy_and_forces_ms']:.4f} ms "
                  f"({row['ratio']:.2f}x the energy's {row['energy_ms']:.4f})"
                  if agree[key] else "disagrees with the default; not timed"), flush=True)
            if args.out:
                with open(args.out, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
