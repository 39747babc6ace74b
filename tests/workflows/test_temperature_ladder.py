"""The MBAR route along temperature (freeflow.workflows.temperature_ladder, ``freeflow sweep --route
mbar``) against an Einstein crystal's exact thermodynamics."""

import contextlib
import io
import json

import numpy as np
import pytest

from freeflow.cli import main
from freeflow.estimators.mbar import mbar_states
from freeflow.sampling.hmc import HMCConfig
from freeflow.workflows.baseline import PathConfig
from freeflow.rundir import LadderWorkdir
from freeflow.workflows.sweep import LadderConfig, free_energy_curve
from freeflow.workflows.temperature_ladder import _ladder

from springs_oracle import TEMPERATURES, assert_exact_row, springs as _springs

#: 4 leapfrog steps for the exactly harmonic target, as the SMC sweep's test explains.
CONFIG = LadderConfig(anchor=PathConfig(num_states=3, samples_per_state=256, num_chains=4),
                      sampling=HMCConfig(num_chains=8, num_samples=300, num_warmup=100, thin=2,
                                         num_integration_steps=4))


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    """One MBAR route through the command line, and its ``Curve`` read back from the work it
    kept."""
    directory = tmp_path_factory.mktemp("ladder")
    path, system, k, radius = _springs(directory)
    out = directory / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["sweep", str(path), "--route", "mbar", "--temperatures",
                       ",".join(map(str, TEMPERATURES)), "--chains", "8", "--samples", "300",
                       "--integration-steps", "4", "--anchor-states", "3",
                       "--anchor-samples", "256", "--seed", "5", "--out", str(out), "--json"])
    assert status == 0
    printed = json.loads(stdout.getvalue())
    config = LadderConfig(anchor=PathConfig(num_states=3, samples_per_state=256),
                          sampling=HMCConfig(num_chains=8, num_samples=300, thin=2,
                                             num_integration_steps=4))
    curve = free_energy_curve(system, TEMPERATURES, config, seed=5, workdir=out / "springs")
    return system, k, radius, curve, out, printed, config


def test_ladder_matches_the_exact_einstein_crystal_at_every_temperature(ladder):
    system, k, radius, curve, _, printed, _ = ladder
    assert printed["systems"][0]["route"] == "mbar"
    for row in curve.rows():
        u, _ = assert_exact_row(system, k, radius, row)
        assert row["stderr"] < 0.03 and row["u_stderr"] < 0.05 * u
    # The anchor, at the lowest temperature, is the harmonic crystal itself but for the
    # region's cut: its error is far below the ladder's.
    assert curve.stderr[0] < 1e-3 * curve.stderr[1]


def test_ladder_covariance_is_pymbar_s_and_the_anchor_s(ladder):
    """The covariance of the ladder's values is pymbar's (the default) plus the anchor's
    variance everywhere."""
    curve = ladder[3]
    c = curve.covariance
    assert np.allclose(c, c.T) and np.all(np.linalg.eigvalsh(c) > -1e-12)
    assert curve.difference_stderr(1, 2) < min(curve.stderr[1], curve.stderr[2])
    ladder_errors = np.asarray(curve.details["ladder_stderr"])
    anchor = curve.details["anchor"]["stderr"]
    assert np.allclose(curve.stderr, np.hypot(ladder_errors, anchor), rtol=1e-9)
    assert curve.details["bootstrap_replicates"] == 0
    assert curve.details["ladder_stderr_pymbar"] == curve.details["ladder_stderr"]


def test_ladder_bootstrap_over_chains_is_near_pymbar_s(ladder):
    """On the same kept chains, the bootstrap over chains changes the errors, not the values,
    and its errors are of pymbar's size (within a factor 2: 200 resamplings of 8 chains)."""
    system, _, _, curve, out, _, _ = ladder
    work = LadderWorkdir(out / "springs")
    energies = np.stack([work.read_temperature(k, t)["energies"]
                         for k, t in enumerate(TEMPERATURES)], axis=2)
    plain = _ladder(system, TEMPERATURES, energies, 0, 0.0, 0.0, 0, seed=1)
    boot = _ladder(system, TEMPERATURES, energies, 0, 0.0, 0.0, 200, seed=1)
    assert np.array_equal(plain[0], boot[0])
    ratio = np.sqrt(np.diag(boot[1])[1:] / np.diag(plain[1])[1:])
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    assert boot[2]["ladder_stderr_pymbar"] == plain[2]["ladder_stderr"]
    with pytest.raises(ValueError, match="bootstrap must be 0"):
        LadderConfig(bootstrap=5)


def test_mbar_states_covariance_on_gaussian_states():
    """Three 1-D Gaussian states of known widths: f_k relative to state 1 and the covariance
    from pymbar's pairwise errors (its diagonal is pymbar's own error of f_k - f_1)."""
    rng = np.random.default_rng(0)
    widths = np.array([1.0, 1.2, 1.5])
    x = np.concatenate([rng.normal(0, s, 4000) for s in widths])
    u_kn = x[None, :] ** 2 / (2 * widths[:, None] ** 2)
    f, cov, overlap = mbar_states(u_kn, [4000] * 3, anchor=1)
    exact = -np.log(widths / widths[1])
    assert f[1] == 0.0 and cov[1, 1] == 0.0 and np.all(cov[1] == 0.0)
    assert np.all(np.abs(f - exact) <= 4 * np.sqrt(np.diag(cov)) + 1e-12)
    assert 0 < overlap < 1 and cov[0, 2] < 0  # on either side of the anchor


def test_resumed_ladder_gives_identical_numbers_and_refuses_other_settings(ladder):
    system, _, _, curve, out, printed, config = ladder
    fresh = printed["systems"][0]["temperatures"]
    assert [r["beta_f_per_particle"] for r in fresh] == curve.beta_f_per_particle.tolist()
    assert [r["pressure"] for r in fresh] == curve.pressure.tolist()
    workdir = out / "springs"
    (workdir / "temperature_002.npz").unlink()  # interrupted before the last temperature
    again = free_energy_curve(system, TEMPERATURES, config, seed=5, workdir=workdir)
    for field in ("beta_f_per_particle", "stderr", "u_per_particle", "cv_per_particle",
                  "covariance", "pressure"):
        assert np.array_equal(getattr(again, field), getattr(curve, field)), field
    with pytest.raises(ValueError, match="other settings.*seed 5 there, 6 here"):
        free_energy_curve(system, TEMPERATURES, config, seed=6, workdir=workdir)
    with pytest.raises(ValueError, match="temperature 2 is 1.3, not 1.4"):
        free_energy_curve(system, (0.5, 1.4, 1.5), config, seed=5, workdir=workdir)
    assert (workdir / "ladder.log").read_text().count("sampled in") == 4


def test_ladder_refuses_an_anchor_outside_the_temperatures(ladder):
    system = ladder[0]
    config = LadderConfig(anchor_temperature=1.0)
    with pytest.raises(ValueError, match="anchor temperature 1 is not one of"):
        free_energy_curve(system, TEMPERATURES, config)
    with pytest.raises(ValueError, match="at least 2 chains"):
        LadderConfig(sampling=HMCConfig(num_chains=1))
