"""Energy-based training of a flow by reverse Kullback-Leibler divergence (no data needed).

The loss is ``E_q[beta U_train(x) + ln q(x)]`` (science.md section 3), an upper bound on
``-ln Z`` (of the region the flow covers) that the flow minimises with Adam, a step-decay
learning-rate schedule and global-norm gradient clipping.

Training is data-parallel over every JAX device: each step draws one PRNG key per sample from
``fold_in(seed, step)``, the batch of keys is split across the devices of a one-axis mesh, and
the gradient mean is reduced by XLA. The random numbers therefore do not depend on how many
devices there are, and runs on 1 and on 2 devices agree up to float summation order. Across
hosts, call ``jax.distributed.initialize()`` first in every process; ``jax.devices()`` then
lists the devices of all hosts and the same code shards over them (each process writes the
run directory only from process 0).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from freeflow import checkpoint
from freeflow.config import (ModelConfig, TrainingConfig, config_from_dict, config_to_dict,
                             presets)
from freeflow.flow import FlowModel
from freeflow.system import System, load_system, system_from_dict, system_to_dict


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar


class TrainingDiverged(RuntimeError):
    """The loss or its gradient stopped being finite."""


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: the model, its trained parameters and the metrics log."""

    model: FlowModel
    params: Any
    metrics: list[dict]
    run_dir: Path | None
    system: System


def learning_rate_schedule(config: TrainingConfig):
    """Step -> learning rate: a linear ramp over ``warmup_steps``, then step decays."""
    decays = optax.piecewise_constant_schedule(
        config.learning_rate, {int(s): config.decay_factor for s in config.decay_steps})
    if not config.warmup_steps:
        return decays
    # Adam moves every parameter by about the learning rate from its first step on, whatever
    # the gradient's size; ramping up keeps a flow that starts close to the target close.
    return lambda step: decays(step) * jnp.minimum(1.0, (step + 1) / config.warmup_steps)


def optimizer(config: TrainingConfig) -> optax.GradientTransformation:
    """Adam with a warm-up and step-decay schedule, after clipping the gradient's global norm."""
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                       optax.adam(learning_rate_schedule(config)))


def _mesh():
    devices = np.asarray(jax.devices())
    return jax.sharding.Mesh(devices, ("batch",))


def make_step(model: FlowModel, system: System, config: TrainingConfig, optim, *,
              donate: bool = True):
    """A jitted ``(state, seed_key) -> (state, metrics)`` sharded over all local devices.

    ``donate`` lets XLA write the new state into the old one's buffers (the caller must not
    reuse the state it passed in); ``False`` exists for ``bench/train_step.py``, which times
    both.
    """
    beta = system.beta
    energy = system.energy_fn(softened=True)
    mesh = _mesh()
    if config.batch_size % mesh.size:
        raise ValueError(f"batch size {config.batch_size} must be a multiple of the number of "
                         f"devices ({mesh.size})")
    batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def sample_one(params, key):
        x, log_q = model.sample_and_log_prob(params, key, 1)
        return x[0], log_q[0]

    def loss_fn(params, keys):
        keys = jax.lax.with_sharding_constraint(keys, batch_sharding)
        x, log_q = jax.vmap(sample_one, in_axes=(None, 0))(params, keys)
        if config.gradient_estimator == "path":
            # The same value of ln q, whose gradient reaches the parameters only through the
            # samples x: the direct (score) term has zero mean but a variance that does not
            # vanish even when q equals the target.
            log_q_path = model.log_prob(jax.lax.stop_gradient(params), x)
            log_q = log_q_path + jax.lax.stop_gradient(log_q - log_q_path)
        work = beta * energy(x) + log_q
        return jnp.mean(work), work

    def step(state: TrainState, seed_key):
        keys = jax.random.split(jax.random.fold_in(seed_key, state.step), config.batch_size)
        (loss, work), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, keys)
        updates, opt_state = optim.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        log_w = -work
        log_mean_w = jax.nn.logsumexp(log_w) - jnp.log(work.shape[0])
        ess = jnp.exp(2 * jax.nn.logsumexp(log_w) - jax.nn.logsumexp(2 * log_w)) / work.shape[0]
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
        metrics = {"loss": loss, "ess": ess, "log_z": log_mean_w,
                   "grad_norm": optax.global_norm(grads), "finite": finite}
        return TrainState(params, opt_state, state.step + 1), metrics

    return jax.jit(step, in_shardings=(replicated, replicated),
                   out_shardings=(replicated, replicated),
                   donate_argnums=(0,) if donate else ())


