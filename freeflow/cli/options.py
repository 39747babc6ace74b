"""Every command's options, each command's in one function, and the options several share
defined once (``shared_options``)."""

from __future__ import annotations

import argparse

from freeflow.cli.classical import (run_baseline, run_energy, run_limit, run_sample, run_sweep,
                                    run_systems, run_table)
from freeflow.cli.common import cpu_devices, duration
from freeflow.cli.flows import run_compare, run_diagnose, run_estimate, run_train
from freeflow.estimators.conventions import COUNTINGS, DEFAULT_COUNTING
from freeflow.flows.config import BASES
from freeflow.reports.tables import PUBLISHED_SYSTEMS, SHIPPED_RESULTS
from freeflow.reports import limit as limit_report
from freeflow.training.config import GRADIENT_ESTIMATORS, TrainingConfig
from freeflow.workflows.baseline import REFERENCES

__all__ = ["add_commands", "shared_options"]


def shared_options() -> dict[str, argparse.ArgumentParser]:
    """The options several commands share, each defined once: ``seed``, ``counting``,
    ``json`` and the SMC runs' ``smc``."""
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--seed", type=int, default=0, help="PRNG seed (default 0)")
    counting = argparse.ArgumentParser(add_help=False)
    counting.add_argument("--counting", default=DEFAULT_COUNTING, choices=list(COUNTINGS),
                          help="how a crystal's regions are counted: 'bravais' as in the "
                               "published tables and the Frenkel-Ladd literature (default), "
                               "or 'exact' (adds ln m / N per sublattice translation; differs "
                               "for ice)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true",
                         help="print JSON on stdout (progress stays on stderr)")
    smc = argparse.ArgumentParser(add_help=False)
    smc.add_argument("--particles", type=int, default=256,
                     help="SMC particles per run (default 256)")
    smc.add_argument("--repeats", type=int, default=8,
                     help="independent SMC runs; their spread is the error bar (default 8)")
    smc.add_argument("--mcmc-steps", type=int, default=5,
                     help="SMC: HMC transitions per particle and temperature (default 5)")
    return {"seed": seed, "counting": counting, "json": as_json, "smc": smc}


def _add_systems(commands, shared: dict) -> None:
    """The ``systems`` command's options."""
    p = commands.add_parser("systems", parents=[shared["json"]],
                            help="table of the named systems and their lattice energies")
    p.set_defaults(run=run_systems)


def _add_energy(commands, shared: dict) -> None:
    """The ``energy`` command's options."""
    p = commands.add_parser("energy", parents=[shared["json"]],
                            help="U/N and beta U/N of the perfect lattice or of a structure file")
    p.add_argument("system", help="a named system (see 'freeflow systems') or a .toml file")
    p.add_argument("--structure", metavar="FILE",
                   help="any file ase.io.read understands; its own orthorhombic cell is used")
    p.set_defaults(run=run_energy)


def _add_sample(commands, shared: dict) -> None:
    """The ``sample`` command's options."""
    p = commands.add_parser("sample", parents=[shared["seed"], shared["json"]],
                            help="Metropolis-corrected HMC samples of a system (particle 0 "
                                 "fixed), saved to .npz or .extxyz")
    p.add_argument("system", help="a named system or a .toml file")
    p.add_argument("--out", required=True, metavar="FILE", help="output .npz or .extxyz")
    p.add_argument("--samples", type=int, default=1000,
                   help="samples to save, over all chains (default 1000)")
    p.add_argument("--chains", type=int, default=16, help="parallel chains (default 16)")
    p.add_argument("--warmup", type=int, default=300,
                   help="warm-up transitions per chain (default 300)")
    p.add_argument("--thin", type=int, default=4,
                   help="transitions between saved samples (default 4)")
    p.set_defaults(run=run_sample)


def _add_baseline(commands, shared: dict) -> None:
    """The ``baseline`` command's options."""
    p = commands.add_parser("baseline",
                            parents=[shared["seed"], shared["counting"], shared["json"]],
                            help="beta F / N by MBAR from a harmonic or Einstein crystal "
                                 "(resumable with --workdir)")
    p.add_argument("system", help="a named system or a .toml file")
    p.add_argument("--reference", default="harmonic", choices=list(REFERENCES),
                   help="the path's analytic start: the harmonic crystal of the system's "
                        "lattice Hessian (default) or an Einstein crystal")
    p.add_argument("--states", type=int, default=16, help="MBAR states K (default 16)")
    p.add_argument("--samples-per-state", type=int, default=2048,
                   help="saved samples per state over all chains (default 2048)")
    p.add_argument("--chains", type=int, default=32, help="parallel chains (default 32)")
    p.add_argument("--warmup", type=int, default=200,
                   help="warm-up transitions of the first state (default 200)")
    p.add_argument("--width", type=float, default=None,
                   help="Einstein springs' standard deviation (length unit; --reference "
                        "einstein only); default: measured in a pilot run")
    p.add_argument("--workdir", default=None, metavar="DIR",
                   help="keep finished states here and skip them when re-run; a larger "
                        "--samples-per-state then continues the saved chains")
    p.set_defaults(run=run_baseline)


