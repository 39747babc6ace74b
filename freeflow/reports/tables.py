"""Result tables: ``beta F / N`` by LFEP, LBAR and MBAR per system, with errors and costs.

Values are the dimensionless ``beta F / N`` of ``freeflow.estimators.conventions``; errors are standard
errors and are printed in parenthesised notation (``3.1080(1)`` means 3.1080 +- 0.0001).

``build_table`` assembles rows from what already exists (trained run directories, baseline
JSONL results, reference sample files) and computes only the missing estimates, caching each
one as a line of a JSONL file as soon as it is done, so an interrupted build resumes where it
stopped. ``freeflow.reports.table_text`` writes them as Markdown or CSV.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterable

from freeflow.checks import check_whole_numbers
from freeflow.estimators.conventions import DEFAULT_COUNTING
from freeflow.estimators.result import FreeEnergy
from freeflow.fingerprint import json_form
from freeflow.flows.config import config_to_dict, model_preset
from freeflow.physics.system_files import load_system
from freeflow.progress import status
from freeflow.reports.formatting import format_duration
from freeflow.rundir import (
    find_samples,
    has_checkpoint,
    read_baseline,
    read_jsonl,
    read_run_record,
    run_fingerprint,
    training_cost,
)
from freeflow.workflows.baseline import mbar_free_energy
from freeflow.workflows.estimate import WorksConfig, estimate

__all__ = ["Row", "METHODS", "SHIPPED_RESULTS", "RESULT_FILES", "read_results",
           "PUBLISHED_SYSTEMS", "TableConfig", "TableSources", "build_table", "with_training"]

METHODS = ("lfep", "lbar", "smc", "mbar")

#: The stored results shipped with freeflow (package data, written by ``bench/table``):
#: ``freeflow table``'s default ``--results``.
SHIPPED_RESULTS = Path(__file__).resolve().parent.parent / "data" / "results"
#: The files of a results directory, by column: MBAR rows, SMC rows, stored flow rows.
RESULT_FILES = {"baseline": "baseline.jsonl", "smc": "smc.jsonl", "flows": "flows.jsonl"}


def read_results(directory: str | os.PathLike) -> dict[str, Path | None]:
    """``{column: file}`` of a results directory (``RESULT_FILES``; ``None`` where absent).
    Refuses a directory that does not exist or holds none of them."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"results directory {directory} does not exist; give --results DIR "
                         f"holding {', '.join(RESULT_FILES.values())}")
    found = {column: directory / name if (directory / name).is_file() else None
             for column, name in RESULT_FILES.items()}
    if not any(found.values()):
        raise ValueError(f"{directory} holds none of {', '.join(RESULT_FILES.values())}; "
                         "give the directory bench/table writes to")
    return found


#: The systems of the published table (Wirnsberger et al. 2022), in its order.
PUBLISHED_SYSTEMS = ("lj_256", "lj_500", "mw_cubic_64", "mw_cubic_216", "mw_cubic_512",
                     "mw_hex_64", "mw_hex_216", "mw_hex_512")


# -- formatting ------------------------------------------------------------------------------


# -- rows ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One system's line of the table: its size and a ``FreeEnergy`` per method (or ``None``)."""

    system: str
    num_particles: int
    lfep: FreeEnergy | None = None
    lbar: FreeEnergy | None = None
    smc: FreeEnergy | None = None
    mbar: FreeEnergy | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def entry(self, method: str) -> FreeEnergy | None:
        return getattr(self, method)

    def to_dict(self) -> dict:
        return {"system": self.system, "num_particles": self.num_particles,
                "notes": list(self.notes),
                **{m: e.to_dict() if e is not None else None
                   for m, e in ((m, self.entry(m)) for m in METHODS)}}

    @classmethod
    def from_dict(cls, data: dict) -> "Row":
        entries = {m: FreeEnergy.from_dict(data[m]) if data.get(m) else None for m in METHODS}
        return cls(system=data["system"], num_particles=int(data["num_particles"]),
                   notes=list(data.get("notes", [])), **entries)


# -- rendering ----------------------------------------------------------------------------------


# -- inputs -------------------------------------------------------------------------------------


