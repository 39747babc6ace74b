"""``beta F / N`` by annealed SMC from a trained flow, or from a base alone, to the target.

The annealing itself is ``freeflow.sampling.smc.anneal``; this module builds its two densities
for a crystal, in the frame every other estimator of freeflow uses:

* particle 0 is held on site 0 (the flow's canonical frame: the target is translation
  invariant, so ``Z = V Z_fixed`` up to the counting);
* the ``P = N - 1`` others are labelled by the site they vibrate about. A flow (and its base)
  is symmetric under relabelling, ``q(y) = q(pi y)``; folded onto the labelled frame its
  density is ``P! q(y)``, so the start samples are relabelled to their nearest sites once,
  and the start density is ``ln q(y) + ln P!``;
* the target is ``exp(-beta U)`` on the crystal's region: every particle within half the
  nearest-neighbour distance ``R`` of its own site (zero outside). This is the region the
  site list is exact on, the region ``freeflow baseline`` samples (its HMC rejects moves that
  leave it), so SMC and MBAR estimate the same ``Z_fixed``; the mass of the crystal outside it
  (a particle half-way to a neighbouring site) is below any error bar at these temperatures.

``ln Z_fixed`` is then the SMC estimate of ``ln (Z_target / Z_start)``, and the conventions of
``freeflow.estimators.conventions`` turn it into ``beta F / N``. ``R`` independent runs give the
standard error (``freeflow.estimators.smc.combine_log_z``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from freeflow import rundir
from freeflow.estimators.conventions import (beta_f_from_ln_z_fixed,
                                             log_z_from_fixed_particle,
                                             translation_multiplicity)
from freeflow.estimators.result import FreeEnergy
from freeflow.estimators.smc import combine_log_z
from freeflow.fingerprint import array_fingerprint
from freeflow.flows.bases import base_distribution
from freeflow.flows.config import base_config
from freeflow.physics.system import System
from freeflow.physics.system_files import load_system
from freeflow.physics.identity import system_fingerprint
from freeflow.progress import progress_bar, status
from freeflow.sampling.smc import AnnealConfig, anneal
from freeflow.rundir import SmcWorkdir
from freeflow.workflows.frame import (START_STEP_SIZE, SiteFrame, Whitening, absolute_positions,
                                      crystal_densities)

__all__ = ["SMCConfig", "resolve_start", "smc_free_energy", "start_identity"]

#: Flow samples drawn per call of the model (bounds the transformer's memory).
_FLOW_BATCH = 256


def _flow_start(model, params):
    """(sample ``(key, n) -> y [n, P, 3]``, ``ln q_m`` of one ``y [P, 3]``) of a flow."""
    def sample(key, n):
        sizes = [min(_FLOW_BATCH, n - i) for i in range(0, n, _FLOW_BATCH)]
        return jnp.concatenate([model.sample_mobile(params, jax.random.fold_in(key, b), size)[0]
                                for b, size in enumerate(sizes)])

    def log_start(y):
        return model.mobile_log_prob(params, y)

    return sample, log_start


def _base_start(base):
    def sample(key, n):
        return base.sample_and_log_prob(key, n)[0]
    return sample, base.labelled_log_prob


def resolve_start(run, system, base, say=lambda text: None):
    """``(system, mobile sites, sample, ln q on the labelled frame, start label, base, the
    arrays that identify the start)``: the flow's parameters, or the base's widths."""
    if (run is None) == (base is None):
        raise ValueError("SMC starts from a trained run or from a base: give a run directory, "
                         "or a system with base='harmonic' (say), not both or neither")
    if run is not None:
        if isinstance(run, (str, os.PathLike)):
            system, model, params, _ = rundir.load_run(run)
        else:
            system, model, params = run.system, run.model, run.params
        sample, log_start = _flow_start(model, params)
        # The flow's density is symmetric under relabelling: fold it onto the labelled frame.
        num_mobile = system.num_particles - 1
        fold = math.lgamma(num_mobile + 1)
        return (system, model.base.mobile_sites, sample,
                lambda y: log_start(y) + fold, "flow", model.base,
                jax.tree_util.tree_leaves(params))
    if system is None:
        raise ValueError("SMC from a base needs a system (a name, a .toml file or a System)")
    if not isinstance(system, System):
        system = load_system(system)
    if isinstance(base, str):
        config = base_config(base)
        # The harmonic bases need the lattice Hessian: about a minute at N = 512.
        say(f"SMC {system.name}: building the {base} base")
        distribution, label = base_distribution(system, config), base
    else:  # a base distribution object of freeflow.flows.bases, built by the caller
        distribution, label = base, type(base).__name__
    if np.shape(distribution.mobile_sites) != (system.num_particles - 1, 3):
        raise ValueError(f"the base has {len(distribution.mobile_sites)} mobile sites; "
                         f"{system.name} needs {system.num_particles - 1}")
    sample, log_start = _base_start(distribution)
    identity = [getattr(distribution, name) for name in ("colour", "noise_scale", "radius")
                if hasattr(distribution, name)]
    return (system, distribution.mobile_sites, sample, log_start, f"base:{label}",
            distribution, identity)


def _group_record(system, start: str, identity: str, settings: dict) -> dict:
    """What a work directory's groups depend on: the system, the start, the settings."""
    return {"system": system.name, "system_fingerprint": system_fingerprint(system),
            "start": start, "start_fingerprint": identity, **settings}


