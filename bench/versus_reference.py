"""Training step: freeflow against the reference implementation, side by side (same model size).

The reference is the paper's code, deepmind/flows_for_atomic_solids ("DM"), imported from a
checkout given by ``--reference``; nothing of it is copied into freeflow. For each system the
script builds, at the same model size, batch and system:

* ``freeflow_reparameterized`` and ``freeflow_path``: freeflow's fully jitted training step,
  ``freeflow.training.trainer.make_step`` (the one ``freeflow train`` runs; it donates the
  state), with the reparameterized gradient and with the path gradient (the default of the
  ``cpu`` preset that ``freeflow train`` uses), the ``cpu`` training preset otherwise;
* ``dm_onejit``: DM's model (``config.model`` of its ``experiments/*_config.py``), loss
  (``experiments.train._get_loss``, which samples ``config.train.batch_size`` configurations)
  and optimiser (the chain ``experiments/train.py`` builds: global-norm clipping, Adam, its
  step-decay schedule) with loss, gradient and update inside one ``jax.jit`` (parameters and
  optimiser state donated, as freeflow's are);
* ``dm_loop``: DM's own loop as ``experiments/train.py`` runs it: ``jax.random.split`` of the
  key, the jitted ``value_and_grad`` of the loss, then ``optimizer.update`` and
  ``optax.apply_updates`` outside jit (its metrics print every 50 steps and its evaluation
  every 500 are left out).

Each variant is compiled (its first step, timed as ``compile_s``), then the variants run in
alternating rounds (freeflow, ..., DM one-jit, DM loop, freeflow, ...) of ``--steps`` steps
each, ``--rounds`` rounds, each round ending in ``jax.block_until_ready`` of the state. The
median seconds per step of each variant over the rounds and the ratios DM / freeflow are
reported (quote ratios, not absolute times: the machine's load moves both).

    python bench/versus_reference.py --reference /path/to/flows_for_atomic_solids \\
        --systems lj_32 mw_cubic_8 --batch 128 --rounds 5 --steps 5 \\
        --out bench/results/versus_reference.jsonl

Model size (defaults; one set of options sets both models): 12 conditioners (freeflow's
``cpu`` preset: 12 ``axis`` layers; DM: ``num_layers = 6`` split layers of two couplings
each), 8 spline bins, embedding 64, 1 transformer block with 2 heads, 8 frequencies, MLP
width 4 x embedding (DM's fixed widening factor; freeflow's ``mlp_width`` is set to match),
about 0.65 M parameters each. Both parameter counts are printed; the remaining architectural
differences (layer norm, circular shifts, the base distribution, the coupling pattern) are
listed in each row's ``model_differences``. ``--freeflow-coupling split`` makes freeflow use
the published layer structure instead (``conditioners / 2`` layers), ``--no-layer-norm``
drops freeflow's layer norms (the reference has none), and ``--cost-analysis`` records XLA's
flop and byte counts of each jitted step (``xla_cost_analysis``), which says whether two
steps do the same work.

Systems: a freeflow system name ``lj_N``, ``mw_cubic_N`` or ``mw_hex_N`` maps to DM's
``lennard_jones_config.get_config(N)`` or ``monatomic_water_config.get_config(N, lattice)``
(DM has LJ N = 32, 256, 500 and mW N = 8, 64, 216, 512). Number of particles, beta, box,
lattice, the training energy's softening and its value on the same configurations are compared;
every disagreement is listed in the row's ``mismatches``, not hidden. Known one for lj_32 and
mw_cubic_8: DM's energies take minimum images only, while the cutoff exceeds half the box edge
there, so freeflow sums more pair images (its energy is the exact one; see ``energy_check``).

Importing the reference: DM's modules import each other as ``flows_for_atomic_solids.<...>``
and the repository has no top-level ``__init__.py``; the script registers a package of that
name whose path is the checkout (``--reference`` may name the checkout itself or a folder
holding it as ``flows_for_atomic_solids/``), so the directory's name does not matter and no
other installed copy is picked up. Compatibility shims: none of DM's code needed an API that
jax, haiku, distrax or optax have removed (jax 0.10, haiku 0.0.17, distrax 0.1.9, optax 0.2.8
were checked), so nothing in jax is monkeypatched; when ``ml_collections`` (which DM's configs
use only for ``config_dict.ConfigDict``) is not installed, a minimal ``ConfigDict`` (a dict
with attribute access) is put in ``sys.modules`` before the import and the row says
``"ml_collections": "stub"``. DM's files are never edited.

Output: one JSON line per system on stdout (and appended to ``--out``), a summary on stderr.
Exit status 2 with one line when ``--reference`` is missing or not a checkout.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from freeflow.flows.config import BASES, model_preset
from freeflow.flows.model import FlowModel, num_parameters
from freeflow.physics.potentials.base import SOFT_MIN_DISTANCE
from freeflow.physics.system import load_system
from freeflow.training.config import TRAINING_PRESETS
from freeflow.training.trainer import init_state, make_step, optimizer, place_state

PACKAGE = "flows_for_atomic_solids"
#: Files whose presence makes a folder a checkout of the reference.
CHECKOUT_FILES = ("experiments/train.py", "experiments/lennard_jones_config.py",
                  "experiments/monatomic_water_config.py", "models/coupling_flows.py",
                  "systems/lennard_jones.py", "systems/monatomic_water.py")
TARGET_RATIO = 1.5  # the issue's target: DM one-jit / freeflow >= 1.5


# -- importing the reference ------------------------------------------------------------------

def find_checkout(path: str | None) -> Path | None:
    """The checkout's root (the folder holding ``experiments/``), or ``None``."""
    if not path:
        return None
    path = Path(path).expanduser().resolve()
    for root in (path, path / PACKAGE):
        if all((root / f).is_file() for f in CHECKOUT_FILES):
            return root
    return None


