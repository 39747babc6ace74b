"""``beta F / N``, ``U``, ``S``, ``C_v`` and ``P`` of a crystal along temperature:
``free_energy_curve``, by the MBAR route (``LadderConfig``, the default;
``freeflow.workflows.temperature_ladder``) or in one SMC run (``SweepConfig``), this module's.

The SMC route, for requested temperatures ``T_1 < T_2 < ... < T_K``:

1. anneal by SMC from the harmonic crystal of ``T_1`` (the lowest temperature, where it is
   closest to the crystal) to ``exp(-beta_1 U)`` on the crystal region, exactly as
   ``freeflow.workflows.smc.smc_free_energy`` does (the same frame, whitened coordinates and
   densities): each run's ``ln Z_fixed(beta_1)``;
2. carry the **same particles** on along beta: stage ``k`` anneals from ``exp(-beta_{k-1} U)``
   to ``exp(-beta_k U)``, both on the crystal region. The tempered path ``q^(1-t) p^t`` of
   ``freeflow.sampling.smc.anneal`` between them is ``exp(-beta(t) U)`` with ``beta(t)``
   linear from ``beta_{k-1}`` to ``beta_k``, so the adaptive schedule ends exactly on each
   requested temperature. The start is unnormalised, so each stage estimates
   ``ln (Z(beta_k) / Z(beta_{k-1}))``; its particles, target samples of the stage before, are
   its start samples. Summed, ``ln Z_fixed(beta_k)`` per run.

``R`` independent runs advance together; ``freeflow.estimators.curve`` turns their ``ln Z``,
final energies and the final configurations' ``dU/dV`` (``freeflow.physics.pressure``) into
the curve with error bars and the covariance across temperatures.
With a ``workdir`` (``freeflow.rundir.SweepWorkdir``) every finished stage is saved (``stage_###.npz``: each run's ``ln Z``
increment, the whitened particles, their energies); a rerun continues after the last one,
with the same key per stage (``fold_in(PRNGKey(seed), k)``), so an interrupted sweep gives
the numbers of an uninterrupted one, and more temperatures above the last extend it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.estimators.curve import Curve, curve_from_runs
from freeflow.physics.pressure import volume_derivative_fn
from freeflow.progress import status
from freeflow.physics.system import System
from freeflow.physics.system_files import load_system
from freeflow.physics.identity import system_fingerprint
from freeflow.sampling.smc import AnnealConfig, anneal
from freeflow.rundir import LadderWorkdir, SweepWorkdir
from freeflow.workflows.frame import (START_STEP_SIZE, SiteFrame, Whitening, absolute_positions,
                                      crystal_densities, crystal_energy)
from freeflow.workflows.temperature_ladder import LadderConfig, ladder_curve
from freeflow.workflows.smc import SMCConfig, resolve_start, start_identity

__all__ = ["LadderConfig", "SweepConfig", "check_temperatures", "free_energy_curve",
           "parse_temperatures"]

#: Configurations whose energies are evaluated together (memory).
_ENERGY_BATCH = 256


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Settings of a temperature sweep; checked on construction.

    Attributes:
      particles: SMC particles per run (configurations of the whole crystal), >= 2.
      repeats: independent runs (>= 2), annealed together; their spread gives the errors.
      base: the start of the first stage, a base of ``freeflow.flows.config.BASES`` built at
        the lowest temperature (default ``"harmonic"``).
      anneal: how every stage anneals (``freeflow.sampling.smc.AnnealConfig``).
    """

    particles: int = 256
    repeats: int = 8
    base: str = "harmonic"
    anneal: AnnealConfig = AnnealConfig()

    def __post_init__(self):
        SMCConfig(particles=self.particles, repeats=self.repeats)  # the same checks

    def record(self, seed: int) -> dict:
        a = self.anneal
        return dict(smc_particles=int(self.particles), repeats=int(self.repeats),
                    base=self.base, seed=int(seed), target_ess=a.target_ess,
                    resample_ess=a.resample_ess, mcmc_steps=a.mcmc_steps,
                    integration_steps=a.integration_steps)


def check_temperatures(temperatures) -> tuple[float, ...]:
    """The temperatures as floats, refused (``ValueError``) unless finite, positive and
    strictly increasing."""
    try:
        values = tuple(float(t) for t in temperatures)
    except (TypeError, ValueError):
        raise ValueError(f"temperatures must be numbers; got {temperatures!r}") from None
    if not values:
        raise ValueError("give at least one temperature")
    if not all(math.isfinite(t) and t > 0 for t in values):
        raise ValueError(f"temperatures must be positive numbers; got {list(values)}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"temperatures must increase strictly (no repeats); got "
                         f"{list(values)}: sort them, lowest first")
    return values