def start_identity(leaves) -> str:
    """A short hash of the arrays that identify the start density (``resolve_start``)."""
    return array_fingerprint(leaves)


@dataclasses.dataclass(frozen=True)
class SMCConfig:
    """Settings of an SMC estimate; checked on construction.

    Attributes:
      particles: SMC particles per run (configurations of the whole crystal, not atoms), >= 2.
      repeats: independent runs, >= 2; their spread is the standard error.
      group_size: runs annealed together (vectorised); ``None``: all of them, or 1 when the
        estimate keeps a work directory. Group ``g`` uses the key ``fold_in(PRNGKey(seed),
        g)``, so a result does not depend on where it was interrupted.
      anneal: how each run moves to the target (``freeflow.sampling.smc.AnnealConfig``).
    """

    particles: int = 256
    repeats: int = 8
    group_size: int | None = None
    anneal: AnnealConfig = AnnealConfig()

    def __post_init__(self):
        if isinstance(self.particles, bool) or int(self.particles) != self.particles \
                or self.particles < 2:
            raise ValueError(f"SMC needs at least 2 particles per run; got {self.particles} "
                             "(--particles)")
        if isinstance(self.repeats, bool) or int(self.repeats) != self.repeats \
                or self.repeats < 2:
            raise ValueError(f"SMC's error bar needs at least 2 independent runs; got "
                             f"{self.repeats} (--repeats)")
        if self.group_size is not None and (int(self.group_size) != self.group_size
                                            or not 1 <= self.group_size <= self.repeats):
            raise ValueError(f"group_size must be between 1 and repeats ({self.repeats}); got "
                             f"{self.group_size}")

    def record(self, group_size: int, seed: int) -> dict:
        """What a run's numbers depend on, as a work directory records it."""
        a = self.anneal
        return dict(smc_particles=int(self.particles), group_size=int(group_size),
                    seed=int(seed), target_ess=a.target_ess, resample_ess=a.resample_ess,
                    mcmc_steps=a.mcmc_steps, integration_steps=a.integration_steps)


