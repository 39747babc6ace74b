"""Result tables: value-error formatting, agreement, Markdown and CSV, the baseline and cache."""

import csv
import json
import math
import re

import pytest

from freeflow.estimators.result import FreeEnergy
from freeflow.reports.formatting import format_value_error
from freeflow.reports.table_text import agree_within, to_csv, to_markdown
from freeflow.reports.tables import Row, TableConfig, TableSources, build_table


@pytest.mark.parametrize("value, stderr, text", [
    (3.107965, 0.000012, "3.10797(1)"),
    (3.10797, 0.00012, "3.1080(1)"),
    (2.91916, 0.00091, "2.9192(9)"),
    (-25.1749, 0.0010, "-25.175(1)"),
    (1.0, 0.00096, "1.000(1)"),         # rounding carry moves the decimal place
    (2.5, 0.00025, "2.5000(3)"),       # half up
    (1234.5, 23.0, "1230(20)"),
    (12.3, 2.0, "12(2)"),
    (3.10797, 0.0, "3.107970"),
    (math.nan, 0.1, "nan"),
    (3.1, math.nan, "3.100000(?)"),
    (3.1, math.inf, "3.100000(inf)"),
    (-0.00001, 0.001, "0.000(1)"),
])
def test_format_value_error(value, stderr, text):
    assert format_value_error(value, stderr) == text


def test_format_value_error_rejects_negative_error():
    with pytest.raises(ValueError):
        format_value_error(1.0, -0.1)


def test_agree_within():
    assert agree_within((1.0, 0.1), (1.3, 0.1))       # 2.1 combined sigma
    assert not agree_within((1.0, 0.1), (1.5, 0.1))   # 3.5
    assert not agree_within((1.0, math.nan), (1.0, 0.1))
    assert agree_within(FreeEnergy(2.0, 0.0, "mbar", "x", 1), (2.0, 0.0))


def table_rows():
    lfep = FreeEnergy(3.10797, 0.00012, "lfep", "lj_32", num_samples=100_000, ess=0.25,
                      wall_time=1800.0, energy_evaluations=700_000)
    smc = FreeEnergy(3.1090, 0.0002, "smc", "lj_32", num_samples=8192, wall_time=600.0,
                     energy_evaluations=2_000_000)
    mbar = FreeEnergy(3.1085, 0.0003, "mbar", "lj_32", num_samples=None, wall_time=1234.8,
                      energy_evaluations=9_997_376)
    return [Row("lj_32", 32, lfep=lfep, smc=smc, mbar=mbar),
            Row("mw_cubic_8", 8, notes=["no run"])]


