"""LAMMPS embedded-atom (EAM) potential files, single species: ``setfl`` and ``funcfl``.

Both formats tabulate three functions of one element on uniform grids (facts from the LAMMPS
documentation of ``pair_style eam``; DYNAMO's formats):

* the embedding energy ``F(rho)`` in eV at ``rho = k drho``, ``k = 0 .. nrho - 1``;
* the electron density ``rho(r)`` one atom gives at distance ``r = k dr``, ``k = 0 .. nr - 1``
  (Angstrom);
* the pair term: a ``setfl`` file (``pair_style eam/alloy``, ``*.eam.alloy``) stores ``r phi(r)``
  in eV Angstrom; a ``funcfl`` file (``pair_style eam``, ``*.eam``) stores an effective charge
  ``Z(r)``, and ``phi(r) = 27.2 * 0.529 * Z_i(r) Z_j(r) / r`` (Hartree times Bohr, in eV
  Angstrom), so one species' pair term is ``27.2 * 0.529 * Z(r)^2 / r``.

``setfl`` layout: three comment lines; ``N element ...``; ``nrho drho nr dr cutoff``; per element
a line ``atomic-number mass lattice-constant lattice-type`` followed by ``nrho`` values of F and
``nr`` of rho; then ``nr`` values of ``r phi`` per pair of elements. ``funcfl`` layout: one comment
line; ``atomic-number mass lattice-constant lattice-type``; ``nrho drho nr dr cutoff``; then
``nrho`` values of F, ``nr`` of Z and ``nr`` of rho. Values may run across lines in any number
per line.

``read_eam`` turns a file into ``EAMTables`` (frozen; arrays in float64) and refuses, with one
``ValueError`` line naming the file, a missing or unreadable file, a malformed or truncated one
(the line and what was expected), a file for two or more species, non-finite values, too few
grid points for LAMMPS's splines (5) and a cutoff beyond the tabulated distances: more than one
grid step past the last point LAMMPS interpolates (``(nr - 1) dr`` for setfl, ``(nr - 2) dr``
for funcfl, whose grid LAMMPS shortens by one point). One step is allowed because published
files often put the cutoff at ``nr dr``; between the last point and the cutoff LAMMPS holds the
tabulated values (and freeflow with it).

``write_eam`` (``format_eam`` for the text) writes tables back in their format, every number as
the shortest text that reads back to the same double, so that reading gives identical tables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

#: Hartree times Bohr radius in eV Angstrom as LAMMPS's funcfl reader takes it:
#: ``phi = HARTREE_BOHR * Z_i Z_j / r``.
HARTREE_BOHR = 27.2 * 0.529

#: Formats and the ``pair_style`` that reads each.
FORMATS = {"setfl": "eam/alloy", "funcfl": "eam"}

#: Fewest grid points LAMMPS's spline (a five-point derivative stencil) works with.
MIN_POINTS = 5


@dataclasses.dataclass(frozen=True, eq=False)
class EAMTables:
    """One element's tabulated EAM functions, as stored in the file.

    Attributes:
      format: ``"setfl"`` or ``"funcfl"``.
      element: chemical symbol (``setfl``: the file's name for it; ``funcfl``: from the atomic
        number, ``"X"`` where that is no element).
      atomic_number, mass (g/mol), lattice_constant (Angstrom), lattice (e.g. ``"fcc"``): the
        element's header line (informative; only the mass reaches LAMMPS).
      nrho, drho: grid of the embedding function, ``rho = k drho``.
      nr, dr: grid of the distance functions, ``r = k dr`` (Angstrom).
      cutoff: interaction range (Angstrom).
      embedding: ``F(rho)`` ``[nrho]`` (eV).
      density: ``rho(r)`` ``[nr]``.
      pair: ``[nr]``: ``r phi(r)`` (eV Angstrom) for ``setfl``, ``Z(r)`` for ``funcfl``.
      comments: the comment lines (three for ``setfl``, one for ``funcfl``).
    """

    format: str
    element: str
    atomic_number: int
    mass: float
    lattice_constant: float
    lattice: str
    nrho: int
    drho: float
    nr: int
    dr: float
    cutoff: float
    embedding: np.ndarray
    density: np.ndarray
    pair: np.ndarray
    comments: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("embedding", "density", "pair"):
            values = np.array(getattr(self, name), dtype=np.float64)
            values.setflags(write=False)
            object.__setattr__(self, name, values)

    @property
    def r_phi(self) -> np.ndarray:
        """``r phi(r)`` on the distance grid ``[nr]`` (eV Angstrom), whichever the format."""
        if self.format == "funcfl":
            return HARTREE_BOHR * self.pair * self.pair
        return self.pair

    def same_as(self, other: "EAMTables") -> bool:
        """Whether two tables hold exactly the same numbers and labels."""
        return all(_equal(getattr(self, f.name), getattr(other, f.name))
                   for f in dataclasses.fields(self))


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b))
    return a == b


def check_tables(tables: EAMTables, where: str) -> None:
    """Refuse tables LAMMPS and freeflow cannot evaluate, one line each (``where``: the file)."""
    if tables.format not in FORMATS:
        raise ValueError(f"{where}: unknown EAM format {tables.format!r}; use 'setfl' or "
                         f"'funcfl'")
    for name, count in (("nrho", tables.nrho), ("nr", tables.nr)):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) \
                or count < MIN_POINTS:
            raise ValueError(f"{where}: {name} = {count!r}; an EAM table needs at least "
                             f"{MIN_POINTS} points (LAMMPS's splines use five)")
    for name in ("drho", "dr", "cutoff", "mass"):
        value = getattr(tables, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{where}: {name} = {value!r} must be positive and finite")
    for name, size in (("embedding", tables.nrho), ("density", tables.nr),
                       ("pair", tables.nr)):
        values = getattr(tables, name)
        if values.shape != (size,):
            raise ValueError(f"{where}: the {_LABELS[name]} table has {values.shape} values; "
                             f"the header calls for {size}")
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise ValueError(f"{where}: the {_LABELS[name]} table holds non-finite values "
                             f"(first at entry {bad[0]}: {values[bad[0]]}); regenerate the file")
    last = (tables.nr - 1 - (tables.format == "funcfl")) * tables.dr
    if tables.cutoff > (last + tables.dr) * (1.0 + 1e-12):
        raise ValueError(
            f"{where}: the cutoff {tables.cutoff:g} Angstrom is beyond the tabulated distances "
            f"(nr = {tables.nr} points of dr = {tables.dr:g}: LAMMPS's {tables.format} grid "
            f"ends at {last:g}); lower the cutoff or tabulate further")


_LABELS = {"embedding": "F(rho)", "density": "rho(r)", "pair": "pair (r phi or Z)"}


# -- reading --------------------------------------------------------------------------------


class _Cursor:
    """Numbers and lines of a text file in order, with one-line errors naming the place."""

    def __init__(self, text: str, where: str):
        self.lines = text.splitlines()
        self.where = where
        self.index = 0  # next line to read
        self.pending: list[str] = []  # numbers left over on the line last read

    def line(self, what: str) -> list[str]:
        if self.pending:
            raise ValueError(f"{self.where}: line {self.index}: {len(self.pending)} values "
                             f"too many before {what}; check nrho and nr in the header")
        if self.index >= len(self.lines):
            raise ValueError(f"{self.where}: the file ends before {what} (truncated?)")
        self.index += 1
        return self.lines[self.index - 1].split()

    def numbers(self, count: int, what: str) -> np.ndarray:
        out: list[float] = []
        while len(out) < count:
            if not self.pending:
                if self.index >= len(self.lines):
                    raise ValueError(f"{self.where}: the file ends after {len(out)} of the "
                                     f"{count} values of {what} (truncated?)")
                self.pending = self.lines[self.index].split()
                self.index += 1
            take, self.pending = self.pending[:count - len(out)], self.pending[count - len(out):]
            out.extend(self.number(token, what) for token in take)
        return np.asarray(out, dtype=np.float64)

    def number(self, token: str, what: str) -> float:
        try:
            # Fortran writes 1.0D+00 for a double.
            return float(token.replace("D", "E").replace("d", "e"))
        except ValueError:
            raise ValueError(f"{self.where}: line {self.index}: {token!r} in {what} is not a "
                             f"number") from None

    def integer(self, token: str, what: str) -> int:
        value = self.number(token, what)
        if not value.is_integer():
            raise ValueError(f"{self.where}: line {self.index}: {what} must be a whole number; "
                             f"got {token!r}")
        return int(value)

    def finish(self) -> None:
        extra = len(self.pending) + sum(len(line.split()) for line in self.lines[self.index:])
        if extra:
            raise ValueError(f"{self.where}: {extra} values after the last table; check nrho "
                             f"and nr in the header (or the number of elements)")


def _grid(cursor: _Cursor, tokens: list[str]) -> tuple:
    """``nrho drho nr dr cutoff`` from a header line."""
    what = "the grid line 'nrho drho nr dr cutoff'"
    if len(tokens) < 5:
        raise ValueError(f"{cursor.where}: line {cursor.index}: expected {what}; got "
                         f"{' '.join(tokens)!r}")
    return (cursor.integer(tokens[0], "nrho"), cursor.number(tokens[1], "drho"),
            cursor.integer(tokens[2], "nr"), cursor.number(tokens[3], "dr"),
            cursor.number(tokens[4], "cutoff"))


def _element_line(cursor: _Cursor, tokens: list[str]) -> tuple:
    """``atomic-number mass [lattice-constant lattice-type]`` from a header line."""
    if len(tokens) < 2:
        raise ValueError(f"{cursor.where}: line {cursor.index}: expected 'atomic-number mass "
                         f"lattice-constant lattice-type'; got {' '.join(tokens)!r}")
    number = cursor.integer(tokens[0], "the atomic number")
    mass = cursor.number(tokens[1], "the mass")
    constant = cursor.number(tokens[2], "the lattice constant") if len(tokens) > 2 else 0.0
    return number, mass, constant, tokens[3] if len(tokens) > 3 else ""


def _parse_setfl(text: str, where: str) -> EAMTables:
    cursor = _Cursor(text, where)
    comments = tuple(" ".join(cursor.line("the three comment lines")) for _ in range(3))
    species = cursor.line("the element line 'N element ...'")
    count = cursor.integer(species[0], "the number of elements") if species else 0
    if count != 1 or len(species) != 2:
        names = " ".join(species[1:]) or "none named"
        raise ValueError(f"{where}: the file is for {count} species ({names}); freeflow reads "
                         f"single-species files: one element, its F, rho and phi")
    grid = _grid(cursor, cursor.line("the grid line 'nrho drho nr dr cutoff'"))
    number, mass, constant, lattice = _element_line(
        cursor, cursor.line(f"the header line of {species[1]}"))
    embedding = cursor.numbers(grid[0], "F(rho)")
    density = cursor.numbers(grid[2], "rho(r)")
    r_phi = cursor.numbers(grid[2], "r*phi(r)")
    cursor.finish()
    return EAMTables("setfl", species[1], number, mass, constant, lattice, *grid,
                     embedding=embedding, density=density, pair=r_phi, comments=comments)


def _parse_funcfl(text: str, where: str) -> EAMTables:
    cursor = _Cursor(text, where)
    comments = (" ".join(cursor.line("the comment line")),)
    number, mass, constant, lattice = _element_line(
        cursor, cursor.line("the element line 'atomic-number mass lattice-constant type'"))
    grid = _grid(cursor, cursor.line("the grid line 'nrho drho nr dr cutoff'"))
    embedding = cursor.numbers(grid[0], "F(rho)")
    charge = cursor.numbers(grid[2], "Z(r)")
    density = cursor.numbers(grid[2], "rho(r)")
    cursor.finish()
    element = chemical_symbols[number] if 0 < number < len(chemical_symbols) else "X"
    return EAMTables("funcfl", element, number, mass, constant, lattice, *grid,
                     embedding=embedding, density=density, pair=charge, comments=comments)


def guess_format(path: str | os.PathLike) -> str:
    """``"setfl"`` for ``*.alloy`` / ``*.setfl``, ``"funcfl"`` for ``*.eam`` / ``*.funcfl``."""
    name = Path(path).name.lower()
    if name.endswith((".alloy", ".setfl")):
        return "setfl"
    if name.endswith((".eam", ".funcfl")):
        return "funcfl"
    raise ValueError(f"{path}: cannot tell the EAM format from the name; give format = "
                     f"'setfl' (pair_style eam/alloy) or 'funcfl' (pair_style eam)")


def read_eam_text(path: str | os.PathLike) -> str:
    """The text of an EAM file, or one line saying why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ValueError(f"EAM file {str(path)!r} {what}; give the path of a setfl "
                         f"(.eam.alloy) or funcfl (.eam) file")
    # Comment lines may hold any characters (an author's name); the numbers are ASCII, and a
    # binary file fails on its first number instead.
    return path.read_text(encoding="utf-8", errors="replace")


