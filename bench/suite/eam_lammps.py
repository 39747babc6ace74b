"""freeflow's EAM against LAMMPS: the largest differences of energies and forces, float64.

Writes the Zhou-Johnson-Wadley copper tables (``freeflow.physics.potentials.eam_analytic``)
as a setfl and the funcfl test file into a temporary folder, then for perturbed fcc copper
(N = 32 in a 7.2 Angstrom box, smaller than twice the 5.5 Angstrom cutoff, and N = 108;
displacements of 0.15 Angstrom rms per axis, three seeds) evaluates freeflow's energy and its
analytic gradient with the all-pairs and the site-list plans, and LAMMPS's ``pair_style
eam/alloy`` / ``eam`` (``tests/lammps_oracle.py``). One JSON line per file and size on stdout
(and appended to ``--out``): the largest energy difference relative to the energy and the
largest force difference relative to the largest force.

    python bench/suite/eam_lammps.py --out bench/results/eam_lammps.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from lammps_oracle import lammps_energy_and_forces  # noqa: E402

from freeflow.physics.eam_files import write_eam  # noqa: E402
from freeflow.physics.potentials.eam import EAM  # noqa: E402
from freeflow.physics.potentials.eam_analytic import (  # noqa: E402
    zhou_funcfl_test_tables,
    zhou_tables,
)


def differences(path: Path, format: str, repeat: int, seeds=(0, 1, 2)) -> dict:
    potential = EAM(file=str(path))
    lines = (["pair_style eam/alloy", f"pair_coeff * * {path} Cu"] if format == "setfl"
             else ["pair_style eam", f"pair_coeff 1 1 {path}"])
    worst = {"energy": 0.0, "forces": 0.0}
    for seed in seeds:
        atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((repeat,) * 3)
        atoms.positions += 0.15 * np.random.default_rng(seed).standard_normal((len(atoms), 3))
        energy, forces = lammps_energy_and_forces(atoms, "metal", lines)
        box = np.diag(np.asarray(atoms.cell))
        for plan in ("dense", "sites"):
            fn = potential.energy_fn(box, np.mod(atoms.positions, box), max_displacement=1.0,
                                     neighbors=plan)
            u, grad = jax.jit(jax.value_and_grad(fn))(jnp.asarray(atoms.positions))
            worst["energy"] = max(worst["energy"], abs(float(u) - energy) / abs(energy))
            worst["forces"] = max(worst["forces"], float(
                np.abs(-np.asarray(grad) - forces).max() / np.abs(forces).max()))
    return {"file": format, "num_particles": len(atoms), "configurations": len(seeds),
            "plans": ["dense", "sites"], "energy_relative": worst["energy"],
            "forces_relative_to_largest": worst["forces"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="append the JSON lines to this file")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    with tempfile.TemporaryDirectory() as folder:
        files = {"setfl": write_eam(Path(folder) / "Cu.eam.alloy", zhou_tables()),
                 "funcfl": write_eam(Path(folder) / "Cu_test.eam", zhou_funcfl_test_tables())}
        for format, path in files.items():
            for repeat in (2, 3):
                row = differences(path, format, repeat)
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
