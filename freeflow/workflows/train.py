"""``freeflow.train``: train a flow for a system, in a run directory that makes it resumable.

The training loop itself is ``freeflow.training.trainer.fit``; this module decides the configs
(preset, overrides, the schedule's rescaling), checks that a run directory holds the same run
before resuming it, and writes run.json, the checkpoints and the metrics through
``freeflow.rundir``. Only process 0 writes (multi-host runs need the run directory on a shared
file system to resume).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any


from freeflow import rundir
from freeflow.fingerprint import json_form
from freeflow.rundir import RunDir
from freeflow.flows.config import ModelConfig, config_from_dict, config_to_dict
from freeflow.flows.model import FlowModel
from freeflow.flows.memory import attention_memory
from freeflow.parallel import batch_mesh, writes_files
from freeflow.physics.memory import check_device_memory
from freeflow.progress import shown
from freeflow.physics.identity import record_identity
from freeflow.physics.system import System
from freeflow.physics.system_files import load_system
from freeflow.training.config import TrainingConfig, presets
from freeflow.training.trainer import (TrainingDiverged, check_devices, compile_step, fit,
                                       init_state, optimizer)

__all__ = ["TrainResult", "train", "resolve_training"]


@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: the model, its trained parameters and the metrics log."""

    model: FlowModel
    params: Any
    metrics: list[dict]
    run_dir: Path | None
    system: System


def resolve_training(base: TrainingConfig, overrides: dict) -> TrainingConfig:
    """``base`` with ``overrides`` applied and validated.

    Overriding ``num_steps`` alone rescales ``decay_steps`` (and ``warmup_steps``) to the same
    fractions of the run, so the schedule keeps its shape.
    """
    overrides = dict(overrides)
    if "num_steps" in overrides and "decay_steps" not in overrides:
        scale = overrides["num_steps"] / base.num_steps
        overrides["decay_steps"] = tuple(max(1, int(round(d * scale))) for d in base.decay_steps)
        if "warmup_steps" not in overrides:
            overrides["warmup_steps"] = int(round(base.warmup_steps * scale))
    return dataclasses.replace(base, **overrides).validate()


def _with_defaults(cls, fields: dict) -> dict:
    try:
        return json_form(config_to_dict(config_from_dict(cls, fields)))
    except (TypeError, ValueError):
        return fields  # reported as a difference below


def check_same_run(saved: dict, wanted: dict, run_dir: Path):
    """Resuming is allowed only into the same system, model and training settings (the step
    count may grow). Raises ``ValueError`` naming every difference and the run's own values."""
    problems = []
    # Fields added since the run was written take their defaults, as when it is loaded.
    saved = dict(saved, model=_with_defaults(ModelConfig, saved["model"]),
                 training=_with_defaults(TrainingConfig, saved["training"]))
    if record_identity(saved["system"]) != record_identity(wanted["system"]):
        problems.append(f"system {saved['system']['name']!r} (wanted "
                        f"{wanted['system']['name']!r}, or the same name with other settings)")

    def differences(kind, saved_fields, wanted_fields):
        keys = [k for k in wanted_fields if saved_fields.get(k) != wanted_fields[k]]
        # The run's own values tell the user what to pass to resume it.
        values = ", ".join(f"{k}={saved_fields.get(k)!r}" for k in keys)
        asked = ", ".join(f"{k}={wanted_fields.get(k)!r}" for k in keys)
        return f"{kind} config differs in {keys} (the run has {values}; asked for {asked})"

    if saved["model"] != wanted["model"]:
        problems.append(differences("model", saved["model"], wanted["model"]))
    # The step count may grow and the checkpoint interval change: neither alters the result.
    free = ("num_steps", "checkpoint_every")
    saved_t = {k: v for k, v in saved["training"].items() if k not in free}
    wanted_t = {k: v for k, v in wanted["training"].items() if k not in free}
    if saved_t != wanted_t:
        problems.append(differences("training", saved_t, wanted_t))
    schedule = {"warmup_steps", "decay_steps", "eval_every"}
    only_schedule = problems and saved["model"] == wanted["model"] and all(
        saved_t.get(k) == wanted_t.get(k) for k in set(saved_t) | set(wanted_t)
        if k not in schedule)
    if problems:
        hint = (" A different --steps reschedules the learning rate; to train on with the "
                "run's own schedule use --extend STEPS." if only_schedule else "")
        raise ValueError(f"{run_dir} holds a different run: " + "; ".join(problems)
                         + ". Use another --out directory, or the original settings to resume."
                         + hint)


def _extended(out, extend: int, model_config, training, overrides: dict):
    """The saved model and training configs of the run in ``out``, with ``extend`` more steps."""
    if int(extend) != extend or extend < 1:
        raise ValueError(f"--extend must be a positive number of steps; got {extend}")
    if model_config is not None or training is not None or overrides:
        raise ValueError("--extend continues a run with its own settings; leave out the other "
                         "training options")
    saved = rundir.read_run_record(out) if out is not None else None
    if saved is None:
        raise ValueError(f"nothing to extend: {out} holds no run; train it first")
    model_config = rundir.model_config_of(saved)
    training = config_from_dict(TrainingConfig, saved["training"])
    return model_config, dataclasses.replace(training, num_steps=training.num_steps + int(extend))


