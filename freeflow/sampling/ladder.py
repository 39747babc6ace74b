"""A ladder of states between two energies, sampled state by state for MBAR.

The states interpolate linearly between a reference energy ``U_ref`` (scaled by ``s``) and a
target ``U_tgt`` (shifted by ``c``),

    U_lambda = (1 - lambda) s U_ref + lambda (U_tgt - c),     0 = lambda_0 < ... < lambda_K = 1,

and each state is sampled by HMC (``freeflow.sampling.hmc``), its chains starting from the
state before (so a later state needs only a short re-equilibration and step re-tuning). With
an exact sampler of the reference the lambda = 0 state is drawn, not simulated. The saved
energies of every state are decorrelated and combined by MBAR on arrays
(``freeflow.estimators.mbar.linear_path_mbar``) into ``-ln(Z_tgt / Z_ref)``.

Nothing here knows what the energies describe: a crystal and its Gaussian reference
(``freeflow.workflows.baseline``), or a lattice field and its free field. A ``store`` (any
object with ``read_state`` and ``write_state``, such as ``freeflow.rundir.MbarWorkdir``)
keeps finished states, so an interrupted ladder continues where it stopped and a longer one
extends the saved chains.
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

from freeflow.estimators.mbar import linear_path_mbar, uncorrelated_indices
from freeflow.estimators.result import ReducedFreeEnergy
from freeflow.progress import progress_bar
from freeflow.sampling.hmc import Boltzmann, HMCConfig, integrated_autocorrelation_time, sample

__all__ = ["LinearPath", "lambda_schedule", "path_free_energy", "transition_seconds"]


def lambda_schedule(num_states: int, power: float = 2.0) -> np.ndarray:
    """``lambda_k = (k / (K - 1))^power``, k = 0..K-1 (0 = reference, 1 = target)."""
    if num_states < 2:
        raise ValueError("an MBAR path needs at least 2 states")
    return (np.arange(num_states) / (num_states - 1)) ** power


@dataclasses.dataclass(frozen=True)
class LinearPath:
    """The states ``U_l = (1 - l) s U_ref + l (U_tgt - c)`` at inverse temperature ``beta``.

    Attributes:
      reference_fn, target_fn: pure energies ``[P, D] -> scalar`` (energy unit).
      beta: inverse energy unit.
      lambdas: ``[K]``, increasing from 0 to 1.
      box: ``[D]`` periodic box, or ``None``.
      reference_scale: ``s`` multiplying ``reference_fn`` (a spring constant, say).
      target_shift: ``c`` subtracted from the target (its lattice energy, say): it keeps the
        reduced energies of order N rather than N times the energy per particle (float32).
      fixed: boolean ``[P]`` of rows that stay where they start, or ``None``.
      reference_sampler: ``(key, n) -> [n, P, D]`` exact draws of the reference at ``beta``
        (a Gaussian crystal, say), or ``None``: the reference state is sampled by HMC too.
        ``target_fn`` may return NaN where the target's states exclude a configuration
        (strays, see ``System.energy_fn``): their HMC chains reject it, and a drawn reference
        sample there counts with reduced energy +inf in every other state, which keeps the
        estimate exact for the target restricted to its region.
    """

    reference_fn: Callable
    target_fn: Callable
    beta: float
    lambdas: Any
    box: Any = None
    reference_scale: float = 1.0
    target_shift: float = 0.0
    fixed: Any = None
    reference_sampler: Callable | None = None

    def __post_init__(self):
        lambdas = np.asarray(self.lambdas, dtype=np.float64)
        if (lambdas.ndim != 1 or len(lambdas) < 2 or lambdas[0] != 0.0 or lambdas[-1] != 1.0
                or np.any(np.diff(lambdas) <= 0)):
            raise ValueError("lambdas must increase from 0 to 1")


# Cached by the two functions' identity, so that every state of a path (and a re-run with the
# same System, whose energy functions are cached too) reuses one compiled sampler.
@functools.lru_cache(maxsize=16)
def _path_functions(reference_fn: Callable, target_fn: Callable):
    """Interpolated energy and its two components, ``f(x, lambda, s, c)``."""

    def energy(x, lam, ref_scale, shift):
        return (1.0 - lam) * ref_scale * reference_fn(x) + lam * (target_fn(x) - shift)

    def components(x, lam, ref_scale, shift):
        del lam
        return jnp.stack([ref_scale * reference_fn(x), target_fn(x) - shift])

    return energy, components


@dataclasses.dataclass(frozen=True)
class _Ladder:
    """What every state of one call shares: the path, its functions and the HMC settings."""

    path: LinearPath
    energy: Callable
    components: Callable
    config: HMCConfig

    def args(self, lam) -> tuple:
        return (lam, self.path.reference_scale, self.path.target_shift)


def _sample_state(ladder: _Ladder, lam: float, positions, key, *, num_samples: int,
                  num_warmup: int, step_size: float | None, desc: str):
    """Sample one state: ``(components [C, S, 2], final positions, info)``.

    The chains start at ``positions`` (``[C, P, D]`` or ``[P, D]``) with ``step_size`` (tuned
    in a warm-up of ``num_warmup`` transitions; 0 keeps it frozen).
    """
    path = ladder.path
    density = Boltzmann(ladder.energy, path.beta, box=path.box, fixed=path.fixed,
                        energy_args=ladder.args(lam))
    config = dataclasses.replace(ladder.config, num_samples=num_samples,
                                 num_warmup=num_warmup, step_size=step_size)
    res = sample(density, positions, key, config, observables=ladder.components,
                 keep_positions=False, desc=desc)
    c = res.by_chain(res.observables).astype(np.float64)  # [C, S, 2]
    # Each interpolated-energy evaluation evaluates the target and the reference.
    info = {"lambda": float(lam), "acceptance": res.acceptance, "tau": res.tau,
            "step_size": res.step_size,
            "energy_evaluations": 2 * (res.energy_evaluations + res.observable_evaluations),
            "wall_time": res.wall_time}
    return c, res.final_positions, info


def _draw_reference_state(ladder: _Ladder, key, *, num_samples: int):
    """The lambda = 0 state drawn exactly: ``num_samples`` independent configurations per
    chain from the path's ``reference_sampler``, as ``_sample_state`` returns them.

    Every chain's final position is its last draw the target allows (finite target energy), so
    the next state's HMC chains start inside the target's region."""
    start = time.perf_counter()
    chains = ladder.config.num_chains
    n = chains * num_samples
    x = ladder.path.reference_sampler(key, n)
    components = np.asarray(jax.jit(jax.vmap(lambda y: ladder.components(
        y, *ladder.args(0.0))))(jnp.asarray(x)), np.float64)
    c = components.reshape(chains, num_samples, 2)
    x = x.reshape(chains, num_samples, *x.shape[1:])
    final = []
    for chain in range(chains):
        allowed = np.flatnonzero(np.isfinite(c[chain, :, 1]))
        if len(allowed) == 0:
            raise FloatingPointError("no draw of the reference is inside the target's region; "
                                     "the reference is far too wide for this target")
        final.append(x[chain, allowed[-1]])
    info = {"lambda": 0.0, "acceptance": 1.0, "tau": 1.0, "step_size": None,
            "exact_draws": True, "strays": int(np.sum(~np.isfinite(c[..., 1]))),
            # Each draw evaluates the reference and the target, as an interpolated energy does.
            "energy_evaluations": 2 * n, "wall_time": time.perf_counter() - start}
    return c, np.stack(final), info


def _extended(saved_c, saved_info, c, info, lam, per_chain):
    """Saved chains continued by ``c``: the combined components and diagnostics."""
    done = saved_c.shape[1]
    w = done / per_chain
    c = np.concatenate([saved_c, c], axis=1)
    info = dict(info, acceptance=w * saved_info["acceptance"] + (1 - w) * info["acceptance"],
                # The interpolated energy of the whole (continued) chains.
                tau=integrated_autocorrelation_time((1.0 - lam) * c[..., 0] + lam * c[..., 1]),
                energy_evaluations=info["energy_evaluations"]
                + int(saved_info["energy_evaluations"]),
                wall_time=info["wall_time"] + float(saved_info["wall_time"]))
    return c, info


def _plan_state(saved, per_chain: int, drawn: bool) -> str:
    """What to do with one state, given what the store holds: ``"reuse"`` enough saved
    samples, ``"draw"`` the exact reference again (a larger sample is drawn anew),
    ``"sample"`` from scratch, or ``"extend"`` the saved chains."""
    if saved is not None and saved[0].shape[1] >= per_chain:
        return "reuse"
    if drawn:
        return "draw"
    return "sample" if saved is None else "extend"


def _one_state(ladder: _Ladder, k: int, x, key, saved, step, desc: str):
    """State ``k``: ``(components [C, S, 2], final positions, info, what was done)``."""
    config, lam = ladder.config, float(np.asarray(ladder.path.lambdas)[k])
    per_chain = config.num_samples
    action = _plan_state(saved, per_chain,
                         drawn=k == 0 and ladder.path.reference_sampler is not None)
    if action == "reuse":
        return saved[0][:, :per_chain], saved[1], saved[2], action
    if action == "draw":
        return (*_draw_reference_state(ladder, jax.random.fold_in(key, 0),
                                       num_samples=per_chain), action)
    if action == "sample":
        # Later states start from the previous state's chains and step size, so they need
        # only a short re-equilibration and step-size re-tuning.
        warm = config.num_warmup if step is None else max(50, config.num_warmup // 4)
        c, x, info = _sample_state(ladder, lam, x, jax.random.fold_in(key, k),
                                   num_samples=per_chain, num_warmup=warm,
                                   step_size=step if step is not None else config.step_size,
                                   desc=desc)
        return c, x, info, action
    # "extend": the saved chains continue with their frozen step, no warm-up.
    saved_c, x, saved_info = saved
    done = saved_c.shape[1]
    c, x, info = _sample_state(
        ladder, lam, x, jax.random.fold_in(jax.random.fold_in(key, k), done),
        num_samples=per_chain - done, num_warmup=0,
        step_size=float(saved_info["step_size"]), desc=desc)
    c, info = _extended(saved_c, saved_info, c, info, lam, per_chain)
    return c, x, info, action


def path_free_energy(path: LinearPath, initial_positions, key, config: HMCConfig, *,
                     store=None, label: str = "mbar") -> ReducedFreeEnergy:
    """``-ln(Z_target / Z_reference)`` by MBAR along ``path``.

    Args:
      path: ``LinearPath``.
      initial_positions: ``[P, D]`` start of the first sampled state's chains; each later
        state starts from the previous state's final positions.
      key: a ``jax.random`` key.
      config: ``HMCConfig`` of every state: ``num_samples`` saved per chain (before
        decorrelation), ``num_warmup`` transitions for the first sampled state (later ones a
        quarter of it, at least 50), ``step_size`` the first state's initial step.
      store: where finished states are kept (``read_state(k, lambda, num_chains) -> (c, x,
        info) | None`` and ``write_state(k, lambda, c, x, info)``), or ``None``. A state it
        holds is reused; with fewer samples per chain than asked, its chains continue (same
        chains and thinning); with more, the first are used.
      label: the label of the progress bar over the states (``freeflow.progress``).

    Returns:
      ``ReducedFreeEnergy`` of ``delta_f`` (= ``-ln(Z_tgt / Z_ref)``; the target's shift ``c``
      is part of ``U_tgt - c``), with ``num_samples`` after decorrelation,
      ``energy_evaluations`` (target + reference) and ``details["states"]`` (per-state
      diagnostics) and ``details["min_neighbour_overlap"]``.
    """
    energy, components = _path_functions(path.reference_fn, path.target_fn)
    ladder = _Ladder(path, energy, components, config)
    lambdas = np.asarray(path.lambdas, dtype=np.float64)
    x = np.asarray(initial_positions, np.float32)
    comps, states = [], []
    evaluations = 0
    step = None
    with progress_bar(len(lambdas), label, "state", leave=False) as bar:
        for k, lam in enumerate(lambdas):
            saved = store.read_state(k, lam, config.num_chains) if store is not None else None
            desc = f"{label} state {k + 1}/{len(lambdas)} lambda={lam:.4f}"
            c, x, info, action = _one_state(ladder, k, x, key, saved, step, desc)
            if store is not None and action != "reuse":
                store.write_state(k, lam, c, x, info)
            evaluations += int(info["energy_evaluations"])
            step = float(info["step_size"]) if info["step_size"] is not None else None
            if info.get("exact_draws"):
                idx, g = [np.arange(c.shape[1]) for _ in range(c.shape[0])], 1.0
            else:
                # d u_lambda / d lambda, what MBAR needs
                idx, g = uncorrelated_indices(path.beta * (c[..., 1] - c[..., 0]))
            comps.append(np.concatenate([c[i, j] for i, j in enumerate(idx)]))
            states.append(dict(info, statistical_inefficiency=g,
                               num_uncorrelated=len(comps[-1])))
            bar.update(1)
            bar.set_postfix(acc=f"{info['acceptance']:.2f}", g=f"{g:.1f}")
    result = linear_path_mbar(comps, lambdas, path.beta)
    return dataclasses.replace(result, energy_evaluations=evaluations,
                               details=dict(result.details, states=states))


def transition_seconds(path: LinearPath, initial_positions, key, config: HMCConfig, *,
                       lam: float = 0.5, num_transitions: int = 40) -> float:
    """Seconds of one HMC transition of ``path`` at ``lam``, sampled as ``path_free_energy``
    samples a state (the same compiled kernel, chains, leapfrog steps, thinning and recorded
    components): the second of two runs of ``num_transitions`` transitions, so compiling is
    not counted.

    Args:
      path: ``LinearPath``; initial_positions: ``[P, D]``; key: a ``jax.random`` key;
      config: ``HMCConfig`` of the states (its ``num_samples`` and ``num_warmup`` are not used).
    """
    energy, components = _path_functions(path.reference_fn, path.target_fn)
    ladder = _Ladder(path, energy, components, config)
    saved = max(1, num_transitions // config.thin)
    x = np.asarray(initial_positions, np.float32)
    seconds = []
    for attempt in range(2):
        start = time.perf_counter()
        _, x, info = _sample_state(ladder, lam, x, jax.random.fold_in(key, attempt),
                                   num_samples=saved, num_warmup=0,
                                   step_size=config.step_size, desc="timing")
        seconds.append((time.perf_counter() - start) / (saved * config.thin))
    return seconds[-1]


def samples_per_chain(samples_per_state: int, num_chains: int) -> int:
    """Saved samples per chain that give at least ``samples_per_state`` over all chains."""
    return max(1, math.ceil(samples_per_state / num_chains))
