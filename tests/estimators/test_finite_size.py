"""The thermodynamic-limit fit: its finite-size form against the exact harmonic crystal, its
error bars by coverage over synthetic repeats, and its refusals."""

import math

import numpy as np
import pytest

from freeflow.estimators.finite_size import (LOG_COEFFICIENT, fit_finite_size,
                                             limit_difference, thermodynamic_limit)
from freeflow.estimators.result import FreeEnergy
from harmonic_oracle import harmonic_beta_f


@pytest.mark.parametrize("cells", [2, 3])
def test_the_wave_vector_sum_is_freeflows_harmonic_crystal(cells):
    """The lattice-dynamics oracle (``tests/harmonic_oracle.py``) against the harmonic crystal
    freeflow builds from its own Hessian
    (lj_32 and lj_108, whose boxes are shorter than two cutoffs: several images interact)."""
    from freeflow.estimators.conventions import beta_f_from_ln_z_fixed
    from freeflow.physics.harmonic import harmonic_crystal
    from freeflow.physics.system_files import load_system

    system = load_system(f"lj_{4 * cells**3}")
    ln_z = -system.beta * system.lattice_energy() + harmonic_crystal(system).ln_z_fixed
    expected = beta_f_from_ln_z_fixed(ln_z, system.num_particles, system.volume, 1.0)
    assert harmonic_beta_f(cells) == pytest.approx(expected, abs=1e-10)


def test_the_log_coefficient_is_minus_one_half_for_the_harmonic_crystal():
    """Fitted freely to the exact harmonic values from N = 4000 to 256000, ``a`` is the
    derived -1/2; the next terms (O(N^-5/3)) are below 1e-7 there."""
    cells = [10, 12, 14, 17, 20, 24, 28, 34, 40]
    sizes = [4 * c**3 for c in cells]
    values = [harmonic_beta_f(c) for c in cells]
    # A nominal error far below the values' spacing: the fit is a plain least squares.
    fit = fit_finite_size(sizes, values, [1e-9] * len(sizes), fit_log_coefficient=True)
    assert fit.log_coefficient == pytest.approx(LOG_COEFFICIENT, abs=2e-3)
    held = fit_finite_size(sizes, values, [1e-9] * len(sizes))
    assert max(abs(r) for r in held.residuals) * 1e-9 < 1e-7
    assert held.value == pytest.approx(fit.value, abs=1e-7)


def _synthetic(rng, sizes, errors, limit=3.0, b=-5.4):
    n = np.asarray(sizes, float)
    exact = limit + LOG_COEFFICIENT * np.log(n) / n + b / n
    return exact + rng.normal(size=n.shape) * errors


@pytest.mark.parametrize("fit_log_coefficient, sizes", [
    (False, [64, 216, 512]), (False, [108, 256, 500, 864]), (True, [64, 216, 512, 1000, 1728])])
def test_error_bars_cover_the_true_limit(fit_log_coefficient, sizes):
    """Over 4000 synthetic repeats drawn from a known limit with Gaussian noise, the limit
    lies within two reported standard errors 95.4% of the time, and the p-value falls below
    0.05 5% of the time (each within 4 binomial standard deviations)."""
    rng = np.random.default_rng(7)
    errors = np.array([2e-4, 1.5e-4, 1.2e-4, 1e-4, 1e-4][:len(sizes)])
    repeats = 4000
    inside, rejected = 0, 0
    for _ in range(repeats):
        fit = fit_finite_size(sizes, _synthetic(rng, sizes, errors), errors,
                              fit_log_coefficient=fit_log_coefficient)
        inside += abs(fit.value - 3.0) < 2 * fit.stderr
        rejected += fit.p_value < 0.05
    p_inside = math.erf(2 / math.sqrt(2))
    assert abs(inside / repeats - p_inside) < 4 * math.sqrt(p_inside * (1 - p_inside) / repeats)
    assert abs(rejected / repeats - 0.05) < 4 * math.sqrt(0.05 * 0.95 / repeats)


def test_a_wrong_form_is_flagged():
    """Values with a ln(N)/N term twice the physical one, at errors of 1e-5, fail the
    chi-squared check (p < 0.01)."""
    sizes = np.array([64, 216, 512, 1000])
    values = 3.0 - 1.0 * np.log(sizes) / sizes - 5.4 / sizes
    fit = fit_finite_size(sizes, values, [1e-5] * 4)
    assert fit.poor_fit and fit.p_value < 0.01
    assert not fit_finite_size(sizes, values, [1e-5] * 4, fit_log_coefficient=True).poor_fit


def test_two_sizes_and_two_parameters_leave_no_degree_of_freedom():
    fit = fit_finite_size([64, 216], [3.0, 3.01], [1e-4, 1e-4])
    assert fit.dof == 0 and fit.p_value is None and not fit.poor_fit
    assert fit.at(64) == pytest.approx(3.0) and fit.at(216) == pytest.approx(3.01)
    record = fit.to_dict()
    assert record["beta_f_limit"] == fit.value and record["stderr"] == fit.stderr
    assert [s["num_particles"] for s in record["sizes"]] == [64, 216]


def _result(system, n, value, stderr, counting="bravais"):
    return FreeEnergy(value=value, stderr=stderr, method="smc", system=system, num_samples=1,
                      details={"num_particles": n, "counting": counting})


def test_thermodynamic_limit_of_results_and_a_difference():
    rng = np.random.default_rng(3)
    sizes, errors = [64, 216, 512], np.array([2e-4, 1.5e-4, 1e-4])
    a = thermodynamic_limit([_result(f"ic_{n}", n, v, e) for n, v, e in
                             zip(sizes, _synthetic(rng, sizes, errors, limit=-25.0), errors)])
    b = thermodynamic_limit([_result(f"ih_{n}", n, v, e) for n, v, e in
                             zip(sizes, _synthetic(rng, sizes, errors, limit=-25.003), errors)],
                            system="ih")
    assert a.counting == "bravais" and a.system == "ic_64, ic_216, ic_512" and b.system == "ih"
    value, stderr = limit_difference(a, b)
    assert value == pytest.approx(b.value - a.value)
    assert stderr == pytest.approx(math.hypot(a.stderr, b.stderr))
    assert abs(value + 0.003) < 4 * stderr


@pytest.mark.parametrize("sizes, values, errors, message", [
    ([64, 64, 216], [1, 1, 1], [1e-4] * 3, "each size once"),
    ([64], [1], [1e-4], "at least 2 sizes"),
    ([64, 216], [1, float("nan")], [1e-4] * 2, "finite"),
    ([64, 216], [1, 1], [1e-4, 0.0], "positive"),
    ([64, 216.5], [1, 1], [1e-4] * 2, "whole numbers"),
    ([64, float("inf")], [1, 1], [1e-4] * 2, "whole numbers"),
])
def test_bad_input_is_refused(sizes, values, errors, message):
    with pytest.raises(ValueError, match=message):
        fit_finite_size(sizes, values, errors)


def test_results_in_two_countings_are_refused():
    with pytest.raises(ValueError, match="different countings"):
        thermodynamic_limit([_result("a", 64, 1.0, 1e-4),
                             _result("b", 216, 1.0, 1e-4, counting="exact")])