def checkout_or_say_why(path: str | None) -> Path | None:
    """``find_checkout(path)``, or ``None`` after one line on stderr saying what to pass."""
    root = find_checkout(path)
    if root is None:
        given = f" ({path!r} is not one)" if path else ""
        print(f"error: pass --reference PATH, a checkout of deepmind/flows_for_atomic_solids "
              f"(the folder holding experiments/train.py){given}", file=sys.stderr)
    return root


class _ConfigDict(dict):
    """Stand-in for ``ml_collections.config_dict.ConfigDict`` when it is not installed: a dict
    with attribute access whose dict values become ``_ConfigDict`` too (all DM's configs use)."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __setitem__(self, key, value):
        if isinstance(value, dict) and not isinstance(value, _ConfigDict):
            value = _ConfigDict(value)
        super().__setitem__(key, value)

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value


def import_reference(root: Path) -> types.SimpleNamespace:
    """DM's modules, imported from ``root`` as the package ``flows_for_atomic_solids``."""
    try:
        import ml_collections.config_dict  # noqa: F401
        collections_kind = "installed"
    except ImportError:
        stub = types.ModuleType("ml_collections")
        config_dict = types.ModuleType("ml_collections.config_dict")
        config_dict.ConfigDict = _ConfigDict
        stub.config_dict = config_dict
        sys.modules["ml_collections"] = stub
        sys.modules["ml_collections.config_dict"] = config_dict
        collections_kind = "stub"
    loaded = sys.modules.get(PACKAGE)
    if loaded is None or list(getattr(loaded, "__path__", [])) != [str(root)]:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [str(root)]
        sys.modules[PACKAGE] = importlib.util.module_from_spec(spec)
    ns = types.SimpleNamespace(root=root, ml_collections=collections_kind)
    for attr, module in (("train", "experiments.train"),
                         ("lj_config", "experiments.lennard_jones_config"),
                         ("mw_config", "experiments.monatomic_water_config"),
                         ("utils", "experiments.utils"),
                         ("mw_system", "systems.monatomic_water")):
        setattr(ns, attr, importlib.import_module(f"{PACKAGE}.{module}"))
    if not Path(ns.train.__file__).resolve().is_relative_to(root):
        raise RuntimeError(f"imported {ns.train.__file__}, not the checkout {root}")
    return ns


