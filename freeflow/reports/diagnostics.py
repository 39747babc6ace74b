"""Diagnostics of a trained flow: draws its samples and the target's, and writes g(r), energy
and work histograms, training curves and the running LFEP estimate (the analysis in
``freeflow.physics.structure`` and ``freeflow.estimators.lfep``, the plots in
``freeflow.reports.plots``).

Conventions:

* Positions ``[M, N, 3]`` and boxes ``[3]`` (orthorhombic edge lengths) are in the system's
  length unit (sigma for Lennard-Jones, Angstrom for mW); ``r`` is in the same unit.
* Energies enter as the dimensionless ``beta U / N``.
* Works are ``beta Phi(x) = beta U(x) + ln q(x)`` (dimensionless, exact energy) of model
  samples ``x ~ q``; plots show ``beta Phi / N``. ``-ln mean(exp(-beta Phi))`` estimates the
  flow-relative ``-ln Z``; ``freeflow.estimators.conventions.beta_f_from_flow_log_z`` turns it into the
  reported ``beta F / N``, which differs from ``-ln Z_flow / N`` only by a constant offset
  ``beta_f_offset = beta_f_from_flow_log_z(system, 0)`` (``ln N!``, ``ln m``, ``Lambda``).

"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.estimators.conventions import beta_f_from_flow_log_z
from freeflow.estimators.lfep import lfep
from freeflow.physics.structure import first_peak, radial_distribution
from freeflow.physics.identity import check_same_system
from freeflow.reports.plots import (plot_energy_histograms, plot_rdf, plot_running_estimate,
                                   plot_training_curves, plot_work_histogram)
from freeflow.rundir import load_run, load_samples, read_baseline, read_metrics, write_json

__all__ = ["baseline_references", "diagnose"]

# -- the whole diagnosis of a run --------------------------------------------------------------


def _draw(model, params, system, key, num_samples: int, batch_size: int):
    """Model samples ``[n, N, 3]`` float32, their ``beta U`` and ``ln q`` (float64), and base
    samples with their ``beta U``; batched so large N fits in memory."""
    energy = system.energy_fn()
    beta = system.beta
    batch = max(1, min(batch_size, num_samples))

    @jax.jit
    def model_batch(k):
        x, log_q = model.sample_and_log_prob(params, k, batch)
        return x, beta * energy(x), log_q

    @jax.jit
    def base_batch(k):
        x = model.sample_base(k, batch)
        return x, beta * energy(x)

    k_model, k_base = jax.random.split(key)
    xs, us, lqs, bxs, bus = [], [], [], [], []
    for b in range(-(-num_samples // batch)):
        x, u, lq = jax.device_get(model_batch(jax.random.fold_in(k_model, b)))
        xs.append(np.asarray(x))
        us.append(np.asarray(u, np.float64))
        lqs.append(np.asarray(lq, np.float64))
        x, u = jax.device_get(base_batch(jax.random.fold_in(k_base, b)))
        bxs.append(np.asarray(x))
        bus.append(np.asarray(u, np.float64))

    def cat(parts):
        return np.concatenate(parts)[:num_samples]

    return cat(xs), cat(us), cat(lqs), cat(bxs), cat(bus)


def _beta_energies(system, positions, batch_size: int) -> np.ndarray:
    energy = jax.jit(system.energy_fn())
    out = [np.asarray(energy(jnp.asarray(positions[i:i + batch_size], jnp.float32)), np.float64)
           for i in range(0, len(positions), batch_size)]
    return system.beta * np.concatenate(out)


def _finite_configs(x) -> np.ndarray:
    return x[np.all(np.isfinite(x.reshape(len(x), -1)), axis=1)]


def _clean(value):
    """JSON-able: non-finite floats become None (json.dumps would write invalid NaN)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _reference_positions(reference, system) -> np.ndarray:
    """Positions ``[M, N, 3]`` of a sample file of ``system``; refuses another system's."""
    ref_x, ref_system, _ = load_samples(reference)
    # The same state point (potential, temperature, density, lattice), as LBAR demands.
    check_same_system(system, ref_system, f"target sample file {reference}")
    return ref_x


