"""freeflow: free energies of atomic solids with normalizing flows.

Units follow the system's potential: reduced Lennard-Jones units (sigma, epsilon, k_B = 1), or
Angstrom, kcal/mol and kelvin for monatomic water. Free energies are reported as the
dimensionless ``beta F / N`` (see ``shared/science.md`` for the convention).
"""

from freeflow.calculator import FreeflowCalculator
from freeflow.lattice import build_lattice
from freeflow.potentials import EinsteinCrystal, LennardJones, MonatomicWater
from freeflow.system import System, load_system, named_systems, system_from_atoms
from freeflow.units import Units

__version__ = "0.1.0"

__all__ = [
    "EinsteinCrystal", "FreeflowCalculator", "LennardJones", "MonatomicWater", "System",
    "Units", "build_lattice", "load_system", "named_systems", "system_from_atoms",
]
