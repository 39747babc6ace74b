"""EAM potentials from LAMMPS setfl and funcfl files: the files, the energy against LAMMPS, the
named copper systems.

LAMMPS comparisons run in float64. Their tolerance, 1e-12 of the energy and of the largest
force, is float64 rounding of sums over about 80 neighbours per atom and 32 atoms, with a margin:
the measured differences are at most 5e-15 of either (``bench/suite/eam_lammps.py``).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk
from lammps_oracle import lammps_energy_and_forces, require_lammps

from freeflow.cli import main
from freeflow.physics.eam_files import EAMTables, as_format, format_eam, read_eam, write_eam
from freeflow.physics.potentials.eam import EAM
from freeflow.physics.potentials.eam_analytic import (
    fcc_energy_per_atom,
    zhou_funcfl_test_tables,
    zhou_tables,
)
from freeflow.physics.system_files import load_system, systems_directory
from freeflow.physics.identity import system_fingerprint, system_from_dict, system_to_dict

RELATIVE = 1e-12
A0 = 3.614979  # the analytic form's 0 K lattice constant to 1e-6 Angstrom, in cu_*.toml


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The setfl file of the named systems (regenerated) and the funcfl test file."""
    folder = tmp_path_factory.mktemp("eam")
    return {"setfl": write_eam(folder / "Cu.eam.alloy", zhou_tables()),
            "funcfl": write_eam(folder / "Cu_test.eam", zhou_funcfl_test_tables())}


def _pair_lines(path, format):
    if format == "setfl":
        return ["pair_style eam/alloy", f"pair_coeff * * {path} Cu"]
    return ["pair_style eam", f"pair_coeff 1 1 {path}"]


def _perturbed_copper(lattice_constant=3.615, amplitude=0.15, seed=0, repeat=2):
    atoms = bulk("Cu", "fcc", a=lattice_constant, cubic=True).repeat((repeat,) * 3)
    atoms.positions += amplitude * np.random.default_rng(seed).standard_normal(
        (len(atoms), 3))
    return atoms


def _against_lammps(potential, atoms, pair_lines, neighbors="dense"):
    """freeflow's energy and both gradient routes against LAMMPS, in float64."""
    expected_energy, expected_forces = lammps_energy_and_forces(atoms, "metal", pair_lines)
    box = np.diag(np.asarray(atoms.cell))
    sites = np.mod(atoms.positions, box)
    with jax.enable_x64(True):
        x = jnp.asarray(atoms.positions, jnp.float64)
        routes = {}
        for route in ("analytic", "autodiff"):
            fn = potential.energy_fn(box, sites, max_displacement=1.0, neighbors=neighbors,
                                     gradient=route)
            energy, grad = jax.jit(jax.value_and_grad(fn))(x)
            routes[route] = (float(energy), -np.asarray(grad))
    scale = np.abs(expected_forces).max()
    for energy, forces in routes.values():
        assert abs(energy - expected_energy) <= RELATIVE * abs(expected_energy)
        assert np.abs(forces - expected_forces).max() <= RELATIVE * scale
    assert np.abs(routes["analytic"][1] - routes["autodiff"][1]).max() <= RELATIVE * scale


# -- the files ------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["setfl", "funcfl"])
def test_a_written_file_reads_back_to_the_same_tables(files, format):
    tables = read_eam(files[format])
    made = zhou_tables() if format == "setfl" else zhou_funcfl_test_tables()
    assert tables.same_as(made)
    assert format_eam(tables) == files[format].read_text()


def test_the_stored_file_is_what_the_generator_writes():
    # Compared as numbers: exp and pow may differ in the last bit between CPUs.
    stored = read_eam(systems_directory() / "Cu_zhou2004.eam.alloy")
    made = zhou_tables()
    for name in ("embedding", "density", "pair"):
        assert np.allclose(getattr(stored, name), getattr(made, name), rtol=1e-14, atol=1e-300)
    assert dataclasses.replace(stored, embedding=made.embedding, density=made.density,
                               pair=made.pair).same_as(made)


