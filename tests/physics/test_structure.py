"""g(r), coordination numbers and the first peak (physics.structure)."""

import numpy as np
import pytest

import freeflow
from freeflow.physics.structure import coordination_number, first_peak, radial_distribution


def test_rdf_of_uniform_points_is_one_within_poisson_noise():
    rng = np.random.default_rng(1)
    box = np.array([3.0, 3.6, 4.2])  # non-cubic: r_max is set by the shortest edge
    m, n, bins = 400, 64, 40
    x = rng.random((m, n, 3)) * box
    r, g = radial_distribution(x, box, num_bins=bins)
    assert r[-1] < 1.5 and len(r) == bins
    # Expected unordered-pair count per bin for an ideal gas; the counts are nearly Poisson.
    edges = np.linspace(0, 1.5, bins + 1)
    expected = m * n * (n - 1) / 2 * 4 / 3 * np.pi * np.diff(edges**3) / np.prod(box)
    assert expected[0] > 3  # even the smallest shell has a few pairs
    sigma = 1 / np.sqrt(expected)  # relative Poisson error of g in each bin
    assert np.all(np.abs(g - 1) < 5 * sigma), np.max(np.abs(g - 1) / sigma)
    chi2 = np.sum((g - 1) ** 2 / sigma**2) / bins
    assert abs(chi2 - 1) < 5 * np.sqrt(2 / bins)
    # The pooled normalisation (0.2% error here) catches an N vs N - 1 slip (1.6%).
    pooled = np.sum(g * expected) / np.sum(expected)
    assert abs(pooled - 1) < 4 / np.sqrt(np.sum(expected))


def test_rdf_of_fcc_peaks_at_nearest_neighbour_with_coordination_12():
    system = freeflow.load_system("lj_108")
    d = system.nearest_neighbour_distance
    rng = np.random.default_rng(0)
    x = system.lattice + 0.01 * d * rng.standard_normal((20,) + system.lattice.shape)
    r, g = radial_distribution(x, system.box, num_bins=200)
    assert abs(first_peak(r, g) - d) <= r[1] - r[0]
    # The first minimum lies between the first (d) and second (sqrt(2) d) shells.
    rho_other = (system.num_particles - 1) / system.volume
    assert abs(coordination_number(r, g, rho_other, 0.0, 1.2 * d) - 12) < 0.05
    assert abs(coordination_number(r, g, rho_other, 1.2 * d, 1.6 * d) - 6) < 0.05


def test_first_peak_of_ice_is_the_nearest_neighbour_shell_not_the_highest():
    # Diamond: 4 neighbours at d, 12 at 1.63 d; the second peak of g is the higher one.
    system = freeflow.load_system("mw_cubic_64")
    d = system.nearest_neighbour_distance
    rng = np.random.default_rng(1)
    x = system.lattice + 0.03 * d * rng.standard_normal((20,) + system.lattice.shape)
    r, g = radial_distribution(x, system.box, num_bins=120)
    assert r[np.argmax(g)] > 1.5 * d
    assert abs(first_peak(r, g) - d) <= r[1] - r[0]
    assert np.isnan(first_peak(r, np.ones_like(r)))


def test_rdf_rejects_r_max_beyond_half_box():
    box = np.array([2.0, 3.0, 4.0])
    x = np.zeros((1, 4, 3))
    with pytest.raises(ValueError, match="half the shortest box edge"):
        radial_distribution(x, box, r_max=1.01)
    r, _ = radial_distribution(x + np.arange(4)[:, None] * 0.1, box, r_max=1.0, num_bins=10)
    assert r[-1] == pytest.approx(0.95)
