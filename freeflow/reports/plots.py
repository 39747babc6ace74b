"""Plots of a run's diagnostics: g(r), energy and work histograms, training curves and the
running LFEP estimate.

Energies enter as the dimensionless ``beta U / N``; works are ``beta Phi(x) = beta U(x) + ln
q(x)`` of model samples ``x ~ q``, shown as ``beta Phi / N``. The plots use matplotlib's
object-oriented API with the Agg renderer (no pyplot, so no global backend is changed and
nothing needs a display).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from freeflow.estimators.lfep import running_lfep

__all__ = ["plot_energy_histograms", "plot_rdf", "plot_running_estimate",
           "plot_training_curves", "plot_work_histogram"]

def _figure(nrows: int = 1, figsize=(6.4, 4.4), **kwargs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, 1, squeeze=True, **kwargs)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, format="png")
    return path


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return values[np.isfinite(values)]


def _percentile_range(arrays, lo: float = 0.5, hi: float = 99.5):
    """Plot range holding the central ``hi - lo`` percent of the pooled finite values.

    A few wild samples (a base sample with an overlap, an untrained model) would otherwise
    squeeze the bulk of the distribution into one bin.
    """
    pooled = np.concatenate([_finite(a) for a in arrays] or [np.zeros(0)])
    if len(pooled) == 0:
        return None
    a, b = np.percentile(pooled, [lo, hi])
    if not b > a:
        pad = max(abs(a) * 1e-3, 1e-6)
        a, b = a - pad, b + pad
    return float(a), float(b)


def _fit_ylim(ax, arrays) -> None:
    """Vertical range spanning every value in ``arrays`` with a 15% margin (no-op if empty)."""
    pooled = np.concatenate(arrays)
    if len(pooled):
        lo, hi = np.min(pooled), np.max(pooled)
        pad = 0.15 * (hi - lo) or 0.01 * max(abs(hi), 1.0)
        ax.set_ylim(lo - pad, hi + pad)


def _smooth(y, window: int) -> np.ndarray:
    """Centred moving average ignoring non-finite entries; the window shrinks at the ends."""
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    if window <= 1:
        return np.where(ok, y, np.nan)
    kernel = np.ones(window)
    num = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def plot_rdf(curves: Mapping[str, tuple], path, length_unit: str, *,
             nearest_neighbour: float | None = None, title: str | None = None) -> Path:
    """Plot ``g(r)`` curves on common axes and write a PNG.

    Args:
      curves: ``{label: (r [K], g [K])}`` with r in ``length_unit``.
      path: output ``.png``.
      length_unit: name of the length unit for the axis label (``"sigma"``, ``"Angstrom"``).
      nearest_neighbour: if given, a dotted vertical line at the lattice's nearest-neighbour
        distance (length unit).
    """
    fig, ax = _figure()
    styles = {"model": "-", "reference": "--", "base": ":"}
    for label, (r, g) in curves.items():
        ax.plot(r, g, styles.get(label.split()[0].lower(), "-"), label=label, lw=1.4)
    if nearest_neighbour is not None:
        ax.axvline(nearest_neighbour, color="0.5", lw=0.8, ls=":",
                   label=f"lattice nearest neighbour ({nearest_neighbour:.3g} {length_unit})")
    ax.axhline(1.0, color="0.7", lw=0.6)
    ax.set_xlabel(f"r / {length_unit}")
    ax.set_ylabel("g(r)")
    ax.set_xlim(0.0, None)
    ax.set_ylim(0.0, None)
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_energy_histograms(energies: Mapping[str, np.ndarray], path, *, bins: int = 60,
                           xlabel: str = r"$\beta U / N$", title: str | None = None) -> Path:
    """Normalised histograms of ``beta U / N`` (dimensionless) on common axes; writes a PNG.

    Args:
      energies: ``{label: values [n]}``; non-finite values are left out (and counted in the
        legend).
      path: output ``.png``.
      bins: number of bins of each histogram, spanning the 0.5-99.5 percentile range of
        that data set (so each is resolved; the densities stay comparable).
    """
    fig, ax = _figure()
    span = _percentile_range(energies.values())
    if span is None:
        ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
    else:
        for label, values in energies.items():
            v = np.asarray(values, dtype=np.float64).reshape(-1)
            f = v[np.isfinite(v)]
            if len(f) == 0:
                continue
            # Bins per data set: base, model and reference can differ in width by orders of
            # magnitude, and common bins would squeeze the narrow ones into a single bin.
            edges = np.linspace(*_percentile_range([f]), bins + 1)
            bad = len(v) - len(f)
            text = (f"{label}: mean {np.mean(f):.4g} (n = {len(f)}"
                    + (f", {bad} non-finite" if bad else "") + ")")
            ax.hist(f, bins=edges, density=True, histtype="step", lw=1.4, label=text)
        ax.legend(frameon=False, fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability density")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_work_histogram(work, num_particles: int, path, *, bins: int = 60,
                        title: str | None = None) -> Path:
    """Histogram of the works per particle ``beta Phi / N`` of model samples; writes a PNG.

    Also drawn: the same histogram reweighted by ``exp(-beta Phi)`` (where the LFEP estimate
    gets its weight; a spike means few samples dominate), the mean work ``<beta Phi> / N``
    (the training loss, an upper bound on ``-ln Z_flow / N``) and the LFEP value
    ``-ln <exp(-beta Phi)> / N``. Their gap is the KL divergence per particle.

    Args:
      work: ``[n]`` works ``beta U + ln q`` (dimensionless).
      num_particles: N.
      path: output ``.png``.
    """
    w = np.asarray(work, dtype=np.float64).reshape(-1)
    finite = w[np.isfinite(w)]
    fig, ax = _figure()
    if len(finite) == 0:
        ax.text(0.5, 0.5, "no finite works", ha="center", transform=ax.transAxes)
    else:
        per = finite / num_particles
        span = _percentile_range([per])
        edges = np.linspace(*span, bins + 1)
        ax.hist(per, bins=edges, density=True, histtype="stepfilled", alpha=0.35,
                label=f"model samples (n = {len(per)})")
        log_w = -finite
        weights = np.exp(log_w - np.max(log_w))
        ax.hist(per, bins=edges, weights=weights, density=True, histtype="step", lw=1.4,
                label=r"reweighted by $e^{-\beta\Phi}$")
        from scipy.special import logsumexp

        lfep_value = -(logsumexp(log_w) - math.log(len(log_w))) / num_particles
        ess = math.exp(2 * logsumexp(log_w) - logsumexp(2 * log_w)) / len(log_w)
        ax.axvline(np.mean(per), color="C2", ls="--",
                   label=rf"$\langle\beta\Phi\rangle/N$ = {np.mean(per):.5f}")
        ax.axvline(lfep_value, color="C3", ls="-.",
                   label=rf"$-\ln\langle e^{{-\beta\Phi}}\rangle/N$ = {lfep_value:.5f}")
        ax.plot([], [], " ", label=f"ESS {100 * ess:.2f}%")
        ax.legend(frameon=False, fontsize="small")
    ax.set_xlabel(r"$\beta\Phi / N = (\beta U + \ln q) / N$")
    ax.set_ylabel("probability density")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _running_log_mean(log_z, decay: float = 0.95) -> np.ndarray:
    # The trainer's progress-bar estimate: an exponential moving average of the batch
    # importance weights, i.e. of exp(ln Z_batch), taken in log space.
    out = np.empty(len(log_z))
    running = None
    for k, value in enumerate(log_z):
        if np.isfinite(value):
            running = value if running is None else np.logaddexp(
                running + math.log(decay), value + math.log(1 - decay))
        out[k] = np.nan if running is None else running
    return out


def _loss_panel(ax, step, loss, window: int):
    ax.plot(step, loss, color="C0", alpha=0.3, lw=0.6)
    ax.plot(step, _smooth(loss, window), color="C0", lw=1.4, label="loss / N (batch mean work)")
    # The first steps' losses can be orders of magnitude above the converged ones.
    late = _finite(loss[len(loss) // 10:])
    if len(late):
        lo, hi = np.percentile(late, [0.5, 99.5])
        pad = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(r"$\langle\beta\Phi\rangle / N$")
    ax.legend(frameon=False, fontsize="small")


def _ess_panel(ax, step, ess, eval_ess, window: int):
    """Batch and evaluation ESS in percent, on a log axis (ESS spans decades in training)."""
    ax.plot(step, ess, color="C1", alpha=0.3, lw=0.6)
    ax.plot(step, _smooth(ess, window), color="C1", lw=1.4, label="batch ESS")
    if np.any(np.isfinite(eval_ess)):
        ok = np.isfinite(eval_ess)
        ax.plot(step[ok], eval_ess[ok], "o", color="C3", label="evaluation ESS")
    positive = _finite(np.concatenate([ess, eval_ess]))
    positive = positive[positive > 0]
    if len(positive):
        ax.set_yscale("log")
        ax.set_ylim(max(0.7 * np.min(positive), 1e-4), 100.0)
    ax.set_ylabel("ESS / %")
    ax.legend(frameon=False, fontsize="small")


def _estimate_panel(ax, step, bf, eval_bf, num_particles: int, reference):
    ax.plot(step, bf, color="C0", alpha=0.25, lw=0.6, label="batch estimate")
    # beta F / N is affine in ln Z (slope -1/N), so the running estimate can be computed
    # from the batch values without knowing the offset.
    running = -_running_log_mean(-num_particles * bf) / num_particles
    ax.plot(step, running, color="C0", lw=1.4, label="running estimate (EMA 0.95)")
    if np.any(np.isfinite(eval_bf)):
        ok = np.isfinite(eval_bf)
        ax.plot(step[ok], eval_bf[ok], "o", color="C3", label="LFEP evaluation (exact U)")
    shown = [_finite(running[len(running) // 10:]), _finite(eval_bf)]
    if reference is not None and np.isfinite(reference[0]):
        value, err = reference
        ax.axhline(value, color="k", lw=0.8, label=f"reference {value:.5f}")
        if np.isfinite(err) and err > 0:
            ax.axhspan(value - err, value + err, color="k", alpha=0.15, lw=0)
        shown.append(np.asarray([value]))
    _fit_ylim(ax, shown)
    ax.set_ylabel(r"$\beta F / N$")
    ax.set_xlabel("training step")
    ax.legend(frameon=False, fontsize="small")


def plot_training_curves(metrics: Sequence[dict], path, num_particles: int, *,
                         reference: tuple[float, float] | None = None,
                         title: str | None = None) -> Path:
    """Three panels against the training step: loss / N, ESS (%), and ``beta F / N``.

    Args:
      metrics: records of ``metrics.jsonl`` (``freeflow.rundir.read_metrics``): ``step``,
        ``loss`` (mean work of the batch), ``ess`` (fraction), ``beta_f_per_particle_batch``
        and, on evaluation steps, ``eval_beta_f_per_particle`` and ``eval_ess``.
      path: output ``.png``.
      num_particles: N (the loss is divided by it).
      reference: optional ``(value, stderr)`` of ``beta F / N`` (e.g. the MBAR baseline),
        drawn as a band.

    Noisy per-batch curves are drawn faintly with a moving average on top; the ``beta F / N``
    panel also shows the trainer's running estimate (exponential moving average of the batch
    weights, decay 0.95) and the periodic exact-energy LFEP evaluations.
    """
    records = [m for m in metrics if "step" in m]
    fig, axes = _figure(3, figsize=(6.4, 8.0), sharex=True)
    if not records:
        axes[0].text(0.5, 0.5, "no training metrics", ha="center", transform=axes[0].transAxes)
        return _save(fig, path)

    def column(name):
        return np.asarray([m.get(name, np.nan) for m in records], dtype=np.float64)

    step = column("step")
    window = max(1, len(step) // 50)
    _loss_panel(axes[0], step, column("loss") / num_particles, window)
    _ess_panel(axes[1], step, 100 * column("ess"), 100 * column("eval_ess"), window)
    _estimate_panel(axes[2], step, column("beta_f_per_particle_batch"),
                    column("eval_beta_f_per_particle"), num_particles, reference)
    if title:
        axes[0].set_title(title)
    return _save(fig, path)


def plot_running_estimate(work, num_particles: int, path, *, beta_f_offset: float = 0.0,
                          references: Mapping[str, tuple[float, float]] | None = None,
                          title: str | None = None) -> Path:
    """Running LFEP ``beta F / N`` against the number of model samples (log axis); PNG.

    Args:
      work: ``[n]`` works ``beta Phi`` in sampling order.
      num_particles: N.
      path: output ``.png``.
      beta_f_offset: ``freeflow.estimators.conventions.beta_f_from_flow_log_z(system, 0)``, so that the
        curve is the reported ``beta F / N``; 0 plots ``-ln Z_flow / N``.
      references: ``{label: (value, stderr)}`` of ``beta F / N`` drawn as horizontal bands.

    The shaded band is the delta-method standard error ``sqrt((1/ESS_n - 1)/n) / N``; while
    the ESS is tiny it underestimates the true error (the estimate drifts downwards as rare
    high-weight samples arrive).
    """
    n, est, err, _ = running_lfep(work, num_particles, beta_f_offset)
    fig, ax = _figure()
    ax.plot(n, est, color="C0", lw=1.4, label="LFEP (first n samples)")
    ax.fill_between(n, est - err, est + err, color="C0", alpha=0.25, lw=0,
                    label="delta-method standard error")
    shown = [_finite(est[max(10, len(est) // 100) - 1:])]
    for k, (label, (value, stderr)) in enumerate((references or {}).items()):
        if not np.isfinite(value):
            continue
        colour = f"C{k + 1}"
        ax.axhline(value, color=colour, lw=1.0, ls="--", label=f"{label}: {value:.5f}")
        if np.isfinite(stderr) and stderr > 0:
            ax.axhspan(value - stderr, value + stderr, color=colour, alpha=0.15, lw=0)
        shown.append(np.asarray([value]))
    _fit_ylim(ax, shown)
    ax.set_xscale("log")
    ax.set_xlim(1, max(len(n), 2))
    ax.set_xlabel("number of model samples n")
    ax.set_ylabel(r"$\beta F / N$")
    ax.legend(frameon=False, fontsize="small")
    if title:
        ax.set_title(title)
    return _save(fig, path)
