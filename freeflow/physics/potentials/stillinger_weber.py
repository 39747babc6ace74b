"""Stillinger-Weber potentials: the general form, and its named parameter sets (silicon, mW).

``StillingerWeberForm`` is the energy of the functional form (two-body ``phi2`` plus three-body
``phi3``, both cut at ``a sigma``), evaluated through moments of each atom's neighbour shell
with an analytic gradient. ``StillingerWeber`` carries every parameter of the form, the energy
unit and the species; ``PARAMETER_SETS`` holds the published sets (``"silicon"``: Stillinger
and Weber 1985; ``"mw"``: Molinero and Moore's monatomic water), built with
``StillingerWeber.named(...)`` or, in a system file, ``kind = "stillinger_weber"`` with
``parameters = "silicon"``. ``MonatomicWater`` (kind ``monatomic_water``,
``freeflow.physics.potentials.monatomic_water``) is the same form with mW's parameters in
kcal/mol.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax.numpy as jnp
from ase.data import chemical_symbols

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
    row_scalars,
    squared_distances,
    value_and_slope,
)
from freeflow.physics.units import ENERGY_UNITS, Units, physical_units
from freeflow.physics.validation import COSINE, NON_NEGATIVE, POSITIVE, check_known_keys

#: The parameters of the form and their domains (``lam`` is SW's lambda).
FORM_DOMAINS = (("epsilon", POSITIVE), ("sigma", POSITIVE), ("a", POSITIVE),
                ("lam", NON_NEGATIVE), ("gamma", POSITIVE), ("cos_theta0", COSINE),
                ("A", POSITIVE), ("B", POSITIVE), ("p", NON_NEGATIVE), ("q", NON_NEGATIVE))


class StillingerWeberForm:
    """Mixin: the Stillinger-Weber energy of a dataclass with the attributes of ``FORM_DOMAINS``.

    ``phi2(r) = A eps [B (sigma/r)^p - (sigma/r)^q] exp(sigma / (r - a sigma))``
    ``phi3 = lambda eps (cos theta_jik - cos theta0)^2 exp(gamma sigma/(r_ij - a sigma))
    exp(gamma sigma/(r_ik - a sigma))`` for each centre i and unordered pair {j, k} of distinct
    neighbours (periodic images count as distinct neighbours); both vanish, with every
    derivative, at ``r = a sigma``. Energies in the class's energy unit, lengths in Angstrom.
    The class sets ``soft_linear_below`` (Angstrom), where the training energy's ``phi2`` is
    linearised.
    """

    #: Cost of one pair entry relative to the cell list's distance pass (see plan_neighbors).
    neighbor_pair_cost = 15.0

    def __post_init__(self):
        super().__post_init__()
        if not self.p > self.q:
            raise ValueError(f"potential {self.kind!r}: p must exceed q (the repulsive power "
                             f"over the attractive one); got p = {self.p}, q = {self.q}")

    @property
    def cutoff(self) -> float:
        return self.a * self.sigma

    def pair(self, r):
        """Two-body energy phi2 at distance ``r < a sigma`` (energy unit)."""
        x = self.sigma / r
        return (self.A * self.epsilon * (self.B * x**self.p - x**self.q)
                * jnp.exp(self.sigma / (r - self.cutoff)))

    def energy_fn(self, box, sites, *, max_displacement: float, softened: bool = False,
                  neighbors: Strategy = "auto", allow_sites: bool | None = None,
                  gradient: str = "analytic") -> EnergyFn:
        """Pure function ``positions [..., N, 3] -> U [...]`` (energy unit).

        The three-body sum over pairs of neighbours of each atom is evaluated exactly through
        moments of that atom's neighbour shell: with ``f_j = exp(gamma sigma/(r_ij - a sigma))``
        and unit vectors ``e_j``, ``O = sum_{j != k} f_j f_k (e_j.e_k - c0)^2 = |T|^2 - 2 c0
        |v|^2 + c0^2 s^2 - sum_j f_j^2 (|e_j|^2 - c0)^2`` with ``T = sum f e e^T``, ``v = sum f
        e`` and ``s = sum f``. That costs O(neighbours) per atom instead of O(neighbours^2) and
        needs no cap on the number of neighbours. Its derivatives follow from the same moments:
        ``dO/df_j = 2 e_j.T e_j - 4 c0 v.e_j + 2 c0^2 s - 2 f_j q_j^2`` and ``dO/de_j = 4 f_j
        (T e_j - c0 v - f_j q_j e_j)`` with ``q_j = |e_j|^2 - c0``.

        ``softened=True`` gives the training energy: distances clipped below 0.01 Angstrom and
        phi2 linearised below ``soft_linear_below``. ``gradient``: ``"analytic"`` (the
        derivatives above, pulled back by the plan; see ``planned_energy``) or ``"autodiff"``.
        """
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, not {gradient!r}")
        plan = self.neighbor_plan(box, sites, max_displacement=max_displacement,
                                  softened=softened, neighbors=neighbors, allow_sites=allow_sites)
        pair = self.pair
        min_distance = 0.0
        if softened:
            pair = linearised_below(self.pair, self.soft_linear_below)
            min_distance = SOFT_MIN_DISTANCE
        terms = _ShellTerms(pair=pair, min_distance=min_distance, cos_theta0=self.cos_theta0,
                            cutoff=self.cutoff, gamma_sigma=self.gamma * self.sigma,
                            # each ordered pair {j, k} appears twice in O
                            three=0.5 * self.lam * self.epsilon)
        return over_configurations(planned_energy(
            plan, terms.rows_energy, terms.rows_gradient if gradient == "analytic" else None,
            symmetric=False))


#: The independent components of the symmetric 3 x 3 moment T.
_UPPER = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))

#: Published parameter sets (``StillingerWeber.named``). Silicon: F. H. Stillinger and T. A.
#: Weber, Phys. Rev. B 31, 5262 (1985), in eV and Angstrom. mW: V. Molinero and E. B. Moore,
#: J. Phys. Chem. B 113, 4008 (2009), in kcal/mol and Angstrom (the water molecule sits on its
#: oxygen); the values of ``MonatomicWater``.
PARAMETER_SETS = {
    "silicon": dict(epsilon=2.1683, sigma=2.0951, a=1.80, lam=21.0, gamma=1.20,
                    cos_theta0=-1.0 / 3.0, A=7.049556277, B=0.6022245584, p=4.0, q=0.0,
                    energy_unit="eV", species=("Si",)),
    "mw": dict(epsilon=6.189, sigma=2.3925, a=1.8, lam=23.15, gamma=1.2,
               cos_theta0=math.cos(math.radians(109.47)), A=7.049556277, B=0.6022245584,
               p=4.0, q=0.0, energy_unit="kcal/mol", species=("O",)),
}


@dataclasses.dataclass(frozen=True)
class StillingerWeber(StillingerWeberForm, CheckedParameters, PairNeighbors):
    """The Stillinger-Weber potential with every parameter of its form (see
    ``StillingerWeberForm``), one species.

    ``epsilon`` (in ``energy_unit``), ``sigma`` (Angstrom), ``a``, ``gamma``, ``A`` and ``B``
    must be positive; ``lam`` (SW's lambda), ``p`` and ``q`` zero or positive with ``p > q``;
    ``cos_theta0`` a cosine. ``energy_unit``: one of ``freeflow.physics.units.ENERGY_UNITS``
    (``"eV"``, ``"kcal/mol"``, ``"kJ/mol"``); temperatures are in kelvin. ``species``: the
    chemical symbols the parameters model (``None``: any). The free-energy reference length
    Lambda is ``sigma``. Published sets: ``StillingerWeber.named("silicon")`` (or
    ``.silicon()``) and ``.named("mw")``; in a system file ``parameters = "silicon"``.
    """

    epsilon: float
    sigma: float
    a: float
    lam: float
    gamma: float
    cos_theta0: float
    A: float
    B: float
    p: float = 4.0
    q: float = 0.0
    energy_unit: str = "eV"
    species: tuple[str, ...] | None = None

    #: Parameters a system definition must give unless it names a set (``parameters``).
    required_parameters = ("epsilon", "sigma", "a", "lam", "gamma", "cos_theta0", "A", "B",
                           "energy_unit")
    parameter_domains = FORM_DOMAINS
    kind = "stillinger_weber"

    def __post_init__(self):
        super().__post_init__()
        if self.energy_unit not in ENERGY_UNITS:
            raise ValueError(f"potential {self.kind!r}: unknown energy_unit "
                             f"{self.energy_unit!r}; give one of {', '.join(ENERGY_UNITS)}")
        if self.species is not None:
            species = (self.species,) if isinstance(self.species, str) else self.species
            species = tuple(species) if isinstance(species, (list, tuple)) else None
            if not species or any(s not in chemical_symbols for s in species):
                raise ValueError(f"potential {self.kind!r}: species must be a list of chemical "
                                 f"symbols such as ['Si']; got {self.species!r}")
            object.__setattr__(self, "species", species)

    @property
    def soft_linear_below(self) -> float:
        """Where the training energy's phi2 is linearised: half of sigma (Angstrom)."""
        return 0.5 * self.sigma

    @property
    def units(self) -> Units:
        return physical_units(self.energy_unit, reference_length=self.sigma)

    @classmethod
    def named(cls, name: str, **changes) -> StillingerWeber:
        """The published parameter set ``name`` (a key of ``PARAMETER_SETS``), with ``changes``
        (any of the fields) applied."""
        if name not in PARAMETER_SETS:
            raise ValueError(f"potential {cls.kind!r}: unknown parameter set {name!r}; known "
                             f"sets: {', '.join(sorted(PARAMETER_SETS))}")
        return cls(**{**PARAMETER_SETS[name], **changes})

    @classmethod
    def silicon(cls, **changes) -> StillingerWeber:
        """Stillinger and Weber's silicon (1985), eV and Angstrom, species Si."""
        return cls.named("silicon", **changes)

    @classmethod
    def from_config(cls, config: dict, require_all: bool = False) -> StillingerWeber:
        """From a system file's ``[potential]`` table (``kind`` removed): either every
        parameter, or ``parameters = "silicon"`` (a set's name) with any fields to change."""
        fields = [f.name for f in dataclasses.fields(cls)]
        check_known_keys(config, ["kind", "parameters", *fields], f"potential {cls.kind!r}")
        config = dict(config)
        name = config.pop("parameters", None)
        if name is not None:
            if not isinstance(name, str):
                raise ValueError(f"potential {cls.kind!r}: parameters must name a set "
                                 f"({', '.join(sorted(PARAMETER_SETS))}); got {name!r}")
            return cls.named(name, **config)
        # energy_unit has a default (eV) for the API; a hand-written system file states it.
        missing = [p for p in cls.required_parameters
                   if p not in config and (require_all or p != "energy_unit")]
        if missing:
            raise ValueError(f"potential {cls.kind!r} lacks {', '.join(missing)}; give every "
                             f"parameter of {', '.join(cls.required_parameters)}, or name a set "
                             f"with parameters = \"silicon\"")
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class _ShellTerms:
    """One atom's pair and three-body terms from the moments of its neighbour shell
    (``StillingerWeber.energy_fn`` gives the maths), as rows of the neighbour plan.

    ``pair``: phi2(r); ``min_distance``: the distance floor (0, or the training energy's clip);
    ``three``: lambda epsilon / 2; ``gamma_sigma``: gamma sigma (length unit).
    """

    pair: Callable
    min_distance: float
    cos_theta0: float
    cutoff: float
    gamma_sigma: float
    three: float

    def entries(self, r2, mask):
        """``(phi2, r, f)`` of each entry as functions of its unfloored ``r^2``."""
        cutoff, min_distance = self.cutoff, self.min_distance
        # Compared in r, not r^2: in float32 an r^2 just below cutoff^2 can still round to
        # r == cutoff, where exp(sigma / (r - cutoff)) is infinite.
        inside = mask & (jnp.sqrt(floored(r2, min_distance)) < cutoff)

        def fn(raw):
            # Outside the cutoff the placeholder r = cutoff / 2 keeps every branch finite.
            r = jnp.where(inside, jnp.sqrt(floored(raw, min_distance)), 0.5 * cutoff)
            f = jnp.where(inside, jnp.exp(self.gamma_sigma / (r - cutoff)), 0.0)
            return jnp.where(inside, self.pair(r), 0.0), r, f
        return fn

    def moments(self, d, phi2, r, f):
        c0 = self.cos_theta0
        e = tuple(a / r for a in d)
        q = e[0] * e[0] + e[1] * e[1] + e[2] * e[2] - c0
        # Pair terms are seen from both ends (halved); each three-body term belongs to its
        # central particle, the row it is computed in. The j == k terms are removed with
        # |e_j|^2 rather than 1: under the training energy's distance clip,
        # e_j = d_j / max(r_j, 0.01) is shorter than a unit vector.
        sums = entry_sums(phi2, f, *(f * a for a in e),
                          *(f * e[a] * e[b] for a, b in _UPPER), f * f * q * q)
        two, s, v, t_upper, self_terms = sums[0], sums[1], sums[2:5], sums[5:11], sums[11]
        tt = sum((1.0 if a == b else 2.0) * t * t for (a, b), t in zip(_UPPER, t_upper))
        ordered = tt - 2.0 * c0 * sum(x * x for x in v) + c0**2 * s * s - self_terms
        energy = 0.5 * jnp.sum(two) + self.three * jnp.sum(ordered)
        return energy, e, q, s, v, t_upper

    def rows_energy(self, d, mask):
        _, raw = squared_distances(d, mask, self.min_distance)
        return self.moments(d, *self.entries(raw, mask)(raw))[0]

    def rows_gradient(self, d, mask):
        c0, three = self.cos_theta0, self.three
        _, raw = squared_distances(d, mask, self.min_distance)
        (phi2, r, f), (dphi2, dr, df) = value_and_slope(self.entries(raw, mask), raw)
        energy, e, q, s, v, t_upper = self.moments(d, phi2, r, f)
        s, v = row_scalars(s, f), tuple(row_scalars(x, f) for x in v)
        t = {ab: row_scalars(x, f) for ab, x in zip(_UPPER, t_upper)}
        te = tuple(sum(t[tuple(sorted((a, b)))] * e[b] for b in range(3)) for a in range(3))
        ve = sum(v[a] * e[a] for a in range(3))
        ete = sum(e[a] * te[a] for a in range(3))
        d_f = 2.0 * ete - 4.0 * c0 * ve + 2.0 * c0**2 * s - 2.0 * f * q * q
        d_e = tuple(4.0 * f * (te[a] - c0 * v[a] - f * q * e[a]) for a in range(3))
        # U = 1/2 sum phi2 + three O(e(d), f(r^2(d))); with e = d / r(r^2):
        # dU/dd = 2 [phi2'/2 + three (dO/df f' - (dO/de . d) r' / r^2)] d + three/r dO/de.
        de_d = sum(d_e[a] * d[a] for a in range(3))
        along = 2.0 * (0.5 * dphi2 + three * (d_f * df - de_d * dr / (r * r)))
        across = three / r
        slopes = tuple(along * d[a] + across * d_e[a] for a in range(3))
        return energy, entry_sums(*slopes), slopes
