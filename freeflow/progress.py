"""Progress on standard error, the one place where freeflow decides how progress is shown.

On a terminal a ``tqdm`` bar; in a log file (stderr redirected, a batch job) plain lines, one
every ``LOG_INTERVAL`` seconds, so a long job's log says how far it got. Jobs shorter than the
interval print nothing there.

Whether progress is shown is one setting of the calling context, not a parameter of every
function on the way down: ``showing(False)`` around a call silences everything it runs,
``showing(True)`` forces bars, and the default (``None``) is a bar on a terminal and plain
lines in a log. The library's functions take no ``progress`` argument.

Imports nothing else of freeflow, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time

from tqdm import tqdm

__all__ = ["LOG_INTERVAL", "progress_bar", "shown", "showing", "status"]

#: Seconds between two plain progress lines when stderr is not a terminal.
LOG_INTERVAL = 30.0


_SHOWN: contextvars.ContextVar[bool | None] = contextvars.ContextVar("freeflow_progress",
                                                                     default=None)


@contextlib.contextmanager
def showing(enabled: bool | None):
    """Within the block, progress is shown as ``enabled`` says: ``False`` nothing, ``True``
    always a ``tqdm`` bar, ``None`` a bar on a terminal and plain lines otherwise."""
    token = _SHOWN.set(enabled)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def shown() -> bool | None:
    """The calling context's setting (``showing``)."""
    return _SHOWN.get()


def status(text: str, log=None) -> None:
    """One status line: on stderr unless ``showing(False)``, and in ``log`` (an open text file
    or ``None``), time-stamped, whatever the setting (a job's log keeps its history)."""
    if shown() is not False:
        print(text, file=sys.stderr, flush=True)
    if log is not None:
        log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        log.flush()


def progress_bar(total: int, desc: str, unit: str, enabled: bool | None = None, **kwargs):
    """Progress of ``total`` units on stderr, as the context says (``showing``).

    ``enabled`` overrides the context only towards silence: ``False`` shows nothing whatever
    the context (a caller that knows its job is too short to report). Extra keyword arguments
    go to ``tqdm`` (``initial`` is also understood by the plain lines).
    """
    enabled = False if enabled is False else _SHOWN.get()
    if enabled is None and not _is_terminal(sys.stderr):
        return LogLines(total, desc, unit, initial=kwargs.get("initial", 0))
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=not enabled if enabled is not None else None, **kwargs)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LogLines:
    """The part of ``tqdm``'s interface freeflow uses, written as plain lines for logs:
    ``desc: 40/100 step (40%), 1m12s elapsed, about 1m48s left; loss=3.1``."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0,
                 interval: float | None = None):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = initial
        self._interval = LOG_INTERVAL if interval is None else interval
        self._start = self._last = time.monotonic()
        self._postfix = ""
        self._printed = False
        # (time, count) at the first update: the rate is measured from there, because the
        # first unit of a jitted job includes its compilation.
        self._first: tuple[float, int] | None = None

    def update(self, n: int = 1):
        self.n += n
        now = time.monotonic()
        if self._first is None:
            self._first = (now, self.n)
        if now - self._last >= self._interval:
            self._last = now
            self._print(now)

    def set_postfix(self, refresh: bool = True, **values):
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self):
        # A line at the end only for jobs long enough to have reported on the way.
        if self._printed:
            self._print(time.monotonic(), final=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _print(self, now: float, final: bool = False):
        elapsed = now - self._start
        line = f"{self.desc}: {self.n}/{self.total} {self.unit}"
        if self.total:
            line += f" ({100 * self.n / self.total:.0f}%)"
        line += f", {_duration(elapsed)} elapsed"
        if not final and self._first is not None and self.total and self.n < self.total:
            since, counted = now - self._first[0], self.n - self._first[1]
            if counted > 0:
                line += f", about {_duration(since * (self.total - self.n) / counted)} left"
        if self._postfix:
            line += f"; {self._postfix}"
        print(line, file=sys.stderr, flush=True)
        self._printed = True


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
