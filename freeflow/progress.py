"""Progress bars on standard error, the one place where freeflow decides how progress is shown.

Imports nothing else of freeflow, so every layer may use it.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["progress_bar"]


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None = None, **kwargs):
    """A ``tqdm`` bar on stderr for ``total`` units.

    ``enabled``: ``False`` never shows it, ``True`` always does, ``None`` shows it when stderr
    is a terminal. Extra keyword arguments go to ``tqdm``.
    """
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=None if enabled is None else not enabled, **kwargs)
