"""Saving and loading samples of a system, together with the system's definition.

Two formats, chosen by the file suffix:

* ``.npz``: ``positions`` ``[S, N, 3]`` float32, ``box`` ``[3]``, ``energies`` ``[S]`` (if given)
  and ``system``: JSON text ``{"definition": <the system's TOML definition>}`` (or, for a system
  built from ``ase.Atoms``, ``{"system": system_to_dict(system)}``), so the file is
  self-contained.
* ``.extxyz`` / ``.xyz``: one extended-XYZ frame per sample, written with ``ase.io.write``
  (periodic cell and ``pbc`` set, so any ASE-based tool reads it). Each frame's comment line
  carries ``freeflow_system`` (the same JSON text) and ``freeflow_energy`` if energies
  were given.

Positions are in the system's length unit, energies in its energy unit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["save_samples", "load_samples"]

_XYZ_SUFFIXES = (".extxyz", ".xyz")


def _encode_system(system) -> str:
    """JSON text describing ``system``: its declarative definition (named or TOML systems) or,
    for systems built from ``ase.Atoms``, ``freeflow.system.system_to_dict``."""
    if system.definition is not None:
        return json.dumps({"definition": system.definition})
    from freeflow.system import system_to_dict

    return json.dumps({"system": system_to_dict(system)})


def _decode_system(text: str):
    from freeflow import system as systems

    data = json.loads(text)
    if "definition" in data:
        return systems.system_from_definition(data["definition"])
    return systems.system_from_dict(data["system"])


def save_samples(path: str | os.PathLike, positions, system, energies=None) -> Path:
    """Write samples ``positions [S, N, 3]`` (or one ``[N, 3]``) of ``system`` to ``path``.

    Returns the path written. The format follows the suffix (``.npz``, ``.extxyz``, ``.xyz``).
    """
    path = Path(path)
    positions = np.asarray(positions, dtype=np.float32)
    if positions.ndim == 2:
        positions = positions[None]
    if positions.ndim != 3 or positions.shape[1:] != (system.num_particles, 3):
        raise ValueError(f"positions must be [S, {system.num_particles}, 3]; "
                         f"got {positions.shape}")
    if energies is not None:
        energies = np.asarray(energies, dtype=np.float64).reshape(-1)
        if len(energies) != len(positions):
            raise ValueError(f"{len(energies)} energies for {len(positions)} samples")
    definition = _encode_system(system)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        extra = {} if energies is None else {"energies": energies}
        np.savez_compressed(path, positions=positions, box=np.asarray(system.box),
                            system=np.asarray(definition), **extra)
    elif suffix in _XYZ_SUFFIXES:
        import ase.io

        frames = []
        for i, x in enumerate(positions):
            atoms = system.atoms.copy()
            atoms.positions = x.astype(np.float64)
            atoms.pbc = True
            atoms.info["freeflow_system"] = definition
            if energies is not None:
                # Not "energy": ASE would turn that into a calculator result.
                atoms.info["freeflow_energy"] = float(energies[i])
            frames.append(atoms)
        ase.io.write(path, frames, format="extxyz")
    else:
        raise ValueError(f"unknown sample file format {path.suffix!r}; use .npz or .extxyz")
    return path


def load_samples(path: str | os.PathLike):
    """Read samples written by ``save_samples``.

    Returns:
      ``(positions [S, N, 3] float32, system, energies [S] or None)``; the system is rebuilt
      from the stored definition.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path) as data:
            positions = data["positions"].astype(np.float32)
            definition = str(data["system"])
            energies = data["energies"] if "energies" in data.files else None
    elif suffix in _XYZ_SUFFIXES:
        import ase.io

        frames = ase.io.read(path, index=":", format="extxyz")
        positions = np.stack([a.positions for a in frames]).astype(np.float32)
        definition = frames[0].info["freeflow_system"]
        energies = None
        if all("freeflow_energy" in a.info for a in frames):
            energies = np.asarray([a.info["freeflow_energy"] for a in frames])
    else:
        raise ValueError(f"unknown sample file format {path.suffix!r}; use .npz or .extxyz")
    return positions, _decode_system(definition), energies
