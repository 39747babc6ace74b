"""Training, checkpoints, resumption, multi-device agreement, the NaN guard, LFEP accuracy."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import freeflow
from freeflow.flows.config import ModelConfig
from freeflow.physics.potentials import SymmetricEinsteinCrystal
from freeflow.rundir import load_run
from freeflow.training.config import TrainingConfig, scheduled_over
from freeflow.training.trainer import TrainingDiverged, learning_rate_schedule
from freeflow.workflows.train import train

TINY = ModelConfig(num_layers=2, num_bins=8, embedding_size=16, num_heads=2, num_blocks=1,
                   num_frequencies=2)


def tiny_training(**kw):
    base = dict(num_steps=6, batch_size=8, learning_rate=1e-3, decay_steps=(1000,),
                checkpoint_every=2, eval_every=0, eval_samples=64, seed=3)
    base.update(kw)
    return TrainingConfig(**base)


def params_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_resume_after_interruption_gives_identical_parameters(tmp_path):
    system = freeflow.load_system("mw_cubic_8")
    whole = train(system, tmp_path / "whole", model_config=TINY, training=tiny_training())

    class Interrupt(Exception):
        pass

    def kill_at_step_5(step, record):
        if step == 5:
            raise Interrupt  # after the checkpoint at step 4, before the one at 6
    with pytest.raises(Interrupt):
        train(system, tmp_path / "cut", model_config=TINY, training=tiny_training(),
              callback=kill_at_step_5)
    resumed = train(system, tmp_path / "cut", model_config=TINY, training=tiny_training())
    assert params_equal(whole.params, resumed.params)
    steps = [r["step"] for r in resumed.metrics]
    assert steps == list(range(1, 7))  # the metrics of the lost step 5 are not duplicated
    _, _, params, _ = load_run(tmp_path / "cut")
    assert params_equal(params, whole.params)


def test_learning_rate_warms_up_then_decays():
    config = tiny_training(learning_rate=1e-3, warmup_steps=4, decay_steps=(6,),
                           decay_factor=0.1)
    rates = [float(learning_rate_schedule(config)(step)) for step in range(8)]
    np.testing.assert_allclose(rates, [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4],
                               rtol=1e-6)
    no_warmup = learning_rate_schedule(tiny_training(learning_rate=1e-3))
    assert float(no_warmup(0)) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="warmup_steps must be"):
        tiny_training(warmup_steps=-1).validate()


def test_schedule_over_a_number_of_steps_keeps_its_proportions():
    config = scheduled_over(TrainingConfig(learning_rate=1e-3, decay_factor=0.1), 1000)
    assert (config.num_steps, config.warmup_steps, config.decay_steps) == (1000, 50, (600, 850))
    assert (config.eval_every, config.checkpoint_every) == (200, 50)
    rates = learning_rate_schedule(config)
    assert float(rates(49)) == pytest.approx(1e-3)
    assert float(rates(599)) == pytest.approx(1e-3)
    assert float(rates(600)) == pytest.approx(1e-4)
    assert float(rates(900)) == pytest.approx(1e-5)
    short = scheduled_over(TrainingConfig(), 3).validate()  # tiny runs still validate
    assert (short.eval_every, short.checkpoint_every) == (1, 1)


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown system"):
        train("lj_33", tmp_path / "x", model_config=TINY, training=tiny_training())
    with pytest.raises(ValueError, match="num_steps must be"):
        train("lj_32", tmp_path / "x", model_config=TINY, training=tiny_training(num_steps=-5))
    with pytest.raises(ValueError, match="is not a run directory"):
        freeflow.estimate(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a freeflow run directory"):
        freeflow.estimate(tmp_path / "empty")
    from freeflow.cli import main
    assert main(["estimate", str(tmp_path / "missing")]) == 2
    assert main(["train", "lj_32", "--steps", "-1", "--out", str(tmp_path / "y")]) == 2


class BrokenEnergy:
    """A potential whose energy turns NaN: the guard must stop training and say where."""

    kind = "broken"
    cutoff = 0.0
    units = freeflow.LennardJones().units

    def neighbor_plan(self, box, sites, **_):
        return None

    def energy_fn(self, box, sites, **_):
        def energy(x):
            return jax.numpy.sum(x) * jax.numpy.nan
        return energy


def test_nan_guard_names_the_step_and_checkpoint(tmp_path):
    lattice = freeflow.load_system("mw_cubic_8").atoms
    system = freeflow.System(name="broken", atoms=lattice, potential=BrokenEnergy(),
                             temperature=1.0)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 0.*no checkpoint"):
        train(system, None, model_config=dataclasses.replace(TINY, noise_scale=0.05),
              training=tiny_training())


@pytest.mark.parametrize("gradient", ["reparameterized", "path"])
def test_one_and_two_devices_agree(tmp_path, gradient):
    script = textwrap.dedent(f"""
        import sys, numpy as np, jax
        from freeflow.flows.config import ModelConfig
        from freeflow.training.config import TrainingConfig, scheduled_over
        from freeflow.workflows.train import train
        assert len(jax.devices()) == int(sys.argv[2]), jax.devices()
        cfg = ModelConfig(**{dataclasses.asdict(TINY)!r})
        t = TrainingConfig(**{dataclasses.asdict(tiny_training(num_steps=3, gradient_estimator=gradient))!r})
        r = train("mw_cubic_8", None, model_config=cfg, training=t)
        np.savez(sys.argv[1], *[np.asarray(l) for l in jax.tree.leaves(r.params)],
                 loss=[m["loss"] for m in r.metrics], grad_norm=[m["grad_norm"] for m in r.metrics])
    """)
    results = []
    for devices in (1, 2):
        env = dict(os.environ,
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   JAX_PLATFORMS="cpu")
        out = tmp_path / f"params_{devices}.npz"
        subprocess.run([sys.executable, "-c", script, str(out), str(devices)], check=True,
                       env=env, capture_output=True, text=True)
        with np.load(out) as data:
            results.append({k: data[k] for k in data.files})
    one, two = results
    # Same random numbers and math; only the order of the batch reduction differs, so the
    # losses and gradient norms of every step agree to float32 rounding.
    for name in ("loss", "grad_norm"):
        np.testing.assert_allclose(one[name], two[name], rtol=1e-5)
    # Adam divides each gradient component by its own running RMS, so a component whose
    # gradient is at rounding level moves by up to a full learning rate either way: parameters
    # agree to a tenth of (learning rate 1e-3) x (3 steps), not to float32 epsilon. A wrong
    # split of the batch or of the random keys moves them by O(lr) and changes the losses.
    for k in one:
        if k.startswith("arr_"):
            np.testing.assert_allclose(one[k], two[k], rtol=0, atol=0.1 * 1e-3 * 3)


def harmonic_crystal_32(width=0.06):
    """lj_32's FCC lattice under a harmonic (Einstein) potential with the flow's symmetries:
    per-axis thermal width ``width`` at beta = 0.5 (k = 1 / (beta width^2)); analytic ln Z."""
    target = SymmetricEinsteinCrystal(spring_constant=1.0 / (0.5 * width**2))
    system = freeflow.System(name="harmonic_32", atoms=freeflow.load_system("lj_32").atoms,
                             potential=target, temperature=2.0)
    return system, target


def test_lfep_on_analytic_harmonic_crystal(tmp_path):
    """Train on a harmonic crystal with the flow's symmetries; LFEP must hit the exact value."""
    system, target = harmonic_crystal_32(width=0.06)
    # The base is narrower than the target (0.05 vs 0.06): a fresh flow is 2.7 nats of KL
    # away from it, and the flow must learn the widening.
    model = dataclasses.replace(TINY, noise_scale=0.05)
    result = train(system, tmp_path / "h", model_config=model,
                   training=tiny_training(num_steps=400, batch_size=64, learning_rate=5e-3,
                                          decay_steps=(300,), checkpoint_every=400))
    estimate = freeflow.estimate(tmp_path / "h", config=freeflow.WorksConfig(20_000))
    exact_log_z = target.log_partition_function(system)
    exact = freeflow.estimators.conventions.beta_f_per_particle(exact_log_z, 32, 1.0)
    # This target is not a physical crystal: the flow's ln Z is its full ln Z (no ln m), and
    # the lattice is FCC (m = 1), so the reported value must be the exact one.
    assert estimate.details["multiplicity"] == 1
    assert estimate.ess > 0.05
    assert abs(estimate.value - exact) < 3 * estimate.stderr, (estimate, exact)
    assert abs(estimate.value - exact) < 2e-3
    # The loss is bounded below by -ln Z; training must have closed most of the initial gap.
    loss = np.array([m["loss"] for m in result.metrics])
    assert loss[-50:].mean() + exact_log_z < 0.5 * (loss[:20].mean() + exact_log_z)