def reference_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# -- the two models ---------------------------------------------------------------------------

def reference_config(dm, name: str, args):
    """DM's config for freeflow system ``name``, resized to the benchmark's model and batch."""
    parts = name.split("_")
    try:
        n = int(parts[-1])
    except ValueError:
        raise SystemExit(f"{name}: not a system the reference has (lj_N, mw_cubic_N, mw_hex_N)")
    try:
        if parts[0] == "lj" and len(parts) == 2:
            config = dm.lj_config.get_config(n)
        elif parts[0] == "mw" and len(parts) == 3 and parts[1] in ("cubic", "hex"):
            config = dm.mw_config.get_config(n, parts[1])
        else:
            raise KeyError(name)
    except KeyError:
        raise SystemExit(f"{name}: the reference has no config for it (LJ N = 32, 256, 500; "
                         f"mW cubic or hex N = 8, 64, 216, 512)")
    bijector = config.model["kwargs"]["bijector"]["kwargs"]
    bijector["num_layers"] = args.conditioners // 2  # each DM layer holds two couplings
    bijector["num_bins"] = args.bins
    conditioner = bijector["conditioner"]["kwargs"]
    conditioner["embedding_size"] = args.embedding
    conditioner["num_frequencies"] = args.frequencies
    conditioner["conditioner_kwargs"]["num_heads"] = args.heads
    conditioner["conditioner_kwargs"]["num_layers"] = args.blocks
    config.train["batch_size"] = args.batch
    return config


class Reference:
    """DM's model, loss and optimiser for one config, as ``experiments/train.py`` builds them."""

    def __init__(self, dm, config):
        import haiku as hk

        self.config = config
        state = config.state
        energy_train = config.train_energy["constructor"](**config.train_energy["kwargs"])
        self.energy_train = energy_train
        train = config.train
        schedule = dm.utils.get_lr_schedule(train["learning_rate"],
                                            train["learning_rate_decay_steps"],
                                            train["learning_rate_decay_factor"])
        optim = optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(schedule),
                            optax.scale(-1))
        if train["max_gradient_norm"] is not None:
            optim = optax.chain(optax.clip_by_global_norm(train["max_gradient_norm"]), optim)
        self.optimizer = optim

        def create_model():
            return config.model["constructor"](num_particles=state["num_particles"],
                                               lower=state["lower"], upper=state["upper"],
                                               **config.model["kwargs"])

        def loss_fn():
            loss, stats = dm.train._get_loss(model=create_model(), energy_fn=energy_train,
                                             beta=state["beta"],
                                             num_samples=train["batch_size"])
            return loss, {"loss": loss, "energy": jnp.mean(stats["energy"]),
                          "model_entropy": -jnp.mean(stats["model_log_prob"])}

        init_fn, self.apply_fn = hk.transform(loss_fn)
        rng = jax.random.PRNGKey(train["seed"])
        self.rng, init_key = jax.random.split(rng)
        self.params = init_fn(init_key)


def freeflow_model_config(args):
    base = model_preset("cpu")
    layers = args.conditioners if args.freeflow_coupling == "axis" else args.conditioners // 2
    return dataclasses.replace(base, num_layers=layers, num_bins=args.bins,
                               embedding_size=args.embedding, num_heads=args.heads,
                               num_blocks=args.blocks, num_frequencies=args.frequencies,
                               mlp_width=4 * args.embedding, coupling=args.freeflow_coupling,
                               layer_norm=args.layer_norm, **BASES[args.base])


# -- the timed variants -----------------------------------------------------------------------