def parse_temperatures(text: str) -> tuple[float, ...]:
    """``START:STOP:STEP`` (both ends included; STOP - START a whole number of STEPs) or a
    comma list ``100,150,200``, checked by ``check_temperatures``."""
    text = str(text).strip()
    if ":" in text:
        parts = text.split(":")
        try:
            start, stop, step = (float(p) for p in parts) if len(parts) == 3 else (None,) * 3
        except ValueError:
            start = None
        if start is None:
            raise ValueError(f"--temperatures {text!r}: write START:STOP:STEP, e.g. "
                             "100:260:10, or a comma list")
        if not (math.isfinite(step) and step > 0) or stop < start:
            raise ValueError(f"--temperatures {text!r}: STEP must be positive and STOP at "
                             "least START")
        count = (stop - start) / step
        if abs(count - round(count)) > 1e-6 * max(1.0, count):
            raise ValueError(f"--temperatures {text!r}: STOP - START is not a whole number of "
                             "STEPs; both ends are included")
        return check_temperatures(round(start + i * step, 9) for i in range(round(count) + 1))
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"--temperatures {text!r}: write START:STOP:STEP, e.g. 100:260:10, "
                         "or a comma list such as 180,200,220") from None
    return check_temperatures(values)


def _beta_stage(crystal_energy, beta_from: float, beta_to: float):
    """``(ln q, ln p) = (-beta_from U, -beta_to U)`` on the crystal region."""
    def log_start(u):
        return -beta_from * crystal_energy(u)

    def log_target(u):
        return -beta_to * crystal_energy(u)

    return log_start, log_target


def _energies(crystal_energy, positions):
    """``[R, n]`` energies (float64) of whitened particles ``[R, n, 3P]``."""
    flat = jnp.asarray(positions.reshape(-1, positions.shape[-1]))
    values = jax.lax.map(crystal_energy, flat, batch_size=_ENERGY_BATCH)
    return np.asarray(values, np.float64).reshape(positions.shape[:2])


def _setup(system, temperatures, config, say):
    """The system at the lowest temperature and everything the stages share."""
    if not isinstance(system, System):
        system = load_system(system)
    cold = dataclasses.replace(system, temperature=temperatures[0])
    cold, sites, sample, log_start, start, distribution, leaves = resolve_start(
        None, cold, config.base, say)
    cold.check_batch_memory(config.repeats * config.particles,
                            f"a sweep of {config.repeats} runs of {config.particles} "
                            "particles at once (--repeats x --particles)")
    frame = SiteFrame.of(cold, sites)
    whitening = Whitening.of(cold, distribution)
    return cold, frame, whitening, sample, log_start, start, start_identity(leaves)


def _refuse_the_other_route(workdir, config) -> None:
    """A work directory holds one route's work: continuing it by the other route would start
    afresh beside it and overwrite the reports, so it is refused."""
    if workdir is None:
        return
    if isinstance(config, LadderConfig):
        mine, other, name = LadderWorkdir, SweepWorkdir, "smc"
    else:
        mine, other, name = SweepWorkdir, LadderWorkdir, "mbar"
    if (Path(workdir) / other.CONFIG).exists() and not (Path(workdir) / mine.CONFIG).exists():
        raise ValueError(f"{workdir} holds a sweep by --route {name} ({other.CONFIG}); continue "
                         f"it with --route {name}, or use another --out")


