"""Embedded-atom method (EAM) potentials from LAMMPS ``setfl`` and ``funcfl`` files (eV, Angstrom).

``E = sum_i F(rho_i) + 1/2 sum_{i != j} phi(r_ij)`` with ``rho_i = sum_{j != i} rho(r_ij)`` over
the pairs closer than the file's cutoff, every periodic image included. The tabulated functions
are interpolated as LAMMPS's ``pair_style eam`` and ``eam/alloy`` do (facts from the LAMMPS
documentation and source, written anew here), so that the two agree to rounding:

* Each table ``f_1 .. f_n`` on a grid of step ``h`` becomes one cubic per interval, fixed by the
  values at both ends and the slopes ``s_m`` there (in units of one step): ``s_m = ((f_{m-2} -
  f_{m+2}) + 8 (f_{m+1} - f_{m-1})) / 12`` (the five-point central difference) inside, ``(f_3 -
  f_1) / 2`` and ``f_2 - f_1`` at the second and first point, and likewise at the end. On
  interval ``m`` the cubic is ``((c3 t + c4) t + s_m) t + f_m`` with ``c4 = 3 (f_{m+1} - f_m) -
  2 s_m - s_{m+1}`` and ``c3 = s_m + s_{m+1} - 2 (f_{m+1} - f_m)``: value and slope continuous.
* A point ``x`` is looked up as LAMMPS does: ``p = x (1/h) + 1``, ``m = min(floor(p), n - 1)``
  (for densities also at least 1), ``t = min(p - m, 1)``; beyond the last point the value is
  held. Above the last tabulated density ``rho_max = (n - 1) h``, ``F`` continues linearly with
  its slope at ``rho_max`` (as LAMMPS adds ``F'(rho_max) (rho - rho_max)``).
* The pair term is tabulated as ``z(r) = r phi(r)`` and evaluated as ``phi = z(r) / r``; a
  ``funcfl`` file's ``z = 27.2 * 0.529 Z(r)^2``. LAMMPS puts a single ``funcfl`` file on a grid
  one point shorter than the file's (``nr - 1`` and ``nrho - 1`` points, with ``rho_max`` still
  ``(nrho - 1) drho``); ``lammps_grid`` does the same.

The energy of each particle (its row of the neighbour plan) is ``F(rho_i) - F(0) + 1/2 sum_j
phi(r_ij)``; the ``N F(0)`` that makes up the total is added once, so that padded rows (no
partners, ``rho = 0``) contribute nothing. The analytic gradient of the all-pairs and site-list
plans sums each pair's whole force ``(F'(rho_i) + F'(rho_j)) rho'(r) + phi'(r)`` over a row's
entries (every pair is in both rows, so the row sums are the forces, with no transpose); the
cell list pulls back ``dU/dd_ij = (F'(rho_i) rho'(r) + phi'(r) / 2) d_ij / r`` and the
partner's ``F'(rho_j)`` term arrives through its transpose (``freeflow.physics.neighbors``).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from ase.data import chemical_symbols

from freeflow.physics.eam_files import (
    HARTREE_BOHR,
    EAMTables,
    check_tables,
    format_eam,
    guess_format,
    parse_eam,
    read_eam_text,
    text_digest,
)
from freeflow.physics.neighbors import Strategy
from freeflow.physics.potentials.base import (
    GRADIENTS,
    SOFT_MIN_DISTANCE,
    CheckedParameters,
    EnergyFn,
    PairNeighbors,
    entry_sums,
    over_configurations,
    planned_energy,
    row_scalars,
    squared_distances,
    value_and_slope,
)
from freeflow.physics.units import Units, physical_units


@dataclasses.dataclass(frozen=True, eq=False)
class Spline:
    """LAMMPS's piecewise cubic through ``n`` values on the grid ``x = k step``.

    ``coefficients`` (numpy, float64; cast to the positions' dtype when evaluated in JAX):
    ``[4, n]``, rows ``f, s, c4, c3`` of interval ``m`` (0-based); the last column is the held
    end value (``c4 = c3 = 0``).
    """

    step: float
    coefficients: np.ndarray

    @classmethod
    def through(cls, values, step: float) -> "Spline":
        f = np.asarray(values, np.float64)
        n = len(f)
        s = np.empty(n)
        s[0], s[1] = f[1] - f[0], 0.5 * (f[2] - f[0])
        s[n - 2], s[n - 1] = 0.5 * (f[n - 1] - f[n - 3]), f[n - 1] - f[n - 2]
        s[2:n - 2] = ((f[:n - 4] - f[4:]) + 8.0 * (f[3:n - 1] - f[1:n - 3])) / 12.0
        rise = f[1:] - f[:-1]
        c4 = np.append(3.0 * rise - 2.0 * s[:-1] - s[1:], 0.0)
        c3 = np.append(s[:-1] + s[1:] - 2.0 * rise, 0.0)
        return cls(step=float(step), coefficients=np.stack([f, s, c4, c3]))

    @property
    def size(self) -> int:
        return self.coefficients.shape[1]

    def __call__(self, x):
        """Values at ``x`` (any shape, a JAX array), looked up as LAMMPS does (module docstring):
        below the grid (a negative density) the first cubic is extrapolated."""
        return self.value_and_derivative(x)[0]

    def value_and_derivative(self, x):
        """Values and ``d value / dx`` at ``x``, both from the one lookup of the coefficients.

        The derivative is the cubic's (zero where the value is held, ``t`` clipped at 1); JAX's
        own derivative of the value is the same, and ``value_and_derivative`` spares the
        gradient a second pass through the lookup.
        """
        p = x * (1.0 / self.step) + 1.0
        m = jnp.clip(jnp.floor(jax.lax.stop_gradient(p)), 1, self.size - 1)
        raw = p - m
        t = jnp.minimum(raw, 1.0)
        index = (m - 1).astype(jnp.int32)
        f, s, c4, c3 = (jnp.asarray(c, x.dtype)[index] for c in self.coefficients)
        slope = jnp.where(raw < 1.0, ((3.0 * c3 * t + 2.0 * c4) * t + s) / self.step, 0.0)
        return ((c3 * t + c4) * t + s) * t + f, slope

    def end_slope(self) -> float:
        """``d value / dx`` at the last grid point (the last interval's cubic at ``t = 1``)."""
        f, s, c4, c3 = self.coefficients[:, -2]
        return float((3.0 * c3 + 2.0 * c4 + s) / self.step)


@dataclasses.dataclass(frozen=True, eq=False)
class LammpsGrid:
    """The three splines LAMMPS evaluates for one file, and where ``F`` turns linear."""

    embedding: Spline
    density: Spline
    r_phi: Spline
    rho_max: float


def lammps_grid(tables: EAMTables) -> LammpsGrid:
    """The splines of ``tables`` on LAMMPS's grids (see the module docstring for ``funcfl``)."""
    rho_max = (tables.nrho - 1) * tables.drho
    if tables.format == "setfl":
        embedding, density, r_phi = tables.embedding, tables.density, tables.pair
    else:
        # LAMMPS's funcfl grid counts the file's spans, int((n - 1) h / h + 0.5), as points.
        nrho = int(rho_max / tables.drho + 0.5)
        nr = int((tables.nr - 1) * tables.dr / tables.dr + 0.5)
        embedding = _regridded(tables.embedding, tables.drho, nrho)
        density = _regridded(tables.density, tables.dr, nr)
        charge = _regridded(tables.pair, tables.dr, nr)
        r_phi = HARTREE_BOHR * charge * charge
    return LammpsGrid(embedding=Spline.through(embedding, tables.drho),
                      density=Spline.through(density, tables.dr),
                      r_phi=Spline.through(r_phi, tables.dr), rho_max=rho_max)


def _regridded(values, step: float, size: int) -> np.ndarray:
    """A funcfl table carried onto LAMMPS's grid of ``size`` points of the same ``step``.

    LAMMPS interpolates each funcfl file onto a common grid through the four file points
    around each new one (Lagrange, the third of the four from the left at ``t = p - k`` in
    ``[-1, 2]``). With one file the grids coincide and this returns the file's values up to
    rounding, the same rounding as LAMMPS's (the same operations in the same order), which
    keeps the agreement of forces at 1e-14 rather than 1e-12.
    """
    f = np.concatenate([[0.0], np.asarray(values, np.float64)])  # 1-based, as the formula
    r = np.arange(size) * step
    p = r / step + 1.0
    k = np.maximum(np.minimum(np.floor(p).astype(np.int64), len(values) - 2), 2)
    p = np.minimum(p - k, 2.0)
    sixth = 1.0 / 6.0
    weights = (-sixth * p * (p - 1.0) * (p - 2.0), 0.5 * (p * p - 1.0) * (p - 2.0),
               -0.5 * p * (p + 1.0) * (p - 2.0), sixth * p * (p * p - 1.0))
    return (weights[0] * f[k - 1] + weights[1] * f[k] + weights[2] * f[k + 1]
            + weights[3] * f[k + 2])


@dataclasses.dataclass(frozen=True)
class EAM(CheckedParameters, PairNeighbors):
    """An EAM potential tabulated in a LAMMPS file, one species (module docstring).

    ``file``: path of a ``setfl`` (``pair_style eam/alloy``) or ``funcfl`` (``pair_style eam``)
    file; in a system file, relative to that file or absolute. ``format``: ``"setfl"``,
    ``"funcfl"`` or ``"auto"`` (by the name: ``*.alloy`` setfl, ``*.eam`` funcfl; recorded as
    the one found). ``sha256``: the file's text digest; computed when left empty, and when
    given (a run directory records it), a file whose text has changed is refused. Or build it
    from tables: ``EAM(tables=EAMTables(...))`` (``file`` then only labels it; ``sha256`` is the
    digest of the text the tables would be written as).

    Energies in eV, lengths in Angstrom, temperatures in K; the free-energy convention's
    reference length Lambda is 1 Angstrom. The species is the file's element.
    """

    file: str = ""
    format: str = "auto"
    sha256: str = ""
    tables: dataclasses.InitVar[EAMTables | None] = None

    #: Parameters a system definition must give (``potential_from_config(require_all=True)``).
    required_parameters = ("file",)
    #: Fields that say where the potential came from, not what it is: left out of a system's
    #: identity (``freeflow.physics.identity``), which the file's SHA-256 carries.
    label_fields = ("file",)
    kind = "eam"
    #: Cost of one pair entry relative to the cell list's distance pass (see plan_neighbors):
    #: two table lookups per entry and a second pass for F'(rho).
    neighbor_pair_cost = 4.0

    def __post_init__(self, tables):
        super().__post_init__()
        where = f"potential {self.kind!r}"
        if not isinstance(self.file, (str, os.PathLike)):
            raise ValueError(f"{where}: file must be a path; got {self.file!r}")
        object.__setattr__(self, "file", os.fspath(self.file))
        if self.format not in ("auto", "setfl", "funcfl"):
            raise ValueError(f"{where}: format must be 'setfl', 'funcfl' or 'auto'; "
                             f"got {self.format!r}")
        if tables is None:
            if not self.file:
                raise ValueError(f"{where} needs file = PATH of a setfl (.eam.alloy) or "
                                 f"funcfl (.eam) file")
            format = guess_format(self.file) if self.format == "auto" else self.format
            text = read_eam_text(self.file)
            digest = text_digest(text)
            self._check_digest(digest)
            tables = parse_eam(text, format, self.file)
        else:
            check_tables(tables, self.file or f"tables of {tables.element}")
            digest = text_digest(format_eam(tables))
            self._check_digest(digest)
        object.__setattr__(self, "format", tables.format)
        object.__setattr__(self, "sha256", digest)
        object.__setattr__(self, "_tables", tables)
        object.__setattr__(self, "_grid", lammps_grid(tables))

    def _check_digest(self, digest: str) -> None:
        if self.sha256 and self.sha256 != digest:
            raise ValueError(f"{self.file or 'the EAM tables'} changed: its SHA-256 is now "
                             f"{digest[:16]}..., recorded {self.sha256[:16]}...; restore the "
                             f"file the run used or start a new run")

    @property
    def eam_tables(self) -> EAMTables:
        """The tables as read from the file."""
        return self._tables

    @property
    def grid(self) -> LammpsGrid:
        return self._grid

    @property
    def cutoff(self) -> float:
        return float(self._tables.cutoff)

    @property
    def species(self) -> tuple[str, ...] | None:
        element = self._tables.element
        return (element,) if element in chemical_symbols[1:] else None

    @property
    def units(self) -> Units:
        return physical_units("eV", reference_length=1.0)

    def embedding(self, rho):
        """``F(rho)`` (eV) as LAMMPS evaluates it, continued linearly above ``rho_max``."""
        grid = self._grid
        held = grid.embedding(rho)
        return held + jnp.where(rho > grid.rho_max,
                                grid.embedding.end_slope() * (rho - grid.rho_max), 0.0)

    def pair_and_density(self, r):
        """``(phi(r), rho(r))`` at distances ``r > 0`` (Angstrom), interpolated."""
        return self._grid.r_phi(r) / r, self._grid.density(r)

    def energy_fn(self, box, sites, *, max_displacement: float, softened: bool = False,
                  neighbors: Strategy = "auto", allow_sites: bool | None = None,
                  gradient: str = "analytic") -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]`` in eV.

        ``softened=True`` gives the training energy: distances clipped below 0.01 Angstrom.
        The tabulated functions are bounded (and F linear beyond the table), so no other
        softening is needed. ``gradient``: ``"analytic"`` (module docstring, pulled back by the
        plan; see ``planned_energy``) or ``"autodiff"``.
        """
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, not {gradient!r}")
        plan = self.neighbor_plan(box, sites, max_displacement=max_displacement,
                                  softened=softened, neighbors=neighbors, allow_sites=allow_sites)
        min_distance = SOFT_MIN_DISTANCE if softened else 0.0
        f0 = float(self._grid.embedding.coefficients[0, 0])  # F(0): the first tabulated value
        num_particles = len(np.asarray(sites))

        entries = _entry_terms(self._grid, self.cutoff, min_distance)

        def rows_energy(d, mask):
            phi, rho = entries(d, mask)
            pairs, density = entry_sums(phi, rho)
            return 0.5 * jnp.sum(pairs) + jnp.sum(self.embedding(density) - f0)

        def rows_gradient(d, mask):
            phi, rho, dphi, drho = entries(d, mask, derivatives=True)
            pairs, density = entry_sums(phi, rho)
            embedded, slope = value_and_slope(self.embedding, density)
            energy = 0.5 * jnp.sum(pairs) + jnp.sum(embedded - f0)
            # dU/dd = (F'(rho_i) rho'(r) + phi'(r) / 2) d / r.
            along = row_scalars(slope, drho) * drho + 0.5 * dphi
            slopes = tuple(along * a for a in d)
            return energy, entry_sums(*slopes), slopes

        pair_gradient = None
        if plan.strategy == "dense" and gradient == "analytic":
            pair_gradient = _dense_pair_gradient(plan, entries, self.embedding, f0)
        elif plan.strategy == "sites" and gradient == "analytic":
            pair_gradient = _site_pair_gradient(plan, self._grid, self.cutoff, min_distance,
                                                self.embedding, f0)

        total = planned_energy(plan, rows_energy,
                               rows_gradient if gradient == "analytic" else None,
                               symmetric=False, total_and_gradient=pair_gradient)

        def energy(x):
            return total(x) + num_particles * f0

        return over_configurations(energy)


def _entry_terms(grid: LammpsGrid, cutoff: float, min_distance: float):
    """``entries(d, mask, derivatives=False)``: each entry's ``phi`` and ``rho`` (and with
    ``derivatives``, ``phi' / r`` and ``rho' / r``) from the tables, zero outside the cutoff."""
    cutoff2 = cutoff**2

    def entries(d, mask, derivatives: bool = False):
        # The derivatives are zero below the training clip too (a clipped distance is fixed).
        r2, raw = squared_distances(d, mask, min_distance)
        inside = mask & (r2 < cutoff2)
        # Outside the cutoff the placeholder r = cutoff / 2 keeps every branch finite.
        r = jnp.sqrt(jnp.where(inside, r2, 0.25 * cutoff2))
        z, dz = grid.r_phi.value_and_derivative(r)
        rho, drho = grid.density.value_and_derivative(r)
        phi = z / r
        values = jnp.where(inside, phi, 0.0), jnp.where(inside, rho, 0.0)
        if not derivatives:
            return values
        # d/dr of phi = z / r is (z' - phi) / r.
        moving = inside & (raw >= r2)
        return values + (jnp.where(moving, (dz - phi) / (r * r), 0.0),
                         jnp.where(moving, drho / r, 0.0))

    return entries


def _dense_pair_gradient(plan, entries, embedding, f0: float):
    """``(U, dU/dx, overflow)`` of one configuration with the all-pairs plan, each pair's force
    ``(F'(rho_i) + F'(rho_j)) rho'(r) + phi'(r)`` (as LAMMPS sums it), the partner's ``F'``
    broadcast along the columns: no transpose of three slope arrays. Side by side on cu_108
    (27 image shifts) and cu_256 this was faster than the plan's route. The site list does
    the same in two passes (``_site_pair_gradient``)."""

    def pair_gradient(x):
        d, mask, overflow = plan.components(x)
        phi, rho, dphi, drho = entries(d, mask, derivatives=True)
        pairs, density = entry_sums(phi, rho)
        embedded, slope = value_and_slope(embedding, density)
        energy = 0.5 * jnp.sum(pairs) + jnp.sum(embedded - f0)
        along = (row_scalars(slope, drho) + slope[None, :, None]) * drho + dphi
        pulls = entry_sums(*(along * a for a in d))
        return energy, -jnp.stack(pulls, axis=-1), overflow

    return pair_gradient


def _site_pair_gradient(plan, grid: LammpsGrid, cutoff: float, min_distance: float,
                        embedding, f0: float):
    """``(U, dU/dx, overflow)`` of one configuration with the site list, in two passes over
    the entries, each fused into one loop: the densities ``rho_i`` alone, then each entry's
    pair term and whole force ``(F'(rho_i) + F'(rho_j)) rho'(r) + phi'(r)``, the partner's
    ``F'`` read per entry from the first pass's result. The second pass evaluates the
    tables again rather than storing four per-entry arrays between the passes, and the list
    holds both entries of every pair, so the row sums are the forces: no transpose.

    Its passes evaluate only what each needs rather than calling ``_entry_terms``: built on
    that (the unused values left to XLA to drop), energy + forces of cu_108 cost 3.1-3.3
    times the energy against 2.2-2.7, measured alternately in one sitting."""
    cutoff2 = cutoff**2

    def distances(d, mask):
        r2, raw = squared_distances(d, mask, min_distance)
        inside = mask & (r2 < cutoff2)
        return jnp.sqrt(jnp.where(inside, r2, 0.25 * cutoff2)), inside, inside & (raw >= r2)

    def densities(d, mask, partners, rows):
        r, inside, _ = distances(d, mask)
        return entry_sums(jnp.where(inside, grid.density(r), 0.0))

    def pair_gradient(x):
        (rho,), overflow = plan.row_sums(x, densities)
        embedded, slope = value_and_slope(embedding, rho)
        padded = jnp.concatenate([slope, jnp.zeros((1,), slope.dtype)])

        def forces(d, mask, partners, rows):
            r, inside, moving = distances(d, mask)
            z, dz = grid.r_phi.value_and_derivative(r)
            _, drho = grid.density.value_and_derivative(r)
            phi = z / r
            # d/dr of phi = z / r is (z' - phi) / r; both derivatives divided by r once more
            # to act on the displacement d.
            along = jnp.where(moving, (row_scalars(padded[rows], drho) + padded[partners])
                              * drho / r + (dz - phi) / (r * r), 0.0)
            return entry_sums(jnp.where(inside, phi, 0.0), *(along * a for a in d))

        # The barrier keeps XLA from sharing the first pass's table lookups with the second
        # (which would store them per entry between the passes).
        (pairs, gx, gy, gz), _ = plan.row_sums(jax.lax.optimization_barrier(x), forces)
        energy = 0.5 * jnp.sum(pairs) + jnp.sum(embedded - f0)
        return energy, -jnp.stack([gx, gy, gz], axis=-1), overflow

    return pair_gradient
