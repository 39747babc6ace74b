"""Which particle pairs an energy function looks at: all images, a site list or a cell list.

All three strategies give, for one configuration ``x`` of shape ``[N, 3]``, the displacement
vectors from each particle to its candidate partners as three coordinate arrays ``(dx, dy,
dz)``, each ``[N, ...]`` (first axis: the particle; the others: its candidates), and a mask of
the same shape that is False for padding and for a particle's zero-shift copy of itself. Every
periodic image of every particle closer than the cutoff is among the candidates exactly once,
so energies built on them are exact also in boxes with an edge shorter than twice the cutoff.
One array per coordinate, rather than a trailing axis of 3, lets XLA vectorise and fuse the
per-entry arithmetic on CPU (the trailing 3 defeats the SIMD lanes; docs/benchmarks.md, "Forces
against the energy alone").

* ``dense``: all N particles times every image shift that can reach inside the cutoff
  (entries ``[N, N, S]``). Cost O(N^2); exact for any configuration.
* ``sites``: partners fixed once from the lattice (every site within ``cutoff + 2
  max_displacement`` of a particle's own site, each periodic image separately); a
  configuration only supplies the displacements from the sites. Cost O(N), evaluated in blocks
  of particles so the working set stays in cache. Valid while every particle stays within
  ``max_displacement`` of its site (after removing the crystal's overall translation).
* ``cells``: a cell list with cells at least one cutoff wide and at least three cells per axis,
  compacted (without gradients) to the partners inside the cutoff (``C = compact``). Cost O(N).
  The sizes are fixed at build time (JAX needs static shapes) from the lattice, assuming every
  particle stays within ``max_displacement`` of its own site: a cell holds at most the sites
  whose ``max_displacement``-ball reaches it, and a particle has at most as many partners as
  its site has sites within ``cutoff + 2 max_displacement``. A configuration that breaks either
  bound is flagged (``overflow``); the energy functions then return NaN rather than a silently
  wrong number, and the ASE calculator and the estimators turn that into an error.

Every plan offers ``total(positions, rows_energy)``: the sum of a per-particle energy over all
particles, with the overflow flag. Potentials are written as such sums (pair terms halved,
three-body terms per central particle), which lets the site list evaluate them block by block.

Every plan also offers ``total_and_gradient(positions, rows_gradient, symmetric)``: the same
sum and its exact gradient with respect to the positions, from the potential's own derivative
with respect to each entry's displacement, ``g = dU/dd``. An entry ``d_ic = x_j - x_i (+ image)``
pulls on both ends, so ``dU/dx_i = -sum_c g_ic + sum of g over the entries whose partner is i``.
The second sum is a transpose of the partner table: a column sum for ``dense``, a gather
through the precomputed reverse slots for ``sites``, a scatter-add for ``cells``. For a pair
energy (``symmetric``: every entry's reverse entry carries ``-g``) it equals the first, and the
gradient is ``-2 sum_c g_ic`` with no transpose at all. Reverse-mode autodiff of the same sum
would scatter-add through every gather, which on CPU cost 5-8x the energy.

``plan_neighbors`` picks the cheapest plan by a cost model; see its docstring for the sizes at
which each is used for the named systems.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.physics.memory import check_memory, estimated_memory
from freeflow.physics.space import count_image_shifts, image_shifts, minimum_image, wrap

Strategy = Literal["auto", "dense", "cells", "sites"]

#: ``rows_energy((dx, dy, dz), mask) -> scalar``: the energy carried by B particles given the
#: displacements to their candidate partners, each ``[B, ...]`` like ``mask`` (zero for rows
#: whose mask is all False).
RowsEnergy = Callable[[tuple, jax.Array], jax.Array]

#: ``rows_gradient((dx, dy, dz), mask) -> (energy, pulls, slopes)``: the energy as
#: ``rows_energy``, ``slopes`` = its derivative with respect to each entry's displacement
#: (three arrays shaped like ``mask``) and ``pulls`` = their sums over each row's entries (three
#: arrays ``[B]``).
RowsGradient = Callable[[tuple, jax.Array], tuple]

#: ``entry_slopes((dx, dy, dz), mask) -> (u, s)``: a pair energy's value ``u`` and its
#: derivative ``s = du/d|d|^2`` at every entry (arrays shaped like ``mask``), for
#: ``DenseNeighbors.pair_total_and_gradient``.
EntrySlopes = Callable[[tuple, jax.Array], tuple]

#: Rows per block of ``DenseNeighbors.pair_total_and_gradient``: lj_256's energy + forces in
#: blocks of 32 rows cost 5.4x its energy against 7.6x by one variadic reduction (measured on
#: 2 CPU cores; docs/benchmarks.md, "Other layouts of the all-pairs row sums").
DENSE_BLOCK_ROWS = 32

#: Partner entries per block of the site list. Measured on a 2-core CPU: blocks pay
#: once a configuration's [N, K] arrays outgrow the caches (LJ N = 4000, K = 320: 1.4x faster
#: in blocks of 64 rows) and cost loop overhead below that (mW N = 216: 1.5x slower in 4 blocks).
BLOCK_ENTRIES = 20_000

#: Cost of one site-list entry relative to one all-pairs entry, fitted to energy + forces (the
#: samplers' hot path) with the analytic gradient (docs/benchmarks.md, "Forces against the
#: energy alone"): per entry the site list cost 1.1-1.2x the all-pairs
#: sum for Lennard-Jones (lj_32 to lj_500) and 1.6-2.5x for mW (the gather of the transpose).
#: 1.5 puts every named system on the faster of the two as measured: all pairs for lj_256
#: (256 entries against 320 listed) and the 64-molecule ices (64 against 46-47).
SITE_ENTRY_COST = 1.5

#: Factor on the cell list's estimate (its cheap pass plus its compact list), fitted the same
#: way: per estimated unit the cell list's energy + forces cost 2.5-4x the all-pairs sum's for
#: mW N = 216 and 512 (the binning, sorting and compaction passes the estimate leaves out).
CELL_COST = 3.0


def _pull(pulls, slopes, transpose, symmetric: bool):
    """``dU/dx [N, 3]`` from the entries' slopes (see the module docstring)."""
    if symmetric:
        return -2.0 * jnp.stack(pulls, axis=-1)
    # The barrier makes XLA store the slopes once and then read them twice (row sums and the
    # transpose); left to fuse, it recomputed their per-entry arithmetic inside the transpose
    # (mW site list: energy + forces 2.5x slower).
    slopes = jax.lax.optimization_barrier(slopes)
    return jnp.stack([transpose(g) - jnp.sum(g, axis=tuple(range(1, g.ndim)))
                      for g in slopes], axis=-1)


