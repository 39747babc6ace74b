"""Monatomic water (mW): the Stillinger-Weber form with Molinero's parameters, in kcal/mol.

The energy is ``freeflow.physics.potentials.stillinger_weber.StillingerWeberForm``; this class
keeps the ``monatomic_water`` kind, its parameter names and its defaults, so system files and
run directories written for it load unchanged. ``StillingerWeber.named("mw")`` is the same
parameter set under the general kind.
"""

from __future__ import annotations

import dataclasses
import math

from freeflow.physics.potentials.base import CheckedParameters, PairNeighbors
from freeflow.physics.potentials.stillinger_weber import FORM_DOMAINS, StillingerWeberForm
from freeflow.physics.units import Units, molar_units


@dataclasses.dataclass(frozen=True)
class MonatomicWater(StillingerWeberForm, CheckedParameters, PairNeighbors):
    """mW water: two-body ``phi2`` plus three-body ``phi3`` terms, both cut at ``a * sigma``.

    ``phi2(r) = A eps [B (sigma/r)^p - (sigma/r)^q] exp(sigma / (r - a sigma))`` (p = 4, q = 0)
    ``phi3 = lambda eps (cos theta_jik - cos theta0)^2 exp(gamma sigma/(r_ij - a sigma))
    exp(gamma sigma/(r_ik - a sigma))`` for each centre i and unordered pair {j, k} of distinct
    neighbours (periodic images count as distinct neighbours).

    Energies in kcal/mol, lengths in Angstrom. ``epsilon`` (kcal/mol), ``sigma`` (Angstrom),
    ``a``, ``gamma``, ``A`` and ``B`` must be positive, ``lam`` and the powers zero or positive
    with ``p > q`` (a repulsive core), ``cos_theta0`` a cosine. A molecule sits on its oxygen:
    structures are labelled ``O`` (or ``X``, unlabelled).
    """

    epsilon: float = 6.189
    sigma: float = 2.3925
    a: float = 1.8
    lam: float = 23.15
    gamma: float = 1.2
    cos_theta0: float = math.cos(math.radians(109.47))
    A: float = 7.049556277
    B: float = 0.6022245584
    p: float = 4.0
    q: float = 0.0

    #: Parameters a system definition must give (``potential_from_config(require_all=True)``).
    required_parameters = ("epsilon", "sigma", "a", "lam", "gamma", "cos_theta0", "A", "B")
    parameter_domains = FORM_DOMAINS
    species = ("O",)
    kind = "monatomic_water"
    #: Below this distance (Angstrom) the training energy's pair term is linearised.
    soft_linear_below = 1.2

    @property
    def units(self) -> Units:
        return molar_units(reference_length=self.sigma)