def _run_spec(system: System, model_config: ModelConfig, training: TrainingConfig) -> dict:
    spec = {"system": system_to_dict(system), "model": config_to_dict(model_config),
            "training": config_to_dict(training)}
    return json.loads(json.dumps(spec))  # the form it takes in run.json (tuples -> lists)


def _with_defaults(cls, fields: dict) -> dict:
    try:
        return json.loads(json.dumps(config_to_dict(config_from_dict(cls, fields))))
    except (TypeError, ValueError):
        return fields  # reported as a difference below


def _check_same_run(saved: dict, wanted: dict, run_dir: Path):
    """Resuming is allowed only into the same system, model and training settings."""
    problems = []
    # Fields added since the run was written take their defaults, as when it is loaded.
    saved = dict(saved, model=_with_defaults(ModelConfig, saved["model"]),
                 training=_with_defaults(TrainingConfig, saved["training"]))
    if saved["system"] != wanted["system"]:
        problems.append(f"system {saved['system']['name']!r} (wanted "
                        f"{wanted['system']['name']!r}, or the same name with other settings)")

    def differences(kind, saved_fields, wanted_fields):
        keys = [k for k in wanted_fields if saved_fields.get(k) != wanted_fields[k]]
        # The run's own values tell the user what to pass to resume it.
        values = ", ".join(f"{k}={saved_fields.get(k)!r}" for k in keys)
        return f"{kind} config differs in {keys} (the run has {values})"

    if saved["model"] != wanted["model"]:
        problems.append(differences("model", saved["model"], wanted["model"]))
    saved_t = {k: v for k, v in saved["training"].items() if k != "num_steps"}
    wanted_t = {k: v for k, v in wanted["training"].items() if k != "num_steps"}
    if saved_t != wanted_t:
        problems.append(differences("training", saved_t, wanted_t))
    if problems:
        raise ValueError(f"{run_dir} holds a different run: " + "; ".join(problems)
                         + ". Use another --out directory, or the original settings to resume.")


