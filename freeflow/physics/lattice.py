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


@dataclasses.dataclass(frozen=True)
class LatticeKind:
    name: str
    sites_per_cell: int
    description: str

    def cell_edges(self, number_density: float) -> np.ndarray:
        """Edges of one orthorhombic conventional cell at the given number density."""
        if self.name in ("fcc", "diamond"):
            a = (self.sites_per_cell / number_density) ** (1.0 / 3.0)
            return np.array([a, a, a])
        # Hexagonal ice: 8 sites in a cell of edges a : sqrt(3) a : sqrt(8/3) a.
        ratios = np.array([1.0, math.sqrt(3.0), math.sqrt(8.0 / 3.0)])
        a = (self.sites_per_cell / (number_density * np.prod(ratios))) ** (1.0 / 3.0)
        return a * ratios

    def unit_cell(self, number_density: float, symbol: str) -> Atoms:
        edges = self.cell_edges(number_density)
        if self.name == "fcc":
            return bulk(symbol, "fcc", a=edges[0], cubic=True)
        if self.name == "diamond":
            return bulk(symbol, "diamond", a=edges[0], cubic=True)
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
    "hexagonal_ice": LatticeKind(
        "hexagonal_ice", 8,
        "hexagonal diamond (ice Ih), orthorhombic box 1 : sqrt(3) : sqrt(8/3), N = 8 n^3"),
}


def build_lattice(kind: str, num_particles: int, number_density: float,
                  symbol: str = "X") -> Atoms:
    """The perfect crystal of ``num_particles`` sites at ``number_density``.

    Args:
      kind: ``"fcc"``, ``"diamond"`` or ``"hexagonal_ice"``.
      num_particles: must be ``sites_per_cell * n^3`` (the box is n x n x n conventional cells).
      number_density: particles per unit volume, in the system's length unit.
      symbol: chemical symbol given to every atom (it only labels them).
    """
    if kind not in LATTICES:
        raise ValueError(f"unknown lattice {kind!r}; known lattices: {sorted(LATTICES)}")
    lattice = LATTICES[kind]
    if not number_density > 0:
        raise ValueError(f"number density must be positive; got {number_density}")
    n = round((num_particles / lattice.sites_per_cell) ** (1.0 / 3.0)) if num_particles > 0 else 0
    if n < 1 or lattice.sites_per_cell * n**3 != num_particles:
        raise ValueError(
            f"a {kind} lattice cannot hold N = {num_particles}: it needs "
            f"N = {lattice.sites_per_cell} n^3 ({lattice.description}); accepted N: "
            f"{', '.join(map(str, lattice.accepted_sizes()))}, ...")
    atoms = lattice.unit_cell(number_density, symbol).repeat((n, n, n))
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
