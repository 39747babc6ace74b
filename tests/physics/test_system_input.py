"""Bad system files, parameters and structure files are refused in one line that names the
input (issue 39, cases 4, 5 and 8): every table of a system file refuses keys it does not
know, every physical parameter its domain, every structure file what freeflow cannot use."""

import math
import re

import numpy as np
import pytest
from ase import Atoms

import freeflow
from freeflow import build_lattice, load_system, system_from_atoms
from freeflow.physics.potentials import (
    POTENTIALS,
    Buckingham,
    EinsteinCrystal,
    LennardJones,
    MonatomicWater,
    Morse,
    StillingerWeber,
    SymmetricEinsteinCrystal,
)
from freeflow.physics.potentials.stillinger_weber import PARAMETER_SETS
from freeflow.physics.system_files import read_structure, systems_directory


def _edited(tmp_path, name, old, new, filename="edited.toml"):
    """The named system's TOML with ``old`` replaced by ``new``, written to ``tmp_path``."""
    text = (systems_directory() / f"{name}.toml").read_text()
    assert old in text
    path = tmp_path / filename
    path.write_text(text.replace(old, new, 1))
    return path


def _refused(call, message):
    """``call()`` raises a ValueError whose message is exactly ``message``."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


# -- case 4: every table refuses keys it does not know --------------------------------------

STATE_KEYS = "accepted keys: number_density, temperature"
TOP_KEYS = "accepted keys: description, lattice, name, potential, state"


@pytest.mark.parametrize("old, new, message", [
    ("number_density = 1.28", "number_density = 1.28\npressure = 1.0",
     f"[state] has unknown key 'pressure'; {STATE_KEYS}"),
    ('name = "lj_32"', 'name = "lj_32"\nunits = "metal"',
     f"the system definition has unknown key 'units'; {TOP_KEYS}"),
    ('name = "lj_32"', 'name = "lj_32"\ntemperature_unit = "K"',
     f"the system definition has unknown key 'temperature_unit'; {TOP_KEYS}"),
    ('symbol = "Ar"', 'symbol = "Ar"\nspacing = 1.5\nstacking = 2',
     "[lattice] has unknown keys 'spacing', 'stacking'; accepted keys: c_over_a, kind, "
     "num_particles, repeat, symbol"),
    ("cutoff = 2.7", "cutoff = 2.7\nrc = 2.5",
     "potential 'lennard_jones' has unknown key 'rc'; accepted keys: cutoff, epsilon, kind, "
     "shift, sigma"),
])
def test_every_table_refuses_unknown_keys(tmp_path, old, new, message):
    path = _edited(tmp_path, "lj_32", old, new)
    _refused(lambda: load_system(path), f"{path}: {message}")


def test_a_table_must_be_a_table(tmp_path):
    text = (systems_directory() / "lj_32.toml").read_text()
    state = text[text.index("[state]"):text.index("[lattice]")]
    path = tmp_path / "flat.toml"
    path.write_text("state = 3\n" + text.replace(state, ""))
    _refused(lambda: load_system(path),
             f"{path}: [state] must be a table of keys and values; got 3")


# -- case 5: physical parameters in their domains, for every potential ----------------------

BAD_VALUES = {"positive and finite": -1.0, "zero or positive and finite": -0.5,
              "a cosine, between -1 and 1": 1.5}


def _parameter_cases():
    defaults = {EinsteinCrystal: {"spring_constant": 1.0},
                SymmetricEinsteinCrystal: {"spring_constant": 1.0},
                StillingerWeber: PARAMETER_SETS["silicon"],
                Morse: {"D0": 0.3429, "alpha": 1.3588, "r0": 2.866, "cutoff": 6.0},
                Buckingham: {"A": 2000.0, "rho": 0.27, "C": 60.0, "cutoff": 8.0}}
    for cls in POTENTIALS.values():
        for name, domain in cls.parameter_domains:
            for bad in (BAD_VALUES[domain.description], math.nan, math.inf):
                if bad == math.inf and domain.description.startswith("a cosine"):
                    continue
                yield pytest.param(cls, defaults.get(cls, {}), name, bad, domain.description,
                                   id=f"{cls.kind}-{name}-{bad}")


@pytest.mark.parametrize("cls, base, name, bad, description", list(_parameter_cases()))
def test_every_parameter_of_every_potential_is_checked(cls, base, name, bad, description):
    _refused(lambda: cls(**{**base, name: bad}),
             f"potential {cls.kind!r}: {name} must be {description}; got {bad!r}")


@pytest.mark.parametrize("make, message", [
    (lambda: LennardJones(epsilon="1.0"), "potential 'lennard_jones': epsilon must be a number; "
                                          "got '1.0'"),
    (lambda: LennardJones(sigma=True), "potential 'lennard_jones': sigma must be a number; "
                                       "got True"),
    (lambda: LennardJones(shift="yes"), "potential 'lennard_jones': shift must be true or "
                                        "false; got 'yes'"),
    (lambda: MonatomicWater(p=4.0, q=6.0), "potential 'monatomic_water': p must exceed q (the "
                                           "repulsive power over the attractive one); got "
                                           "p = 4.0, q = 6.0"),
])
def test_parameters_of_the_wrong_kind(make, message):
    _refused(make, message)


def test_the_named_potentials_and_numpy_parameters_pass():
    LennardJones(epsilon=np.float32(1.0), sigma=np.float64(1.0), cutoff=np.int64(3))
    MonatomicWater(lam=0.0)  # no three-body term: the Stillinger-Weber family allows it
    for name in freeflow.named_systems():
        load_system(name)


@pytest.mark.parametrize("old, new, message", [
    ("epsilon = 1.0", "epsilon = -1.0",
     "potential 'lennard_jones': epsilon must be positive and finite; got -1.0"),
    ("sigma = 1.0", "sigma = 0.0",
     "potential 'lennard_jones': sigma must be positive and finite; got 0.0"),
    ("temperature = 2.0", "temperature = -2.0",
     "[state]: temperature must be positive and finite; got -2.0"),
    ("number_density = 1.28", 'number_density = "dense"',
     "[state]: number_density must be a number; got 'dense'"),
    ("number_density = 1.28", "number_density = nan",
     "[state]: number_density must be positive and finite; got nan"),
])
def test_system_files_with_unphysical_parameters(tmp_path, old, new, message):
    path = _edited(tmp_path, "lj_32", old, new)
    _refused(lambda: load_system(path), f"{path}: {message}")


def test_a_density_that_leaves_float32_is_refused(tmp_path):
    """1e-300 made a box of 3e100 sigma, inf in float32, and printed U/N = 0."""
    for density in (1e-300, 1e300):
        path = _edited(tmp_path, "lj_32", "number_density = 1.28",
                       f"number_density = {density!r}")
        edges = [(32 / density) ** (1 / 3)] * 3
        _refused(lambda: load_system(path),
                 f"{path}: the box edges {edges} sigma are outside the range of float32 "
                 f"(1.18e-38 to 3.4e+38), in which energies are evaluated; check the number "
                 f"density")


def test_a_crystal_whose_sites_do_not_interact_is_refused(tmp_path):
    path = _edited(tmp_path, "lj_32", "number_density = 1.28", "number_density = 1e-3")
    nearest = (math.sqrt(2) / 1e-3) ** (1 / 3)  # FCC: a / sqrt(2), a^3 = 4 / density
    _refused(lambda: load_system(path),
             f"{path}: no two sites interact: the nearest-neighbour distance {nearest:.6g} "
             f"sigma is beyond the potential's cutoff 2.7 sigma, so this is no solid; raise "
             f"the number density")


def test_temperature_of_a_user_system():
    atoms = build_lattice("fcc", 32, 1.28)
    _refused(lambda: system_from_atoms(atoms, LennardJones(), "hot", name="mine"),
             "mine: temperature must be a number; got 'hot'")
    assert system_from_atoms(atoms, LennardJones(), 2).temperature == 2.0


# -- case 8: structure files ----------------------------------------------------------------

ONE_STRUCTURE = ("give one structure in a format ase.io.read understands (extxyz, cif, "
                 "POSCAR, ...)")


def _ice(symbol="O"):
    atoms = load_system("mw_cubic_8").atoms.copy()
    atoms.set_chemical_symbols([symbol] * len(atoms))
    return atoms


def test_species_must_be_the_potentials(tmp_path):
    path = tmp_path / "argon.extxyz"
    _ice("Ar").write(path)
    _refused(lambda: system_from_atoms(path, MonatomicWater(), 200.0),
             f"{path}: the atoms are Ar, but potential 'monatomic_water' models O; relabel them "
             f"(atoms.set_chemical_symbols, or symbol = 'O' in [lattice]), or use 'X' for "
             f"unlabelled sites")
    toml = _edited(tmp_path, "mw_cubic_8", 'symbol = "O"', 'symbol = "Ar"')
    with pytest.raises(ValueError, match=f"^{re.escape(str(toml))}: the atoms are Ar, but"):
        load_system(toml)
    # Water as O or unlabelled X; Lennard-Jones in reduced units models any one species.
    for symbol in ("O", "X"):
        system_from_atoms(_ice(symbol), MonatomicWater(), 200.0)
    argon = build_lattice("fcc", 32, 1.28, symbol="Kr")
    assert system_from_atoms(argon, LennardJones(), 2.0).num_particles == 32


def test_a_structure_of_several_species_is_refused():
    atoms = _ice()
    atoms.set_chemical_symbols(["O"] * 7 + ["H"])
    _refused(lambda: system_from_atoms(atoms, MonatomicWater(), 200.0, name="wet"),
             "wet: the atoms are of 2 species (H, O); freeflow computes solids of one species "
             "(identical particles): relabel them with one symbol")


def test_an_unknown_chemical_symbol_in_a_system_file(tmp_path):
    path = _edited(tmp_path, "lj_32", 'symbol = "Ar"', 'symbol = "Xx"')
    _refused(lambda: load_system(path),
             f"{path}: [lattice] symbol 'Xx' is not a chemical symbol; give the element's "
             f"('Ar', 'O', ...) or 'X' for unlabelled sites")


def test_a_file_of_several_structures_is_refused(tmp_path):
    path = tmp_path / "trajectory.extxyz"
    freeflow.save_samples(path, np.repeat(_ice().positions[None], 3, axis=0),
                          load_system("mw_cubic_8"))
    _refused(lambda: read_structure(path),
             f"{path} holds more than one structure; freeflow takes one crystal: write the one "
             f"you mean to a file of its own (ase.io.write(FILE, ase.io.read({str(path)!r}, "
             f"index=K)))")


@pytest.mark.parametrize("filename, content, detail", [
    ("empty.xyz", b"", None),
    ("empty.cif", b"", None),
    ("bytes.xyz", b"\xff\xfe\x00\x01 binary", "(UnicodeDecodeError: 'utf-8' codec can't decode "
                                              "byte 0xff in position 0: invalid start byte)"),
    ("bytes.bin", b"\x00\x01\x02\x03", "(UnknownFileTypeError: bin)"),
])
def test_unreadable_structure_files_name_the_file(tmp_path, filename, content, detail):
    path = tmp_path / filename
    path.write_bytes(content)
    reason = "is empty" if detail is None else f"is not a structure file ASE can read {detail}"
    for call in (lambda: read_structure(path),
                 lambda: system_from_atoms(path, MonatomicWater(), 200.0)):
        _refused(call, f"{path} {reason}; {ONE_STRUCTURE}")


def test_any_parser_failure_is_one_line(tmp_path):
    """ASE's CIF reader fails on random bytes with a bare AssertionError."""
    path = tmp_path / "noise.cif"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))} is not a structure file ASE "
                                         f"can read \\(\\w+.*\\); {re.escape(ONE_STRUCTURE)}$"):
        read_structure(path)


