"""Reference sampling of Boltzmann densities ``exp(-beta U)`` by Metropolis-corrected HMC.

Many independent chains run in lock step (``jax.vmap`` over chains, ``jax.lax.scan`` over
steps, one ``jax.jit`` around each block of steps) with blackjax's Hamiltonian Monte Carlo
kernel. Every transition is Metropolis-corrected, so production samples are exact MCMC for
the given energy; the only approximation is finite run length, which the reported integrated
autocorrelation time quantifies.

Conventions (the same as the flow model's, ``freeflow.flows.model``):

* positions are Cartesian ``[N, 3]`` in the system's length unit, wrapped into ``[0, L)``;
* particle 0 is held at its lattice site (``fixed``), the ``N - 1`` others move. The targets
  are translation invariant, so nothing is lost: ``Z / N! = V Z_fixed / N`` (see
  ``freeflow.estimators.conventions`` for the counting);
* energies are in the potential's energy unit, ``beta`` in its inverse.

Step size: during warm-up ``log(step)`` follows a Robbins-Monro recursion driven by the
acceptance probability averaged over chains, towards ``target_acceptance``; the final step size
is the average of ``log(step)`` over the last quarter of warm-up. It is then frozen (up to an
independent random jitter per transition, ``freeflow.sampling.kernel.jittered``) so that
production is a fixed, exact Markov kernel. The transition itself is
``freeflow.sampling.kernel.hmc_transition``, the one SMC uses too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.checks import check_whole_numbers
from freeflow.parallel import batch_mesh, batch_sharding, to_host
from freeflow.progress import progress_bar
from freeflow.sampling.kernel import hmc_init, hmc_transition, jittered

__all__ = ["QUARTER_PERIOD", "Boltzmann", "HMCConfig", "Preconditioner", "SampleResult",
           "sample", "sample_system", "integrated_autocorrelation_time"]

#: Warm-up recursion: log(step) += gain_t * (acceptance_t - target), gain_t = 1.5 / sqrt(1 + t),
#: but never below this floor so late warm-up can still follow a drifting optimum.
_MIN_GAIN = 0.02
#: Only show a progress bar when a run is expected to take more than a few transitions.
_PROGRESS_MIN_STEPS = 200
#: A quarter of the period (2 pi) of every harmonic mode in a harmonic crystal's
#: coordinates: the trajectory length after which the energy decorrelates fastest.
QUARTER_PERIOD = math.pi / 2
#: Production's leapfrog steps set by ``HMCConfig.trajectory`` are at most this many times
#: warm-up's.
MAX_STEPS_FACTOR = 10
#: The first leapfrog step in a preconditioner's coordinates (a harmonic crystal's modes have
#: period 2 pi there); warm-up adapts it.
WHITENED_STEP_SIZE = 0.2


@dataclasses.dataclass
class SampleResult:
    """Samples of ``exp(-beta U)`` from ``num_chains`` chains.

    Attributes:
      positions: ``[num_chains * num_samples, N, 3]`` float32 (chain-major: all samples of
        chain 0 first), wrapped into the box; ``None`` when not kept.
      energies: ``[num_chains * num_samples]`` energies U (energy unit) of the samples.
      observables: ``[num_chains * num_samples, ...]`` values of the ``observables`` function
        at the samples, or ``None``.
      acceptance: mean Metropolis acceptance probability during production.
      tau: integrated autocorrelation time of the energy, in saved samples (``>= 1``;
        multiply by ``thin`` for transitions). ``num_chains * num_samples / tau`` is the
        effective sample size.
      step_size: the frozen leapfrog step (length unit, unit mass; with a preconditioner,
        in its coordinates).
      num_integration_steps: leapfrog steps per production transition.
      energy_evaluations: evaluations of the energy with its gradient, warm-up included
        (``num_chains * (1 + transitions * leapfrog steps)``).
      observable_evaluations: evaluations of the ``observables`` function.
      final_positions: ``[num_chains, N, 3]`` the last state of every chain (warm start).
    """

    positions: np.ndarray | None
    energies: np.ndarray
    observables: np.ndarray | None
    acceptance: float
    tau: float
    step_size: float
    energy_evaluations: int
    observable_evaluations: int
    num_chains: int
    num_samples: int
    num_warmup: int
    thin: int
    num_integration_steps: int
    final_positions: np.ndarray
    wall_time: float

    def by_chain(self, values: np.ndarray) -> np.ndarray:
        """Reshape per-sample values ``[C * S, ...]`` to ``[C, S, ...]``."""
        values = np.asarray(values)
        return values.reshape((self.num_chains, self.num_samples) + values.shape[1:])

    @property
    def effective_sample_size(self) -> float:
        return self.num_chains * self.num_samples / self.tau

    def mean_and_stderr(self, values: np.ndarray | None = None) -> tuple[float, float]:
        """Mean of per-sample scalars (default: the energies) and its standard error,
        ``sqrt(var * tau_values / (C * S))`` with the values' own autocorrelation time."""
        values = self.energies if values is None else np.asarray(values)
        chains = self.by_chain(values)
        tau = integrated_autocorrelation_time(chains)
        return float(np.mean(values)), float(np.sqrt(np.var(values) * tau / values.size))

    def summary(self) -> dict:
        return {"acceptance": self.acceptance, "tau": self.tau, "step_size": self.step_size,
                "energy_evaluations": self.energy_evaluations, "num_chains": self.num_chains,
                "num_samples": self.num_samples, "thin": self.thin,
                "num_warmup": self.num_warmup, "wall_time": self.wall_time}


