"""freeflow compare: the budget's split, the verdicts in its table, and a whole tiny comparison
that resumes and refuses other settings."""

import dataclasses
import json
import math

import numpy as np
import pytest

import freeflow
from freeflow import cli
from freeflow.cli import flows as cli_flows
from freeflow.cli.common import duration
from freeflow.estimators.result import FreeEnergy
from freeflow.flows.config import ModelConfig
from freeflow.reports.compare import to_text
from freeflow.workflows import compare as cmp
from freeflow.workflows.baseline import PathConfig, mbar_transition_seconds

TINY_MODEL = ModelConfig(num_layers=2, num_bins=8, embedding_size=16, num_heads=2,
                         num_blocks=1, num_frequencies=2, base="harmonic")
TINY = cmp.CompareConfig(budget=40.0, mbar_states=3, mbar_chains=8, smc_particles=16,
                         smc_min_repeats=2, smc_max_repeats=2, target_chains=4, model=TINY_MODEL)
#: Seconds of one HMC transition and one training step, given rather than measured: the
#: measurement compiles a sampler and a training step of its own (the path's transition is
#: timed in ``test_timings_are_measured_on_the_path_mbar_samples``).
TIMINGS = (0.02, 0.05)


def test_split_budget_fills_each_share():
    system = freeflow.load_system("mw_cubic_8")
    config = cmp.CompareConfig(budget=1200.0)
    plan = cmp.split_budget(system, config, transition_seconds=0.01, step_seconds=0.5,
                            spent=30.0)
    # MBAR: K - 1 sampled states of thin transitions per saved sample, plus warm-up.
    per_chain = plan.mbar_samples_per_state / config.mbar_chains
    transitions = (config.mbar_states - 1) * 2 * per_chain + 200 + 14 * 50
    assert transitions * 0.01 == pytest.approx(cmp.SHARES["mbar"] * 1200, rel=0.01)
    # Training: its share less what the timings took.
    assert plan.train_seconds == pytest.approx(cmp.SHARES["train"] * 1200 - 30.0)
    assert plan.train_steps == int((cmp.SHARES["train"] * 1200 - 30.0) / 0.5)
    assert plan.smc_seconds == pytest.approx(cmp.SHARES["smc"] * 1200)
    # Target samples: a third of the flow estimates' share, in transitions of 4 per sample
    # after a warm-up of 150, a transition of 32 chains costing half one of 64.
    estimates = cmp.SHARES["flow_estimates"] * 1200
    assert plan.target_samples == 32 * int((estimates / 3 / (0.01 * 32 / 64) - 150) / 4)
    # Flow samples: the other two thirds, one costing a third of a training step's per-sample
    # cost (the cpu preset's batch of 128).
    assert plan.flow_samples == int(2 * estimates / 3 / (0.5 / (3 * 128)))
    assert 10_000 < plan.flow_samples < 1_000_000


def test_split_budget_floors_on_a_slow_machine():
    system = freeflow.load_system("mw_cubic_8")
    plan = cmp.split_budget(system, cmp.CompareConfig(budget=10.0), transition_seconds=1.0,
                            step_seconds=100.0, spent=60.0)
    assert plan.train_seconds == 0.0 and plan.train_steps == 20
    assert plan.mbar_samples_per_state == 64 * 4
    assert plan.target_samples == 32 * 16 and plan.flow_samples == 10_000


