"""Pair potentials of any function of the distance: a user's JAX function, Morse, Buckingham.

Every pair potential here is truncated and shifted: ``u(r) = phi(r) - phi(rc)`` for
``r < rc``, zero beyond (``shift=False``: truncated only, with the step ``phi(rc)`` at the
cutoff). That is LAMMPS's ``pair_modify shift yes`` (and ``no``). The forces are those of
``phi`` itself inside the cutoff (the shift is a constant), so they jump by ``-phi'(rc)`` at the
cutoff, as in LAMMPS.

``PairPotential(phi, cutoff, units)`` takes a user's function ``phi(r)`` written in
``jax.numpy`` (elementwise, any array shape); ``Morse`` and ``Buckingham`` are built-in
examples with the TOML kinds ``morse`` and ``buckingham``. All share ``PairForm.energy_fn``:
the neighbour plans, the analytic gradient (``phi``'s derivative by one forward-mode pass,
``value_and_slope``, pulled back by the plan) and the training softening.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax.numpy as jnp
import numpy as np

from freeflow.physics.neighbors import Strategy
from freeflow.physics.potentials.base import (
    GRADIENTS,
    SOFT_MIN_DISTANCE,
    CheckedParameters,
    EnergyFn,
    PairNeighbors,
    entry_sums,
    floored,
    linearised_below,
    over_configurations,
    planned_energy,
    shift_summed,
    squared_distances,
    value_and_slope,
)
from freeflow.physics.units import ENERGY_UNITS, Units, physical_units
from freeflow.physics.validation import NON_NEGATIVE, POSITIVE, check_number


class PairForm(PairNeighbors):
    """Mixin: the truncated-and-shifted pair energy of a class with ``bare_pair(r)``,
    ``cutoff``, ``shift`` and ``soft_linear_below`` (a length, or ``None``: no linearisation).
    """

    #: Cost of one pair entry relative to the cell list's distance pass (see plan_neighbors):
    #: a square root and a transcendental function per entry.
    neighbor_pair_cost = 3.0

    def pair(self, r):
        """Pair energy at distance ``r`` inside the cutoff (energy unit)."""
        return self.bare_pair(r) - (self.bare_pair(self.cutoff) if self.shift else 0.0)

    def pair_of_squared_distance(self, softened: bool = False) -> Callable:
        """``u(r^2)`` inside the cutoff; ``softened``: linearised below ``soft_linear_below``."""
        pair = self.pair
        if softened and self.soft_linear_below is not None:
            pair = linearised_below(self.pair, self.soft_linear_below)
        return lambda r2: pair(jnp.sqrt(r2))

    def energy_fn(self, box, sites, *, max_displacement: float, softened: bool = False,
                  neighbors: Strategy = "auto", allow_sites: bool | None = None,
                  gradient: str = "analytic") -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]``: ``1/2 sum_{i != j} u(r_ij)``
        over every periodic image inside the cutoff (energy unit).

        ``softened=True`` gives the training energy: distances clipped below 0.01 (length
        unit) and ``u`` linearised below ``soft_linear_below``. ``gradient``: ``"analytic"``
        (``u'`` by forward mode, pulled back by the plan; see ``planned_energy``) or
        ``"autodiff"`` (reverse mode through the whole sum).
        """
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, not {gradient!r}")
        plan = self.neighbor_plan(box, sites, max_displacement=max_displacement,
                                  softened=softened, neighbors=neighbors, allow_sites=allow_sites)
        pair = self.pair_of_squared_distance(softened)
        min_distance = SOFT_MIN_DISTANCE if softened else 0.0
        cutoff2 = self.cutoff**2

        def entries(r2, mask):
            """Each entry's pair energy as a function of its unfloored ``r^2``."""
            inside = mask & (floored(r2, min_distance) < cutoff2)

            def fn(raw):
                # Outside the cutoff the placeholder r^2 keeps every branch finite.
                return jnp.where(inside, pair(jnp.where(inside, floored(raw, min_distance),
                                                        cutoff2)), 0.0)
            return fn

        def rows_energy(d, mask):
            _, raw = squared_distances(d, mask, min_distance)
            return 0.5 * jnp.sum(entries(raw, mask)(raw))  # each pair is seen from both ends

        def slopes(d, mask):
            _, raw = squared_distances(d, mask, min_distance)
            return value_and_slope(entries(raw, mask), raw)

        def rows_gradient(d, mask):
            u, slope = slopes(d, mask)
            # d(1/2 u(|d|^2))/dd = u'(r^2) d: the half and the 2 of the square cancel.
            sums = entry_sums(u, slope * d[0], slope * d[1], slope * d[2])
            return 0.5 * jnp.sum(sums[0]), sums[1:], tuple(slope * a for a in d)

        pair_gradient = None
        if plan.strategy == "dense" and len(plan.shifts) > 1:
            rows_gradient = shift_summed(slopes, plan.shifts)
        elif plan.strategy == "dense" and gradient == "analytic":
            def pair_gradient(x):
                return plan.pair_total_and_gradient(x, slopes)
        return over_configurations(planned_energy(
            plan, rows_energy, rows_gradient if gradient == "analytic" else None,
            symmetric=True, total_and_gradient=pair_gradient),
            single_unbatched=pair_gradient is not None)


