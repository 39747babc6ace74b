"""freeflow: free energies of atomic solids with normalizing flows.

Units follow the system's potential: reduced Lennard-Jones units (sigma, epsilon, k_B = 1), or
Angstrom, kcal/mol and kelvin for monatomic water. Free energies are reported as the
dimensionless ``beta F / N = -(ln Z - ln N!) / N + 3 ln Lambda``
(``freeflow.estimators.conventions``).

The package is layered, and imports point only down the list:

* ``freeflow.physics``: space, units, lattices, neighbour plans, potentials, ``System``, the ASE
  calculator;
* ``freeflow.flows``: the model's config, bases, splines, couplings, conditioner, model, works;
* ``freeflow.estimators``: conventions, the result types, LFEP, BAR/LBAR, MBAR, curves along
  temperature, the thermodynamic limit (arrays and functions in, results out, no files);
* ``freeflow.sampling``: Metropolis-corrected HMC;
* ``freeflow.training``: training config and presets, the training loop;
* ``freeflow.rundir``: the run-directory and sample-file formats;
* ``freeflow.fields``: a lattice field through the generic layers (no crystal);
* ``freeflow.workflows``: train, estimate (every method), the MBAR baseline, SMC, compare
  (what the API and CLI call);
* ``freeflow.reports``: diagnostics and tables;
* ``freeflow.cli``.
"""

# The command line's Ctrl-C (and SIGTERM) handling starts here, before the heavy imports below: a
# KeyboardInterrupt raised inside them would print a traceback. Only for ``freeflow ...`` and
# ``python -m freeflow.cli``; a library user's interpreter keeps its own handler.
import os as _os
import signal as _signal
import sys as _sys


def _interrupted_while_starting(signum, frame):
    _os.write(2, b"freeflow: interrupted\n")
    _os._exit(128 + signum)  # 130 for SIGINT, 143 for SIGTERM


if _sys.argv[:1] == ["-m"] or _os.path.basename(_sys.argv[0] if _sys.argv else "") == "freeflow":
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)
    _signal.signal(_signal.SIGTERM, _interrupted_while_starting)


from freeflow.estimators.bar import bar, lbar
from freeflow.estimators.lfep import lfep
from freeflow.estimators.result import (
    FreeEnergy,
    FreeEnergyDifference,
    ReducedFreeEnergy,
    delta_f,
)
from freeflow.flows.bases import LatticeBase
from freeflow.flows.config import PRESETS, ModelConfig, model_preset
from freeflow.flows.model import BaseModel, FlowModel
from freeflow.physics.calculator import FreeflowCalculator
from freeflow.physics.lattice import build_lattice
from freeflow.physics.potentials import EinsteinCrystal, LennardJones, MonatomicWater
from freeflow.physics.system import System
from freeflow.physics.system_files import load_system, named_systems, system_from_atoms
from freeflow.physics.units import Units
from freeflow.rundir import load_run, load_samples, save_samples
from freeflow.sampling.hmc import Boltzmann, HMCConfig, SampleResult, sample, sample_system
from freeflow.training.config import TrainingConfig
from freeflow.training.trainer import TrainingDiverged
from freeflow.sampling.smc import AnnealConfig
from freeflow.workflows.baseline import PathConfig, mbar_free_energy
from freeflow.workflows.compare import CompareConfig, compare
from freeflow.workflows.estimate import (FromBase, WorksConfig, estimate, lbar_from_model,
                                         lfep_from_model)
from freeflow.workflows.smc import SMCConfig, smc_free_energy
from freeflow.workflows.sweep import LadderConfig, SweepConfig, free_energy_curve
from freeflow.estimators.curve import Curve, DeltaCurve, delta_f_curve
from freeflow.estimators.finite_size import (ThermodynamicLimit, fit_finite_size,
                                             thermodynamic_limit)
from freeflow.workflows.train import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "BaseModel", "EinsteinCrystal", "FlowModel", "FreeflowCalculator", "LatticeBase",
    "LennardJones", "ModelConfig", "MonatomicWater", "PRESETS", "System", "Units", "build_lattice",
    "load_system", "model_preset", "named_systems", "system_from_atoms",
    "ReducedFreeEnergy", "SampleResult", "bar", "lbar", "lbar_from_model", "lfep_from_model",
    "load_samples", "mbar_free_energy", "sample", "sample_system", "save_samples",
    "FreeEnergy", "FreeEnergyDifference", "TrainResult", "TrainingConfig", "TrainingDiverged",
    "delta_f", "estimate", "lfep", "load_run", "smc_free_energy", "train",
    "AnnealConfig", "Boltzmann", "CompareConfig", "FromBase", "HMCConfig", "PathConfig",
    "SMCConfig", "WorksConfig", "compare",
    "Curve", "DeltaCurve", "LadderConfig", "SweepConfig", "delta_f_curve", "free_energy_curve",
    "ThermodynamicLimit", "fit_finite_size", "thermodynamic_limit",
]
