"""The run-directory and sample-file formats: round trips, atomic writes, old records."""

import json

import numpy as np
import pytest

from freeflow import rundir
from freeflow.flows.config import ModelConfig
from freeflow.rundir import load_samples, save_samples
from freeflow.training.config import TrainingConfig


@pytest.mark.parametrize("suffix", [".npz", ".extxyz"])
def test_trajectory_round_trip(systems, tmp_path, suffix):
    system = systems("mw_cubic_8")
    rng = np.random.default_rng(3)
    x = np.mod(system.lattice + 0.1 * rng.standard_normal((5,) + system.lattice.shape),
               system.box).astype(np.float32)
    u = rng.standard_normal(5)
    path = save_samples(tmp_path / f"samples{suffix}", x, system, energies=u)
    positions, loaded, energies = load_samples(path)
    np.testing.assert_allclose(positions, x, atol=1e-6)
    np.testing.assert_allclose(energies, u, rtol=1e-12)
    assert loaded.name == system.name and loaded.num_particles == system.num_particles
    np.testing.assert_allclose(loaded.box, system.box)
    assert loaded.definition == system.definition
    if suffix == ".extxyz":
        import ase.io

        frames = ase.io.read(path, index=":")
        assert len(frames) == 5 and all(frames[0].pbc)
        np.testing.assert_allclose(np.diag(frames[0].cell), system.box)


def test_trajectory_round_trip_of_custom_system(systems, tmp_path):
    from freeflow.physics.system_files import system_from_atoms

    named = systems("lj_32")
    custom = system_from_atoms(named.atoms, named.potential, named.temperature, name="mine")
    assert custom.definition is None
    x = np.asarray(named.lattice, np.float32)[None]
    _, loaded, energies = load_samples(save_samples(tmp_path / "c.npz", x, custom))
    assert energies is None and loaded.name == "mine"
    np.testing.assert_allclose(loaded.lattice, custom.lattice, atol=1e-12)
    assert loaded.beta == custom.beta


def test_checkpoint_round_trip_and_refusals(tmp_path):
    state = {"w": np.arange(6.0, dtype=np.float32).reshape(2, 3), "step": np.int32(4)}
    assert rundir.load_checkpoint(tmp_path, template=state) is None
    rundir.save_checkpoint(tmp_path, state)
    back = rundir.load_checkpoint(tmp_path, template=state)
    np.testing.assert_array_equal(back["w"], state["w"])
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file
    with pytest.raises(ValueError, match="does not fit this model"):
        rundir.load_checkpoint(tmp_path, template={"w": np.zeros((3, 2), np.float32),
                                                   "step": np.int32(0)})
    rundir.checkpoint_path(tmp_path).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is corrupt"):
        rundir.load_checkpoint(tmp_path, template=state)


def test_metrics_drop_records_after_the_checkpoint_and_lines_cut_short(tmp_path):
    rundir.write_metrics(tmp_path, [{"step": 1}, {"step": 2}])
    rundir.append_metrics(tmp_path, {"step": 3})
    with open(tmp_path / rundir.METRICS, "a") as fh:
        fh.write('{"step": 4, "lo')  # a kill in the middle of a line
    assert [r["step"] for r in rundir.read_metrics(tmp_path)] == [1, 2, 3]
    assert [r["step"] for r in rundir.read_metrics(tmp_path, up_to_step=2)] == [1, 2]


def test_training_cost_leaves_out_a_stop_and_counts_evaluations(tmp_path):
    # Steps 1 s apart, then a 500 s gap (the run stopped and was resumed), then one more step;
    # step 3 ran an LFEP evaluation of 64 samples.
    times = [0.0, 1.0, 2.0, 3.0, 503.0, 504.0]
    records = [{"step": i + 1, "time": t} for i, t in enumerate(times)]
    records[2].update(eval_ess=0.1, eval_samples=64)
    rundir.write_metrics(tmp_path, records)
    step, wall, evaluations = rundir.training_cost(tmp_path, {"training": {"batch_size": 8}})
    assert (step, wall, evaluations) == (6, 4.0, 6 * 8 + 64)
    assert rundir.training_cost(tmp_path / "missing", {}) == (0, 0.0, 0)


def test_records_of_freeflow_0_1_are_refused(systems, tmp_path):
    """A run.json without model.base (freeflow 0.1 named the base through noise_scale) is
    refused in one line rather than guessed."""
    config = ModelConfig(num_layers=2, num_bins=8, embedding_size=16, num_heads=2,
                         num_blocks=1, num_frequencies=2)
    record = rundir.run_record(systems("mw_cubic_8"), config, TrainingConfig())
    del record["model"]["base"]
    record["model"]["noise_scale"] = "harmonic"
    rundir.write_run_record(tmp_path, record)
    with pytest.raises(ValueError, match="not a valid run record .*model.base .*freeflow 0.1"):
        rundir.read_run_record(tmp_path)