def test_harmonic_base_is_exact_on_a_harmonic_crystal():
    """With the harmonic base a fresh flow already is a harmonic target: every work equals
    -ln Z and LFEP is exact with ESS 1 (no training)."""
    system, target = harmonic_crystal_32()
    model = freeflow.FlowModel(system, dataclasses.replace(TINY, base="harmonic"))
    params = model.init(jax.random.PRNGKey(0))
    estimate = freeflow.lfep_from_model(model, params, system, jax.random.PRNGKey(1), num_samples=2048,
                             bootstrap=0)
    exact = freeflow.estimators.conventions.beta_f_per_particle(target.log_partition_function(system),
                                                     32, 1.0)
    # float32 works of size ~100: rounding ~1e-5 per work.
    assert np.std(estimate.work) < 1e-3
    assert estimate.ess > 0.9999
    assert estimate.value == pytest.approx(exact, abs=1e-5)


def test_path_gradient_vanishes_where_the_flow_is_exact():
    """On a harmonic crystal a fresh flow with the harmonic base is the target: the path
    gradient is zero sample by sample, while the reparameterized one keeps the score term's
    noise. Both report the same loss (same samples, same value of ln q)."""
    from freeflow.training.trainer import TrainState, make_step, optimizer
    system, _ = harmonic_crystal_32()
    model = freeflow.FlowModel(system, dataclasses.replace(TINY, base="harmonic"))
    params = model.init(jax.random.PRNGKey(0))
    metrics = {}
    for estimator in ("reparameterized", "path"):
        config = tiny_training(batch_size=16, gradient_estimator=estimator)
        optim = optimizer(config)
        state = TrainState(params, optim.init(params), jax.numpy.asarray(0, jax.numpy.int32))
        _, metrics[estimator] = make_step(model, system, config, optim, donate=False)(
            state, jax.random.PRNGKey(1))
    reparameterized, path = metrics["reparameterized"], metrics["path"]
    assert float(path["loss"]) == pytest.approx(float(reparameterized["loss"]), abs=1e-4)
    assert float(reparameterized["grad_norm"]) > 1.0
    # float32 works of size ~100 round at ~1e-5; their gradients stay at that level.
    assert float(path["grad_norm"]) < 1e-3 * float(reparameterized["grad_norm"])