def _write_rdf_csv(path: Path, rdf: dict, labels: Sequence[str]) -> Path:
    r_any = next(iter(rdf.values()))[0] if rdf else np.zeros(0)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["r"] + [f"g_{k}" for k in labels])
        for b, r in enumerate(r_any):
            writer.writerow([f"{r:.6g}"] + [f"{rdf[k][1][b]:.6g}" if k in rdf else ""
                                            for k in labels])
    return path


def _lfep_summary(work, system, offset: float, num_samples: int) -> dict:
    """The LFEP numbers of the diagnostic samples alone (not the reported estimate); NaN works
    (a failed energy) are counted and left out, where the estimator itself would refuse."""
    n = system.num_particles
    finite_work = work[~np.isnan(work)]
    result = lfep(finite_work, n, reference_length=system.units.reference_length,
                  system=system.name)
    return {
        "beta_f_per_particle": result.value,
        "stderr": result.stderr,
        "ess": result.ess,
        "mean_work_per_particle": float(np.mean(finite_work)) / n,
        # <beta Phi> bounds -ln Z_flow from above, so this bounds beta F / N likewise.
        "beta_f_upper_bound": offset + float(np.mean(finite_work)) / n,
        "num_nan_works": int(len(work) - len(finite_work)),
        "note": f"from only the {num_samples} diagnostic samples; use 'freeflow "
                "estimate' for the reported value",
    }


def _energy_summary(energies: Mapping[str, np.ndarray]) -> dict:
    def summary(values):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        finite = values[np.isfinite(values)]
        return {"mean": float(np.mean(finite)) if len(finite) else math.nan,
                "std": float(np.std(finite)) if len(finite) else math.nan,
                "num_non_finite": int(np.sum(~np.isfinite(values)))}
    return {k: summary(v) for k, v in energies.items()}


def diagnose(run_dir, out_dir, reference=None, num_samples: int = 2000, seed: int = 0, *,
             references: Mapping[str, tuple[float, float]] | None = None,
             batch_size: int = 256, num_bins: int = 200) -> dict[str, Path]:
    """Draw samples from a trained run and write the standard diagnostics into ``out_dir``.

    Files written:

    * ``rdf.png``, ``rdf.csv``: g(r) of model, base and (if given) reference samples; the CSV
      has columns ``r`` (length unit), ``g_model``, ``g_base`` and ``g_reference``.
    * ``energy_histogram.png``: ``beta U / N`` of base, model and reference samples.
    * ``work_histogram.png``: ``beta Phi / N`` of the model samples.
    * ``training_curves.png``: from the run's ``metrics.jsonl``.
    * ``running_estimate.png``: LFEP ``beta F / N`` against the number of samples.
    * ``summary.json``: the numbers behind the plots (LFEP estimate of these samples, ESS,
      mean energies, g(r) peak positions, training progress, settings).

    Args:
      run_dir: a run directory made by ``freeflow train``.
      out_dir: output directory (created).
      reference: optional sample file of the target (``freeflow sample SYSTEM --out FILE``,
        ``.npz`` or ``.extxyz``) of the same system.
      num_samples: model samples, and base samples, to draw.
      seed: PRNG seed of those samples.
      references: optional ``{label: (beta F / N, stderr)}`` (e.g. the MBAR baseline) drawn
        on the running-estimate and training plots.
      batch_size: samples per device call.
      num_bins: g(r) bins on ``[0, min(box) / 2]``.

    Returns:
      ``{"rdf": path, "rdf_csv": ..., "energy_histogram": ..., "work_histogram": ...,
      "training_curves": ..., "running_estimate": ..., "summary": ...}``.
    """
    if num_samples < 2:
        raise ValueError(f"need at least 2 samples; got {num_samples}")
    started = time.perf_counter()
    system, model, params, spec = load_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawn = _draw_sets(system, model, params, reference, int(num_samples), seed, batch_size,
                       num_bins)
    metrics = read_metrics(Path(run_dir))
    offset = beta_f_from_flow_log_z(system, 0.0)
    paths = _plots(system, drawn, metrics, references, offset, out)
    n = system.num_particles
    summary = {
        "system": system.name, "num_particles": n, "run_dir": str(run_dir),
        "reference_file": str(reference) if reference is not None else None,
        "num_samples": int(num_samples), "seed": seed, "length_unit": system.units.length,
        "training_steps": metrics[-1]["step"] if metrics else 0,
        "planned_steps": spec["training"]["num_steps"],
        "lfep": _lfep_summary(drawn.work, system, offset, num_samples),
        "beta_energy_per_particle": _energy_summary(drawn.energies),
        "rdf_first_peak": {k: first_peak(*v) for k, v in drawn.rdf.items()},
        "nearest_neighbour_distance": system.nearest_neighbour_distance,
        "references": {k: list(v) for k, v in (references or {}).items()},
        "wall_time": time.perf_counter() - started,
    }
    last_eval = [m for m in metrics if "eval_beta_f_per_particle" in m]
    if last_eval:
        summary["last_evaluation"] = {k: last_eval[-1][k] for k in
                                      ("step", "eval_beta_f_per_particle", "eval_ess")
                                      if k in last_eval[-1]}
    paths["summary"] = out / "summary.json"
    summary["files"] = {k: str(v) for k, v in paths.items()}
    write_json(paths["summary"], _clean(summary))
    return paths


