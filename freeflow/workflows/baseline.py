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
re-run skips it, and a larger ``samples_per_state`` continues its saved chains. The ladder of
states (``freeflow.sampling.ladder.path_free_energy``) and MBAR on its arrays
(``freeflow.estimators.mbar.linear_path_mbar``) know nothing of crystals or files: this module
builds the crystal's path and hands the ladder the work directory as its store.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from freeflow.checks import check_whole_numbers
from freeflow.estimators.conventions import (
    beta_f_from_ln_z_fixed,
    log_z_from_fixed_particle,
    translation_multiplicity,
)
from freeflow.estimators.result import FreeEnergy
from freeflow.physics.harmonic import einstein_crystal, harmonic_crystal
from freeflow.physics.potentials import EinsteinCrystal
from freeflow.physics.identity import system_fingerprint
from freeflow.rundir import MbarWorkdir
from freeflow.sampling.hmc import HMCConfig, sample_system
from freeflow.sampling.ladder import (LinearPath, lambda_schedule, path_free_energy,
                                      samples_per_chain, transition_seconds)

__all__ = ["PathConfig", "REFERENCES", "mbar_free_energy", "mbar_transition_seconds",
           "unit_einstein_energy_fn"]


# Cached by value (box and sites), so equal systems share one reference function.
@functools.lru_cache(maxsize=16)
def _unit_einstein(box: tuple, sites_bytes: bytes, num: int):
    sites = np.frombuffer(sites_bytes, dtype=np.float64).reshape(num, 3)
    return EinsteinCrystal(1.0).energy_fn(np.asarray(box), sites)


def unit_einstein_energy_fn(system) -> Callable:
    """``sum_i (1/2) |minimum_image(x_i - site_i)|^2`` for the system's lattice (k = 1)."""
    sites = np.ascontiguousarray(system.lattice, dtype=np.float64)
    return _unit_einstein(tuple(float(b) for b in system.box), sites.tobytes(), len(sites))


def _pilot_width(system, key, num_chains: int) -> tuple[float, int]:
    """Root-mean-square displacement per coordinate of the mobile particles in the target."""
    res = sample_system(system, key, HMCConfig(num_chains=num_chains, num_samples=32,
                                               num_warmup=150, thin=2),
                        desc=f"pilot {system.name}")
    d = res.positions[:, 1:] - system.lattice[None, 1:]
    d = d - system.box * np.round(d / system.box)
    # The pilot only evaluates the target (value and gradient).
    return float(np.sqrt(np.mean(d**2))), res.energy_evaluations


def _baseline_settings(system, width, **settings) -> dict:
    return {"system": system.name, "definition": system.definition,
            "fingerprint": system_fingerprint(system), **settings, "requested_width": width}


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
                     workdir: str | Path | None = None) -> FreeEnergy:
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
    c, width = config, config.width
    system.check_batch_memory(c.num_chains, f"MBAR's HMC of {c.num_chains} chains")
    key = jax.random.key(seed) if key is None else key
    lambdas = lambda_schedule(c.num_states, c.schedule_power)
    settings = _baseline_settings(
        system, width, reference=c.reference, num_states=c.num_states,
        schedule_power=c.schedule_power, samples_per_state=c.samples_per_state,
        num_chains=c.num_chains, num_warmup=c.num_warmup, thin=c.thin,
        num_integration_steps=c.num_integration_steps, seed=seed)
    # samples_per_state may change: saved states are extended (or cut) to the new length.
    free = ("samples_per_state",)
    # One writer per work directory: a second process is refused before any sampling.
    with MbarWorkdir.open(workdir) as store:
        saved = store.read_settings() if store is not None else None
        if saved is not None:
            store.refuse_other_settings(saved, {"settings": settings}, within="settings",
                                        ignore=free)
        pilot_evaluations = 0
        if saved is not None:
            # The saved energies are relative to this shift and width: a resumed run reuses them.
            width, pilot_evaluations = saved["width"], saved["pilot_evaluations"]
            shift = saved["target_shift"]
        else:
            shift = system.lattice_energy()
            if c.reference == "einstein" and width is None:
                width, pilot_evaluations = _pilot_width(system, jax.random.fold_in(key, 10_000),
                                                        c.num_chains)
        if store is not None:
            store.check_settings({"settings": settings, "width": width,
                                  "pilot_evaluations": pilot_evaluations,
                                  "target_shift": shift}, within="settings", ignore=free)
        crystal, reference_details = _reference_crystal(system, c.reference, width)
        path = _linear_path(system, crystal, lambdas, shift)
        out = path_free_energy(path, system.lattice, key, _sampling(c), store=store,
                               label=f"mbar {system.name}")
        return _free_energy(system, crystal, reference_details, config, lambdas, shift, out,
                            pilot_evaluations, time.perf_counter() - start)


