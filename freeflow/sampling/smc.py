"""Annealed sequential Monte Carlo between two densities on a periodic box.

Particles start as exact samples of a normalised start density ``q`` (a flow, or its base)
and are carried through the tempered densities

    pi_t(y) ~ q(y)^(1 - t) p(y)^t,        0 = t_0 < t_1 < ... < t_K = 1,

to an unnormalised target ``p`` (``exp(-beta U)``). Each step

1. chooses the next ``t`` adaptively: the largest increment ``delta`` whose incremental
   weights ``G_i = exp(delta l_i)``, ``l = ln p - ln q``, keep the *conditional* effective
   sample size ``(sum_i W_i G_i)^2 / sum_i W_i G_i^2`` at ``target_ess`` (``W``: the current
   normalised weights), solved by blackjax's dichotomy;
2. reweights, ``W_i <- W_i G_i``, and adds ``ln sum_i W_i G_i`` to ``ln Z``;
3. resamples (blackjax's systematic resampling) when the ESS of ``W`` falls below
   ``resample_ess``;
4. moves every particle with ``num_mcmc_steps`` transitions of blackjax's HMC kernel targeting
   ``pi_t``, Metropolis-corrected, so each transition leaves ``pi_t`` invariant. The leapfrog
   step of every transition is set from the population's acceptance in the transition before
   (the population is many independent particles; the kernel applied to a particle never
   depends on that particle's own current state), so it follows the changing width of
   ``pi_t``.

``ln Z = sum_k ln sum_i W_i G_i`` estimates ``ln (Z_p / Z_q) = ln Z_p`` without bias in
``Z`` (Del Moral, Doucet and Jasra 2006); ``ln Z`` itself is biased low by about half its
variance, which the adaptive schedule keeps small. ``R`` independent runs advance together
(a leading axis), so their spread is an honest standard error.

Both densities are functions of one configuration ``y [P, D]`` (length unit, periodic in
``box``); ``ln p`` may be ``-inf`` (outside the target's support) and NaN counts as ``-inf``.
The support of ``p`` must lie inside that of ``q``. This module knows nothing of crystals or
flows: ``freeflow.workflows.smc`` builds the densities of a system.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.checks import check_whole_numbers
from freeflow.parallel import batch_mesh, batch_sharding, to_host
from freeflow.progress import progress_bar
from freeflow.sampling.kernel import STEP_JITTER, hmc_init, hmc_transition

__all__ = ["AnnealConfig", "AnnealResult", "anneal"]

#: Gain of the leapfrog step's update from one transition's mean acceptance to the next:
#: ``ln step += gain (acceptance - target)``.
_STEP_GAIN = 1.0
#: Resolution of the progress bar in the annealing parameter.
_PROGRESS_UNITS = 1000


@dataclasses.dataclass
class AnnealResult:
    """The outcome of ``R`` independent annealing runs of ``n`` particles each.

    Attributes:
      log_z: ``[R]`` float64, each run's estimate of ``ln (Z_p / Z_q)``.
      temperatures: per run, the annealing parameters ``t_1 .. t_K`` (``t_K = 1``).
      final_ess: ``[R]`` the ESS of the final weights as a fraction of ``n`` (before the last
        resampling).
      positions: ``[R, n, ...]`` the final particles, resampled to equal weights: samples of
        ``p`` (wrapped into the box, if any).
      acceptance: mean Metropolis acceptance over all transitions.
      step_sizes: ``[R]`` the last leapfrog step of each run (length unit).
      target_evaluations: evaluations of ``ln p`` with its gradient, all runs.
      start_evaluations: evaluations of ``ln q`` with its gradient, all runs.
      wall_time: seconds.
    """

    log_z: np.ndarray
    temperatures: list
    final_ess: np.ndarray
    positions: np.ndarray
    acceptance: float
    step_sizes: np.ndarray
    num_particles: int
    target_evaluations: int
    start_evaluations: int
    wall_time: float

    @property
    def num_temperatures(self) -> np.ndarray:
        """``[R]`` the number of annealing steps ``K`` of each run."""
        return np.asarray([len(t) for t in self.temperatures])


def _normalise(log_w):
    return log_w - jax.scipy.special.logsumexp(log_w, axis=-1, keepdims=True)


def _conditional_ess(log_w, loglik, delta):
    """``(sum W G)^2 / sum W G^2`` for normalised ``log_w [n]``, ``G = exp(delta l)``."""
    lse = jax.scipy.special.logsumexp
    inc = jnp.where(jnp.isfinite(loglik), delta * loglik, -jnp.inf)
    return jnp.exp(2.0 * lse(log_w + inc) - lse(log_w + 2.0 * inc))


def _next_increment(log_w, loglik, t, target_ess):
    """The increment of one run: the whole remaining way if it keeps the conditional ESS at
    or above ``target_ess``, else the root of ``CESS(delta) = target_ess``."""
    remaining = 1.0 - t
    # Shift by the largest finite value: the CESS is invariant to it and the exponentials stay
    # in range.
    finite = jnp.isfinite(loglik)
    shift = jnp.max(jnp.where(finite, loglik, -jnp.inf))
    centred = jnp.where(finite, loglik - shift, -jnp.inf)

    def excess(delta):
        return _conditional_ess(log_w, centred, delta) - target_ess

    from blackjax.smc.solver import dichotomy  # see _kernels on why blackjax loads late

    delta = dichotomy(excess, 0.0, remaining, eps=1e-6, max_iter=60)
    # dichotomy assumes a root in the interval; take the whole way when none is needed.
    delta = jnp.where(excess(remaining) >= 0.0, remaining, delta)
    return jnp.clip(delta, 1e-12 * remaining, remaining)


@functools.lru_cache(maxsize=16)
def _kernels(log_start: Callable, log_target: Callable, has_box: bool,
             num_integration_steps: int, batch_size: int | None):
    """Jitted (evaluate, init, reweight, transition) for one pair of densities (cached by
    identity)."""
    # blackjax runs a JAX computation when it is imported, which starts JAX's backends and so
    # fixes the number of CPU devices; loading it here keeps ``import freeflow`` from doing
    # that (``freeflow.parallel.split_cpu`` must come first).
    from blackjax.smc.resampling import systematic

    hmc = hmc_transition(num_integration_steps, periodic=has_box)

    def log_target_safe(y):
        value = log_target(y)
        return jnp.where(jnp.isnan(value), -jnp.inf, value)

    def both(y):
        return log_start(y), log_target_safe(y)

    def tempered(t):
        def logdensity(y):
            ls, lt = both(y)
            # t = 1 ignores q entirely (and t = 0 ignores p), also where the other is -inf.
            return jnp.where(t < 1.0, (1.0 - t) * ls, 0.0) + jnp.where(t > 0.0, t * lt, 0.0)
        return logdensity

    def init_one(y, t):
        return hmc_init(y, tempered(t))

    def transition_one(key, state, t, step_size, box):
        return hmc(key, state, tempered(t), step_size, box)

    def map_particles(fn, *args):
        if batch_size is None:
            return jax.vmap(fn)(*args)
        return jax.lax.map(lambda a: fn(*a), args, batch_size=batch_size)

    @jax.jit
    def evaluate(y):
        """``(ln q, ln p)`` of particles ``[M, P, D]``."""
        return map_particles(both, y)

    @jax.jit
    def init(y, t):
        """HMC states of particles ``y [M, P, D]`` at annealing parameters ``t [M]``."""
        return map_particles(init_one, y, t)

    @jax.jit
    def reweight(key, log_w, loglik, t, target_ess, resample_ess):
        """One annealing increment of every run: ``[R, n]`` weights, ``[R]`` t; returns the
        resampling indices, new weights and t, the increments of ln Z and the ESS."""
        done = t >= 1.0
        delta = jax.vmap(_next_increment, in_axes=(0, 0, 0, None))(log_w, loglik, t,
                                                                   target_ess)
        delta = jnp.where(done, 0.0, delta)
        t_new = jnp.where(done, 1.0, jnp.where(delta >= 1.0 - t, 1.0, t + delta))
        inc = jnp.where(jnp.isfinite(loglik), delta[:, None] * loglik, -jnp.inf)
        inc = jnp.where(done[:, None], 0.0, inc)
        step_log_z = jax.scipy.special.logsumexp(log_w + inc, axis=-1)
        log_w = _normalise(log_w + inc)
        ess = 1.0 / jnp.sum(jnp.exp(2.0 * log_w), axis=-1) / log_w.shape[-1]
        n = log_w.shape[-1]
        keys = jax.random.split(key, log_w.shape[0])

        def resample(k, lw):
            return systematic(k, jnp.exp(lw), n)

        index = jax.vmap(resample)(keys, log_w)
        resampled = (ess < resample_ess) & ~done
        index = jnp.where(resampled[:, None], index, jnp.arange(n)[None, :])
        log_w = jnp.where(resampled[:, None], -jnp.log(float(n)), log_w)
        return index, log_w, t_new, step_log_z, ess

    @jax.jit
    def transition(key, states, t, step_size, box):
        """One HMC transition of every particle (``t``, ``step_size``: ``[M]``)."""
        keys = jax.random.split(key, t.shape[0])
        return map_particles(lambda k, s, ti, si: transition_one(k, s, ti, si, box),
                             keys, states, t, step_size)

    return evaluate, init, reweight, transition


@dataclasses.dataclass(frozen=True)
class AnnealConfig:
    """How ``anneal`` moves from the start density to the target; checked on construction.

    Attributes:
      target_ess: conditional ESS fraction each increment keeps (0 < target_ess < 1).
      resample_ess: resample a run when its ESS fraction falls below this (0 < x <= 1).
      mcmc_steps: HMC transitions per particle and temperature (>= 1).
      integration_steps: leapfrog steps per transition (>= 1).
      target_acceptance: mean acceptance the step size is steered to (0 < x < 1).
      max_temperatures: refuse to continue beyond this many increments (a start far from the
        target would otherwise creep towards t = 1 for hours).
      batch_size: particles evaluated together inside one transition (memory); ``None``
        evaluates all of them at once.
    """

    target_ess: float = 0.9
    resample_ess: float = 0.5
    mcmc_steps: int = 5
    integration_steps: int = 8
    target_acceptance: float = 0.65
    max_temperatures: int = 500
    batch_size: int | None = None

    def __post_init__(self):
        if not 0.0 < self.target_ess < 1.0:
            raise ValueError(f"target_ess must be in (0, 1); got {self.target_ess}")
        if not 0.0 < self.resample_ess <= 1.0:
            raise ValueError(f"resample_ess must be in (0, 1]; got {self.resample_ess}")
        if not 0.0 < self.target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must be in (0, 1); got "
                             f"{self.target_acceptance}")
        check_whole_numbers(self, {"mcmc_steps": 1, "integration_steps": 1,
                                   "max_temperatures": 1, "batch_size": 1},
                            optional=("batch_size",))


def _runs_and_particles(y, step_size: float) -> tuple[int, int]:
    """``(R, n)`` of ``anneal``'s start ``[R, n, ...]``, checked with the first step."""
    if y.ndim < 3:
        raise ValueError(f"start_positions must be [runs, particles, ...]; got {y.shape}")
    runs, n = int(y.shape[0]), int(y.shape[1])
    if n < 2 or runs < 1:
        raise ValueError(f"need at least 1 run of at least 2 particles; got {runs} x {n}")
    if not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a positive number; got {step_size}")
    return runs, n


