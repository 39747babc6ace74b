"""The MBAR route along temperature: one absolute value, then a ladder of temperatures.

For requested temperatures ``T_1 < ... < T_K`` and an anchor ``T_a`` among them (default the
lowest, where the harmonic crystal is closest to the crystal):

1. ``beta F / N`` at ``T_a`` by MBAR from the harmonic crystal
   (``freeflow.workflows.baseline.mbar_free_energy``): ``ln Z_fixed(beta_a)`` with its error;
2. HMC chains of the crystal at every ``T_k`` (particle 0 held, as the baseline), each
   temperature's chains starting where the previous temperature's stopped. They run in the
   coordinates in which the harmonic crystal at ``T_k`` is standard normal
   (``freeflow.workflows.frame.harmonic_preconditioner``, scaled by ``sqrt(T_k / T_1)``), with
   trajectories of a quarter of the harmonic period (``HMCConfig.trajectory``): there an
   independent energy costs 5.4 times fewer energy evaluations than with unit mass
   (mw_cubic_216 at 200 K; docs/sweep.md, "The chains' coordinates");
3. MBAR over the temperatures on the decorrelated samples' energies, ``u_k(x) = beta_k U(x)``:
   no energy is evaluated again. It gives ``ln Z_fixed(beta_k) - ln Z_fixed(beta_a)``
   (``freeflow.estimators.mbar.mbar_states``), with their covariance from a bootstrap over
   the chains; the anchor's variance adds to every entry, so the error of
   ``F(T_1) - F(T_2)`` is the ladder's alone.

The chains also give ``U``, ``C_v`` and the pressure at every temperature
(``freeflow.estimators.curve.curve_from_chains``). With a work directory
(``freeflow.rundir.LadderWorkdir``) the anchor's MBAR states and every finished temperature
are kept; a rerun continues, and more temperatures above the last extend the ladder.

``bench/suite/sweep_routes.py`` measured this route against the SMC sweep (docs/sweep.md,
"Which route").
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np

from freeflow.estimators.curve import Curve, curve_from_chains
from freeflow.estimators.mbar import mbar_states, uncorrelated_indices
from freeflow.physics.identity import system_fingerprint
from freeflow.physics.pressure import volume_derivative_fn
from freeflow.physics.system import System
from freeflow.physics.system_files import load_system
from freeflow.progress import status
from freeflow.rundir import LadderWorkdir
from freeflow.sampling.hmc import QUARTER_PERIOD, HMCConfig, sample_system
from freeflow.workflows.baseline import PathConfig, mbar_free_energy
from freeflow.workflows.frame import harmonic_preconditioner

__all__ = ["LadderConfig", "ladder_curve"]

#: Above this many particles the chains keep unit mass: the harmonic coordinates' dense
#: colouring grows as N^2 in memory and in work per leapfrog step (measured at N = 216 only;
#: docs/sweep.md, "The chains' coordinates").
MAX_COORDINATE_PARTICLES = 1000


@dataclasses.dataclass(frozen=True)
class LadderConfig:
    """Settings of the MBAR route along temperature (module docstring); checked on
    construction.

    Attributes:
      anchor: the MBAR path from the harmonic crystal at the anchor temperature
        (``PathConfig``).
      anchor_temperature: one of the requested temperatures; ``None``: the lowest.
      sampling: the HMC chains at every temperature (``HMCConfig``: chains, samples saved per
        chain, warm-up, thinning, leapfrog steps, trajectory); at least 2 chains, whose spread
        gives the errors of ``U``, ``C_v`` and the pressure. The chains run in the harmonic
        crystal's coordinates (``_chain_coordinates`` says when not);
        ``trajectory=QUARTER_PERIOD`` (default) sets production's leapfrog steps from the
        step size, ``None`` keeps ``num_integration_steps`` (warm-up's, default 4). Build it
        with ``dataclasses.replace(LadderConfig().sampling, ...)``: a plain ``HMCConfig()``
        has 8 fixed steps, which turn the harmonic modes by nearly half a period, the worst
        choice in these coordinates.
      bootstrap: 0 (default): the ladder's covariance from pymbar's asymptotic errors;
        at least 20: from that many bootstrap resamplings of the chains (``_ladder``).
    """

    anchor: PathConfig = PathConfig()
    anchor_temperature: float | None = None
    sampling: HMCConfig = HMCConfig(num_chains=16, num_samples=500, num_warmup=200, thin=2,
                                    num_integration_steps=4, trajectory=QUARTER_PERIOD)
    bootstrap: int = 0

    def __post_init__(self):
        if self.sampling.num_chains < 2:
            raise ValueError(f"the ladder needs at least 2 chains per temperature (their "
                             f"spread is the error); got {self.sampling.num_chains}")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) \
                or 0 < self.bootstrap < 20 or self.bootstrap < 0:
            raise ValueError(f"bootstrap must be 0 (pymbar's errors) or at least 20 "
                             f"resamplings; got {self.bootstrap!r}")
        if self.sampling.num_samples < 2:
            raise ValueError(f"the ladder needs at least 2 samples per chain; got "
                             f"{self.sampling.num_samples}")

    def record(self, seed: int) -> dict:
        return {"route": "mbar", "anchor_path": dataclasses.asdict(self.anchor),
                "anchor_temperature": self.anchor_temperature,
                "sampling": dataclasses.asdict(self.sampling), "bootstrap": self.bootstrap,
                "seed": int(seed)}


def ladder_curve(system, temperatures, config: LadderConfig = LadderConfig(), *,
                 seed: int = 0, workdir=None) -> Curve:
    """``beta F / N``, ``U``, ``S``, ``C_v`` and the pressure of ``system`` at every
    temperature by the MBAR route (module docstring).

    Args:
      system: a named system, a ``.toml`` file or a ``System`` (its own temperature is
        ignored).
      temperatures: increasing temperatures in the system's temperature unit (checked by the
        caller, ``freeflow.workflows.sweep.free_energy_curve``).
      config: ``LadderConfig``. seed: PRNG seed.
      workdir: where the anchor's states and every finished temperature are kept.

    Returns:
      ``Curve`` in the ``"bravais"`` counting.
    """
    began = time.perf_counter()
    if not isinstance(system, System):
        system = load_system(system)
    anchor = _anchor_index(temperatures, config.anchor_temperature)
    with LadderWorkdir.open(workdir) as store:
        say = status if store is None else store.log
        if store is not None:
            store.check_settings({"system": system.name,
                                  "system_fingerprint": system_fingerprint(system),
                                  **config.record(seed)})
        at_anchor = dataclasses.replace(system, temperature=temperatures[anchor])
        say(f"ladder {system.name}: MBAR from the harmonic crystal at T = "
            f"{temperatures[anchor]:g}")
        fixed = mbar_free_energy(at_anchor, config.anchor, seed=seed,
                                 workdir=None if store is None else store.path / "anchor")
        parts = _sample_temperatures(system, temperatures, config.sampling, seed, store, say)
    energies = np.stack([p["energies"] for p in parts], axis=2)            # [C, S, K]
    ln_z, covariance, ladder = _ladder(system, temperatures, energies, anchor,
                                       fixed.details["ln_z_fixed"], fixed.stderr,
                                       config.bootstrap, seed)
    details = {"route": "mbar", "anchor": {"temperature": float(temperatures[anchor]),
                                           "beta_f_per_particle": fixed.value,
                                           "stderr": fixed.stderr,
                                           "min_neighbour_overlap":
                                               fixed.details["min_neighbour_overlap"],
                                           "sampling_wall_time":
                                               fixed.details["sampling_wall_time"]},
               **ladder, "temperatures_sampled": [p["info"] for p in parts],
               **config.record(seed), "wall_time": time.perf_counter() - began}
    return curve_from_chains(system, temperatures, ln_z, covariance, energies,
                             volume_derivatives=np.stack([p["volume_derivatives"]
                                                          for p in parts], axis=2),
                             details=details)


def _anchor_index(temperatures, anchor_temperature) -> int:
    if anchor_temperature is None:
        return 0
    hits = [k for k, t in enumerate(temperatures) if abs(t - anchor_temperature) <= 1e-9]
    if not hits:
        raise ValueError(f"the anchor temperature {anchor_temperature:g} is not one of the "
                         f"requested temperatures {list(temperatures)}")
    return hits[0]


def _sample_temperatures(system, temperatures, sampling: HMCConfig, seed: int, store, say):
    """Every temperature's chains, read from ``store`` where finished, else sampled (and
    kept): ``[{"energies": [C, S], "volume_derivatives": [C, S], "final_positions",
    "info"}]``."""
    derivative = volume_derivative_fn(system)
    # One energy function for every temperature (beta and the preconditioner are traced
    # arguments of the chains): the chains compile once.
    energy = system.energy_fn(strays="nan")
    chains = None  # (coordinates at T_1 or None, HMCConfig), built when first needed
    parts, start = [], None
    for k, temperature in enumerate(temperatures):
        saved = store.read_temperature(k, temperature) if store is not None else None
        if saved is None:
            if chains is None:
                chains = _chain_coordinates(system, temperatures[0], sampling, say)
            coordinates, config = chains
            at = dataclasses.replace(system, temperature=temperature)
            began = time.perf_counter()
            scale = math.sqrt(temperature / temperatures[0])
            result = sample_system(at, jax.random.fold_in(jax.random.PRNGKey(seed), 1000 + k),
                                   config, energy_fn=energy, initial_positions=start,
                                   preconditioner=None if coordinates is None
                                   else coordinates.scaled(scale),
                                   desc=f"ladder {system.name} T = {temperature:g} "
                                        f"({k + 1}/{len(temperatures)})")
            shape = (sampling.num_chains, sampling.num_samples)
            saved = {"energies": np.asarray(result.energies, np.float64).reshape(shape),
                     "volume_derivatives": derivative(result.positions).reshape(shape),
                     "final_positions": result.final_positions,
                     "info": {"temperature": float(temperature),
                              "acceptance": float(result.acceptance),
                              "tau": float(result.tau), "step_size": float(result.step_size),
                              "leapfrog_steps": int(result.num_integration_steps),
                              "energy_evaluations": int(result.energy_evaluations),
                              "wall_time": time.perf_counter() - began}}
            if store is not None:
                store.write_temperature(k, saved)
            say(f"ladder {system.name}: T = {temperature:g} sampled in "
                f"{saved['info']['wall_time']:.1f} s, acceptance "
                f"{saved['info']['acceptance']:.2f}, {result.num_integration_steps} leapfrog "
                f"steps, tau {saved['info']['tau']:.2f}, U/N = "
                f"{saved['energies'].mean() / system.num_particles:.6g}")
        parts.append(saved)
        start = saved["final_positions"]
    return parts


def _chain_coordinates(system, temperature: float, sampling: HMCConfig, say):
    """``(Preconditioner at temperature, HMCConfig)`` of the chains: the harmonic crystal's
    coordinates, or unit mass with 8 fixed leapfrog steps where there are none (a lattice
    that is not a stable minimum) or where the dense colouring would cost too much (more
    than ``MAX_COORDINATE_PARTICLES`` particles)."""
    reason = None
    if system.num_particles > MAX_COORDINATE_PARTICLES:
        reason = (f"{system.num_particles} particles, more than the "
                  f"{MAX_COORDINATE_PARTICLES} whose dense colouring it keeps")
    else:
        try:
            return harmonic_preconditioner(system, temperature), sampling
        except ValueError as error:
            reason = str(error).splitlines()[0]
    say(f"ladder {system.name}: the chains keep unit mass in the positions ({reason}); 8 "
        "leapfrog steps per transition")
    return None, dataclasses.replace(sampling, trajectory=None,
                                     num_integration_steps=max(
                                         8, sampling.num_integration_steps))


def _ladder(system, temperatures, energies, anchor: int, ln_z_anchor: float,
            anchor_stderr: float, replicates: int, seed: int):
    """``(ln Z_fixed [K], its covariance [K, K], details)`` from the chains' energies
    ``[C, S, K]`` and the anchor's ``ln Z_fixed`` (its per-particle error
    ``anchor_stderr``).

    The covariance of the ladder is pymbar's (``mbar_states``) or, with ``replicates`` > 0,
    the spread of MBAR's ``f`` over that many bootstrap resamplings of the chains (each
    temperature's chains drawn with replacement, the chains being the independent unit).
    ``bench/suite/sweep_coverage.py`` measured both on exact springs: both run small there
    (docs/sweep.md, "Checks"). Each chain keeps the same number of decorrelated samples (the
    fewest of any chain at that temperature), so every replicate has the same shape.
    """
    n = system.num_particles
    beta = np.array([system.units.beta(t) for t in temperatures])
    # Relative to the lattice energy, so that reduced energies stay O(N) (float64 MBAR either
    # way); the shift comes back exactly below.
    shift = float(system.lattice_energy())
    chains, inefficiency = [], []
    for k in range(len(temperatures)):
        per_chain = energies[:, :, k] - shift
        keep, g = uncorrelated_indices(per_chain)
        length = min(len(i) for i in keep)
        chains.append(np.stack([chain[i[:length]] for chain, i in zip(per_chain, keep)]))
        inefficiency.append(g)

    def solve(picks, uncertainty):
        kept = [c[p].reshape(-1) for c, p in zip(chains, picks)]
        u = np.concatenate(kept)
        return mbar_states(beta[:, None] * u[None, :], [len(x) for x in kept], anchor,
                           uncertainty=uncertainty)

    everything = [np.arange(len(c)) for c in chains]
    f, cov_pymbar, overlap = solve(everything, True)
    cov_f = cov_pymbar
    if replicates:
        rng = np.random.default_rng(seed)
        draws = np.array([solve([rng.integers(0, len(c), len(c)) for c in chains], False)[0]
                          for _ in range(replicates)])
        cov_f = np.cov(draws, rowvar=False, ddof=1)
    # ln Z_shifted(beta_k) = ln Z_fixed(beta_k) + beta_k U_lattice; MBAR's f_k is minus its
    # difference from the anchor's.
    ln_z = ln_z_anchor + beta[anchor] * shift - f - beta * shift
    covariance = cov_f + (anchor_stderr * n) ** 2
    return ln_z, covariance, {"ladder_min_neighbour_overlap": overlap,
                              "statistical_inefficiency": inefficiency,
                              "decorrelated_samples": [c.size for c in chains],
                              "bootstrap_replicates": replicates,
                              "ladder_stderr": (np.sqrt(np.diag(cov_f)) / n).tolist(),
                              "ladder_stderr_pymbar": (np.sqrt(np.diag(cov_pymbar)) / n).tolist()}
