"""Crystal lattices built with ASE, in orthorhombic periodic boxes.

Every lattice is returned as an ``ase.Atoms`` with a diagonal cell, full periodicity and one
site at the box corner (the origin), which the flow's base distribution removes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from ase import Atoms
from ase.build import bulk


#: hcp's ideal axial ratio c / a = sqrt(8/3) (touching hard spheres).
IDEAL_C_OVER_A = math.sqrt(8.0 / 3.0)


@dataclasses.dataclass(frozen=True)
class LatticeKind:
    """A crystal structure in its orthorhombic conventional cell of ``sites_per_cell`` sites
    and edges ``a * edge_ratios`` (hcp: ``(1, sqrt(3), c/a)``)."""

    name: str
    sites_per_cell: int
    description: str
    edge_ratios: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def cell_edges(self, number_density: float, c_over_a: float | None = None) -> np.ndarray:
        """Edges of one orthorhombic conventional cell at the given number density."""
        ratios = np.array(self.edge_ratios)
        if self.name == "hcp":
            ratios[2] = IDEAL_C_OVER_A if c_over_a is None else c_over_a
        a = (self.sites_per_cell / (number_density * np.prod(ratios))) ** (1.0 / 3.0)
        return a * ratios

    def unit_cell(self, number_density: float, symbol: str,
                  c_over_a: float | None = None) -> Atoms:
        edges = self.cell_edges(number_density, c_over_a)
        if self.name in ("fcc", "diamond", "bcc"):
            return bulk(symbol, self.name, a=edges[0], cubic=True)
        if self.name == "hcp":
            # ASE's orthorhombic setting: A sites at (0, 0, 0) and (1/2, 1/2, 0), B sites at
            # (1/2, 1/6, 1/2) and (0, 2/3, 1/2) of the edges (a, sqrt(3) a, c).
            return bulk(symbol, "hcp", a=edges[0], c=edges[2], orthorhombic=True)
        # Ideal hexagonal diamond (the oxygen sublattice of ice Ih): wurtzite with equal
        # species, u = 3/8 and c/a = sqrt(8/3), in its orthorhombic 8-site setting.
        atoms = bulk(symbol + symbol, "wurtzite", a=edges[0], c=edges[2], u=3.0 / 8.0,
                     orthorhombic=True)
        atoms.set_chemical_symbols([symbol] * len(atoms))
        return atoms

    def accepted_sizes(self, count: int = 5) -> list[int]:
        return [self.sites_per_cell * n**3 for n in range(1, count + 1)]


LATTICES = {
    "fcc": LatticeKind("fcc", 4, "face-centred cubic, cubic box, N = 4 n^3"),
    "diamond": LatticeKind("diamond", 8, "diamond cubic (ice Ic), cubic box, N = 8 n^3"),
    "bcc": LatticeKind("bcc", 2, "body-centred cubic, cubic box, N = 2 n^3"),
    "hcp": LatticeKind(
        "hcp", 4, "hexagonal close-packed, orthorhombic box 1 : sqrt(3) : c/a, N = 4 n^3",
        (1.0, math.sqrt(3.0), IDEAL_C_OVER_A)),
    "hexagonal_ice": LatticeKind(
        "hexagonal_ice", 8,
        "hexagonal diamond (ice Ih), orthorhombic box 1 : sqrt(3) : sqrt(8/3), N = 8 n^3",
        (1.0, math.sqrt(3.0), IDEAL_C_OVER_A)),
}


def build_lattice(kind: str, num_particles: int | None, number_density: float,
                  symbol: str = "X", *, repeat=None, c_over_a: float | None = None) -> Atoms:
    """The perfect crystal of ``num_particles`` sites at ``number_density``.

    Args:
      kind: a key of ``LATTICES``: ``"fcc"``, ``"bcc"``, ``"diamond"``, ``"hcp"`` or
        ``"hexagonal_ice"``.
      num_particles: ``sites_per_cell * n^3`` (the box is n x n x n conventional cells), or
        ``None`` with ``repeat``.
      number_density: particles per unit volume, in the system's length unit.
      symbol: chemical symbol given to every atom (it only labels them).
      repeat: ``(n1, n2, n3)`` conventional cells along x, y, z instead of ``n^3`` (box shapes
        other than cubes); with ``num_particles`` too, the two must agree.
      c_over_a: hcp's axial ratio (default: the ideal sqrt(8/3)); other lattices refuse it.
    """
    if kind not in LATTICES:
        raise ValueError(f"unknown lattice {kind!r}; known lattices: {sorted(LATTICES)}")
    lattice = LATTICES[kind]
    if not number_density > 0:
        raise ValueError(f"number density must be positive; got {number_density}")
    if c_over_a is not None and (kind != "hcp" or not 0 < c_over_a < math.inf):
        raise ValueError(f"c_over_a must be a positive number and is for hcp only; got "
                         f"c_over_a = {c_over_a!r} for a {kind} lattice")
    if repeat is not None:
        repeat = checked_repeat(repeat)
        held = lattice.sites_per_cell * math.prod(repeat)
        if num_particles is not None and num_particles != held:
            raise ValueError(
                f"a {kind} lattice of repeat = {list(repeat)} cells holds N = {held} "
                f"({lattice.sites_per_cell} per cell), not num_particles = {num_particles}; "
                f"give one of the two, or both agreeing")
    else:
        count = num_particles if num_particles is not None else 0
        n = round((count / lattice.sites_per_cell) ** (1.0 / 3.0)) if count > 0 else 0
        if n < 1 or lattice.sites_per_cell * n**3 != count:
            raise ValueError(
                f"a {kind} lattice cannot hold N = {num_particles}: it needs "
                f"N = {lattice.sites_per_cell} n^3 ({lattice.description}); accepted N: "
                f"{', '.join(map(str, lattice.accepted_sizes()))}, ...; or give repeat = "
                f"[n1, n2, n3] for N = {lattice.sites_per_cell} n1 n2 n3")
        repeat = (n, n, n)
    return repeat_cell(lattice.unit_cell(number_density, symbol, c_over_a), repeat)


def checked_repeat(repeat) -> tuple[int, int, int]:
    """``repeat`` as three positive whole numbers, or one line saying what is wrong."""
    ok = (isinstance(repeat, (list, tuple)) and len(repeat) == 3
          and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                  for n in repeat))
    if not ok:
        raise ValueError(f"repeat must be three positive whole numbers [n1, n2, n3] (cells "
                         f"along x, y, z); got {repeat!r}")
    return tuple(int(n) for n in repeat)


def repeat_cell(atoms: Atoms, repeat) -> Atoms:
    """``n1 x n2 x n3`` copies of an orthorhombic periodic cell (any ``ase.Atoms``), with its
    first site moved to the box corner (the origin) and every site wrapped into the box.

    A non-orthorhombic cell is refused (``check_orthorhombic``, which says how to make an
    orthorhombic one).
    """
    check_orthorhombic(atoms)
    atoms = atoms.repeat(checked_repeat(repeat))
    atoms.translate(-atoms.positions[0])
    atoms.wrap(eps=1e-9)
    atoms.positions[np.abs(atoms.positions) < 1e-9] = 0.0
    return atoms


def check_orthorhombic(atoms: Atoms) -> np.ndarray:
    """Box edge lengths of ``atoms``, after checking its cell is periodic and orthorhombic."""
    if not all(atoms.pbc):
        raise ValueError(f"freeflow needs a cell periodic along all three axes; got pbc = "
                         f"{atoms.pbc.tolist()}. Set atoms.pbc = True.")
    cell = np.asarray(atoms.cell)
    lengths = np.diag(cell).copy()
    off_diagonal = cell - np.diag(lengths)
    if np.any(lengths <= 0) or np.max(np.abs(off_diagonal)) > 1e-8 * np.max(np.abs(lengths)):
        raise ValueError(
            "freeflow needs an orthorhombic cell (a diagonal cell matrix with positive edges); "
            f"got cell parameters {np.round(atoms.cell.cellpar(), 6).tolist()}. Build an "
            "orthorhombic supercell first (for example ase.build.make_supercell, or "
            "ase.build.bulk(..., orthorhombic=True)).")
    return lengths


#: Above this many sites ``nearest_neighbour_distance`` queries a k-d tree: the blocks of all
#: pairs cost O(N^2) time (150 s at N = 32 000 on 2 cores) and, at 512 rows per block,
#: 20 kB per site of memory (12 GB at N = 10^6).
KD_TREE_ABOVE = 4096


def nearest_neighbour_distance(sites, box) -> float:
    """Smallest minimum-image distance between two sites, ``[N, 3]`` sites in box ``[3]``.

    Exact either way: all pairs in blocks of 512 rows up to ``KD_TREE_ABOVE`` sites, a periodic
    k-d tree (``scipy.spatial.cKDTree``, O(N log N) time, O(N) memory) above.
    """
    sites = np.asarray(sites, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    if len(sites) < 2:
        return float(np.min(box))
    if len(sites) > KD_TREE_ABOVE:
        from scipy.spatial import cKDTree

        wrapped = np.mod(sites, box)
        wrapped[wrapped >= box] = 0.0  # np.mod of a tiny negative number can round to L
        distances, _ = cKDTree(wrapped, boxsize=box).query(wrapped, k=2)
        best = float(distances[:, 1].min())
    else:
        best = np.inf
        for start in range(0, len(sites), 512):
            d = sites[None, :, :] - sites[start:start + 512, None, :]
            d -= box * np.round(d / box)
            r = np.sqrt(np.sum(d**2, axis=-1))
            rows = np.arange(r.shape[0])
            r[rows, start + rows] = np.inf
            best = min(best, float(r.min()))
    # A site's own periodic image is a neighbour too when the box is tiny.
    return min(best, float(np.min(box)))