def _checked_species(kind: str, species):
    """``species`` as a tuple of chemical symbols (or ``None``), or one line naming ``kind``."""
    from ase.data import chemical_symbols

    if species is None:
        return None
    found = (species,) if isinstance(species, str) else species
    found = tuple(found) if isinstance(found, (list, tuple)) else None
    if not found or any(s not in chemical_symbols for s in found):
        raise ValueError(f"potential {kind!r}: species must be a list of chemical symbols such "
                         f"as ['Cu']; got {species!r}")
    return found


class PhysicalPair(PairForm, CheckedParameters):
    """Mixin of the built-in pair potentials: ``energy_unit`` and ``species`` checked, lengths
    in Angstrom, temperatures in kelvin, the free-energy reference length 1 Angstrom."""

    def __post_init__(self):
        super().__post_init__()
        if self.energy_unit not in ENERGY_UNITS:
            raise ValueError(f"potential {self.kind!r}: unknown energy_unit "
                             f"{self.energy_unit!r}; give one of {', '.join(ENERGY_UNITS)}")
        if not isinstance(self.shift, (bool, np.bool_)):
            raise ValueError(f"potential {self.kind!r}: shift must be true or false; "
                             f"got {self.shift!r}")
        object.__setattr__(self, "species", _checked_species(self.kind, self.species))

    @property
    def units(self) -> Units:
        return physical_units(self.energy_unit, reference_length=1.0)


@dataclasses.dataclass(frozen=True)
class Morse(PhysicalPair):
    """``phi(r) = D0 [exp(-2 alpha (r - r0)) - 2 exp(-alpha (r - r0))]``, truncated and shifted
    at ``cutoff`` (LAMMPS ``pair_style morse`` with ``pair_modify shift yes``).

    ``D0`` (the well depth, ``energy_unit``), ``alpha`` (1/Angstrom), ``r0`` (the minimum,
    Angstrom) and ``cutoff`` (Angstrom) must be positive. The training energy is linearised
    below ``r0 / 2``.
    """

    D0: float
    alpha: float
    r0: float
    cutoff: float
    shift: bool = True
    energy_unit: str = "eV"
    species: tuple[str, ...] | None = None

    required_parameters = ("D0", "alpha", "r0", "cutoff", "energy_unit")
    parameter_domains = (("D0", POSITIVE), ("alpha", POSITIVE), ("r0", POSITIVE),
                         ("cutoff", POSITIVE))
    kind = "morse"

    @property
    def soft_linear_below(self) -> float:
        return 0.5 * self.r0

    def bare_pair(self, r):
        x = jnp.exp(-self.alpha * (r - self.r0))
        return self.D0 * (x * x - 2.0 * x)


