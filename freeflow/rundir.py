"""The run-directory format: the one module that reads and writes freeflow's files.

A training run directory (``freeflow train --out DIR``) holds

* ``run.json``: the system's definition and the model and training configs (``RUN_JSON``);
* ``checkpoint.npz``: the training-state pytree, as numbered leaves (``CHECKPOINT``);
* ``metrics.jsonl``: one JSON record per step (``METRICS``).

An MBAR work directory (``freeflow baseline --workdir DIR``) holds ``config.json`` (the
settings, the Einstein width and the target's energy shift) and one ``state_###.npz`` per
finished state of the path (``MbarWorkdir``); an SMC work directory (``freeflow estimate
--method smc --workdir DIR``) holds ``config.json`` and one ``group_###.npz`` per finished group
of runs (``SmcWorkdir``). Sample files (``freeflow sample --out FILE``) are
``.npz`` or extended XYZ with the system's definition inside (``save_samples``).

Every file but the append-only metrics log is written to a temporary name in the same
directory and renamed over the old one (``os.replace`` is atomic on POSIX), so a run killed at
any moment leaves either the previous or the new file, never a truncated one.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import ase.io
import jax
import jax.numpy as jnp
import numpy as np

from freeflow.estimators.conventions import DEFAULT_COUNTING
from freeflow.estimators.result import FreeEnergy
from freeflow.flows.config import ModelConfig, config_from_dict, config_to_dict
from freeflow.flows.model import FlowModel
from freeflow.physics.system import (
    System,
    describe_system,
    system_fingerprint,
    system_from_definition,
    system_from_dict,
    system_to_dict,
)

RUN_JSON = "run.json"
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
MBAR_CONFIG = "config.json"
LOCK = ".lock"

_XYZ_SUFFIXES = (".extxyz", ".xyz")
#: The suffixes of sample files, in the order ``find_samples`` tries them.
SAMPLE_SUFFIXES = (".npz",) + _XYZ_SUFFIXES


# -- atomic writes -----------------------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike, data: bytes):
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    On failure (a full disk, a read-only directory) the temporary file is removed, ``path``
    keeps its previous content, and ``OSError`` says which file could not be written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as error:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        reason = error.strerror or str(error)
        raise OSError(error.errno, f"cannot write {path}: {reason}"
                      + ("; the previous version is kept" if path.exists() else "")) from None


def check_writable_file(path: str | os.PathLike, suffixes=None) -> Path:
    """Refuse, before any work, an output file that could not be written: a directory, a
    missing or read-only parent, or (``suffixes``) an unsupported format. Creates the parent
    directory if needed. Returns the path."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(f"{path}: unsupported format {path.suffix or '(no suffix)'!r}; use "
                         f"{' or '.join(suffixes)}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file name")
    check_writable_dir(path.parent)
    return path


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create directory ``path`` if needed and refuse one that is not writable (or is a file),
    before any work starts. Returns the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot create directory {path}: "
                                   f"{error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OSError(13, f"cannot write in {path}: permission denied")
    return path


