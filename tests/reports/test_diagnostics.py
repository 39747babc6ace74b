"""The plots, and diagnose on a tiny run."""

import csv
import json

import numpy as np
from tiny_runs import synthetic_metrics

import freeflow
from freeflow.reports import diagnostics, plots


def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(0)
    r = np.linspace(0.01, 1.5, 100)
    g = 1 + np.exp(-((r - 1) / 0.1) ** 2)
    work = 300 + rng.gamma(2.0, 1.0, 500)
    written = [
        plots.plot_rdf({"model": (r, g), "reference": (r, 0.9 * g)}, tmp_path / "a.png",
                             "sigma", nearest_neighbour=1.0),
        plots.plot_energy_histograms({"base": rng.normal(-6, 0.1, 300),
                                            "model": np.r_[rng.normal(-6.2, 0.1, 300), np.inf]},
                                           tmp_path / "b.png"),
        plots.plot_work_histogram(work, 100, tmp_path / "c.png"),
        plots.plot_training_curves(synthetic_metrics(), tmp_path / "d.png", 100,
                                         reference=(3.0, 0.01)),
        plots.plot_running_estimate(work, 100, tmp_path / "e.png", beta_f_offset=1.0,
                                          references={"MBAR": (-2.0, 0.01)}),
        plots.plot_training_curves([], tmp_path / "f.png", 100),
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 1000


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