def test_mbar_workdir_round_trip_and_refusals(tmp_path):
    store = rundir.MbarWorkdir(tmp_path / "mbar")
    assert store.read_settings() is None and store.read_state(0, 0.0, 4) is None
    store.write_settings({"settings": {"num_states": 3}, "width": 0.1})
    assert store.read_settings()["width"] == 0.1
    components = np.ones((4, 5, 2))
    store.write_state(1, 0.25, components, np.zeros((4, 8, 3)), {"step_size": 0.01})
    c, x, info = store.read_state(1, 0.25, 4)
    np.testing.assert_array_equal(c, components)
    assert x.shape == (4, 8, 3) and info == {"step_size": 0.01}
    with pytest.raises(ValueError, match="holds lambda = 0.25, expected 0.5"):
        store.read_state(1, 0.5, 4)
    with pytest.raises(ValueError, match="holds 4 chains, not 8"):
        store.read_state(1, 0.25, 8)


def test_a_run_record_that_contradicts_itself_is_refused(tiny_run, tmp_path):
    """A run.json whose definition was edited (200 K there) while its system fields stayed
    (or the other way round) names both state points instead of computing either."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    record = json.loads((run / "run.json").read_text())
    record["system"]["definition"]["state"]["temperature"] = 250.0
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"contradicts itself: its definition describes "
                                         r"mw_cubic_8 .*T = 250 K.*its system fields "
                                         r"mw_cubic_8 .*T = 200 K"):
        rundir.load_run(run)


def test_workdir_keeps_settings_refuses_others_locks_and_logs(tmp_path, capsys):
    """The one object every resumable job keeps its work in: settings written on the first
    call and refused (every differing key named, with both values) on a later one, an ignored
    key rewritten, one writer at a time, and a log that keeps what stderr showed."""
    path = tmp_path / "job"
    record = {"settings": {"seed": 0, "states": 4, "samples": 100}, "width": 0.5}

    class Job(rundir.WorkDir):
        LOG = "job.log"
        JOB = "a test job"

    with Job.open(path) as work:
        assert work.check_settings(record, within="settings") is None
        work.log("first line")
        with pytest.raises(ValueError, match="in use by freeflow process"):
            with Job.open(path):
                pass
    assert json.loads((path / "config.json").read_text()) == record
    assert capsys.readouterr().err == "first line\n"
    assert (path / "job.log").read_text().endswith(" first line\n")
    with Job.open(path) as work:
        other = {"settings": {"seed": 1, "states": 5, "samples": 100}, "width": 0.7}
        with pytest.raises(ValueError) as refused:
            work.check_settings(other, within="settings")
        assert str(refused.value) == (
            f"{path} holds a test job with other settings (seed 0 there, 1 here; states 4 "
            "there, 5 here); use the same settings to continue it, or a fresh --workdir")
        more = {"settings": {"seed": 0, "states": 4, "samples": 400}, "width": 0.5}
        assert work.check_settings(more, within="settings", ignore=("samples",)) == record
        # the width is the job's own bookkeeping, outside the compared settings
        assert work.read_settings() == more
    with Job.open(None) as nothing:
        assert nothing is None
    assert rundir.settings_differences({"a": "x" * 70}, {"a": "y"}) == ["a differs"]


def test_sweep_workdir_stages_round_trip_and_refuse_another_temperature(tmp_path):
    with rundir.SweepWorkdir.open(tmp_path) as work:
        assert work.read_stage(0, 180.0) is None
        work.write_stage(0, [1.0, 2.0], np.zeros((2, 3, 6), np.float32), np.ones((2, 3)),
                         {"temperature": 180.0, "step_size": 0.1})
        log_z, positions, energies, info = work.read_stage(0, 180.0)
        np.testing.assert_array_equal(log_z, [1.0, 2.0])
        assert positions.dtype == np.float32 and energies.shape == (2, 3)
        assert info["step_size"] == 0.1
        with pytest.raises(ValueError, match="temperature 1 is 180, not 200"):
            work.read_stage(0, 200.0)
    assert (tmp_path / "sweep.log").is_file() and work.stage_file(0).is_file()


def test_a_training_run_directory_is_a_work_directory(systems, tmp_path):
    """The run directory opens, locks and keeps its settings like every work directory;
    its settings file is run.json."""
    record = rundir.run_record(systems("mw_cubic_8"), ModelConfig(), TrainingConfig())
    with rundir.RunDir.open(tmp_path / "run") as run:
        assert isinstance(run, rundir.WorkDir) and run.read_settings() is None
        run.write_settings(record)
        with pytest.raises(ValueError, match="in use by freeflow process"):
            with rundir.RunDir.open(tmp_path / "run"):
                pass
        assert run.read_settings() == record
        assert rundir.read_run_record(tmp_path / "run") == record
        run.append_metrics({"step": 1, "loss": 2.0})
        assert rundir.read_metrics(tmp_path / "run") == [{"step": 1, "loss": 2.0}]
