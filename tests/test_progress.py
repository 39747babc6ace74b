"""Progress reporting: tqdm on a terminal, plain lines in a log."""

import io
import sys

from freeflow import progress
from freeflow.progress import LogLines, progress_bar


def test_log_lines_report_on_the_way_and_at_the_end(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with LogLines(10, "sampling lj_32", "step", interval=0.0) as bar:
        for _ in range(10):
            bar.set_postfix(acc="0.71")
            bar.update(1)
    lines = err.getvalue().splitlines()
    assert len(lines) == 11  # one per update and a final one
    assert lines[0].startswith("sampling lj_32: 1/10 step (10%), ")
    assert "left" in lines[0] and lines[0].endswith("; acc=0.71")
    assert lines[-1].startswith("sampling lj_32: 10/10 step (100%)")
    assert "\r" not in err.getvalue()


def test_short_jobs_print_nothing_to_a_log(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress_bar(5, "quick", "step") as bar:  # stderr is not a terminal
        assert isinstance(bar, LogLines)
        bar.update(5)
    assert err.getvalue() == ""


def test_progress_bar_off_and_log_interval(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    with progress_bar(3, "off", "step", enabled=False) as bar:
        bar.update(3)
    with progress_bar(3, "logged", "step") as bar:
        bar.update(3)
    assert "off" not in err.getvalue()
    assert err.getvalue().startswith("logged: 3/3 step (100%)")