def smc_free_energy(run=None, *, system=None, base=None, config: SMCConfig = SMCConfig(),
                    seed: int = 0, workdir=None) -> FreeEnergy:
    """``beta F / N`` by annealed SMC from a flow (``run``) or a base (``system``, ``base``).

    Args:
      run: a run directory of ``freeflow train`` or a ``TrainResult``: start from its flow.
      system: a named system, a ``.toml`` file or a ``System``; with ``base``, start from that
        base distribution untrained: a name of ``freeflow.flows.config.BASES`` (e.g.
        ``"harmonic"``) or a base object of ``freeflow.flows.bases`` built for the system
        (``harmonic_base(system, temperature_factor=1.5)``, say).
      config: ``SMCConfig`` (particles per run, runs, grouping, annealing).
      seed: PRNG seed.
      workdir: a directory where every finished group of runs is saved
        (``freeflow.rundir.SmcWorkdir``); calling again with the same settings reuses them,
        so an interrupted estimate continues where it stopped, and more ``repeats`` extend it.

    Returns:
      ``FreeEnergy`` with ``method="smc"``, in the ``"bravais"`` counting
      (``FreeEnergy.recounted`` gives the other); ``num_samples = repeats * particles``, ``ess``
      the mean final ESS fraction, ``num_states`` the largest number of temperatures of a run;
      ``details`` holds ``smc_particles`` (per run), the per-run ``ln Z_fixed``, the
      temperatures, the acceptance and the evaluations of the target energy and of the start
      density; ``samples`` the final particles, ``[repeats * particles, N, 3]`` equal-weight
      samples of the target (correlated within a run through resampling).
    """
    particles, repeats = int(config.particles), int(config.repeats)
    group_size = config.group_size
    if group_size is None:
        group_size = 1 if workdir is not None else repeats
    start_time = time.perf_counter()
    system, sites, sample, log_start, start, distribution, leaves = resolve_start(
        run, system, base, status)
    system.check_batch_memory(group_size * particles, f"SMC of {group_size} runs of "
                              f"{particles} particles at once (group_size)")
    frame = SiteFrame.of(system, sites)
    whitening = Whitening.of(system, distribution)
    log_start_u, log_target_u = crystal_densities(system, frame, whitening, log_start)
    settings = config.record(group_size, seed)

    def run_group(index: int, size: int):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
        k_start, k_anneal = jax.random.split(key)
        y0 = frame.label(jnp.asarray(sample(k_start, size * particles), jnp.float32))
        u0 = whitening.coordinates(frame.offsets(y0)).reshape(size, particles, -1)
        result = anneal(log_start_u, log_target_u, u0, k_anneal, config.anneal, box=None,
                        step_size=START_STEP_SIZE,
                        desc=f"SMC {system.name} runs {index * group_size + 1}-"
                             f"{index * group_size + size}/{repeats}")
        u = jnp.asarray(result.positions.reshape(size * particles, -1))
        positions = np.asarray(absolute_positions(frame, whitening, u))
        info = {"temperatures": [t.tolist() for t in result.temperatures],
                "final_ess": result.final_ess.tolist(), "acceptance": result.acceptance,
                "target_evaluations": result.target_evaluations,
                "start_evaluations": result.start_evaluations,
                "wall_time": result.wall_time}
        return result.log_z, positions, info

    groups = []
    with SmcWorkdir.open(workdir) as store, \
            progress_bar(repeats, f"SMC {system.name}", "run") as bar:
        if store is not None:
            store.check_settings(_group_record(system, start, start_identity(leaves), settings))
        for index in range(-(-repeats // group_size)):
            size = min(group_size, repeats - index * group_size)
            saved = store.read_group(index) if store is not None else None
            if saved is None or len(saved[0]) != size:
                saved = run_group(index, size)
                if store is not None:
                    store.write_group(index, *saved)
            groups.append(saved)
            # Over all runs, so that a log shows how far a long estimate got (one run's own
            # bar may end before it prints a line).
            bar.update(size)
    return _result(system, start, groups, settings, start_time)


def _result(system, start: str, groups, settings: dict, start_time: float) -> FreeEnergy:
    """The ``FreeEnergy`` of finished groups ``(log_z, positions, info)``, in the
    ``"bravais"`` counting (``m = 1``)."""
    m = 1
    log_z = np.concatenate([g[0] for g in groups])
    infos = [g[2] for g in groups]
    temperatures = [t for info in infos for t in info["temperatures"]]
    num_temperatures = [len(t) for t in temperatures]
    final_ess = [e for info in infos for e in info["final_ess"]]
    n, volume = system.num_particles, float(np.prod(system.box))
    ln_z_fixed, ln_z_stderr = combine_log_z(log_z)
    value = beta_f_from_ln_z_fixed(ln_z_fixed, n, volume, system.units.reference_length, m)
    start_evaluations = sum(info["start_evaluations"] for info in infos)
    evaluations = ({"model_evaluations": start_evaluations} if start == "flow"
                   else {"base_evaluations": start_evaluations})
    details = {
        "start": start, "repeats": len(log_z),
        "num_temperatures": num_temperatures, "temperatures": temperatures,
        "final_ess": final_ess,
        "acceptance": float(np.mean([info["acceptance"] for info in infos])),
        "ln_z_fixed": ln_z_fixed, "ln_z_fixed_stderr": ln_z_stderr,
        "ln_z_fixed_runs": log_z.tolist(), **evaluations,
        "sampling_wall_time": float(sum(info["wall_time"] for info in infos)),
        **settings,
        "counting": "bravais", "num_particles": n,
        "lattice_multiplicity": translation_multiplicity(system.lattice, system.box),
    }
    return FreeEnergy(
        value=value, stderr=ln_z_stderr / n, method="smc", system=system.name,
        num_samples=len(log_z) * settings["smc_particles"], ess=float(np.mean(final_ess)),
        num_states=int(max(num_temperatures)),
        energy_evaluations=int(sum(info["target_evaluations"] for info in infos)),
        wall_time=time.perf_counter() - start_time,
        log_z=log_z_from_fixed_particle(ln_z_fixed, n, volume, m), details=details,
        samples=np.concatenate([g[1] for g in groups]))
