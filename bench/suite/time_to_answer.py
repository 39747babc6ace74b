"""Time to answer: wall time and energy evaluations to reach a target stderr of beta F / N.

Measures nothing itself: it reads the stored runs of the table scripts and scales each one's
cost to the targets 1e-3 and 2e-4 with the Monte Carlo law stderr ~ 1 / sqrt(samples):
cost(target) = cost(measured) * (stderr / target)^2. The inputs, the latest row per system and
route:

* MBAR: ``freeflow/data/results/baseline.jsonl`` (``bench/table/baseline.py``);
* the flow's LFEP: ``bench/results/train_cpu.jsonl`` and ``train_cpu_64.jsonl``
  (``bench/table/train_cpu.py``); training is a fixed cost, LFEP sampling scales;
* SMC: ``freeflow/data/results/smc.jsonl`` (``bench/table/smc.py``); ``smc_base`` rows anneal
  from a base with no training, ``smc_flow`` rows from a trained run whose training is added as
  a fixed cost;
* LBAR: ``freeflow/data/results/flows.jsonl`` (``bench/table/flow_estimates.py``); training is
  fixed, the flow samples and the HMC target samples scale together.

Each row is an extrapolation from one measured run, labelled as such. It ignores the fixed
costs of sampling (compilation, warm-up), so it flatters every route at a target looser than
the measurement. An LFEP row whose run had fewer than 100 effective samples is reported as
unreliable: its bootstrap error cannot be trusted, so neither can an extrapolation from it.

One JSON line per system, route and target on stdout, a summary on stderr, and with
``--markdown`` the table that docs/benchmarks.md shows. ``bash bench/suite/run_all`` runs it
for every system of the table into ``bench/results/suite/time_to_answer.{jsonl,txt,md}``:

    python bench/suite/time_to_answer.py --markdown bench/results/suite/time_to_answer.md \\
        --systems lj_32 mw_cubic_8 mw_cubic_64 mw_hex_64 mw_cubic_216 mw_hex_216 lj_256 \\
        mw_cubic_512 mw_hex_512 lj_500
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TARGETS = (1e-3, 2e-4)


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.strip().startswith("{")]


def _latest(rows, system, **match):
    found = [r for r in rows if r.get("system") == system
             and all(r.get(k) == v for k, v in match.items())]
    return found[-1] if found else None


def mbar_rows(row: dict) -> list[dict]:
    # A run extended over several sessions reports the sampling time of all of its states;
    # its wall_time is only the last session's.
    wall = row.get("sampling_wall_time", row["wall_time"])
    out = []
    for target in TARGETS:
        scale = (row["stderr"] / target) ** 2
        out.append({"bench": "time_to_answer", "system": row["system"], "method": "mbar",
                    "target_stderr": target, "measured_stderr": row["stderr"],
                    "wall_s": wall * scale,
                    "energy_evaluations": row["energy_evaluations"] * scale,
                    "extrapolated": abs(scale - 1.0) > 0.05, "reliable": True})
    return out


def flow_rows(row: dict) -> list[dict]:
    from freeflow.training.config import presets

    # Every training step evaluates the (softened) energy once per configuration of the batch.
    training_evaluations = row["steps"] * presets(row.get("preset", "cpu"))[1].batch_size
    effective = row["ess"] * row["lfep_samples"]
    out = []
    for target in TARGETS:
        scale = (row["stderr"] / target) ** 2
        out.append({"bench": "time_to_answer", "system": row["system"], "method": "flow_lfep",
                    "target_stderr": target, "measured_stderr": row["stderr"],
                    "effective_samples": effective,
                    "train_s": row["train_s"],
                    "wall_s": row["train_s"] + row["lfep_s"] * scale,
                    "training_energy_evaluations": training_evaluations,
                    "energy_evaluations": training_evaluations + row["lfep_samples"] * scale,
                    "extrapolated": True, "reliable": effective >= 100})
    return out


def smc_rows(row: dict) -> list[dict]:
    """SMC from a base (sampling only) or from a trained flow (its training added, fixed)."""
    from_flow = not str(row.get("start", "")).startswith("base:")
    train_s = row.get("training_wall_time", 0.0) if from_flow else 0.0
    train_evals = row.get("training_energy_evaluations", 0) if from_flow else 0
    out = []
    for target in TARGETS:
        scale = (row["stderr"] / target) ** 2
        out.append({"bench": "time_to_answer", "system": row["system"],
                    "method": "smc_flow" if from_flow else "smc_base",
                    "start": row.get("start"), "target_stderr": target,
                    "measured_stderr": row["stderr"], "train_s": train_s,
                    "wall_s": train_s + row["sampling_wall_time"] * scale,
                    "training_energy_evaluations": train_evals,
                    "energy_evaluations": train_evals + row["energy_evaluations"] * scale,
                    "extrapolated": abs(scale - 1.0) > 0.05,
                    "reliable": not from_flow or "training_wall_time" in row})
    return out


def lbar_rows(row: dict) -> list[dict]:
    """LBAR of ``bench/table/flow_estimates.py``: its training fixed, its flow samples and HMC target
    samples scaled together."""
    sampling_s = row["estimate_wall_time"] + row["target_wall_time_this_call"]
    sampling_evals = (row["estimate_energy_evaluations"]
                      + row["target_energy_evaluations_this_call"])
    out = []
    for target in TARGETS:
        scale = (row["stderr"] / target) ** 2
        out.append({"bench": "time_to_answer", "system": row["system"], "method": "flow_lbar",
                    "target_stderr": target, "measured_stderr": row["stderr"],
                    "train_s": row["train_wall_time"],
                    "wall_s": row["train_wall_time"] + sampling_s * scale,
                    "training_energy_evaluations": row["train_energy_evaluations"],
                    "energy_evaluations": row["train_energy_evaluations"]
                    + sampling_evals * scale,
                    "extrapolated": abs(scale - 1.0) > 0.05,
                    # A target sample file continued from an earlier call: its cost is partial.
                    "reliable": not row.get("target_continued")})
    return out


def _caveat(row: dict) -> str:
    """Why a row's cost cannot be trusted, or '' when it can."""
    if row["reliable"]:
        return ""
    if row["method"] == "flow_lfep":
        return (f"UNRELIABLE: only {row['effective_samples']:.0f} effective samples "
                "in the measured run")
    if row["method"] == "flow_lbar":
        return "target sampling continued from an earlier call: its cost is partial"
    return "training cost unknown (the SMC row predates its recording)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=Path("freeflow/data/results/baseline.jsonl"))
    parser.add_argument("--flow", type=Path, nargs="+",
                        default=[Path("bench/results/train_cpu.jsonl"),
                                 Path("bench/results/train_cpu_64.jsonl")],
                        help="bench/table/train_cpu.py results (the latest row per system)")
    parser.add_argument("--smc", type=Path, default=Path("freeflow/data/results/smc.jsonl"),
                        help="bench/table/smc.py results (the latest row per system and start)")
    parser.add_argument("--flows", type=Path,
                        default=Path("freeflow/data/results/flows.jsonl"),
                        help="bench/table/flow_estimates.py results (the latest LBAR row "
                             "per system)")
    parser.add_argument("--systems", nargs="+", default=["lj_32", "mw_cubic_64"])
    parser.add_argument("--markdown", type=Path,
                        help="also write a Markdown table (one line per system and method) "
                             "to this file")
    args = parser.parse_args(argv)
    baseline = _rows(args.baseline)
    flow = [row for path in args.flow for row in _rows(path)]
    smc = [row for row in _rows(args.smc) if "system" in row]
    lbar = [row for row in _rows(args.flows) if row.get("method") == "lbar"]
    print(f"{'system':<13}{'method':<11}{'target':>8}{'wall (h)':>10}{'energy evals':>15}  note",
          file=sys.stderr)
    table = []
    for system in args.systems:
        rows = []
        b = _latest(baseline, system, quick=False)
        rows += mbar_rows(b) if b else []
        f = _latest(flow, system)
        rows += flow_rows(f) if f else []
        stored = _latest(lbar, system)
        rows += lbar_rows(stored) if stored else []
        starts = dict.fromkeys(r["start"] for r in smc if r["system"] == system)
        for start in starts:
            rows += smc_rows(_latest(smc, system, start=start))
        if not rows:
            print(f"{system:<13}(no measured run in {args.baseline}, "
                  f"{', '.join(map(str, args.flow))}, {args.flows} or {args.smc})",
                  file=sys.stderr)
        table += rows
        for r in rows:
            print(json.dumps(r))
            note = _caveat(r) or ("extrapolated" if r["extrapolated"] else "measured")
            print(f"{system:<13}{r['method']:<11}{r['target_stderr']:>8.0e}"
                  f"{r['wall_s'] / 3600:>10.2f}{r['energy_evaluations']:>15.3g}  {note}",
                  file=sys.stderr)
        if not f:
            print(f"{system:<13}flow_lfep  (no trained run measured)", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(markdown(table) + "\n")


LABELS = {"mbar": "MBAR", "flow_lfep": "flow (LFEP)", "flow_lbar": "flow (LBAR)",
          "smc_base": "SMC from a base", "smc_flow": "SMC from a flow"}


def markdown(rows: list[dict]) -> str:
    """One line per system and method: wall time and energy evaluations at each target."""
    from freeflow.reports.formatting import format_duration

    by_key: dict[tuple, dict] = {}
    for r in rows:
        by_key.setdefault((r["system"], r["method"], r.get("start")), {})[r["target_stderr"]] = r
    head = " | ".join(f"stderr {t:.0e}: wall | energy evals" for t in TARGETS)
    lines = [f"| system | method | measured stderr | {head} | note |",
             "|---|---|---|" + "---|---|" * len(TARGETS) + "---|"]
    for (system, method, start), cells in by_key.items():
        first = next(iter(cells.values()))
        label = LABELS[method] + (f" ({start.removeprefix('base:')})" if method == "smc_base"
                                  else "")
        values = " | ".join(f"{format_duration(cells[t]['wall_s'])} | {cells[t]['energy_evaluations']:.1e}"
                            for t in TARGETS)
        note = _caveat(first)
        lines.append(f"| {system} | {label} | {first['measured_stderr']:.1e} | {values} | {note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