def _costs(compiled) -> dict:
    """XLA's estimate for one call of a compiled step: flops and bytes accessed."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return {k.replace(" ", "_"): float(analysis.get(k, 0.0))
            for k in ("flops", "transcendentals", "bytes accessed")}


class FreeflowStep:
    def __init__(self, model, system, config, gradient: str, batch: int):
        training = dataclasses.replace(TRAINING_PRESETS["cpu"], batch_size=batch,
                                       gradient_estimator=gradient)
        optim = optimizer(training)
        self.fn = make_step(model, system, training, optim)  # donates the state
        self.state = place_state(init_state(model, training, optim))
        self.key = jax.random.PRNGKey(training.seed + 1)
        self.parameters = num_parameters(self.state.params)

    def cost_analysis(self) -> dict:
        return _costs(self.fn.lower(self.state, self.key).compile())

    def run(self, steps: int):
        metrics = None
        for _ in range(steps):
            self.state, metrics = self.fn(self.state, self.key)
        jax.block_until_ready((self.state, metrics))


class ReferenceOneJit:
    def __init__(self, ref: Reference):
        optim = ref.optimizer

        def step(params, opt_state, rng):
            rng, loss_key = jax.random.split(rng)
            (_, metrics), grads = jax.value_and_grad(ref.apply_fn, has_aux=True)(params,
                                                                                 loss_key)
            updates, opt_state = optim.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, rng, metrics

        self.fn = jax.jit(step, donate_argnums=(0, 1))
        self.params = jax.tree.map(jnp.array, ref.params)  # own copies: they are donated
        self.opt_state = optim.init(self.params)
        self.rng = ref.rng

    def cost_analysis(self) -> dict:
        return _costs(self.fn.lower(self.params, self.opt_state, self.rng).compile())

    def run(self, steps: int):
        metrics = None
        for _ in range(steps):
            self.params, self.opt_state, self.rng, metrics = self.fn(self.params,
                                                                     self.opt_state, self.rng)
        jax.block_until_ready((self.params, self.opt_state, metrics))


class ReferenceLoop:
    """``experiments/train.py``'s loop body: jitted loss and gradient, optimiser outside jit."""

    def __init__(self, ref: Reference):
        self.optimizer = ref.optimizer
        self.jitted_loss = jax.jit(jax.value_and_grad(ref.apply_fn, has_aux=True))
        self.params = jax.tree.map(jnp.array, ref.params)
        self.opt_state = self.optimizer.init(self.params)
        self.rng = ref.rng

    def run(self, steps: int):
        metrics = None
        for _ in range(steps):
            self.rng, loss_key = jax.random.split(self.rng)
            (_, metrics), g = self.jitted_loss(self.params, loss_key)
            updates, self.opt_state = self.optimizer.update(g, self.opt_state, self.params)
            self.params = optax.apply_updates(self.params, updates)
        jax.block_until_ready((self.params, self.opt_state, metrics))


# -- checks that the two sides are the same problem -------------------------------------------

