"""``freeflow limit``: stored rows chosen by crystal, one crystal per fit, the fit's numbers in
the JSON, the difference of two limits, and one-line refusals."""

import dataclasses
import json
import math

import pytest

from freeflow.cli import main
from freeflow.estimators.finite_size import fit_finite_size
from freeflow.physics.system_files import load_system
from freeflow.physics.identity import crystal_identity
from freeflow.reports.limit import _check_one_crystal

SIZES = (64, 216, 512)


def _row(system, n, value, stderr, method="smc", multiplicity=2):
    return {"system": system, "method": method, "beta_f_per_particle": value,
            "stderr": stderr, "num_samples": 10, "counting": "bravais", "num_particles": n,
            "lattice_multiplicity": multiplicity}


def _results(tmp_path, rows, name="smc.jsonl"):
    directory = tmp_path / "results"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def _values(limit, b):
    return [limit - 0.5 * math.log(n) / n + b / n for n in SIZES]


def test_two_crystals_give_each_limit_and_their_difference(tmp_path, capsys):
    errors = [2e-4, 1.5e-4, 1e-4]
    cubic = [v + d for v, d in zip(_values(-25.0447, -5.49), (1e-4, -1e-4, 5e-5))]
    hexagonal = _values(-25.0450, -6.98)
    rows = ([_row(f"mw_cubic_{n}", n, v, e) for n, v, e in zip(SIZES, cubic, errors)]
            + [_row(f"mw_hex_{n}", n, v, e, multiplicity=4)
               for n, v, e in zip(SIZES, hexagonal, errors)]
            # Rows of another method, or a smoke test, take no part.
            + [_row("mw_cubic_64", 64, -20.0, 1e-4, method="mbar"),
               {**_row("mw_hex_64", 64, -20.0, 1e-4), "quick": True}])
    results = _results(tmp_path, rows)
    assert main(["limit", "mw_cubic", "mw_hex", "--results", str(results), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    first, second = data["crystals"]
    expected = fit_finite_size(SIZES, cubic, errors)
    assert first["system"] == "mw_cubic" and second["system"] == "mw_hex"
    assert first["beta_f_limit"] == pytest.approx(expected.value, abs=1e-12)
    assert first["stderr"] == pytest.approx(expected.stderr, rel=1e-12)
    assert first["dof"] == 1 and first["p_value"] == pytest.approx(expected.p_value)
    assert [s["num_particles"] for s in first["sizes"]] == list(SIZES)
    assert second["beta_f_limit"] == pytest.approx(-25.0450, abs=1e-9)  # exact values
    assert data["difference"]["beta_delta_f_limit"] == pytest.approx(
        second["beta_f_limit"] - first["beta_f_limit"])
    assert data["difference"]["stderr"] == pytest.approx(
        math.hypot(first["stderr"], second["stderr"]))
    # The same fit as text, and in the other counting the limit does not move (ln m / N
    # goes into b).
    assert main(["limit", "mw_cubic_64", "mw_cubic_216", "mw_cubic_512", "--results",
                 str(results), "--counting", "exact", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)["crystals"][0]
    assert exact["beta_f_limit"] == pytest.approx(first["beta_f_limit"], abs=1e-10)
    assert exact["b"] == pytest.approx(first["b"] - math.log(2), abs=1e-8)
    assert main(["limit", "mw_cubic", "--results", str(results)]) == 0
    text = capsys.readouterr().out
    assert "a = -1/2 (held)" in text and f"chi2 = {expected.chi2:.2f} on 1 dof" in text
    assert "note: below about 100 particles" in text
    # --min-particles leaves N = 64 out: two sizes, no degree of freedom, no note.
    assert main(["limit", "mw_cubic", "--results", str(results), "--min-particles", "100"]) == 0
    text = capsys.readouterr().out
    assert "      64 " not in text and "0 dof" in text and "note:" not in text


def test_a_poor_fit_is_flagged(tmp_path, capsys):
    # A ln(N)/N term of -1 instead of -1/2, at errors of 1e-5: p far below 0.01.
    values = [-25.0 - 1.0 * math.log(n) / n - 5.0 / n for n in SIZES]
    results = _results(tmp_path, [_row(f"mw_cubic_{n}", n, v, 1e-5)
                                  for n, v in zip(SIZES, values)])
    assert main(["limit", "mw_cubic", "--results", str(results)]) == 0
    assert "warning: the form does not describe these values" in capsys.readouterr().out
    assert main(["limit", "mw_cubic", "--results", str(results), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["crystals"][0]["poor_fit"] is True


@pytest.mark.parametrize("arguments, message", [
    (["nothing_here"], "no smc result in"),
    (["mw_cubic_64"], "needs results at two sizes or more"),
    (["mw_cubic", "--method", "mbar"], "has no mbar results"),
    (["mw_cubic", "--fit-log-coefficient"], "needs at least 3 sizes"),
    (["mw_cubic", "--min-particles", "1000"], "no stored size has 1000 particles or more"),
    (["mw_cubic", "--min-particles", "0"], "--min-particles must be at least 1"),
])
def test_bad_requests_get_one_line_and_status_2(tmp_path, capsys, arguments, message):
    results = _results(tmp_path, [_row("mw_cubic_64", 64, -25.16, 1e-4),
                                  _row("mw_cubic_216", 216, -25.08, 1e-4)])
    assert main(["limit", *arguments, "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_row_of_another_crystal_or_an_unknown_system_is_refused(tmp_path, capsys,
                                                                 monkeypatch):
    results = _results(tmp_path, [_row("ice_64", 64, -25.16, 1e-4),
                                  _row("ice_216", 216, -25.08, 1e-4),
                                  _row("mw_cubic_64", 512, -25.16, 1e-4),
                                  _row("mw_cubic_216", 216, -25.08, 1e-4)])
    # A folder named like a system in the working directory is not taken for it.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ice_64").mkdir()
    assert main(["limit", "ice", "--results", str(results)]) == 2
    assert "ice_64 is no named system" in capsys.readouterr().err
    assert main(["limit", "mw_cubic", "--results", str(results)]) == 2
    assert "row of mw_cubic_64 is for N = 512, but the system has 64" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is not the crystal of"):
        _check_one_crystal("ice", [load_system("mw_cubic_64"), load_system("mw_hex_216")])
    warm = dataclasses.replace(load_system("mw_cubic_216"), temperature=220.0)
    with pytest.raises(ValueError, match="is not the crystal of"):
        _check_one_crystal("ice", [load_system("mw_cubic_64"), warm])


def test_system_files_name_their_rows(tmp_path, capsys):
    """A user's crystal, given by its system files: rows are found by the files' names."""
    from freeflow.physics.system_files import systems_directory
    paths = []
    for n in SIZES:
        text = (systems_directory() / f"mw_cubic_{n}.toml").read_text()
        path = tmp_path / f"ice{n}.toml"
        path.write_text(text.replace(f'name = "mw_cubic_{n}"', f'name = "my_ice_{n}"'))
        paths.append(str(path))
    values = _values(-25.0447, -5.49)
    results = _results(tmp_path, [_row(f"my_ice_{n}", n, v, 1e-4)
                                  for n, v in zip(SIZES, values)])
    assert main(["limit", *paths, "--results", str(results), "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)["crystals"][0]
    assert fit["system"] == "my_ice" and fit["beta_f_limit"] == pytest.approx(-25.0447)
    # Named, the rows cannot be checked against their systems.
    assert main(["limit", "my_ice", "--results", str(results)]) == 2
    assert "give its .toml file" in capsys.readouterr().err


def test_crystal_identity_ignores_size_only():
    assert crystal_identity(load_system("lj_32")) == crystal_identity(load_system("lj_500"))
    assert crystal_identity(load_system("mw_cubic_64")) != crystal_identity(
        load_system("mw_hex_64"))
    assert crystal_identity(load_system("mw_cubic_64")) != crystal_identity(
        load_system("si_64"))
    # Crystals built from atoms have no lattice kind: their lattice energy stands in. Two
    # sizes of one crystal agree; a sheared copy (same density, other structure) does not.
    from freeflow import system_from_atoms
    small, large = load_system("lj_32"), load_system("lj_108")
    built = [system_from_atoms(s.atoms, s.potential, s.temperature) for s in (small, large)]
    assert crystal_identity(built[0]) == crystal_identity(built[1])
    assert crystal_identity(built[0])["lattice_energy_per_particle"] == pytest.approx(
        small.lattice_energy() / 32, rel=1e-8)
    sheared = small.atoms.copy()
    sheared.positions[:, 0] += 0.05 * sheared.positions[:, 1]
    other = system_from_atoms(sheared, small.potential, small.temperature)
    assert crystal_identity(other) != crystal_identity(built[0])
