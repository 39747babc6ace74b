"""Every route to ``beta F / N`` of one system, run side by side within one wall-clock budget.

``compare(system, out)`` does what freeflow exists for, in one resumable output directory:

* ``mbar``: the classical baseline, MBAR along a path from the harmonic crystal
  (``freeflow.workflows.baseline.mbar_free_energy``);
* ``smc``: annealed SMC from the harmonic crystal, no training
  (``freeflow.workflows.smc.smc_free_energy``);
* ``lfep`` and ``lbar``: a flow trained by reverse KL on the effective-harmonic-crystal base,
  then LFEP from its samples and LBAR between its samples and HMC samples of the target.

The budget is split once, at the first call, into shares (``SHARES``) sized from timings of
this machine (one HMC transition of MBAR's path, a few training steps) and written to
``OUT/plan.json``; a later call with the same settings reads that plan back, so an interrupted
comparison continues with the same sizes and gives the same numbers. Each finished route is
kept in ``OUT/results/ROUTE.json``; the flow's run directory (``OUT/flow``), the MBAR and SMC
work directories (``OUT/mbar``, ``OUT/smc``) and the target samples (``OUT/target.npz``)
resume as their own commands do. Stages are logged to ``OUT/compare.log``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import jax

from freeflow import rundir
from freeflow.checks import check_whole_numbers
from freeflow.estimators.conventions import (COUNTINGS, DEFAULT_COUNTING, convert_counting,
                                             translation_multiplicity)
from freeflow.estimators.result import FreeEnergy
from freeflow.fingerprint import json_form
from freeflow.flows.config import BASES, ModelConfig
from freeflow.physics.system import System
from freeflow.rundir import CompareWorkdir
from freeflow.physics.system_files import load_system
from freeflow.physics.identity import system_fingerprint
from freeflow.progress import showing
from freeflow.training.config import presets, scheduled_over
from freeflow.workflows.baseline import PathConfig, mbar_free_energy, mbar_transition_seconds
from freeflow.workflows.estimate import lfep_and_lbar
from freeflow.workflows.sampling import sample_to_file
from freeflow.workflows.smc import SMCConfig, smc_free_energy
from freeflow.workflows.train import train

__all__ = ["ROUTES", "SHARES", "PUBLISHED", "CompareConfig", "ComparePlan", "Comparison",
           "compare", "plan_comparison", "split_budget"]

#: The routes, in the order they run: the classical ones first, so that a comparison
#: interrupted during training already holds two trustworthy numbers.
ROUTES = ("mbar", "smc", "lfep", "lbar")

#: What each route is, for tables and plots.
ROUTE_LABELS = {
    "mbar": "MBAR from the harmonic crystal",
    "smc": "SMC from the harmonic crystal",
    "lfep": "LFEP of the trained flow",
    "lbar": "LBAR of the flow and HMC samples",
}

#: Fractions of the budget: MBAR, SMC, training, and the flow's estimates (target sampling
#: and the works of LFEP and LBAR).
SHARES = {"mbar": 0.2, "smc": 0.2, "train": 0.35, "flow_estimates": 0.25}

#: Published MBAR values of beta F / N (Wirnsberger et al. 2022, the literature's counting),
#: ``(value, standard error)``, where freeflow's test suite holds them.
PUBLISHED = {"mw_cubic_64": (-25.16306, 0.00020), "mw_hex_64": (-25.18687, 0.00026)}

#: Thinning and warm-up transitions of the target samples.
_TARGET_THIN, _TARGET_WARMUP = 4, 150


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """Settings of a comparison; checked on construction.

    Attributes:
      budget: wall-clock seconds for all routes together (a guide: the plan sizes each route
        from timings, and training stops at its share).
      seed: PRNG seed of every route.
      counting: ``"bravais"`` (the literature's) or ``"exact"``
        (``freeflow.estimators.conventions``): how the results are reported. Every route
        estimates in the ``"bravais"`` counting and is recounted at the end, so one output
        directory serves both (the counting is no part of the plan's identity).
      mbar_states, mbar_chains: MBAR's states (reference and target included) and HMC chains.
      smc_particles: particles per SMC run; smc_min_repeats, smc_max_repeats: bounds on the
        independent runs (their spread is SMC's error bar).
      target_chains: HMC chains of LBAR's target samples.
      learning_rate, gradient: the flow's training (its schedule is the ``cpu`` preset's,
        stretched over the planned steps).
      model: the flow (default: the ``cpu`` preset's model on the effective-harmonic-crystal
        base, ``freeflow.flows.bases.effective_temperature_factor``).
    """

    budget: float = 1200.0
    seed: int = 0
    counting: str = DEFAULT_COUNTING
    mbar_states: int = 16
    mbar_chains: int = 64
    smc_particles: int = 256
    smc_min_repeats: int = 4
    smc_max_repeats: int = 64
    target_chains: int = 32
    learning_rate: float = 5e-5
    gradient: str = "reparameterized"
    model: ModelConfig | None = None

    def __post_init__(self):
        if not (isinstance(self.budget, (int, float)) and math.isfinite(self.budget)
                and self.budget > 0):
            raise ValueError(f"the budget must be a positive number of seconds; got "
                             f"{self.budget!r}")
        if self.counting not in COUNTINGS:
            raise ValueError(f"unknown counting {self.counting!r}; use one of {COUNTINGS}")
        check_whole_numbers(self, {"mbar_states": 2, "mbar_chains": 1, "smc_particles": 2,
                                   "smc_min_repeats": 2, "target_chains": 1})
        if not self.smc_max_repeats >= self.smc_min_repeats:
            raise ValueError(f"smc_max_repeats ({self.smc_max_repeats}) must be at least "
                             f"smc_min_repeats ({self.smc_min_repeats})")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate!r}")


@dataclasses.dataclass(frozen=True)
class ComparePlan:
    """The sizes of every route, fixed at a comparison's first call.

    Attributes:
      transition_seconds: one HMC transition of MBAR's path (``mbar_chains`` chains), measured
        (``freeflow.workflows.baseline.mbar_transition_seconds``).
      step_seconds: one training step, measured.
      train_steps: planned training steps; train_seconds: the training's share (s).
      mbar_samples_per_state: MBAR's saved samples per state over all chains.
      smc_seconds: SMC's share (s): runs are added until it is spent (within the bounds).
      target_samples: HMC target samples for LBAR; flow_samples: flow samples for both.
    """

    system: str
    system_fingerprint: str
    config: dict
    transition_seconds: float
    step_seconds: float
    train_steps: int
    train_seconds: float
    mbar_samples_per_state: int
    smc_seconds: float
    target_samples: int
    flow_samples: int


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The routes' results of one system (``results[route]``, the finished ones), the plan,
    and the published value ``(value, stderr)`` if there is one."""

    system: str
    plan: ComparePlan
    results: dict
    published: tuple | None
    out: Path

    def deviation(self, route: str, other: str = "mbar") -> float | None:
        """``(a - b) / sqrt(sa^2 + sb^2)``: ``route`` against ``other`` in combined standard
        errors, or ``None`` where either is missing."""
        a, b = self.results.get(route), self.results.get(other)
        if a is None or b is None or route == other:
            return None
        return _sigmas((a.value, a.stderr), (b.value, b.stderr))

    def rows(self) -> list[dict]:
        """One plain dict per finished route, in ``ROUTES`` order: the ``FreeEnergy`` fields
        that matter for the comparison (``beta_f_per_particle``, ``stderr``,
        ``effective_samples``, ``wall_time`` s, ``energy_evaluations``), the deviation from
        MBAR and from the published value in combined standard errors, and the verdict."""
        rows = []
        for route in ROUTES:
            result = self.results.get(route)
            if result is None:
                continue
            rows.append({
                "system": self.system, "route": route, "label": ROUTE_LABELS[route],
                "beta_f_per_particle": result.value, "stderr": result.stderr,
                "effective_samples": result.effective_samples,
                "wall_time": result.wall_time, "energy_evaluations": result.energy_evaluations,
                "sigmas_from_mbar": self.deviation(route),
                "published": None if self.published is None else self.published[0],
                "published_stderr": (None if self.published is None
                                     else self.published[1]),
                "sigmas_from_published": self.deviation_from_published(route),
                "trustworthy": result.trustworthy,
                "untrustworthy_because": list(result.untrustworthy_because()),
            })
        return rows

    @property
    def unfinished(self) -> tuple[str, ...]:
        """The routes not run yet."""
        return tuple(route for route in ROUTES if route not in self.results)

    def deviation_from_published(self, route: str) -> float | None:
        """``route`` against the published value in combined standard errors, or ``None``."""
        a = self.results.get(route)
        if a is None or self.published is None:
            return None
        return _sigmas((a.value, a.stderr), self.published)


def _sigmas(a, b) -> float:
    combined = math.hypot(a[1], b[1])
    return (a[0] - b[0]) / combined if combined > 0 else math.nan


# -- the plan ----------------------------------------------------------------------------------


def _mbar_path(config: CompareConfig, samples_per_state: int = 1024) -> PathConfig:
    """MBAR's path and its sampling (warm-up and thinning are ``PathConfig``'s defaults)."""
    return PathConfig(num_states=config.mbar_states, samples_per_state=samples_per_state,
                      num_chains=config.mbar_chains)


def _flow_configs(system: System, config: CompareConfig, steps: int):
    model_config, training = presets("cpu", system)
    # The effective harmonic crystal (the harmonic crystal at the temperature that minimises
    # its KL divergence to the target) is the better start: untrained, its LFEP on
    # mw_cubic_64 had Pareto k 0.63 and 800-1700 effective samples of 50 000, against 0.70-0.72
    # and 300-750 for the harmonic crystal (docs/benchmarks.md, "The flow's base in compare").
    model_config = config.model or dataclasses.replace(model_config,
                                                       **BASES["effective_harmonic"])
    training = dataclasses.replace(training, learning_rate=config.learning_rate,
                                   gradient_estimator=config.gradient, seed=config.seed)
    return model_config, scheduled_over(training, steps)


def _step_seconds(system: System, config: CompareConfig) -> float:
    """Seconds of one training step: steps 6-15 of a throwaway 15-step run."""
    model_config, training = _flow_configs(system, config, 15)
    stamps = []
    with showing(False):
        train(system, None, model_config=model_config,
              training=dataclasses.replace(training, eval_every=0),
              callback=lambda step, record: stamps.append(time.perf_counter()))
    return (stamps[-1] - stamps[4]) / 10


def split_budget(system: System, config: CompareConfig, transition_seconds: float,
                 step_seconds: float, spent: float = 0.0) -> ComparePlan:
    """The plan that splits ``config.budget`` over the routes (``SHARES``), given one HMC
    transition's and one training step's seconds on this machine and the seconds already
    ``spent`` on measuring them (taken from the training's share).

    MBAR: ``samples_per_state`` such that its ``K`` states fill their share (``thin``
    transitions per saved sample per chain, plus warm-up). Training: the steps that fill its
    share. The flow's estimates: a third of their share for the target samples (a
    transition's cost taken as proportional to the chains, ``target_chains`` against
    ``mbar_chains``), two thirds for the flow samples, each costing a third of a training
    step's per-sample cost (a training step draws a batch, evaluates the energy and
    differentiates both), at least 10^4 and at most 10^6.
    """
    budget = config.budget
    k, chains = config.mbar_states, config.mbar_chains
    path = _mbar_path(config)
    # path_free_energy's warm-up: the first sampled state's, then max(50, a quarter) each.
    warmup = path.num_warmup + (k - 2) * max(50, path.num_warmup // 4)
    per_chain = (SHARES["mbar"] * budget / transition_seconds - warmup) / ((k - 1) * path.thin)
    estimates = SHARES["flow_estimates"] * budget
    target_transition = transition_seconds * min(1.0, config.target_chains / chains)
    target_transitions = estimates / 3 / target_transition
    target_samples = config.target_chains * max(
        16, int((target_transitions - _TARGET_WARMUP) / _TARGET_THIN))
    batch_size = _flow_configs(system, config, 1)[1].batch_size
    flow_sample_seconds = step_seconds / (3 * batch_size)
    flow_samples = int(min(1_000_000, max(10_000, 2 * estimates / 3 / flow_sample_seconds)))
    train_seconds = max(0.0, SHARES["train"] * budget - spent)
    return ComparePlan(
        system=system.name, system_fingerprint=system_fingerprint(system),
        config=_identity(config),
        transition_seconds=transition_seconds, step_seconds=step_seconds,
        train_steps=max(20, int(train_seconds / step_seconds)), train_seconds=train_seconds,
        mbar_samples_per_state=chains * max(4, int(per_chain)),
        smc_seconds=SHARES["smc"] * budget, target_samples=target_samples,
        flow_samples=flow_samples)


def plan_comparison(system: System, config: CompareConfig, say=lambda text: None) -> ComparePlan:
    """``split_budget`` from timings of this machine: one HMC transition of the system and a
    few steps of the flow's training."""
    started = time.perf_counter()
    say(f"compare {system.name}: timing one HMC transition and a few training steps")
    # The path's own transition, as MBAR will run it: a bare gradient loop was timed 1.45
    # times too fast on the README's comparison (docs/benchmarks.md).
    transition = mbar_transition_seconds(system, _mbar_path(config), seed=config.seed)
    step = _step_seconds(system, config)
    return split_budget(system, config, transition, step, time.perf_counter() - started)


def _read_plan(store: CompareWorkdir, system: System, config: CompareConfig
               ) -> ComparePlan | None:
    """The plan saved in ``store``, or ``None``; refuses one made for other settings."""
    try:
        saved = store.read_settings()
        saved = None if saved is None else ComparePlan(**saved)
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"{store.path / store.CONFIG} is not a comparison plan ({error}); "
                         "remove it or use another --out") from None
    if saved is not None:
        store.refuse_other_settings(
            {"system": f"{saved.system} ({saved.system_fingerprint})", **saved.config},
            {"system": f"{system.name} ({system_fingerprint(system)})", **_identity(config)})
    return saved


# -- the routes ------------------------------------------------------------------------------


def _finished(store: CompareWorkdir, route: str) -> FreeEnergy | None:
    row = store.read_result(route)
    return None if row is None else FreeEnergy.from_dict(row)


def _keep(store: CompareWorkdir, result: FreeEnergy) -> FreeEnergy:
    row = json_form(result.to_dict())
    store.write_result(store.result_file(result.method).relative_to(store.path), row)
    return result


def _run_mbar(system, plan: ComparePlan, config: CompareConfig, out: Path) -> FreeEnergy:
    return mbar_free_energy(system, _mbar_path(config, plan.mbar_samples_per_state), workdir=out / "mbar", seed=config.seed)


def _run_smc(system, plan: ComparePlan, config: CompareConfig, out: Path, say) -> FreeEnergy:
    """SMC runs, one at a time into ``OUT/smc``, until its share is spent (within the
    bounds); the count is decided after the first ``smc_min_repeats`` runs, from their
    time, and saved, so a resumed comparison runs the same ones."""
    count_file = out / "smc_repeats.json"

    def runs(repeats):
        return smc_free_energy(system=system, base="harmonic",
                               config=SMCConfig(particles=config.smc_particles,
                                                repeats=repeats, group_size=1),
                               seed=config.seed,
                               workdir=out / "smc")

    if count_file.is_file():
        return runs(int(json.loads(count_file.read_text())["repeats"]))
    first = runs(config.smc_min_repeats)
    per_run = first.details["sampling_wall_time"] / config.smc_min_repeats
    repeats = int(min(config.smc_max_repeats,
                      max(config.smc_min_repeats, plan.smc_seconds // max(per_run, 1e-9))))
    rundir.write_json(count_file, {"repeats": repeats, "seconds_per_run": per_run})
    if repeats == config.smc_min_repeats:
        return first
    say(f"compare {system.name}: {repeats} SMC runs fill the share ({per_run:.0f} s each)")
    return runs(repeats)


def _train_flow(system, plan: ComparePlan, config: CompareConfig, out: Path):
    """The flow in ``OUT/flow``: trained for the planned steps or until its share is spent,
    whichever comes first; ``OUT/results/train.json`` records that it is done, so a resumed
    comparison does not train on."""
    done = out / "results" / "train.json"
    model_config, training = _flow_configs(system, config, plan.train_steps)
    if not done.is_file():
        train(system, out / "flow", model_config=model_config, training=training,
              max_wall_time=plan.train_seconds)
        step, wall, evaluations = rundir.training_cost(out / "flow")
        (out / "results").mkdir(exist_ok=True)
        rundir.write_json(done, {"steps": step, "planned_steps": plan.train_steps,
                                 "wall_time": wall, "energy_evaluations": evaluations})
    cost = json.loads(done.read_text())
    loaded_system, model, params, _ = rundir.load_run(out / "flow")
    return model, params, cost


def _run_flow_routes(system, plan, config, out: Path, say) -> list[FreeEnergy]:
    model, params, cost = _train_flow(system, plan, config, out)
    say(f"compare {system.name}: {plan.target_samples} HMC target samples for LBAR")
    sampled = sample_to_file(system, out / "target.npz", num_samples=plan.target_samples,
                             num_chains=config.target_chains, num_warmup=_TARGET_WARMUP,
                             thin=_TARGET_THIN, seed=config.seed)
    positions, _, _ = rundir.load_samples(out / "target.npz")
    say(f"compare {system.name}: LFEP and LBAR from {plan.flow_samples} flow samples")
    by_lfep, by_lbar = lfep_and_lbar(
        model, params, system, positions, num_chains=config.target_chains,
        energy_tau=sampled["tau"], num_samples=plan.flow_samples,
        key=jax.random.PRNGKey(config.seed + 1))
    training = {"train_steps": cost["steps"], "train_wall_time": cost["wall_time"],
                "train_energy_evaluations": cost["energy_evaluations"]}
    # The flow's routes carry the cost of training; LBAR also that of its target samples.
    lfep_row = _with_cost(by_lfep, cost["wall_time"], cost["energy_evaluations"], training)
    lbar_row = _with_cost(by_lbar, cost["wall_time"] + sampled["wall_time"],
                          cost["energy_evaluations"] + sampled["energy_evaluations"],
                          dict(training, target_wall_time=sampled["wall_time"],
                               target_energy_evaluations=sampled["energy_evaluations"]))
    return [lfep_row, lbar_row]


def _with_cost(result: FreeEnergy, seconds: float, evaluations: int, details: dict):
    return dataclasses.replace(
        result, wall_time=(result.wall_time or 0.0) + seconds,
        energy_evaluations=(result.energy_evaluations or 0) + int(evaluations),
        details=dict(result.details, **details))


# -- the whole comparison --------------------------------------------------------------------


def compare(system, out, config: CompareConfig = CompareConfig(),
            timings: tuple[float, float] | None = None) -> Comparison:
    """Run (or continue) every route of ``ROUTES`` for ``system`` in directory ``out``.

    Args:
      system: a ``System``, a named system or a ``.toml`` file.
      out: the output directory (created; resumed when it holds a comparison with the same
        system and settings, refused when it holds one with others).
      config: ``CompareConfig``.
      timings: ``(seconds of one HMC transition, seconds of one training step)`` to plan
        with instead of measuring them (``ComparePlan.transition_seconds`` and
        ``step_seconds`` of an earlier plan on this machine, say); ignored when ``out``
        holds a plan.

    Returns:
      ``Comparison``. Progress goes to stderr and, stage by stage, to ``OUT/compare.log``.
    """
    if not isinstance(system, System):
        system = load_system(system)
    with CompareWorkdir.open(out) as store:
        out, say = store.path, store.log
        plan = _read_plan(store, system, config)
        if plan is None:
            plan = (plan_comparison(system, config, say) if timings is None
                    else split_budget(system, config, *timings))
            store.write_settings(dataclasses.asdict(plan))
        say(f"compare {system.name}: plan {_describe(plan, config)}")
        results = {route: _finished(store, route) for route in ROUTES}
        stages = ((("mbar",), lambda: [_run_mbar(system, plan, config, out)]),
                  (("smc",), lambda: [_run_smc(system, plan, config, out, say)]),
                  (("lfep", "lbar"), lambda: _run_flow_routes(system, plan, config, out, say)))
        for routes, run in stages:
            if all(results[route] is not None for route in routes):
                continue
            say(f"compare {system.name}: {' and '.join(ROUTE_LABELS[r] for r in routes)}")
            for result in run():
                results[result.method] = _keep(store, result)
                shown = result.recounted(config.counting)
                say(f"compare {system.name}: {result.method} beta F / N = "
                    f"{shown.value:.6f} +- {shown.stderr:.6f} in {shown.wall_time:.0f} s")
    return Comparison(system=system.name, plan=plan,
                      results={r: v.recounted(config.counting)
                               for r, v in results.items() if v is not None},
                      published=_published(system, config.counting), out=out)


def _identity(config: CompareConfig) -> dict:
    """The settings a plan is made for: all but the counting, which only the report uses."""
    settings = json_form(dataclasses.asdict(config))
    settings.pop("counting")
    return settings


def _published(system: System, counting: str) -> tuple | None:
    """``PUBLISHED``'s value for ``system`` (the literature's counting) in ``counting``."""
    if system.name not in PUBLISHED:
        return None
    value, stderr = PUBLISHED[system.name]
    m = translation_multiplicity(system.lattice, system.box)
    return (convert_counting(value, system.num_particles, m, "bravais", counting), stderr)


def _describe(plan: ComparePlan, config: CompareConfig) -> str:
    return (f"MBAR {config.mbar_states} states x {plan.mbar_samples_per_state} samples; SMC "
            f"runs of {config.smc_particles} particles for {plan.smc_seconds:.0f} s; "
            f"{plan.train_steps} training steps (at most {plan.train_seconds:.0f} s); "
            f"{plan.target_samples} target and {plan.flow_samples} flow samples")