def test_markdown_and_csv(tmp_path):
    text = to_markdown(table_rows())
    assert ("| `lj_32` | 32 | 3.1080(1) | 25% | - | 3.1090(2) | 3.1085(3) | 30 min | 7.0e5 | "
            "- | - | 10 min | 2.0e6 | 20.6 min | 1.0e7 |") in text
    assert "LFEP -1.6" in text and "SMC +1.4" in text and "no run" in text
    path = to_csv(table_rows(), tmp_path / "t.csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[0]["lfep_value"]) == 3.10797 and rows[0]["lbar_value"] == ""
    assert rows[0]["mbar_formatted"] == "3.1085(3)" and rows[1]["notes"] == "no run"
    assert rows[0]["smc_formatted"] == "3.1090(2)"


def test_build_table_without_runs_reads_the_baseline(tmp_path):
    baseline = tmp_path / "baseline.jsonl"
    lines = [{"system": "lj_32", "method": "mbar", "beta_f_per_particle": 9.0, "stderr": 1.0,
              "quick": True},
             {"system": "lj_32", "method": "mbar", "beta_f_per_particle": 2.91916,
              "stderr": 0.00091, "wall_time": 10.0, "energy_evaluations": 100,
              "counting": "bravais", "num_particles": 32, "lattice_multiplicity": 1}]
    baseline.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"cut sh')
    rows = build_table(["lj_32", "mw_cubic_8"],
                       TableSources(runs_dir=tmp_path / "runs", baseline_file=baseline))
    assert rows[0].mbar.value == 2.91916 and rows[0].lfep is None
    assert rows[1].mbar is None and any("no MBAR" in note for note in rows[1].notes)
    assert any("no run" in note for note in rows[0].notes)


@pytest.mark.parametrize("line, words", [
    ('{"system": "lj_32", "method": "mbar", "beta_f_per_particle": NaN, "stderr": 0.1, '
     '"counting": "bravais", "num_particles": 32, "lattice_multiplicity": 1}',
     "baseline.jsonl:1: beta_f_per_particle must be a finite number; got nan"),
    ('{"system": "lj_32", "method": "mbar", "beta_f_per_particle": "2.9", "stderr": 0.1, '
     '"counting": "bravais", "num_particles": 32, "lattice_multiplicity": 1}',
     "baseline.jsonl:1: beta_f_per_particle must be a finite number; got '2.9'"),
    ("this is not JSON", "baseline.jsonl:1: not a JSON line; fix or remove that line"),
    ('{"system": "lj_32", "method": "mbar", "beta_f_per_particle": 2.9, "stderr": 0.1}',
     "baseline.jsonl:1: a mbar row needs counting, num_particles, lattice_multiplicity"),
])
def test_malformed_result_rows_are_refused_with_file_and_line(tmp_path, line, words):
    baseline = tmp_path / "baseline.jsonl"
    baseline.write_text(line + "\n" + json.dumps({"system": "mw_cubic_8"}) + "\n")
    with pytest.raises(ValueError, match=re.escape(words)):
        build_table(["lj_32"], TableSources(baseline_file=baseline))


def test_table_cache_is_shared_by_relative_and_absolute_run_paths(tiny_run, tmp_path,
                                                                   monkeypatch):
    cache = tmp_path / "cache.jsonl"
    runs = tiny_run.parent
    config = TableConfig(num_samples=64, check_preset=False)
    first = build_table(["mw_cubic_8"], TableSources(runs_dir=runs, cache_file=cache), config)
    lines = cache.read_text().splitlines()
    monkeypatch.chdir(runs.parent)
    second = build_table(["mw_cubic_8"], TableSources(runs_dir=runs.name, cache_file=cache),
                         config)
    assert cache.read_text().splitlines() == lines  # nothing recomputed
    assert second[0].lfep.value == first[0].lfep.value


def test_build_table_reads_stored_flow_rows_where_there_is_no_run(tmp_path):
    flows = tmp_path / "flow_estimates.jsonl"
    common = {"system": "mw_cubic_8", "num_samples": 1000, "base": "harmonic",
              "train_steps": 1200, "train_wall_time": 800.0, "counting": "bravais",
              "num_particles": 8, "lattice_multiplicity": 2}
    lines = [{**common, "method": "lfep", "beta_f_per_particle": -25.17, "stderr": 4e-4,
              "ess": 0.012, "wall_time": 900.0, "energy_evaluations": 250_000},
             {**common, "method": "lbar", "beta_f_per_particle": -25.163, "stderr": 2e-4,
              "wall_time": 950.0, "energy_evaluations": 260_000, "target_samples": 8192}]
    lines.append({**common, "system": "lj_32", "method": "lbar", "preset": "paper",
                  "beta_f_per_particle": 2.9, "stderr": 1e-3})  # not the cpu table's
    flows.write_text("".join(json.dumps(r) + "\n" for r in lines))
    rows = build_table(["mw_cubic_8", "lj_32"],
                       TableSources(runs_dir=tmp_path / "runs", flow_file=flows))
    ice, lj = rows
    assert (ice.lfep.value, ice.lfep.ess, ice.lfep.wall_time) == (-25.17, 0.012, 900.0)
    assert (ice.lbar.value, ice.lbar.stderr, ice.lbar.energy_evaluations) == (-25.163, 2e-4,
                                                                              260_000)
    assert not any("no run" in note for note in ice.notes)
    assert any("harmonic-base flow trained 1200 steps" in note and "8192 HMC" in note
               for note in ice.notes)
    assert lj.lfep is None and lj.lbar is None and any("no run" in n for n in lj.notes)
    text = to_markdown(rows)
    assert "| `mw_cubic_8` | 8 | -25.1700(4) | 1.2% | -25.1630(2) |" in text

    # A run of the system that the table cannot use: the stored rows stand in, and the note
    # says why the run was not used.
    (tmp_path / "runs" / "mw_cubic_8").mkdir(parents=True)
    (tmp_path / "runs" / "mw_cubic_8" / "run.json").write_text(
        json.dumps({"model": {"num_layers": 1, "base": "harmonic"},
                    "training": {"num_steps": 10}}))
    ice = build_table(["mw_cubic_8"], TableSources(runs_dir=tmp_path / "runs", flow_file=flows))[0]
    assert ice.lbar.value == -25.163
    assert any("another model configuration" in note for note in ice.notes)


def test_stored_rows_of_a_base_alone_say_so(tmp_path):
    flows = tmp_path / "flow_estimates.jsonl"
    row = {"system": "mw_cubic_8", "method": "lbar", "beta_f_per_particle": -25.163,
           "stderr": 2e-4, "num_samples": 1000, "base": "harmonic", "train_steps": 0,
           "train_wall_time": 0.0, "counting": "bravais", "num_particles": 8,
           "lattice_multiplicity": 2, "target_samples": 512}
    flows.write_text(json.dumps(row) + "\n")
    ice = build_table(["mw_cubic_8"], TableSources(runs_dir=tmp_path / "runs", flow_file=flows))[0]
    assert ice.lbar.value == -25.163
    assert any("the harmonic base alone (no training)" in note and "trained" not in note
               for note in ice.notes), ice.notes
    assert "effective samples" not in to_markdown([ice])
    # An LFEP of 1000 samples at ESS 2% rests on 20 of them: the table says so.
    lfep = {**row, "method": "lfep", "ess": 0.02, "beta_f_per_particle": -25.16}
    flows.write_text(json.dumps(row) + "\n" + json.dumps(lfep) + "\n")
    ice = build_table(["mw_cubic_8"], TableSources(runs_dir=tmp_path / "runs", flow_file=flows))[0]
    assert "LFEP rests on 20 effective samples (fewer than 100)" in to_markdown([ice])
