"""The files every kind of freeflow directory shares: atomic writes (a temporary name in the
same directory renamed over the old file, so a killed process leaves the old file or the new one,
never a truncated one), writability checks, the one-writer lock and JSON lines."""

from __future__ import annotations

import fcntl
import io
import json
import os
from pathlib import Path

import numpy as np

from freeflow.parallel import writes_files

RUN_JSON = "run.json"
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
LOCK = ".lock"



# -- atomic writes -----------------------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike, data: bytes):
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    On failure (a full disk, a read-only directory) the temporary file is removed, ``path``
    keeps its previous content, and ``OSError`` says which file could not be written. In a job
    of several processes only process 0 writes (``freeflow.parallel.writes_files``)."""
    if not writes_files():
        return
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


def read_json(path: str | os.PathLike, what: str = "a JSON file"):
    """The object ``write_json`` wrote; one line naming ``path`` and ``what`` it should be for
    a file that is missing, unreadable or not JSON text."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}; give {what}") \
            from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON ({error.msg}, line {error.lineno}); give "
                         f"{what}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not JSON (not UTF-8 text); give {what}") from None


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class DirectoryLock:
    """An exclusive lock on a directory that freeflow writes (a run, an MBAR or SMC work
    directory): a second process that tries to write the same directory is refused at once.

    ``with DirectoryLock(path): ...``; the lock is an ``fcntl`` lock on ``path/.lock``, released
    when the holder exits, however it exits (even ``kill -9``). In a job of several processes
    (``jax.distributed``) process 0 holds it for all of them."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def __enter__(self):
        check_writable_dir(self.path)
        if not writes_files():
            return self
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
