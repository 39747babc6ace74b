"""A training run directory (``freeflow train --out DIR``): ``run.json`` (the system's definition
and the model and training configs), ``checkpoint.npz`` (the training-state pytree as numbered
leaves) and ``metrics.jsonl`` (one record per step), and loading a trained run."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.fingerprint import fingerprint, json_form
from freeflow.flows.config import ModelConfig, config_from_dict, config_to_dict
from freeflow.flows.model import FlowModel
from freeflow.physics.system import System
from freeflow.physics.system_files import system_from_definition
from freeflow.physics.identity import (describe_system, system_fingerprint, system_from_dict, system_to_dict)
from freeflow.rundir.files import (CHECKPOINT, METRICS, RUN_JSON, atomic_write_bytes,
                                   npz_bytes, write_json)
from freeflow.rundir.workdirs import WorkDir


# -- run.json ----------------------------------------------------------------------------------


def run_record(system, model_config: ModelConfig, training) -> dict:
    """What ``run.json`` holds for a run (``training``: a ``TrainingConfig``), in the form it
    takes there (tuples become lists)."""
    spec = {"system": system_to_dict(system), "model": config_to_dict(model_config),
            "training": config_to_dict(training)}
    return json_form(spec)


def read_run_record(run_dir: str | os.PathLike) -> dict | None:
    """The parsed ``run.json`` of ``run_dir``, or ``None``."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("model"), dict) \
                or "base" not in record["model"]:
            raise KeyError("model.base (a run.json of freeflow 0.1 does not load)")
        return record
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a valid run record ({error}); restore it or start a "
                         "new run directory") from None


def write_run_record(run_dir: str | os.PathLike, record: dict):
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(run_dir) / RUN_JSON, record)


def run_fingerprint(run_dir: str | os.PathLike) -> str:
    """A short hash of ``run.json``'s record (brought up to date, keys sorted): changes
    whenever the run's settings do, and not when an old file is merely rewritten."""
    return fingerprint(read_run_record(run_dir))


def model_config_of(record: dict) -> ModelConfig:
    """The model config recorded in a ``run.json`` record."""
    return config_from_dict(ModelConfig, record["model"])


# -- checkpoints ---------------------------------------------------------------------------------


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    return checkpoint_path(run_dir).is_file()


def checkpoint_identity(record: dict) -> str:
    """The identity a checkpoint is stamped with: a hash of the system and the model of the
    ``run.json`` record it was trained under (not the training settings, which may change
    when a run is extended)."""
    system = system_from_dict(record["system"]) if "repr" not in record["system"]["potential"] \
        else None
    part = {"system": system_fingerprint(system) if system is not None
            else json.dumps(record["system"], sort_keys=True),
            "model": record["model"]}
    return fingerprint(part)


def describe_run(record: dict) -> str:
    """One line naming the state point and the flow of a ``run.json`` record."""
    system = record["system"]
    where = (describe_system(system_from_dict(system)) if "repr" not in system["potential"]
             else f"{system['name']} (a custom potential)")
    model = record["model"]
    return (f"{where} with a {model.get('num_layers')}-layer flow on the "
            f"{model.get('base')} base")


def checkpoint_stamp(record: dict) -> dict[str, str]:
    """What every checkpoint of a run is stamped with: the identity of its ``run.json``
    ``record`` (``checkpoint_identity``) and its one-line description (``describe_run``).
    Both rebuild the system, so a run computes its stamp once, not at every checkpoint."""
    return {"identity": checkpoint_identity(record), "describes": describe_run(record)}


def save_checkpoint(run_dir: str | os.PathLike, state, stamp: dict[str, str] | None = None):
    """Write the pytree ``state`` (parameters, optimiser state, step) atomically, with the
    run's ``stamp`` (``checkpoint_stamp``) when given."""
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(state))]
    stamp = {key: np.asarray(value) for key, value in (stamp or {}).items()}
    atomic_write_bytes(checkpoint_path(run_dir),
                       npz_bytes(num_leaves=np.asarray(len(leaves)), **stamp,
                                  **{f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}))


