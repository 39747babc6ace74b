"""Training step on one core and on all: how much of the CPU freeflow's and the reference's use.

The question it answers: at the same model and the same XLA flops (``versus_reference.py``),
is either training step leaving CPU cores idle, or XLA options on the table, that a faster
step could use? For each system it builds, with ``versus_reference.py``'s classes and model
size, freeflow's fully jitted reparameterized step and the reference's (deepmind/
flows_for_atomic_solids, from ``--reference``) one-jit step, each compiled once per XLA option
set. Then, in alternating rounds in one process, every (step, option set) runs ``--steps``
steps with the process's threads pinned to one core and then to all cores (Linux
``sched_setaffinity`` on every thread of the process, reapplied before each run, so threads
XLA starts later are pinned too). A plain XLA matrix product (float32, 1024 x 1024, the same
dot kernels the steps use) is timed the same way, as the machine's dot rate on one core and
on all.

    python bench/step_cores.py --reference /path/to/flows_for_atomic_solids \\
        --systems lj_32 mw_cubic_8 --rounds 5 --steps 3 --out bench/results/step_cores.jsonl

Reported per system (one JSON line, and a summary on stderr): the median seconds per step of
every (step, option set, cores); each step's core scaling, time on one core over time on all
(the core count for a step that uses every core fully, 1 for a step that uses one); the
reference's time over freeflow's, per option set and core count (above 1: freeflow faster);
XLA's flop count of each step (all devices together) and the rate it achieves, as a fraction
of the matrix product's rate on as many cores. Option sets (``--option-sets``, applied to
both steps alike): ``default`` (none), ``vector512`` (``xla_cpu_prefer_vector_width=512``),
``concurrency`` (``xla_cpu_enable_concurrency_optimized_scheduler``), ``no_ynn`` (dots by
Eigen instead of YNNPACK: ``xla_cpu_experimental_ynn_fusion_type=""``).

Model size: ``versus_reference.py``'s defaults (12 conditioners, 8 bins, embedding 64, one
transformer block of 2 heads, MLP width 256, 8 frequencies, batch 128), freeflow without layer
norm (``--layer-norm`` keeps the ``cpu`` preset's), as the reference's conditioners.

With ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` freeflow's step shards its batch
over the two host devices (data-parallel, as on several accelerators) while the reference's
runs on the first; the row's ``devices`` says how many there were. On one core, XLA's thread
pool (sized for all cores) shares that core, as under ``taskset``; the matrix product is
timed the same way. Exit status 2 with one line when ``--reference`` is not a checkout or the
platform cannot pin threads.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import versus_reference as vr  # noqa: E402

OPTION_SETS = {
    "default": {},
    "vector512": {"xla_cpu_prefer_vector_width": 512},
    "concurrency": {"xla_cpu_enable_concurrency_optimized_scheduler": True},
    "no_ynn": {"xla_cpu_experimental_ynn_fusion_type": ""},
}
MATMUL_SIZE = 1024


def pin_threads(cpus: set[int]) -> None:
    """Restrict every thread of this process to ``cpus`` (Linux: affinity is per thread)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # the thread ended between listing and pinning
            pass


class Compiled:
    """One training step compiled under one XLA option set, stepping its own state."""

    def __init__(self, variant, options: dict):
        self.variant = variant
        if isinstance(variant, vr.FreeflowStep):
            self.args = lambda: (variant.state, variant.key)
        else:
            self.args = lambda: (variant.params, variant.opt_state, variant.rng)
        compiled = variant.fn.lower(*self.args()).compile(compiler_options=options or None)
        self.fn = compiled
        # XLA counts one device's share of a sharded program: freeflow's step splits its batch
        # over every local device, the reference's runs on one. The replicated optimiser
        # update is then counted once per device, a few parts in a thousand of the step.
        self.devices = len(jax.devices()) if isinstance(variant, vr.FreeflowStep) else 1
        self.costs = vr._costs(compiled)
        self.flops = self.costs["flops"] * self.devices

    def run(self, steps: int) -> None:
        v = self.variant
        out = None
        for _ in range(steps):
            out = self.fn(*self.args())
            if isinstance(v, vr.FreeflowStep):
                v.state = out[0]
            else:
                v.params, v.opt_state, v.rng = out[:3]
        jax.block_until_ready(out)