def _edit_line(text, index, new):
    lines = text.splitlines()
    lines[index] = new
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name, edit, message", [
    ("truncated.eam.alloy", lambda t: "\n".join(t.splitlines()[:506]),  # 5 values a line
     "the file ends after 500 of the 2000 values of rho(r) (truncated?)"),
    ("two.eam.alloy", lambda t: _edit_line(t, 3, "2 Cu Ni"),
     "the file is for 2 species (Cu Ni); freeflow reads single-species files"),
    ("long.eam.alloy", lambda t: _edit_line(t, 4, "2000 0.05 2000 0.003 6.5"),
     "the cutoff 6.5 Angstrom is beyond the tabulated distances"),
    ("nan.eam.alloy", lambda t: t.replace("-0.013568498096440229", "nan", 1),
     "the F(rho) table holds non-finite values (first at entry 1: nan)"),
    ("word.eam.alloy", lambda t: t.replace("-0.013568498096440229", "copper", 1),
     "line 7: 'copper' in F(rho) is not a number"),
    ("extra.eam.alloy", lambda t: t + "1.0 2.0\n", "2 values after the last table"),
    ("short.eam", lambda t: t[:len(t) // 3], "values of Z(r) (truncated?)"),
])
def test_bad_files_are_refused_with_one_line(files, tmp_path, name, edit, message):
    source = files["funcfl" if name.endswith(".eam") else "setfl"]
    path = tmp_path / name
    path.write_text(edit(source.read_text()))
    with pytest.raises(ValueError) as error:
        EAM(file=str(path))
    line = str(error.value)
    assert "\n" not in line and line.startswith(str(path)) and message in line, line


def test_missing_files_and_unknown_formats_are_refused(tmp_path):
    with pytest.raises(ValueError, match="EAM file '.*nowhere.eam.alloy' does not exist"):
        EAM(file=str(tmp_path / "nowhere.eam.alloy"))
    with pytest.raises(ValueError, match="cannot tell the EAM format from the name; give "
                                         "format = 'setfl'"):
        EAM(file=str(tmp_path / "Cu.table"))
    with pytest.raises(ValueError, match="potential 'eam' needs file = PATH"):
        EAM()


def test_a_changed_file_is_refused_by_its_digest(files):
    recorded = EAM(file=str(files["setfl"]))
    assert EAM(file=recorded.file, sha256=recorded.sha256) == recorded
    with pytest.raises(ValueError, match="changed: its SHA-256 is now"):
        EAM(file=recorded.file, sha256="0" * 64)


def test_a_funcfl_file_cannot_hold_an_attractive_pair_term():
    with pytest.raises(ValueError, match="r\\*phi\\(r\\) is negative somewhere"):
        as_format(zhou_tables(), "funcfl")


# -- energies and forces against LAMMPS -----------------------------------------------------


@pytest.mark.parametrize("format", ["setfl", "funcfl"])
def test_energies_and_forces_match_lammps(files, format):
    """32 atoms in a box of 7.2 Angstrom, less than twice the 5.5 Angstrom cutoff: several
    images of one partner interact."""
    require_lammps()
    potential = EAM(file=str(files[format]))
    _against_lammps(potential, _perturbed_copper(), _pair_lines(files[format], format))


def test_the_site_list_matches_lammps(files):
    require_lammps()
    potential = EAM(file=str(files["setfl"]))
    atoms = _perturbed_copper(amplitude=0.1, seed=1)
    _against_lammps(potential, atoms, _pair_lines(files["setfl"], "setfl"), neighbors="sites")


def test_the_site_list_in_blocks_matches_lammps(files):
    """256 atoms: the site list sums its rows in blocks (a second pass reads every block's
    densities), as it does for cu_256 and cu_500."""
    require_lammps()
    potential = EAM(file=str(files["setfl"]))
    atoms = _perturbed_copper(amplitude=0.1, seed=4, repeat=4)
    box = np.diag(np.asarray(atoms.cell))
    plan = potential.neighbor_plan(box, np.mod(atoms.positions, box), max_displacement=1.0,
                                   neighbors="sites")
    assert plan.block < len(atoms)  # more than one block
    _against_lammps(potential, atoms, _pair_lines(files["setfl"], "setfl"), neighbors="sites")


def test_lammps_conventions_at_the_edges_of_the_tables(tmp_path):
    """A coarse funcfl table: LAMMPS shortens its grid by one point (the cutoff sits on its last
    point) and continues F linearly above the last tabulated density (reached here)."""
    require_lammps()
    r, rho = np.arange(30) * 0.2, np.arange(40) * 0.5
    tables = EAMTables("funcfl", "Cu", 29, 63.546, 3.615, "fcc", 40, 0.5, 30, 0.2, 5.6,
                       embedding=-np.sqrt(rho + 0.1), density=8.0 * np.exp(-0.5 * r),
                       pair=0.3 * (6.5 - r))
    path = write_eam(tmp_path / "coarse.eam", tables)
    potential = EAM(file=str(path))
    assert potential.grid.density.size == 29 and potential.grid.rho_max == 19.5
    _against_lammps(potential, _perturbed_copper(amplitude=0.3, seed=2),
                    _pair_lines(path, "funcfl"))