def check_checkpoint_identity(run_dir: str | os.PathLike, record: dict):
    """Refuse a checkpoint stamped for another system or model than ``run.json`` names (an
    edited or copied ``run.json``), naming both, or one with no stamp."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return
    try:
        with np.load(path) as data:
            stamp = str(data["identity"]) if "identity" in data.files else None
            there = str(data["describes"]) if "describes" in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"checkpoint {path} is corrupt ({error}); move it away to start "
                         "over, or restore it from a backup") from None
    if stamp is None:
        raise ValueError(f"checkpoint {path} has no identity stamp (written by freeflow 0.1); "
                         "train into a new directory")
    if stamp != checkpoint_identity(record):
        raise ValueError(f"checkpoint {path} was trained for "
                         f"{there or 'another system or model'}, but "
                         f"{Path(run_dir) / RUN_JSON} names {describe_run(record)}; restore "
                         "the original run.json or train into a new directory")


def _checkpoint_leaves(path: Path, first: int | None = None,
                      last: bool = False) -> list[np.ndarray]:
    """The first ``first`` (default all) leaves of a checkpoint, or with ``last`` its last."""
    try:
        with np.load(path) as data:
            count = int(data["num_leaves"])
            if last:
                return [data[f"leaf_{count - 1:05d}"]]
            return [data[f"leaf_{i:05d}"] for i in range(count if first is None
                                                         else min(first, count))]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"checkpoint {path} is corrupt ({error}); move it away to start over, "
                         "or restore it from a backup") from None


def load_checkpoint(run_dir: str | os.PathLike, template, *, prefix: bool = False):
    """The checkpointed state, shaped like ``template``; ``None`` if there is no checkpoint.

    ``prefix=True`` reads only the leading part of the saved pytree that ``template``
    describes: the parameters of a saved ``(params, opt_state, step)`` training state, say,
    whose leaves come first. Raises ``ValueError`` for a corrupt checkpoint or one from another
    model configuration, never silently starting over.
    """
    path = checkpoint_path(run_dir)
    if not path.exists():
        return None
    expected, treedef = jax.tree.flatten(template)
    leaves = _checkpoint_leaves(path, len(expected) if prefix else None)
    mismatch = len(leaves) != len(expected) or any(
        a.shape != np.shape(b) or a.dtype != np.asarray(b).dtype
        for a, b in zip(leaves, expected))
    if mismatch:
        raise ValueError(f"checkpoint {path} does not fit this model and optimiser (different "
                         "layer sizes or structure); it belongs to another configuration")
    return jax.tree.unflatten(treedef, [jnp.asarray(leaf) for leaf in leaves])


def checkpoint_step(run_dir: str | os.PathLike) -> int | None:
    """The training step a run's checkpoint holds (a training state's last leaf), read without
    the model; ``None`` if there is no checkpoint. ``ValueError`` for a corrupt one."""
    path = checkpoint_path(run_dir)
    if not path.exists():
        return None
    return int(_checkpoint_leaves(path, last=True)[0])


# -- metrics ---------------------------------------------------------------------------------


def read_metrics(run_dir: str | os.PathLike, up_to_step: int | None = None) -> list[dict]:
    """Metric records of a run, dropping any written after the checkpoint we resume from."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if up_to_step is None or record.get("step", 0) <= up_to_step:
            records.append(record)
    return records


def write_metrics(run_dir: str | os.PathLike, records: list[dict]):
    atomic_write_bytes(Path(run_dir) / METRICS,
                       "".join(json.dumps(r) + "\n" for r in records).encode())


