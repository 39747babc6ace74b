"""Systems from files: the named systems' TOML definitions and users' structure files.

The one module that reads a system definition (``[potential]``, ``[state]``, ``[lattice]``;
``DEFINITION_KEYS``) or a structure file (``read_structure``, through ``ase.io``). Named
systems live in ``systems_directory()``; ``load_system`` takes a name or a ``.toml`` path.
"""

from __future__ import annotations

import math
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.data import chemical_symbols
import numpy as np

from freeflow.physics.lattice import LATTICES, build_lattice, check_orthorhombic, checked_repeat
from freeflow.physics.potentials import potential_from_config
from freeflow.physics.potentials.base import UNLABELLED
from freeflow.physics.system import (System, check_box, check_energy_memory, check_positions, errors_about)
from freeflow.physics.validation import POSITIVE, check_number, check_table

__all__ = ["DEFINITION_KEYS", "load_named_system", "load_system", "named_systems",
           "read_structure", "system_from_atoms", "system_from_definition",
           "systems_directory"]


def systems_directory() -> Path:
    """Where the named system definitions live.

    ``$FREEFLOW_SYSTEMS_DIR`` if set, else the repository's ``systems/`` (editable installs),
    else the copy installed under ``<prefix>/share/freeflow/systems``.
    """
    candidates = []
    if os.environ.get("FREEFLOW_SYSTEMS_DIR"):
        candidates.append(Path(os.environ["FREEFLOW_SYSTEMS_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "systems")
    candidates.append(Path(sys.prefix) / "share" / "freeflow" / "systems")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.toml")):
            return path
    raise FileNotFoundError(
        "no system definitions found; looked in " + ", ".join(map(str, candidates))
        + ". Set FREEFLOW_SYSTEMS_DIR to a folder of *.toml system files.")


#: The tables of a system file and the keys each accepts; ``[potential]`` accepts ``kind`` and
#: that potential's parameters (``potential_from_config``). Every table refuses other keys
#: (``freeflow.physics.validation.check_table``).
DEFINITION_KEYS = {
    "the system definition": ("name", "description", "potential", "state", "lattice"),
    "[state]": ("temperature", "number_density"),
    "[lattice]": ("kind", "num_particles", "symbol", "repeat", "c_over_a"),
}


def system_from_definition(definition: dict, source: str | None = None) -> System:
    """Build a system from a declarative mapping (the parsed content of a system TOML file).

    Every error is one ``ValueError`` line starting with ``source`` (the file's path; default:
    the definition's name). A system too large for the machine's memory is refused before its
    lattice is built (``check_energy_memory``).
    """
    name = definition.get("name") if isinstance(definition, dict) else None
    with errors_about(source or (name if isinstance(name, str) and name else "system")):
        return _system_from_definition(definition, source)


def _system_from_definition(definition, source: str | None = None) -> System:
    top = check_table(definition, "the system definition",
                      DEFINITION_KEYS["the system definition"])
    missing = [key for key in ("name", "potential", "state", "lattice") if key not in top]
    if missing:
        raise ValueError(f"the system definition lacks {', '.join(missing)}; a definition "
                         f"needs name, [potential], [state] and [lattice]")
    state = check_table(top["state"], "[state]", DEFINITION_KEYS["[state]"])
    lattice = check_table(top["lattice"], "[lattice]", DEFINITION_KEYS["[lattice]"])
    name, description = top["name"], top.get("description", "")
    if not (isinstance(name, str) and name) or not isinstance(description, str):
        raise ValueError(f"name must be a non-empty string and description a string; got "
                         f"name = {name!r}, description = {description!r}")
    potential = potential_from_config(files_relative_to(top["potential"], source),
                                      require_all=True)
    density = _entry(state, "number_density", "[state]")
    temperature = _entry(state, "temperature", "[state]")
    count, kind, symbol = (lattice.get(key) for key in ("num_particles", "kind", "symbol"))
    repeat, c_over_a = lattice.get("repeat"), lattice.get("c_over_a")
    if c_over_a is not None:
        c_over_a = check_number(c_over_a, "c_over_a", POSITIVE, "[lattice]")
    if count is None and repeat is not None and kind in LATTICES:  # N from the repeats
        count = LATTICES[kind].sites_per_cell * math.prod(checked_repeat(repeat))
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"[lattice] num_particles must be a positive whole number (or give "
                         f"repeat = [n1, n2, n3] cells); got {count!r}")
    if kind is None:
        raise ValueError("[lattice] lacks kind (fcc, diamond, hexagonal_ice, ...)")
    symbol = UNLABELLED if symbol is None else symbol
    if symbol not in chemical_symbols:
        raise ValueError(f"[lattice] symbol {symbol!r} is not a chemical symbol; give the "
                         f"element's ('Ar', 'O', ...) or {UNLABELLED!r} for unlabelled sites")
    # Before the lattice exists: its box is about a cube of the same volume.
    box = np.full(3, (count / density) ** (1.0 / 3.0))
    check_box(box, potential.units.length)
    check_energy_memory(count, box, potential)
    atoms = build_lattice(kind, count, density, symbol, repeat=repeat, c_over_a=c_over_a)
    return System(name=name, atoms=atoms, potential=potential, temperature=temperature,
                  description=description, definition=definition)


def files_relative_to(potential: Any, source: str | None) -> Any:
    """``[potential]`` with a relative ``file`` (an EAM table) taken relative to the folder of
    the system file ``source`` (without one: to the working directory), made absolute so that
    a run's record finds it from anywhere."""
    if not (isinstance(potential, dict) and isinstance(potential.get("file"), str)):
        return potential
    path = Path(potential["file"]).expanduser()
    if source and not path.is_absolute():
        path = Path(source).parent / path
    return {**potential, "file": os.path.abspath(path)}


def _entry(table: dict, key: str, where: str) -> float:
    """A positive, finite number from a definition's table, or one line saying what is wrong."""
    if key not in table:
        raise ValueError(f"{where} lacks {key}")
    return check_number(table[key], key, POSITIVE, where)


def named_systems() -> list[str]:
    """Names of the systems declared in the systems directory, sorted."""
    def natural(name):
        head, _, size = name.rpartition("_")
        return (head, int(size)) if size.isdigit() else (name, 0)

    return sorted((p.stem for p in systems_directory().glob("*.toml")), key=natural)


def load_system(name_or_path: str | os.PathLike) -> System:
    """Load a named system (``"lj_256"``) or a system TOML file."""
    path = Path(name_or_path)
    if path.suffix.lower() == ".toml" or path.exists():
        if path.is_dir():
            raise ValueError(f"{path} is a directory, not a system .toml file")
        if not path.is_file():
            raise FileNotFoundError(f"system file {str(path)!r} does not exist")
        try:
            with open(path, "rb") as fh:
                definition = tomllib.load(fh)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path} is not valid TOML ({error})") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not valid TOML (not UTF-8 text: {error})") from None
        return system_from_definition(definition, source=str(path))
    return load_named_system(str(name_or_path))