def write_json(path: str | os.PathLike, data):
    """``data`` as indented JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class DirectoryLock:
    """An exclusive lock on a directory that freeflow writes (a run, an MBAR or SMC work
    directory): a second process that tries to write the same directory is refused at once.

    ``with DirectoryLock(path): ...``; the lock is an ``fcntl`` lock on ``path/.lock``, released
    when the holder exits, however it exits (even ``kill -9``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def __enter__(self):
        check_writable_dir(self.path)
        handle = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ValueError(f"{self.path} is in use by {holder}; wait for it to finish or use "
                             "another directory") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"freeflow process {os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None
        return False


# -- run.json ----------------------------------------------------------------------------------


def run_record(system, model_config: ModelConfig, training) -> dict:
    """What ``run.json`` holds for a run (``training``: a ``TrainingConfig``), in the form it
    takes there (tuples become lists)."""
    spec = {"system": system_to_dict(system), "model": config_to_dict(model_config),
            "training": config_to_dict(training)}
    return json.loads(json.dumps(spec))


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
    record = json.dumps(read_run_record(run_dir), sort_keys=True)
    return hashlib.sha256(record.encode()).hexdigest()[:16]


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
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


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
                       _npz_bytes(num_leaves=np.asarray(len(leaves)), **stamp,
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


def _checkpoint_leaves(path: Path, first: int | None = None) -> list[np.ndarray]:
    try:
        with np.load(path) as data:
            count = int(data["num_leaves"])
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


# -- MBAR work directories ---------------------------------------------------------------------


class MbarWorkdir:
    """The files of a resumable MBAR run: ``config.json`` and one ``state_###.npz`` per state.

    A state file holds ``lam`` (its lambda), ``components`` ``[C, S, 2]`` (reference and shifted
    target energies of every saved sample of every chain), ``final_positions`` ``[C, N, 3]`` (to
    continue the chains) and ``info`` (JSON: acceptance, step size, cost, ...).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read_config(self) -> dict | None:
        file = self.path / MBAR_CONFIG
        return json.loads(file.read_text()) if file.is_file() else None

    def write_config(self, record: dict):
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / MBAR_CONFIG, record)

    def state_file(self, index: int) -> Path:
        return self.path / f"state_{index:03d}.npz"

    def read_state(self, index: int, lam: float, num_chains: int):
        """``(components, final_positions, info)`` of a saved state, or ``None``.

        Raises ``ValueError`` if the file belongs to another path (lambda) or chain count.
        """
        file = self.state_file(index)
        if not file.is_file():
            return None
        with np.load(file) as saved:
            if not np.isclose(float(saved["lam"]), lam):
                raise ValueError(f"{file} holds lambda = {float(saved['lam'])}, expected {lam}; "
                                 "use a fresh work directory")
            components = saved["components"]
            positions = saved["final_positions"]
            info = json.loads(str(saved["info"]))
        if components.shape[0] != num_chains:
            raise ValueError(f"{file} holds {components.shape[0]} chains, not {num_chains}; use "
                             "the same number of chains or a fresh work directory")
        return components, positions, info

    def write_state(self, index: int, lam: float, components, final_positions, info: dict):
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.state_file(index),
                           _npz_bytes(lam=lam, components=components,
                                      final_positions=final_positions, info=json.dumps(info)))


class SmcWorkdir:
    """The files of a resumable SMC estimate: ``config.json`` (the settings and the system's
    and start's identity) and one ``group_###.npz`` per finished group of independent runs.

    A group file holds ``log_z`` ``[G]`` (each run's ln Z_fixed), ``positions`` ``[G n, N, 3]``
    (the final particles, target samples) and ``info`` (JSON: temperatures, ESS, acceptance,
    evaluations, wall time).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def check_config(self, record: dict):
        """Write ``record`` as the configuration, or refuse one that differs from the saved."""
        file = self.path / MBAR_CONFIG
        if file.is_file():
            saved = json.loads(file.read_text())
            if saved != record:
                changed = sorted(k for k in set(saved) | set(record)
                                 if saved.get(k) != record.get(k))
                what = "; ".join(f"{k} {saved.get(k)!r} there, {record.get(k)!r} here"
                                 for k in changed)
                raise ValueError(f"{self.path} holds an SMC estimate with other settings "
                                 f"({what}); use the same settings or a fresh --workdir")
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(file, record)

    def group_file(self, index: int) -> Path:
        return self.path / f"group_{index:03d}.npz"

    def read_group(self, index: int):
        """``(log_z [G], positions [G n, N, 3], info)`` of a finished group, or ``None``."""
        file = self.group_file(index)
        if not file.is_file():
            return None
        with np.load(file) as saved:
            return saved["log_z"], saved["positions"], json.loads(str(saved["info"]))

    def write_group(self, index: int, log_z, positions, info: dict):
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.group_file(index),
                           _npz_bytes(log_z=np.asarray(log_z, np.float64),
                                      positions=np.asarray(positions, np.float32),
                                      info=json.dumps(info)))


# -- sample files ------------------------------------------------------------------------------

# Two formats, chosen by the file suffix:
# 
# * ``.npz``: ``positions`` ``[S, N, 3]`` float32, ``box`` ``[3]``, ``energies`` ``[S]`` (if given)
#   and ``system``: JSON text ``{"definition": <the system's TOML definition>}`` (or, for a system
#   built from ``ase.Atoms``, ``{"system": system_to_dict(system)}``), so the file is
#   self-contained.
# * ``.extxyz`` / ``.xyz``: one extended-XYZ frame per sample, written with ``ase.io.write``
#   (periodic cell and ``pbc`` set, so any ASE-based tool reads it). Each frame's comment line
#   carries ``freeflow_system`` (the same JSON text) and ``freeflow_energy`` if energies
#   were given.
# 
# Positions are in the system's length unit, energies in its energy unit.

def _encode_system(system) -> str:
    """JSON text describing ``system``: its declarative definition (named or TOML systems) or,
    for systems built from ``ase.Atoms``, ``system_to_dict``."""
    if system.definition is not None:
        return json.dumps({"definition": system.definition})
    return json.dumps({"system": system_to_dict(system)})


def _decode_system(text: str):
    data = json.loads(text)
    if "definition" in data:
        return system_from_definition(data["definition"])
    return system_from_dict(data["system"])


def save_samples(path: str | os.PathLike, positions, system, energies=None,
                 chains: dict | None = None) -> Path:
    """Write samples ``positions [S, N, 3]`` (or one ``[N, 3]``) of ``system`` to ``path``.

    Returns the path written. The format follows the suffix (``.npz``, ``.extxyz``, ``.xyz``).
    ``chains`` (``.npz`` only): the state of the Markov chains that drew them, ``positions
    [C, N, 3]`` and ``step_size``, so that ``freeflow sample`` can continue them
    (``read_chains``).
    """
    path = Path(path)
    positions = np.asarray(positions, dtype=np.float32)
    if positions.ndim == 2:
        positions = positions[None]
    if positions.ndim != 3 or positions.shape[1:] != (system.num_particles, 3):
        raise ValueError(f"positions must be [S, {system.num_particles}, 3]; "
                         f"got {positions.shape}")
    if energies is not None:
        energies = np.asarray(energies, dtype=np.float64).reshape(-1)
        if len(energies) != len(positions):
            raise ValueError(f"{len(energies)} energies for {len(positions)} samples")
    definition = _encode_system(system)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        extra = {} if energies is None else {"energies": energies}
        if chains is not None:
            extra.update(chain_positions=np.asarray(chains["positions"], np.float32),
                         chain_step_size=np.asarray(float(chains["step_size"])))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, positions=positions, box=np.asarray(system.box),
                            system=np.asarray(definition), **extra)
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix in _XYZ_SUFFIXES:
        frames = []
        for i, x in enumerate(positions):
            atoms = system.atoms.copy()
            atoms.positions = x.astype(np.float64)
            atoms.pbc = True
            atoms.info["freeflow_system"] = definition
            if energies is not None:
                # Not "energy": ASE would turn that into a calculator result.
                atoms.info["freeflow_energy"] = float(energies[i])
            frames.append(atoms)
        text = io.StringIO()
        ase.io.write(text, frames, format="extxyz")
        atomic_write_bytes(path, text.getvalue().encode())
    else:
        raise ValueError(f"unknown sample file format {path.suffix!r}; use .npz or .extxyz")
    return path


def read_chains(path: str | os.PathLike) -> dict | None:
    """The chain state that ``save_samples(..., chains=...)`` stored in a ``.npz`` sample file
    (``positions [C, N, 3]``, ``step_size``), or ``None``."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if "chain_positions" not in data.files:
                return None
            return {"positions": data["chain_positions"],
                    "step_size": float(data["chain_step_size"])}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def find_samples(directory: str | os.PathLike, name: str) -> Path | None:
    """The sample file ``directory/name.npz`` (or ``.extxyz``, ``.xyz``), or ``None``."""
    for suffix in SAMPLE_SUFFIXES:
        path = Path(directory) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def load_samples(path: str | os.PathLike):
    """Read samples written by ``save_samples``.

    Returns:
      ``(positions [S, N, 3] float32, system, energies [S] or None)``; the system is rebuilt
      from the stored definition.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise ValueError(f"unknown sample file format {path.suffix!r}; use .npz or .extxyz")
    hint = ("; sample files are written by 'freeflow sample SYSTEM --out FILE' or "
            "freeflow.save_samples")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                missing = {"positions", "system"} - set(data.files)
                if missing:
                    raise ValueError(f"{path} lacks {', '.join(sorted(missing))}{hint}")
                positions = data["positions"].astype(np.float32)
                definition = str(data["system"])
                energies = data["energies"] if "energies" in data.files else None
        else:
            frames = ase.io.read(path, index=":", format="extxyz")
            if not frames or "freeflow_system" not in frames[0].info:
                raise ValueError(f"{path} has no freeflow system record (a plain extended XYZ "
                                 f"file?){hint}")
            positions = np.stack([a.positions for a in frames]).astype(np.float32)
            definition = frames[0].info["freeflow_system"]
            energies = None
            if all("freeflow_energy" in a.info for a in frames):
                energies = np.asarray([a.info["freeflow_energy"] for a in frames])
        system = _decode_system(definition)
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path} is not a readable sample file ({error}){hint}") from None
    except (OSError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable sample file ({type(error).__name__}: "
                         f"{error}){hint}") from None
    if positions.ndim != 3 or positions.shape[1:] != (system.num_particles, 3):
        raise ValueError(f"{path} holds positions of shape {positions.shape}, not [S, "
                         f"{system.num_particles}, 3] for {system.name}")
    return positions, system, energies


# -- result files --------------------------------------------------------------------------


def read_jsonl(path: str | os.PathLike, numbered: bool = False) -> list:
    """The JSON objects of a JSON-lines file (``(line number, object)`` pairs if
    ``numbered``).

    A last line without its newline that does not parse was cut short by a kill and is left
    out; any other line that is not a JSON object is refused with the file and line named.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file of JSON lines") from None
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                continue  # the last line, cut short by a kill
            raise ValueError(f"{path}:{number}: not a JSON line; fix or remove that line") \
                from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: a JSON line must be an object; got "
                             f"{type(record).__name__}")
        records.append((number, record) if numbered else record)
    return records


def _finite_number(record: dict, key: str, where: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be a finite number; got {value!r}")
    return float(value)


def read_baseline(path: str | os.PathLike,
                  counting: str = DEFAULT_COUNTING, method: str = "mbar"
                  ) -> dict[str, FreeEnergy]:
    """Results of ``method`` (MBAR by default; ``"smc"`` for SMC rows) per system from a
    JSONL file of ``FreeEnergy.to_dict()`` rows (``freeflow baseline --json``, ``freeflow
    estimate --method smc --json``, the files of ``freeflow table --results``), in
    ``counting``.

    Rows marked ``"quick": true`` (pipeline smoke tests) are ignored; of several rows for a
    system the last one wins. A row records its counting, N and the lattice's multiplicity and
    is converted to the counting asked for. A row whose value or error is not a finite
    number, or that lacks those records, is refused with the file and line named.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {str(path)!r} does not exist")
    out = {}
    for number, r in read_jsonl(path, numbered=True):
        # Rows of other methods, smoke tests, and rows of other quantities (an ice
        # difference, say) have no place in this column.
        if r.get("method") != method or r.get("quick") or "system" not in r:
            continue
        where = f"{path}:{number}"
        value = _finite_number(r, "beta_f_per_particle", where)
        stderr = _finite_number(r, "stderr", where)
        missing = [k for k in ("counting", "num_particles", "lattice_multiplicity") if k not in r]
        if missing:
            raise ValueError(f"{where}: a {method} row needs {', '.join(missing)} (written by "
                             "freeflow 0.1 or by hand); re-run the estimate that made it")
        n, m = int(r["num_particles"]), int(r["lattice_multiplicity"])
        out[r["system"]] = FreeEnergy(
            value=value, stderr=stderr, method=method,
            system=r["system"], num_samples=r.get("num_samples"),
            num_states=r.get("num_states"),
            # The importance-sampling ESS of LFEP; other methods' "ess" mean other things.
            ess=r.get("ess") if method == "lfep" else None,
            # A run extended over several sessions: all of its sampling, not the last call.
            wall_time=r.get("sampling_wall_time", r.get("wall_time")),
            energy_evaluations=r.get("energy_evaluations"),
            details={k: r[k] for k in ("samples_per_state", "einstein_width", "reference",
                                       "min_neighbour_overlap", "start", "smc_particles",
                                       "repeats", "base", "preset", "train_steps",
                                       "train_wall_time", "target_samples", "pareto_k")
                     if k in r}
            | {"source": str(path), "counting": r["counting"], "num_particles": n,
               "lattice_multiplicity": m}).recounted(counting)
    return out
