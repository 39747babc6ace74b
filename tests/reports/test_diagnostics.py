"""g(r) and coordination numbers, the plots, and diagnose on a tiny run."""

import csv
import json

import numpy as np
import pytest
from scipy.special import logsumexp
from tiny_runs import synthetic_metrics

import freeflow
from freeflow.reports import diagnostics
from freeflow.reports.diagnostics import (
    coordination_number,
    first_peak,
    radial_distribution,
)


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
    direct = 0.5 - (logsumexp(-work[:100]) - np.log(100)) / 10
    assert est[99] == pytest.approx(direct)
    assert 0 < ess[-1] < 1 and err[-1] > 0


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
