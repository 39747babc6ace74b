"""The command line: JSON output, structure files, one-line errors, the systems table."""

import json

import numpy as np
import pytest

from freeflow import load_system
from freeflow.cli import main
from freeflow.physics.system_files import systems_directory


def empty_results(tmp_path):
    """A results directory with an empty SMC file: no stored MBAR, SMC or flow rows."""
    directory = tmp_path / "results"
    directory.mkdir(exist_ok=True)
    (directory / "smc.jsonl").write_text("")
    return directory


def test_cli_energy_json(capsys):
    assert main(["energy", "mw_cubic_8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"system", "num_particles", "energy_per_particle", "beta_energy_per_particle"} <= set(
        result)
    assert result["num_particles"] == 8
    assert result["beta_energy_per_particle"] == pytest.approx(
        result["energy_per_particle"] * 2.51609, rel=1e-5)


def test_cli_energy_of_structure_file(tmp_path, capsys):
    system = load_system("lj_32")
    atoms = system.atoms.copy()
    atoms.positions += 0.05
    path = tmp_path / "shifted.extxyz"
    atoms.write(path)
    assert main(["energy", "lj_32", "--structure", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["energy_per_particle"] == pytest.approx(system.lattice_energy() / 32, rel=1e-5)


def test_cli_errors_are_messages_not_tracebacks(capsys):
    assert main(["energy", "lj_33"]) == 2
    err = capsys.readouterr().err
    assert "unknown system 'lj_33'" in err and "Traceback" not in err


def test_cli_systems_table(capsys, monkeypatch, tmp_path):
    # Two systems are enough to check the table; a folder of definitions stands in for all.
    for name in ("lj_32", "mw_cubic_8"):
        (tmp_path / f"{name}.toml").write_text((systems_directory() / f"{name}.toml").read_text())
    monkeypatch.setenv("FREEFLOW_SYSTEMS_DIR", str(tmp_path))
    assert main(["systems"]) == 0
    out = capsys.readouterr().out
    assert "lj_32" in out and "mw_cubic_8" in out and "-6.30323" in out and "-12.37799" in out


def test_cli_train_takes_the_base_learning_rate_gradient_and_layers(tmp_path, capsys):
    from freeflow.cli import main
    out = tmp_path / "run"
    assert main(["train", "mw_cubic_8", "--base", "einstein", "--learning-rate", "1e-4",
                 "--gradient", "path", "--layers", "3", "--steps", "2", "--batch-size", "8",
                 "--out", str(out)]) == 0
    spec = json.loads((out / "run.json").read_text())
    assert spec["model"]["base"] == "einstein"
    assert spec["model"]["num_layers"] == 3
    assert spec["training"]["learning_rate"] == 1e-4
    assert spec["training"]["gradient_estimator"] == "path"
    # The preset's warm-up scales with the steps like its decays (200 of 4000 -> 0 of 2).
    assert spec["training"]["warmup_steps"] == 0
    # The Einstein base is ~4 nats from mw_cubic_8: a few effective samples of 256, heavy tail.
    capsys.readouterr()
    assert main(["estimate", str(out), "--samples", "256"]) == 0
    printed = capsys.readouterr()
    assert "Pareto k of the weights' tail" in printed.out
    assert "warning:" in printed.err and "not trustworthy" in printed.err
    assert main(["estimate", str(out), "--samples", "256", "--json"]) == 0
    assert np.isfinite(json.loads(capsys.readouterr().out)["pareto_k"])


def test_cli_diagnose_rejects_missing_run(tmp_path):
    assert main(["diagnose", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2


def test_cli_sample_baseline_estimate_and_table_print_json(tmp_path, tiny_run, capsys):
    out = tmp_path / "ref.npz"
    assert main(["sample", "mw_cubic_8", "--out", str(out), "--samples", "16", "--chains", "4",
                 "--warmup", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_saved"] == 16 and out.is_file()
    assert main(["baseline", "mw_cubic_8", "--states", "2", "--samples-per-state", "32",
                 "--chains", "4", "--warmup", "20", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["reference"] == "harmonic" and row["counting"] == "bravais"
    assert main(["estimate", str(tiny_run), "--samples", "64", "--json",
                 "--counting", "exact"]) == 0
    assert json.loads(capsys.readouterr().out)["counting"] == "exact"
    assert main(["table", "--systems", "mw_cubic_8", "--runs", str(tiny_run.parent),
                 "--results", str(empty_results(tmp_path)), "--samples", "64", "--cache", str(tmp_path / "c.jsonl"),
                 "--preset", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "| `mw_cubic_8` | 8 |" in text