def _initial_population(evaluate, y, runs: int, n: int, step_size: float) -> _Population:
    """Every run at ``t = 0``: equal weights, ``ln Z`` ratio 0, the first step size."""
    ls, lt = evaluate(y)
    return _Population(y=y, loglik=(lt - ls).reshape(runs, n),
                       log_w=jnp.full((runs, n), -math.log(n), jnp.float32),
                       t=jnp.zeros(runs, jnp.float32), log_z=np.zeros(runs),
                       log_step=np.full(runs, math.log(step_size)),
                       temperatures=[[] for _ in range(runs)], final_ess=np.ones(runs))


def anneal(log_start: Callable, log_target: Callable, start_positions, key,
           config: AnnealConfig = AnnealConfig(), *, box=None, step_size: float,
           desc: str = "SMC") -> AnnealResult:
    """Anneal ``R`` independent runs of ``n`` particles from ``q`` to ``p`` (module docstring).

    Args:
      log_start: pure ``ln q(y [P, D]) -> scalar``, normalised, finite wherever ``p > 0``.
        Used as a cache key of the compiled steps (by identity).
      log_target: pure ``ln p(y [P, D]) -> scalar`` up to a constant; ``-inf`` or NaN outside
        its support.
      start_positions: ``[R, n, ...]`` independent samples of ``q``: ``n`` particles for each
        of ``R`` runs, each a configuration (``[P, D]`` in a box, or any shape).
      key: a ``jax.random`` key.
      config: ``AnnealConfig``.
      box: ``[D]`` periodic box edges, or ``None``.
      step_size: the leapfrog step of the first transition (length unit); later ones adapt.
      desc: the label of the progress bar over ``t`` (``freeflow.progress``).

    The ``R n`` particles are split over the devices of ``freeflow.parallel.batch_mesh`` when
    their number is a multiple of the device count; with several processes
    (``jax.distributed``) that mesh spans them, and every process calls ``anneal`` alike.

    Returns:
      ``AnnealResult``. Raises ``ValueError`` for bad arguments and ``FloatingPointError`` if a
      run's weights all vanish (no particle inside the target's support).
    """
    start = time.perf_counter()
    y = jnp.asarray(start_positions, jnp.float32)
    runs, n = _runs_and_particles(y, step_size)
    has_box = box is not None
    box_arr = jnp.asarray(box if has_box else np.ones(y.shape[-1]), jnp.float32)
    kernels = _kernels(log_start, log_target, has_box, config.integration_steps,
                       config.batch_size)
    evaluate = kernels[0]
    flat_shape = (runs * n,) + tuple(y.shape[2:])
    y = y.reshape(flat_shape)
    mesh = batch_mesh()
    if mesh.size > 1 and (runs * n) % mesh.size == 0:
        y = jax.device_put(y, batch_sharding(mesh))

    state = _initial_population(evaluate, y, runs, n, step_size)
    accept_sum, accept_count, evaluations = 0.0, 0, runs * n

    with progress_bar(_PROGRESS_UNITS, desc, "t/1000", leave=False) as bar:
        shown = 0
        while not np.all((t := to_host(state.t)) >= 1.0):
            if len(state.temperatures[0]) >= config.max_temperatures:
                raise RuntimeError(f"{desc}: {config.max_temperatures} temperatures and t = "
                                   f"{float(np.min(t)):.3g} < 1: the start is too far from "
                                   f"the target for this number of particles; train the "
                                   f"flow longer or use more particles")
            key, k_weight, k_move = jax.random.split(key, 3)
            acc = _advance(kernels, (k_weight, k_move), state, box_arr, config, desc)
            accept_sum += float(np.sum(acc))
            accept_count += int(acc.size)
            # Per particle: the HMC initialisation, the leapfrog steps, the final evaluation.
            evaluations += runs * n * (2 + config.mcmc_steps * config.integration_steps)
            done_units = int(_PROGRESS_UNITS * float(np.min(to_host(state.t))))
            bar.update(done_units - shown)
            shown = done_units
            bar.set_postfix(temps=len(state.temperatures[0]),
                            ess=f"{float(np.mean(state.final_ess)):.2f}",
                            acc=f"{float(np.mean(acc)):.2f}")

    positions = _equal_weights(key, state, (runs, n) + flat_shape[1:])
    return AnnealResult(
        log_z=state.log_z, temperatures=[np.asarray(t) for t in state.temperatures],
        final_ess=state.final_ess, positions=positions,
        acceptance=accept_sum / max(accept_count, 1), step_sizes=np.exp(state.log_step),
        num_particles=n, target_evaluations=int(evaluations),
        start_evaluations=int(evaluations), wall_time=time.perf_counter() - start)


