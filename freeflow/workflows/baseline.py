"""MBAR baseline: absolute ``beta F / N`` of a crystal from an analytic Gaussian crystal.

The sampler holds particle 0 at its lattice site and lets the other ``N - 1`` move; MCMC
started on the lattice explores ``Z_fixed``, the integral of ``exp(-beta U)`` over the mobile
particles with particle 0 on site 0 and particle ``i`` near site ``i`` (particles of a solid do
not exchange). ``freeflow.estimators.conventions`` turns ``ln Z_fixed`` into ``beta F / N``
under either counting (``"bravais"``, the default, or ``"exact"``, which adds ``ln m``).

Reference
---------
A ``freeflow.physics.harmonic.GaussianCrystal``, particle 0 held: the harmonic crystal of the
lattice Hessian (the default) or an Einstein crystal ``(k / 2) sum_{i >= 1} |d_i|^2``. Its
``ln Z_fixed`` is exact and its state (lambda = 0) is drawn exactly. The centre-of-mass-fixed
Einstein crystal of the literature is ``freeflow.physics.potentials.einstein
.com_fixed_einstein_beta_f``; ``tests/test_baseline.py`` checks it against published values.

Path
----
``U_lambda = (1 - lambda) U_ref + lambda (U - U_lattice)``, lambda_k = (k / (K - 1))^p with
p = 2 by default. Shifting the target by its lattice energy keeps reduced energies O(N)
rather than O(N * |u_lattice|) (float32-friendly); it is added back exactly. States are packed
towards lambda = 0 because there the samples come from the harmonic reference and the target's
anharmonic (and, for close contacts, very repulsive) energy has the widest fluctuations under
them, so ``Var_lambda[dU/dlambda]`` is largest near lambda = 0; spacing ``d lambda ~ lambda``
there (p = 2 gives ``d lambda_k / lambda_k = 2 / k``) keeps neighbouring states' overlap
roughly constant. The smallest overlap between neighbouring states is reported
(``details["min_neighbour_overlap"]``) so a too-sparse schedule is visible. The Einstein
spring constant defaults to a pilot run of the target: ``s^2`` = mean squared displacement per
coordinate, which makes the reference's fluctuations match the target's.

Resumption
----------
With a work directory (``freeflow.rundir.MbarWorkdir``) every finished state is saved; a
re-run skips it, and a larger ``samples_per_state`` continues its saved chains. The sampling of
one state (``sample_state``) knows nothing of files: ``path_free_energy`` reads what is saved,
asks for what is missing and saves the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.checks import check_whole_numbers
from freeflow.estimators.conventions import (
    beta_f_from_ln_z_fixed,
    log_z_from_fixed_particle,
    translation_multiplicity,
)
from freeflow.estimators.mbar import mbar, pymbar_guard
from freeflow.estimators.result import FreeEnergy, ReducedFreeEnergy
from freeflow.physics.harmonic import einstein_crystal, harmonic_crystal
from freeflow.physics.potentials import EinsteinCrystal
from freeflow.progress import progress_bar
from freeflow.physics.system import system_fingerprint
from freeflow.rundir import DirectoryLock, MbarWorkdir
from freeflow.sampling.hmc import integrated_autocorrelation_time, sample, sample_system

__all__ = ["PathConfig", "REFERENCES", "mbar_free_energy", "path_free_energy", "lambda_schedule",
           "linear_path_mbar", "sample_state", "sample_reference_state"]


def lambda_schedule(num_states: int, power: float = 2.0) -> np.ndarray:
    """``lambda_k = (k / (K - 1))^power``, k = 0..K-1 (0 = reference, 1 = target)."""
    if num_states < 2:
        raise ValueError("an MBAR path needs at least 2 states")
    return (np.arange(num_states) / (num_states - 1)) ** power


# -- interpolated energies ---------------------------------------------------------------------


# Cached by the two functions' identity, so that every state of a path (and a re-run with the
# same System, whose energy functions are cached too) reuses one compiled sampler.
@functools.lru_cache(maxsize=16)
def _path_functions(reference_fn: Callable, target_fn: Callable):
    """Interpolated energy and its two components."""

    def energy(x, lam, ref_scale, shift):
        # Reference part times its scale (the spring constant) and the shifted target.
        return (1.0 - lam) * ref_scale * reference_fn(x) + lam * (target_fn(x) - shift)

    def components(x, lam, ref_scale, shift):
        del lam
        return jnp.stack([ref_scale * reference_fn(x), target_fn(x) - shift])

    return energy, components


# Cached by value (box and sites), so equal systems share one reference function.
@functools.lru_cache(maxsize=16)
def _unit_einstein(box: tuple, sites_bytes: bytes, num: int):
    sites = np.frombuffer(sites_bytes, dtype=np.float64).reshape(num, 3)
    return EinsteinCrystal(1.0).energy_fn(np.asarray(box), sites)


def unit_einstein_energy_fn(system) -> Callable:
    """``sum_i (1/2) |minimum_image(x_i - site_i)|^2`` for the system's lattice (k = 1)."""
    sites = np.ascontiguousarray(system.lattice, dtype=np.float64)
    return _unit_einstein(tuple(float(b) for b in system.box), sites.tobytes(), len(sites))