def load_named_system(name: str) -> System:
    """Load the named system ``name`` from the systems folder, whatever files or folders of
    that name the working directory holds."""
    file = systems_directory() / f"{name}.toml"
    if not file.is_file():
        raise ValueError(f"unknown system {name!r}; named systems: {', '.join(named_systems())} "
                         f"(or give the path of a system .toml file)")
    with open(file, "rb") as fh:
        return system_from_definition(tomllib.load(fh), source=str(file))


def system_from_atoms(atoms: Atoms | str | os.PathLike, potential, temperature: float,
                      name: str | None = None, description: str = "") -> System:
    """A system from the user's own crystal.

    Args:
      atoms: an ``ase.Atoms`` or the path of a file ``ase.io.read`` understands holding one
        structure (``read_structure``). Its positions are taken as the lattice sites,
        translated so that the first atom sits at the box corner; its cell must be orthorhombic
        and periodic, its atoms of one species that the potential models (see
        ``check_species``).
      potential: a ``freeflow.physics.potentials`` object (``LennardJones(...)``, ``MonatomicWater()``).
      temperature: in the potential's temperature unit (``epsilon/k_B`` for LJ, K for mW).

    Every error is one ``ValueError`` line that starts with the file's path (or the name).
    """
    label = name or "the structure"
    if not isinstance(atoms, Atoms):
        path = Path(atoms)
        if not path.is_file():
            raise FileNotFoundError(f"structure file {str(path)!r} does not exist")
        name, label = name or path.stem, str(path)
        atoms = read_structure(path)
    with errors_about(label):
        atoms = atoms.copy()
        atoms.calc = None
        check_positions(atoms)
        check_orthorhombic(atoms)
        # The flow fixes one particle at the box corner; a global translation changes no energy.
        atoms.translate(-atoms.positions[0])
        atoms.wrap()
        return System(name=name or "custom", atoms=atoms, potential=potential,
                      temperature=temperature, description=description)


def read_structure(path: str | os.PathLike) -> Atoms:
    """The one structure in a file ``ase.io.read`` understands, or one line naming the file.

    An empty file, a file ASE cannot parse (binary data, an unknown format) and a file of
    several structures (a trajectory, whose last frame ASE would take without a word) are
    refused.
    """
    import ase.io

    path = Path(path)
    fix = "give one structure in a format ase.io.read understands (extxyz, cif, POSCAR, ...)"
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty; {fix}")
    try:
        frames = ase.io.read(path, index=slice(0, 2))
    except MemoryError:
        raise
    except Exception as error:  # ASE's readers raise anything, UnicodeDecodeError to AssertionError
        detail = str(error).splitlines()[0][:160] if str(error).strip() else ""
        raise ValueError(f"{path} is not a structure file ASE can read "
                         f"({type(error).__name__}{': ' + detail if detail else ''}); "
                         f"{fix}") from None
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    if not frames:
        raise ValueError(f"{path} holds no structure; {fix}")
    if len(frames) > 1:
        raise ValueError(f"{path} holds more than one structure; freeflow takes one crystal: "
                         f"write the one you mean to a file of its own (ase.io.write(FILE, "
                         f"ase.io.read({str(path)!r}, index=K)))")
    return frames[0]