class _Cache:
    """Append-only JSONL of computed entries, each under a key of everything it depends on."""

    def __init__(self, path: Path | None):
        """``path``: the JSONL file, or ``None`` to keep entries in memory only."""
        self.path = path
        self.entries: dict[str, FreeEnergy] = {}
        if path is not None and path.is_file():
            for record in read_jsonl(path):
                if "key" in record and "result" in record:
                    self.entries[self._id(record["key"])] = FreeEnergy.from_dict(record["result"])

    @staticmethod
    def _id(key: dict) -> str:
        return json.dumps(key, sort_keys=True)

    def get(self, key: dict) -> FreeEnergy | None:
        return self.entries.get(self._id(key))

    def put(self, key: dict, result: FreeEnergy):
        self.entries[self._id(key)] = result
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"key": key, "result": result.to_dict()}) + "\n")


def _needs_accelerator(name: str) -> bool:
    """Whether a named system is beyond what 2 CPU cores train to a usable flow (N > 64)."""
    return int(name.rsplit("_", 1)[-1]) > 64 if name.rsplit("_", 1)[-1].isdigit() else False


def _usable_run(run_dir: Path | None, wanted_model: dict, preset: str, check_preset: bool,
                name: str) -> tuple[dict | None, str | None]:
    """``(run.json record, None)`` of a run the table may use, or ``(None, note)`` saying why
    not."""
    if run_dir is None:
        return None, (f"no trained run given (freeflow table --runs DIR, DIR/{name} made by "
                      f"'freeflow train {name} --preset {preset} --out DIR/{name}')")
    record = read_run_record(run_dir)
    if record is None:
        return None, (f"no run in {run_dir} (train with 'freeflow train {name} "
                      f"--preset {preset} --out {run_dir}'"
                      + ("; at this size a flow good enough for LFEP needs training on an "
                         "accelerator" if _needs_accelerator(name) else "") + ")")
    saved_model = record.get("model", {})
    differing = sorted(k for k in set(wanted_model) | set(saved_model)
                       if wanted_model.get(k) != saved_model.get(k))
    if differing and check_preset:
        return None, (f"{run_dir} was trained with another model configuration than the "
                      f"{preset!r} preset (differs in {differing}); LFEP/LBAR left out")
    if not has_checkpoint(run_dir):
        return None, f"{run_dir} has no checkpoint yet; LFEP/LBAR left out"
    return record, None


def with_training(result: FreeEnergy, cost: dict) -> FreeEnergy:
    """``result`` with the training's wall time and energy evaluations added to its own."""
    return dataclasses.replace(
        result, wall_time=(result.wall_time or 0.0) + cost["train_wall_time"],
        energy_evaluations=(result.energy_evaluations or 0) + cost["train_energy_evaluations"],
        details={**{k: v for k, v in result.details.items() if k not in ("states", "lambdas")},
                 "estimate_wall_time": result.wall_time,
                 "estimate_energy_evaluations": result.energy_evaluations, **cost})


def _flow_entries(row: Row, run_dir: Path, record: dict, cache: _Cache, reference_dir,
                  preset: str, num_samples: int, seed: int, counting: str, say):
    """Fill ``row.lfep`` and ``row.lbar`` from a trained run (cached, or computed now)."""
    name = row.system
    step, train_wall, train_evals = training_cost(run_dir, record)
    planned = int(record["training"]["num_steps"])
    if step < planned:
        row.notes.append(f"training unfinished: step {step} of {planned}")
    # run.json holds the run's system, model and training settings: a run retrained with
    # other settings to the same step must not reuse the old entries.
    run_hash = run_fingerprint(run_dir)
    key = {"system": name, "preset": preset, "num_samples": int(num_samples),
           "seed": int(seed), "run_step": step, "counting": counting,
           # Resolved, so relative and absolute spellings share entries.
           "run_dir": str(run_dir.resolve()), "run_settings": run_hash}
    cost = {"train_steps": step, "train_wall_time": train_wall,
            "train_energy_evaluations": train_evals}

    row.lfep = cache.get({**key, "method": "lfep"})
    if row.lfep is None:
        say(f"{name}: LFEP from {run_dir} ({num_samples} samples)")
        result = estimate(run_dir, "lfep", WorksConfig(num_samples), seed=seed,
                          counting=counting)
        row.lfep = with_training(result, cost)
        cache.put({**key, "method": "lfep"}, row.lfep)

    reference = find_samples(reference_dir, name) if reference_dir is not None else None
    if reference is not None:
        ref_key = {**key, "method": "lbar", "reference": str(reference),
                   "reference_size": reference.stat().st_size}
        row.lbar = cache.get(ref_key)
        if row.lbar is None:
            say(f"{name}: LBAR from {run_dir} and {reference}")
            result = estimate(run_dir, "lbar", WorksConfig(num_samples),
                              target_samples=reference, seed=seed, counting=counting)
            row.lbar = with_training(result, cost)
            cache.put(ref_key, row.lbar)
    elif reference_dir is not None:
        row.notes.append(f"no reference samples {Path(reference_dir) / name} for LBAR "
                         f"('freeflow sample {name} --out FILE')")


