"""Temperature sweeps (freeflow.workflows.sweep, freeflow.estimators.curve,
freeflow.reports.sweep and ``freeflow sweep``) against an Einstein crystal's exact
thermodynamics."""

import contextlib
import dataclasses
import io
import json
import math
import shutil

import numpy as np
import pytest

from freeflow.cli import main
from freeflow.estimators.curve import delta_f_curve
from freeflow.estimators.smc import combine_log_z
from freeflow.reports import sweep as sweep_report
from freeflow.sampling.smc import AnnealConfig
from freeflow.workflows.sweep import (LadderConfig, SweepConfig, free_energy_curve,
                                      parse_temperatures)

from springs_oracle import TEMPERATURES, assert_exact_row, springs as _springs

#: 4 leapfrog steps, not the default 8: in whitened coordinates every mode of this exactly
#: harmonic target has one period, and 8 steps at the adapted step size turn each trajectory
#: by about pi to 3 pi / 2 in phase space. Near pi, a trajectory maps x to about -x and leaves
#: U unchanged, so U stops mixing and the particles after a long stage lag (U was 4.5 sigma
#: low at T = 1.5 with 8 steps; with 4 steps the turn is about 4 to 5.4 rad).
CONFIG = SweepConfig(particles=128, repeats=16,
                     anneal=AnnealConfig(mcmc_steps=10, integration_steps=4))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One sweep through the command line (JSON on stdout, files in --out), and its ``Curve``
    read back from the stages it kept."""
    directory = tmp_path_factory.mktemp("sweep")
    path, system, k, radius = _springs(directory)
    out = directory / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["sweep", str(path), "--route", "smc",
                       "--temperatures", ",".join(map(str, TEMPERATURES)),
                       "--particles", str(CONFIG.particles), "--repeats", str(CONFIG.repeats),
                       "--mcmc-steps", str(CONFIG.anneal.mcmc_steps),
                       "--integration-steps", str(CONFIG.anneal.integration_steps), "--seed", "3",
                       "--out", str(out), "--json"])
    assert status == 0
    printed = json.loads(stdout.getvalue())
    curve = free_energy_curve(system, TEMPERATURES, CONFIG, seed=3, workdir=out / "springs")
    return system, k, radius, curve, out, printed


def test_sweep_matches_the_exact_einstein_crystal_at_every_temperature(sweep):
    system, k, radius, curve, _, _ = sweep
    n = system.num_particles
    assert curve.counting == "bravais" and list(curve.temperatures) == list(TEMPERATURES)
    for row in curve.rows():
        # The first stage starts from the exact harmonic crystal (stderr 0).
        u, cv = assert_exact_row(system, k, radius, row)
        assert row["f_per_particle"] == pytest.approx(row["beta_f_per_particle"]
                                                      * row["temperature"])
        # Equipartition of the 3 (N - 1) springs, the crystal region's cut being negligible.
        assert u == pytest.approx(1.5 * (n - 1) / n * row["temperature"], rel=1e-4)
        assert cv == pytest.approx(1.5 * (n - 1) / n, rel=1e-3)
        assert row["stderr"] < 0.02 and row["u_stderr"] < 0.05 * u
        assert "pressure_bar" not in row  # reduced units
    assert curve.pressure_unit == "epsilon/sigma^3"


def test_covariance_makes_the_difference_better_known_than_either_value(sweep):
    curve = sweep[3]
    c = curve.covariance
    assert c.shape == (3, 3) and np.allclose(c, c.T)
    assert np.allclose(np.sqrt(np.diag(c)), curve.stderr)
    # Each run's ln Z at 1.5 is its ln Z at 1.3 plus one short stage: strongly correlated.
    assert c[1, 2] > 0
    assert curve.difference_stderr(1, 2) < 0.5 * min(curve.stderr[1], curve.stderr[2])
    # The diagonal is the error of combine_log_z, per particle.
    runs = np.asarray(curve.details["ln_z_fixed_runs"])
    assert curve.stderr[2] == pytest.approx(
        combine_log_z(runs[:, 2])[1] / curve.num_particles, rel=1e-9)


def test_command_line_prints_and_writes_the_curve(sweep):
    _, _, _, curve, out, printed = sweep
    (only,) = printed["systems"]
    assert only["system"] == "springs" and only["counting"] == "bravais"
    for row, expected in zip(only["temperatures"], curve.rows()):
        assert row == pytest.approx(expected, rel=1e-12)
    assert json.loads((out / "sweep.json").read_text()) == printed
    assert len((out / "sweep.csv").read_text().splitlines()) == 1 + len(TEMPERATURES)
    for name in ("sweep_f.png", "sweep_u.png", "sweep_cv.png", "springs/sweep.log"):
        assert (out / name).stat().st_size > 0, name


def test_command_line_compares_two_systems(sweep, capsys):
    """Two systems: the second is a copy of the first with its finished stages copied too, so
    nothing is annealed again; the difference is zero with sqrt(2) times the error."""
    _, _, _, curve, out, _ = sweep
    twin = out.parent / "springs_twin.toml"
    twin.write_text((out.parent / "springs.toml").read_text())
    shutil.copytree(out / "springs", out / "springs_twin")
    (out / "springs_twin" / ".lock").unlink(missing_ok=True)
    argv = ["sweep", str(out.parent / "springs.toml"), str(twin), "--route", "smc",
            "--temperatures",
            ",".join(map(str, TEMPERATURES)), "--particles", str(CONFIG.particles),
            "--repeats", str(CONFIG.repeats), "--mcmc-steps", str(CONFIG.anneal.mcmc_steps),
            "--integration-steps", str(CONFIG.anneal.integration_steps), "--seed", "3",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["difference"]["of"] == "springs minus springs"  # both files name "springs"
    assert len(data["systems"]) == 2
    assert data["difference"]["crossings"] == []
    for row, stderr in zip(data["difference"]["temperatures"], curve.stderr):
        assert row["delta_beta_f_per_particle"] == 0.0
        assert row["stderr"] == pytest.approx(math.sqrt(2) * stderr, rel=1e-12)
    assert (out / "sweep_delta_f.png").stat().st_size > 0


def test_resumed_sweep_gives_identical_numbers_and_refuses_other_settings(sweep):
    system, _, _, curve, out, printed = sweep
    workdir = out / "springs"
    # The fixture's curve was read from the stages the command wrote: the same numbers,
    # pressures included, as the command printed from its fresh run.
    fresh = printed["systems"][0]["temperatures"]
    assert [r["pressure"] for r in fresh] == curve.pressure.tolist()
    assert [r["beta_f_per_particle"] for r in fresh] == curve.beta_f_per_particle.tolist()
    (workdir / "stage_002.npz").unlink()  # interrupted before the last temperature
    again = free_energy_curve(system, TEMPERATURES, CONFIG, seed=3, workdir=workdir)
    for field in ("beta_f_per_particle", "stderr", "u_per_particle", "cv_per_particle",
                  "covariance", "pressure", "pressure_stderr"):
        assert np.array_equal(getattr(again, field), getattr(curve, field)), field
    assert "read from" in (workdir / "sweep.log").read_text()
    with pytest.raises(ValueError, match="other settings"):
        free_energy_curve(system, TEMPERATURES, CONFIG, seed=4, workdir=workdir)
    with pytest.raises(ValueError, match="temperature 2 is 1.3, not 1.4"):
        free_energy_curve(system, (0.5, 1.4), CONFIG, seed=3, workdir=workdir)


def test_reports_and_counting(sweep, tmp_path):
    curve = sweep[3]
    exact = curve.recounted("exact")  # mw_cubic_8's lattice is diamond: m = 2
    shift = math.log(2) / curve.num_particles
    assert np.allclose(curve.beta_f_per_particle - exact.beta_f_per_particle, shift)
    assert np.allclose(exact.s_per_particle - curve.s_per_particle, shift)
    # A copy tilted to cross the original between 1.3 and 1.5.
    other = dataclasses.replace(curve, system="tilted", beta_f_per_particle=(
        curve.beta_f_per_particle + 0.01 * (np.asarray(TEMPERATURES) - 1.4)))
    delta = delta_f_curve(curve, other)
    assert [x["between"] for x in delta.crossings] == [[1.3, 1.5]]
    assert delta.crossings[0]["temperature"] == pytest.approx(1.4, abs=1e-9)
    assert 0 < delta.crossings[0]["stderr"]
    assert np.allclose(delta.stderr, np.sqrt(2) * curve.stderr)
    data = json.loads(json.dumps(sweep_report.record([curve, other], delta)))
    first = data["systems"][0]["temperatures"][0]
    assert {"temperature", "beta_f_per_particle", "stderr", "u_per_particle",
            "cv_per_particle", "s_per_particle", "f_per_particle"} <= set(first)
    sweep_report.to_csv([curve, other], tmp_path / "sweep.csv", delta)
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 1 + 3 * 3
    written = sweep_report.to_png([curve, other], tmp_path, delta)
    assert all(p.stat().st_size > 0 for p in written) and len(written) == 4
    assert "crossing at T = 1.4" in sweep_report.to_text([curve, other], delta)
    with pytest.raises(ValueError, match="different temperatures"):
        delta_f_curve(curve, dataclasses.replace(other, temperatures=curve.temperatures + 1))


def test_temperature_ranges():
    assert parse_temperatures("100:260:10") == tuple(float(t) for t in range(100, 261, 10))
    assert parse_temperatures("180:220:20") == (180.0, 200.0, 220.0)
    assert parse_temperatures("0.5:1.5:0.1")[-1] == 1.5 and len(parse_temperatures(
        "0.5:1.5:0.1")) == 11
    assert parse_temperatures("200") == (200.0,)
    assert parse_temperatures("150, 200,250") == (150.0, 200.0, 250.0)
    for bad, match in (("200:100:10", "at least START"), ("100:200:30", "whole number"),
                       ("100:200", "START:STOP:STEP"), ("1:2:0", "positive"),
                       ("200,100", "increase"), ("100,100", "increase"),
                       ("-5,10", "positive"), ("a,b", "comma list"), ("", "at least one")):
        with pytest.raises(ValueError, match=match):
            parse_temperatures(bad)


def test_cli_refuses_bad_input_with_one_line(capsys):
    for argv in (["sweep", "mw_cubic_8", "--temperatures", "220:180:20"],
                 ["sweep", "mw_cubic_8", "--temperatures", "200,200"],
                 ["sweep", "mw_cubic_8", "--temperatures", "100:x:10"],
                 ["sweep", "mw_cubic_8", "mw_cubic_8", "--temperatures", "200"],
                 ["sweep", "mw_cubic_8", "--route", "smc", "--temperatures", "200",
                  "--repeats", "1"],
                 # an option of the other route is refused, not ignored
                 ["sweep", "mw_cubic_8", "--temperatures", "200", "--particles", "64"],
                 ["sweep", "mw_cubic_8", "--route", "smc", "--temperatures", "200",
                  "--chains", "4"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("freeflow sweep: error:"), err


def test_cli_names_the_route_an_option_belongs_to(capsys):
    assert main(["sweep", "mw_cubic_8", "--temperatures", "200", "--particles", "64",
                 "--repeats", "4"]) == 2
    err = capsys.readouterr().err
    assert "--particles, --repeats belong to --route smc" in err and "--route mbar" in err


def test_a_work_directory_of_one_route_is_not_continued_by_the_other(tmp_path):
    """A directory from the SMC sweep (the default before the MBAR route) is refused by the
    MBAR route rather than started afresh beside it, and the other way round."""
    smc_dir, mbar_dir = tmp_path / "smc", tmp_path / "mbar"
    smc_dir.mkdir()
    mbar_dir.mkdir()
    (smc_dir / "sweep_config.json").write_text("{}")
    (mbar_dir / "ladder_config.json").write_text("{}")
    with pytest.raises(ValueError, match="holds a sweep by --route smc"):
        free_energy_curve("mw_cubic_8", (200.0,), LadderConfig(), workdir=smc_dir)
    with pytest.raises(ValueError, match="holds a sweep by --route mbar"):
        free_energy_curve("mw_cubic_8", (200.0,), CONFIG, workdir=mbar_dir)


def _renamed(record: dict, name: str) -> dict:
    """A copy of a sweep.json object whose one system is called ``name``."""
    copy = json.loads(json.dumps(record))
    copy["systems"][0]["system"] = name
    return copy


def _stored(printed: dict, directory, name: str = "springs") -> str:
    """The fixture's printed record as a file of its own (``out/sweep.json`` is rewritten by
    other tests of this module)."""
    path = directory / f"{name}.json"
    path.write_text(json.dumps(_renamed(printed, name)))
    return str(path)


def test_stored_sweeps_compare_without_running_again(sweep, tmp_path, capsys):
    """Two polymorphs swept as separate jobs: their sweep.json files compare, read back
    exactly."""
    _, _, _, curve, _, printed = sweep
    stored = _stored(printed, tmp_path)
    (read,) = sweep_report.read(stored)
    for field in ("temperatures", "beta_f_per_particle", "stderr", "covariance",
                  "u_per_particle", "s_stderr", "cv_per_particle", "pressure"):
        assert np.array_equal(getattr(read, field), getattr(curve, field)), field
    assert read.lattice_multiplicity == curve.lattice_multiplicity == 2
    twin = _stored(printed, tmp_path, "twin")
    assert main(["sweep", stored, twin, "--out", str(tmp_path / "both"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["difference"]["of"] == "twin minus springs"
    for row, stderr in zip(data["difference"]["temperatures"], curve.stderr):
        assert row["delta_beta_f_per_particle"] == 0.0
        assert row["stderr"] == pytest.approx(math.sqrt(2) * stderr, rel=1e-12)
    assert data["systems"][0] == printed["systems"][0]  # rewritten as read
    assert (tmp_path / "both" / "sweep_delta_f.png").stat().st_size > 0
    # Exact counting shifts both alike: the difference stays zero.
    assert main(["sweep", stored, twin, "--counting", "exact", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert exact["systems"][0]["temperatures"][0]["beta_f_per_particle"] == pytest.approx(
        curve.beta_f_per_particle[0] - math.log(2) / curve.num_particles, rel=1e-12)
    assert all(r["delta_beta_f_per_particle"] == 0.0
               for r in exact["difference"]["temperatures"])


def test_older_and_incomplete_records_read_back(sweep, tmp_path, capsys):
    """A record from before the multiplicity and the bar factor were written, and one with a
    value that was not finite (written as null)."""
    _, _, _, curve, _, printed = sweep
    old = _renamed(printed, "old")
    del old["systems"][0]["lattice_multiplicity"]
    del old["systems"][0]["bar_per_pressure_unit"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["sweep", str(tmp_path / "old.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["systems"][0]["temperatures"] == \
        printed["systems"][0]["temperatures"]
    assert main(["sweep", str(tmp_path / "old.json"), "--counting", "exact"]) == 2
    assert "without its lattice multiplicity" in capsys.readouterr().err
    # Physical units: the bar factor of an older record comes from its units, exactly.
    physical = _renamed(printed, "physical")
    system = physical["systems"][0]
    system.update(energy_unit="eV", temperature_unit="K", pressure_unit="eV/Angstrom^3")
    del system["bar_per_pressure_unit"]
    (read,) = sweep_report.curves_from_record(physical)
    assert read.bar_per_pressure_unit == 1.602176634e-19 / 1e-30 / 1e5
    nan = _renamed(printed, "nan")
    nan["systems"][0]["temperatures"][1]["cv_stderr"] = None
    nan["systems"][0]["covariance"][0][0] = None
    (read,) = sweep_report.curves_from_record(nan)
    assert np.isnan(read.cv_stderr[1]) and np.isnan(read.covariance[0, 0])
    assert np.array_equal(read.cv_stderr[[0, 2]], curve.cv_stderr[[0, 2]])


def test_stored_sweeps_refuse_what_cannot_be_compared(sweep, tmp_path, capsys):
    """Every refusal is one line, and those of a stored curve beside a system to run come
    before anything runs (the system here would be sampled for minutes otherwise)."""
    _, _, _, _, out, printed = sweep
    stored = _stored(printed, tmp_path)
    (tmp_path / "table.json").write_text('{"rows": []}')
    (tmp_path / "broken.json").write_text('{"systems": [')
    (tmp_path / "latin1.json").write_bytes(b'{"systems": "\xe9"}')
    other = _renamed(printed, "other")
    other["systems"][0]["temperature_unit"] = "K"
    other["systems"][0]["energy_unit"] = "kcal/mol"
    (tmp_path / "other.json").write_text(json.dumps(other))
    old = _renamed(printed, "old")
    del old["systems"][0]["lattice_multiplicity"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    # The same crystal under another name: same units, so only the temperatures differ.
    cousin = tmp_path / "cousin.toml"
    cousin.write_text((out.parent / "springs.toml").read_text())
    job = tmp_path / "job"
    job.mkdir()
    (job / "sweep.json").write_text(json.dumps(printed))
    for argv, says in (
            ([stored, str(tmp_path / "table.json")], "not a sweep.json"),
            ([stored, str(tmp_path / "broken.json")], "is not JSON"),
            ([stored, str(tmp_path / "latin1.json")], "is not JSON"),
            ([stored, str(tmp_path / "missing.json")], "cannot read"),
            ([stored, str(tmp_path / "other.json")], "different units"),
            ([stored, "--chains", "4"], "--chains set how a system is swept"),
            ([stored, "--temperatures", "0.5"], "--temperatures set how"),
            ([stored, "--route", "smc", "--integration-steps", "4"],
             "--route, --integration-steps set how"),
            ([stored, "mw_cubic_8", "--temperatures", "200"], "different units"),
            ([stored, str(cousin), "--temperatures", "0.5,1.4", "--out", str(tmp_path / "run")],
             "give --temperatures 0.5,1.3,1.5"),
            ([str(cousin), str(tmp_path / "old.json"), "--temperatures", "0.5,1.3,1.5",
              "--counting", "exact"], "without its lattice multiplicity"),
            ([str(job / "sweep.json"), str(cousin), "--temperatures", "0.5,1.3,1.5",
              "--out", str(job)], "would overwrite the stored sweep"),
            (["mw_cubic_8"], "needs --temperatures"),
            ([stored, str(tmp_path / "table.json"), "mw_cubic_8"], "not a sweep.json")):
        assert main(["sweep", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], (argv, err)
    # Nothing ran: no work directory was made for the system beside the stored curve.
    assert not (tmp_path / "run" / "cousin").exists() and not (job / "cousin").exists()
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"systems": printed["systems"]
                                + _renamed(printed, "b")["systems"]}))
    assert main(["sweep", str(both), "mw_cubic_8", "--temperatures", "0.5,1.3,1.5"]) == 2
    assert "both.json holds 2" in capsys.readouterr().err
