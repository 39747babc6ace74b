"""What ``freeflow compare`` prints and writes: one row per route, as text, CSV and PNG.

Formats only: the rows are ``freeflow.workflows.compare.Comparison.rows()``, plain dicts
(``route``, ``label``, ``beta_f_per_particle``, ``stderr``, ``effective_samples``,
``wall_time``, ``energy_evaluations``, ``sigmas_from_mbar``, ``sigmas_from_published``,
``trustworthy``, ``untrustworthy_because``); ``published`` is ``(value, stderr)`` or ``None``. A route whose value cannot be
trusted (``FreeEnergy.untrustworthy_because``) is shown as such: its value cell says
"not trustworthy" and a note gives the reasons; the JSON and CSV keep its numbers with
``trustworthy`` false beside them.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from freeflow.reports.formatting import format_count, format_duration, format_value_error

__all__ = ["to_text", "to_csv", "to_png"]


def _sigma_cell(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.1f}"


def to_text(system: str, rows: list[dict], published: tuple | None,
            unfinished: tuple = ()) -> str:
    """The comparison's ``rows`` as an aligned text table with notes; ``unfinished``: the
    routes not yet run."""
    header = ("route", "beta F / N", "eff. samples", "wall time", "energy evals",
              "vs MBAR (sigma)", "vs published (sigma)")
    table, notes = [header], []
    for row in rows:
        value = format_value_error(row["beta_f_per_particle"], row["stderr"])
        if not row["trustworthy"]:
            notes.append(f"{row['route']}: {value} is not trustworthy: "
                         f"{'; '.join(row['untrustworthy_because'])}")
            value = "not trustworthy"
        effective = row["effective_samples"]
        table.append((f"{row['route']}  {row['label']}", value,
                      "-" if effective is None else f"{effective:.0f}",
                      format_duration(row["wall_time"]),
                      format_count(row["energy_evaluations"]),
                      _sigma_cell(row["sigmas_from_mbar"] if row["trustworthy"] else None),
                      _sigma_cell(row["sigmas_from_published"] if row["trustworthy"]
                                  else None)))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for k, r in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    title = f"{system}: beta F / N by every route (standard errors in brackets)"
    if published is not None:
        title += f"; published MBAR {format_value_error(*published)}"
    if unfinished:
        notes.append(f"not finished: {', '.join(unfinished)} (run the same command to "
                     "continue)")
    notes.append("the flow's wall times include its training; LBAR's also its target samples")
    return "\n".join([title, "", *lines, "", *notes]) + "\n"


def to_csv(rows: list[dict], path: str | os.PathLike) -> Path:
    """The comparison's ``rows`` as CSV at ``path`` (the reasons joined by "; ")."""
    path = Path(path)
    fields = list(rows[0]) if rows else ["system", "route"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(row, untrustworthy_because="; ".join(
                row["untrustworthy_because"])))
    return path


def to_png(system: str, rows: list[dict], published: tuple | None,
           path: str | os.PathLike) -> Path:
    """Each route's value with its standard error bar (hollow where not trustworthy), MBAR's
    one-sigma band and the published value."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(rows) + 1.8))
    for y, row in enumerate(rows):
        face = "C0" if row["trustworthy"] else "none"
        ax.errorbar(row["beta_f_per_particle"], y, xerr=row["stderr"], fmt="o", color="C0",
                    mfc=face, capsize=3)
    mbar = next((row for row in rows if row["route"] == "mbar"), None)
    if mbar is not None:
        value, stderr = mbar["beta_f_per_particle"], mbar["stderr"]
        ax.axvspan(value - stderr, value + stderr, color="C0", alpha=0.15,
                   label="MBAR +- 1 sigma")
    if published is not None:
        ax.axvline(published[0], color="C3", ls="--", label="published")
    ax.set_yticks(range(len(rows)), [row["label"] for row in rows])
    ax.invert_yaxis()
    ax.set_xlabel("beta F / N")
    # Values agree to 1e-4 of 25: plain numbers, few ticks, no offset label.
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.set_title(system)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