@dataclasses.dataclass(frozen=True)
class Buckingham(PhysicalPair):
    """``phi(r) = A exp(-r / rho) - C / r^6``, truncated and shifted at ``cutoff`` (LAMMPS
    ``pair_style buck`` with ``pair_modify shift yes``).

    ``A`` (``energy_unit``), ``rho`` (Angstrom) and ``cutoff`` (Angstrom) must be positive,
    ``C`` (``energy_unit`` Angstrom^6) zero or positive. With ``C > 0``, ``phi`` has a spurious
    maximum at a short distance ``r_max`` and falls to minus infinity inside it; the training
    energy is linearised below ``r_max`` (below ``rho`` when ``C = 0``), so that an untrained
    flow's overlapping particles are pushed apart instead of into the collapse.
    """

    A: float
    rho: float
    C: float
    cutoff: float
    shift: bool = True
    energy_unit: str = "eV"
    species: tuple[str, ...] | None = None

    required_parameters = ("A", "rho", "C", "cutoff", "energy_unit")
    parameter_domains = (("A", POSITIVE), ("rho", POSITIVE), ("C", NON_NEGATIVE),
                         ("cutoff", POSITIVE))
    kind = "buckingham"

    @property
    def soft_linear_below(self) -> float:
        """The spurious maximum ``r_max`` (Angstrom), where ``phi'(r) = 0``: ``g(r) = (A /
        rho) exp(-r / rho) r^7 - 6 C`` rises from ``-6 C`` at 0 to its peak at ``7 rho``, so
        ``r_max`` is its one root below ``7 rho`` (bisection); ``rho`` if there is none."""
        def g(r):
            return self.A / self.rho * math.exp(-r / self.rho) * r**7 - 6.0 * self.C
        if self.C == 0 or g(7.0 * self.rho) <= 0:
            return self.rho
        low, high = 0.0, 7.0 * self.rho
        for _ in range(200):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if g(middle) < 0 else (low, middle)
        return high

    def bare_pair(self, r):
        r2 = r * r
        return self.A * jnp.exp(-r / self.rho) - self.C / (r2 * r2 * r2)


class PairPotential(PairForm):
    """A pair potential from a user's function ``phi(r)``, truncated and shifted at ``cutoff``.

    Args:
      phi: ``r -> energy``, elementwise on arrays of distances, written with ``jax.numpy`` (its
        derivative is taken by JAX; it is evaluated only inside the cutoff).
      cutoff: the truncation distance (length unit).
      units: a ``freeflow.physics.units.Units`` (``physical_units("eV", 1.0)``,
        ``reduced_units()``).
      species: chemical symbols the function models, or ``None`` (any one species).
      shift: subtract ``phi(cutoff)`` (default) or truncate only.
      soft_linear_below: where the training energy linearises ``phi`` (length unit); ``None``
        (default): not at all, only the 0.01 distance clip. Give one for a ``phi`` that diverges
        at short distances.
      name: a label for messages and run records (default: the function's name).

    Not a dataclass: a system of it is recorded in a run directory by ``repr`` and cannot be
    rebuilt from there (``freeflow.physics.identity.system_to_dict``).
    """

    kind = "pair"

    def __init__(self, phi: Callable, cutoff: float, units: Units, species=None,
                 shift: bool = True, soft_linear_below: float | None = None,
                 name: str | None = None):
        if not callable(phi):
            raise ValueError(f"potential 'pair': phi must be a function of r; got {phi!r}")
        if not isinstance(units, Units):
            raise ValueError(f"potential 'pair': units must be a freeflow.physics.units.Units "
                             f"(physical_units('eV', 1.0), reduced_units()); got {units!r}")
        if not isinstance(shift, (bool, np.bool_)):
            raise ValueError(f"potential 'pair': shift must be true or false; got {shift!r}")
        self.phi, self.units, self.shift = phi, units, bool(shift)
        self.cutoff = check_number(cutoff, "cutoff", POSITIVE, "potential 'pair'")
        self.soft_linear_below = (None if soft_linear_below is None else check_number(
            soft_linear_below, "soft_linear_below", POSITIVE, "potential 'pair'"))
        self.species = _checked_species(self.kind, species)
        self.name = name or getattr(phi, "__qualname__", type(phi).__name__)

    def bare_pair(self, r):
        return self.phi(r)

    def __repr__(self):
        return (f"PairPotential({self.name}, cutoff={self.cutoff!r}, shift={self.shift}, "
                f"energy={self.units.energy!r}, length={self.units.length!r}, "
                f"species={self.species!r})")