def parse_eam(text: str, format: str, where: str = "EAM file") -> EAMTables:
    """Tables from the text of a file of ``format`` (``"setfl"`` or ``"funcfl"``)."""
    if format not in FORMATS:
        raise ValueError(f"{where}: unknown EAM format {format!r}; use 'setfl' or 'funcfl'")
    tables = (_parse_setfl if format == "setfl" else _parse_funcfl)(text, where)
    check_tables(tables, where)
    return tables


def read_eam(path: str | os.PathLike, format: str = "auto") -> EAMTables:
    """Read a single-species ``setfl`` or ``funcfl`` file (``format="auto"``: by its name)."""
    format = guess_format(path) if format == "auto" else format
    return parse_eam(read_eam_text(path), format, str(path))


def text_digest(text: str) -> str:
    """SHA-256 of a file's text: what a run records to recognise the same tables later."""
    return hashlib.sha256(text.encode()).hexdigest()


# -- writing --------------------------------------------------------------------------------


def _number(value: float) -> str:
    # Python's repr is the shortest text that reads back to the same double.
    return repr(float(value))


def _values(values, per_line: int = 5) -> list[str]:
    values = [_number(v) for v in values]
    return [" ".join(values[i:i + per_line]) for i in range(0, len(values), per_line)]


def _header(tables: EAMTables) -> tuple[str, str]:
    element = (f"{tables.atomic_number} {_number(tables.mass)} "
               f"{_number(tables.lattice_constant)} {tables.lattice or 'unknown'}")
    grid = (f"{tables.nrho} {_number(tables.drho)} {tables.nr} {_number(tables.dr)} "
            f"{_number(tables.cutoff)}")
    return element, grid


