"""Energy-based training of a flow by reverse Kullback-Leibler divergence (no data needed).

The loss is ``E_q[beta U_train(x) + ln q(x)]`` with the softened training energy, an upper
bound on ``-ln Z`` (of the region the flow covers) that the flow minimises with Adam, a
step-decay learning-rate schedule and global-norm gradient clipping. This module is the
training loop on an explicit ``TrainState`` pytree; it reads and writes no files (the run
directory is ``freeflow.workflows.train``'s business, through ``freeflow.rundir``).

Training is data-parallel over every JAX device: each step draws one PRNG key per sample from
``fold_in(seed, step)``, the batch of keys is split across the devices of a one-axis mesh, and
the gradient mean is reduced by XLA. The random numbers therefore do not depend on how many
devices there are, and runs on 1 and on 2 devices agree up to float summation order. Across
hosts, call ``jax.distributed.initialize()`` first in every process; ``jax.devices()`` then
lists the devices of all hosts and the same code shards over them.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from freeflow.estimators.conventions import beta_f_from_flow_log_z, multiplicity
from freeflow.estimators.lfep import lfep
from freeflow.flows.model import FlowModel
from freeflow.flows.works import model_works
from freeflow.parallel import batch_mesh, batch_sharding, decided_by_process_0, replicated
from freeflow.physics.memory import check_program_memory
from freeflow.physics.system import System
from freeflow.progress import progress_bar, showing
from freeflow.training.config import TrainingConfig


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar


class TrainingDiverged(RuntimeError):
    """The loss or its gradient stopped being finite."""


def learning_rate_schedule(config: TrainingConfig):
    """Step -> learning rate: a linear ramp over ``warmup_steps``, then step decays."""
    decays = optax.piecewise_constant_schedule(
        config.learning_rate, {int(s): config.decay_factor for s in config.decay_steps})
    if not config.warmup_steps:
        return decays
    # Adam moves every parameter by about the learning rate from its first step on, whatever
    # the gradient's size; ramping up keeps a flow that starts close to the target close.
    return lambda step: decays(step) * jnp.minimum(1.0, (step + 1) / config.warmup_steps)


def optimizer(config: TrainingConfig) -> optax.GradientTransformation:
    """Adam with a warm-up and step-decay schedule, after clipping the gradient's global norm."""
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                       optax.adam(learning_rate_schedule(config)))


def check_devices(config: TrainingConfig):
    """Refuse a batch that the devices of ``batch_mesh`` cannot split evenly."""
    devices = batch_mesh().size
    if config.batch_size % devices:
        raise ValueError(f"batch size {config.batch_size} must be a multiple of the number of "
                         f"devices ({devices}); use --batch-size "
                         f"{max(devices, config.batch_size // devices * devices)}")


def place_state(state: TrainState) -> TrainState:
    """``state`` replicated over ``batch_mesh``, the sharding the training step returns, so
    that the step's first call compiles the same program as every later one."""
    return jax.device_put(state, replicated(batch_mesh()))


def make_step(model: FlowModel, system: System, config: TrainingConfig, optim, *,
              donate: bool = True):
    """A jitted ``(state, seed_key) -> (state, metrics)`` sharded over all local devices.

    ``donate`` lets XLA write the new state into the old one's buffers (the caller must not
    reuse the state it passed in); ``False`` exists to time the two side by side. On a 2-core
    CPU donation bought nothing measurable (an ``lj_32`` step of the ``cpu`` preset took 0.336
    s donated and 0.330 s not; docs/benchmarks.md, "Flow model"); on an accelerator it saves a
    copy of the parameters and Adam moments in device memory.
    """
    beta = system.beta
    energy = system.energy_fn(softened=True)
    mesh = batch_mesh()
    check_devices(config)
    batch = batch_sharding(mesh)
    everywhere = replicated(mesh)

    def sample_one(params, key):
        x, log_q = model.sample_and_log_prob(params, key, 1)
        return x[0], log_q[0]

    def loss_fn(params, keys):
        keys = jax.lax.with_sharding_constraint(keys, batch)
        x, log_q = jax.vmap(sample_one, in_axes=(None, 0))(params, keys)
        if config.gradient_estimator == "path":
            # The same value of ln q, whose gradient reaches the parameters only through the
            # samples x: the direct (score) term has zero mean but a variance that does not
            # vanish even when q equals the target.
            log_q_path = model.log_prob(jax.lax.stop_gradient(params), x)
            log_q = log_q_path + jax.lax.stop_gradient(log_q - log_q_path)
        work = beta * energy(x) + log_q
        return jnp.mean(work), work

    def step(state: TrainState, seed_key):
        keys = jax.random.split(jax.random.fold_in(seed_key, state.step), config.batch_size)
        (loss, work), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, keys)
        updates, opt_state = optim.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        log_w = -work
        log_mean_w = jax.nn.logsumexp(log_w) - jnp.log(work.shape[0])
        ess = jnp.exp(2 * jax.nn.logsumexp(log_w) - jax.nn.logsumexp(2 * log_w)) / work.shape[0]
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm(grads))
        metrics = {"loss": loss, "ess": ess, "log_z": log_mean_w,
                   "grad_norm": optax.global_norm(grads), "finite": finite}
        return TrainState(params, opt_state, state.step + 1), metrics

    return jax.jit(step, in_shardings=(everywhere, everywhere),
                   out_shardings=(everywhere, everywhere),
                   donate_argnums=(0,) if donate else ())