def compare_systems(system, model, ref: Reference, dm) -> tuple[list, dict, list]:
    """(mismatches, energy_check, model_differences) between freeflow's and DM's set-ups."""
    config = ref.config
    state = config.state
    mismatches = []
    dm_box = np.asarray(state["upper"]) - np.asarray(state["lower"])
    if int(state["num_particles"]) != system.num_particles:
        mismatches.append(f"particles: freeflow {system.num_particles}, reference "
                          f"{state['num_particles']}")
    if not np.isclose(float(state["beta"]), system.beta, rtol=1e-9, atol=0):
        mismatches.append(f"beta: freeflow {system.beta!r}, reference {float(state['beta'])!r}")
    if not np.allclose(dm_box, system.box, rtol=1e-7, atol=0):
        mismatches.append(f"box: freeflow {system.box.tolist()}, reference {dm_box.tolist()}")

    kind = system.potential.kind
    kwargs = config.train_energy["kwargs"]
    ff_linear = float(system.potential.soft_linear_below)
    if kind == "lennard_jones":
        ff_linear *= float(system.potential.sigma)
        dm_cutoff = float(kwargs["cutoff"])
        if not np.isclose(dm_cutoff, float(system.potential.cutoff)):
            mismatches.append(f"cutoff: freeflow {system.potential.cutoff}, reference "
                              f"{dm_cutoff}")
    else:
        dm_cutoff = float(dm.mw_system.MW_REDUCED_CUTOFF * dm.mw_system.MW_SIGMA)
    for what, ours, theirs in (("softening min_distance", SOFT_MIN_DISTANCE,
                                kwargs.get("min_distance", 0.0)),
                               ("softening linearize_below", ff_linear,
                                kwargs.get("linearize_below"))):
        if theirs is None or not np.isclose(float(ours), float(theirs)):
            mismatches.append(f"{what}: freeflow {ours}, reference {theirs}")
    half_box = float(np.min(dm_box)) / 2
    if dm_cutoff > half_box:
        mismatches.append(
            f"pair images: the reference's energy takes minimum images only, and its cutoff "
            f"{dm_cutoff:.4g} exceeds half the box edge {half_box:.4g}; freeflow sums every "
            f"image inside the cutoff, so the two energies can differ (energy_check) and "
            f"freeflow's may do more work")

    # The same configurations through both training energies: the lattice and base samples.
    energy = system.energy_fn(softened=True)
    lattice = np.asarray(system.lattice, np.float32)[None]
    sample = np.asarray(model.sample_base(jax.random.PRNGKey(7), 16), np.float32)
    x = np.concatenate([lattice, sample])
    ours = np.asarray(jax.jit(energy)(jnp.asarray(x)), np.float64)
    # DM's box is [-L/2, L/2); its energy is periodic, so translate the configurations into it.
    theirs = np.asarray(jax.jit(ref.energy_train)(jnp.asarray(x + np.asarray(state["lower"],
                                                                            np.float32))),
                        np.float64)
    n, beta = system.num_particles, system.beta
    diff = np.abs(beta * (ours - theirs) / n)
    check = {"configurations": int(x.shape[0]),
             "lattice_beta_u_per_particle": {"freeflow": beta * ours[0] / n,
                                             "reference": beta * theirs[0] / n},
             "max_abs_diff_beta_u_per_particle": float(diff.max())}
    # float32 energies summed in different orders: allow a few ulps of beta U / N.
    tolerance = max(1e-4, 1e-5 * float(np.max(np.abs(beta * ours / n))))
    check["tolerance"] = tolerance
    if diff.max() > tolerance:
        mismatches.append(f"training energy: beta U / N differs by up to {diff.max():.4g} on "
                          f"the lattice and 16 base samples (lattice: freeflow "
                          f"{beta * ours[0] / n:.6g}, reference {beta * theirs[0] / n:.6g})")

    ff = model.config
    bij = config.model["kwargs"]["bijector"]["kwargs"]
    cond = bij["conditioner"]["kwargs"]["conditioner_kwargs"]
    base = config.model["kwargs"]["base"]
    differences = []
    conditioners = ff.num_layers * (1 if ff.coupling == "axis" else 2)
    if conditioners != 2 * bij["num_layers"]:
        differences.append(f"conditioners: freeflow {conditioners}, reference "
                           f"{2 * bij['num_layers']}")
    if ff.coupling != "split":
        differences.append(f"coupling: freeflow '{ff.coupling}' (one axis given two), reference "
                           f"split (two axes given one, then one given two)")
    if ff.layer_norm != bool(cond["use_layernorm"]):
        differences.append(f"layer norm: freeflow {ff.layer_norm}, reference "
                           f"{bool(cond['use_layernorm'])}")
    if ff.circular_shift != bool(bij["use_circular_shift"]):
        differences.append(f"circular shift per layer: freeflow {ff.circular_shift}, reference "
                           f"{bool(bij['use_circular_shift'])}")
    if ff.conditioned_shift:
        differences.append("spline's last parameter: freeflow a conditioned shift, reference "
                           "unused")
    differences.append(f"base: freeflow '{ff.base}', reference "
                       f"{base['constructor'].__name__}(noise_scale="
                       f"{base['kwargs']['noise_scale']})")
    return mismatches, check, differences