def train(system: System | str, out: str | os.PathLike | None = None, *,
          preset: str = "cpu", model_config: ModelConfig | None = None,
          training: TrainingConfig | None = None, progress: bool = True,
          callback=None, max_wall_time: float | None = None, **overrides) -> TrainResult:
    """Train a flow for ``system`` and return it with its metrics.

    Args:
      system: a ``System`` or the name of a named system.
      out: run directory. If it holds a checkpoint of the same run, training resumes from it;
        the result is then exactly what an uninterrupted run would have produced.
      preset: ``"cpu"`` or ``"paper"`` (model and training settings, see ``freeflow.config``).
      model_config, training: explicit configs, overriding the preset.
      progress: show a progress bar.
      callback: optional ``callback(step, record)`` called after every step (and after the
        step's checkpoint, if any); it may raise to stop training.
      max_wall_time: stop (with a checkpoint) after this many seconds; re-running resumes.
      **overrides: fields of ``TrainingConfig`` (``num_steps``, ``batch_size``, ``seed``, ...).
        Overriding ``num_steps`` alone rescales ``decay_steps`` to the same fractions of the run.

    Raises:
      TrainingDiverged: when the loss or the gradient becomes NaN or infinite.
      ValueError: for bad settings or a run directory holding a different run.
    """
    if isinstance(system, str):
        system = load_system(system)
    default_model, default_training = presets(preset)
    model_config = model_config or default_model
    base_training = training or default_training
    if "num_steps" in overrides and "decay_steps" not in overrides:
        # Keep the schedule's shape: decays happen at the same fractions of the run.
        scale = overrides["num_steps"] / base_training.num_steps
        overrides["decay_steps"] = tuple(max(1, int(round(d * scale)))
                                         for d in base_training.decay_steps)
        if "warmup_steps" not in overrides:
            overrides["warmup_steps"] = int(round(base_training.warmup_steps * scale))
    training = dataclasses.replace(base_training, **overrides)
    training.validate()
    model = FlowModel(system, model_config)
    optim = optimizer(training)
    run_dir = Path(out) if out is not None else None
    spec = _run_spec(system, model_config, training)
    is_writer = jax.process_index() == 0

    init_params = model.init(jax.random.PRNGKey(training.seed))
    state = TrainState(init_params, optim.init(init_params), jnp.asarray(0, jnp.int32))
    metrics_log: list[dict] = []
    if run_dir is not None:
        if (run_dir / "run.json").exists():
            _check_same_run(json.loads((run_dir / "run.json").read_text()), spec, run_dir)
        if is_writer:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.write_json(run_dir / "run.json", spec)
        restored = checkpoint.load(run_dir, template=state)
        if restored is not None:
            state = restored
        metrics_log = checkpoint.read_metrics(run_dir, up_to_step=int(state.step))
        if is_writer:
            checkpoint.write_metrics(run_dir, metrics_log)

    step_fn = make_step(model, system, training, optim)
    seed_key = jax.random.PRNGKey(training.seed + 1)
    evaluate = _evaluator(model, system, training)
    start_step = int(state.step)
    last_saved = start_step if start_step else None

    from tqdm import tqdm
    bar = tqdm(total=training.num_steps, initial=start_step, desc=f"train {system.name}",
               unit="step", disable=not progress or None, dynamic_ncols=True)
    n = system.num_particles
    running_log_z = None
    started = time.perf_counter()
    try:
        for step in range(start_step, training.num_steps):
            if max_wall_time is not None and time.perf_counter() - started > max_wall_time:
                if run_dir is not None and is_writer and last_saved != step:
                    checkpoint.save(run_dir, state)
                break
            new_state, m = step_fn(state, seed_key)
            m = jax.device_get(m)
            if not m["finite"]:
                where = (f"the last good checkpoint is {run_dir / checkpoint.FILENAME} "
                         f"(step {last_saved})" if last_saved is not None and run_dir
                         else "no checkpoint was written yet")
                raise TrainingDiverged(
                    f"training of {system.name} diverged at step {step}: loss = {m['loss']}, "
                    f"gradient norm = {m['grad_norm']}; {where}. Lower the learning rate or "
                    "check the energy function.")
            state = new_state
            done = step + 1
            running_log_z = (float(m["log_z"]) if running_log_z is None else
                             np.logaddexp(running_log_z + math.log(0.95),
                                          float(m["log_z"]) + math.log(0.05)))
            record = {"step": done, "loss": float(m["loss"]), "ess": float(m["ess"]),
                      "grad_norm": float(m["grad_norm"]),
                      "beta_f_per_particle_batch": _beta_f_flow(system, float(m["log_z"])),
                      "time": time.time()}
            if training.eval_every and (done % training.eval_every == 0
                                        or done == training.num_steps):
                record.update(evaluate(state.params, done))
            metrics_log.append(record)
            bar.set_postfix(loss_per_n=f"{record['loss'] / n:.4f}",
                            ess=f"{100 * record['ess']:.1f}%",
                            beta_f=f"{_beta_f_flow(system, running_log_z):.5f}", refresh=False)
            bar.update(1)
            if run_dir is not None and is_writer:
                checkpoint.append_metrics(run_dir, record)
                if done % training.checkpoint_every == 0 or done == training.num_steps:
                    checkpoint.save(run_dir, state)
                    last_saved = done
            if callback is not None:
                callback(done, record)
    finally:
        bar.close()
    return TrainResult(model=model, params=state.params, metrics=metrics_log, run_dir=run_dir,
                       system=system)


def _beta_f_flow(system: System, log_z_flow: float) -> float:
    from freeflow.estimators import beta_f_from_flow_log_z
    return beta_f_from_flow_log_z(system, log_z_flow)


def _evaluator(model: FlowModel, system: System, training: TrainingConfig):
    """Periodic LFEP evaluation on the exact energy, with fixed keys (reproducible)."""
    from freeflow.estimators import lfep

    def evaluate(params, step):
        result = lfep(model, params, system, jax.random.PRNGKey(10_000 + step),
                      num_samples=training.eval_samples, batch_size=training.batch_size,
                      progress=False, bootstrap=0)
        return {"eval_beta_f_per_particle": result.value, "eval_ess": result.ess,
                "eval_samples": result.num_samples}

    return evaluate


def load_run(run_dir: str | os.PathLike):
    """``(system, model, params, spec)`` of a trained run directory (its last checkpoint)."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a freeflow run directory (no run.json); "
                                "create one with 'freeflow train SYSTEM --out DIR'")
    spec = json.loads((run_dir / "run.json").read_text())
    system = system_from_dict(spec["system"])
    model_config = config_from_dict(ModelConfig, spec["model"])
    training = config_from_dict(TrainingConfig, spec["training"])
    model = FlowModel(system, model_config)
    optim = optimizer(training)
    params = model.init(jax.random.PRNGKey(training.seed))
    template = TrainState(params, optim.init(params), jnp.asarray(0, jnp.int32))
    state = checkpoint.load(run_dir, template=template)
    if state is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet; train first "
                                f"('freeflow train {system.name} --out {run_dir}')")
    return system, model, state.params, spec