@dataclasses.dataclass
class _Population:
    """The particles of every run between two annealing steps (updated in place): positions
    ``y [R n, ...]``, ``loglik = ln p - ln q`` and normalised weights ``log_w`` ``[R, n]``,
    each run's ``t`` ``[R]``, its accumulated ``ln Z`` (float64, host), leapfrog step, the
    temperatures so far and the ESS fraction of the last weights."""

    y: jax.Array
    loglik: jax.Array
    log_w: jax.Array
    t: jax.Array
    log_z: np.ndarray
    log_step: np.ndarray
    temperatures: list
    final_ess: np.ndarray


def _advance(kernels, keys, state: _Population, box, config: AnnealConfig, desc: str):
    """One annealing step of every run: reweight to the next ``t`` (adding to ``ln Z``),
    resample where the ESS fell, move every particle by HMC at its run's ``t``. ``keys``: the
    reweighting's and the move's. Returns the acceptance ``[R n, mcmc_steps]``."""
    evaluate, _, reweight, _ = kernels
    runs, n = state.log_w.shape
    k_weight, k_move = keys
    index, state.log_w, state.t, step_log_z, ess = reweight(
        k_weight, state.log_w, state.loglik, state.t, config.target_ess, config.resample_ess)
    state.log_z += to_host(step_log_z).astype(np.float64)
    if not np.all(np.isfinite(state.log_z)):
        raise FloatingPointError(f"{desc}: every particle of a run left the target's "
                                 f"support (all weights zero)")
    t_host = to_host(state.t)
    state.final_ess = to_host(ess).astype(np.float64)
    for r in range(runs):
        if not state.temperatures[r] or state.temperatures[r][-1] < 1.0:
            state.temperatures[r].append(float(t_host[r]))
    flat_index = (to_host(index) + n * np.arange(runs)[:, None]).reshape(-1)
    state.y, acc = _move_adapting(kernels, k_move, state.y[flat_index], state.t, state.log_w,
                                  state.log_step, box, config.mcmc_steps,
                                  config.target_acceptance)
    ls, lt = evaluate(state.y)
    state.loglik = (lt - ls).reshape(runs, n)
    return acc