def train(system: System | str, out: str | os.PathLike | None = None, *,
          preset: str = "cpu", model_config: ModelConfig | None = None,
          training: TrainingConfig | None = None, callback=None, max_wall_time: float | None = None, extend: int | None = None,
          **overrides) -> TrainResult:
    """Train a flow for ``system`` and return it with its metrics.

    Args:
      system: a ``System`` or the name of a named system.
      out: run directory. If it holds a checkpoint of the same run, training resumes from it;
        the result is then exactly what an uninterrupted run would have produced.
      preset: ``"cpu"`` or ``"paper"`` (model and training settings, see
        ``freeflow.training.config``).
      model_config, training: explicit configs, overriding the preset.
      callback: optional ``callback(step, record)`` called after every step (and after the
        step's checkpoint, if any); it may raise to stop training.
      max_wall_time: stop (with a checkpoint) after this many seconds; re-running resumes.
      extend: continue the run in ``out`` for this many more steps with its own settings:
        the learning-rate schedule is the same function of the step, so after its last decay
        the rate stays at its final value. Excludes ``preset`` overrides.
      **overrides: fields of ``TrainingConfig`` (``num_steps``, ``batch_size``, ``seed``, ...).
        Overriding ``num_steps`` alone rescales ``decay_steps`` to the same fractions of the run.

    Raises:
      TrainingDiverged: when the loss or the gradient becomes NaN or infinite.
      ValueError: for bad settings or a run directory holding a different run.
    """
    if isinstance(system, str):
        system = load_system(system)
    if extend is not None:
        model_config, training = _extended(out, extend, model_config, training, overrides)
    default_model, default_training = presets(preset, system)
    model_config = model_config or default_model
    training = resolve_training(training or default_training, overrides)
    # Everything that can refuse the run is checked before anything is written.
    check_devices(training)
    run_dir = Path(out) if out is not None else None
    done = rundir.checkpoint_step(run_dir) if run_dir is not None else None
    if done is None or done < training.num_steps:  # a finished run only loads its result
        check_device_memory(
            attention_memory(model_config, system.num_particles, training.batch_size)
            // batch_mesh().size,
            f"{system.name}: training a flow on {training.batch_size} configurations of "
            f"N = {system.num_particles} (its attention weights alone)",
            "use a smaller --batch-size, fewer layers, blocks or heads, or more devices")
    model = FlowModel(system, model_config)
    with RunDir.open(run_dir) as run:
        return _train_in(system, model, model_config, training, run, callback, max_wall_time)


def _train_in(system, model, model_config, training, run: RunDir | None, callback,
              max_wall_time) -> TrainResult:
    """The body of ``train`` once the run directory (if any) is open and locked."""
    state = init_state(model, training, optimizer(training))
    metrics_log: list[dict] = []
    stamp = None  # computed once from the run.json record; every checkpoint carries it
    writes = run is not None and writes_files()  # one process of a job writes
    if run is not None:
        spec = rundir.run_record(system, model_config, training)
        stamp = rundir.checkpoint_stamp(spec)
        saved = run.read_settings()
        if saved is not None:
            check_same_run(saved, spec, run.path)
        state, metrics_log = run.resume(spec, state)
    # After the quick refusals, before anything is written: the compiled step's memory. Its
    # compilation counts against max_wall_time, as it did when the first step compiled.
    compiled, started = None, time.perf_counter()
    if int(state.step) < training.num_steps:
        if shown() is not False and writes_files():  # tens of seconds before the first step
            print(f"train {system.name}: compiling the training step", file=sys.stderr,
                  flush=True)
        compiled = compile_step(model, system, training, state)
    if max_wall_time is not None:
        max_wall_time = max(0.0, max_wall_time - (time.perf_counter() - started))
    if writes:
        if saved != spec:
            run.write_settings(spec)
        run.write_metrics(metrics_log)
    last_saved = int(state.step) or None

    def on_step(new_state, record):
        nonlocal last_saved
        metrics_log.append(record)
        done = record["step"]
        if writes:
            run.append_metrics(record)
            if done % training.checkpoint_every == 0 or done == training.num_steps:
                run.checkpoint(new_state, stamp)
                last_saved = done
        if callback is not None:
            callback(done, record)

    try:
        state = fit(model, system, training, state, on_step=on_step,
                    max_wall_time=max_wall_time, compiled=compiled)
    except TrainingDiverged as error:
        where = (f"the last good checkpoint is {run.checkpoint_file()} "
                 f"(step {last_saved})" if last_saved is not None and run is not None
                 else "no checkpoint was written yet")
        raise TrainingDiverged(f"{error}; {where}. Lower the learning rate or check the "
                               "energy function.") from None
    if writes and last_saved != int(state.step):
        run.checkpoint(state, stamp)  # stopped early by max_wall_time
    return TrainResult(model=model, params=state.params, metrics=metrics_log,
                       run_dir=None if run is None else run.path, system=system)