def append_metrics(run_dir: str | os.PathLike, record: dict):
    with open(Path(run_dir) / METRICS, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def training_cost(run_dir: str | os.PathLike,
                  spec: dict | None = None) -> tuple[int, float, int]:
    """``(last step, wall seconds, energy evaluations)`` of a run's training, from its metrics.

    Wall time sums the gaps between consecutive step records, leaving out gaps more than 20
    times the median (a run stopped and resumed later); the first step's compilation is not
    counted. Evaluations: steps x batch size plus the periodic LFEP evaluations' samples.
    ``spec``: the run's parsed ``run.json`` (read from ``run_dir`` when not given).
    """
    metrics = read_metrics(run_dir)
    if not metrics:
        return 0, 0.0, 0
    times = np.asarray([m.get("time", np.nan) for m in metrics], dtype=np.float64)
    gaps = np.diff(times)
    gaps = gaps[np.isfinite(gaps) & (gaps >= 0)]
    wall = float(np.sum(gaps[gaps <= 20 * np.median(gaps)])) if len(gaps) else 0.0
    step = int(metrics[-1]["step"])
    spec = read_run_record(run_dir) if spec is None else spec
    evals = step * int(spec["training"]["batch_size"])
    evals += sum(int(m.get("eval_samples", 0)) for m in metrics if "eval_ess" in m)
    return step, wall, evals


# -- a trained run ---------------------------------------------------------------------------


def system_of_record(record: dict, where) -> "System":
    """The system a run record names, refused when the record contradicts itself: the
    definition it was built from (``system.definition``, when there is one) must describe the
    same state point as its explicit fields (potential, temperature, cell, sites)."""
    system = system_from_dict(record["system"])
    definition = record["system"].get("definition")
    if definition is not None:
        declared = system_from_definition(definition, source=str(where))
        if system_fingerprint(declared) != system_fingerprint(system):
            raise ValueError(f"{where} contradicts itself: its definition describes "
                             f"{describe_system(declared)}, its system fields "
                             f"{describe_system(system)}; restore the original run.json")
    return system


def load_run(run_dir: str | os.PathLike):
    """``(system, model, params, record)`` of a trained run directory (its last checkpoint);
    ``record`` is the parsed ``run.json``.

    The checkpoint holds the training state ``(params, opt_state, step)``; only its parameters
    are read, which needs no knowledge of the optimiser."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    if record is None:
        raise FileNotFoundError(f"{run_dir} is not a freeflow run directory (no {RUN_JSON}); "
                                "create one with 'freeflow train SYSTEM --out DIR'")
    system = system_of_record(record, run_dir / RUN_JSON)
    check_checkpoint_identity(run_dir, record)
    model = FlowModel(system, model_config_of(record))
    # The shapes are what matter; the values are overwritten by the checkpoint's.
    params = load_checkpoint(run_dir, template=model.init(jax.random.PRNGKey(0)), prefix=True)
    if params is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet; train first "
                                f"('freeflow train {system.name} --out {run_dir}')")
    return system, model, params, record


class RunDir(WorkDir):
    """A training run directory (``freeflow train --out DIR``), the same kind of object as the
    work directories of the estimates (``WorkDir``): ``run.json`` is its settings,
    ``checkpoint.npz`` the state it resumes from and ``metrics.jsonl`` the log of its steps.

    Training refuses other settings itself (``freeflow.workflows.train.check_same_run``, which
    tells a rescheduled run from a different one); a run's checkpoint is also refused when it
    was trained for another system or model (``check_checkpoint_identity``).
    """

    CONFIG = RUN_JSON
    JOB = "a training run"
    OPTION = "--out"

    def read_settings(self) -> dict | None:
        return read_run_record(self.path)

    def write_settings(self, record: dict) -> None:
        write_run_record(self.path, record)

    def resume(self, record: dict, template):
        """``(state, metrics)``: the checkpointed state (``template`` where there is none),
        after checking it belongs to ``record``'s system and model, and the metrics up to its
        step."""
        check_checkpoint_identity(self.path, record)
        state = load_checkpoint(self.path, template=template) or template
        return state, read_metrics(self.path, up_to_step=int(state.step))

    def checkpoint(self, state, stamp: dict[str, str]) -> None:
        save_checkpoint(self.path, state, stamp)

    def checkpoint_file(self) -> Path:
        return checkpoint_path(self.path)

    def write_metrics(self, records: list[dict]) -> None:
        write_metrics(self.path, records)

    def append_metrics(self, record: dict) -> None:
        append_metrics(self.path, record)