def _equal_weights(key, state: _Population, shape) -> np.ndarray:
    """The final particles ``shape = [R, n, ...]`` after one last systematic resampling of
    every run: equal-weight samples of the target."""
    from blackjax.smc.resampling import systematic

    runs, n = shape[:2]
    keys = jax.random.split(key, runs)
    index = to_host(jax.vmap(lambda k, lw: systematic(k, jnp.exp(lw), n))(keys, state.log_w))
    positions = to_host(state.y).reshape(shape)
    index = index.reshape(index.shape + (1,) * (positions.ndim - 2))
    return np.take_along_axis(positions, index, axis=1)


def _move_adapting(kernels, key, y, t, log_w, log_step, box, num_steps: int,
                   target_acceptance: float):
    """``num_steps`` HMC transitions of every particle at its run's ``t``. Each transition's
    leapfrog step (per run; ``log_step [R]`` is updated in place) follows the weighted mean
    acceptance of the transition before. Returns the particles and the acceptance ``[M,
    num_steps]``."""
    _, init, _, transition = kernels
    runs, n = log_w.shape
    weights = to_host(jnp.exp(log_w)).astype(np.float64)
    t_flat = jnp.repeat(t, n)
    states = init(y, t_flat)
    accs = []
    for s in range(num_steps):
        k_step, k_jitter = jax.random.split(jax.random.fold_in(key, s))
        # One factor per run, drawn as freeflow.sampling.kernel.jittered does, applied on the
        # host in float64 like the rest of the step's adaptation.
        jitter = to_host(jax.random.uniform(k_jitter, (runs,), minval=1 - STEP_JITTER,
                                               maxval=1 + STEP_JITTER))
        steps = jnp.asarray(np.repeat(np.exp(log_step) * jitter, n), jnp.float32)
        states, acc = transition(k_step, states, t_flat, steps, box)
        acc = to_host(acc).astype(np.float64)
        # Weighted by the particles' weights: a particle of weight zero says nothing of pi_t.
        log_step += _STEP_GAIN * (np.sum(weights * acc.reshape(runs, n), axis=1)
                                  - target_acceptance)
        accs.append(acc)
    return states.position, np.stack(accs, axis=1)
