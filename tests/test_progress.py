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


def test_showing_false_silences_bars_and_status_lines_of_everything_inside(monkeypatch):
    err, log = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    with progress.showing(False):
        assert progress.shown() is False
        with progress_bar(3, "silenced", "step") as bar:
            bar.update(3)
        progress.status("a status line", log)
    assert progress.shown() is None  # the setting ends with its block
    assert err.getvalue() == ""
    # the log file keeps its history whatever stderr shows
    assert log.getvalue().endswith(" a status line\n")
    progress.status("shown again")
    assert err.getvalue() == "shown again\n"


def test_showing_true_gives_a_bar_even_in_a_log_and_false_argument_wins(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress.showing(True):
        with progress_bar(2, "forced", "step") as bar:
            assert not isinstance(bar, LogLines) and not bar.disable
        with progress_bar(2, "too short to report", "step", enabled=False) as bar:
            assert bar.disable


def test_no_public_function_takes_a_progress_argument():
    """Progress is the context's (``showing``), not a parameter threaded through calls."""
    import importlib
    import inspect
    import pkgutil

    import freeflow
    offenders = []
    for info in pkgutil.walk_packages(freeflow.__path__, "freeflow."):
        if info.name.endswith("__main__"):  # importing it runs the command
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isfunction(obj) and obj.__module__ == info.name
                    and not name.startswith("_")
                    and "progress" in inspect.signature(obj).parameters):
                offenders.append(f"{info.name}.{name}")
    assert offenders == []
