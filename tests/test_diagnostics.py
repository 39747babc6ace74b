"""g(r) and coordination numbers, the plots, diagnose on a tiny run, and the result tables."""

import csv
import json
import math

import numpy as np
import pytest

import freeflow
from freeflow import diagnostics
from freeflow.diagnostics import coordination_number, first_peak, radial_distribution
from freeflow.tables import (Entry, Row, agree_within, build_table, format_value_error,
                             to_csv, to_markdown)


def test_rdf_of_uniform_points_is_one_within_poisson_noise():
    rng = np.random.default_rng(1)
    box = np.array([3.0, 3.6, 4.2])  # non-cubic: r_max is set by the shortest edge
    m, n, bins = 400, 64, 40
    x = rng.random((m, n, 3)) * box
    r, g = radial_distribution(x, box, num_bins=bins)
    assert r[-1] < 1.5 and len(r) == bins
    # Expected unordered-pair count per bin for an ideal gas; the counts are nearly Poisson.
    edges = np.linspace(0, 1.5, bins + 1)
    expected = m * n * (n - 1) / 2 * 4 / 3 * np.pi * np.diff(edges**3) / np.prod(box)
    assert expected[0] > 3  # even the smallest shell has a few pairs
    sigma = 1 / np.sqrt(expected)  # relative Poisson error of g in each bin
    assert np.all(np.abs(g - 1) < 5 * sigma), np.max(np.abs(g - 1) / sigma)
    chi2 = np.sum((g - 1) ** 2 / sigma**2) / bins
    assert abs(chi2 - 1) < 5 * np.sqrt(2 / bins)
    # The pooled normalisation (0.2% error here) catches an N vs N - 1 slip (1.6%).
    pooled = np.sum(g * expected) / np.sum(expected)
    assert abs(pooled - 1) < 4 / np.sqrt(np.sum(expected))


def test_rdf_of_fcc_peaks_at_nearest_neighbour_with_coordination_12():
    system = freeflow.load_system("lj_108")
    d = system.nearest_neighbour_distance
    rng = np.random.default_rng(0)
    x = system.lattice + 0.01 * d * rng.standard_normal((20,) + system.lattice.shape)
    r, g = radial_distribution(x, system.box, num_bins=200)
    assert abs(first_peak(r, g) - d) <= r[1] - r[0]
    # The first minimum lies between the first (d) and second (sqrt(2) d) shells.
    rho_other = (system.num_particles - 1) / system.volume
    assert abs(coordination_number(r, g, rho_other, 0.0, 1.2 * d) - 12) < 0.05
    assert abs(coordination_number(r, g, rho_other, 1.2 * d, 1.6 * d) - 6) < 0.05


def test_first_peak_of_ice_is_the_nearest_neighbour_shell_not_the_highest():
    # Diamond: 4 neighbours at d, 12 at 1.63 d; the second peak of g is the higher one.
    system = freeflow.load_system("mw_cubic_64")
    d = system.nearest_neighbour_distance
    rng = np.random.default_rng(1)
    x = system.lattice + 0.03 * d * rng.standard_normal((20,) + system.lattice.shape)
    r, g = radial_distribution(x, system.box, num_bins=120)
    assert r[np.argmax(g)] > 1.5 * d
    assert abs(first_peak(r, g) - d) <= r[1] - r[0]
    assert np.isnan(first_peak(r, np.ones_like(r)))


def test_rdf_rejects_r_max_beyond_half_box():
    box = np.array([2.0, 3.0, 4.0])
    x = np.zeros((1, 4, 3))
    with pytest.raises(ValueError, match="half the shortest box edge"):
        radial_distribution(x, box, r_max=1.01)
    r, _ = radial_distribution(x + np.arange(4)[:, None] * 0.1, box, r_max=1.0, num_bins=10)
    assert r[-1] == pytest.approx(0.95)


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
    assert agree_within(Entry(2.0, 0.0), (2.0, 0.0))


