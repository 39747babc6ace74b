"""The thermodynamic limit of stored results (``freeflow limit``): which rows make one crystal,
the fit of each crystal, the difference of two crystals' limits, as a table or JSON."""

from __future__ import annotations

import re
from pathlib import Path

from freeflow.estimators.finite_size import (ThermodynamicLimit, limit_difference,
                                             thermodynamic_limit)
from freeflow.estimators.result import FreeEnergy
from freeflow.physics.system import System
from freeflow.physics.system_files import load_named_system, load_system, named_systems
from freeflow.physics.identity import crystal_identity, describe_system
from freeflow.reports.formatting import format_value_error
from freeflow.reports.tables import RESULT_FILES, read_results
from freeflow.rundir import read_baseline

__all__ = ["LIMIT_METHODS", "crystals_from_results", "limits", "record", "to_text"]

#: Stored result files a limit can be fitted to, by method.
LIMIT_METHODS = {"smc": "smc", "mbar": "baseline"}
_SIZE_SUFFIX = re.compile(r"_(\d+)$")
#: Below this many particles the fit's left-out terms are of the order of 1e-4
#: (bench/suite/finite_size_form.py).
SMALL_SIZE = 100


def _stored(results_dir, method: str, counting: str) -> dict[str, FreeEnergy]:
    column = LIMIT_METHODS[method]
    path = read_results(results_dir)[column]
    if path is None:
        raise ValueError(f"{results_dir} has no {method} results "
                         f"({Path(results_dir) / RESULT_FILES[column]})")
    return read_baseline(path, counting=counting, method=method)


def crystals_from_results(crystals: list[str], results_dir, method: str = "smc",
                          counting: str = "bravais", min_particles: int = 2
                          ) -> dict[str, list[FreeEnergy]]:
    """``{crystal: results by size}`` from a results directory (``freeflow table --results``).

    Each entry of ``crystals`` is a name prefix (``mw_cubic``), which selects every stored
    row named ``PREFIX_N``; a system's name (``mw_cubic_216``) or system file, whose row
    joins the crystal named without its ``_N``. Every selected system is loaded and must be
    the same crystal at the same state point as the others of its crystal
    (``crystal_identity``), and each row must be of its system's size. Prefixes skip rows
    of fewer than ``min_particles`` particles.
    """
    stored = _stored(results_dir, method, counting)
    chosen: dict[str, dict[str, System | None]] = {}
    for entry in crystals:
        system = load_system(entry) if entry.endswith(".toml") else None
        name = system.name if system is not None else entry
        if name in stored:
            match = _SIZE_SUFFIX.search(name)
            chosen.setdefault(name[:match.start()] if match else name, {})[name] = system
            continue
        if system is not None:
            raise ValueError(f"no {method} result in {results_dir} is named {name} "
                             f"(the name in {entry})")
        names = [n for n in stored if n.startswith(entry + "_")
                 and _SIZE_SUFFIX.fullmatch(n[len(entry):])]
        if not names:
            raise ValueError(f"no {method} result in {results_dir} is named {entry} or "
                             f"{entry}_N; stored: {', '.join(sorted(stored)) or 'none'}")
        names = [n for n in names if stored[n].details["num_particles"] >= min_particles]
        if not names:
            raise ValueError(f"{entry}: no stored size has {min_particles} particles or more")
        for n in names:
            chosen.setdefault(entry, {}).setdefault(n, None)
    out = {}
    for crystal, systems in chosen.items():
        names = sorted(systems, key=lambda n: stored[n].details["num_particles"])
        if len(names) < 2:
            raise ValueError(f"{crystal}: the limit needs results at two sizes or more; "
                             f"{method} results hold only {names[0]}")
        loaded = [systems[n] or _loaded(crystal, n) for n in names]
        for name, system in zip(names, loaded):
            if stored[name].details["num_particles"] != system.num_particles:
                raise ValueError(f"{crystal}: the {method} row of {name} is for N = "
                                 f"{stored[name].details['num_particles']}, but the system "
                                 f"has {system.num_particles} particles")
        _check_one_crystal(crystal, loaded)
        out[crystal] = [stored[name] for name in names]
    return out