def _stored_flow_entries(row: Row, stored: dict[str, dict[str, FreeEnergy]], flow_file):
    """Fill ``row.lfep`` and ``row.lbar`` from stored flow rows (``flows.jsonl``), with a note
    naming the flow (its base, steps and training time)."""
    row.lfep = stored["lfep"].get(row.system)
    row.lbar = stored["lbar"].get(row.system)
    entry = row.lbar or row.lfep
    d = entry.details
    flow = (f"a {d['base']}-base flow" if "base" in d else "a flow")
    if d.get("train_steps") == 0:
        flow = f"the {d.get('base', 'flow')} base alone (no training)"
    else:
        if "train_steps" in d:
            flow += f" trained {d['train_steps']} steps"
        if "train_wall_time" in d:
            flow += f" ({format_duration(d['train_wall_time'])})"
    if entry.num_samples is not None:
        flow += f", {entry.num_samples} samples"
    row.notes.append(f"LFEP/LBAR stored in {flow_file}: {flow}"
                     + (f", LBAR against {d['target_samples']} HMC target samples"
                        if row.lbar is not None and "target_samples" in row.lbar.details
                        else ""))


def _mbar_entry(row: Row, system, baseline: dict, cache: _Cache, seed: int, counting: str,
                compute_baseline: bool, baseline_workdir, say):
    """Fill ``row.mbar`` from the baseline results, the cache, or (if asked) a new run."""
    name = row.system
    row.mbar = baseline.get(name)
    if row.mbar is not None:
        return
    mbar_key = {"system": name, "method": "mbar", "seed": int(seed), "counting": counting}
    row.mbar = cache.get(mbar_key)
    if row.mbar is None and compute_baseline:
        say(f"{name}: MBAR baseline (long)")
        workdir = Path(baseline_workdir) / name if baseline_workdir is not None else None
        result = mbar_free_energy(system, workdir=workdir, seed=seed).recounted(counting)
        row.mbar = dataclasses.replace(
            result, details={k: v for k, v in result.details.items()
                             if k not in ("states", "lambdas")})
        cache.put(mbar_key, row.mbar)
    elif row.mbar is None:
        row.notes.append(f"no MBAR baseline (run 'freeflow baseline {name} --json' and add "
                         "the row to --results DIR/baseline.jsonl)")


@dataclasses.dataclass(frozen=True)
class TableSources:
    """Where a table's numbers come from, per system ``NAME`` (every one optional).

    Attributes:
      runs_dir: trained runs ``runs_dir/NAME`` (``freeflow train NAME --preset PRESET --out
        runs_dir/NAME``) for LFEP and LBAR, used only if their model configuration is the
        preset's (``TableConfig.check_preset``). Runs are never trained here; a missing run
        leaves LFEP and LBAR empty with a note, an unfinished one gets a note.
      reference_dir: target samples ``reference_dir/NAME.npz`` (or ``.extxyz``) for LBAR
        (``freeflow sample NAME --out FILE``).
      baseline_file: MBAR rows (JSONL of ``FreeEnergy`` rows, ``freeflow.rundir.read_baseline``;
        the last non-quick row of a system wins).
      smc_file: SMC rows (``method = "smc"``).
      flow_file: stored LFEP and LBAR rows (``flows.jsonl``) of the table's preset, used where
        ``runs_dir`` has no usable run; a note names the flow they came from.
      cache_file: where computed LFEP, LBAR and MBAR entries are kept, under a key of
        everything they depend on (default ``runs_dir/table_PRESET.jsonl``).
      baseline_workdir: the resumable MBAR runs of ``TableConfig.compute_baseline``.
    """

    runs_dir: str | os.PathLike | None = None
    reference_dir: str | os.PathLike | None = None
    baseline_file: str | os.PathLike | None = None
    smc_file: str | os.PathLike | None = None
    flow_file: str | os.PathLike | None = None
    cache_file: str | os.PathLike | None = None
    baseline_workdir: str | os.PathLike | None = None

    @classmethod
    def from_results(cls, directory: str | os.PathLike, **others) -> "TableSources":
        """The result files of ``directory`` (``read_results``), plus ``others``."""
        files = read_results(directory)
        return cls(baseline_file=files["baseline"], smc_file=files["smc"],
                   flow_file=files["flows"], **others)