class Matmul:
    """XLA's float32 matrix product, the dot rate the steps' kernels can reach."""

    def __init__(self):
        key = jax.random.PRNGKey(0)
        self.a = jax.random.normal(key, (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
        self.fn = jax.jit(lambda a: a @ a)
        self.flops = 2.0 * MATMUL_SIZE ** 3
        jax.block_until_ready(self.fn(self.a))

    def run(self, steps: int) -> None:
        out = None
        for _ in range(10 * steps):
            out = self.fn(self.a)
        jax.block_until_ready(out)


def measure(dm, name: str, args, core_sets: dict) -> dict:
    system = vr.load_system(name)
    model = vr.FlowModel(system, vr.freeflow_model_config(args))
    ref = vr.Reference(dm, vr.reference_config(dm, name, args))
    steps = {}
    for option_name in args.option_sets:
        options = OPTION_SETS[option_name]
        steps[("freeflow", option_name)] = Compiled(
            vr.FreeflowStep(model, system, model.config, "reparameterized", args.batch), options)
        steps[("dm_onejit", option_name)] = Compiled(vr.ReferenceOneJit(ref), options)
        print(f"# {name}: compiled both steps with options {option_name}", file=sys.stderr,
              flush=True)
    for step in steps.values():
        step.run(1)
    matmul = Matmul()

    times = {(key, cores): [] for key in [*steps, ("matmul", "-")] for cores in core_sets}
    for round_index in range(args.rounds):
        for cores, cpus in core_sets.items():
            for key, step in [*steps.items(), (("matmul", "-"), matmul)]:
                pin_threads(cpus)
                start = time.perf_counter()
                step.run(args.steps)
                per = (time.perf_counter() - start) / args.steps
                times[(key, cores)].append(per / 10 if key[0] == "matmul" else per)
        print(f"# {name}: round {round_index + 1}/{args.rounds}", file=sys.stderr, flush=True)
    pin_threads(core_sets["all"])

    median = {k: float(np.median(v)) for k, v in times.items()}
    matmul_rate = {cores: matmul.flops / median[(("matmul", "-"), cores)] for cores in core_sets}
    rows = {}
    for (label, option_name), step in steps.items():
        for cores in core_sets:
            t = median[((label, option_name), cores)]
            rows[f"{label}/{option_name}/{cores}"] = {
                "step_s": t, "round_step_s": times[((label, option_name), cores)],
                "devices": step.devices, "flops": step.flops,
                "gflop_per_s": step.flops / t / 1e9,
                "fraction_of_matmul_rate": step.flops / t / matmul_rate[cores]}
    scaling = {f"{label}/{option_name}": median[((label, option_name), "one")]
               / median[((label, option_name), "all")] for label, option_name in steps}
    ratios = {f"{option_name}/{cores}": median[(("dm_onejit", option_name), cores)]
              / median[(("freeflow", option_name), cores)]
              for option_name in args.option_sets for cores in core_sets}
    default = args.option_sets[0]
    return {
        "bench": "step_cores", "system": name, "batch": args.batch, "rounds": args.rounds,
        "steps_per_round": args.steps, "layer_norm": args.layer_norm,
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "cores": {k: sorted(v) for k, v in core_sets.items()}, "devices": len(jax.devices()),
        "jax": jax.__version__,
        "option_sets": {k: OPTION_SETS[k] for k in args.option_sets},
        "steps": rows, "core_scaling": scaling,
        "matmul_gflop_per_s": {k: v / 1e9 for k, v in matmul_rate.items()},
        "matmul_core_scaling": matmul_rate["all"] / matmul_rate["one"],
        "ratio_dm_onejit_over_freeflow": ratios,
        "best_freeflow_over_default_dm": median[(("dm_onejit", default), "all")] / min(
            median[(("freeflow", o), "all")] for o in args.option_sets),
        "reference_commit": vr.reference_commit(dm.root),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    vr.add_run_arguments(parser, 3, "steps per round, step and cores")
    parser.add_argument("--option-sets", nargs="+", default=["default"],
                        choices=sorted(OPTION_SETS),
                        help="XLA option sets to compile both steps with (the first is the "
                             "baseline of best_freeflow_over_default_dm)")
    parser.add_argument("--layer-norm", action="store_true",
                        help="keep freeflow's layer norms (the reference has none)")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)

    root = vr.checkout_or_say_why(args.reference)
    if root is None:
        return 2
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        print("error: pinning threads to cores needs Linux (os.sched_setaffinity and "
              "/proc/self/task); run this on a Linux machine", file=sys.stderr)
        return 2
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        print(f"error: this process may use {len(cpus)} core; the comparison needs at least "
              f"2 (run it without taskset or a one-core limit)", file=sys.stderr)
        return 2
    core_sets = {"one": {min(cpus)}, "all": set(cpus)}
    args.option_sets = list(dict.fromkeys(args.option_sets))
    # versus_reference's model builders read these options too.
    args.conditioners, args.bins, args.embedding, args.heads = 12, 8, 64, 2
    args.blocks, args.frequencies, args.freeflow_coupling = 1, 8, "axis"
    args.base = vr.model_preset("cpu").base
    dm = vr.import_reference(root)
    print(f"# {platform.machine()}, cores {sorted(cpus)}, {len(jax.devices())} JAX devices, "
          f"jax {jax.__version__}, batch "
          f"{args.batch}, {args.rounds} rounds of {args.steps} steps, reference {root}",
          file=sys.stderr, flush=True)

    for name in args.systems:
        row = measure(dm, name, args, core_sets)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
        print(f"{name}: dot rate {row['matmul_gflop_per_s']['one']:.0f} GFLOP/s on one core, "
              f"{row['matmul_gflop_per_s']['all']:.0f} on all ({row['matmul_core_scaling']:.2f}x)",
              file=sys.stderr)
        for key, scale in row["core_scaling"].items():
            step = row["steps"][f"{key}/all"]
            print(f"  {key:<24} one core / all {scale:.2f}x; on all {step['step_s']:.3f} s/step, "
                  f"{step['gflop_per_s']:.0f} GFLOP/s = {step['fraction_of_matmul_rate']:.0%} "
                  f"of the dot rate", file=sys.stderr)
        for key, ratio in row["ratio_dm_onejit_over_freeflow"].items():
            print(f"  DM one-jit / freeflow, options/cores {key}: {ratio:.2f}", file=sys.stderr)
        print(f"  best freeflow option set against default DM: "
              f"{row['best_freeflow_over_default_dm']:.2f} (target {vr.TARGET_RATIO})",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
