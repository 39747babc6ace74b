"""Helpers shared by tests: synthetic metrics and a tiny untrained run directory."""

import jax
import jax.numpy as jnp
import numpy as np

import freeflow
from freeflow import rundir
from freeflow.flows.config import ModelConfig
from freeflow.training.config import TrainingConfig
from freeflow.training.trainer import TrainState, optimizer


def synthetic_metrics(steps=300):
    rng = np.random.default_rng(0)
    out = []
    for s in range(1, steps + 1):
        loss = 100 * (3 + 5 * np.exp(-s / 40)) + rng.normal()
        out.append({"step": s, "loss": loss, "ess": min(1.0, 0.001 * s * rng.random()),
                    "grad_norm": 1.0, "beta_f_per_particle_batch": 3 + np.exp(-s / 40)
                    + 0.01 * rng.normal(), "time": 1000.0 + s})
        if s % 100 == 0:
            out[-1].update(eval_beta_f_per_particle=3.0, eval_ess=0.2, eval_samples=64)
    return out


def write_tiny_run(run):
    """Write an untrained tiny mw_cubic_8 flow into ``run``, without compiling a training
    step (that compilation alone takes longer than the tests using it should)."""
    tiny = ModelConfig(num_layers=2, num_bins=8, embedding_size=16, num_heads=2, num_blocks=1,
                       num_frequencies=2)
    training = TrainingConfig(num_steps=2, batch_size=8, seed=3)
    system = freeflow.load_system("mw_cubic_8")
    record = rundir.run_record(system, tiny, training)
    rundir.write_run_record(run, record)
    params = freeflow.FlowModel(system, tiny).init(jax.random.PRNGKey(training.seed))
    rundir.save_checkpoint(run, TrainState(params, optimizer(training).init(params),
                                           jnp.asarray(2, jnp.int32)),
                           rundir.checkpoint_stamp(record))
    rundir.write_metrics(run, synthetic_metrics(2))
    return run