@dataclasses.dataclass(frozen=True)
class TableConfig:
    """What a table computes where its sources leave a cell empty; checked on construction.

    Attributes:
      preset: ``"cpu"`` or ``"paper"``: the runs and stored flow rows the table uses.
      num_samples: model samples per LFEP / LBAR estimate; seed: their PRNG seed.
      compute_baseline: run MBAR (``freeflow.workflows.baseline.mbar_free_energy``, long)
        where no MBAR row is stored.
      check_preset: use a run only if its model configuration equals the preset's (False:
        whatever was trained in ``runs_dir/NAME``; the cache key still records the preset).
    """

    preset: str = "cpu"
    num_samples: int = 100_000
    seed: int = 0
    compute_baseline: bool = False
    check_preset: bool = True

    def __post_init__(self):
        check_whole_numbers(self, {"num_samples": 2, "seed": 0})


def build_table(systems: Iterable[str], sources: TableSources = TableSources(),
                config: TableConfig = TableConfig(), *,
                counting: str = DEFAULT_COUNTING) -> list[Row]:
    """Rows of ``beta F / N`` by LFEP, LBAR, SMC and MBAR for ``systems``, from ``sources``
    (``TableSources``: what each column reads), computing what is missing as ``config``
    (``TableConfig``) says; SMC is only read.

    Computed LFEP, LBAR and MBAR entries are appended to the cache file under a key of
    everything they depend on (system, method, preset, samples, seed, the run's step and
    settings, the reference file), so re-running recomputes nothing unless the run was trained
    further or a setting changed. LFEP and LBAR entries carry the training's wall time and
    energy evaluations added to the estimator's (``details`` has the breakdown); LBAR's
    exclude the reference samples.

    ``counting``: ``"bravais"`` (the literature's, default) or ``"exact"``
    (``freeflow.estimators.conventions``); stored rows are converted to it. Progress bars and
    one status line per computation go to stderr unless ``freeflow.progress.showing(False)``.
    """
    src, preset = sources, config.preset
    runs_dir = Path(src.runs_dir) if src.runs_dir is not None else None
    cache_file = src.cache_file
    if cache_file is None and runs_dir is not None:
        cache_file = runs_dir / f"table_{preset}.jsonl"
    cache = _Cache(Path(cache_file) if cache_file is not None else None)
    baseline = read_baseline(src.baseline_file, counting) if src.baseline_file else {}
    smc = read_baseline(src.smc_file, counting, method="smc") if src.smc_file else {}
    # Stored flow rows of another preset are not this table's.
    stored = ({m: {name: entry for name, entry in read_baseline(src.flow_file, counting,
                                                                method=m).items()
                   if entry.details.get("preset", preset) == preset}
               for m in ("lfep", "lbar")} if src.flow_file is not None else {})

    say = status

    rows = []
    for name in systems:
        system = load_system(name)
        row = Row(system=name, num_particles=system.num_particles)
        run_dir = runs_dir / name if runs_dir is not None else None
        # The paper preset's frequencies depend on the system.
        wanted_model = json_form(config_to_dict(model_preset(preset, system)))
        record, note = _usable_run(run_dir, wanted_model, preset, config.check_preset, name)
        if record is None and any(name in rows_of for rows_of in stored.values()):
            if run_dir is not None and read_run_record(run_dir) is not None:
                # a run there, but not one to use
                row.notes.append(note)
            _stored_flow_entries(row, stored, src.flow_file)
        elif record is None:
            row.notes.append(note)
        else:
            _flow_entries(row, run_dir, record, cache, src.reference_dir, preset,
                          config.num_samples, config.seed, counting, say)
        _mbar_entry(row, system, baseline, cache, config.seed, counting,
                    config.compute_baseline, src.baseline_workdir, say)
        row.smc = smc.get(name)
        rows.append(row)
    return rows