def compile_step(model: FlowModel, system: System, config: TrainingConfig, state: TrainState):
    """``make_step`` compiled ahead of time for the shapes of ``state``, refused before it runs
    when XLA's buffer assignment for one step does not fit the devices' memory
    (``freeflow.physics.memory.check_program_memory``, a ``ValueError``)."""
    step = make_step(model, system, config, optimizer(config))
    compiled = step.lower(place_state(state), jax.random.PRNGKey(config.seed + 1)).compile()
    check_program_memory(
        compiled, f"{system.name}: a training step of {config.batch_size} configurations of "
        f"N = {system.num_particles}", "use a smaller --batch-size or model, or more devices")
    return compiled


def init_state(model: FlowModel, config: TrainingConfig, optim) -> TrainState:
    """Fresh parameters (seeded by ``config.seed``), optimiser state and step 0."""
    params = model.init(jax.random.PRNGKey(config.seed))
    return TrainState(params, optim.init(params), jnp.asarray(0, jnp.int32))


def make_evaluator(model: FlowModel, system: System, config: TrainingConfig):
    """``(params, step) -> record``: LFEP on the exact energy with fixed keys (reproducible)."""
    m = multiplicity(system)  # the default (literature's) counting

    def evaluate(params, step):
        with showing(False):  # a few seconds inside training's own bar
            work = model_works(model, params, system, jax.random.PRNGKey(10_000 + step),
                               config.eval_samples, config.batch_size)
        result = lfep(work, system.num_particles, reference_length=system.units.reference_length,
                      multiplicity=m, system=system.name, bootstrap=0)
        return {"eval_beta_f_per_particle": result.value, "eval_ess": result.ess,
                "eval_samples": result.num_samples}

    return evaluate


def fit(model: FlowModel, system: System, config: TrainingConfig, state: TrainState, *,
        on_step: Callable[[TrainState, dict], None] | None = None,
        max_wall_time: float | None = None, compiled=None) -> TrainState:
    """Train from ``state`` up to ``config.num_steps`` steps and return the final state.

    Args:
      on_step: ``on_step(state, record)`` after every step, with the new state and the step's
        metrics record (``step``, ``loss``, ``ess``, ``grad_norm``,
        ``beta_f_per_particle_batch``, ``time``, and the LFEP evaluation every
        ``eval_every`` steps). It may raise to stop training.
      max_wall_time: return early after this many seconds.
      compiled: the step ``compile_step`` returned for these arguments; ``None`` compiles
        it (when any step is left).

    Raises:
      TrainingDiverged: when the loss or the gradient becomes NaN or infinite; the message
        names the step, and the state passed to the last ``on_step`` is the last good one.
      ValueError: from ``compile_step``, for a step the devices' memory cannot hold.
    """
    step_fn = compiled
    if step_fn is None and int(state.step) < config.num_steps:
        step_fn = compile_step(model, system, config, state)
    seed_key = jax.random.PRNGKey(config.seed + 1)
    evaluate = make_evaluator(model, system, config)
    m_lattice = multiplicity(system)
    start_step = int(state.step)
    state = place_state(state)
    n = system.num_particles
    running_log_z = None
    started = time.perf_counter()
    with progress_bar(config.num_steps, f"train {system.name}", "step", initial=start_step,
                      dynamic_ncols=True) as bar:
        for step in range(start_step, config.num_steps):
            # Every process of a multi-process job stops at the same step, by process 0's clock.
            if max_wall_time is not None and decided_by_process_0(
                    time.perf_counter() - started > max_wall_time):
                break
            new_state, m = step_fn(state, seed_key)
            m = jax.device_get(m)
            if not m["finite"]:
                raise TrainingDiverged(
                    f"training of {system.name} diverged at step {step}: loss = {m['loss']}, "
                    f"gradient norm = {m['grad_norm']}")
            state = new_state
            done = step + 1
            running_log_z = (float(m["log_z"]) if running_log_z is None else
                             np.logaddexp(running_log_z + math.log(0.95),
                                          float(m["log_z"]) + math.log(0.05)))
            record = {"step": done, "loss": float(m["loss"]), "ess": float(m["ess"]),
                      "grad_norm": float(m["grad_norm"]),
                      "beta_f_per_particle_batch": beta_f_from_flow_log_z(
                          system, float(m["log_z"]), m_lattice),
                      "time": time.time()}
            if config.eval_every and (done % config.eval_every == 0
                                      or done == config.num_steps):
                record.update(evaluate(state.params, done))
            bar.set_postfix(loss_per_n=f"{record['loss'] / n:.4f}",
                            ess=f"{100 * record['ess']:.1f}%",
                            beta_f=f"{beta_f_from_flow_log_z(system, running_log_z, m_lattice):.5f}",
                            refresh=False)
            bar.update(1)
            if on_step is not None:
                on_step(state, record)
    return state