# -- MBAR over a path --------------------------------------------------------------------------


def _decorrelate(timeseries, du):
    """Indices ``[C][...]`` of an uncorrelated subsample of each chain of ``du [C, S]``."""
    s = du.shape[1]
    if np.allclose(du, du[:, :1]):
        return [np.arange(s) for _ in range(du.shape[0])], 1.0
    g = float(timeseries.statistical_inefficiency_multiple([row for row in du]))
    # pymbar picks indices spaced by about g (not ceil(g)), keeping ~S/g samples per chain.
    return [np.asarray(timeseries.subsample_correlated_data(row, g=g)) for row in du], g


def linear_path_mbar(components: list[np.ndarray], lambdas, beta: float) -> ReducedFreeEnergy:
    """MBAR on the linear path ``U_l = (1 - l) U_ref + l U_tgt``.

    Args:
      components: per state ``[n_k, 2]`` energies (reference, shifted target) of its
        (decorrelated) samples, energy unit.
      lambdas: ``[K]``. beta: inverse energy unit.

    Returns:
      ``delta_f = f_target - f_reference = -ln(Z_target / Z_reference)`` (reduced units). A
      NaN target component (a configuration the target's states exclude) is allowed in the
      reference state's samples only.
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)
    all_c = np.concatenate(components).astype(np.float64)  # [n, 2]
    n_k = np.array([len(c) for c in components])
    # A NaN target energy marks a configuration outside the crystal's region (a stray, see
    # System.energy_fn): every state with lambda > 0 excludes it (its HMC chains reject such
    # moves), so its reduced energy there is +inf, and only the reference counts it.
    target = np.where(np.isnan(all_c[:, 1]), np.inf, all_c[:, 1])
    with np.errstate(invalid="ignore"):
        target_part = np.where(lambdas[:, None] > 0, lambdas[:, None] * target[None, :], 0.0)
    u_kn = beta * ((1.0 - lambdas)[:, None] * all_c[None, :, 0] + target_part)
    return mbar(u_kn, n_k)


@dataclasses.dataclass(frozen=True)
class _Chains:
    """The sampler's settings shared by every state of a path."""

    energy: Callable
    components: Callable
    beta: float
    box: np.ndarray
    fixed: np.ndarray | None
    reference_scale: float
    target_shift: float
    num_chains: int
    thin: int
    num_integration_steps: int
    progress: bool | None


def sample_state(chains: _Chains, lam: float, positions, key, *, num_samples: int,
                 num_warmup: int, step_size: float | None, desc: str):
    """Sample one state of the path: ``(components [C, S, 2], final positions, info)``.

    The chains start at ``positions`` (``[C, P, 3]`` or ``[P, 3]``) with ``step_size`` (tuned
    in a warm-up of ``num_warmup`` transitions; 0 keeps it frozen).
    """
    res = sample(chains.energy, positions, key, beta=chains.beta,
                 num_chains=chains.num_chains, num_samples=num_samples, step_size=step_size,
                 num_warmup=num_warmup, thin=chains.thin, box=chains.box, fixed=chains.fixed,
                 energy_args=(lam, chains.reference_scale, chains.target_shift),
                 observables=chains.components, keep_positions=False,
                 num_integration_steps=chains.num_integration_steps, progress=chains.progress,
                 desc=desc)
    c = res.by_chain(res.observables).astype(np.float64)  # [C, S, 2]
    # Each interpolated-energy evaluation evaluates the target and the reference.
    info = {"lambda": float(lam), "acceptance": res.acceptance, "tau": res.tau,
            "step_size": res.step_size,
            "energy_evaluations": 2 * (res.energy_evaluations + res.observable_evaluations),
            "wall_time": res.wall_time}
    return c, res.final_positions, info


