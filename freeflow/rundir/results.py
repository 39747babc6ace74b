"""Result files: JSON lines of ``FreeEnergy`` rows (``freeflow baseline --json``, the files of
``freeflow table --results``), read per system and method with every row checked."""

from __future__ import annotations

import math
import os
from pathlib import Path


from freeflow.estimators.conventions import DEFAULT_COUNTING
from freeflow.estimators.result import FreeEnergy
from freeflow.rundir.files import read_jsonl


def _finite_number(record: dict, key: str, where: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be a finite number; got {value!r}")
    return float(value)


def read_baseline(path: str | os.PathLike,
                  counting: str = DEFAULT_COUNTING, method: str = "mbar"
                  ) -> dict[str, FreeEnergy]:
    """Results of ``method`` (MBAR by default; ``"smc"`` for SMC rows) per system from a
    JSONL file of ``FreeEnergy.to_dict()`` rows (``freeflow baseline --json``, ``freeflow
    estimate --method smc --json``, the files of ``freeflow table --results``), in
    ``counting``.

    Rows marked ``"quick": true`` (pipeline smoke tests) are ignored; of several rows for a
    system the last one wins. A row records its counting, N and the lattice's multiplicity and
    is converted to the counting asked for. A row whose value or error is not a finite
    number, or that lacks those records, is refused with the file and line named.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {str(path)!r} does not exist")
    out = {}
    for number, r in read_jsonl(path, numbered=True):
        # Rows of other methods, smoke tests, and rows of other quantities (an ice
        # difference, say) have no place in this column.
        if r.get("method") != method or r.get("quick") or "system" not in r:
            continue
        where = f"{path}:{number}"
        value = _finite_number(r, "beta_f_per_particle", where)
        stderr = _finite_number(r, "stderr", where)
        missing = [k for k in ("counting", "num_particles", "lattice_multiplicity") if k not in r]
        if missing:
            raise ValueError(f"{where}: a {method} row needs {', '.join(missing)} (written by "
                             "freeflow 0.1 or by hand); re-run the estimate that made it")
        n, m = int(r["num_particles"]), int(r["lattice_multiplicity"])
        out[r["system"]] = FreeEnergy(
            value=value, stderr=stderr, method=method,
            system=r["system"], num_samples=r.get("num_samples"),
            num_states=r.get("num_states"),
            # The importance-sampling ESS of LFEP; other methods' "ess" mean other things.
            ess=r.get("ess") if method == "lfep" else None,
            # A run extended over several sessions: all of its sampling, not the last call.
            wall_time=r.get("sampling_wall_time", r.get("wall_time")),
            energy_evaluations=r.get("energy_evaluations"),
            details={k: r[k] for k in ("samples_per_state", "einstein_width", "reference",
                                       "min_neighbour_overlap", "start", "smc_particles",
                                       "repeats", "base", "preset", "train_steps",
                                       "train_wall_time", "target_samples", "pareto_k")
                     if k in r}
            | {"source": str(path), "counting": r["counting"], "num_particles": n,
               "lattice_multiplicity": m}).recounted(counting)
    return out
