"""What makes two systems the same, as plain data: a system written to and rebuilt from JSON
(run directories, sample files), its identity and fingerprint (one state point, whatever its
name), and a crystal's identity across sizes (``freeflow limit``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from ase import Atoms

from freeflow.fingerprint import fingerprint
from freeflow.physics.potentials import POTENTIALS, potential_from_config
from freeflow.physics.system import System
from freeflow.physics.system_files import systems_directory

__all__ = ["check_same_system", "crystal_identity", "describe_system", "record_identity",
           "system_fingerprint", "system_from_dict", "system_identity", "system_to_dict"]


def system_to_dict(system: System) -> dict:
    """Everything needed to rebuild ``system`` exactly, as plain JSON-able data."""
    if dataclasses.is_dataclass(system.potential):
        potential = dataclasses.asdict(system.potential)
        potential.pop("units", None)
    else:
        # A user's own potential class: recorded by name (so a resumed run can be checked
        # against it) but not rebuildable from the run directory alone.
        potential = {"repr": repr(system.potential)}
    return {
        "name": system.name,
        "description": system.description,
        "potential": {"kind": system.potential.kind, **potential},
        "temperature": system.temperature,
        "atoms": {
            "symbols": system.atoms.get_chemical_symbols(),
            "positions": system.atoms.positions.tolist(),
            "cell": np.asarray(system.atoms.cell).tolist(),
        },
        "definition": system.definition,
    }


def system_identity(system: System) -> dict:
    """What makes two systems the same physical state point, as plain data: the potential
    and its parameters, the temperature, the cell and the lattice sites (rounded to 1e-9 of
    the length unit). The name and description are labels and are left out."""
    data = system_to_dict(system)
    return {"potential": _what_it_is(data["potential"]),
            "temperature": float(system.temperature),
            "cell": np.round(np.asarray(data["atoms"]["cell"], np.float64), 9).tolist(),
            "sites": np.round(np.asarray(system.lattice, np.float64), 9).tolist(),
            "symbols": data["atoms"]["symbols"]}


def crystal_identity(system: System) -> dict:
    """What systems of different sizes share when they are one crystal at one state point:
    the potential, the temperature, the number density (9 significant digits), the species,
    and the lattice's definition less its size (kind, ``c_over_a``, ...) or, for a crystal
    built from atoms, its lattice energy per particle (9 significant digits)."""
    data = system_to_dict(system)
    lattice = dict((system.definition or {}).get("lattice", {}))
    for size in ("num_particles", "repeat"):
        lattice.pop(size, None)
    structure = ({"lattice": lattice} if lattice.get("kind") else
                 {"lattice_energy_per_particle":
                  float(f"{system.lattice_energy() / system.num_particles:.9g}")})
    return {"potential": _what_it_is(data["potential"]),
            "temperature": float(system.temperature),
            "number_density": float(f"{system.number_density:.9g}"),
            "species": sorted(set(data["atoms"]["symbols"])), **structure}


def system_fingerprint(system: System) -> str:
    """A short hash of ``system_identity``: equal for the same state point, whatever its name."""
    return fingerprint(system_identity(system))


def describe_system(system: System) -> str:
    """A one-line label of a state point: name, potential, N, temperature, density."""
    density = system.num_particles / float(np.prod(system.box))
    return (f"{system.name} ({system.potential.kind}, N = {system.num_particles}, "
            f"T = {system.temperature:g} {system.units.temperature}, "
            f"density {density:.6g}/{system.units.length}^3)")


def check_same_system(expected: System, found: System, what: str):
    """Refuse ``found`` (described by ``what``, e.g. a sample file) unless it is the same state
    point as ``expected``, naming both sides in one line."""
    if system_fingerprint(expected) != system_fingerprint(found):
        raise ValueError(f"{what} belongs to {describe_system(found)}, not to "
                         f"{describe_system(expected)}")


def _label_fields(potential: dict) -> tuple[str, ...]:
    """The fields of a potential's record that only say where it came from: its kind's
    ``label_fields`` (e.g. an EAM file's path, whose SHA-256 is recorded beside it)."""
    return getattr(POTENTIALS.get(potential.get("kind")), "label_fields", ())


def _what_it_is(potential: dict) -> dict:
    """A potential's record less its ``_label_fields``, so that one state point has one
    identity wherever its files lie."""
    labels = _label_fields(potential)
    return {key: value for key, value in potential.items() if key not in labels}


def record_identity(record: dict) -> dict:
    """A ``system_to_dict`` record less its potential's ``label_fields``: what two records of
    one state point share wherever their files lie (a run's ``run.json`` against the system
    that would resume it)."""
    return dict(record, potential=_what_it_is(record["potential"]))


def _found(potential: dict) -> dict:
    """``potential`` with a recorded file (one of its ``_label_fields``) that is no longer
    where it was looked up by its name among the named systems' files (a moved checkout or
    another machine); the recorded SHA-256 then refuses other content."""
    found = dict(potential)
    for field in _label_fields(potential):
        path = potential.get(field)
        if not isinstance(path, str) or not path or Path(path).is_file():
            continue
        try:
            candidate = systems_directory() / Path(path).name
        except FileNotFoundError:
            continue
        if candidate.is_file():
            found[field] = str(candidate)
    return found


def system_from_dict(data: dict) -> System:
    """Inverse of ``system_to_dict``."""
    if "repr" in data["potential"]:
        raise ValueError(f"system {data['name']!r} uses a custom potential "
                         f"({data['potential']['repr']}) that cannot be rebuilt from its "
                         "definition; pass the System object itself instead of a run directory")
    atoms = Atoms(symbols=data["atoms"]["symbols"], positions=data["atoms"]["positions"],
                  cell=data["atoms"]["cell"], pbc=True)
    return System(name=data["name"], atoms=atoms,
                  potential=potential_from_config(_found(data["potential"])),
                  temperature=float(data["temperature"]),
                  description=data.get("description", ""), definition=data.get("definition"))