def sample_reference_state(chains: _Chains, reference_sampler: Callable, key, *,
                           num_samples: int):
    """The lambda = 0 state drawn exactly: ``num_samples`` independent configurations per
    chain from ``reference_sampler(key, n) -> [n, P, 3]``, as ``sample_state`` returns them.

    Every chain's final position is its last draw the target allows (finite target energy), so
    the next state's HMC chains start inside the crystal."""
    start = time.perf_counter()
    n = chains.num_chains * num_samples
    x = reference_sampler(key, n)
    components = np.asarray(jax.jit(jax.vmap(lambda y: chains.components(
        y, 0.0, chains.reference_scale, chains.target_shift)))(jnp.asarray(x)), np.float64)
    c = components.reshape(chains.num_chains, num_samples, 2)
    x = x.reshape(chains.num_chains, num_samples, *x.shape[1:])
    final = []
    for chain in range(chains.num_chains):
        allowed = np.flatnonzero(np.isfinite(c[chain, :, 1]))
        if len(allowed) == 0:
            raise FloatingPointError("no draw of the reference is inside the crystal's region; "
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
    """What to do with one state, given what its work directory holds: ``"reuse"`` enough
    saved samples, ``"draw"`` the exact reference again (a larger sample is drawn anew),
    ``"sample"`` from scratch, or ``"extend"`` the saved chains."""
    if saved is not None and saved[0].shape[1] >= per_chain:
        return "reuse"
    if drawn:
        return "draw"
    return "sample" if saved is None else "extend"


def path_free_energy(reference_fn: Callable, target_fn: Callable, initial_positions, key, *,
                     beta: float, box, lambdas, reference_scale: float = 1.0,
                     target_shift: float = 0.0, fixed=None, num_chains: int = 16,
                     samples_per_state: int = 512, num_warmup: int = 200, thin: int = 2,
                     num_integration_steps: int = 8, workdir: str | Path | None = None,
                     progress: bool | None = None, label: str = "mbar",
                     reference_sampler: Callable | None = None) -> ReducedFreeEnergy:
    """``-ln(Z_target / Z_reference)`` by MBAR along ``U_l = (1-l) s U_ref + l (U_tgt - c)``.

    Args:
      reference_fn, target_fn: pure energies ``[P, 3] -> scalar`` (energy unit).
      initial_positions: ``[P, 3]`` start of the first state's chains; each later state
        starts from the previous state's final positions.
      beta: inverse energy unit. box: ``[3]`` periodic box. lambdas: ``[K]`` from 0 to 1.
      reference_scale: ``s`` multiplying ``reference_fn`` (a spring constant, say).
      target_shift: ``c`` subtracted from the target (its lattice energy, say).
      fixed: boolean ``[P]`` of fixed particles.
      samples_per_state: saved samples per state over all chains (before decorrelation).
      workdir: if given, each finished state's energies are saved there and reused on re-run;
        a larger ``samples_per_state`` than saved continues the saved chains (same
        ``num_chains`` and ``thin``), a smaller one uses the first samples of each chain.
      reference_sampler: ``(key, n) -> [n, P, 3]`` exact draws of the reference at ``beta``
        (a Gaussian crystal, say): the lambda = 0 state is then drawn, not simulated, and its
        samples are independent. Without it every state, the reference included, is sampled
        by HMC. ``target_fn`` may return NaN where the target's states exclude a
        configuration (strays, see ``System.energy_fn``): their HMC chains reject it, and a
        drawn reference sample there counts with reduced energy +inf in every other state,
        which keeps the estimate exact for the target restricted to the crystal's region.

    Returns:
      ``ReducedFreeEnergy`` of ``delta_f`` (= ``-ln(Z_tgt / Z_ref)``; the target's shift
      ``c`` is part of ``U_tgt - c``), with ``num_samples`` after decorrelation,
      ``energy_evaluations`` (target + reference) and ``details["states"]`` (per-state
      diagnostics) and ``details["min_neighbour_overlap"]``.
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)
    if lambdas[0] != 0.0 or lambdas[-1] != 1.0 or np.any(np.diff(lambdas) <= 0):
        raise ValueError("lambdas must increase from 0 to 1")
    energy, components = _path_functions(reference_fn, target_fn)
    chains = _Chains(energy, components, beta, box, fixed, reference_scale, target_shift,
                     num_chains, thin, num_integration_steps, progress)
    per_chain = max(1, math.ceil(samples_per_state / num_chains))
    store = MbarWorkdir(workdir) if workdir is not None else None
    with pymbar_guard() as pymbar:
        timeseries = pymbar.timeseries
    x = np.asarray(initial_positions, np.float32)
    comps, states = [], []
    evaluations = 0
    step = None
    with progress_bar(len(lambdas), label, "state", progress, leave=False) as bar:
        for k, lam in enumerate(lambdas):
            saved = store.read_state(k, lam, num_chains) if store is not None else None
            action = _plan_state(saved, per_chain, drawn=k == 0 and reference_sampler is not None)
            desc = f"{label} state {k + 1}/{len(lambdas)} lambda={lam:.4f}"
            if action == "reuse":
                c, x, info = saved[0][:, :per_chain], saved[1], saved[2]
            elif action == "draw":
                c, x, info = sample_reference_state(chains, reference_sampler,
                                                    jax.random.fold_in(key, 0),
                                                    num_samples=per_chain)
            elif action == "sample":
                # Later states start from the previous state's chains and step size, so they
                # need only a short re-equilibration and step-size re-tuning.
                warm = num_warmup if step is None else max(50, num_warmup // 4)
                c, x, info = sample_state(chains, lam, x, jax.random.fold_in(key, k),
                                          num_samples=per_chain, num_warmup=warm,
                                          step_size=step, desc=desc)
            else:  # "extend": the saved chains continue with their frozen step, no warm-up
                saved_c, x, saved_info = saved
                done = saved_c.shape[1]
                c, x, info = sample_state(
                    chains, lam, x, jax.random.fold_in(jax.random.fold_in(key, k), done),
                    num_samples=per_chain - done, num_warmup=0,
                    step_size=float(saved_info["step_size"]), desc=desc)
                c, info = _extended(saved_c, saved_info, c, info, lam, per_chain)
            if store is not None and action != "reuse":
                store.write_state(k, lam, c, x, info)
            evaluations += int(info["energy_evaluations"])
            step = float(info["step_size"]) if info["step_size"] is not None else None
            if info.get("exact_draws"):
                idx, g = [np.arange(c.shape[1]) for _ in range(c.shape[0])], 1.0
            else:
                du = beta * (c[..., 1] - c[..., 0])  # d u_lambda / d lambda, what MBAR needs
                idx, g = _decorrelate(timeseries, du)
            comps.append(np.concatenate([c[i, j] for i, j in enumerate(idx)]))
            states.append(dict(info, statistical_inefficiency=g,
                               num_uncorrelated=len(comps[-1])))
            bar.update(1)
            bar.set_postfix(acc=f"{info['acceptance']:.2f}", g=f"{g:.1f}")
    result = linear_path_mbar(comps, lambdas, beta)
    return dataclasses.replace(result, energy_evaluations=evaluations,
                               details=dict(result.details, states=states))


def _pilot_width(system, key, num_chains: int, progress) -> tuple[float, int]:
    """Root-mean-square displacement per coordinate of the mobile particles in the target."""
    res = sample_system(system, key, num_chains=num_chains, num_samples=32, num_warmup=150,
                        thin=2, progress=progress, desc=f"pilot {system.name}")
    d = res.positions[:, 1:] - system.lattice[None, 1:]
    d = d - system.box * np.round(d / system.box)
    # The pilot only evaluates the target (value and gradient).
    return float(np.sqrt(np.mean(d**2))), res.energy_evaluations


def _baseline_settings(system, width, **settings) -> dict:
    return {"system": system.name, "definition": system.definition,
            "fingerprint": system_fingerprint(system), **settings, "requested_width": width}


def _saved_config(store: MbarWorkdir | None, settings: dict) -> dict | None:
    """The work directory's record of an earlier call, if any; refuses other settings."""
    saved = store.read_config() if store is not None else None
    if saved is not None:
        # samples_per_state may change: saved states are extended (or cut) to the new length.
        ignored = {"samples_per_state"}
        wanted = {k: v for k, v in _as_json(settings).items() if k not in ignored}
        there = {k: v for k, v in saved["settings"].items() if k not in ignored}
        if there != wanted:
            differ = sorted(k for k in set(there) | set(wanted) if there.get(k) != wanted.get(k))
            # The definition is long; its fingerprint differs with it and says enough.
            what = "; ".join(f"{k} {there.get(k)!r} there, {wanted.get(k)!r} here"
                             for k in differ if k != "definition")
            raise ValueError(f"{store.path} holds an MBAR run with different settings ({what});"
                             " use the same settings to continue it, or a fresh --workdir")
    return saved


def _record_config(store: MbarWorkdir | None, saved: dict | None, record: dict):
    """Write the record of this call, unless the work directory holds it already."""
    record = _as_json(record)
    if store is not None and record != saved:
        store.write_config(record)


def _as_json(data):
    """``data`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(data))


#: References of the MBAR path (``mbar_free_energy(reference=...)``).
REFERENCES = ("harmonic", "einstein")


def _reference_crystal(system, reference: str, width: float | None):
    """The Gaussian crystal at the path's start and its details for the result."""
    if reference == "harmonic":
        return harmonic_crystal(system), {}
    if not width < 0.1 * float(np.min(system.box)):
        raise ValueError(f"Einstein width {width:g} is not small against the box "
                         f"{system.box.tolist()}; the reference would not be a crystal")
    k_spring = 1.0 / (system.beta * width**2)
    return einstein_crystal(system, k_spring), {"einstein_width": width,
                                                "spring_constant": k_spring}


@dataclasses.dataclass(frozen=True)
class PathConfig:
    """The MBAR path from a Gaussian crystal to the target, and how its states are sampled;
    checked on construction.

    Attributes:
      reference: the path's start (lambda = 0), drawn exactly and with an analytic ``ln Z``:
        ``"harmonic"``, the harmonic approximation of the system about its lattice
        (``freeflow.physics.harmonic.harmonic_crystal``), or ``"einstein"``, independent
        springs of standard deviation ``width``.
      num_states: K states including the reference (lambda = 0) and the target (lambda = 1).
      samples_per_state: saved samples per state over all chains, before decorrelation.
      num_chains: HMC chains; num_warmup: warm-up transitions of the first sampled state;
      thin: transitions per saved sample; num_integration_steps: leapfrog steps per transition.
      width: the Einstein springs' standard deviation per coordinate (length unit); ``None``:
        measured in a short pilot run of the target. Einstein reference only.
      schedule_power: ``lambda_k = (k / (K - 1))^power``.
    """

    reference: str = "harmonic"
    num_states: int = 16
    samples_per_state: int = 1024
    num_chains: int = 32
    num_warmup: int = 200
    thin: int = 2
    num_integration_steps: int = 8
    width: float | None = None
    schedule_power: float = 2.0

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise ValueError(f"unknown MBAR reference {self.reference!r}; use one of "
                             f"{REFERENCES}")
        check_whole_numbers(self, {"num_states": 2, "samples_per_state": 1, "num_chains": 1,
                                   "thin": 1, "num_warmup": 0, "num_integration_steps": 1})
        if self.width is not None and self.reference != "einstein":
            raise ValueError(f"a width applies to the Einstein reference only; the "
                             f"{self.reference} crystal has none (leave out --width)")
        if self.width is not None and not (math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"the Einstein width must be a positive length; got {self.width}")


def mbar_free_energy(system, config: PathConfig = PathConfig(), *, key=None, seed: int = 0,
                     workdir: str | Path | None = None,
                     progress: bool | None = None) -> FreeEnergy:
    """Absolute ``beta F / N`` of ``system`` by MBAR from a Gaussian crystal, particle 0 held.

    Args:
      system: a ``freeflow.physics.system.System``.
      config: ``PathConfig`` (the reference crystal, the states and their sampling).
      key: jax random key (default ``jax.random.key(seed)``).
      workdir: directory for resumable runs (``config.json`` and one ``state_###.npz`` per
        finished state). Re-running with the same settings skips finished states; a larger
        ``samples_per_state`` extends them (the chains continue where they stopped); other
        changed settings raise ``ValueError``.

    Returns:
      ``FreeEnergy`` with ``method="mbar"``, in the ``"bravais"`` counting
      (``FreeEnergy.recounted`` gives the other); ``details`` holds ``ln_z_fixed``, the reference
      (and for Einstein its spring constant and width), the lambdas and per-state diagnostics.
    """
    start = time.perf_counter()
    reference, num_states = config.reference, config.num_states
    samples_per_state, num_chains = config.samples_per_state, config.num_chains
    num_warmup, thin = config.num_warmup, config.thin
    num_integration_steps, width = config.num_integration_steps, config.width
    schedule_power = config.schedule_power
    system.check_batch_memory(num_chains, f"MBAR's HMC of {num_chains} chains")
    key = jax.random.key(seed) if key is None else key
    store = MbarWorkdir(workdir) if workdir is not None else None
    lambdas = lambda_schedule(num_states, schedule_power)
    settings = _baseline_settings(
        system, width, reference=reference,
        num_states=num_states, schedule_power=schedule_power,
        samples_per_state=samples_per_state, num_chains=num_chains, num_warmup=num_warmup,
        thin=thin, num_integration_steps=num_integration_steps, seed=seed)
    # One writer per work directory: a second process is refused before any sampling.
    with (DirectoryLock(workdir) if workdir is not None else contextlib.nullcontext()):
        saved = _saved_config(store, settings)
        pilot_evaluations = 0
        if saved is not None:
            # The saved energies are relative to this shift and width: a resumed run reuses them.
            width, pilot_evaluations = saved["width"], saved["pilot_evaluations"]
            shift = saved["target_shift"]
        else:
            shift = system.lattice_energy()
            if reference == "einstein" and width is None:
                width, pilot_evaluations = _pilot_width(system, jax.random.fold_in(key, 10_000),
                                                        num_chains, progress)
        _record_config(store, saved, {"settings": settings, "width": width,
                                      "pilot_evaluations": pilot_evaluations,
                                      "target_shift": shift})
        crystal, reference_details = _reference_crystal(system, reference, width)
        n = system.num_particles
        fixed = np.zeros(n, bool)
        fixed[0] = True
        out = path_free_energy(crystal.energy_fn, system.energy_fn(strays="nan"),
                               system.lattice, key, beta=system.beta, box=system.box,
                               lambdas=lambdas, reference_scale=1.0, target_shift=shift,
                               fixed=fixed, num_chains=num_chains,
                               samples_per_state=samples_per_state, num_warmup=num_warmup,
                               thin=thin, num_integration_steps=num_integration_steps,
                               workdir=workdir, progress=progress, label=f"mbar {system.name}",
                               reference_sampler=crystal.sample)
        # ln Z_fixed(target) = ln Z_ref - Delta f - beta U_lattice (the shift comes back here).
        ln_z_fixed = crystal.ln_z_fixed - out.delta_f - system.beta * shift
        lam_ref = system.units.reference_length
        states = out.details["states"]
        m = 1  # the "bravais" counting; FreeEnergy.recounted gives the other
        details = {"ln_z_fixed": ln_z_fixed, "multiplicity": m, "counting": "bravais",
                   "lattice_multiplicity": translation_multiplicity(system.lattice, system.box),
                   "num_particles": n,
                   "ln_z": log_z_from_fixed_particle(ln_z_fixed, n, system.volume, m),
                   "reference": reference, "reference_ln_z_fixed": crystal.ln_z_fixed,
                   **reference_details,
                   "reference_beta_f_per_particle": beta_f_from_ln_z_fixed(
                       crystal.ln_z_fixed, n, system.volume, lam_ref, m),
                   "lattice_energy": shift, "lambdas": lambdas.tolist(),
                   "min_neighbour_overlap": out.details["min_neighbour_overlap"],
                   "samples_per_state": samples_per_state, "num_chains": num_chains,
                   # Sampling time of all states, over every session that added to them (the
                   # result's wall_time is this call's only, short when states were read back).
                   "sampling_wall_time": float(sum(st["wall_time"] for st in states)),
                   "states": states}
        return FreeEnergy(value=beta_f_from_ln_z_fixed(ln_z_fixed, n, system.volume, lam_ref, m),
                          stderr=out.stderr / n, method="mbar", num_states=num_states,
                          num_samples=out.num_samples,
                          energy_evaluations=out.energy_evaluations + pilot_evaluations,
                          wall_time=time.perf_counter() - start, system=system.name,
                          details=details)