def free_energy_curve(system, temperatures, config: LadderConfig | SweepConfig = LadderConfig(),
                      *, seed: int = 0, workdir=None) -> Curve:
    """``beta F / N``, ``F / N``, ``U / N``, ``S / N``, ``C_v / N`` and the pressure of
    ``system`` at every temperature, by the MBAR route (a ``LadderConfig``, the default;
    ``freeflow.workflows.temperature_ladder``) or by one SMC sweep (a ``SweepConfig``; module
    docstring). The MBAR route was 2.4 times cheaper at equal error on ice Ih at N = 64 and
    unbiased; the sweep's ``ln Z`` carries a finite-particle bias (docs/sweep.md).

    Args:
      system: a named system, a ``.toml`` file or a ``System`` (its own temperature is
        ignored).
      temperatures: increasing temperatures in the system's temperature unit.
      config: ``LadderConfig`` (the MBAR route) or ``SweepConfig`` (the SMC sweep).
      seed: PRNG seed.
      workdir: a directory where every finished stage is kept, so a rerun continues; it
        also receives the log (``sweep.log`` for the SMC route, ``ladder.log`` for the MBAR
        route). A directory of one route is refused by the other.

    Returns:
      ``Curve`` in the ``"bravais"`` counting (``Curve.recounted`` gives the other).
    """
    temperatures = check_temperatures(temperatures)
    _refuse_the_other_route(workdir, config)
    if isinstance(config, LadderConfig):
        return ladder_curve(system, temperatures, config, seed=seed, workdir=workdir)
    began = time.perf_counter()
    with SweepWorkdir.open(workdir) as store:
        say = status if store is None else store.log
        cold, frame, whitening, sample, log_start, start, identity = _setup(
            system, temperatures, config, say)
        if store is not None:
            store.check_settings({"system": cold.name,
                                  "system_fingerprint": system_fingerprint(cold),
                                  "start": start, "start_fingerprint": identity,
                                  **config.record(seed)})
        stages = _run_stages(cold, temperatures, config, seed, store, say,
                             (frame, whitening, sample, log_start))
        volume_derivatives = _volume_derivatives(cold, frame, whitening, stages, say)
    log_z = np.cumsum(np.stack([s[0] for s in stages], axis=1), axis=1)
    energies = np.stack([s[2] for s in stages], axis=2)
    details = {"start": start, **config.record(seed),
               "stages": [s[3] for s in stages],
               "wall_time": time.perf_counter() - began}
    return curve_from_runs(cold, temperatures, log_z, energies,
                           volume_derivatives=volume_derivatives, details=details)


def _volume_derivatives(system, frame, whitening, stages, say):
    """``[R, n, K]`` ``dU/dV`` of every stage's final particles (float64)."""
    began = time.perf_counter()
    derivative = volume_derivative_fn(system)
    out = []
    for stage in stages:
        per_run = []
        for u in stage[1]:  # one run's [n, 3P] at a time (memory)
            with jax.enable_x64(True):
                positions = np.asarray(absolute_positions(frame, whitening,
                                                          jnp.asarray(u, jnp.float64)))
            per_run.append(derivative(positions))
        out.append(np.stack(per_run))
    say(f"sweep {system.name}: pressures of the final particles in "
        f"{time.perf_counter() - began:.1f} s")
    return np.stack(out, axis=2)


def _run_stages(cold, temperatures, config, seed, store, say, shared):
    """Every stage, read from ``store`` where finished, else annealed (and saved):
    ``[(log_z [R], positions [R, n, 3P], energies [R, n], info)]``."""
    frame, whitening, sample, log_start = shared
    energy = crystal_energy(cold, frame, whitening)
    runs, particles = int(config.repeats), int(config.particles)
    stages, step = [], START_STEP_SIZE
    for k, temperature in enumerate(temperatures):
        saved = store.read_stage(k, temperature) if store is not None else None
        if saved is not None:
            stages.append(saved)
            step = saved[3]["step_size"]
            say(f"sweep {cold.name}: T = {temperature:g} read from {store.stage_file(k)}")
            continue
        key = jax.random.fold_in(jax.random.PRNGKey(seed), k)
        desc = f"sweep {cold.name} T = {temperature:g} ({k + 1}/{len(temperatures)})"
        if k == 0:  # from the harmonic crystal of the lowest temperature
            k_start, key = jax.random.split(key)
            y0 = frame.label(jnp.asarray(sample(k_start, runs * particles), jnp.float32))
            u0 = whitening.coordinates(frame.offsets(y0)).reshape(runs, particles, -1)
            log_q, log_p = crystal_densities(cold, frame, whitening, log_start)
        else:
            u0 = jnp.asarray(stages[-1][1])
            log_q, log_p = _beta_stage(energy, cold.units.beta(temperatures[k - 1]),
                                       cold.units.beta(temperature))
        result = anneal(log_q, log_p, u0, key, config.anneal, box=None, step_size=step,
                        desc=desc)
        energies = _energies(energy, result.positions)
        step = float(np.median(result.step_sizes))
        info = {"temperature": float(temperature),
                "num_temperatures": result.num_temperatures.tolist(),
                "final_ess": result.final_ess.tolist(), "acceptance": result.acceptance,
                "step_size": step, "target_evaluations": result.target_evaluations,
                "wall_time": result.wall_time}
        stage = (result.log_z, result.positions, energies, info)
        if store is not None:
            store.write_stage(k, *stage)
        stages.append(stage)
        say(f"sweep {cold.name}: T = {temperature:g} done in {result.wall_time:.1f} s, "
            f"{int(np.max(result.num_temperatures))} steps, acceptance "
            f"{result.acceptance:.2f}, U/N = {np.mean(energies) / cold.num_particles:.6g}")
    return stages