class _WholeRows:
    """``total`` and ``total_and_gradient`` for plans that build every particle's partners at
    once; such a plan defines ``_entries(positions) -> (d, mask, overflow, layout)`` and
    ``_transpose(slope, layout)``."""

    def components(self, positions):
        """``((dx, dy, dz), mask, overflow)`` for one configuration ``[N, 3]``."""
        return self._entries(positions)[:3]

    def __call__(self, positions):
        """Returns ``(displacements [N, C, 3], mask [N, C], overflow)`` (entries flattened)."""
        d, mask, overflow = self.components(positions)
        n = positions.shape[0]
        return (jnp.stack([a.reshape(n, -1) for a in d], axis=-1), mask.reshape(n, -1),
                overflow)

    def total(self, positions, rows_energy: RowsEnergy):
        """``(sum over particles of rows_energy, overflow)`` for one configuration ``[N, 3]``."""
        d, mask, overflow = self.components(positions)
        return rows_energy(d, mask), overflow

    def total_and_gradient(self, positions, rows_gradient: RowsGradient, symmetric: bool):
        """``(sum, dsum/dpositions [N, 3], overflow)``; see the module docstring."""
        d, mask, overflow, layout = self._entries(positions)
        u, pulls, slopes = rows_gradient(d, mask)
        return u, _pull(pulls, slopes, lambda g: self._transpose(g, layout), symmetric), overflow


