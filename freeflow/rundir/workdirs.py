"""Work directories: where a resumable job keeps its settings, its finished parts and its log.

Every kind shares one object, ``WorkDir``: ``with WorkDir.open(path) as work`` creates the
directory (refusing one that cannot be written), takes the one-writer lock
(``DirectoryLock``) and opens the log; ``work.check_settings(record)`` writes the job's
settings on the first call and refuses, in one line naming every key that differs, a later
call with other settings; ``work.log(text)`` is a status line on stderr and a time-stamped line
in the log. The kinds differ only in their parts:

* ``MbarWorkdir`` (``freeflow baseline --workdir``): one ``state_###.npz`` per finished state of
  the MBAR path;
* ``SmcWorkdir`` (``freeflow estimate --method smc --workdir``): one ``group_###.npz`` per
  finished group of independent runs;
* ``SweepWorkdir`` (``freeflow sweep --route smc --out``): one ``stage_###.npz`` per finished
  temperature;
* ``LadderWorkdir`` (``freeflow sweep --out``, the MBAR route): the anchor's MBAR work directory
  in ``anchor/`` and one ``temperature_###.npz`` of HMC chains per finished temperature;
* ``RunDir`` (``freeflow train --out``, in ``freeflow.rundir.runs``): ``run.json`` as its
  settings, the checkpoint it resumes from and its metrics;
* ``CompareWorkdir`` (``freeflow compare --out``): ``plan.json`` as its settings, ``compare.log``,
  and each route's estimate as JSON in ``results/`` (the routes keep their own work
  directories inside).

Each writes its files atomically (``atomic_write_bytes``), so a job killed at any moment
leaves whole parts, and a rerun continues after the last one.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from freeflow.fingerprint import json_form
from freeflow.progress import status
from freeflow.rundir.files import (DirectoryLock, atomic_write_bytes, check_writable_dir,
                                   npz_bytes, write_json)

__all__ = ["CompareWorkdir", "LadderWorkdir", "MbarWorkdir", "SmcWorkdir", "SweepWorkdir",
           "WorkDir", "settings_differences"]


def settings_differences(saved: dict, wanted: dict, ignore=()) -> list[str]:
    """``"KEY SAVED there, WANTED here"`` for every key (but ``ignore``) whose values differ;
    ``"KEY differs"`` where either value is too long to read in one line (a definition)."""
    keys = sorted(k for k in set(saved) | set(wanted)
                  if k not in ignore and saved.get(k) != wanted.get(k))
    out = []
    for k in keys:
        there, here = repr(saved.get(k)), repr(wanted.get(k))
        out.append(f"{k} differs" if max(len(there), len(here)) > 60
                   else f"{k} {there} there, {here} here")
    return out


class WorkDir:
    """A resumable job's directory (module docstring).

    Class attributes a kind may change: ``CONFIG`` (the settings file), ``LOG`` (the log file,
    or ``None``), ``JOB`` (what the refusals call the job) and ``OPTION`` (the option that
    names the directory, for the advice to use a fresh one).
    """

    CONFIG = "config.json"
    LOG: str | None = None
    JOB = "job"
    OPTION = "--workdir"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._log = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike | None):
        """``with Kind.open(path) as work``: the directory created, locked and its log open
        for the block; ``None`` yields ``None`` (a job that keeps nothing)."""
        if path is None:
            yield None
            return
        work = cls(check_writable_dir(path))
        with DirectoryLock(work.path), contextlib.ExitStack() as stack:
            if cls.LOG is not None:
                work._log = stack.enter_context(open(work.path / cls.LOG, "a"))
            try:
                yield work
            finally:
                work._log = None

    def log(self, text: str) -> None:
        """A status line on stderr (``freeflow.progress.status``) and in the log file."""
        status(text, self._log)

    # -- settings --------------------------------------------------------------------------

    def read_settings(self) -> dict | None:
        file = self.path / self.CONFIG
        return json.loads(file.read_text()) if file.is_file() else None

    def write_settings(self, record: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / self.CONFIG, record)

    def refuse_other_settings(self, saved: dict, record: dict, *, within: str | None = None,
                              ignore=()) -> None:
        """Refuse (``ValueError``, one line naming every key that differs) a ``record`` that
        differs from ``saved`` in any key but ``ignore``; ``within``: compare only that entry
        of both (the rest is the job's own bookkeeping)."""
        there, here = (saved, record) if within is None else (saved[within], record[within])
        differ = settings_differences(there, json_form(here), ignore)
        if differ:
            raise ValueError(f"{self.path} holds {self.JOB} with other settings "
                             f"({'; '.join(differ)}); use the same settings to continue it, "
                             f"or a fresh {self.OPTION}")

    def check_settings(self, record: dict, *, within: str | None = None,
                       ignore=()) -> dict | None:
        """Refuse other settings (``refuse_other_settings``), then keep ``record`` as the
        job's settings (written on the first call, and again where an ``ignore``d key
        changed). Returns the record saved before (``None`` on the first call)."""
        saved = self.read_settings()
        if saved is not None:
            self.refuse_other_settings(saved, record, within=within, ignore=ignore)
        if saved != json_form(record):
            self.write_settings(record)
        return saved

    # -- parts -----------------------------------------------------------------------------

    def write_result(self, name: str | os.PathLike, data) -> Path:
        """``data`` as JSON in ``name`` (a path inside the directory), written atomically."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data)
        return path

    def _part(self, stem: str, index: int) -> Path:
        return self.path / f"{stem}_{index:03d}.npz"

    def _read_part(self, stem: str, index: int) -> dict | None:
        """The arrays of a finished part, with its ``info`` decoded, or ``None``."""
        file = self._part(stem, index)
        if not file.is_file():
            return None
        with np.load(file) as saved:
            part = {k: saved[k] for k in saved.files}
        part["info"] = json.loads(str(part["info"]))
        return part

    def _write_part(self, stem: str, index: int, info: dict, **arrays) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self._part(stem, index), npz_bytes(info=json.dumps(info), **arrays))


class MbarWorkdir(WorkDir):
    """A resumable MBAR run: ``config.json`` and one ``state_###.npz`` per state.

    A state file holds ``lam`` (its lambda), ``components`` ``[C, S, 2]`` (reference and shifted
    target energies of every saved sample of every chain), ``final_positions`` ``[C, N, 3]`` (to
    continue the chains) and ``info`` (JSON: acceptance, step size, cost, ...).
    """

    JOB = "an MBAR run"

    def state_file(self, index: int) -> Path:
        return self._part("state", index)

    def read_state(self, index: int, lam: float, num_chains: int):
        """``(components, final_positions, info)`` of a saved state, or ``None``.

        Raises ``ValueError`` if the file belongs to another path (lambda) or chain count.
        """
        part = self._read_part("state", index)
        if part is None:
            return None
        file = self.state_file(index)
        if not np.isclose(float(part["lam"]), lam):
            raise ValueError(f"{file} holds lambda = {float(part['lam'])}, expected {lam}; "
                             "use a fresh work directory")
        components = part["components"]
        if components.shape[0] != num_chains:
            raise ValueError(f"{file} holds {components.shape[0]} chains, not {num_chains}; use "
                             "the same number of chains or a fresh work directory")
        return components, part["final_positions"], part["info"]

    def write_state(self, index: int, lam: float, components, final_positions, info: dict):
        self._write_part("state", index, info, lam=lam, components=components,
                         final_positions=final_positions)


class SmcWorkdir(WorkDir):
    """A resumable SMC estimate: ``config.json`` (the settings and the system's and start's
    identity) and one ``group_###.npz`` per finished group of independent runs.

    A group file holds ``log_z`` ``[G]`` (each run's ln Z_fixed), ``positions`` ``[G n, N, 3]``
    (the final particles, target samples) and ``info`` (JSON: temperatures, ESS, acceptance,
    evaluations, wall time).
    """

    JOB = "an SMC estimate"

    def group_file(self, index: int) -> Path:
        return self._part("group", index)

    def read_group(self, index: int):
        """``(log_z [G], positions [G n, N, 3], info)`` of a finished group, or ``None``."""
        part = self._read_part("group", index)
        return None if part is None else (part["log_z"], part["positions"], part["info"])

    def write_group(self, index: int, log_z, positions, info: dict):
        self._write_part("group", index, info, log_z=np.asarray(log_z, np.float64),
                         positions=np.asarray(positions, np.float32))


class SweepWorkdir(WorkDir):
    """A resumable temperature sweep of one system: ``sweep_config.json``, ``sweep.log`` and
    one ``stage_###.npz`` per finished temperature.

    A stage file holds ``log_z`` ``[R]`` (each run's ln Z increment of the stage),
    ``positions`` ``[R, n, 3P]`` (the whitened particles at its temperature), ``energies``
    ``[R, n]`` and ``info`` (JSON: the temperature, the annealing's diagnostics).
    """

    CONFIG = "sweep_config.json"
    LOG = "sweep.log"
    JOB = "a sweep"
    OPTION = "--out"

    def stage_file(self, index: int) -> Path:
        return self._part("stage", index)

    def read_stage(self, index: int, temperature: float):
        """``(log_z, positions, energies, info)`` of a finished stage, or ``None``; refuses a
        stage of another temperature."""
        part = self._read_part("stage", index)
        if part is None:
            return None
        saved = part["info"]["temperature"]
        if abs(saved - temperature) > 1e-9:
            raise ValueError(f"{self.path} holds a sweep whose temperature {index + 1} is "
                             f"{saved:g}, not {temperature:g}; sweep the same temperatures "
                             "(more may follow) or use a fresh --out")
        return part["log_z"], part["positions"], part["energies"], part["info"]

    def write_stage(self, index: int, log_z, positions, energies, info: dict):
        self._write_part("stage", index, info, log_z=np.asarray(log_z, np.float64),
                         positions=np.asarray(positions),
                         energies=np.asarray(energies, np.float64))


class CompareWorkdir(WorkDir):
    """A resumable comparison of routes: ``plan.json`` (the plan, with the settings it was
    made for), ``compare.log`` and one ``results/ROUTE.json`` per finished route."""

    CONFIG = "plan.json"
    LOG = "compare.log"
    JOB = "a comparison"
    OPTION = "--out"

    def result_file(self, route: str) -> Path:
        return self.path / "results" / f"{route}.json"

    def read_result(self, route: str) -> dict | None:
        file = self.result_file(route)
        return json.loads(file.read_text()) if file.is_file() else None


class LadderWorkdir(WorkDir):
    """A resumable MBAR route along temperature: ``ladder_config.json``, ``ladder.log``, the
    anchor's MBAR work directory ``anchor/`` and one ``temperature_###.npz`` per finished
    temperature.

    A temperature file holds ``energies`` and ``volume_derivatives`` ``[C, S]`` (every saved
    sample of every chain), ``final_positions`` ``[C, N, 3]`` (where the next temperature's
    chains start) and ``info`` (JSON: the temperature, acceptance, step size, cost).
    """

    CONFIG = "ladder_config.json"
    LOG = "ladder.log"
    JOB = "an MBAR ladder"
    OPTION = "--out"

    def temperature_file(self, index: int) -> Path:
        return self._part("temperature", index)

    def read_temperature(self, index: int, temperature: float) -> dict | None:
        """The finished temperature ``index`` as written, or ``None``; refuses one of another
        temperature."""
        part = self._read_part("temperature", index)
        if part is not None and abs(part["info"]["temperature"] - temperature) > 1e-9:
            raise ValueError(f"{self.path} holds a ladder whose temperature {index + 1} is "
                             f"{part['info']['temperature']:g}, not {temperature:g}; use the "
                             "same temperatures (more may follow) or a fresh --out")
        return part

    def write_temperature(self, index: int, part: dict) -> None:
        self._write_part("temperature", index, part["info"],
                         energies=np.asarray(part["energies"], np.float64),
                         volume_derivatives=np.asarray(part["volume_derivatives"], np.float64),
                         final_positions=np.asarray(part["final_positions"], np.float32))