# -- the measurement --------------------------------------------------------------------------

def measure(dm, name: str, args) -> dict:
    system = load_system(name)
    model = FlowModel(system, freeflow_model_config(args))
    ref = Reference(dm, reference_config(dm, name, args))
    mismatches, energy_check, differences = compare_systems(system, model, ref, dm)

    variants = {}
    for gradient in args.gradients:
        variants[f"freeflow_{gradient}"] = FreeflowStep(model, system, model.config, gradient,
                                                        args.batch)
    variants["dm_onejit"] = ReferenceOneJit(ref)
    variants["dm_loop"] = ReferenceLoop(ref)

    costs = {}
    if args.cost_analysis:
        for label, variant in variants.items():
            if hasattr(variant, "cost_analysis"):
                costs[label] = variant.cost_analysis()
    compile_s = {}
    for label, variant in variants.items():
        start = time.perf_counter()
        variant.run(1)  # compiles (and, for the loop, the eager optimiser's ops)
        compile_s[label] = time.perf_counter() - start
        print(f"# {name}: compiled {label} in {compile_s[label]:.1f} s", file=sys.stderr,
              flush=True)
    rounds = {label: [] for label in variants}
    for _ in range(args.rounds):
        for label, variant in variants.items():
            start = time.perf_counter()
            variant.run(args.steps)
            rounds[label].append((time.perf_counter() - start) / args.steps)
    step_s = {label: float(np.median(times)) for label, times in rounds.items()}

    ff_params = variants[f"freeflow_{args.gradients[0]}"].parameters
    dm_params = num_parameters(ref.params)
    if not 0.9 <= dm_params / ff_params <= 1.1:
        mismatches.append(f"parameters: freeflow {ff_params}, reference {dm_params} (more than "
                          f"10% apart)")
    ratios, paired = {}, {}
    for gradient in args.gradients:
        ours = f"freeflow_{gradient}"
        for theirs in ("dm_onejit", "dm_loop"):
            key = f"{theirs}_over_{ours}"
            ratios[key] = step_s[theirs] / step_s[ours]
            paired[key] = float(np.median(np.asarray(rounds[theirs]) / np.asarray(rounds[ours])))
    main = f"freeflow_{args.gradients[0]}"
    bij = ref.config.model["kwargs"]["bijector"]["kwargs"]
    cond = bij["conditioner"]["kwargs"]
    device = jax.devices()[0]
    return {
        "bench": "versus_reference", "system": name, "num_particles": system.num_particles,
        "batch": args.batch, "rounds": args.rounds, "steps_per_round": args.steps,
        "machine": platform.machine(), "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)), "devices": len(jax.devices()),
        "cpu_count": os.cpu_count(), "jax": jax.__version__,
        "freeflow_parameters": ff_params, "reference_parameters": dm_params,
        "parameter_ratio": dm_params / ff_params,
        "step_s": step_s, "round_step_s": rounds, "compile_s": compile_s,
        "xla_cost_analysis": costs,
        "ratio_dm_onejit_over_freeflow": ratios[f"dm_onejit_over_{main}"],
        "ratio_dm_loop_over_freeflow": ratios[f"dm_loop_over_{main}"],
        "ratio_freeflow_variant": main,
        "ratios": ratios, "paired_round_ratios": paired,
        "target_ratio": TARGET_RATIO,
        "target_met": bool(ratios[f"dm_onejit_over_{main}"] >= TARGET_RATIO),
        "freeflow_model": dataclasses.asdict(model.config),
        "reference_model": {"num_layers": bij["num_layers"], "couplings": 2 * bij["num_layers"],
                            "num_bins": bij["num_bins"],
                            "embedding_size": cond["embedding_size"],
                            "num_frequencies": cond["num_frequencies"],
                            "num_heads": cond["conditioner_kwargs"]["num_heads"],
                            "num_blocks": cond["conditioner_kwargs"]["num_layers"],
                            "mlp_width": 4 * cond["embedding_size"],
                            "use_layernorm": bool(cond["conditioner_kwargs"]["use_layernorm"]),
                            "use_circular_shift": bool(bij["use_circular_shift"]),
                            "batch_size": ref.config.train["batch_size"]},
        "mismatches": mismatches, "model_differences": differences,
        "energy_check": energy_check,
        "reference_path": str(dm.root), "reference_commit": reference_commit(dm.root),
        "ml_collections": dm.ml_collections,
        "monkeypatches": (["ml_collections.config_dict.ConfigDict stub"]
                          if dm.ml_collections == "stub" else []),
    }