def _linear_path(system, crystal, lambdas, shift: float) -> LinearPath:
    """The path from ``crystal`` to the system's energy, particle 0 held on its site."""
    fixed = np.zeros(system.num_particles, bool)
    fixed[0] = True
    return LinearPath(crystal.energy_fn, system.energy_fn(strays="nan"), system.beta,
                      lambdas, box=system.box, target_shift=shift, fixed=fixed,
                      reference_sampler=crystal.sample)


def _sampling(config: PathConfig) -> HMCConfig:
    return HMCConfig(num_chains=config.num_chains,
                     num_samples=samples_per_chain(config.samples_per_state, config.num_chains),
                     num_warmup=config.num_warmup, thin=config.thin,
                     num_integration_steps=config.num_integration_steps)


def mbar_transition_seconds(system, config: PathConfig = PathConfig(), *,
                            seed: int = 0) -> float:
    """Seconds of one HMC transition of ``mbar_free_energy``'s path for ``config`` at its
    middle state (lambda = 1/2), on this machine, compiling not counted
    (``freeflow.sampling.ladder.transition_seconds``). ``mbar_free_energy`` takes about
    ``num_warmup + (K - 2) * max(50, num_warmup // 4) + (K - 1) * thin * samples_per_state
    / num_chains`` of them. An Einstein reference without a width is timed at 3% of the
    mean interparticle spacing ``(V / N)^(1/3)`` (the cost does not depend on it); no pilot
    run is counted."""
    width = config.width
    if config.reference == "einstein" and width is None:
        width = 0.03 * float(np.prod(system.box) / system.num_particles) ** (1 / 3)
    crystal, _ = _reference_crystal(system, config.reference, width)
    path = _linear_path(system, crystal, lambda_schedule(config.num_states,
                                                         config.schedule_power),
                        system.lattice_energy())
    return transition_seconds(path, system.lattice, jax.random.key(seed), _sampling(config))


def _free_energy(system, crystal, reference_details: dict, config: PathConfig, lambdas,
                 shift: float, out, pilot_evaluations: int, wall_time: float) -> FreeEnergy:
    """The ``FreeEnergy`` of the ladder's result ``out`` (``path_free_energy``)."""
    # ln Z_fixed(target) = ln Z_ref - Delta f - beta U_lattice (the shift comes back here).
    ln_z_fixed = crystal.ln_z_fixed - out.delta_f - system.beta * shift
    n, lam_ref = system.num_particles, system.units.reference_length
    states = out.details["states"]
    m = 1  # the "bravais" counting; FreeEnergy.recounted gives the other
    details = {"ln_z_fixed": ln_z_fixed, "multiplicity": m, "counting": "bravais",
               "lattice_multiplicity": translation_multiplicity(system.lattice, system.box),
               "num_particles": n,
               "ln_z": log_z_from_fixed_particle(ln_z_fixed, n, system.volume, m),
               "reference": config.reference, "reference_ln_z_fixed": crystal.ln_z_fixed,
               **reference_details,
               "reference_beta_f_per_particle": beta_f_from_ln_z_fixed(
                   crystal.ln_z_fixed, n, system.volume, lam_ref, m),
               "lattice_energy": shift, "lambdas": lambdas.tolist(),
               "min_neighbour_overlap": out.details["min_neighbour_overlap"],
               "samples_per_state": config.samples_per_state, "num_chains": config.num_chains,
               # Sampling time of all states, over every session that added to them (the
               # result's wall_time is this call's only, short when states were read back).
               "sampling_wall_time": float(sum(st["wall_time"] for st in states)),
               "states": states}
    return FreeEnergy(value=beta_f_from_ln_z_fixed(ln_z_fixed, n, system.volume, lam_ref, m),
                      stderr=out.stderr / n, method="mbar", num_states=config.num_states,
                      num_samples=out.num_samples,
                      energy_evaluations=out.energy_evaluations + pilot_evaluations,
                      wall_time=wall_time, system=system.name, details=details)