class _Drawn(NamedTuple):
    """The sample sets of a diagnosis: their labels (model, base, and reference if given), the
    model's works ``[S]``, ``beta U / N`` of every set and their g(r) (``{label: (r, g)}``)."""

    sets: list
    work: np.ndarray
    energies: dict
    rdf: dict


def _draw_sets(system, model, params, reference, num_samples: int, seed: int,
               batch_size: int, num_bins: int) -> _Drawn:
    """Model and base samples, and the reference file's, with their energies and g(r)."""
    n = system.num_particles
    ref_x = _reference_positions(reference, system) if reference is not None else None
    x_model, bu_model, log_q, x_base, bu_base = _draw(
        model, params, system, jax.random.PRNGKey(seed), num_samples, batch_size)
    energies = {"base": bu_base / n, "model": bu_model / n}
    samples = {"model": x_model, "base": x_base}
    if ref_x is not None:
        # Recomputed rather than read from the file: the same exact energy for every set.
        energies["reference"] = _beta_energies(system, ref_x, batch_size) / n
        samples["reference"] = ref_x
    rdf = {}
    for label, x in samples.items():
        x = _finite_configs(x)
        if len(x):
            rdf[label] = radial_distribution(x, system.box, num_bins=num_bins)
    return _Drawn(sets=list(samples), work=bu_model + log_q, energies=energies, rdf=rdf)


_LABELS = {"model": "model", "base": "base (lattice + noise)", "reference": "reference (MCMC)"}


def _plots(system, drawn: _Drawn, metrics, references, offset: float, out: Path) -> dict:
    """Every plot of a diagnosis, and g(r) as CSV, in ``out``: ``{name: path}``."""
    n, name = system.num_particles, system.name
    paths = {}
    paths["rdf"] = plot_rdf({_LABELS[k]: v for k, v in drawn.rdf.items()}, out / "rdf.png",
                            system.units.length,
                            nearest_neighbour=system.nearest_neighbour_distance,
                            title=f"{name}: radial distribution")
    paths["rdf_csv"] = _write_rdf_csv(out / "rdf.csv", drawn.rdf, drawn.sets)
    paths["energy_histogram"] = plot_energy_histograms(
        {_LABELS[k]: v for k, v in drawn.energies.items()}, out / "energy_histogram.png",
        title=f"{name}: energy of base, model and reference samples")
    paths["work_histogram"] = plot_work_histogram(
        drawn.work, n, out / "work_histogram.png", title=f"{name}: work of model samples")
    main_reference = next(iter(references.values())) if references else None
    paths["training_curves"] = plot_training_curves(
        metrics, out / "training_curves.png", n, reference=main_reference,
        title=f"{name}: training")
    work = drawn.work
    paths["running_estimate"] = plot_running_estimate(
        work[~np.isnan(work)], n, out / "running_estimate.png", beta_f_offset=offset,
        references=references, title=f"{name}: running LFEP estimate")
    return paths


def baseline_references(baseline_file: str | os.PathLike, system_name: str
                        ) -> dict[str, tuple[float, float]]:
    """``{"MBAR": (beta F / N, stderr)}`` from the last full (non-quick) MBAR row for
    ``system_name`` in a baseline JSONL file (``freeflow baseline --json`` rows); empty if there is none."""
    entry = read_baseline(baseline_file).get(system_name)
    return {"MBAR": (entry.value, entry.stderr)} if entry is not None else {}
