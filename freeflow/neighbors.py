"""Which particle pairs an energy function looks at: every periodic image, or a cell list.

Both strategies return, for one configuration ``x`` of shape ``[N, 3]``, the displacement
vectors from each particle to its candidate partners, ``[N, C, 3]``, and a mask ``[N, C]`` that
is False for padding and for a particle's zero-shift copy of itself. Every periodic image of
every particle closer than the cutoff is among the candidates exactly once, so energies built
on them are exact also in boxes with an edge shorter than twice the cutoff.

* ``dense``: all N particles times every image shift that can reach inside the cutoff
  (``C = N * S``). Cost O(N^2); exact for any configuration.
* ``cells``: a cell list with cells at least one cutoff wide and at least three cells per axis,
  compacted (without gradients) to the partners inside the cutoff (``C = compact``). Cost O(N).
  The sizes are fixed at build time (JAX needs static shapes) from the lattice, assuming every
  particle stays within ``max_displacement`` of its own site: a cell holds at most the sites
  whose ``max_displacement``-ball reaches it, and a particle has at most as many partners as
  its site has sites within ``cutoff + 2 max_displacement``. A configuration that breaks either
  bound is flagged (``overflow``); the energy functions then return NaN rather than a silently
  wrong number, and the ASE calculator and the estimators turn that into an error.

``plan_neighbors`` picks ``cells`` only where its cost model says it is cheaper than ``dense``;
see its docstring for the sizes at which that happens for the named systems.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.space import image_shifts, minimum_image, wrap

Strategy = Literal["auto", "dense", "cells"]


@dataclasses.dataclass(frozen=True, eq=False)
class DenseNeighbors:
    """All particles and all image shifts within reach of the cutoff (O(N^2), always exact)."""

    box: np.ndarray
    shifts: np.ndarray  # [S, 3], zero shift first

    strategy = "dense"

    def __call__(self, positions):
        """Returns ``(displacements [N, N*S, 3], mask [N, N*S], overflow=False)``."""
        n = positions.shape[0]
        box = jnp.asarray(self.box, positions.dtype)
        shifts = jnp.asarray(self.shifts, positions.dtype)
        d = minimum_image(positions[None, :, :] - positions[:, None, :], box)
        d = d[:, :, None, :] + shifts[None, None, :, :]
        num_shifts = shifts.shape[0]
        self_copy = jnp.eye(n, dtype=bool)[:, :, None] & (jnp.arange(num_shifts) == 0)
        return (d.reshape(n, n * num_shifts, 3), ~self_copy.reshape(n, n * num_shifts),
                jnp.asarray(False))

    def num_candidates(self, num_particles: int) -> int:
        return num_particles * len(self.shifts)


@dataclasses.dataclass(frozen=True, eq=False)
class CellNeighbors:
    """Cell list compacted to the partners inside the cutoff (O(N)).

    A first pass without gradients gathers the particles of the 27 cells around each particle's
    own cell and keeps those inside ``cutoff`` (at most ``compact`` of them); the energy and its
    gradient are then evaluated on that short list alone. For mW ice the compact list holds
    48 entries against 27 x capacity = 540 cell candidates; side by side, energy + forces are
    7x faster with it at N = 4096 and 2x for Lennard-Jones at N = 4000
    (``python bench/energy.py --part compaction``).
    """

    box: np.ndarray
    cells_per_axis: tuple[int, int, int]
    capacity: int  # particles one cell can hold
    adjacent_cells: np.ndarray  # [num_cells, 27] flat indices of each cell's neighbourhood
    cutoff: float
    compact: int  # partners inside the cutoff one particle can have; 0 skips compaction

    strategy = "cells"

    def partners(self, positions):
        """Indices of the particles in the 27 cells around each particle's own cell.

        Returns ``(partners [N, 27*capacity], overflow)``; padding entries hold ``N``. Cell
        membership is piecewise constant in the positions, so no gradient flows through it.
        """
        n = positions.shape[0]
        positions = jax.lax.stop_gradient(positions)
        box = jnp.asarray(self.box, positions.dtype)
        shape = jnp.asarray(self.cells_per_axis)
        num_cells = int(np.prod(self.cells_per_axis))
        cell3 = jnp.floor(wrap(positions, box) / box * shape).astype(jnp.int32)
        cell3 = jnp.clip(cell3, 0, shape - 1)
        cell = (cell3[:, 0] * shape[1] + cell3[:, 1]) * shape[2] + cell3[:, 2]

        order = jnp.argsort(cell)
        sorted_cell = cell[order]
        counts = jnp.bincount(cell, length=num_cells)
        starts = jnp.cumsum(counts) - counts
        rank = jnp.arange(n) - starts[sorted_cell]
        table = jnp.full((num_cells, self.capacity), n, dtype=jnp.int32)
        table = table.at[sorted_cell, rank].set(order.astype(jnp.int32), mode="drop")
        partners = table[jnp.asarray(self.adjacent_cells)[cell]].reshape(n, -1)
        partners = jnp.where(partners == jnp.arange(n)[:, None], n, partners)
        return partners, jnp.max(counts) > self.capacity

    def __call__(self, positions):
        """Returns ``(displacements [N, C, 3], mask [N, C], overflow)``, ``C = compact``.

        With ``compact=0`` (kept for side-by-side benchmarks) every cell candidate is returned,
        ``C = 27 * capacity``.
        """
        n = positions.shape[0]
        box = jnp.asarray(self.box, positions.dtype)
        partners, overflow = self.partners(positions)
        padded = jnp.concatenate([positions, jnp.zeros((1, 3), positions.dtype)])
        if self.compact:
            partners, too_many = self._inside_cutoff(jax.lax.stop_gradient(padded), partners)
            overflow = overflow | too_many
        d = jnp.stack([minimum_image(padded[:, axis][partners] - positions[:, axis, None],
                                     box[axis]) for axis in range(3)], axis=-1)
        return d, partners != n, overflow

    def _inside_cutoff(self, padded, partners):
        """``partners`` cut down to those inside the cutoff, ``[N, compact]``, and overflow."""
        n = partners.shape[0]
        box = jnp.asarray(self.box, padded.dtype)
        # One coordinate at a time: [N, C] arrays vectorise far better on CPU than [N, C, 3]
        # ones, whose last axis of 3 defeats the SIMD lanes.
        r2 = 0.0
        for axis in range(3):
            da = minimum_image(padded[:, axis][partners] - padded[:n, axis, None], box[axis])
            r2 = r2 + da * da
        near = (partners != n) & (r2 < self.cutoff**2)
        running = jnp.cumsum(near, axis=1, dtype=jnp.int32)
        slot = jnp.where(near, running - 1, self.compact)
        rows = jnp.broadcast_to(jnp.arange(n)[:, None], slot.shape)
        compact = jnp.full((n, self.compact), n, dtype=jnp.int32).at[rows, slot].set(
            partners, mode="drop")
        return compact, jnp.max(running[:, -1]) > self.compact

    def num_candidates(self, num_particles: int) -> int:
        """Entries per particle of the (cheap) cell pass plus the compact list."""
        return 27 * self.capacity + self.compact


def _cell_capacity(sites: np.ndarray, box: np.ndarray, cells_per_axis, max_displacement: float,
                   margin: int = 2) -> int:
    """Most sites whose ``max_displacement``-ball can reach any one cell, plus ``margin``."""
    edge = box / np.asarray(cells_per_axis)
    membership = []
    for axis in range(3):
        starts = np.arange(cells_per_axis[axis]) * edge[axis]
        t = np.mod(sites[:, axis, None] - starts[None, :], box[axis])
        membership.append((t < edge[axis] + max_displacement)
                          | (t >= box[axis] - max_displacement))
    mx, my, mz = (m.astype(np.int64) for m in membership)
    counts = np.einsum("ia,ib,ic->abc", mx, my, mz)
    return int(counts.max()) + margin


def _compact_capacity(sites: np.ndarray, box: np.ndarray, cutoff: float,
                      max_displacement: float, margin: int = 2) -> int:
    """Most partners a particle can have inside ``cutoff``, plus ``margin``.

    Two particles each within ``max_displacement`` of their own site are within ``cutoff`` of
    each other only if their sites (any periodic image) are within ``cutoff + 2 *
    max_displacement``; the largest such site count bounds the partners of any particle.
    """
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(positions=sites, cell=np.diag(box), pbc=True)
    first = neighbor_list("i", atoms, cutoff + 2.0 * max_displacement)
    return int(np.bincount(first, minlength=len(sites)).max()) + margin


def _adjacent_cells(cells_per_axis) -> np.ndarray:
    nx, ny, nz = cells_per_axis
    offsets = list(itertools.product((-1, 0, 1), repeat=3))
    table = np.empty((nx * ny * nz, 27), dtype=np.int32)
    for cx, cy, cz in itertools.product(range(nx), range(ny), range(nz)):
        flat = (cx * ny + cy) * nz + cz
        table[flat] = [(((cx + a) % nx) * ny + (cy + b) % ny) * nz + (cz + c) % nz
                       for a, b, c in offsets]
    return table


def plan_neighbors(sites, box, cutoff: float, max_displacement: float,
                   strategy: Strategy = "auto", pair_cost: float = 1.5):
    """Choose how an energy function finds the pairs inside ``cutoff``.

    Args:
      sites: ``[N, 3]`` lattice sites the particles vibrate about (sizes the cell capacity).
      box: ``[3]`` edge lengths of the orthorhombic box.
      cutoff: interaction range, in the same length unit.
      max_displacement: how far a particle may stray from its site before a cell could
        overflow; freeflow uses half the nearest-neighbour distance (the radius of the base
        distribution's spheres).
      strategy: ``"dense"``, ``"cells"``, ``"auto"``, or a plan built earlier (returned as
        is). ``auto`` uses the cell list when the box holds at least three cells of width
        >= cutoff per axis *and* its estimated cost is lower: ``27 x capacity`` cheap entries
        plus ``pair_cost x compact`` energy entries per particle, against ``pair_cost x N x
        image shifts`` for ``dense``.
      pair_cost: cost of one energy-and-gradient entry relative to one entry of the cell
        list's distance pass, measured with bench/energy.py on CPU: about 1.5 for
        Lennard-Jones and 15 for mW (whose entries carry the three-body terms). With these,
        Lennard-Jones FCC at density 1.28 uses the cell list from N = 2048 and diamond mW ice
        from N = 216.
    """
    if isinstance(strategy, (DenseNeighbors, CellNeighbors)):
        return strategy  # an explicit plan, e.g. a variant built for a benchmark
    sites = np.asarray(sites, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    if strategy not in ("auto", "dense", "cells"):
        raise ValueError(f"unknown neighbour strategy {strategy!r}; use 'auto', 'dense' or 'cells'")
    dense = DenseNeighbors(box=box, shifts=image_shifts(box, cutoff))
    most_cells = np.floor(box / cutoff).astype(int)
    if min(most_cells) < 3:
        if strategy == "cells":
            raise ValueError(
                f"a cell list needs box edges of at least 3 x cutoff = {3 * cutoff:g}; "
                f"this box is {box.tolist()}. Use strategy='dense' or 'auto'.")
        return dense
    # How the cell walls fall relative to the lattice planes sets the worst-case capacity (by
    # up to 2x); try up to three cells fewer per axis and keep the smallest capacity.
    options = itertools.product(*[range(max(3, m - 3), m + 1) for m in most_cells])
    capacity, cells_per_axis = min(
        (_cell_capacity(sites, box, c, max_displacement), tuple(int(k) for k in c))
        for c in options)
    cells = CellNeighbors(
        box=box, cells_per_axis=cells_per_axis, capacity=capacity,
        adjacent_cells=_adjacent_cells(cells_per_axis), cutoff=float(cutoff),
        compact=_compact_capacity(sites, box, cutoff, max_displacement))
    if strategy == "cells":
        return cells
    if strategy == "dense":
        return dense
    cells_cost = 27 * cells.capacity + pair_cost * cells.compact
    return cells if cells_cost < pair_cost * dense.num_candidates(len(sites)) else dense
