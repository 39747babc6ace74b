"""Sample files (``freeflow sample --out FILE``): ``.npz`` or extended XYZ, with the system's
definition inside."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import ase.io
import numpy as np

from freeflow.physics.system_files import system_from_definition
from freeflow.physics.identity import system_from_dict, system_to_dict
from freeflow.rundir.files import atomic_write_bytes

_XYZ_SUFFIXES = (".extxyz", ".xyz")
#: The suffixes of sample files, in the order ``find_samples`` tries them.
SAMPLE_SUFFIXES = (".npz",) + _XYZ_SUFFIXES


# -- sample files ------------------------------------------------------------------------------

# Two formats, chosen by the file suffix:
# 
# * ``.npz``: ``positions`` ``[S, N, 3]`` float32, ``box`` ``[3]``, ``energies`` ``[S]`` (if given)
#   and ``system``: JSON text ``{"definition": <the system's TOML definition>}`` (or, for a system
#   built from ``ase.Atoms``, ``{"system": system_to_dict(system)}``), so the file is
#   self-contained.
# * ``.extxyz`` / ``.xyz``: one extended-XYZ frame per sample, written with ``ase.io.write``
#   (periodic cell and ``pbc`` set, so any ASE-based tool reads it). Each frame's comment line
#   carries ``freeflow_system`` (the same JSON text) and ``freeflow_energy`` if energies
#   were given.
# 
# Positions are in the system's length unit, energies in its energy unit.

def _encode_system(system) -> str:
    """JSON text describing ``system``: its declarative definition (named or TOML systems) or,
    for systems built from ``ase.Atoms``, ``system_to_dict``."""
    if system.definition is not None:
        return json.dumps({"definition": system.definition})
    return json.dumps({"system": system_to_dict(system)})


def _decode_system(text: str):
    data = json.loads(text)
    if "definition" in data:
        return system_from_definition(data["definition"])
    return system_from_dict(data["system"])


def save_samples(path: str | os.PathLike, positions, system, energies=None,
                 chains: dict | None = None) -> Path:
    """Write samples ``positions [S, N, 3]`` (or one ``[N, 3]``) of ``system`` to ``path``.

    Returns the path written. The format follows the suffix (``.npz``, ``.extxyz``, ``.xyz``).
    ``chains`` (``.npz`` only): the state of the Markov chains that drew them, ``positions
    [C, N, 3]`` and ``step_size``, so that ``freeflow sample`` can continue them
    (``read_chains``).
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
        if chains is not None:
            extra.update(chain_positions=np.asarray(chains["positions"], np.float32),
                         chain_step_size=np.asarray(float(chains["step_size"])))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, positions=positions, box=np.asarray(system.box),
                            system=np.asarray(definition), **extra)
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix in _XYZ_SUFFIXES:
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
        text = io.StringIO()
        ase.io.write(text, frames, format="extxyz")
        atomic_write_bytes(path, text.getvalue().encode())
    else:
        raise ValueError(f"unknown sample file format {path.suffix!r}; use .npz or .extxyz")
    return path


def read_chains(path: str | os.PathLike) -> dict | None:
    """The chain state that ``save_samples(..., chains=...)`` stored in a ``.npz`` sample file
    (``positions [C, N, 3]``, ``step_size``), or ``None``."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if "chain_positions" not in data.files:
                return None
            return {"positions": data["chain_positions"],
                    "step_size": float(data["chain_step_size"])}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def find_samples(directory: str | os.PathLike, name: str) -> Path | None:
    """The sample file ``directory/name.npz`` (or ``.extxyz``, ``.xyz``), or ``None``."""
    for suffix in SAMPLE_SUFFIXES:
        path = Path(directory) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


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
    if suffix not in SAMPLE_SUFFIXES:
        raise ValueError(f"unknown sample file format {path.suffix!r}; use .npz or .extxyz")
    hint = ("; sample files are written by 'freeflow sample SYSTEM --out FILE' or "
            "freeflow.save_samples")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                missing = {"positions", "system"} - set(data.files)
                if missing:
                    raise ValueError(f"{path} lacks {', '.join(sorted(missing))}{hint}")
                positions = data["positions"].astype(np.float32)
                definition = str(data["system"])
                energies = data["energies"] if "energies" in data.files else None
        else:
            frames = ase.io.read(path, index=":", format="extxyz")
            if not frames or "freeflow_system" not in frames[0].info:
                raise ValueError(f"{path} has no freeflow system record (a plain extended XYZ "
                                 f"file?){hint}")
            positions = np.stack([a.positions for a in frames]).astype(np.float32)
            definition = frames[0].info["freeflow_system"]
            energies = None
            if all("freeflow_energy" in a.info for a in frames):
                energies = np.asarray([a.info["freeflow_energy"] for a in frames])
        system = _decode_system(definition)
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path} is not a readable sample file ({error}){hint}") from None
    except (OSError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable sample file ({type(error).__name__}: "
                         f"{error}){hint}") from None
    if positions.ndim != 3 or positions.shape[1:] != (system.num_particles, 3):
        raise ValueError(f"{path} holds positions of shape {positions.shape}, not [S, "
                         f"{system.num_particles}, 3] for {system.name}")
    return positions, system, energies