def test_the_training_energy_is_finite_where_atoms_overlap(files):
    potential = EAM(file=str(files["setfl"]))
    atoms = _perturbed_copper(amplitude=0.0)
    box = np.diag(np.asarray(atoms.cell))
    x = jnp.asarray(atoms.positions, jnp.float32).at[1].set(atoms.positions[0])
    fn = potential.energy_fn(box, atoms.positions, max_displacement=1.0, softened=True,
                             neighbors="dense")
    energy, grad = jax.jit(jax.value_and_grad(fn))(x)
    assert np.isfinite(float(energy)) and np.all(np.isfinite(np.asarray(grad)))


# -- the named copper systems ---------------------------------------------------------------


def test_the_named_copper_systems_are_the_analytic_crystal():
    system = load_system("cu_32")
    assert system.potential.kind == "eam" and system.potential.species == ("Cu",)
    assert system.units.energy == "eV" and system.temperature == 300.0
    assert np.allclose(system.box, 2 * A0, rtol=1e-9)
    # The tables reproduce the analytic sum at the sites to rounding (1e-13 eV per atom).
    assert abs(system.lattice_energy() / 32 - fcc_energy_per_atom(A0)) < 1e-12
    rebuilt = system_from_dict(json.loads(json.dumps(system_to_dict(system))))
    assert rebuilt.potential == system.potential


def test_a_system_file_names_its_table_relative_to_itself(files, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_eam(folder / "Cu.eam.alloy", read_eam(files["setfl"]))
    text = (systems_directory() / "cu_32.toml").read_text()
    (folder / "cu.toml").write_text(text.replace("Cu_zhou2004.eam.alloy", "Cu.eam.alloy"))
    assert load_system(folder / "cu.toml").potential.file == str(folder / "Cu.eam.alloy")
    (folder / "lost.toml").write_text(text.replace("Cu_zhou2004.eam.alloy", "lost.eam.alloy"))
    assert main(["energy", str(folder / "lost.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lost.eam.alloy' does not exist" in err, err


def test_the_hessian_of_the_analytic_route_is_autodiffs(files):
    """The harmonic crystal (the SMC and MBAR references) needs second derivatives; the analytic
    gradient's custom JVP is differentiated through (``planned_energy``)."""
    potential = EAM(file=str(files["setfl"]))
    atoms = _perturbed_copper(amplitude=0.05, seed=3)
    box = np.diag(np.asarray(atoms.cell))
    with jax.enable_x64(True):
        x = jnp.asarray(atoms.positions, jnp.float64)
        hessians = [np.asarray(jax.jit(jax.hessian(potential.energy_fn(
            box, atoms.positions, max_displacement=1.0, neighbors="sites", gradient=route)))(x))
            for route in ("analytic", "autodiff")]
    assert np.abs(hessians[0] - hessians[1]).max() <= RELATIVE * np.abs(hessians[1]).max()


def test_a_moved_checkout_keeps_the_identity_and_finds_the_file(files, tmp_path):
    """The file's path labels an EAM potential and its SHA-256 identifies it: the same table
    at two paths is one state point, and a run record whose path no longer exists is rebuilt
    from the named systems' copy of that file."""
    system = load_system("cu_32")
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    copy = folder / "Cu_zhou2004.eam.alloy"
    copy.write_text((systems_directory() / "Cu_zhou2004.eam.alloy").read_text())
    text = (systems_directory() / "cu_32.toml").read_text()
    (folder / "cu_32.toml").write_text(text)
    moved = load_system(folder / "cu_32.toml")
    assert moved.potential.file != system.potential.file
    assert system_fingerprint(moved) == system_fingerprint(system)
    record = system_to_dict(system)
    record["potential"]["file"] = "/no/such/checkout/systems/Cu_zhou2004.eam.alloy"
    assert system_fingerprint(system_from_dict(record)) == system_fingerprint(system)
    # Another table is another state point, wherever it lies.
    (folder / "Cu_test.eam").write_text(files["funcfl"].read_text())
    (folder / "other.toml").write_text(text.replace("Cu_zhou2004.eam.alloy", "Cu_test.eam"))
    assert system_fingerprint(load_system(folder / "other.toml")) != system_fingerprint(system)


def test_a_training_run_resumes_after_its_table_moved(tmp_path):
    from freeflow.rundir.runs import run_record
    from freeflow.training.config import presets
    from freeflow.workflows.train import check_same_run

    system = load_system("cu_32")
    model, training = presets("cpu", system)
    saved = run_record(system, model, training)
    saved["system"]["potential"]["file"] = "/an/old/checkout/systems/Cu_zhou2004.eam.alloy"
    check_same_run(saved, run_record(system, model, training), tmp_path)
    saved["system"]["potential"]["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="system"):
        check_same_run(saved, run_record(system, model, training), tmp_path)