def test_unknown_gradient_estimator_is_refused():
    with pytest.raises(ValueError, match="gradient_estimator must be one of"):
        tiny_training(gradient_estimator="score").validate()


def test_mismatched_or_corrupt_checkpoints_are_refused(tmp_path):
    run = tmp_path / "run"
    train("mw_cubic_8", run, model_config=TINY, training=tiny_training(num_steps=2))
    with pytest.raises(ValueError, match="holds a different run"):
        train("lj_32", run, model_config=TINY, training=tiny_training(num_steps=2))
    bigger = dataclasses.replace(TINY, embedding_size=32)
    with pytest.raises(ValueError, match="model config differs"):
        train("mw_cubic_8", run, model_config=bigger, training=tiny_training(num_steps=2))
    with pytest.raises(ValueError, match=r"training config differs in \['warmup_steps'\] "
                                         r"\(the run has warmup_steps=0; asked for "
                                         r"warmup_steps=2\)"):
        train("mw_cubic_8", run, model_config=TINY,
              training=tiny_training(num_steps=3, warmup_steps=2))
    # Only the schedule differs: the refusal points to --extend.
    with pytest.raises(ValueError, match="to train on with the run's own schedule use "
                                         "--extend STEPS"):
        train("mw_cubic_8", run, model_config=TINY,
              training=tiny_training(num_steps=3, warmup_steps=2))
    # A run written before a training field existed resumes as if it had the default.
    spec = json.loads((run / "run.json").read_text())
    del spec["training"]["warmup_steps"]
    (run / "run.json").write_text(json.dumps(spec))
    resumed = train("mw_cubic_8", run, model_config=TINY, training=tiny_training(num_steps=3))
    assert resumed.metrics[-1]["step"] == 3
    # ... and is refused, naming its value, by settings that differ from that default.
    del spec["training"]["gradient_estimator"]
    (run / "run.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="the run has gradient_estimator='reparameterized'"):
        train("mw_cubic_8", run, model_config=TINY,
              training=tiny_training(num_steps=3, gradient_estimator="path"))
    (run / "checkpoint.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        train("mw_cubic_8", run, model_config=TINY, training=tiny_training(num_steps=4))


def test_max_wall_time_stops_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = train("mw_cubic_8", run, model_config=TINY, training=tiny_training(num_steps=5),
                   max_wall_time=0.0)
    assert result.metrics == []
    system, _, params, _ = load_run(run)  # a checkpoint exists: the run resumes from it
    assert system.name == "mw_cubic_8" and params_equal(params, result.params)
