"""An ASE calculator backed by freeflow's JAX energies, so ASE's optimisers, MD and I/O work."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from freeflow.physics.system import System


class FreeflowCalculator(Calculator):
    """Energy and forces of a freeflow ``System``'s potential for ``ase.Atoms``.

    The atoms must have the system's number of particles and its box (the energy function is
    built for one box). Energies are returned in the system's energy unit and forces in energy
    per length unit (reduced LJ units, or kcal/mol and kcal/(mol Angstrom) for mW): ASE's own
    eV convention is not applied, so mix with other ASE calculators only in reduced units.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, system: System, softened: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.system = system
        energy = system.energy_fn(softened=softened)
        self._energy_and_gradient = jax.jit(jax.value_and_grad(lambda x: energy(x)))

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if len(self.atoms) != self.system.num_particles:
            raise ValueError(f"{self.system.name} has {self.system.num_particles} particles; "
                             f"these atoms have {len(self.atoms)}")
        cell = np.asarray(self.atoms.cell)
        if not np.allclose(cell, np.diag(self.system.box), rtol=1e-7, atol=1e-9):
            raise ValueError(
                f"the atoms' cell {np.round(self.atoms.cell.cellpar(), 6).tolist()} differs from "
                f"the box {self.system.box.tolist()} of {self.system.name}; build a new System "
                "with freeflow.system_from_atoms for another cell")
        positions = jnp.asarray(self.atoms.positions, dtype=jnp.result_type(float))
        energy, gradient = self._energy_and_gradient(positions)
        energy = float(energy)
        if not np.isfinite(energy):
            raise FloatingPointError(
                f"{self.system.name}: energy is {energy} for this configuration (overlapping "
                "particles, or a cell list overflow if the crystal has melted)")
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = -np.asarray(gradient, dtype=np.float64)
