"""freeflow sample continues the same chains after a kill: a resumed file equals an
uninterrupted one."""

import numpy as np
import pytest

import freeflow
from freeflow import rundir
from freeflow.workflows import sampling


def test_resumed_samples_equal_an_uninterrupted_run(tmp_path, monkeypatch):
    system = freeflow.load_system("mw_cubic_8")
    settings = dict(num_samples=4 * 120, num_chains=4, num_warmup=20, thin=1, seed=2)
    whole = tmp_path / "whole.npz"
    sampling.sample_to_file(system, whole, **settings)

    # A kill after the first chunk is on disk: the next save never happens.
    saves = []
    original = rundir.save_samples

    def killed_after_one(*args, **kwargs):
        if saves:
            raise KeyboardInterrupt
        saves.append(original(*args, **kwargs))
        return saves[-1]

    cut = tmp_path / "cut.npz"
    monkeypatch.setattr(rundir, "save_samples", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        sampling.sample_to_file(system, cut, **settings)
    monkeypatch.setattr(rundir, "save_samples", original)
    partial, _, _ = rundir.load_samples(cut)
    assert 0 < len(partial) < 4 * 120
    summary = sampling.sample_to_file(system, cut, **settings)
    assert summary["continued"] == len(partial)
    a, _, energies_a = rundir.load_samples(whole)
    b, _, energies_b = rundir.load_samples(cut)
    np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(energies_b, energies_a)


def test_one_sample_has_no_error_bar(tmp_path):
    system = freeflow.load_system("mw_cubic_8")
    summary = sampling.sample_to_file(system, tmp_path / "one.npz", num_samples=1,
                                      num_chains=1, num_warmup=5, thin=1)
    assert summary["num_saved"] == 1
    assert summary["energy_stderr"] is None
