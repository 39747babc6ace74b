"""Unit systems: which energy and length units a potential's numbers are in.

``reference_length`` is the fixed length Lambda in the free-energy convention
``beta F / N = -(ln Z - ln N!) / N + 3 ln(Lambda)`` (see ``freeflow.estimators.conventions``),
expressed in the length unit of positions.
"""

from __future__ import annotations

import dataclasses

#: Boltzmann constant in kcal / (mol K).
BOLTZMANN_KCAL_PER_MOL_K = 0.0019872067


@dataclasses.dataclass(frozen=True)
class Units:
    length: str
    energy: str
    temperature: str
    boltzmann_constant: float  # energy unit per temperature unit
    reference_length: float  # Lambda, in the length unit

    def beta(self, temperature: float) -> float:
        """Inverse temperature 1 / (k_B T), in inverse energy units."""
        return 1.0 / (self.boltzmann_constant * temperature)


def reduced_units(sigma: float = 1.0) -> Units:
    """Lennard-Jones reduced units: lengths in sigma, energies in epsilon, k_B = 1."""
    return Units(length="sigma", energy="epsilon", temperature="epsilon/k_B",
                 boltzmann_constant=1.0, reference_length=sigma)


def molar_units(reference_length: float) -> Units:
    """Angstrom, kcal/mol and kelvin."""
    return Units(length="Angstrom", energy="kcal/mol", temperature="K",
                 boltzmann_constant=BOLTZMANN_KCAL_PER_MOL_K, reference_length=reference_length)
