"""Which particle pairs an energy function looks at: every periodic image, or a cell list.

Both strategies return, for one configuration ``x`` of shape ``[N, 3]``, the displacement
vectors from each particle to its candidate partners, ``[N, C, 3]``, and a mask ``[N, C]`` that
is False for padding and for a particle's zero-shift copy of itself. Every periodic image of
every particle closer than the cutoff is among the candidates exactly once, so energies built
on them are exact also in boxes with an edge shorter than twice the cutoff.

* ``dense``: all N particles times every image shift that can reach inside the cutoff
  (``C = N * S``). Cost O(N^2); exact for any configuration.
* ``cells``: a cell list with cells at least one cutoff wide and at least three cells per axis
  (``C = 27 * capacity``). Cost O(N). The capacity of a cell is fixed at build time (JAX needs
  static shapes): it is the largest number of lattice sites that can reach a cell when every
  particle stays within ``max_displacement`` of some site, plus a margin. A configuration that
  overfills a cell is flagged (``overflow``); the energy functions then return NaN rather than
  a silently wrong number.

``plan_neighbors`` picks ``cells`` only where it needs fewer candidates than ``dense``; see its
docstring for the sizes at which that happens for the named systems.
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
    """Cell list: particles in the 27 cells around each particle's own cell (O(N))."""

    box: np.ndarray
    cells_per_axis: tuple[int, int, int]
    capacity: int
    adjacent_cells: np.ndarray  # [num_cells, 27] flat indices of each cell's neighbourhood

    strategy = "cells"

    def __call__(self, positions):
        """Returns ``(displacements [N, 27*capacity, 3], mask, overflow)``."""
        n = positions.shape[0]
        box = jnp.asarray(self.box, positions.dtype)
        shape = jnp.asarray(self.cells_per_axis)
        num_cells = int(np.prod(self.cells_per_axis))
        cell3 = jnp.floor(wrap(positions, box) / box * shape).astype(jnp.int32)
        cell3 = jnp.clip(cell3, 0, shape - 1)
        cell = (cell3[:, 0] * shape[1] + cell3[:, 1]) * shape[2] + cell3[:, 2]
        cell = jax.lax.stop_gradient(cell)

        order = jnp.argsort(cell)
        sorted_cell = cell[order]
        counts = jnp.bincount(cell, length=num_cells)
        starts = jnp.cumsum(counts) - counts
        rank = jnp.arange(n) - starts[sorted_cell]
        table = jnp.full((num_cells, self.capacity), n, dtype=jnp.int32)
        table = table.at[sorted_cell, rank].set(order.astype(jnp.int32), mode="drop")

        partners = table[jnp.asarray(self.adjacent_cells)[cell]].reshape(n, -1)
        padded = jnp.concatenate([positions, jnp.zeros((1, 3), positions.dtype)])
        d = minimum_image(padded[partners] - positions[:, None, :], box)
        mask = (partners != n) & (partners != jnp.arange(n)[:, None])
        return d, mask, jnp.max(counts) > self.capacity

    def num_candidates(self, num_particles: int) -> int:
        return 27 * self.capacity


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
                   strategy: Strategy = "auto"):
    """Choose how an energy function finds the pairs inside ``cutoff``.

    Args:
      sites: ``[N, 3]`` lattice sites the particles vibrate about (sizes the cell capacity).
      box: ``[3]`` edge lengths of the orthorhombic box.
      cutoff: interaction range, in the same length unit.
      max_displacement: how far a particle may stray from its site before a cell could
        overflow; freeflow uses half the nearest-neighbour distance (the radius of the base
        distribution's spheres).
      strategy: ``"dense"``, ``"cells"`` or ``"auto"``. ``auto`` uses a cell list when the box
        holds at least three cells of width >= cutoff per axis *and* that gives fewer candidate
        partners per particle than ``dense``. For the named systems that is N >= 512 for
        monatomic water and N >= 2916 for Lennard-Jones at density 1.28 (whose cutoff holds
        about 100 neighbours); smaller systems use ``dense``.
    """
    sites = np.asarray(sites, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    if strategy not in ("auto", "dense", "cells"):
        raise ValueError(f"unknown neighbour strategy {strategy!r}; use 'auto', 'dense' or 'cells'")
    dense = DenseNeighbors(box=box, shifts=image_shifts(box, cutoff))
    cells_per_axis = tuple(int(c) for c in np.floor(box / cutoff))
    if min(cells_per_axis) < 3:
        if strategy == "cells":
            raise ValueError(
                f"a cell list needs box edges of at least 3 x cutoff = {3 * cutoff:g}; "
                f"this box is {box.tolist()}. Use strategy='dense' or 'auto'.")
        return dense
    capacity = _cell_capacity(sites, box, cells_per_axis, max_displacement)
    cells = CellNeighbors(box=box, cells_per_axis=cells_per_axis, capacity=capacity,
                          adjacent_cells=_adjacent_cells(cells_per_axis))
    if strategy == "cells":
        return cells
    if strategy == "dense":
        return dense
    n = len(sites)
    return cells if cells.num_candidates(n) < dense.num_candidates(n) else dense
