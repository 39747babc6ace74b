"""One entry to every estimate: ``estimate(start, method, config)``.

``estimate`` dispatches LFEP and LBAR (draw the flow's or the base's samples, compute their
works, call the estimator), SMC (``freeflow.workflows.smc``) and MBAR
(``freeflow.workflows.baseline``) from a run directory, a ``TrainResult``, a ``FromBase`` or a
system. ``lfep_from_model``, ``lbar_from_model`` and ``lfep_and_lbar`` work on a model and
its parameters. The estimators themselves (``freeflow.estimators``) only see arrays.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from freeflow import rundir
from freeflow.checks import check_whole_numbers
from freeflow.estimators.bar import lbar
from freeflow.estimators.conventions import (COUNTINGS, DEFAULT_COUNTING,
                                             translation_multiplicity)
from freeflow.estimators.lfep import lfep
from freeflow.estimators.result import FreeEnergy
from freeflow.flows.config import base_config
from freeflow.flows.model import BaseModel
from freeflow.flows.works import model_works, reverse_works
from freeflow.physics.system import System
from freeflow.physics.system_files import load_system
from freeflow.physics.identity import check_same_system
from freeflow.sampling.hmc import integrated_autocorrelation_time
from freeflow.workflows.baseline import PathConfig, mbar_free_energy
from freeflow.workflows.smc import SMCConfig, smc_free_energy

__all__ = ["FromBase", "METHODS", "WorksConfig", "counted", "estimate", "lbar_from_model",
           "lfep_and_lbar", "lfep_from_model", "reference_stride"]


def counted(result: FreeEnergy, system, wall_time: float) -> FreeEnergy:
    """``result`` of an estimator run with ``multiplicity = 1`` (the ``"bravais"`` counting),
    with that counting, the lattice's sites per primitive cell and N recorded, so that
    ``FreeEnergy.recounted`` can give it in the other, and the wall time (s) of drawing and
    evaluating its samples."""
    details = dict(result.details, counting="bravais", num_particles=system.num_particles,
                   lattice_multiplicity=translation_multiplicity(system.lattice, system.box))
    return dataclasses.replace(result, wall_time=wall_time, details=details)


def lfep_from_model(model, params, system, key, num_samples: int = 100_000,
                    batch_size: int = 256, bootstrap: int = 200) -> FreeEnergy:
    """LFEP ``beta F / N`` of ``system`` from ``num_samples`` samples of a flow (exact energy).

    See ``freeflow.estimators.lfep.lfep`` for the estimator and when to trust it. The value
    is in the default counting (``FreeEnergy.recounted`` gives the other).
    """
    start = time.perf_counter()
    work = model_works(model, params, system, key, num_samples, batch_size)
    result = lfep(work, system.num_particles, reference_length=system.units.reference_length,
                  system=system.name, bootstrap=bootstrap)
    return counted(result, system, time.perf_counter() - start)


def lbar_from_model(model, params, system, key, num_model_samples: int, target_positions,
                    batch_size: int = 256) -> FreeEnergy:
    """LBAR for a flow ``model`` (interface: ``sample_and_log_prob(params, key, n) -> (x [n,
    N, 3], log_q [n])`` and ``log_prob(params, y [m, N, 3]) -> [m]``).

    ``target_positions`` ``[m, N, 3]`` are decorrelated equilibrium samples of ``system``
    (e.g. ``freeflow.sampling.hmc.sample_system`` thinned by its autocorrelation time). The
    exact (not softened) energy is used. ``energy_evaluations`` counts n + m target energies.
    The value is in the default counting (``FreeEnergy.recounted`` gives the other).
    """
    start = time.perf_counter()
    # Model samples are drawn and evaluated batch by batch, so 10^5-10^6 fit in memory.
    forward = model_works(model, params, system, key, int(num_model_samples), batch_size)
    reverse = reverse_works(model, params, system, np.asarray(target_positions), batch_size)
    result = lbar(forward, reverse, system.num_particles, system.units.reference_length,
                  system=system.name, energy_evaluations=len(forward) + len(reverse))
    return counted(result, system, time.perf_counter() - start)


def reference_stride(reverse_work, energy_tau: float) -> tuple[int, float]:
    """``(stride, tau of the reverse works)``: the spacing that leaves LBAR's target samples
    about independent.

    BAR's error assumes independent reverse works ``-(beta U + ln q)``, whose correlation can
    outlast the energy's (``ln q`` may follow modes U hardly sees), so the stride is the larger
    of the two statistical inefficiencies (``1 + 2 sum rho``, in saved samples; ``energy_tau``
    the energy's), rounded as pymbar's subsampling does. ``reverse_work``: ``[chains,
    samples per chain]``.
    """
    work_tau = (integrated_autocorrelation_time(reverse_work)
                if np.all(np.isfinite(reverse_work))
                else math.nan)  # a sample outside the flow's support: fall back on U's
    tau = max(energy_tau, work_tau) if math.isfinite(work_tau) else energy_tau
    return max(1, int(round(tau))), work_tau


def lfep_and_lbar(model, params, system, target_positions, *, num_chains: int,
                  energy_tau: float, num_samples: int, key) -> tuple[FreeEnergy, FreeEnergy]:
    """LFEP and LBAR of one flow from one set of ``num_samples`` model works.

    ``target_positions`` ``[num_chains x per chain, N, 3]`` (chain-major, as
    ``freeflow sample`` saves them) are HMC samples of the target whose energy has
    autocorrelation time ``energy_tau`` (saved samples); their reverse works are computed
    once, to measure their correlation (``reference_stride``), then thinned for LBAR. Each
    result's wall time and energy evaluations are those of the works it needed (LBAR's
    include every target sample evaluated, not the sampling). Both values are in the default
    counting (``FreeEnergy.recounted`` gives the other).
    """
    n, length = system.num_particles, system.units.reference_length
    start = time.perf_counter()
    forward = model_works(model, params, system, key, int(num_samples))
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    reverse = reverse_works(model, params, system, np.asarray(target_positions))
    reverse = reverse.reshape(num_chains, -1)
    reverse_s = time.perf_counter() - start
    stride, work_tau = reference_stride(reverse, energy_tau)
    kept = reverse[:, ::stride].ravel()
    start = time.perf_counter()
    by_lfep = lfep(forward, n, reference_length=length, system=system.name)
    by_lfep = counted(by_lfep, system, forward_s + time.perf_counter() - start)
    start = time.perf_counter()
    by_lbar = lbar(forward, kept, n, length, system=system.name,
                   energy_evaluations=len(forward) + reverse.size)
    by_lbar = counted(by_lbar, system, forward_s + reverse_s + time.perf_counter() - start)
    by_lbar = dataclasses.replace(by_lbar, details=dict(
        by_lbar.details, target_samples=len(kept), target_stride=stride,
        target_work_tau=work_tau, target_energy_tau=float(energy_tau)))
    return by_lfep, by_lbar


#: The methods of ``estimate``.
METHODS = ("lfep", "lbar", "smc", "mbar")


@dataclasses.dataclass(frozen=True)
class FromBase:
    """The start of an estimate with no training: a base distribution of a system.

    Attributes:
      system: a named system, a ``.toml`` file or a ``System``.
      base: one of ``freeflow.flows.config.BASES`` (``"harmonic"``: the harmonic crystal).
        For LFEP and LBAR it is exactly an untrained flow's density
        (``freeflow.flows.model.BaseModel``); SMC anneals from it; MBAR starts its path at the
        harmonic crystal (the only base MBAR knows).
    """

    system: Any
    base: str = "harmonic"


@dataclasses.dataclass(frozen=True)
class WorksConfig:
    """How many model (or base) samples LFEP and LBAR draw, and in batches of how many."""

    samples: int = 100_000
    batch_size: int = 256

    def __post_init__(self):
        check_whole_numbers(self, {"samples": 2, "batch_size": 1})


def estimate(start, method: str = "lfep", config=None, *, target_samples=None,
             seed: int = 0, workdir=None, counting: str = DEFAULT_COUNTING) -> FreeEnergy:
    """``beta F / N`` by any of freeflow's methods, from a trained flow or from a base.

    Args:
      start: where the estimate starts: a run directory (``freeflow train --out DIR``) or a
        ``TrainResult`` (the trained flow); ``FromBase(system, base)`` (no training); for
        MBAR also a system (a name, a ``.toml`` file or a ``System``).
      method: ``"lfep"`` (the start's samples reweighted), ``"lbar"`` (BAR between them and
        ``target_samples``), ``"smc"`` (annealed SMC from the start to the target) or
        ``"mbar"`` (MBAR along a path from the harmonic crystal; needs no flow).
      config: the method's settings: ``WorksConfig`` (LFEP, LBAR), ``SMCConfig`` (SMC) or
        ``PathConfig`` (MBAR); ``None``: the defaults.
      target_samples: for LBAR, a sample file of the target (``freeflow sample``) or an
        array of target configurations ``[M, N, 3]``.
      seed: PRNG seed.
      workdir: SMC and MBAR: a directory that keeps finished work, so that the same call
        continues an interrupted estimate.
      counting: ``"bravais"`` (the literature's) or ``"exact"``; see
        ``freeflow.estimators.conventions``. Every method estimates in the default counting;
        the result is recounted once, at the end (``FreeEnergy.recounted``).

    Progress goes to stderr as ``freeflow.progress.showing`` sets it (by default a bar on a
    terminal and plain lines in a log).
    """
    if counting not in COUNTINGS:
        raise ValueError(f"unknown counting {counting!r}; use one of {', '.join(COUNTINGS)}")
    return _estimate(start, method, config, target_samples, seed, workdir).recounted(counting)


def _estimate(start, method, config, target_samples, seed, workdir) -> FreeEnergy:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    wanted = {"lfep": WorksConfig, "lbar": WorksConfig, "smc": SMCConfig,
              "mbar": PathConfig}[method]
    config = wanted() if config is None else config
    if not isinstance(config, wanted):
        raise ValueError(f"{method} takes a {wanted.__name__}; got a "
                         f"{type(config).__name__}")
    if method == "mbar":
        return _mbar(start, config, seed, workdir)
    if method == "smc":
        run, system, base = _smc_start(start)
        return smc_free_energy(run, system=system, base=base, config=config, seed=seed,
                               workdir=workdir)
    system, model, params = _flow_start(start)
    key = jax.random.PRNGKey(seed)
    if method == "lfep":
        return lfep_from_model(model, params, system, key, config.samples, config.batch_size)
    if target_samples is None:
        raise ValueError("LBAR needs target samples: pass --target-samples FILE (made with "
                         "'freeflow sample SYSTEM --out FILE')")
    if isinstance(target_samples, (str, os.PathLike)):
        path = target_samples
        target_samples, sampled, _ = rundir.load_samples(path)
        check_same_system(system, sampled, f"target sample file {path}")
    return lbar_from_model(model, params, system, key, config.samples,
                           np.asarray(target_samples), config.batch_size)


def _flow_start(start):
    """``(system, model, params)`` of a run directory, a ``TrainResult`` or a ``FromBase``."""
    if isinstance(start, FromBase):
        return _base_start(start.system, start.base)
    if isinstance(start, (str, os.PathLike)):
        if not Path(start).is_dir():
            raise ValueError(f"{start!r} is not a run directory; to estimate from a base "
                             f"without training, name a system and a base (freeflow "
                             f"estimate {start} --base harmonic)")
        system, model, params, _ = rundir.load_run(start)
        return system, model, params
    if isinstance(start, System):
        raise ValueError(f"LFEP, LBAR and SMC start from a trained flow or from a base: give "
                         f"a run directory, or FromBase({start.name!r})")
    return start.system, start.model, start.params


def _smc_start(start):
    """``(run, system, base)`` for ``smc_free_energy``."""
    if isinstance(start, FromBase):
        return None, start.system, start.base
    if isinstance(start, System) or (isinstance(start, (str, os.PathLike))
                                     and not Path(start).is_dir()):
        _flow_start(start)  # refuses it in one line
    return start, None, None


def _mbar(start, config: PathConfig, seed: int, workdir):
    if isinstance(start, FromBase):
        if start.base != "harmonic":
            raise ValueError(f"MBAR starts from the harmonic crystal (or an Einstein crystal, "
                             f"PathConfig(reference='einstein')), not the {start.base} base")
        start = start.system
    if not isinstance(start, System):
        if isinstance(start, (str, os.PathLike)) and Path(start).is_dir():
            start = rundir.load_run(start)[0]  # a run directory: MBAR of its system
        else:
            start = load_system(start)
    return mbar_free_energy(start, config, seed=seed, workdir=workdir)


def _base_start(system, base: str):
    """``(system, BaseModel, None)`` of ``FromBase(system, base)``."""
    config = base_config(base)  # an unknown name is refused before the system is built
    if not isinstance(system, System):
        system = load_system(system)
    return system, BaseModel(system, config), None
