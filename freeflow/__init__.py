"""freeflow: free energies of atomic solids with normalizing flows.

Units follow the system's potential: reduced Lennard-Jones units (sigma, epsilon, k_B = 1), or
Angstrom, kcal/mol and kelvin for monatomic water. Free energies are reported as the
dimensionless ``beta F / N`` (see ``shared/science.md`` for the convention).
"""

from freeflow.bar import bar, lbar, lbar_from_model
from freeflow.base import LatticeBase
from freeflow.calculator import FreeflowCalculator
from freeflow.config import PRESETS, ModelConfig, TrainingConfig, model_preset
from freeflow.estimators import FreeEnergy, FreeEnergyDifference, delta_f, estimate, lfep
from freeflow.flow import FlowModel
from freeflow.lattice import build_lattice
from freeflow.mbar import FreeEnergyResult, mbar_free_energy
from freeflow.potentials import EinsteinCrystal, LennardJones, MonatomicWater
from freeflow.sampling import SampleResult, sample, sample_system
from freeflow.system import System, load_system, named_systems, system_from_atoms
from freeflow.train import TrainResult, TrainingDiverged, load_run, train
from freeflow.trajectory import load_samples, save_samples
from freeflow.units import Units

__version__ = "0.1.0"

__all__ = [
    "EinsteinCrystal", "FlowModel", "FreeflowCalculator", "LatticeBase", "LennardJones",
    "ModelConfig", "MonatomicWater", "PRESETS", "System", "Units", "build_lattice",
    "load_system", "model_preset", "named_systems", "system_from_atoms",
    "FreeEnergyResult", "SampleResult", "bar", "lbar", "lbar_from_model", "load_samples",
    "mbar_free_energy", "sample", "sample_system", "save_samples",
    "FreeEnergy", "FreeEnergyDifference", "TrainResult", "TrainingConfig", "TrainingDiverged",
    "delta_f", "estimate", "lfep", "load_run", "train",
]
