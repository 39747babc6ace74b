"""Unit systems: which energy and length units a potential's numbers are in.

``reference_length`` is the fixed length Lambda in the free-energy convention
``beta F / N = -(ln Z - ln N!) / N + 3 ln(Lambda)`` (see ``freeflow.estimators.conventions``),
expressed in the length unit of positions.

Physical potentials take lengths in Angstrom, temperatures in kelvin and energies in one of
``ENERGY_UNITS`` (eV, kcal/mol, kJ/mol), each with its own k_B; reduced (Lennard-Jones) units
measure energies in epsilon and temperatures in epsilon / k_B, so k_B = 1.
"""

from __future__ import annotations

import dataclasses

#: Boltzmann constant in kcal / (mol K).
BOLTZMANN_KCAL_PER_MOL_K = 0.0019872067

#: Boltzmann constant in each physical energy unit per kelvin: eV / K (CODATA 2018, exact
#: since the 2019 SI), kcal / (mol K) (the value LAMMPS's ``units real`` uses) and kJ / (mol K)
#: (R = 8.314462618 J / (mol K)).
ENERGY_UNITS = {
    "eV": 8.617333262e-5,
    "kcal/mol": BOLTZMANN_KCAL_PER_MOL_K,
    "kJ/mol": 8.314462618e-3,
}

#: Bar per (energy unit / Angstrom^3), for pressures: eV from the elementary charge (exact),
#: kcal/mol and kJ/mol from the thermochemical calorie and Avogadro's number (exact).
BAR_PER_ENERGY_PER_CUBIC_ANGSTROM = {
    "eV": 1.602176634e-19 / 1e-30 / 1e5,
    "kcal/mol": 4184.0 / 6.02214076e23 / 1e-30 / 1e5,
    "kJ/mol": 1000.0 / 6.02214076e23 / 1e-30 / 1e5,
}


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

    @property
    def pressure(self) -> str:
        """The unit of pressures in these units: energy per cubic length."""
        return f"{self.energy}/{self.length}^3"

    @property
    def bar_per_pressure_unit(self) -> float | None:
        """Bar per ``pressure`` unit; ``None`` for reduced units."""
        if self.length != "Angstrom":
            return None
        return BAR_PER_ENERGY_PER_CUBIC_ANGSTROM.get(self.energy)


def reduced_units(sigma: float = 1.0) -> Units:
    """Lennard-Jones reduced units: lengths in sigma, energies in epsilon, k_B = 1."""
    return Units(length="sigma", energy="epsilon", temperature="epsilon/k_B",
                 boltzmann_constant=1.0, reference_length=sigma)


def physical_units(energy: str, reference_length: float) -> Units:
    """Angstrom, kelvin and ``energy`` (one of ``ENERGY_UNITS``), with that unit's k_B."""
    if energy not in ENERGY_UNITS:
        raise ValueError(f"unknown energy unit {energy!r}; give one of "
                         f"{', '.join(ENERGY_UNITS)} (or use reduced units)")
    return Units(length="Angstrom", energy=energy, temperature="K",
                 boltzmann_constant=ENERGY_UNITS[energy], reference_length=reference_length)


def molar_units(reference_length: float) -> Units:
    """Angstrom, kcal/mol and kelvin."""
    return physical_units("kcal/mol", reference_length)
