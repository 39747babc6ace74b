"""Run-directory files: atomic checkpoints of a training-state pytree and the metrics log.

Every file is written to a temporary name in the same directory and then renamed over the
old one (``os.replace`` is atomic on POSIX), so a run killed at any moment leaves either the
previous or the new file, never a truncated one.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import jax
import numpy as np

FILENAME = "checkpoint.npz"
METRICS = "metrics.jsonl"


def _atomic_write_bytes(path: Path, data: bytes):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data):
    _atomic_write_bytes(Path(path), (json.dumps(data, indent=2) + "\n").encode())


def save(run_dir: Path, state):
    """Write the pytree ``state`` (parameters, optimiser state, step) atomically."""
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(state))]
    buffer = io.BytesIO()
    np.savez(buffer, num_leaves=np.asarray(len(leaves)),
             **{f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)})
    _atomic_write_bytes(Path(run_dir) / FILENAME, buffer.getvalue())


def load(run_dir: Path, template):
    """The checkpointed state, shaped like ``template``; ``None`` if there is no checkpoint.

    Raises ``ValueError`` for a corrupt checkpoint or one from another model configuration,
    never silently starting over.
    """
    path = Path(run_dir) / FILENAME
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            count = int(data["num_leaves"])
            leaves = [data[f"leaf_{i:05d}"] for i in range(count)]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"checkpoint {path} is corrupt ({error}); move it away to start over, "
                         "or restore it from a backup") from None
    expected, treedef = jax.tree.flatten(template)
    mismatch = len(leaves) != len(expected) or any(
        a.shape != np.shape(b) or a.dtype != np.asarray(b).dtype
        for a, b in zip(leaves, expected))
    if mismatch:
        raise ValueError(f"checkpoint {path} does not fit this model and optimiser (different "
                         "layer sizes or structure); it belongs to another configuration")
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(leaf) for leaf in leaves])


def read_metrics(run_dir: Path, up_to_step: int | None = None) -> list[dict]:
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


def write_metrics(run_dir: Path, records: list[dict]):
    _atomic_write_bytes(Path(run_dir) / METRICS,
                        "".join(json.dumps(r) + "\n" for r in records).encode())


def append_metrics(run_dir: Path, record: dict):
    with open(Path(run_dir) / METRICS, "a") as fh:
        fh.write(json.dumps(record) + "\n")
