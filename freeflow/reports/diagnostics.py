"""Diagnostics of a trained flow: g(r), energy and work histograms, training curves, the
running LFEP estimate.

Conventions:

* Positions ``[M, N, 3]`` and boxes ``[3]`` (orthorhombic edge lengths) are in the system's
  length unit (sigma for Lennard-Jones, Angstrom for mW); ``r`` is in the same unit.
* Energies enter as the dimensionless ``beta U / N``.
* Works are ``beta Phi(x) = beta U(x) + ln q(x)`` (dimensionless, exact energy) of model
  samples ``x ~ q``; plots show ``beta Phi / N``. ``-ln mean(exp(-beta Phi))`` estimates the
  flow-relative ``-ln Z``; ``freeflow.estimators.conventions.beta_f_from_flow_log_z`` turns it into the
  reported ``beta F / N``, which differs from ``-ln Z_flow / N`` only by a constant offset
  ``beta_f_offset = beta_f_from_flow_log_z(system, 0)`` (``ln N!``, ``ln m``, ``Lambda``).

The numerical functions are pure numpy; the plotting functions use matplotlib's
object-oriented API with the Agg renderer (no pyplot, so no global backend is changed and
nothing needs a display).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.estimators.conventions import beta_f_from_flow_log_z
from freeflow.estimators.lfep import lfep
from freeflow.physics.system import check_same_system
from freeflow.rundir import load_run, load_samples, read_baseline, read_metrics

__all__ = ["radial_distribution", "coordination_number", "first_peak", "plot_rdf",
           "plot_energy_histograms", "plot_work_histogram", "plot_training_curves",
           "plot_running_estimate", "running_lfep", "diagnose"]

# Bytes of pair-distance temporaries radial_distribution may hold at once.
_RDF_MEMORY_BUDGET = 64 * 2**20


# -- radial distribution function --------------------------------------------------------------


def _check_box(box) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (3,) or not np.all(np.isfinite(box)) or not np.all(box > 0):
        raise ValueError(f"box must be the 3 positive edge lengths of an orthorhombic box; "
                         f"got {box.tolist() if box.size < 10 else box.shape}")
    return box


def radial_distribution(positions, box, r_max: float | None = None, num_bins: int = 200):
    """Radial distribution function ``g(r)`` of configurations in a periodic orthorhombic box.

    Pair distances use the minimum image, so ``r_max`` may not exceed half the shortest box
    edge (beyond it the minimum-image shell is no longer a full sphere). The histogram is
    normalised by the ideal-gas expectation with pair density ``N (N - 1) / V``::

        g(r_k) = h_k / (M * N (N - 1) / 2 * (4 pi / 3) (r_{k+1}^3 - r_k^3) / V)

    with ``h_k`` the number of unordered pairs in bin k summed over the M configurations, so
    uniformly random points give ``g = 1`` exactly in expectation, for any N.

    Args:
      positions: ``[M, N, 3]`` (or one ``[N, 3]``) configurations, length unit. They need not
        be wrapped into the box.
      box: ``[3]`` box edges, length unit.
      r_max: upper end of the histogram (length unit); default and maximum: half the shortest
        box edge.
      num_bins: number of equal-width bins on ``[0, r_max]``.

    Returns:
      ``(r, g)``: bin centres ``[num_bins]`` (length unit) and ``g(r)`` ``[num_bins]``
      (dimensionless), both float64.

    Raises:
      ValueError: for a bad box or shape, non-finite positions, or ``r_max`` outside
        ``(0, min(box) / 2]``.
    """
    box = _check_box(box)
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 3 or x.shape[1] < 2 or x.shape[0] < 1:
        raise ValueError(f"positions must have shape [M, N, 3] with M >= 1 and N >= 2; "
                         f"got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("positions contain NaN or infinite values; drop those "
                         "configurations first")
    half = 0.5 * float(np.min(box))
    if r_max is None:
        r_max = half
    r_max = float(r_max)
    # A relative slack so that r_max = min(box) / 2 computed elsewhere in float32 is accepted.
    if not (r_max > 0 and r_max <= half * (1 + 1e-9)):
        raise ValueError(f"r_max must lie in (0, {half:.6g}] (half the shortest box edge, the "
                         f"minimum-image limit); got {r_max:.6g}")
    r_max = min(r_max, half)
    num_bins = int(num_bins)
    if num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer; got {num_bins}")

    num_configs, n = x.shape[:2]
    i, j = np.triu_indices(n, k=1)
    num_pairs = len(i)
    dr = r_max / num_bins
    counts = np.zeros(num_bins, dtype=np.int64)
    # About four [chunk, pairs, 3] float64 temporaries live at once.
    chunk = max(1, int(_RDF_MEMORY_BUDGET // (4 * 3 * 8 * num_pairs)))
    for start in range(0, num_configs, chunk):
        block = x[start:start + chunk]
        d = block[:, i] - block[:, j]
        d -= box * np.round(d / box)
        r = np.sqrt(np.einsum("cpk,cpk->cp", d, d)).ravel()
        k = np.floor(r / dr).astype(np.int64)
        counts += np.bincount(k[(r < r_max) & (k < num_bins)], minlength=num_bins)
    edges = np.linspace(0.0, r_max, num_bins + 1)
    shell = (4.0 * np.pi / 3.0) * (edges[1:] ** 3 - edges[:-1] ** 3)
    ideal = num_configs * 0.5 * n * (n - 1) * shell / float(np.prod(box))
    return 0.5 * (edges[1:] + edges[:-1]), counts / ideal


def _bin_edges(r) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2:
        raise ValueError("r must be at least 2 bin centres")
    dr = np.diff(r)
    if not np.allclose(dr, dr[0], rtol=1e-6, atol=0):
        raise ValueError("r must be the centres of equal-width bins (from radial_distribution)")
    return np.concatenate([r - 0.5 * dr[0], [r[-1] + 0.5 * dr[0]]])


def coordination_number(r, g, density: float, r_lo: float, r_hi: float) -> float:
    """``integral_{r_lo}^{r_hi} 4 pi rho r^2 g(r) dr``: mean number of neighbours in the shell.

    ``g`` is taken constant within each bin (exactly how ``radial_distribution`` builds it),
    and bins cut by ``r_lo`` or ``r_hi`` contribute their overlapping shell volume, so the
    result is the histogram's neighbour count with no quadrature error.

    Args:
      r: ``[K]`` equal-width bin centres (length unit), as returned by ``radial_distribution``.
      g: ``[K]`` radial distribution function.
      density: number density of the *other* particles around one particle (length^-3). For
        ``g`` from ``radial_distribution`` (pair density ``N (N - 1) / V``) of a finite system
        of N particles, pass ``(N - 1) / V`` to get the exact mean neighbour count; ``N / V``
        overestimates it by the factor ``N / (N - 1)``.
      r_lo, r_hi: integration limits (length unit), ``r_lo < r_hi``.
    """
    edges = _bin_edges(r)
    g = np.asarray(g, dtype=np.float64)
    if g.shape != (len(edges) - 1,):
        raise ValueError(f"g must have the shape of r {(len(edges) - 1,)}; got {g.shape}")
    if not r_lo < r_hi:
        raise ValueError(f"need r_lo < r_hi; got {r_lo}, {r_hi}")
    lo = np.clip(edges[:-1], r_lo, r_hi)
    hi = np.clip(edges[1:], r_lo, r_hi)
    shell = (4.0 * np.pi / 3.0) * (hi**3 - lo**3)
    return float(density * np.sum(shell * g))


def first_peak(r, g, r_min: float = 0.0) -> float:
    """Position (length unit) of the first coordination peak of ``g`` at ``r >= r_min``.

    The peak is the maximum of the first run of bins where ``g > 1``: the nearest-neighbour
    shell, even where a later shell is higher (ice, whose 12 second neighbours outnumber its
    4 first ones). NaN if ``g`` never exceeds 1 there.
    """
    r = np.asarray(r, dtype=np.float64)
    g = np.where(np.isfinite(g), np.asarray(g, dtype=np.float64), -np.inf)
    above = (g > 1.0) & (r >= r_min)
    if not np.any(above):
        return math.nan
    start = int(np.argmax(above))
    stop = start + (int(np.argmin(above[start:])) if not np.all(above[start:])
                    else len(above) - start)
    return float(r[start + np.argmax(g[start:stop])])


# -- the running LFEP estimate -----------------------------------------------------------------


def running_lfep(work, num_particles: int, beta_f_offset: float = 0.0):
    """LFEP ``beta F / N`` from the first n works, for every n = 1..len(work).

    ``beta F / N (n) = beta_f_offset - ln((1/n) sum_{i<=n} exp(-beta Phi_i)) / N``; its
    delta-method standard error is ``sqrt((1 / ESS_n - 1) / n) / N`` with ``ESS_n`` the
    effective sample size as a fraction of n.

    Args:
      work: ``[n]`` works ``beta Phi`` in sampling order (NaN entries are dropped; ``+inf``
        means zero weight).
      num_particles: N.
      beta_f_offset: ``beta_f_from_flow_log_z(system, 0)``; 0 gives ``-ln Z_flow / N``.

    Returns:
      ``(n [K] int, estimate [K], stderr [K], ess_fraction [K])`` float64 arrays.
    """
    w = np.asarray(work, dtype=np.float64).reshape(-1)
    w = w[~np.isnan(w)]
    if len(w) == 0:
        raise ValueError("no works to estimate from")
    log_w = -w
    n = np.arange(1, len(w) + 1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cum = np.logaddexp.accumulate(log_w)
        cum2 = np.logaddexp.accumulate(2.0 * log_w)
        ess = np.exp(2.0 * cum - cum2) / n
        estimate = beta_f_offset - (cum - np.log(n)) / num_particles
        stderr = np.sqrt(np.maximum(1.0 / ess - 1.0, 0.0) / n) / num_particles
    return n.astype(np.int64), estimate, stderr, ess


# -- plotting ----------------------------------------------------------------------------------


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

    loss = column("loss") / num_particles
    ax = axes[0]
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

    ess = 100 * column("ess")
    ax = axes[1]
    ax.plot(step, ess, color="C1", alpha=0.3, lw=0.6)
    ax.plot(step, _smooth(ess, window), color="C1", lw=1.4, label="batch ESS")
    eval_ess = 100 * column("eval_ess")
    if np.any(np.isfinite(eval_ess)):
        ok = np.isfinite(eval_ess)
        ax.plot(step[ok], eval_ess[ok], "o", color="C3", label="evaluation ESS")
    positive = _finite(np.concatenate([ess, eval_ess]))
    positive = positive[positive > 0]
    if len(positive):
        ax.set_yscale("log")  # ESS spans decades during training
        ax.set_ylim(max(0.7 * np.min(positive), 1e-4), 100.0)
    ax.set_ylabel("ESS / %")
    ax.legend(frameon=False, fontsize="small")

    bf = column("beta_f_per_particle_batch")
    ax = axes[2]
    ax.plot(step, bf, color="C0", alpha=0.25, lw=0.6, label="batch estimate")
    # beta F / N is affine in ln Z (slope -1/N), so the running estimate can be computed
    # from the batch values without knowing the offset.
    running = -_running_log_mean(-num_particles * bf) / num_particles
    ax.plot(step, running, color="C0", lw=1.4, label="running estimate (EMA 0.95)")
    eval_bf = column("eval_beta_f_per_particle")
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
    return {k: {"mean": float(np.mean(_finite(v))) if len(_finite(v)) else math.nan,
                "std": float(np.std(_finite(v))) if len(_finite(v)) else math.nan,
                "num_non_finite": int(np.sum(~np.isfinite(v)))}
            for k, v in energies.items()}


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
    n = system.num_particles
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref_x = _reference_positions(reference, system) if reference is not None else None

    x_model, bu_model, log_q, x_base, bu_base = _draw(
        model, params, system, jax.random.PRNGKey(seed), int(num_samples), batch_size)
    work = bu_model + log_q
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

    unit = system.units.length
    labels = {"model": "model", "base": "base (lattice + noise)", "reference": "reference (MCMC)"}
    paths = {}
    paths["rdf"] = plot_rdf({labels[k]: v for k, v in rdf.items()}, out / "rdf.png", unit,
                            nearest_neighbour=system.nearest_neighbour_distance,
                            title=f"{system.name}: radial distribution")
    paths["rdf_csv"] = _write_rdf_csv(out / "rdf.csv", rdf, list(samples))
    paths["energy_histogram"] = plot_energy_histograms(
        {labels[k]: v for k, v in energies.items()}, out / "energy_histogram.png",
        title=f"{system.name}: energy of base, model and reference samples")
    paths["work_histogram"] = plot_work_histogram(
        work, n, out / "work_histogram.png", title=f"{system.name}: work of model samples")
    metrics = read_metrics(Path(run_dir))
    main_reference = next(iter(references.values())) if references else None
    paths["training_curves"] = plot_training_curves(
        metrics, out / "training_curves.png", n, reference=main_reference,
        title=f"{system.name}: training")
    offset = beta_f_from_flow_log_z(system, 0.0)
    paths["running_estimate"] = plot_running_estimate(
        work[~np.isnan(work)], n, out / "running_estimate.png", beta_f_offset=offset,
        references=references, title=f"{system.name}: running LFEP estimate")

    summary = {
        "system": system.name, "num_particles": n, "run_dir": str(run_dir),
        "reference_file": str(reference) if reference is not None else None,
        "num_samples": int(num_samples), "seed": seed, "length_unit": unit,
        "training_steps": metrics[-1]["step"] if metrics else 0,
        "planned_steps": spec["training"]["num_steps"],
        "lfep": _lfep_summary(work, system, offset, num_samples),
        "beta_energy_per_particle": _energy_summary(energies),
        "rdf_first_peak": {k: first_peak(*v) for k, v in rdf.items()},
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
    paths["summary"].write_text(json.dumps(_clean(summary), indent=2) + "\n")
    return paths


def baseline_references(baseline_file: str | os.PathLike, system_name: str
                        ) -> dict[str, tuple[float, float]]:
    """``{"MBAR": (beta F / N, stderr)}`` from the last full (non-quick) MBAR row for
    ``system_name`` in a baseline JSONL file (``freeflow baseline --json`` rows); empty if there is none."""
    entry = read_baseline(baseline_file).get(system_name)
    return {"MBAR": (entry.value, entry.stderr)} if entry is not None else {}
