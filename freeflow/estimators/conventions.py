"""The free-energy convention of freeflow and the counting that links every estimator to it.

freeflow reports ``beta F / N = -(ln Z - ln N!) / N + 3 ln(Lambda)`` with
``Z = integral over box^N of exp(-beta U(x)) dx`` and ``Lambda`` the system's reference length
(1 in reduced Lennard-Jones units, ``sigma_mW`` for monatomic water), under one of two
countings of the crystal's regions of configuration space (``COUNTINGS``):

* ``"bravais"`` (the default): the regions are counted as for a Bravais lattice, as the
  published flow results (Wirnsberger et al. 2022) and the Frenkel-Ladd literature do, so
  that ``beta F / N = -(1/N) ln((V / N) Z_fixed) + 3 ln(Lambda)``. freeflow's numbers compare
  directly with published ones.
* ``"exact"``: ``Z`` really is the integral over all of box^N, which for a lattice with ``m``
  sites per primitive cell holds ``m`` times as many regions (below): ``ln m / N`` lower
  (-0.0108 for ice Ic, -0.0217 for ice Ih at N = 64; 0 for FCC).

For two crystals of the same N, the two countings differ in ``beta (F_B - F_A) / N`` by
``ln(m_A / m_B) / N``: ice Ih minus ice Ic at N = 64 is ``ln 2 / 64 = 0.0108`` more negative
under ``"exact"``.

Estimators never integrate over all of box^N: a crystal occupies disjoint regions of
configuration space, one for each way of assigning labelled particles to lattice sites, and each
estimator explores one representative family of them. Counting the regions exactly:

* Write a crystal configuration as ``x_i ~ s_pi(i) + u``: sites ``s``, a permutation ``pi`` and
  a global translation ``u``. Two permutations describe the same region when they differ by a
  translation of the crystal onto itself; there are ``N / m`` such translations, where ``m`` is
  the number of sites per primitive cell (``m = 1`` for FCC, 2 for diamond, 4 for hexagonal ice).
  Hence ``Z = (N! m / N) V Z_fixed``, where ``Z_fixed`` integrates over the N - 1 other particles
  with particle 0 held on site 0 and particle i near site i.
* The flow fixes particle 0 at the box corner (a site) and permutes the other N - 1 freely, so
  its support holds ``(N - 1)!`` of those regions, each of weight ``V Z_fixed``: the LFEP and LBAR
  estimates are of ``Z / m``. For a Bravais lattice (``m = 1``) that is ``Z`` itself; for diamond
  and hexagonal ice the regions in which particle 0 sits on a site of another sublattice (the
  inverted crystal, a translate of the original) are missed and ``ln m`` is added back.
* The classical baseline holds particle 0 fixed and ties particle i to site i, which estimates
  ``Z_fixed``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

#: How a crystal's regions of configuration space are counted (see the module docstring).
COUNTINGS = ("bravais", "exact")
DEFAULT_COUNTING = "bravais"


def translation_multiplicity(sites, box, tolerance: float = 1e-6) -> int:
    """Sites per primitive cell ``m``: ``N`` divided by the translations mapping the sites onto
    themselves (periodically in ``box``). 1 for Bravais lattices, 2 for diamond, 4 for ice Ih.

    Args:
      sites: ``[N, 3]`` lattice sites.
      box: ``[3]`` edges of the orthorhombic box.
      tolerance: matching tolerance as a fraction of the nearest-neighbour scale.
    """
    box = np.asarray(box, dtype=np.float64)
    sites = np.mod(np.asarray(sites, dtype=np.float64), box)
    n = len(sites)
    scale = (np.prod(box) / n) ** (1.0 / 3.0)
    tree = cKDTree(sites, boxsize=box * (1 + 1e-12))
    symmetric = 0
    for k in range(n):
        shifted = np.mod(sites + (sites[k] - sites[0]), box)
        distance, _ = tree.query(shifted, distance_upper_bound=tolerance * scale)
        symmetric += bool(np.all(np.isfinite(distance)))
    if n % symmetric:
        raise ValueError(f"inconsistent lattice symmetry: {symmetric} translations for {n} sites")
    return n // symmetric


def beta_f_per_particle(log_z: float, num_particles: int, reference_length: float) -> float:
    """``-(ln Z - ln N!) / N + 3 ln Lambda`` from the full configurational ``ln Z``."""
    n = num_particles
    return -(log_z - math.lgamma(n + 1)) / n + 3.0 * math.log(reference_length)


def log_z_from_flow(log_z_flow: float, multiplicity: int) -> float:
    """``ln Z`` from a flow-based estimate (LFEP, LBAR): adds ``ln m`` of the counting."""
    return log_z_flow + math.log(multiplicity)


def log_z_from_fixed_particle(log_z_fixed: float, num_particles: int, volume: float,
                              multiplicity: int) -> float:
    """``ln Z`` from ``ln Z_fixed`` (particle 0 held on site 0, particle i near site i), with
    the counting's factor ``m`` (``multiplicity``)."""
    n = num_particles
    return log_z_fixed + math.lgamma(n) + math.log(multiplicity) + math.log(volume)


def counted_multiplicity(lattice_multiplicity: int, counting: str = DEFAULT_COUNTING) -> int:
    """The factor ``m`` a counting puts into ``ln Z``: 1 under ``"bravais"``, the lattice's
    sites per primitive cell under ``"exact"``. Raises ``ValueError`` for another counting."""
    if counting not in COUNTINGS:
        raise ValueError(f"unknown counting {counting!r}; use one of {COUNTINGS}")
    return int(lattice_multiplicity) if counting == "exact" else 1


def multiplicity(system, counting: str = DEFAULT_COUNTING) -> int:
    """The factor of ``counted_multiplicity`` for a system's lattice in its box."""
    return counted_multiplicity(translation_multiplicity(system.lattice, system.box), counting)


def beta_f_from_flow_log_z(system, log_z_flow: float, multiplicity: int = 1) -> float:
    """``beta F / N`` of ``system`` from a flow's estimate of ``ln Z``, adding ``ln
    multiplicity`` (1 under the default counting; see ``multiplicity``)."""
    m = multiplicity
    return beta_f_per_particle(log_z_from_flow(log_z_flow, m), system.num_particles,
                               system.units.reference_length)


def beta_f_from_ln_z_fixed(ln_z_fixed: float, num_particles: int, volume: float,
                           reference_length: float, multiplicity: int = 1) -> float:
    """``beta F / N`` from ``ln Z_fixed`` (particle 0 held on site 0): ``ln Z = ln Z_fixed +
    ln (N-1)! + ln m + ln V``."""
    ln_z = log_z_from_fixed_particle(ln_z_fixed, num_particles, volume, multiplicity)
    return beta_f_per_particle(ln_z, num_particles, reference_length)


def convert_counting(value: float, num_particles: int, lattice_multiplicity: int,
                     from_counting: str, to_counting: str) -> float:
    """``beta F / N`` of one counting expressed in another: ``exact = bravais - ln(m) / N``."""
    for counting in (from_counting, to_counting):
        if counting not in COUNTINGS:
            raise ValueError(f"unknown counting {counting!r}; use one of {COUNTINGS}")
    if from_counting == to_counting:
        return float(value)
    shift = math.log(lattice_multiplicity) / num_particles
    return float(value) - shift if to_counting == "exact" else float(value) + shift