@dataclasses.dataclass(frozen=True, eq=False)
class DenseNeighbors(_WholeRows):
    """All particles and all image shifts within reach of the cutoff (O(N^2), always exact)."""

    box: np.ndarray
    shifts: np.ndarray  # [S, 3], zero shift first

    strategy = "dense"

    def _entries(self, positions):
        """Entry ``(i, j, s)`` is ``x_j + shift_s - x_i`` (minimum image), each ``[N, N, S]``.

        The entries keep their ``[N, N, S]`` shape: flattening the partner axes in between
        breaks XLA's fusion of the per-entry arithmetic into the reductions (2x slower on CPU).
        """
        n = positions.shape[0]
        box = jnp.asarray(self.box, positions.dtype)
        shifts = jnp.asarray(self.shifts, positions.dtype)
        d = tuple(minimum_image(positions[None, :, a] - positions[:, None, a], box[a])[:, :, None]
                  + shifts[:, a] for a in range(3))
        self_copy = jnp.eye(n, dtype=bool)[:, :, None] & (jnp.arange(shifts.shape[0]) == 0)
        return d, ~self_copy, jnp.asarray(False), None

    @staticmethod
    def _transpose(slope, layout):
        # Entry (j, i, s) depends on x_i with coefficient +1: sum over j and s.
        return jnp.sum(slope, axis=(0, 2))

    def pair_total_and_gradient(self, positions, entry_slopes: EntrySlopes,
                                block_rows: int = DENSE_BLOCK_ROWS):
        """``(U, dU/dx [N, 3], overflow)`` of a halved pair sum over a one-shift plan.

        ``U = 1/2 sum_ij u_ij``, ``entry_slopes(d, mask) -> (u, du/d|d|^2)`` per entry. With
        the zero shift alone every entry is the minimum image ``m_ij = x_j - x_i - L n_ij``
        (``n_ij`` integer per axis), so row ``i``'s pull ``sum_j s_ij m_ij`` is
        ``(S x)_i - x_i sum_j s_ij - L sum_j s_ij n_ij``: the slopes ``S`` materialised once,
        then a matrix product and plain sums, instead of one variadic reduction (a scalar loop
        on CPU). Rows go in blocks of ``block_rows`` in turn (the last padded with masked
        rows), so that a block's slopes stay in the caches; ``dU/dx_i = -2 sum_j s_ij m_ij``.
        """
        if len(self.shifts) != 1:
            raise ValueError("pair_total_and_gradient needs a plan with the zero shift alone")
        n = positions.shape[0]
        rows = min(block_rows, n)
        padded = jnp.concatenate(
            [positions, jnp.zeros(((-n) % rows, 3), positions.dtype)], axis=0)
        box = jnp.asarray(self.box, positions.dtype)

        def block(b, carry):
            total, pulls = carry
            start = b * rows
            mine = jax.lax.dynamic_slice_in_dim(padded, start, rows)  # [R, 3]
            diff = tuple(positions[None, :, a] - mine[:, None, a] for a in range(3))  # [R, N]
            images = tuple(jnp.round(diff[a] / box[a]) for a in range(3))
            d = tuple((diff[a] - box[a] * images[a])[:, :, None] for a in range(3))
            row = start + jnp.arange(rows)
            mask = ((row < n)[:, None] & (row[:, None] != jnp.arange(n)))[:, :, None]
            u, slope = entry_slopes(d, mask)
            # Without the barrier XLA recomputes the slopes inside every consumer.
            u, slope = jax.lax.optimization_barrier((jnp.sum(u), slope[:, :, 0]))
            wraps = jnp.stack([jnp.sum(slope * n_a, axis=1) for n_a in images], axis=-1)
            pull = slope @ positions - mine * jnp.sum(slope, axis=1)[:, None] - box * wraps
            return total + u, jax.lax.dynamic_update_slice_in_dim(pulls, pull, start, 0)

        # A fori_loop rather than lax.map: XLA's CPU backend failed to compile the Hessian of
        # the mapped form for one configuration (fusion_compiler.cc, 'Failed to translate
        # module to LLVM IR').
        total, pulls = jax.lax.fori_loop(
            0, padded.shape[0] // rows, block,
            (jnp.zeros((), positions.dtype), jnp.zeros_like(padded)))
        return 0.5 * total, -2.0 * pulls[:n], jnp.asarray(False)

    def num_candidates(self, num_particles: int) -> int:
        return num_particles * len(self.shifts)


