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
    assert "left" not in lines[0] and lines[0].endswith("; acc=0.71")  # no rate yet
    assert "left" in lines[1]
    assert lines[-1].startswith("sampling lj_32: 10/10 step (100%)")
    assert "\r" not in err.getvalue()


def test_time_left_leaves_out_the_first_unit(monkeypatch):
    """A jitted job's first step includes its compilation: a 100 s first step followed by
    1 s steps must not promise 100 s per remaining step."""
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    clock = iter([0.0, 100.0, 101.0, 102.0, 103.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with LogLines(10, "train lj_32", "step", interval=0.0) as bar:
        for _ in range(3):
            bar.update(1)
    lines = err.getvalue().splitlines()
    assert lines[0] == "train lj_32: 1/10 step (10%), 1m40s elapsed"
    assert lines[1] == "train lj_32: 2/10 step (20%), 1m41s elapsed, about 8s left"
    assert lines[2] == "train lj_32: 3/10 step (30%), 1m42s elapsed, about 7s left"


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
