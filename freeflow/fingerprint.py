"""One identity scheme for everything freeflow checks before it resumes or reuses work.

A fingerprint is the first 16 hex digits of the SHA-256 of a canonical form: JSON with sorted
keys for records (a system's identity, a run's settings, a checkpoint's system and model), the
float64 bytes for arrays (a start density's parameters). Equal inputs give equal
fingerprints in every process and session; any change of a value changes it.

Imports nothing else of freeflow, so every layer may use it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

__all__ = ["array_fingerprint", "fingerprint", "json_form"]

#: Hex digits kept: 64 bits, ample against accidental collisions between runs.
LENGTH = 16


def fingerprint(record) -> str:
    """The fingerprint of JSON-able ``record`` (keys sorted, so their order does not matter)."""
    text = json.dumps(record, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]


def json_form(record):
    """``record`` as it reads back from a JSON file: tuples become lists, numpy scalars and
    arrays become numbers and lists. Settings are compared and fingerprinted in this form,
    so that a record read back equals the one that was written."""
    return json.loads(json.dumps(record, default=_plain))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def array_fingerprint(arrays) -> str:
    """The fingerprint of a sequence of arrays, by their values as float64 (shape-blind:
    callers fingerprint arrays whose shapes the rest of their record fixes)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array, np.float64)).tobytes())
    return digest.hexdigest()[:LENGTH]