@dataclasses.dataclass(frozen=True, eq=False)
class CellNeighbors(_WholeRows):
    """Cell list compacted to the partners inside the cutoff (O(N)).

    A first pass without gradients gathers the particles of the 27 cells around each particle's
    own cell and keeps those inside ``cutoff`` (at most ``compact`` of them); the energy and its
    gradient are then evaluated on that short list alone. For mW ice the compact list holds
    48 entries against 27 x capacity = 540 cell candidates; side by side, energy + forces are
    7x faster with it at N = 4096 and 2x for Lennard-Jones at N = 4000 (docs/benchmarks.md,
    "Energies").
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

    def _entries(self, positions):
        """Entries ``[N, C]``, ``C = compact``; the layout is the partner table.

        With ``compact=0`` (kept for side-by-side benchmarks) every cell candidate is an entry,
        ``C = 27 * capacity``.
        """
        n = positions.shape[0]
        box = jnp.asarray(self.box, positions.dtype)
        partners, overflow = self.partners(positions)
        padded = jnp.concatenate([positions, jnp.zeros((1, 3), positions.dtype)])
        if self.compact:
            partners, too_many = self._inside_cutoff(jax.lax.stop_gradient(padded), partners)
            overflow = overflow | too_many
        d = tuple(minimum_image(padded[:, axis][partners] - positions[:, axis, None], box[axis])
                  for axis in range(3))
        return d, partners != n, overflow, partners

    @staticmethod
    def _transpose(slope, partners):
        # The list is rebuilt per configuration, so there are no fixed reverse slots: scatter.
        n = partners.shape[0]
        return jax.ops.segment_sum(slope.ravel(), partners.ravel(), num_segments=n + 1)[:n]

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


@dataclasses.dataclass(frozen=True, eq=False)
class SiteNeighbors:
    """Partners fixed by the lattice: each site's sites within ``cutoff + 2 max_displacement``.

    A crystal's particles keep their sites, so the pairs that can come inside the cutoff are
    known before any configuration is seen. A configuration is reduced to each particle's
    displacement ``u_i`` from its own site (relative to the crystal's overall translation), and
    a pair's vector is the fixed site-to-site vector plus ``u_j - u_i``: one gather per pair, no
    binning, no sorting, no minimum image; in small boxes each periodic image of a partner is a
    separate entry with its own site vector. Exact while every ``|u_i| <= max_displacement``; a
    configuration outside that (a particle that left its site: a defect, a melted or badly
    sampled crystal) is flagged as ``overflow``. ``plan_neighbors`` therefore offers this list
    only for the exact energy, never for training, and ``System.energy_fn`` re-evaluates
    flagged configurations with a plan that has no such bound.
    """

    box: np.ndarray
    sites: np.ndarray  # [N, 3] wrapped into the box
    partners: np.ndarray  # [N, K] partner index per slot; N pads
    site_vectors: np.ndarray  # [N, K, 3] site j (the right image) minus site i; 0 for padding
    reverse_slots: np.ndarray  # [N, K] slot of the reverse entry (j -> i) in row j; 0 pads
    max_displacement: float
    block: int  # particles per block of ``total``; ``block >= N``: one block

    strategy = "sites"

    def displacements(self, positions):
        """Each particle's displacement from its site, ``[N, 3]``, and the stray flag.

        The crystal's overall translation ``t`` (particle 0's displacement refined by the mean
        of all, so one particle's vibration does not set it) is removed. ``t`` only selects
        periodic images, and it cancels in every pair vector, so no gradient flows through it.
        """
        box = jnp.asarray(self.box, positions.dtype)
        sites = jnp.asarray(self.sites, positions.dtype)
        u = jax.lax.stop_gradient(minimum_image(positions - sites, box))
        t = u[0] + jnp.mean(minimum_image(u - u[0], box), axis=0)
        u = minimum_image(positions - sites - t, box)
        stray = jnp.max(jnp.sum(jax.lax.stop_gradient(u) ** 2, axis=-1))
        return u, stray > self.max_displacement**2

    def _rows(self, padded, partners, site_vectors, rows):
        d = tuple(site_vectors[..., axis] + padded[:, axis][partners]
                  - padded[:, axis][rows][:, None] for axis in range(3))
        return d, partners != padded.shape[0] - 1

    def components(self, positions):
        """``((dx, dy, dz) [N, K] each, mask [N, K], overflow)``."""
        n = positions.shape[0]
        u, overflow = self.displacements(positions)
        padded = jnp.concatenate([u, jnp.zeros((1, 3), u.dtype)])
        d, mask = self._rows(padded, jnp.asarray(self.partners),
                             jnp.asarray(self.site_vectors, u.dtype), jnp.arange(n))
        return d, mask, overflow

    def __call__(self, positions):
        """Returns ``(displacements [N, K, 3], mask [N, K], overflow)``."""
        d, mask, overflow = self.components(positions)
        return jnp.stack(d, axis=-1), mask, overflow

    def _transpose(self, slope):
        """``sum_k slope[partner(i, k), reverse_slot(i, k)]``: a gather, not a scatter.

        One flat index per entry: a two-index gather cost 3x the whole energy on CPU.
        """
        n, k = self.partners.shape
        flat = jnp.concatenate([slope.ravel(), jnp.zeros((1,), slope.dtype)])
        index = np.where(self.partners < n, self.partners * k + self.reverse_slots, n * k)
        return jnp.sum(flat[jnp.asarray(index, jnp.int32)], axis=1)

    def total(self, positions, rows_energy: RowsEnergy):
        """``(sum over particles of rows_energy, overflow)``, ``block`` particles at a time.

        Whole-configuration arrays of a few thousand particles times a few hundred partners
        fall out of the CPU caches; blocks keep the cost per particle flat in N.
        """
        n = positions.shape[0]
        if n <= self.block:  # small lists: blocks would cost more loop overhead than they save
            d, mask, overflow = self.components(positions)
            return rows_energy(d, mask), overflow
        padded, blocks, overflow = self._padded_blocks(positions)

        def one(block):
            return rows_energy(*self._rows(padded, *block))

        return jnp.sum(jax.lax.map(one, blocks)), overflow

    def total_and_gradient(self, positions, rows_gradient: RowsGradient, symmetric: bool):
        """``(sum, dsum/dpositions [N, 3], overflow)``, in blocks as ``total``.

        The crystal's translation ``t`` is held fixed (see ``displacements``), so the gradient
        with respect to the positions is the gradient with respect to the displacements.
        """
        n = positions.shape[0]
        if n <= self.block:
            d, mask, overflow = self.components(positions)
            u, pulls, slopes = rows_gradient(d, mask)
            return u, _pull(pulls, slopes, self._transpose, symmetric), overflow
        padded, blocks, overflow = self._padded_blocks(positions)

        def one(block):
            u, pulls, slopes = rows_gradient(*self._rows(padded, *block))
            return (u, pulls) if symmetric else (u, pulls, slopes)

        out = jax.lax.map(one, blocks)
        pulls = tuple(p.reshape(-1)[:n] for p in out[1])
        slopes = () if symmetric else tuple(g.reshape(-1, g.shape[-1])[:n] for g in out[2])
        return jnp.sum(out[0]), _pull(pulls, slopes, self._transpose, symmetric), overflow

    def row_sums(self, positions, rows_fn):
        """Per-particle sums over the list, block by block as ``total``: ``(tuple of [N]
        arrays, overflow)``.

        ``rows_fn(d, mask, partners, rows)`` gets a block's entries (``d``, ``mask`` as
        ``components``), the partner of every entry (``[B, K]``, ``N`` for padding) and the
        block's particle indices (``[B]``, ``N`` for padding rows), and returns a tuple of
        per-row arrays ``[B]``. Indices into an array of ``N + 1`` values (the last for
        padding) let a second pass read per-particle values of a first (EAM's ``F'(rho)``).
        """
        n = positions.shape[0]
        if n <= self.block:
            d, mask, overflow = self.components(positions)
            return rows_fn(d, mask, jnp.asarray(self.partners), jnp.arange(n)), overflow
        padded, blocks, overflow = self._padded_blocks(positions)

        def one(block):
            partners, _, rows = block
            return rows_fn(*self._rows(padded, *block), partners, rows)

        return tuple(a.reshape(-1)[:n] for a in jax.lax.map(one, blocks)), overflow

    def _padded_blocks(self, positions):
        u, overflow = self.displacements(positions)
        padded = jnp.concatenate([u, jnp.zeros((1, 3), u.dtype)])
        partners, site_vectors, rows = self._blocks()
        blocks = (jnp.asarray(partners), jnp.asarray(site_vectors, u.dtype), jnp.asarray(rows))
        return padded, blocks, overflow

    def _blocks(self):
        """Partner table, site vectors and row indices padded to whole blocks, ``[nb, B, ...]``."""
        n, k = self.partners.shape
        nb = -(-n // self.block)
        partners = np.full((nb * self.block, k), n, dtype=np.int32)
        partners[:n] = self.partners
        vectors = np.zeros((nb * self.block, k, 3))
        vectors[:n] = self.site_vectors
        rows = np.minimum(np.arange(nb * self.block), n).astype(np.int32)
        return (partners.reshape(nb, self.block, k), vectors.reshape(nb, self.block, k, 3),
                rows.reshape(nb, self.block))

    def num_candidates(self, num_particles: int) -> int:
        return self.partners.shape[1]


def site_neighbors(sites, box, cutoff: float, max_displacement: float) -> SiteNeighbors:
    """The lattice's partner table for ``SiteNeighbors`` (built with ASE's neighbour list)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    sites = np.mod(np.asarray(sites, dtype=np.float64), box)
    atoms = Atoms(positions=sites, cell=np.diag(box), pbc=True)
    first, second, images, vectors = neighbor_list("ijSD", atoms,
                                                   cutoff + 2.0 * max_displacement)
    n = len(sites)
    counts = np.bincount(first, minlength=n)
    k = int(counts.max()) if len(first) else 1
    order = np.argsort(first, kind="stable")
    first, second, images, vectors = first[order], second[order], images[order], vectors[order]
    slot = np.arange(len(first)) - (np.cumsum(counts) - counts)[first]
    partners = np.full((n, k), n, dtype=np.int32)
    site_vectors = np.zeros((n, k, 3))
    partners[first, slot] = second
    site_vectors[first, slot] = vectors
    reverse_slots = np.zeros((n, k), dtype=np.int32)
    reverse_slots[first, slot] = slot[_reverse_entries(first, second, images)]
    # About BLOCK_ENTRIES partner entries per block (per configuration), split evenly so the
    # last block is not mostly padding.
    num_blocks = -(-n * k // BLOCK_ENTRIES)
    return SiteNeighbors(box=np.asarray(box, dtype=np.float64), sites=sites, partners=partners,
                         site_vectors=site_vectors, reverse_slots=reverse_slots,
                         max_displacement=float(max_displacement),
                         block=-(-n // num_blocks))


def _reverse_entries(first, second, images) -> np.ndarray:
    """For each entry (i -> j, image S) of a neighbour list, the index of its entry (j -> i,
    image -S). Matched on the integers alone, so no rounding can pair the wrong entries."""
    forward = np.column_stack([first, second, images])
    backward = np.column_stack([second, first, -images])
    by_forward = np.lexsort(forward.T[::-1])
    by_backward = np.lexsort(backward.T[::-1])
    if not np.array_equal(forward[by_forward], backward[by_backward]):
        raise RuntimeError("the site list is not symmetric: some pair is listed one way only")
    reverse = np.empty(len(first), dtype=np.int64)
    reverse[by_backward] = by_forward
    return reverse


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
                   strategy: Strategy = "auto", pair_cost: float = 1.5,
                   allow_sites: bool = True):
    """Choose how an energy function finds the pairs inside ``cutoff``.

    Args:
      sites: ``[N, 3]`` lattice sites the particles vibrate about (sizes the cell capacity and
        builds the site list).
      box: ``[3]`` edge lengths of the orthorhombic box.
      cutoff: interaction range, in the same length unit.
      max_displacement: how far a particle may stray from its site before a cell could
        overflow or the site list miss a pair; freeflow uses half the nearest-neighbour
        distance (the radius of the base distribution's spheres).
      strategy: ``"dense"``, ``"cells"``, ``"sites"``, ``"auto"``, or a plan built earlier
        (returned as is). ``auto`` takes the cheapest by an estimated cost per particle:
        ``pair_cost x N x image shifts`` for ``dense``; ``CELL_COST x (27 x capacity`` cheap
        entries plus ``pair_cost x compact)`` for ``cells`` (only with at least three cells of width >=
        cutoff per axis); ``SITE_ENTRY_COST x pair_cost x partners`` for ``sites``.
      pair_cost: cost of one energy-and-gradient entry relative to one entry of the cell
        list's distance pass, measured on a 2-core CPU: about 1.5 for
        Lennard-Jones and 15 for mW (whose entries carry the three-body terms).
      allow_sites: whether ``auto`` may pick the site list. Turn it off where configurations
        can leave the crystal (training a flow from scratch, arbitrary ASE structures).

    With these costs the exact energies use ``sites`` for every named system except
    ``lj_256`` and the 64-molecule ices, whose all-pairs sums have one image each (256 and
    64 entries per particle, against 320 listed partners for Lennard-Jones at density 1.28
    and 46-47 for mW ice). Without the site list (the training energies),
    mW uses the cell list from N = 216 (measured faster there) and Lennard-Jones above
    N = 4000 (by the cost model alone; no Lennard-Jones cell list has been timed with the
    analytic gradient).

    A plan whose estimated memory (``plan_memory``) exceeds what the machine has available is
    refused before anything is built (``check_plan_memory``).
    """
    if isinstance(strategy, (DenseNeighbors, CellNeighbors, SiteNeighbors)):
        return strategy  # an explicit plan, e.g. a variant built for a benchmark
    sites = np.asarray(sites, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    if strategy not in ("auto", "dense", "cells", "sites"):
        raise ValueError(f"unknown neighbour strategy {strategy!r}; use 'auto', 'dense', "
                         "'cells' or 'sites'")
    check_plan_memory(strategy, len(sites), box, cutoff, max_displacement, allow_sites)
    if strategy == "sites":
        return site_neighbors(sites, box, cutoff, max_displacement)
    dense = DenseNeighbors(box=box, shifts=image_shifts(box, cutoff))
    if strategy == "dense":
        return dense
    candidates = [(pair_cost * dense.num_candidates(len(sites)), 0, dense)]
    most_cells = np.floor(box / cutoff).astype(int)
    if min(most_cells) >= 3:
        # How the cell walls fall relative to the lattice planes sets the worst-case capacity
        # (by up to 2x); try up to three cells fewer per axis and keep the smallest capacity.
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
        candidates.append((CELL_COST * (27 * cells.capacity + pair_cost * cells.compact), 1,
                           cells))
    elif strategy == "cells":
        raise ValueError(
            f"a cell list needs box edges of at least 3 x cutoff = {3 * cutoff:g}; "
            f"this box is {box.tolist()}. Use strategy='dense', 'sites' or 'auto'.")
    if allow_sites:
        listed = site_neighbors(sites, box, cutoff, max_displacement)
        per_particle = SITE_ENTRY_COST * pair_cost * listed.num_candidates(len(sites))
        candidates.append((per_particle, 2, listed))
    return min(candidates, key=lambda c: c[:2])[2]


#: Entries per listed partner of a cell list's evaluation: the 27 cells around a particle hold
#: about ``27 / (4 pi / 3)`` times the sites of the sphere its list is built with (cells at
#: least one cutoff wide), plus the compact list itself.
CELL_ENTRIES_PER_PARTNER = 27.0 / (4.0 * math.pi / 3.0) + 1.0


def estimated_partners(num_particles: int, volume: float, radius: float) -> float:
    """Sites within ``radius`` of a site, every periodic image counted, from the number density
    alone: ``(N / V) (4 pi / 3) radius^3`` (what a list built with that radius holds per
    particle, known before building it)."""
    return num_particles / volume * (4.0 * math.pi / 3.0) * radius**3


def plan_memory(strategy: str, num_particles: int, box, cutoff: float,
                max_displacement: float, configurations: int = 1) -> tuple[int, str]:
    """Estimated peak bytes of building the plan ``strategy`` (``"dense"``, ``"cells"`` or
    ``"sites"``) and evaluating ``configurations`` energies with it, and a phrase naming what
    grows (``freeflow.physics.memory.estimated_memory``). Nothing is built.

    All pairs compute ``N^2 S`` entries (``S`` image shifts) and list nothing; the site and cell
    lists are built with ASE's neighbour list out to ``cutoff + 2 max_displacement``.
    """
    box = np.asarray(box, dtype=np.float64)
    if strategy == "dense":
        shifts = count_image_shifts(box, cutoff)
        need = estimated_memory(num_particles, entries=num_particles * shifts,
                                configurations=configurations)
        return need, f"the all-pairs sum ({num_particles} x {shifts:.3g} partners per particle)"
    partners = estimated_partners(num_particles, float(np.prod(box)),
                                  cutoff + 2.0 * max_displacement)
    entries = partners * (CELL_ENTRIES_PER_PARTNER if strategy == "cells" else 1.0)
    need = estimated_memory(num_particles, listed_partners=partners, entries=entries,
                            configurations=configurations)
    return need, f"a neighbour list of about {partners:.3g} partners per particle"


def check_plan_memory(strategy: str, num_particles: int, box, cutoff: float,
                      max_displacement: float, allow_sites: bool) -> None:
    """Refuse, before building anything, a plan the machine's memory cannot hold.

    ``auto`` builds the cell list (boxes of at least three cutoffs per axis) and, with
    ``allow_sites``, the site list, one after the other; with neither it takes all pairs.
    """
    box = np.asarray(box, dtype=np.float64)
    if strategy == "auto":
        lists = (["cells"] if min(np.floor(box / cutoff)) >= 3 else []) + (
            ["sites"] if allow_sites else [])
        built = lists or ["dense"]
    else:
        built = [strategy]
    need, what = max(plan_memory(s, num_particles, box, cutoff, max_displacement)
                     for s in built)
    check_memory(need, f"the energy of N = {num_particles} particles, with {what},",
                 "use fewer particles or a lower number density")