def synthetic_metrics(steps=300):
    rng = np.random.default_rng(0)
    out = []
    for s in range(1, steps + 1):
        loss = 100 * (3 + 5 * np.exp(-s / 40)) + rng.normal()
        out.append({"step": s, "loss": loss, "ess": min(1.0, 0.001 * s * rng.random()),
                    "grad_norm": 1.0, "beta_f_per_particle_batch": 3 + np.exp(-s / 40)
                    + 0.01 * rng.normal(), "time": 1000.0 + s})
        if s % 100 == 0:
            out[-1].update(eval_beta_f_per_particle=3.0, eval_ess=0.2, eval_samples=64)
    return out


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(0)
    r = np.linspace(0.01, 1.5, 100)
    g = 1 + np.exp(-((r - 1) / 0.1) ** 2)
    work = 300 + rng.gamma(2.0, 1.0, 500)
    written = [
        diagnostics.plot_rdf({"model": (r, g), "reference": (r, 0.9 * g)}, tmp_path / "a.png",
                             "sigma", nearest_neighbour=1.0),
        diagnostics.plot_energy_histograms({"base": rng.normal(-6, 0.1, 300),
                                            "model": np.r_[rng.normal(-6.2, 0.1, 300), np.inf]},
                                           tmp_path / "b.png"),
        diagnostics.plot_work_histogram(work, 100, tmp_path / "c.png"),
        diagnostics.plot_training_curves(synthetic_metrics(), tmp_path / "d.png", 100,
                                         reference=(3.0, 0.01)),
        diagnostics.plot_running_estimate(work, 100, tmp_path / "e.png", beta_f_offset=1.0,
                                          references={"MBAR": (-2.0, 0.01)}),
        diagnostics.plot_training_curves([], tmp_path / "f.png", 100),
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 1000


def test_running_lfep_matches_direct_estimate():
    work = np.random.default_rng(0).normal(10.0, 1.0, 1000)
    n, est, err, ess = diagnostics.running_lfep(work, 10, beta_f_offset=0.5)
    from scipy.special import logsumexp
    direct = 0.5 - (logsumexp(-work[:100]) - np.log(100)) / 10
    assert est[99] == pytest.approx(direct)
    assert 0 < ess[-1] < 1 and err[-1] > 0


def table_rows():
    lfep = Entry(3.10797, 0.00012, ess=0.25, wall_time=1800.0, energy_evaluations=700_000,
                 num_samples=100_000)
    mbar = Entry(3.1085, 0.0003, wall_time=1234.8, energy_evaluations=9_997_376)
    return [Row("lj_32", 32, lfep=lfep, mbar=mbar),
            Row("mw_cubic_8", 8, notes=["no run"])]


def test_markdown_and_csv(tmp_path):
    text = to_markdown(table_rows())
    assert "| `lj_32` | 32 | 3.1080(1) | 25% | - | 3.1085(3) | 30 min | 7.0e5 |" in text
    assert "LFEP -1.6" in text and "no run" in text
    path = to_csv(table_rows(), tmp_path / "t.csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[0]["lfep_value"]) == 3.10797 and rows[0]["lbar_value"] == ""
    assert rows[0]["mbar_formatted"] == "3.1085(3)" and rows[1]["notes"] == "no run"


def test_build_table_without_runs_reads_the_baseline(tmp_path):
    baseline = tmp_path / "baseline.jsonl"
    lines = [{"system": "lj_32", "method": "mbar", "beta_f_per_particle": 9.0, "stderr": 1.0,
              "quick": True},
             {"system": "lj_32", "method": "mbar", "beta_f_per_particle": 2.91916,
              "stderr": 0.00091, "wall_time": 10.0, "energy_evaluations": 100}]
    baseline.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"cut sh')
    rows = build_table(["lj_32", "mw_cubic_8"], "cpu", tmp_path / "runs", baseline,
                       progress=False)
    assert rows[0].mbar.value == 2.91916 and rows[0].lfep is None
    assert rows[1].mbar is None and any("no MBAR" in note for note in rows[1].notes)
    assert any("no run" in note for note in rows[0].notes)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory of an untrained tiny flow, written without compiling a training step
    (that compilation alone takes longer than this whole file should)."""
    import jax
    import jax.numpy as jnp

    from freeflow import checkpoint
    from freeflow.config import ModelConfig, TrainingConfig
    from freeflow.train import TrainState, _run_spec, optimizer

    tiny = ModelConfig(num_layers=2, num_bins=8, embedding_size=16, num_heads=2, num_blocks=1,
                       num_frequencies=2)
    training = TrainingConfig(num_steps=2, batch_size=8, seed=3)
    system = freeflow.load_system("mw_cubic_8")
    run = tmp_path_factory.mktemp("runs") / "mw_cubic_8"
    run.mkdir()
    checkpoint.write_json(run / "run.json", _run_spec(system, tiny, training))
    params = freeflow.FlowModel(system, tiny).init(jax.random.PRNGKey(training.seed))
    checkpoint.save(run, TrainState(params, optimizer(training).init(params),
                                    jnp.asarray(2, jnp.int32)))
    checkpoint.write_metrics(run, synthetic_metrics(2))
    return run


def test_diagnose_tiny_run(tiny_run, tmp_path):
    system = freeflow.load_system("mw_cubic_8")
    reference = freeflow.save_samples(
        tmp_path / "ref.npz", np.mod(system.lattice + 0.1 * np.random.default_rng(0)
                                     .standard_normal((16, 8, 3)), system.box), system)
    paths = diagnostics.diagnose(tiny_run, tmp_path / "diag", reference=reference,
                                 num_samples=64, references={"MBAR": (-25.0, 0.01)},
                                 batch_size=32, num_bins=50)
    assert set(paths) == {"rdf", "rdf_csv", "energy_histogram", "work_histogram",
                          "training_curves", "running_estimate", "summary"}
    for key, path in paths.items():
        assert path.is_file() and path.stat().st_size > 0, key
    summary = json.loads(paths["summary"].read_text())
    assert summary["system"] == "mw_cubic_8" and summary["training_steps"] == 2
    assert np.isfinite(summary["lfep"]["beta_f_per_particle"])
    assert set(summary["beta_energy_per_particle"]) == {"base", "model", "reference"}
    with open(paths["rdf_csv"]) as fh:
        header = next(csv.reader(fh))
    assert header == ["r", "g_model", "g_base", "g_reference"]


def test_cli_diagnose_rejects_missing_run(tmp_path):
    from freeflow.cli import main
    assert main(["diagnose", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2


def test_table_cache_is_shared_by_relative_and_absolute_run_paths(tiny_run, tmp_path,
                                                                   monkeypatch):
    cache = tmp_path / "cache.jsonl"
    runs = tiny_run.parent
    first = build_table(["mw_cubic_8"], "cpu", runs, None, cache_file=cache, num_samples=64,
                        progress=False, check_preset=False)
    lines = cache.read_text().splitlines()
    monkeypatch.chdir(runs.parent)
    second = build_table(["mw_cubic_8"], "cpu", runs.name, None, cache_file=cache,
                         num_samples=64, progress=False, check_preset=False)
    assert cache.read_text().splitlines() == lines  # nothing recomputed
    assert second[0].lfep.value == first[0].lfep.value
