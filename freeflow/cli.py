"""The ``freeflow`` command line."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _systems(args) -> int:
    from tqdm import tqdm

    from freeflow.system import load_system, named_systems

    rows = []
    for name in tqdm(named_systems(), desc="lattice energies", unit="system", file=sys.stderr,
                     disable=None):
        system = load_system(name)
        summary = system.summary()
        u = system.lattice_energy() / system.num_particles
        summary.update(lattice=system.definition["lattice"]["kind"], energy_per_particle=u,
                       beta_energy_per_particle=system.beta * u)
        rows.append(summary)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("system", "potential", "lattice", "N", "T", "density", "box", "beta", "U/N",
              "beta U/N")
    table = [header]
    for r in rows:
        table.append((r["system"], r["potential"], r["lattice"], str(r["num_particles"]),
                      f"{r['temperature']:g} {r['temperature_unit']}",
                      f"{r['number_density']:.6g}/{r['length_unit']}^3",
                      " x ".join(f"{b:.4f}" for b in r["box"]),
                      f"{r['beta']:.5f}",
                      f"{r['energy_per_particle']:.5f} {r['energy_unit']}",
                      f"{r['beta_energy_per_particle']:.5f}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _energy(args) -> int:
    import jax.numpy as jnp

    from freeflow.system import load_system, system_from_atoms

    system = load_system(args.system)
    if args.structure:
        target = system_from_atoms(args.structure, system.potential, system.temperature)
        positions = target.atoms.positions
    else:
        target, positions = system, system.lattice
    energy = float(target.energy(jnp.asarray(positions, jnp.float32)))
    n = target.num_particles
    result = {
        "system": system.name,
        "structure": args.structure or "perfect lattice",
        "num_particles": n,
        "energy_per_particle": energy / n,
        "beta_energy_per_particle": system.beta * energy / n,
        "energy_unit": system.units.energy,
        "beta": system.beta,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{system.name} ({result['structure']}, N = {n}, beta = {system.beta:.6g}):")
        print(f"  U/N      = {energy / n:.6f} {system.units.energy}")
        print(f"  beta U/N = {system.beta * energy / n:.6f}")
    return 0 if np.isfinite(energy) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freeflow",
        description="Free energies of atomic solids with normalizing flows.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    p = commands.add_parser("systems", help="table of the named systems and their lattice "
                                            "energies")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_systems)

    p = commands.add_parser("energy", help="U/N and beta U/N of the perfect lattice or of a "
                                           "structure file")
    p.add_argument("system", help="a named system (see 'freeflow systems') or a .toml file")
    p.add_argument("--structure", metavar="FILE",
                   help="any file ase.io.read understands; its own orthorhombic cell is used")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_energy)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"freeflow {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"freeflow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
