"""The work directories of the resumable estimates: MBAR (``config.json`` and one
``state_###.npz`` per finished state of the path) and SMC (``config.json`` and one
``group_###.npz`` per finished group of runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from freeflow.rundir.files import MBAR_CONFIG, atomic_write_bytes, npz_bytes, write_json


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
                           npz_bytes(lam=lam, components=components,
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
                           npz_bytes(log_z=np.asarray(log_z, np.float64),
                                      positions=np.asarray(positions, np.float32),
                                      info=json.dumps(info)))