def test_a_good_structure_file_still_loads(tmp_path):
    path = tmp_path / "ice.extxyz"
    _ice().write(path)
    system = system_from_atoms(path, MonatomicWater(), 200.0)
    assert system.name == "ice" and system.num_particles == 8
    assert system.lattice_energy() == pytest.approx(
        load_system("mw_cubic_8").lattice_energy(), rel=1e-9)


def test_the_command_line_prints_one_line_and_exits_2(tmp_path, capsys):
    from freeflow.cli import main
    argon = tmp_path / "argon.extxyz"
    _ice("Ar").write(argon)
    noise = tmp_path / "noise.xyz"
    noise.write_bytes(b"\xff\xfe\x00\x01 binary")
    for argv, needle in [
        (["energy", "mw_cubic_8", "--structure", str(argon)], f"{argon}: the atoms are Ar"),
        (["energy", "mw_cubic_8", "--structure", str(noise)], f"{noise} is not a structure"),
        (["energy", str(_edited(tmp_path, "lj_32", "epsilon = 1.0", "epsilon = -1.0"))],
         "epsilon must be positive and finite; got -1.0"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err


def test_positions_not_finite_name_the_structure():
    atoms = Atoms("XX", positions=[[0, 0, 0], [np.nan, 0, 0]], cell=[5.0] * 3, pbc=True)
    _refused(lambda: system_from_atoms(atoms, LennardJones(), 1.0),
             "the structure: positions of atoms 1 are not finite (NaN or inf)")