@pytest.mark.parametrize("field, value, words", [
    ("budget", 0.0, "budget must be a positive"), ("budget", math.inf, "budget"),
    ("mbar_states", 1, "mbar_states must be a whole number >= 2"),
    ("smc_max_repeats", 3, "smc_max_repeats (3) must be at least smc_min_repeats (4)"),
    ("counting", "natural", "unknown counting 'natural'"),
])
def test_config_refuses(field, value, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        cmp.CompareConfig(**{field: value})


def _result(method, value, stderr, **kwargs):
    return FreeEnergy(value=value, stderr=stderr, method=method, system="mw_cubic_64",
                      num_samples=kwargs.pop("num_samples", 1000), **kwargs)


def test_table_shows_verdicts_and_deviations():
    results = {
        "mbar": _result("mbar", -25.1634, 3e-4),
        "smc": _result("smc", -25.1630, 4e-4),
        # 50 effective samples: not to be trusted, whatever its value.
        "lfep": _result("lfep", -25.150, 1e-4, ess=0.05, details={"pareto_k": 0.9}),
    }
    plan = cmp.split_budget(freeflow.load_system("mw_cubic_64"), cmp.CompareConfig(), 0.01, 1.0)
    comparison = cmp.Comparison(system="mw_cubic_64", plan=plan, results=results,
                                published=cmp.PUBLISHED["mw_cubic_64"], out=None)
    rows = {row["route"]: row for row in comparison.rows()}
    assert rows["smc"]["sigmas_from_mbar"] == pytest.approx(0.0004 / 5e-4)
    assert rows["mbar"]["sigmas_from_published"] == pytest.approx(
        (-25.1634 + 25.16306) / math.hypot(3e-4, 2e-4))
    assert rows["lfep"]["trustworthy"] is False
    assert rows["lfep"]["effective_samples"] == pytest.approx(50)
    assert rows["lfep"]["untrustworthy_because"] == [
        "50 effective samples (fewer than 100)",
        "the weights have a heavy tail (Pareto k 0.90 > 0.7)"]
    text = to_text(comparison.system, comparison.rows(), comparison.published,
                   comparison.unfinished)
    lfep_line = next(line for line in text.splitlines() if line.startswith("lfep "))
    assert "not trustworthy" in lfep_line and "-25.150" not in lfep_line
    assert "lfep: -25.1500(1) is not trustworthy: 50 effective samples" in text
    assert "not finished: lbar" in text
    smc_line = next(line for line in text.splitlines() if line.startswith("smc "))
    assert "-25.1630(4)" in smc_line and "+0.8" in smc_line


def test_timings_are_measured_on_the_path_mbar_samples():
    system = freeflow.load_system("mw_cubic_8")
    config = PathConfig(num_states=4, num_chains=8)
    transition = mbar_transition_seconds(system, config)
    # One transition (nine gradients) of eight 8-molecule chains: well under a second, more
    # than a microsecond on any machine.
    assert 1e-6 < transition < 1.0
    # The Einstein reference is timed without its pilot run.
    assert 1e-6 < mbar_transition_seconds(
        system, dataclasses.replace(config, reference="einstein")) < 1.0


def test_budget_durations():
    assert duration("20m") == 1200.0 and duration("1.5h") == 5400.0
    assert duration("900s") == 900.0 and duration("20") == 1200.0
    for bad in ("0", "-5m", "soon", "nanm"):
        with pytest.raises(Exception, match="positive duration"):
            duration(bad)


@pytest.fixture(scope="module")
def tiny_comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "mw8"
    return out, cmp.compare("mw_cubic_8", out, TINY, timings=TIMINGS)


def test_tiny_comparison_agrees_with_mbar(tiny_comparison):
    out, comparison = tiny_comparison
    assert set(comparison.results) == set(cmp.ROUTES)
    for route, result in comparison.results.items():
        assert result.method == route and result.system == "mw_cubic_8"
        assert np.isfinite(result.value) and result.stderr > 0
        assert (out / "results" / f"{route}.json").is_file()
        if result.trustworthy and route != "mbar":
            # Fixed seeds: a failure is a real disagreement, not bad luck at 4 sigma.
            assert abs(comparison.deviation(route)) < 4.0, route
    plan = json.loads((out / "plan.json").read_text())
    assert plan["config"]["budget"] == 40.0 and plan["train_steps"] >= 20
    assert comparison.results["smc"].details["repeats"] == 2
    assert plan["train_steps"] == int(cmp.SHARES["train"] * 40.0 / 0.05)
    assert "mbar beta F / N" in (out / "compare.log").read_text()


def test_tiny_comparison_resumes_and_refuses_other_settings(tiny_comparison, monkeypatch,
                                                            capsys):
    out, comparison = tiny_comparison
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()}
    again = cmp.compare("mw_cubic_8", out, TINY)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "results").iterdir()} == stamps
    assert {r: v.value for r, v in again.results.items()} == {
        r: v.value for r, v in comparison.results.items()}
    with pytest.raises(ValueError, match="budget 40.0 there, 80.0 here"):
        cmp.compare("mw_cubic_8", out, dataclasses.replace(TINY, budget=80.0))
    # The command line on the finished directory: the table, and the files beside it.
    monkeypatch.setattr(cli_flows, "CompareConfig", lambda **kw: dataclasses.replace(TINY, **kw))
    assert cli.main(["compare", "mw_cubic_8", "--out", str(out), "--budget", "40s",
                     "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [row["route"] for row in printed["routes"]] == list(cmp.ROUTES)
    assert printed["routes"][0]["beta_f_per_particle"] == comparison.results["mbar"].value
    assert all("trustworthy" in row for row in printed["routes"])
    for name in ("compare.json", "compare.csv", "compare.png"):
        assert (out / name).stat().st_size > 0
    assert cli.main(["compare", "mw_cubic_8", "--out", str(out), "--budget", "1m"]) == 2
    assert "budget 40.0 there, 60.0 here" in capsys.readouterr().err
