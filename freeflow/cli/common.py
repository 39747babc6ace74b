"""What several commands share: strict JSON output and the checks of numeric options."""

from __future__ import annotations

import argparse
import json

import numpy as np

__all__ = ["cpu_devices", "duration", "positive", "strict_json"]


def strict_json(data) -> str:
    """JSON text with non-finite numbers written as ``null`` (``NaN`` is not JSON)."""
    def clean(value):
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value
    return json.dumps(clean(data), allow_nan=False)


def positive(value: int, flag: str) -> int:
    if value < 1:
        raise ValueError(f"{flag} must be at least 1; got {value}")
    return value


def duration(text: str) -> float:
    """Seconds of a ``--budget``: ``20m``, ``1.5h``, ``900s`` or plain minutes (``20``)."""
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in scale else (text, "m")
    try:
        seconds = float(number) * scale[unit.lower()]
    except ValueError:
        seconds = float("nan")
    if not (np.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected a positive duration such as 20m, 1.5h or "
                                         f"900s; got {text!r}")
    return seconds


def cpu_devices(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer; got {text!r}")
    return value

