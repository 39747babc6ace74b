"""Zhou, Johnson and Wadley's analytic EAM for fcc copper, and its LAMMPS tables.

The functions are those of X. W. Zhou, R. A. Johnson and H. N. G. Wadley, "Misfit-energy-
increasing dislocations in vapor-deposited CoFe/NiFe multilayers", Phys. Rev. B 69, 144113
(2004), eqs. (2)-(6), with their parameters for Cu (their Table I). With ``x = r / r_e``:

* pair term ``phi(r) = A exp(-alpha (x - 1)) / (1 + (x - kappa)^20)
  - B exp(-beta (x - 1)) / (1 + (x - lambda)^20)`` (eV);
* density ``f(r) = f_e exp(-beta (x - 1)) / (1 + (x - lambda)^20)``;
* embedding energy (eV), in three pieces joined at ``rho_n = 0.85 rho_e`` and
  ``rho_0 = 1.15 rho_e``: ``sum_i F_ni (rho / rho_n - 1)^i`` below ``rho_n``,
  ``sum_i F_i (rho / rho_e - 1)^i`` up to ``rho_0``, and
  ``F_e [1 - eta ln(rho / rho_s)] (rho / rho_s)^eta`` above.

``zhou_tables`` tabulates them, cut at ``cutoff`` (5.5 Angstrom by default, between the fourth
and fifth neighbour shells of fcc copper, where phi and f are 5e-6 and 1.4e-5 of their units),
into a ``setfl`` table (``freeflow.physics.eam_files``). ``zhou_funcfl_test_tables`` writes the
same density and embedding energy as a ``funcfl`` table; a funcfl file stores ``phi = 27.2 *
0.529 Z^2 / r >= 0`` and cannot hold the attractive part of phi, so that file keeps the
repulsive part alone: it exercises the funcfl reader against LAMMPS and models no metal.

The file the named copper systems use, ``systems/Cu_zhou2004.eam.alloy``, is regenerated with::

    python -m freeflow.physics.potentials.eam_analytic systems/Cu_zhou2004.eam.alloy

(``--funcfl`` writes the funcfl test file instead). ``fcc_energy_per_atom`` sums the analytic
functions (untabulated) over the perfect fcc crystal, the reference for the tabulated energies.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

from freeflow.physics.eam_files import EAMTables, as_format, write_eam

#: Zhou, Johnson and Wadley (2004), Table I, copper: lengths in Angstrom, energies in eV.
ZHOU_2004_CU = {
    "r_e": 2.556162, "f_e": 1.554485, "rho_e": 21.175871, "rho_s": 21.175395,
    "alpha": 8.127620, "beta": 4.334731, "A": 0.396620, "B": 0.548085,
    "kappa": 0.308782, "lambda": 0.756515,
    "F_n": (-2.170269, -0.263788, 1.088878, -0.817603),
    "F": (-2.19, 0.0, 0.561830, -2.100595),
    "eta": 0.310490, "F_e": -2.186568,
}

#: Copper's mass (g/mol) and the fcc lattice constant its r_e stands for, sqrt(2) r_e.
CU_MASS = 63.546
CU_ATOMIC_NUMBER = 29

#: Default tabulation: distances 0 .. 5.997 Angstrom in steps of 0.003, densities 0 .. 99.95 in
#: steps of 0.05 (the crystal's rho_e is 21.2), cut at 5.5 Angstrom.
DEFAULT_GRID = {"nr": 2000, "dr": 0.003, "nrho": 2000, "drho": 0.05, "cutoff": 5.5}


def _decay(x, exponent: float, shift: float):
    return np.exp(-exponent * (x - 1.0)) / (1.0 + (x - shift) ** 20)


def zhou_pair(r, p: dict = ZHOU_2004_CU):
    """``phi(r)`` (eV) at distances ``r`` (Angstrom)."""
    x = np.asarray(r, np.float64) / p["r_e"]
    return p["A"] * _decay(x, p["alpha"], p["kappa"]) - p["B"] * _decay(x, p["beta"], p["lambda"])


def zhou_repulsion(r, p: dict = ZHOU_2004_CU):
    """The repulsive part of ``phi``, ``A exp(-alpha (x - 1)) / (1 + (x - kappa)^20)`` (eV)."""
    return p["A"] * _decay(np.asarray(r, np.float64) / p["r_e"], p["alpha"], p["kappa"])


def zhou_density(r, p: dict = ZHOU_2004_CU):
    """``f(r)``, the density one atom gives at distance ``r`` (Angstrom)."""
    return p["f_e"] * _decay(np.asarray(r, np.float64) / p["r_e"], p["beta"], p["lambda"])


def zhou_embedding(rho, p: dict = ZHOU_2004_CU):
    """``F(rho)`` (eV), the three pieces of the module docstring."""
    rho = np.asarray(rho, np.float64)
    rho_n, rho_0 = 0.85 * p["rho_e"], 1.15 * p["rho_e"]
    low = sum(c * (rho / rho_n - 1.0) ** i for i, c in enumerate(p["F_n"]))
    middle = sum(c * (rho / p["rho_e"] - 1.0) ** i for i, c in enumerate(p["F"]))
    scaled = np.maximum(rho, 1e-300) / p["rho_s"]  # the log needs rho > 0; the branch rho >= rho_0
    high = p["F_e"] * (1.0 - p["eta"] * np.log(scaled)) * scaled ** p["eta"]
    return np.where(rho < rho_n, low, np.where(rho < rho_0, middle, high))


def zhou_tables(p: dict = ZHOU_2004_CU, *, element: str = "Cu", mass: float = CU_MASS,
                atomic_number: int = CU_ATOMIC_NUMBER, **grid) -> EAMTables:
    """The analytic functions on LAMMPS's grids as a single-species ``setfl`` table.

    ``grid``: any of ``nr``, ``dr``, ``nrho``, ``drho``, ``cutoff`` (``DEFAULT_GRID``).
    """
    g = {**DEFAULT_GRID, **grid}
    r = np.arange(g["nr"]) * g["dr"]
    rho = np.arange(g["nrho"]) * g["drho"]
    comments = ("Zhou, Johnson and Wadley, Phys. Rev. B 69, 144113 (2004): Cu",
                f"tabulated by freeflow.physics.potentials.eam_analytic, cutoff {g['cutoff']:g} A",
                "units metal (eV, Angstrom)")
    return EAMTables("setfl", element, atomic_number, mass, math.sqrt(2.0) * p["r_e"], "fcc",
                     g["nrho"], g["drho"], g["nr"], g["dr"], g["cutoff"],
                     embedding=zhou_embedding(rho, p), density=zhou_density(r, p),
                     pair=r * zhou_pair(r, p), comments=comments)


def zhou_funcfl_test_tables(p: dict = ZHOU_2004_CU, **grid) -> EAMTables:
    """A ``funcfl`` test table: Zhou's ``F`` and ``f``, and ``phi`` = its repulsive part only.

    Not a model of copper (see the module docstring): a funcfl file cannot store phi < 0.
    """
    setfl = zhou_tables(p, **grid)
    r = np.arange(setfl.nr) * setfl.dr
    repulsive = dataclasses.replace(setfl, pair=r * zhou_repulsion(r, p),
                                    comments=("funcfl test file: Zhou 2004 Cu F and rho, "
                                              "repulsive pair term only (no metal)",))
    return as_format(repulsive, "funcfl")


def fcc_energy_per_atom(lattice_constant: float, cutoff: float = DEFAULT_GRID["cutoff"],
                        p: dict = ZHOU_2004_CU) -> float:
    """Energy per atom (eV) of the perfect fcc crystal, from the analytic functions.

    ``F(sum_j f(r_j)) + 1/2 sum_j phi(r_j)`` over the neighbours ``r_j < cutoff`` of one site.
    """
    n = int(math.ceil(cutoff / lattice_constant)) + 1
    cells = np.arange(-n, n + 1)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.stack(np.meshgrid(cells, cells, cells, indexing="ij"), -1).reshape(-1, 1, 3)
    r = lattice_constant * np.linalg.norm((grid + basis).reshape(-1, 3), axis=1)
    r = r[(r > 0) & (r < cutoff)]
    return float(zhou_embedding(np.sum(zhou_density(r, p)), p) + 0.5 * np.sum(zhou_pair(r, p)))


def fcc_equilibrium(cutoff: float = DEFAULT_GRID["cutoff"], p: dict = ZHOU_2004_CU):
    """``(a0, E0)``: the lattice constant (Angstrom) minimising ``fcc_energy_per_atom`` and the
    energy per atom there (eV; minus the cohesive energy)."""
    from scipy.optimize import minimize_scalar

    guess = math.sqrt(2.0) * p["r_e"]
    found = minimize_scalar(lambda a: fcc_energy_per_atom(a, cutoff, p),
                            bracket=(0.97 * guess, guess, 1.03 * guess),
                            options={"xtol": 1e-12})
    return float(found.x), float(found.fun)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m freeflow.physics.potentials.eam_analytic",
        description="Write Zhou, Johnson and Wadley's (2004) Cu EAM as a LAMMPS setfl file "
                    "(or, with --funcfl, the funcfl test file).")
    parser.add_argument("out", help="path of the file to write")
    parser.add_argument("--funcfl", action="store_true",
                        help="write the funcfl test file (repulsive pair term only)")
    args = parser.parse_args(argv)
    tables = zhou_funcfl_test_tables() if args.funcfl else zhou_tables()
    write_eam(args.out, tables)
    a0, e0 = fcc_equilibrium()
    print(f"wrote {args.out} ({tables.format}); analytic fcc Cu: a0 = {a0:.6f} A, "
          f"E0 = {e0:.6f} eV/atom")


if __name__ == "__main__":
    main()
