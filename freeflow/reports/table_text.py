"""The published table as text: Markdown (with agreement marks and the ice Ih - Ic
differences) and CSV, from ``freeflow.reports.tables.Row`` objects."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Sequence

from freeflow.estimators.result import MIN_EFFECTIVE_SAMPLES, FreeEnergy
from freeflow.reports.formatting import format_count, format_duration, format_value_error
from freeflow.reports.tables import METHODS, Row

__all__ = ["agree_within", "ice_differences", "to_csv", "to_markdown"]


def _pair(x) -> tuple[float, float]:
    if hasattr(x, "value") and hasattr(x, "stderr"):
        return float(x.value), float(x.stderr)
    value, stderr = x
    return float(value), float(stderr)


def agree_within(a, b, sigmas: float = 3.0) -> bool:
    """Whether two independent estimates agree: ``|a - b| <= sigmas * sqrt(s_a^2 + s_b^2)``.

    ``a`` and ``b`` are ``(value, stderr)`` pairs or objects with ``.value`` and ``.stderr``
    (``FreeEnergy``). Anything NaN never agrees.
    """
    (va, sa), (vb, sb) = _pair(a), _pair(b)
    if any(math.isnan(v) for v in (va, sa, vb, sb)):
        return False
    return abs(va - vb) <= sigmas * math.hypot(sa, sb)


def _deviation(a: FreeEnergy | None, b: FreeEnergy | None) -> float | None:
    """``(a - b) / sqrt(s_a^2 + s_b^2)``, or ``None`` if either is missing."""
    if a is None or b is None:
        return None
    scale = math.hypot(a.stderr, b.stderr)
    if not scale > 0:
        return math.nan
    return (a.value - b.value) / scale


def ice_differences(rows: Sequence[Row]) -> dict[int, dict[str, tuple[float, float]]]:
    """``{N: {method: (value, stderr)}}`` of ``beta (F_Ih - F_Ic) / N`` for every N at which
    the rows hold both ``mw_cubic_N`` and ``mw_hex_N`` by that method."""
    by_name = {row.system: row for row in rows}
    out = {}
    for row in rows:
        if not row.system.startswith("mw_cubic_"):
            continue
        n = row.system.removeprefix("mw_cubic_")
        hexagonal = by_name.get(f"mw_hex_{n}")
        if hexagonal is None:
            continue
        pairs = {}
        for method in METHODS:
            ic, ih = row.entry(method), hexagonal.entry(method)
            if ic is not None and ih is not None:
                pairs[method] = (ih.value - ic.value, math.hypot(ih.stderr, ic.stderr))
        if pairs:
            out[int(n)] = pairs
    return out


def _effective_samples(entry) -> float | None:
    if entry is None or entry.ess is None or not entry.num_samples:
        return None
    return entry.ess * entry.num_samples


def to_markdown(rows: Sequence[Row], sigmas: float = 3.0) -> str:
    """A Markdown table: values with errors, the LFEP ESS, each method's wall time and energy
    evaluations, and the deviation of LFEP and LBAR from MBAR in combined standard errors
    (marked ``!`` beyond ``sigmas``); then ``beta (F_Ih - F_Ic) / N`` per N where both ices are
    present, and the rows' notes (why a cell is empty) as a list."""
    header = ["system", "N", "LFEP", "ESS", "LBAR", "SMC", "MBAR",
              "LFEP time", "LFEP evals", "LBAR time", "LBAR evals", "SMC time", "SMC evals",
              "MBAR time", "MBAR evals", "vs MBAR (sigma)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for row in rows:
        cells = [f"`{row.system}`", str(row.num_particles)]
        e = row.lfep
        cells.append(format_value_error(e.value, e.stderr) if e else "-")
        cells.append(f"{100 * e.ess:.2g}%" if e and e.ess is not None else "-")
        for method in ("lbar", "smc", "mbar"):
            e = row.entry(method)
            cells.append(format_value_error(e.value, e.stderr) if e else "-")
        for method in METHODS:
            e = row.entry(method)
            cells.append(format_duration(e.wall_time) if e else "-")
            cells.append(format_count(e.energy_evaluations) if e else "-")
        deviations = []
        for method in ("lfep", "lbar", "smc"):
            d = _deviation(row.entry(method), row.mbar)
            if d is not None:
                flag = " !" if not abs(d) <= sigmas else ""
                deviations.append(f"{method.upper()} {d:+.1f}{flag}")
        cells.append(", ".join(deviations) or "-")
        lines.append("| " + " | ".join(cells) + " |")
        notes.extend(f"`{row.system}`: {note}" for note in row.notes)
        effective = _effective_samples(row.lfep)
        if effective is not None and effective < MIN_EFFECTIVE_SAMPLES:
            notes.append(f"`{row.system}`: LFEP rests on {effective:.0f} effective samples "
                         f"(fewer than {MIN_EFFECTIVE_SAMPLES}), so its value and error bar "
                         "are not trustworthy; LBAR or SMC is the estimate of that row")
    text = "\n".join(lines) + "\n"
    text += ("\nValues are beta F / N with the standard error in the last digit. Costs of LFEP "
             "and LBAR include training; LBAR's exclude the reference samples. SMC anneals "
             "from the start its row's details name (a base, or a trained flow). "
             f"'!' marks a deviation from MBAR beyond {sigmas:g} combined standard errors.\n")
    differences = ice_differences(rows)
    if differences:
        text += ("\nbeta (F_Ih - F_Ic) / N (ice Ih minus ice Ic at the same N, errors added in "
                 "quadrature):\n\n| N | " + " | ".join(m.upper() for m in METHODS) + " |\n|"
                 + "---|" * (len(METHODS) + 1) + "\n")
        for n, by_method in differences.items():
            cells = [format_value_error(*by_method[m]) if m in by_method else "-"
                     for m in METHODS]
            text += f"| {n} | " + " | ".join(cells) + " |\n"
    if notes:
        text += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return text


_CSV_FIELDS = ("value", "stderr", "formatted", "ess", "wall_time", "energy_evaluations",
               "num_samples")


def to_csv(rows: Sequence[Row], path: str | os.PathLike) -> Path:
    """Write the rows as CSV (full precision, one column per method and field, empty where
    missing) and return the path. Columns: ``system, num_particles``, then for each of
    lfep, lbar, mbar: ``<method>_value, _stderr, _formatted, _ess, _wall_time,
    _energy_evaluations, _num_samples``, and ``notes``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["system", "num_particles"] + [f"{m}_{f}" for m in METHODS for f in _CSV_FIELDS]
    columns.append("notes")
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            cells: list[Any] = [row.system, row.num_particles]
            for method in METHODS:
                e = row.entry(method)
                for field in _CSV_FIELDS:
                    if e is None:
                        cells.append("")
                    elif field == "formatted":
                        cells.append(format_value_error(e.value, e.stderr))
                    else:
                        v = getattr(e, field)
                        cells.append("" if v is None else repr(v) if isinstance(v, float)
                                     else v)
            cells.append("; ".join(row.notes))
            writer.writerow(cells)
    return path