def format_eam(tables: EAMTables) -> str:
    """The text of ``tables`` in their own format (``tables.format``)."""
    check_tables(tables, f"tables of {tables.element}")
    element, grid = _header(tables)
    if tables.format == "setfl":
        comments = (list(tables.comments) + ["", "", ""])[:3]
        lines = [*comments, f"1 {tables.element}", grid, element, *_values(tables.embedding),
                 *_values(tables.density), *_values(tables.pair)]
    else:
        comments = (list(tables.comments) + [""])[:1]
        lines = [*comments, element, grid, *_values(tables.embedding), *_values(tables.pair),
                 *_values(tables.density)]
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def write_eam(path: str | os.PathLike, tables: EAMTables) -> Path:
    """Write ``tables`` to ``path`` in their format; returns the path."""
    path = Path(path)
    path.write_text(format_eam(tables), encoding="ascii")
    return path


def as_format(tables: EAMTables, format: str) -> EAMTables:
    """The same functions in the other format: ``setfl`` stores ``r phi``, ``funcfl`` ``Z``.

    A ``funcfl`` file can only hold a pair term ``phi >= 0`` (``Z^2 >= 0``); converting a
    ``setfl`` table with a negative ``r phi`` is refused.
    """
    if format == tables.format:
        return tables
    if format == "setfl":
        pair = tables.r_phi
    else:
        if np.any(tables.pair < 0):
            raise ValueError(f"tables of {tables.element}: r*phi(r) is negative somewhere, and "
                             f"a funcfl file stores phi = 27.2*0.529 Z^2/r >= 0; keep setfl")
        pair = np.sqrt(tables.pair / HARTREE_BOHR)
    number = tables.atomic_number or atomic_numbers.get(tables.element, 0)
    return dataclasses.replace(tables, format=format, pair=pair, atomic_number=number)
