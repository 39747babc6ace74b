"""Reports of a temperature sweep (``freeflow sweep``): a table, JSON, CSV and PNG plots of
``F(T)``, ``U(T)``, ``C_v(T)`` and, for two crystals, ``Delta F(T)``. This module owns
``sweep.json``: ``record`` writes its object and ``read`` turns one back into curves, so that
a stored sweep can be compared with another (two polymorphs run as separate jobs)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from freeflow.estimators.curve import Curve, DeltaCurve
from freeflow.physics.units import BAR_PER_ENERGY_PER_CUBIC_ANGSTROM
from freeflow.rundir import read_json

__all__ = ["curves_from_record", "read", "record", "to_csv", "to_png", "to_text"]


def record(curves: list[Curve], delta: DeltaCurve | None = None) -> dict:
    """The JSON object of a sweep: per system its units, counting, one object per
    temperature (``Curve.rows``), the covariance of ``beta F / N`` across temperatures
    (``[K, K]``) and the errors of the differences between neighbouring temperatures; for two
    systems also ``difference`` (B minus A, one object
    per temperature) and ``crossings``."""
    data = {"systems": [{
        "system": c.system, "num_particles": c.num_particles, "counting": c.counting,
        "temperature_unit": c.temperature_unit, "energy_unit": c.energy_unit,
        "entropy_and_heat_capacity": "configurational, in k_B per particle (no kinetic part)",
        "pressure_unit": c.pressure_unit, "bar_per_pressure_unit": c.bar_per_pressure_unit,
        "lattice_multiplicity": c.lattice_multiplicity,
        "route": c.details.get("route", "smc"),
        "smc_particles": c.details.get("smc_particles"), "repeats": c.details.get("repeats"),
        "wall_time": c.details.get("wall_time"), "temperatures": c.rows(),
        "covariance": c.covariance.tolist(),
        "neighbour_difference_stderr": [c.difference_stderr(k, k + 1)
                                        for k in range(len(c.temperatures) - 1)]}
        for c in curves]}
    if delta is not None:
        data["difference"] = {"of": f"{delta.systems[1]} minus {delta.systems[0]}",
                              "temperatures": delta.rows(), "crossings": delta.crossings}
    return data


#: ``Curve`` arrays and the ``Curve.rows`` names they are read back from.
_COLUMNS = ("temperatures", "temperature"), ("beta", "beta"), \
    ("beta_f_per_particle", "beta_f_per_particle"), ("stderr", "stderr"), \
    ("u_per_particle", "u_per_particle"), ("u_stderr", "u_stderr"), \
    ("s_per_particle", "s_per_particle"), ("s_stderr", "s_stderr"), \
    ("cv_per_particle", "cv_per_particle"), ("cv_stderr", "cv_stderr")


def curves_from_record(data: dict, source: str = "the sweep record") -> list[Curve]:
    """The curves of a sweep's JSON object (``record``), one per system, as they were
    written (a ``null``, a value that was not finite, reads back as NaN); ``details`` keeps
    the route, the runs' sizes, the wall time and ``source``.

    A record written before ``lattice_multiplicity`` was part of it gives ``None`` there;
    ``Curve.recounted`` then refuses another counting. Raises ``ValueError`` (naming
    ``source``) for an object that is not a sweep's.
    """
    systems = data.get("systems") if isinstance(data, dict) else None
    if not isinstance(systems, list) or not systems:
        raise ValueError(f"{source} is not a sweep.json of freeflow sweep (no 'systems')")
    curves = []
    for s in systems:
        try:
            curves.append(_curve_from_system(s, source))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"{source}: a system's record is incomplete or malformed "
                             f"({type(error).__name__}: {error}); give a sweep.json written "
                             "by freeflow sweep") from None
    return curves


def _curve_from_system(s: dict, source: str) -> Curve:
    rows = s["temperatures"]
    arrays = {field: _numbers(r[name] for r in rows) for field, name in _COLUMNS}
    if "pressure" in rows[0]:
        arrays |= {"pressure": _numbers(r["pressure"] for r in rows),
                   "pressure_stderr": _numbers(r["pressure_stderr"] for r in rows)}
    covariance = np.array([_numbers(line) for line in s["covariance"]]).reshape(
        len(s["covariance"]), -1)
    if covariance.shape != (len(rows), len(rows)):
        raise ValueError(f"{s['system']}'s covariance is {covariance.shape[0]} x "
                         f"{covariance.shape[1]}, not {len(rows)} x {len(rows)}")
    multiplicity = s.get("lattice_multiplicity")
    return Curve(
        system=s["system"], num_particles=int(s["num_particles"]), **arrays,
        covariance=covariance, temperature_unit=s["temperature_unit"],
        energy_unit=s["energy_unit"], counting=s["counting"],
        lattice_multiplicity=None if multiplicity is None else int(multiplicity),
        pressure_unit=s.get("pressure_unit"), bar_per_pressure_unit=_bar_per_pressure_unit(s),
        details={"route": s.get("route"), "smc_particles": s.get("smc_particles"),
                 "repeats": s.get("repeats"), "wall_time": s.get("wall_time"),
                 "read_from": source})


def _numbers(values) -> np.ndarray:
    """Floats from JSON numbers; ``null`` (how a sweep writes a value that is not finite)
    as NaN."""
    return np.array([np.nan if v is None else float(v) for v in values], np.float64)


def _bar_per_pressure_unit(system: dict) -> float | None:
    """The record's factor or, in a record from before it was written, the one of its units
    (``freeflow.physics.units``)."""
    if system.get("bar_per_pressure_unit") is not None:
        return float(system["bar_per_pressure_unit"])
    if system.get("pressure_unit") == f"{system['energy_unit']}/Angstrom^3":
        return BAR_PER_ENERGY_PER_CUBIC_ANGSTROM.get(system["energy_unit"])
    return None


def read(path: str | os.PathLike) -> list[Curve]:
    """The curves of a stored ``sweep.json`` (``curves_from_record``)."""
    what = "a sweep.json written by freeflow sweep"
    return curves_from_record(read_json(path, what), str(path))


def to_text(curves: list[Curve], delta: DeltaCurve | None = None) -> str:
    """A fixed-width table per system (and of the difference), one line per temperature."""
    lines = []
    for c in curves:
        e, t = c.energy_unit, c.temperature_unit
        lines.append(f"{c.system} (N = {c.num_particles}, {c.counting} counting; S and C_v "
                     f"configurational, in k_B)")
        # Pressure in bar where the units are physical, else in energy / length^3.
        bar = c.bar_per_pressure_unit is not None
        p_key = "pressure_bar" if bar else "pressure"
        p_head = "P/bar" if bar else f"P/{c.pressure_unit}" if c.pressure_unit else ""
        lines.append(f"{'T/' + t:>10} {'beta F/N':>12} {'+-':>9} {'F/N/' + e:>12} "
                     f"{'U/N/' + e:>12} {'+-':>9} {'S/N':>9} {'+-':>8} {'C_v/N':>8} "
                     f"{'+-':>7}" + (f" {p_head:>11} {'+-':>8}" if p_head else ""))
        for r in c.rows():
            pressure = (f" {r[p_key]:11.5g} {r[p_key + '_stderr']:8.2g}"
                        if p_key in r else "")
            lines.append(f"{r['temperature']:10.4g} {r['beta_f_per_particle']:12.6f} "
                         f"{r['stderr']:9.6f} {r['f_per_particle']:12.6g} "
                         f"{r['u_per_particle']:12.6g} {r['u_stderr']:9.2g} "
                         f"{r['s_per_particle']:9.5f} {r['s_stderr']:8.5f} "
                         f"{r['cv_per_particle']:8.4f} {r['cv_stderr']:7.4f}" + pressure)
        lines.append("")
    if delta is not None:
        a, b = delta.systems
        lines.append(f"{b} minus {a}: beta Delta F / N")
        for r in delta.rows():
            lines.append(f"{r['temperature']:10.4g} {r['delta_beta_f_per_particle']:12.6f} "
                         f"+- {r['stderr']:.6f}")
        for x in delta.crossings:
            lines.append(f"crossing at T = {x['temperature']:.4g} +- {x['stderr']:.2g} "
                         f"{delta.temperature_unit} (between {x['between'][0]:g} and "
                         f"{x['between'][1]:g})")
        if not delta.crossings:
            lines.append("no crossing in this range")
    return "\n".join(lines) + "\n"


def to_csv(curves: list[Curve], path: str | os.PathLike,
           delta: DeltaCurve | None = None) -> Path:
    """One row per system and temperature (``Curve.rows`` columns), plus the difference's
    rows (system ``B-A``) where given."""
    path = Path(path)
    rows = [{"system": c.system, **row} for c in curves for row in c.rows()]
    if delta is not None:
        rows += [{"system": f"{delta.systems[1]}-{delta.systems[0]}",
                  "temperature": r["temperature"],
                  "beta_f_per_particle": r["delta_beta_f_per_particle"], "stderr": r["stderr"],
                  "f_per_particle": r["delta_f_per_particle"], "f_stderr": r["delta_f_stderr"]}
                 for r in delta.rows()]
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def to_png(curves: list[Curve], out: str | os.PathLike,
           delta: DeltaCurve | None = None) -> list[Path]:
    """``sweep_f.png``, ``sweep_u.png``, ``sweep_cv.png`` (each system with one-sigma error
    bars) and, for two systems, ``sweep_delta_f.png``, in ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    panels = (("sweep_f.png", "f_per_particle", "f_stderr", "F / N ({e})"),
              ("sweep_u.png", "u_per_particle", "u_stderr", "U / N ({e})"),
              ("sweep_cv.png", "cv_per_particle", "cv_stderr",
               "configurational C_v / N (k_B)"))
    written = []
    for name, value, error, label in panels:
        fig, ax = plt.subplots(figsize=(6, 4))
        for c in curves:
            rows = c.rows()
            ax.errorbar([r["temperature"] for r in rows], [r[value] for r in rows],
                        yerr=[r[error] for r in rows], fmt="o-", capsize=3, label=c.system)
        ax.set_xlabel(f"T ({curves[0].temperature_unit})")
        ax.set_ylabel(label.format(e=curves[0].energy_unit))
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(out / name)
    if delta is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar(delta.temperatures, delta.delta_beta_f_per_particle, yerr=delta.stderr,
                    fmt="o-", capsize=3)
        ax.axhline(0.0, color="grey", lw=0.8)
        for x in delta.crossings:
            ax.axvspan(x["temperature"] - x["stderr"], x["temperature"] + x["stderr"],
                       color="C1", alpha=0.3)
        ax.set_xlabel(f"T ({delta.temperature_unit})")
        ax.set_ylabel(f"beta (F[{delta.systems[1]}] - F[{delta.systems[0]}]) / N")
        fig.tight_layout()
        fig.savefig(out / "sweep_delta_f.png", dpi=120)
        plt.close(fig)
        written.append(out / "sweep_delta_f.png")
    return written
