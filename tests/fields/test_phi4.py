"""The lattice phi^4 field (freeflow.fields.phi4): the free field against brute-force linear
algebra, and freeflow's generic SMC, BAR and MBAR on a target that is not a crystal.

Statistical checks compare an estimate with the exact value (or two estimates with each
other) within 3 of their own standard errors, at fixed seeds."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from freeflow.fields.phi4 import (Phi4, action, action_terms, bar_log_z, free_frequencies,
                                  free_log_density, free_log_z, mbar_log_z, sample_free,
                                  smc_log_z)


def precision_matrix(size, mass_squared):
    """``K = m^2 - Laplacian`` of the periodic ``size x size`` lattice as a dense matrix,
    built site by site (no Fourier transform), sites in row-major order."""
    n = size * size
    k = mass_squared * np.eye(n)
    for i in range(size):
        for j in range(size):
            site = i * size + j
            for neighbour in (((i + 1) % size) * size + j, i * size + (j + 1) % size):
                # Each bond (phi_a - phi_b)^2 / 2 adds [[1, -1], [-1, 1]] to K.
                k[site, site] += 1.0
                k[neighbour, neighbour] += 1.0
                k[site, neighbour] -= 1.0
                k[neighbour, site] -= 1.0
    return k


@pytest.mark.parametrize("kwargs, name", [
    (dict(size=1, mass_squared=1.0, coupling=0.1), "size"),
    (dict(size=2.5, mass_squared=1.0, coupling=0.1), "size"),
    (dict(size=4, mass_squared=0.0, coupling=0.1), "mass_squared"),
    (dict(size=4, mass_squared=float("nan"), coupling=0.1), "mass_squared"),
    (dict(size=4, mass_squared=1.0, coupling=-0.1), "coupling"),
    (dict(size=4, mass_squared=1.0, coupling=float("inf")), "coupling"),
])
def test_parameters_are_validated(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        Phi4(**kwargs)


def test_action_is_the_quadratic_form_plus_the_quartic_term_and_vmaps():
    size, m2, lam = 3, 0.7, 0.3
    k = precision_matrix(size, m2)
    phi = np.random.default_rng(0).standard_normal((5, size, size)).astype(np.float32)
    flat = phi.reshape(5, -1).astype(np.float64)
    expected = 0.5 * np.einsum("ni,ij,nj->n", flat, k, flat) + lam * np.sum(flat ** 4, axis=1)
    batched = jax.vmap(action, in_axes=(0, None, None))(jnp.asarray(phi), m2, lam)
    np.testing.assert_allclose(batched, expected, rtol=1e-5)
    np.testing.assert_allclose(batched, [action(p, m2, lam) for p in phi], rtol=1e-6)
    assert action_terms(jnp.asarray(phi[0])).shape == (3,)


@pytest.mark.parametrize("size, m2", [(2, 0.3), (3, 1.0), (4, 0.5), (5, 2.0)])
def test_free_log_z_is_the_log_determinant_of_the_precision(size, m2):
    k = precision_matrix(size, m2)
    sign, log_det = np.linalg.slogdet(k)
    assert sign == 1.0
    brute = 0.5 * size * size * math.log(2.0 * math.pi) - 0.5 * log_det
    assert free_log_z(size, m2) == pytest.approx(brute, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(np.sort(free_frequencies(size, m2).ravel()),
                               np.linalg.eigvalsh(k), atol=1e-12)


def test_free_log_density_is_the_normalised_gaussian():
    size, m2 = 3, 0.8
    cov = np.linalg.inv(precision_matrix(size, m2))
    phi = np.random.default_rng(1).standard_normal((4, size, size)).astype(np.float32)
    exact = multivariate_normal(np.zeros(size * size), cov).logpdf(phi.reshape(4, -1))
    ours = [float(free_log_density(jnp.asarray(p), m2)) for p in phi]
    np.testing.assert_allclose(ours, exact, rtol=1e-5)


def test_free_draws_have_the_free_covariance():
    size, m2, n = 4, 0.5, 20000
    cov = np.linalg.inv(precision_matrix(size, m2))
    draws = sample_free(jax.random.key(0), size, m2, n)
    assert draws.shape == (n, size, size) and draws.dtype == jnp.float32
    phi = np.asarray(draws, np.float64).reshape(n, -1)
    estimate = phi.T @ phi / n  # the mean is zero exactly
    # A Gaussian's products phi_i phi_j have variance C_ii C_jj + C_ij^2. 136 distinct
    # entries: a 4.5-sigma bound on the largest is passed by chance with probability ~1e-3.
    stderr = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    assert np.max(np.abs(estimate - cov) / stderr) < 4.5
    # 2 S_0 of a free draw is chi-squared with L^2 degrees of freedom.
    s0 = np.asarray(jax.vmap(action, in_axes=(0, None, None))(
        jnp.asarray(phi.reshape(n, size, size), jnp.float32), m2, 0.0), np.float64)
    dof = size * size
    assert abs(np.mean(s0) - dof / 2) < 3.0 * math.sqrt(dof / 2 / n)


def test_smc_and_bar_recover_the_exact_free_log_z():
    """lambda = 0, annealed from a free field of another mass, so the path is not trivial."""
    model = Phi4(size=4, mass_squared=0.5, coupling=0.0)
    exact = model.free_log_z
    assert abs(exact - free_log_z(4, 1.0)) > 1.0  # the start's ln Z is far from the target's
    smc = smc_log_z(model, jax.random.key(10), base_mass_squared=1.0, num_runs=16,
                    num_particles=256)
    assert min(smc.details["temperatures"]) >= 2
    assert abs(smc.log_z - exact) < 3.0 * smc.stderr
    bar = bar_log_z(model, jax.random.key(11), base_mass_squared=1.0, num_samples=2000)
    assert abs(bar.log_z - exact) < 3.0 * bar.stderr


def test_smc_mbar_and_bar_agree_on_the_interacting_field():
    model = Phi4(size=4, mass_squared=0.5, coupling=0.5)
    smc = smc_log_z(model, jax.random.key(20), num_runs=16, num_particles=256)
    mbar = mbar_log_z(model, jax.random.key(21), num_states=5)
    bar = bar_log_z(model, jax.random.key(22), num_samples=2000)
    # Not vacuous: the quartic term moves ln Z by far more than the errors.
    assert model.free_log_z - smc.log_z > 50.0 * smc.stderr
    assert mbar.details["min_neighbour_overlap"] > 0.03
    for other in (mbar, bar):
        combined = math.hypot(smc.stderr, other.stderr)
        assert abs(smc.log_z - other.log_z) < 3.0 * combined, other.method
