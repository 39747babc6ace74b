"""The structure of sampled crystals: the radial distribution function g(r), coordination
numbers and the first peak of g(r).

Positions ``[M, N, 3]`` and boxes ``[3]`` (orthorhombic edge lengths) are in the system's
length unit; ``r`` is in the same unit. Pure numpy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["coordination_number", "first_peak", "radial_distribution"]

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