def _loaded(crystal: str, name: str) -> System:
    """The named system ``name`` (never a file or folder of that name in the working
    directory)."""
    if name not in named_systems():
        raise ValueError(f"{crystal}: {name} is no named system, so it cannot be checked to "
                         f"be the same crystal as the others; give its .toml file")
    return load_named_system(name)


def _check_one_crystal(crystal: str, systems: list[System]) -> None:
    first = crystal_identity(systems[0])
    for system in systems[1:]:
        if crystal_identity(system) != first:
            raise ValueError(f"{crystal}: {describe_system(system)} is not the crystal of "
                             f"{describe_system(systems[0])} at another size; fit one "
                             "crystal at one state point")


def limits(crystals: dict[str, list[FreeEnergy]], fit_log_coefficient: bool = False
           ) -> dict[str, ThermodynamicLimit]:
    """The fit of each crystal's results (``thermodynamic_limit``)."""
    return {crystal: thermodynamic_limit(results, fit_log_coefficient=fit_log_coefficient,
                                         system=crystal)
            for crystal, results in crystals.items()}


def record(fits: dict[str, ThermodynamicLimit], method: str) -> dict:
    """The JSON object: one object per crystal (``ThermodynamicLimit.to_dict``, with the
    systems fitted) and, for two crystals, ``difference`` (the second minus the first)."""
    data = {"method": method,
            "crystals": [fit.to_dict() for fit in fits.values()]}
    if len(fits) == 2:
        a, b = fits.values()
        value, stderr = limit_difference(a, b)
        data["difference"] = {"of": f"{b.system} minus {a.system}",
                              "beta_delta_f_limit": value, "stderr": stderr}
    return data


def to_text(fits: dict[str, ThermodynamicLimit], method: str) -> str:
    """A table per crystal (each size's value, the fit there and the residual), its limit
    and fit quality, and for two crystals the difference of their limits."""
    lines = []
    for fit in fits.values():
        held = ("a = -1/2 (held)" if fit.log_coefficient_stderr is None else
                f"a = {format_value_error(fit.log_coefficient, fit.log_coefficient_stderr, 2)}"
                " (fitted)")
        lines.append(f"{fit.system} ({method}, {fit.counting} counting): "
                     f"beta F / N = beta f + a ln(N) / N + b / N, {held}")
        lines.append(f"{'N':>8} {'beta F / N':>18} {'fit':>12} {'(value - fit) / stderr':>23}")
        for n, v, e, r in zip(fit.num_particles, fit.values, fit.stderrs, fit.residuals):
            lines.append(f"{n:8d} {format_value_error(v, e, 2):>18} {fit.at(n):12.6f} "
                         f"{r:+23.1f}")
        quality = (f"chi2 = {fit.chi2:.2f} on {fit.dof} dof, p = {fit.p_value:.2g}"
                   if fit.p_value is not None else
                   "0 dof: the fit passes through every value and checks nothing")
        b = format_value_error(fit.inverse_coefficient, fit.inverse_coefficient_stderr, 2)
        lines.append(f"  limit: beta f = {format_value_error(fit.value, fit.stderr, 2)}; "
                     f"b = {b}; {quality}")
        if min(fit.num_particles) < SMALL_SIZE:
            lines.append(f"  note: below about {SMALL_SIZE} particles the form's left-out "
                         "N^(-5/3) terms can reach 1e-4 (docs/sweep.md); --min-particles "
                         "leaves such sizes out")
        if fit.poor_fit:
            lines.append("  warning: the form does not describe these values within their "
                         "errors; drop the smallest size or add a larger one")
        lines.append("")
    if len(fits) == 2:
        a, b = fits.values()
        value, stderr = limit_difference(a, b)
        lines.append(f"{b.system} minus {a.system} in the limit: beta (f_B - f_A) = "
                     f"{format_value_error(value, stderr, 2)}")
    return "\n".join(lines).rstrip("\n") + "\n"