def integrated_autocorrelation_time(x, window_factor: float = 5.0) -> float:
    """Integrated autocorrelation time of a scalar series, ``1 + 2 sum_t rho(t)``.

    Args:
      x: ``[num_chains, num_steps]`` (or ``[num_steps]``) samples; chains are assumed to be
        independent and to share one stationary distribution, so their autocovariances
        (about the grand mean) are averaged.
      window_factor: Sokal's automatic window: sum up to the smallest lag ``M`` with
        ``M >= window_factor * tau(M)``.

    Returns:
      tau in units of the series' spacing; 1 for uncorrelated samples, never below 1 (values
      below 1 from anticorrelated noise would overstate the information content).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    num_chains, n = x.shape
    if n < 2:
        return 1.0
    x = x - x.mean()
    # Autocovariance by FFT, zero-padded to avoid circular wrap-around.
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(x, n=size, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n].mean(axis=0)
    acov /= n - np.arange(n)  # unbiased per-lag normalisation
    if acov[0] <= 0:
        return 1.0
    rho = acov / acov[0]
    tau = 1.0
    for lag in range(1, n):
        tau += 2.0 * rho[lag]
        if lag >= window_factor * tau:
            break
    return float(max(tau, 1.0))


# -- the jitted kernels ------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _kernels(energy_fn: Callable, observables: Callable | None, mobile: tuple[int, ...],
             has_box: bool, num_integration_steps: int, preconditioned: bool = False):
    """Build (init, warmup_block, production_block) for one energy function.

    Everything that changes between calls (beta, box, step size, energy arguments, fixed
    particles' positions, a preconditioner's colouring) is a traced argument, so a whole MBAR
    path of states compiles once. A chain's state is the mobile rows ``q [M, D]``, or with a
    preconditioner their linear coordinates ``u [M * D]`` (``Preconditioner``).
    """
    mobile_idx = np.asarray(mobile, dtype=np.int32)
    # Linear coordinates are not periodic: the positions they give are wrapped instead.
    hmc = hmc_transition(num_integration_steps, periodic=has_box and not preconditioned)

    def full(q, template, colour, box):
        # The mobile particles inserted into the per-chain template holding the fixed ones
        # (with a preconditioner, the reference positions the coordinates are offsets from).
        if not preconditioned:
            return template.at[mobile_idx].set(q)
        moved = template.at[mobile_idx].add((q @ colour).reshape(len(mobile_idx), -1))
        return jnp.mod(moved, box) if has_box else moved

    def every_chain(q, templates, colour, box):
        return jax.vmap(full, in_axes=(0, 0, None, None))(q, templates, colour, box)

    def make_logdensity(template, colour, beta, box, args):
        def logdensity(q):
            return -beta * energy_fn(full(q, template, colour, box), *args)
        return logdensity

    def one_step(key, state, template, colour, step_size, beta, box, args):
        return hmc(key, state, make_logdensity(template, colour, beta, box, args), step_size,
                   box)

    def step_all(key, states, templates, colour, step_size, beta, box, args):
        keys = jax.random.split(key, templates.shape[0])
        return jax.vmap(one_step, in_axes=(0, 0, 0, None, None, None, None, None))(
            keys, states, templates, colour, step_size, beta, box, args)

    @jax.jit
    def init(q, templates, colour, beta, box, args):
        def one(q, template):
            return hmc_init(q, make_logdensity(template, colour, beta, box, args))

        return jax.vmap(one)(q, templates)

    @functools.partial(jax.jit, static_argnames=("num_steps",))
    def warmup_block(key, states, templates, colour, log_step, t, beta, box, args, target,
                     num_steps):
        def body(carry, key):
            states, log_step, t = carry
            states, acc = step_all(key, states, templates, colour, jnp.exp(log_step), beta,
                                   box, args)
            mean_acc = jnp.mean(acc)
            gain = jnp.maximum(1.5 / jnp.sqrt(1.0 + t), _MIN_GAIN)
            log_step = log_step + gain * (mean_acc - target)
            return (states, log_step, t + 1.0), (log_step, mean_acc)

        keys = jax.random.split(key, num_steps)
        (states, log_step, t), (trace, accs) = jax.lax.scan(body, (states, log_step, t), keys)
        return states, log_step, t, trace, accs

    @functools.partial(jax.jit, static_argnames=("num_saved", "thin", "keep_positions"))
    def production_block(key, states, templates, colour, step_size, beta, box, args,
                         num_saved, thin, keep_positions):
        def transition(states, key):
            key_jitter, key_step = jax.random.split(key)
            states, acc = step_all(key_step, states, templates, colour,
                                   jittered(key_jitter, step_size), beta, box, args)
            return states, jnp.mean(acc)

        def saved(states, key):
            states, accs = jax.lax.scan(transition, states, jax.random.split(key, thin))
            x = every_chain(states.position, templates, colour, box)
            out = {"energy": -states.logdensity / beta, "acceptance": jnp.mean(accs)}
            if keep_positions:
                out["positions"] = x
            if observables is not None:
                out["observables"] = jax.vmap(lambda y: observables(y, *args))(x)
            return states, out

        return jax.lax.scan(saved, states, jax.random.split(key, num_saved))

    return init, warmup_block, production_block, jax.jit(every_chain)


def _progress(total, desc, enabled):
    return progress_bar(total, desc, "step", enabled, leave=False, dynamic_ncols=True)


@dataclasses.dataclass(frozen=True)
class HMCConfig:
    """How HMC chains run; checked on construction.

    Attributes:
      num_chains: independent chains, run in lock step.
      num_samples: samples saved per chain, one every ``thin`` transitions.
      num_warmup: transitions per chain before production (step-size adaptation, burn-in).
      thin: transitions per saved sample.
      num_integration_steps: leapfrog steps per transition.
      step_size: initial leapfrog step (length unit); ``None``: a hundredth of the mean
        interparticle spacing in a periodic box, else 0.1. Warm-up adapts it; with no warm-up
        it is the step production uses.
      target_acceptance: mean Metropolis acceptance probability warm-up aims at.
      block_size: saved samples (or warm-up transitions) per compiled block; only the
        progress reporting's granularity.
      trajectory: with a ``Preconditioner`` only: production's trajectories last this long
        in its coordinates, ``max(1, round(trajectory / step))`` leapfrog steps of the frozen
        step, at most ``MAX_STEPS_FACTOR`` times ``num_integration_steps`` (which warm-up
        uses). ``QUARTER_PERIOD`` turns every harmonic mode by a quarter of its period,
        which decorrelates the energy fastest: a whole period or half of one brings it back. ``None``: ``num_integration_steps``
        throughout.
    """

    num_chains: int = 16
    num_samples: int = 100
    num_warmup: int = 200
    thin: int = 1
    num_integration_steps: int = 8
    step_size: float | None = None
    target_acceptance: float = 0.7
    block_size: int = 50
    trajectory: float | None = None

    def __post_init__(self):
        check_whole_numbers(self, {"num_chains": 1, "num_samples": 1, "num_warmup": 0,
                                   "thin": 1, "num_integration_steps": 1, "block_size": 1})
        if self.step_size is not None and not (math.isfinite(self.step_size)
                                               and self.step_size > 0):
            raise ValueError(f"step_size must be a positive length; got {self.step_size!r}")
        if self.trajectory is not None and not (isinstance(self.trajectory, (int, float))
                                                and math.isfinite(self.trajectory)
                                                and self.trajectory > 0):
            raise ValueError(f"trajectory must be a positive length in the preconditioner's "
                             f"coordinates, or None; got {self.trajectory!r}")
        if not 0.0 < self.target_acceptance < 1.0:
            raise ValueError(f"target_acceptance must be in (0, 1); got "
                             f"{self.target_acceptance!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class Preconditioner:
    """Linear coordinates in which HMC runs: the mobile rows are ``reference + (u @ colour)``
    (reshaped to ``[M, D]``), ``u [M * D]``.

    Unit mass in ``u`` is the mass matrix ``(colour^T colour)^-1`` in the positions. With the
    colouring of a harmonic crystal (``freeflow.physics.harmonic.GaussianCrystal.colour``, at
    the density's ``beta``) every normal mode of the crystal has the same period, 2 pi, so
    that one trajectory moves the soft and the stiff modes alike; with unit mass in the
    positions, the step is set by the stiffest mode and the soft ones crawl. The map is
    linear, so the density of the positions is unchanged.

    Attributes:
      reference: ``[P, D]`` the positions ``u = 0`` stands for (a crystal's sites, the fixed
        rows included).
      colour: ``[M * D, M * D]``; whiten: its inverse (chains start at ``u`` of their initial
        positions, displacements from ``reference`` by the minimum image in a periodic box).
    ``freeflow.workflows.frame.harmonic_preconditioner`` builds a crystal's.
    """

    reference: np.ndarray
    colour: np.ndarray
    whiten: np.ndarray

    def scaled(self, factor: float) -> "Preconditioner":
        """The same coordinates stretched by ``factor`` (a harmonic crystal at ``T`` from one
        at ``T_0``: ``factor = sqrt(T / T_0)``)."""
        return Preconditioner(self.reference, self.colour * factor, self.whiten / factor)


@dataclasses.dataclass(frozen=True)
class Boltzmann:
    """The density ``exp(-beta U(x, *energy_args))`` that HMC samples.

    Attributes:
      energy_fn: pure ``U(positions [P, D], *energy_args) -> scalar`` (energy unit); a
        configuration it returns NaN for is a rejected proposal. It is a cache key of the
        compiled kernels (by identity): pass the same function object to reuse them
        (``System.energy_fn`` returns the same object for the same arguments). For a crystal
        pass ``System.energy_fn(strays="nan")``: the chains run under ``vmap``, where an
        energy that recomputes strays would evaluate its fallback for every proposal.
      beta: inverse temperature (inverse energy unit).
      box: ``[D]`` edge lengths of a periodic box (positions are wrapped into ``[0, L)``), or
        ``None``: no periodicity.
      fixed: boolean ``[P]``; fixed rows keep their initial positions (particle 0 of a
        crystal, say). ``None``: everything moves.
      energy_args: extra (traced) arguments of ``energy_fn`` (and of the observables), the
        coupling parameter of an intermediate state, say; changing them does not recompile.
      preconditioner: ``Preconditioner`` (HMC in its linear coordinates) or ``None`` (unit
        mass in the positions). Another one of the same shape does not recompile.
    """

    energy_fn: Callable
    beta: float
    box: Any = None
    fixed: Any = None
    energy_args: tuple = ()
    preconditioner: Preconditioner | None = None


def sample(density: Boltzmann, initial_positions, key, config: HMCConfig = HMCConfig(), *,
           observables: Callable | None = None, keep_positions: bool = True,
           desc: str = "sampling") -> SampleResult:
    """Sample ``density`` with ``config.num_chains`` Metropolis-corrected HMC chains.

    Args:
      density: ``Boltzmann`` (energy, beta, box, fixed rows, energy arguments).
      initial_positions: ``[P, D]`` (all chains start there) or ``[num_chains, P, D]``.
        For a crystal, ``P = N`` particles and ``D = 3``.
      key: a ``jax.random`` key.
      config: ``HMCConfig``.
      observables: optional pure ``f(positions [P, D], *energy_args) -> array`` recorded at
        every saved sample (e.g. the components of an interpolated energy).
      keep_positions: return all sample positions (``[C * S, P, D]``, memory!).
      desc: the progress bar's label (``freeflow.progress``: shown for long runs only).

    The chains are split over every device of ``freeflow.parallel.batch_mesh`` when their
    number is a multiple of the device count (otherwise they run on the default device); with
    several processes (``jax.distributed``) that mesh spans them, every process calls
    ``sample`` alike and gets the whole result.

    Returns:
      ``SampleResult``.
    """
    start = time.perf_counter()
    c = config
    if c.trajectory is not None and density.preconditioner is None:
        raise ValueError("HMCConfig.trajectory is a length in a preconditioner's coordinates; "
                         "give the density a preconditioner or leave trajectory None")
    box = density.box
    x0, mobile = _initial_chains(initial_positions, c.num_chains, density.fixed, box)
    has_box = box is not None
    box_arr = jnp.asarray(box if has_box else np.ones(x0.shape[-1]), jnp.float32)
    templates, colour, q0 = _chain_coordinates(density.preconditioner, x0, mobile, box_arr,
                                               has_box)
    mesh = batch_mesh()
    if mesh.size > 1 and c.num_chains % mesh.size == 0:
        # The chains are independent: split them over the devices, as training splits its
        # batch; every later array of the chains inherits this sharding.
        templates, q0 = jax.device_put((templates, q0), batch_sharding(mesh))
    step_size = c.step_size
    if step_size is None:
        step_size = (WHITENED_STEP_SIZE if density.preconditioner is not None
                     else _default_step_size(box, x0.shape[1], x0.shape[-1]))
    beta_arr = jnp.float32(density.beta)
    args = tuple(jnp.asarray(a) for a in density.energy_args)

    init, warmup_block, production_block, positions = _kernels(
        density.energy_fn, observables, mobile, has_box, int(c.num_integration_steps),
        density.preconditioner is not None)
    states = init(q0, templates, colour, beta_arr, box_arr, args)
    if not np.all(np.isfinite(to_host(states.logdensity))):
        raise FloatingPointError("the energy is not finite at the initial positions")

    total_steps = c.num_warmup + c.num_samples * c.thin
    show = None if total_steps >= _PROGRESS_MIN_STEPS else False
    key_warm, key_prod = jax.random.split(key)
    fixed_args = (templates, colour, beta_arr, box_arr, args)
    with _progress(total_steps, desc, show) as bar:
        states, frozen = _warm_up(warmup_block, states, key_warm, fixed_args, step_size,
                                  c.num_warmup, float(c.target_acceptance), c.block_size, bar)
        steps = int(c.num_integration_steps)
        if c.trajectory is not None:
            # Capped: a step that warm-up shrank far (a poor match, many rejections) must not
            # buy thousands of leapfrog steps per transition.
            steps = min(max(1, round(c.trajectory / float(frozen))),
                        MAX_STEPS_FACTOR * int(c.num_integration_steps))
            _, _, production_block, positions = _kernels(
                density.energy_fn, observables, mobile, has_box, steps, True)
        states, out = _produce(production_block, states, key_prod, fixed_args, frozen,
                               c.num_samples, int(c.thin), bool(keep_positions), c.block_size,
                               bar)

    def chain_major(a):
        # scan stacks [S, C, ...]; store chain-major [C * S, ...].
        a = np.swapaxes(a, 0, 1)
        return a.reshape((-1,) + a.shape[2:])

    energies_cs = np.swapaxes(out["energy"], 0, 1)  # [C, S]
    return SampleResult(
        positions=chain_major(out["positions"]) if keep_positions else None,
        energies=energies_cs.reshape(-1),
        observables=chain_major(out["observables"]) if observables is not None else None,
        acceptance=float(np.mean(out["acceptance"])),
        tau=integrated_autocorrelation_time(energies_cs),
        step_size=float(frozen),
        energy_evaluations=int(c.num_chains * (1 + c.num_warmup * c.num_integration_steps
                                               + c.num_samples * c.thin * steps)),
        observable_evaluations=(int(c.num_chains * c.num_samples)
                                if observables is not None else 0),
        num_chains=c.num_chains, num_samples=c.num_samples, num_warmup=c.num_warmup,
        thin=c.thin, num_integration_steps=steps,
        final_positions=to_host(positions(states.position, templates, colour, box_arr)),
        wall_time=time.perf_counter() - start)


def _chain_coordinates(preconditioner, x0, mobile, box, has_box: bool):
    """``(templates [C, P, D], colour, q0)``: what ``_kernels`` inserts the chains' mobile
    rows into, the colouring (a placeholder without a preconditioner) and the chains' first
    states (the mobile rows, or their linear coordinates)."""
    mobile_idx = np.asarray(mobile)
    if preconditioner is None:
        return x0, jnp.zeros((), jnp.float32), x0[:, mobile_idx]
    reference = jnp.asarray(preconditioner.reference, jnp.float32)
    size = len(mobile) * x0.shape[-1]
    if (reference.shape != x0.shape[1:]
            or np.shape(preconditioner.colour) != (size, size)
            or np.shape(preconditioner.whiten) != (size, size)):
        raise ValueError(f"the preconditioner's reference must be {tuple(x0.shape[1:])} and its "
                         f"colour and whiten [{size}, {size}]; got "
                         f"{tuple(reference.shape)}, {np.shape(preconditioner.colour)} and "
                         f"{np.shape(preconditioner.whiten)}")
    offsets = (x0 - reference)[:, mobile_idx]
    if has_box:  # the nearest periodic image (this layer knows boxes, not crystals)
        offsets = offsets - box * jnp.round(offsets / box)
    q0 = offsets.reshape(x0.shape[0], -1) @ jnp.asarray(preconditioner.whiten, jnp.float32)
    templates = jnp.broadcast_to(reference, x0.shape)
    return templates, jnp.asarray(preconditioner.colour, jnp.float32), q0


def _initial_chains(initial_positions, num_chains: int, fixed, box):
    """``(x0 [C, P, D] float32, wrapped into the box; mobile row indices)``, validated."""
    x0 = jnp.asarray(initial_positions, jnp.float32)
    if x0.ndim == 2:
        x0 = jnp.broadcast_to(x0, (num_chains,) + x0.shape)
    if x0.ndim != 3 or x0.shape[0] != num_chains:
        raise ValueError(f"initial_positions must be [P, D] or [num_chains={num_chains}, P, D]; "
                         f"got {tuple(x0.shape)}")
    num_points = x0.shape[1]
    fixed = np.zeros(num_points, bool) if fixed is None else np.asarray(fixed, bool)
    if fixed.shape != (num_points,):
        raise ValueError(f"fixed must be a boolean mask of shape [{num_points}]")
    mobile = tuple(int(i) for i in np.flatnonzero(~fixed))
    if not mobile:
        raise ValueError("nothing to sample: every particle is fixed")
    if box is not None:
        x0 = jnp.mod(x0, jnp.asarray(box, jnp.float32))
    return x0, mobile


def _default_step_size(box, num_points: int, dim: int) -> float:
    """A hundredth of the mean interparticle spacing in a periodic box, else 0.1."""
    if box is None:
        return 0.1
    return 0.01 * float(np.prod(np.asarray(box)) / num_points) ** (1.0 / dim)


def _warm_up(warmup_block, states, key, fixed_args, step_size: float, num_warmup: int,
             target_acceptance: float, block_size: int, bar):
    """Adapt the step size over ``num_warmup`` transitions; return the states and the frozen
    step (the mean of ``log(step)`` over the last quarter of warm-up)."""
    templates, colour, beta, box, args = fixed_args
    log_step = jnp.float32(np.log(step_size))
    t = jnp.float32(0.0)
    trace = []
    done = 0
    while done < num_warmup:
        n = min(block_size, num_warmup - done)
        states, log_step, t, tr, accs = warmup_block(
            jax.random.fold_in(key, done), states, templates, colour, log_step, t, beta, box,
            args, target_acceptance, num_steps=n)
        trace.append(to_host(tr))
        done += n
        bar.update(n)
        bar.set_postfix(step=f"{float(np.exp(log_step)):.3g}",
                        acc=f"{float(np.mean(to_host(accs))):.2f}")
    if not trace:
        return states, jnp.float32(np.exp(float(np.log(step_size))))
    trace = np.concatenate(trace)
    return states, jnp.float32(np.exp(float(np.mean(trace[-max(1, len(trace) // 4):]))))


def _produce(production_block, states, key, fixed_args, step, num_samples: int, thin: int,
             keep_positions: bool, block_size: int, bar):
    """``num_samples`` saved samples per chain at the frozen ``step``: the states and the
    saved arrays (``[S, C, ...]``)."""
    templates, colour, beta, box, args = fixed_args
    chunks = []
    done = 0
    while done < num_samples:
        n = min(block_size, num_samples - done)
        states, out = production_block(jax.random.fold_in(key, done), states, templates,
                                       colour, step, beta, box, args, num_saved=n, thin=thin,
                                       keep_positions=keep_positions)
        chunks.append(jax.tree.map(to_host, out))
        done += n
        bar.update(n * thin)
        bar.set_postfix(step=f"{float(step):.3g}",
                        acc=f"{float(np.mean(chunks[-1]['acceptance'])):.2f}")
    return states, {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def sample_system(system, key, config: HMCConfig = HMCConfig(thin=2), *,
                  energy_fn: Callable | None = None, initial_positions=None,
                  fixed_particle: int | None = 0,
                  preconditioner: Preconditioner | None = None,
                  **kwargs: Any) -> SampleResult:
    """Sample a ``freeflow`` system's Boltzmann density at its temperature.

    Particle ``fixed_particle`` (default 0, the one at the box corner) stays on its lattice
    site; ``None`` lets every particle move. ``energy_fn`` defaults to the exact energy
    ``system.energy_fn(strays="nan")``: a proposal that takes a particle off its site (further
    than half the nearest-neighbour distance, where the site list stops being exact) is
    rejected, which confines the chains to the crystal; any pure ``[N, 3] -> scalar`` of the
    same system (an intermediate state of a path, say) can be passed instead. Chains start on
    the lattice unless ``initial_positions`` (``[N, 3]`` or ``[num_chains, N, 3]``) is given.
    ``config``: ``HMCConfig`` (default: thinned by 2). ``preconditioner``: HMC in its
    coordinates (``freeflow.workflows.frame.harmonic_preconditioner``, whose crystal holds
    particle 0: ``fixed_particle`` must be 0), particle 0 held at its reference position
    (its site) whatever ``initial_positions`` say. Other keyword arguments go to ``sample``.
    """
    if preconditioner is not None and fixed_particle != 0:
        raise ValueError(f"a harmonic crystal's coordinates hold particle 0; got "
                         f"fixed_particle={fixed_particle!r}")
    system.check_batch_memory(config.num_chains, f"HMC of {config.num_chains} chains")
    fixed = None
    if fixed_particle is not None:
        fixed = np.zeros(system.num_particles, bool)
        fixed[fixed_particle] = True
    x0 = system.lattice if initial_positions is None else initial_positions
    density = Boltzmann(energy_fn or system.energy_fn(strays="nan"), system.beta,
                        box=system.box, fixed=fixed, preconditioner=preconditioner)
    return sample(density, x0, key, config,
                  desc=kwargs.pop("desc", f"sampling {system.name}"), **kwargs)
