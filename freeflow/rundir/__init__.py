"""The run-directory format: the one package that reads and writes freeflow's files.

A training run directory (``freeflow train --out DIR``) holds

* ``run.json``: the system's definition and the model and training configs (``RUN_JSON``);
* ``checkpoint.npz``: the training-state pytree, as numbered leaves (``CHECKPOINT``);
* ``metrics.jsonl``: one JSON record per step (``METRICS``).

The resumable estimates keep their work in a ``WorkDir`` (``workdirs``): its settings
file, refused when a rerun asks for other settings, its finished parts and its log, behind
the one-writer lock. An MBAR work directory (``freeflow baseline --workdir DIR``,
``MbarWorkdir``) holds one ``state_###.npz`` per finished state of the path; an SMC one
(``freeflow estimate --method smc --workdir DIR``, ``SmcWorkdir``) one ``group_###.npz`` per
finished group of runs; a sweep's (``freeflow sweep --out DIR``) one ``temperature_###.npz``
per finished temperature and the anchor's MBAR states (``LadderWorkdir``), or with
``--route smc`` one ``stage_###.npz`` per finished temperature (``SweepWorkdir``). Sample files (``freeflow sample --out FILE``) are
``.npz`` or extended XYZ with the system's definition inside (``save_samples``).

Every file but the append-only metrics log is written to a temporary name in the same
directory and renamed over the old one (``os.replace`` is atomic on POSIX), so a run killed at
any moment leaves either the previous or the new file, never a truncated one.

One module per kind of file: ``files`` (atomic writes, locks, JSON lines), ``runs`` (training
run directories), ``workdirs`` (the MBAR and SMC work directories), ``samples`` (sample files)
and ``results`` (result rows). Every public name is importable from ``freeflow.rundir``.
"""

from freeflow.rundir.files import (  # noqa: F401
    CHECKPOINT,
    DirectoryLock,
    LOCK,
    METRICS,
    RUN_JSON,
    atomic_write_bytes,
    check_writable_dir,
    check_writable_file,
    npz_bytes,
    read_json,
    read_jsonl,
    write_json,
)
from freeflow.rundir.runs import (  # noqa: F401
    RunDir,
    append_metrics,
    check_checkpoint_identity,
    checkpoint_identity,
    checkpoint_path,
    checkpoint_step,
    checkpoint_stamp,
    describe_run,
    has_checkpoint,
    load_checkpoint,
    load_run,
    model_config_of,
    read_metrics,
    read_run_record,
    run_fingerprint,
    run_record,
    save_checkpoint,
    system_of_record,
    training_cost,
    write_metrics,
    write_run_record,
)
from freeflow.rundir.workdirs import (  # noqa: F401
    CompareWorkdir,
    LadderWorkdir,
    MbarWorkdir,
    SmcWorkdir,
    SweepWorkdir,
    WorkDir,
    settings_differences,
)
from freeflow.rundir.samples import (  # noqa: F401
    SAMPLE_SUFFIXES,
    find_samples,
    load_samples,
    read_chains,
    save_samples,
)
from freeflow.rundir.results import (  # noqa: F401
    read_baseline,
)

__all__ = [
    "CHECKPOINT",
    "CompareWorkdir",
    "DirectoryLock",
    "LOCK",
    "LadderWorkdir",
    "METRICS",
    "MbarWorkdir",
    "RUN_JSON",
    "RunDir",
    "SAMPLE_SUFFIXES",
    "SmcWorkdir",
    "SweepWorkdir",
    "WorkDir",
    "append_metrics",
    "atomic_write_bytes",
    "check_checkpoint_identity",
    "check_writable_dir",
    "check_writable_file",
    "checkpoint_identity",
    "checkpoint_path",
    "checkpoint_step",
    "checkpoint_stamp",
    "describe_run",
    "find_samples",
    "has_checkpoint",
    "load_checkpoint",
    "load_run",
    "load_samples",
    "model_config_of",
    "npz_bytes",
    "read_baseline",
    "read_chains",
    "read_json",
    "read_jsonl",
    "read_metrics",
    "read_run_record",
    "run_fingerprint",
    "run_record",
    "save_checkpoint",
    "save_samples",
    "settings_differences",
    "system_of_record",
    "training_cost",
    "write_json",
    "write_metrics",
    "write_run_record",
]