def _add_train(commands, shared: dict) -> None:
    """The ``train`` command's options."""
    p = commands.add_parser("train", help="train a flow by reverse KL (resumes from the "
                                          "run directory's last checkpoint)",
                            description="Train a flow by reverse KL. The same command on the "
                                        "same --out resumes from the last checkpoint. Every "
                                        "setting but --steps must then be the same (a changed "
                                        "--batch-size, --seed, --learning-rate, --base, "
                                        "--layers, --gradient or --preset is refused); "
                                        "--extend N continues a finished run.")
    p.add_argument("system", help="a named system or a .toml file")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"],
                   help="model and training settings (default cpu)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (preset default); the preset's warm-up and "
                        "learning-rate decays are rescaled to the same fractions of the run")
    p.add_argument("--batch-size", type=int, default=None, help="samples per step")
    p.add_argument("--cpu-devices", type=cpu_devices, default=None, metavar="N|auto",
                   help="on a CPU, split the batch over N JAX devices (default auto: one per "
                        "core, at most as many as divide the batch; 1 keeps one device). "
                        "Faster steps for small systems; results agree to float32 "
                        "rounding. Ignored where JAX may run on an accelerator; auto leaves a "
                        "count set by XLA_FLAGS or JAX_NUM_CPU_DEVICES, and N refuses a "
                        "different one")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the initial parameters and of every batch (preset default: "
                        "0 for cpu, 42 for paper); part of the run's identity")
    p.add_argument("--extend", type=int, default=None, metavar="STEPS",
                   help="continue the finished run in --out for STEPS more steps with its "
                        "own settings; the learning rate follows the same schedule (after its "
                        "last decay it stays at the final rate)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="steps between checkpoints (preset default "
                        f"{TrainingConfig().checkpoint_every}); an interrupted run resumes "
                        "from the last one")
    p.add_argument("--base", default=None, choices=list(BASES),
                   help="base distribution: the harmonic crystal, the same at the "
                        "temperature that obeys the target's virial theorem "
                        "(effective_harmonic; best for anharmonic crystals such as LJ), "
                        "isotropic noise of the Einstein width, or the paper's noise "
                        "(default: the preset's, harmonic for cpu, paper for paper)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="Adam's initial learning rate (preset default)")
    p.add_argument("--layers", type=int, default=None,
                   help="coupling layers of the flow (preset default: 12 for cpu, each "
                        "transforming one axis, cycling z, x, y; 24 for paper, each two "
                        "couplings, one axis given two and two given one)")
    p.add_argument("--gradient", default=None, choices=list(GRADIENT_ESTIMATORS),
                   help="reverse-KL gradient: 'path' drops the zero-mean score term (lower "
                        "variance near the target, one more inverse pass per step); default "
                        "the preset's (path for cpu, reparameterized for paper)")
    p.set_defaults(run=run_train)


def _add_estimate(commands, shared: dict) -> None:
    """The ``estimate`` command's options."""
    p = commands.add_parser("estimate",
                            parents=[shared["seed"], shared["counting"], shared["json"],
                                     shared["smc"]],
                            help="beta F / N of a trained run (LFEP, LBAR or SMC), or by "
                                 "SMC from a base alone")
    p.add_argument("run_dir", metavar="DIR", help="run directory made by 'freeflow train' (a "
                                                  "system name or .toml file with --base)")
    p.add_argument("--samples", type=int, default=100_000,
                   help="model samples for LFEP and LBAR (default 100000)")
    p.add_argument("--method", default="lfep", choices=["lfep", "lbar", "smc"],
                   help="lfep: the flow's samples reweighted; lbar: BAR between the flow and "
                        "target samples (--target-samples); smc: annealed sequential Monte Carlo "
                        "from the flow (or --base) to the target (default lfep)")
    p.add_argument("--target-samples", metavar="FILE", default=None,
                   help="target samples for LBAR ('freeflow sample SYSTEM --out FILE', or "
                        "--samples-out of an SMC estimate)")
    p.add_argument("--base", default=None, choices=list(BASES),
                   help="start from this base distribution of the system named by DIR, "
                        "with no training (for LFEP and LBAR it is exactly an untrained "
                        "flow: FEP and BAR from the harmonic crystal, say)")
    p.add_argument("--target-ess", type=float, default=0.9,
                   help="SMC: conditional ESS kept by each temperature increment (default "
                        "0.9)")
    p.add_argument("--samples-out", metavar="FILE", default=None,
                   help="SMC: save the final particles (target samples) here (.npz, .extxyz)")
    p.add_argument("--workdir", metavar="DIR", default=None,
                   help="SMC: save each finished group of runs here; the same command again "
                        "continues an interrupted estimate (other settings are refused)")
    p.add_argument("--group-size", type=int, default=None,
                   help="SMC: runs annealed together (default all, or 1 with --workdir)")
    p.set_defaults(run=run_estimate)


def _add_compare(commands, shared: dict) -> None:
    """The ``compare`` command's options."""
    p = commands.add_parser("compare",
                            parents=[shared["seed"], shared["counting"], shared["json"]],
                            help="every route to beta F / N of one system side by side: MBAR "
                                 "and SMC from the harmonic crystal, a trained flow's LFEP and "
                                 "LBAR (resumable from --out)",
                            description="Run MBAR and SMC from the harmonic crystal, train a "
                                        "flow and estimate by LFEP and LBAR, within one "
                                        "wall-clock budget, and print every route's beta F / N "
                                        "with its error, cost and agreement with MBAR. The "
                                        "same command on the same --out continues an "
                                        "interrupted comparison.")
    p.add_argument("system", help="a named system or a .toml file (try mw_cubic_64)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output directory (default compare-SYSTEM): plan, work directories, "
                        "compare.json, compare.csv, compare.png, compare.log")
    p.add_argument("--budget", type=duration, default=1200.0, metavar="TIME",
                   help="wall time for all routes, e.g. 20m (default), 1h, 900s; split into "
                        "shares at the first call from timings of this machine")
    p.set_defaults(run=run_compare)


def _add_sweep(commands, shared: dict) -> None:
    """The ``sweep`` command's options."""
    p = commands.add_parser("sweep",
                            parents=[shared["seed"], shared["counting"], shared["json"]],
                            help="beta F / N, U, S, C_v and P of a crystal (or two) along "
                                 "temperature (resumable from --out)",
                            description="--route mbar (default): MBAR from the harmonic "
                                        "crystal at one temperature, HMC at every temperature "
                                        "and MBAR over the temperatures. --route smc: anneal "
                                        "by SMC from the harmonic crystal at the lowest "
                                        "temperature, then along beta through every requested "
                                        "temperature with the same particles. With two "
                                        "systems, also their difference and where it changes "
                                        "sign. Options of the other route are refused.")
    p.add_argument("systems", nargs="+", metavar="SYSTEM",
                   help="a named system or a .toml file; a second one to compare. A stored "
                        "sweep.json in place of a system is read, not run: two polymorphs "
                        "swept as separate jobs compare without sampling again")
    p.add_argument("--temperatures", default=None, metavar="RANGE",
                   help="START:STOP:STEP (both ends included), e.g. 180:220:20, or a comma "
                        "list, increasing, in the system's temperature unit (needed unless "
                        "every SYSTEM is a stored sweep.json)")
    p.add_argument("--route", default=None, choices=["mbar", "smc"],
                   help="mbar: an MBAR ladder over the temperatures anchored by MBAR from the "
                        "harmonic crystal (--chains, --samples, --anchor-*); smc: one SMC "
                        "sweep (--particles, --repeats, --mcmc-steps) (default mbar: 2.4 times "
                        "cheaper at equal error on ice, and unbiased)")
    p.add_argument("--integration-steps", type=int, default=None,
                   help="leapfrog steps per HMC transition (default: smc route 8; mbar route 4 in warm-up, then a quarter of the harmonic period)")
    # The sweep's own route options, None when left out (so that the other route's can be
    # refused); not the shared SMC parent, whose defaults other commands rely on.
    p.add_argument("--particles", type=int, default=None,
                   help="smc route: SMC particles per run (default 256)")
    p.add_argument("--repeats", type=int, default=None,
                   help="smc route: independent SMC runs; their spread is the error bar "
                        "(default 8)")
    p.add_argument("--mcmc-steps", type=int, default=None,
                   help="smc route: HMC transitions per particle and temperature (default 5)")
    p.add_argument("--chains", type=int, default=None,
                   help="mbar route: HMC chains per temperature (default 16)")
    p.add_argument("--samples", type=int, default=None,
                   help="mbar route: samples saved per chain and temperature, one every 2 "
                        "transitions (default 500)")
    p.add_argument("--anchor-temperature", type=float, default=None, metavar="T",
                   help="mbar route: the temperature of the absolute value, one of "
                        "--temperatures (default the lowest)")
    p.add_argument("--anchor-states", type=int, default=None,
                   help="mbar route: states of the anchor's path from the harmonic crystal "
                        "(default 16)")
    p.add_argument("--anchor-samples", type=int, default=None,
                   help="mbar route: samples per state of the anchor's path (default 1024)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="keep every finished stage in DIR/SYSTEM (a rerun continues) and "
                        "write sweep.json, sweep.csv and sweep_*.png there")
    p.set_defaults(run=run_sweep)


def _add_limit(commands, shared: dict) -> None:
    """The ``limit`` command's options."""
    p = commands.add_parser("limit", parents=[shared["counting"], shared["json"]],
                            help="beta f of the infinite crystal from stored results at "
                                 "several sizes (fit of beta F / N against N)")
    p.add_argument("crystals", nargs="+", metavar="CRYSTAL",
                   help="a name prefix such as mw_cubic (every stored size mw_cubic_N), or "
                        "systems' names; two crystals also give the difference of limits")
    p.add_argument("--method", default="smc", choices=sorted(limit_report.LIMIT_METHODS),
                   help="whose stored rows to fit: smc (smc.jsonl, default) or mbar "
                        "(baseline.jsonl)")
    p.add_argument("--results", default=str(SHIPPED_RESULTS), metavar="DIR",
                   help="stored results, as for freeflow table (default: those shipped "
                        "with freeflow)")
    p.add_argument("--min-particles", type=int, default=2, metavar="N",
                   help="leave out stored sizes below N particles when a CRYSTAL is a prefix "
                        "(default: none left out)")
    p.add_argument("--fit-log-coefficient", action="store_true",
                   help="fit the ln(N)/N coefficient too instead of holding it at the "
                        "derived -1/2 (needs 4 sizes to check the fit)")
    p.set_defaults(run=run_limit)


def _add_diagnose(commands, shared: dict) -> None:
    """The ``diagnose`` command's options."""
    p = commands.add_parser("diagnose", parents=[shared["seed"]],
                            help="g(r), energy and work histograms, training curves and the "
                                 "running LFEP estimate of a run")
    p.add_argument("run_dir", metavar="DIR", help="run directory made by 'freeflow train'")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--target-samples", metavar="FILE", default=None,
                   help="target samples of the same system ('freeflow sample SYSTEM --out "
                        "FILE') for g(r) and the energy histogram")
    p.add_argument("--samples", type=int, default=2000,
                   help="model and base samples to draw (default 2000)")
    p.add_argument("--baseline", metavar="FILE", default=None,
                   help="MBAR results (JSONL) whose value for this system is drawn as a "
                        "reference line")
    p.set_defaults(run=run_diagnose)


def _add_table(commands, shared: dict) -> None:
    """The ``table`` command's options."""
    p = commands.add_parser("table", parents=[shared["seed"], shared["counting"]],
                            help="beta F / N by LFEP, LBAR and MBAR per system with costs "
                                 "(computes only what is missing, resumable)")
    p.add_argument("--systems", nargs="+", default=list(PUBLISHED_SYSTEMS), metavar="SYSTEM",
                   help="named systems (default: the published table's "
                        + " ".join(PUBLISHED_SYSTEMS) + ")")
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"],
                   help="model preset the runs must have been trained with (default cpu)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="directory holding one trained run directory per system, named "
                        "after it (default: none; the flow columns then come from --results)")
    p.add_argument("--results", default=str(SHIPPED_RESULTS), metavar="DIR",
                   help="stored results: baseline.jsonl (MBAR), smc.jsonl and flows.jsonl "
                        "(LFEP and LBAR rows for systems with no run in --runs), as "
                        "bench/table writes them (default: those shipped with freeflow)")
    p.add_argument("--references", default=None, metavar="DIR",
                   help="directory of target samples SYSTEM.npz for LBAR (default: no LBAR)")
    p.add_argument("--samples", type=int, default=100_000,
                   help="model samples per LFEP/LBAR estimate (default 100000)")
    p.add_argument("--cache", default=None, metavar="FILE",
                   help="JSON lines of computed estimates, reused when re-run (default "
                        "RUNS/table_PRESET.jsonl; none without --runs)")
    p.add_argument("--compute-baseline", action="store_true",
                   help="run the MBAR baseline for systems the baseline file lacks (long)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write Markdown (.md) or CSV (.csv) here instead of printing Markdown")
    p.set_defaults(run=run_table)



def add_commands(commands) -> None:
    """Every command, in the order of the help."""
    shared = shared_options()
    for add in (_add_systems, _add_energy, _add_sample, _add_baseline, _add_train,
                _add_estimate, _add_compare, _add_sweep, _add_limit, _add_diagnose,
                _add_table):
        add(commands, shared)