def add_run_arguments(parser, steps: int, steps_help: str) -> None:
    """The options every side-by-side script takes: the checkout, systems, batch, rounds."""
    parser.add_argument("--reference", default=None,
                        help="path to a checkout of deepmind/flows_for_atomic_solids")
    parser.add_argument("--systems", nargs="+", default=["lj_32", "mw_cubic_8"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=steps, help=steps_help)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, 5, "steps per round and variant")
    parser.add_argument("--conditioners", type=int, default=12,
                        help="coupling conditioners in each model (even; DM: half as layers)")
    parser.add_argument("--bins", type=int, default=8)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=1, help="transformer blocks")
    parser.add_argument("--frequencies", type=int, default=8)
    parser.add_argument("--freeflow-coupling", default="axis", choices=["axis", "split"])
    parser.add_argument("--no-layer-norm", dest="layer_norm", action="store_false",
                        help="freeflow's conditioners without layer norm, as the reference's (the "
                             "cpu preset has them)")
    parser.add_argument("--cost-analysis", action="store_true",
                        help="also record XLA's flop and byte counts of each jitted step "
                             "(compiles each once more)")
    parser.add_argument("--base", default=model_preset("cpu").base, choices=sorted(BASES),
                        help="freeflow's base distribution (default: the cpu preset's)")
    parser.add_argument("--gradients", nargs="+", default=["reparameterized", "path"],
                        choices=["reparameterized", "path"],
                        help="freeflow gradient estimators to time; the first is the one the "
                             "headline ratios use")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)

    root = checkout_or_say_why(args.reference)
    if root is None:
        return 2
    if args.conditioners < 2 or args.conditioners % 2:
        parser.error("--conditioners must be even (each DM layer holds two couplings)")
    args.gradients = list(dict.fromkeys(args.gradients))
    dm = import_reference(root)

    print(f"# {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} on "
          f"{jax.default_backend()}, batch {args.batch}, {args.rounds} rounds of {args.steps} "
          f"steps, reference {root}", file=sys.stderr, flush=True)
    rows = []
    for name in args.systems:
        row = measure(dm, name, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")

    print(f"\n{'system':<12}{'params ff':>11}{'params DM':>11}"
          + "".join(f"{label:>26}" for label in rows[0]["step_s"]) + "  (s/step)",
          file=sys.stderr)
    for r in rows:
        print(f"{r['system']:<12}{r['freeflow_parameters']:>11,d}{r['reference_parameters']:>11,d}"
              + "".join(f"{v:>26.4f}" for v in r["step_s"].values()), file=sys.stderr)
    print(file=sys.stderr)
    for r in rows:
        parts = ", ".join(f"{k.replace('_over_', ' / ')} {v:.2f}x"
                          for k, v in r["ratios"].items())
        print(f"{r['system']}: {parts}; target DM one-jit / {r['ratio_freeflow_variant']} >= "
              f"{TARGET_RATIO}: {'met' if r['target_met'] else 'not met'}", file=sys.stderr)
        for m in r["mismatches"]:
            print(f"  mismatch: {m}", file=sys.stderr)
        for d in r["model_differences"]:
            print(f"  model difference: {d}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
