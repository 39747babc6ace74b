"""calphy's Frenkel-Ladd free energy of a solid, term by term in freeflow's convention.

calphy (Menon et al., Phys. Rev. Materials 5, 103801 (2021)) runs a Frenkel-Ladd switching
between an Einstein crystal and the potential in LAMMPS (``units metal``: eV, Angstrom, amu,
kelvin) and reports a free energy per atom in eV. In its ``fe`` mode at a fixed lattice
(``pressure: null``) that number differs from freeflow's ``beta F / N`` (see
``freeflow.estimators.conventions``) in four places, each a term of ``CalphyConversion``:

* **pV.** calphy measures the mean pressure ``p`` at the fixed lattice and adds ``p V / N`` to
  the Helmholtz free energy it computed (``results.pv``); freeflow reports the Helmholtz
  free energy, so ``beta pv`` is removed: ``helmholtz = beta (free_energy - pv)``.
* **Momenta.** calphy's Einstein crystal is classical with momenta, so its ``F`` holds
  ``3 k_B T ln Lambda_dB`` per atom, ``Lambda_dB = h / sqrt(2 pi m k_B T)``; freeflow's
  convention holds ``3 ln Lambda`` with the system's fixed reference length ``Lambda``:
  ``de_broglie = -3 ln(Lambda_dB / Lambda)``.
* **Centre of mass.** calphy's centre-of-mass term puts the box volume ``V`` where the
  Frenkel-Ladd literature's convention (Polson et al. 2000; the published flow table) puts
  ``V / N``: its ``beta F / N`` is lower by ``ln N / N`` (0.0249 at N = 216), so
  ``centre_of_mass = + ln N / N``.
* **The box.** calphy rounds each box edge to 1e-3 Angstrom and runs the switching in that box
  (``average.density`` is ``N`` over the rounded volume ``V'``). Against the input volume
  ``V`` this moves ``F`` by ``-p (V - V')`` to first order (``dF / dV = -p``; the second
  order, ``(V - V')^2 / (2 V kappa_T)``, is below 1e-6 k_B T per atom for the relative change
  of 1e-4 that the rounding makes): ``box = -beta p (V - V') / N``.

Energies in eV come with k_B in eV / K (``freeflow.physics.units.ENERGY_UNITS["eV"]``, the
exact SI value calphy also uses through scipy); a system whose energies are in kcal/mol (mW)
must be given to LAMMPS with ``epsilon_eV = epsilon_kcal * k_B[eV] / k_B[kcal/mol]``, which
keeps ``beta epsilon`` and hence ``beta F / N`` unchanged.
"""

from __future__ import annotations

import dataclasses
import math

from scipy import constants

from freeflow.physics.units import ENERGY_UNITS

#: 1 eV / Angstrom^3 in bar: calphy's pressures are in bar.
BAR_PER_EV_PER_CUBIC_ANGSTROM = constants.e * 1e25

#: k_B in eV / K.
BOLTZMANN_EV_PER_K = ENERGY_UNITS["eV"]


@dataclasses.dataclass(frozen=True)
class CalphyResult:
    """The numbers of calphy's ``report.yaml`` for a solid in ``fe`` mode at a fixed lattice
    (``pressure: null`` in calphy's input; the report itself does not say which, and at a
    fixed pressure the pV and box terms of ``beta_f_from_calphy`` would not apply).

    Attributes:
      free_energy: ``results.free_energy``, eV per atom (reference + work + pv).
      error: ``results.error``, eV per atom: the standard error over the switching iterations.
      pv: ``results.pv``, eV per atom.
      pressure: ``input.pressure``, bar: the mean pressure calphy measured at the lattice.
      density: ``average.density``, atoms per cubic Angstrom, of calphy's rounded box.
    """

    free_energy: float
    error: float
    pv: float
    pressure: float
    density: float

    @classmethod
    def from_report(cls, report: dict) -> CalphyResult:
        """From the mapping ``yaml.safe_load`` reads out of ``report.yaml``."""
        results = report["results"]
        if results.get("unit", "eV/atom") != "eV/atom":
            raise ValueError(f"calphy report in {results['unit']!r}; expected eV/atom")
        return cls(free_energy=float(results["free_energy"]), error=float(results["error"]),
                   pv=float(results["pv"]), pressure=float(report["input"]["pressure"]),
                   density=float(report["average"]["density"]))


@dataclasses.dataclass(frozen=True)
class CalphyConversion:
    """calphy's result as freeflow's ``beta F / N``: the sum of the four terms (module
    docstring), each dimensionless and per particle, and the standard error."""

    helmholtz: float
    de_broglie: float
    centre_of_mass: float
    box: float
    stderr: float

    @property
    def beta_f_per_particle(self) -> float:
        return self.helmholtz + self.de_broglie + self.centre_of_mass + self.box


def de_broglie_wavelength(mass: float, temperature: float) -> float:
    """``h / sqrt(2 pi m k_B T)`` in Angstrom, for ``mass`` in g/mol (LAMMPS ``metal`` and
    calphy: ``m = mass * 1e-3 / N_A`` kg) and ``temperature`` in K."""
    kilograms = mass * 1e-3 / constants.Avogadro
    kinetic = 2 * math.pi * kilograms * constants.k * temperature
    return constants.h / math.sqrt(kinetic) * 1e10


def beta_f_from_calphy(result: CalphyResult, *, temperature: float, mass: float,
                       num_particles: int, volume: float,
                       reference_length: float) -> CalphyConversion:
    """calphy's free energy of a one-species solid in freeflow's convention, term by term.

    Args:
      result: calphy's report (``CalphyResult``).
      temperature: K. mass: g/mol, as given to calphy.
      num_particles: atoms in the box.
      volume: the box volume freeflow's system has, cubic Angstrom (the input to calphy).
      reference_length: the system's ``Lambda`` (``system.units.reference_length``), Angstrom.
    """
    n = int(num_particles)
    beta = 1.0 / (BOLTZMANN_EV_PER_K * temperature)
    pressure = result.pressure / BAR_PER_EV_PER_CUBIC_ANGSTROM  # eV / Angstrom^3
    calphy_volume = n / result.density
    return CalphyConversion(
        helmholtz=beta * (result.free_energy - result.pv),
        de_broglie=-3.0 * math.log(de_broglie_wavelength(mass, temperature) / reference_length),
        centre_of_mass=math.log(n) / n,
        box=-beta * pressure * (volume - calphy_volume) / n,
        # One switching iteration gives calphy's error 0: no error bar, not a perfect one.
        stderr=beta * result.error if result.error > 0 else math.inf,
    )
