"""Free energies of a trained flow: draw its samples, compute their works, call an estimator.

``lfep_from_model`` and ``lbar_from_model`` work on a model and its parameters;
``estimate`` on a run directory (or a ``TrainResult``). The estimators themselves
(``freeflow.estimators``) only see arrays of works.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import jax
import numpy as np

from freeflow import rundir
from freeflow.estimators.bar import lbar
from freeflow.estimators.conventions import (DEFAULT_COUNTING, multiplicity,
                                             translation_multiplicity)
from freeflow.estimators.lfep import lfep
from freeflow.estimators.result import FreeEnergy
from freeflow.flows.config import base_config
from freeflow.flows.model import BaseModel
from freeflow.flows.works import model_works, reverse_works
from freeflow.physics.system import System, check_same_system, load_system

__all__ = ["counted", "estimate", "lbar_from_model", "lfep_from_model"]


def counted(result: FreeEnergy, system, counting: str, wall_time: float) -> FreeEnergy:
    """``result`` with its counting, the lattice's sites per primitive cell, N and the wall
    time (s) of drawing and evaluating its samples recorded."""
    details = dict(result.details, counting=counting, num_particles=system.num_particles,
                   lattice_multiplicity=translation_multiplicity(system.lattice, system.box))
    return dataclasses.replace(result, wall_time=wall_time, details=details)


def lfep_from_model(model, params, system, key, num_samples: int = 100_000,
                    batch_size: int = 256, progress: bool = True, bootstrap: int = 200,
                    counting: str = DEFAULT_COUNTING) -> FreeEnergy:
    """LFEP ``beta F / N`` of ``system`` from ``num_samples`` samples of a flow (exact energy).

    See ``freeflow.estimators.lfep.lfep`` for the estimator and when to trust it, and
    ``freeflow.estimators.conventions`` for ``counting``.
    """
    start = time.perf_counter()
    m = multiplicity(system, counting)
    work = model_works(model, params, system, key, num_samples, batch_size, progress)
    result = lfep(work, system.num_particles, reference_length=system.units.reference_length,
                  multiplicity=m, system=system.name, bootstrap=bootstrap)
    return counted(result, system, counting, time.perf_counter() - start)


def lbar_from_model(model, params, system, key, num_model_samples: int, target_positions,
                    batch_size: int = 256, progress: bool = True,
                    counting: str = DEFAULT_COUNTING) -> FreeEnergy:
    """LBAR for a flow ``model`` (interface: ``sample_and_log_prob(params, key, n) -> (x [n,
    N, 3], log_q [n])`` and ``log_prob(params, y [m, N, 3]) -> [m]``).

    ``target_positions`` ``[m, N, 3]`` are decorrelated equilibrium samples of ``system``
    (e.g. ``freeflow.sampling.hmc.sample_system`` thinned by its autocorrelation time). The
    exact (not softened) energy is used. ``energy_evaluations`` counts n + m target energies.
    """
    start = time.perf_counter()
    m = multiplicity(system, counting)
    # Model samples are drawn and evaluated batch by batch, so 10^5-10^6 fit in memory.
    forward = model_works(model, params, system, key, int(num_model_samples), batch_size,
                          progress)
    reverse = reverse_works(model, params, system, np.asarray(target_positions), batch_size,
                            progress)
    result = lbar(forward, reverse, system.num_particles, system.units.reference_length,
                  multiplicity=m, system=system.name,
                  energy_evaluations=len(forward) + len(reverse))
    return counted(result, system, counting, time.perf_counter() - start)


def estimate(run, num_samples: int = 100_000, *, method: str = "lfep", reference=None,
             base: str | None = None, seed: int = 0, batch_size: int = 256,
             progress: bool = True, counting: str = DEFAULT_COUNTING) -> FreeEnergy:
    """``beta F / N`` of a trained run, or of a base distribution with no training.

    Args:
      run: a run directory (``freeflow train --out DIR``) or a ``TrainResult``; with
        ``base``, a system (a name, a .toml file or a ``System``).
      num_samples: model samples to draw.
      method: ``"lfep"`` (model samples only) or ``"lbar"`` (also needs ``reference``).
      reference: for LBAR, a sample file of the target (``freeflow sample``) or an array of
        target configurations ``[M, N, 3]``.
      base: estimate from this base distribution of the system ``run`` names (one of
        ``freeflow.flows.config.BASES``), exactly an untrained flow's density
        (``freeflow.flows.model.BaseModel``): LFEP and BAR from the harmonic crystal, say.
      seed: PRNG seed of the model samples.
      counting: ``"bravais"`` (the literature's) or ``"exact"``; see
        ``freeflow.estimators.conventions``.
    """
    if base is not None:
        system, model, params = _base_start(run, base)
    elif isinstance(run, (str, os.PathLike)):
        system, model, params, _ = rundir.load_run(run)
    else:
        system, model, params = run.system, run.model, run.params
    if num_samples < 2:
        raise ValueError(f"need at least 2 samples; got {num_samples}")
    multiplicity(system, counting)  # refuses an unknown counting before any sampling
    key = jax.random.PRNGKey(seed)
    if method == "lfep":
        return lfep_from_model(model, params, system, key, num_samples, batch_size, progress,
                               counting=counting)
    if method == "lbar":
        if reference is None:
            raise ValueError("LBAR needs target samples: pass --reference FILE (made with "
                             "'freeflow sample SYSTEM --out FILE')")
        if isinstance(reference, (str, Path)):
            path = reference
            reference, sampled, _ = rundir.load_samples(path)
            check_same_system(system, sampled, f"reference file {path}")
        return lbar_from_model(model, params, system, key, num_samples, np.asarray(reference),
                               batch_size, progress, counting=counting)
    raise ValueError(f"unknown method {method!r}; use 'lfep' or 'lbar'")


def _base_start(system, base: str):
    """``(system, BaseModel, None)`` for ``estimate(system, base=...)``."""
    config = base_config(base)  # an unknown name is refused before the system is built
    if not isinstance(system, System):
        system = load_system(system)
    return system, BaseModel(system, config), None
