"""The Gaussian crystal (freeflow.physics.harmonic.GaussianCrystal) is the one place where the
precision ``beta K / c`` is factorised: its ln Z_fixed, whitening, colouring, exact draws and
energy; and the flow's harmonic base, the MBAR references and SMC's whitening built on it give
bit for bit the numbers the earlier separate factorisations gave (issue 35, item 4)."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from freeflow.flows.bases import harmonic_base, mobile_sites, place_and_shuffle, site_offsets
from freeflow.physics.harmonic import GaussianCrystal, einstein_crystal, harmonic_crystal
from freeflow.physics.space import minimum_image
from freeflow.workflows.frame import Whitening


def _random_stiffness(size, seed, width, beta):
    """A random symmetric positive-definite ``K`` (energy / length^2) whose precision
    ``beta K`` has marginal widths of order ``width`` (length unit)."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((size, size))
    return (m @ m.T / size + 0.5 * np.eye(size)) / (beta * width**2)


@pytest.fixture(scope="module")
def crystal(systems):
    """mw_cubic_8 (P = 7, 21 coordinates) with a random stiffness, at 1.3 times its
    temperature."""
    system = systems("mw_cubic_8")
    stiffness = _random_stiffness(21, seed=4, width=0.12, beta=system.beta)
    return GaussianCrystal(system.lattice, system.box, stiffness, system.beta, 1.3)


def test_ln_z_fixed_is_the_log_determinant(crystal):
    """ln Z_fixed = (3P / 2) ln 2 pi - (1/2) ln det(beta K / c), by numpy's slogdet."""
    precision = crystal.beta * crystal.stiffness / crystal.temperature_factor
    sign, logdet = np.linalg.slogdet(precision)
    assert sign == 1
    assert crystal.ln_z_fixed == pytest.approx(10.5 * math.log(2 * math.pi) - 0.5 * logdet,
                                               rel=1e-12, abs=1e-12)
    # Einstein crystal, K = k I: (3P / 2) ln(2 pi / (beta k)).
    einstein = GaussianCrystal(crystal.sites, crystal.box, 30.0, crystal.beta)
    assert einstein.ln_z_fixed == pytest.approx(
        10.5 * math.log(2 * math.pi / (crystal.beta * 30.0)), rel=1e-12)


def test_colour_and_whiten_are_inverse_factors_of_the_precision(crystal):
    whiten, colour = crystal.whiten, crystal.colour
    np.testing.assert_array_equal(whiten, np.tril(whiten))
    np.testing.assert_allclose(whiten @ whiten.T, crystal.precision,
                               rtol=0, atol=1e-12 * np.abs(crystal.precision).max())
    # Both products in float64; the factors' condition number is below 10 here.
    np.testing.assert_allclose(colour @ whiten, np.eye(21), rtol=0, atol=1e-13)
    np.testing.assert_allclose(whiten @ colour, np.eye(21), rtol=0, atol=1e-13)
    # The pure JAX maps are each other's inverse (float32: a few ulps of |d| ~ 0.1).
    d = np.random.default_rng(0).normal(scale=0.1, size=(5, 7, 3)).astype(np.float32)
    eps = crystal.whiten_displacements(d)
    assert eps.shape == (5, 21)
    np.testing.assert_allclose(crystal.colour_white_noise(eps), d, rtol=0, atol=1e-6)
    # |eps|^2 = d^T (beta K / c) d.
    flat = d.reshape(5, 21).astype(np.float64)
    np.testing.assert_allclose(np.sum(np.asarray(eps, np.float64)**2, axis=-1),
                               np.einsum("ni,ij,nj->n", flat, crystal.precision, flat),
                               rtol=1e-5)


def test_draws_have_the_inverse_precision_as_covariance(crystal):
    """Mean and covariance of n exact draws: each entry within 5 standard errors,
    var(S_ij) = (C_ij^2 + C_ii C_jj) / n for Gaussian draws."""
    n = 40_000
    d = crystal.sample_displacements(jax.random.PRNGKey(3), n).reshape(n, 21)
    covariance = np.linalg.inv(crystal.beta * crystal.stiffness / crystal.temperature_factor)
    mean_stderr = np.sqrt(np.diag(covariance) / n)
    assert np.all(np.abs(d.mean(axis=0)) < 5 * mean_stderr)
    stderr = np.sqrt((covariance**2 + np.outer(np.diag(covariance), np.diag(covariance))) / n)
    assert np.all(np.abs(np.cov(d, rowvar=False) - covariance) < 5 * stderr)
    # Configurations: particle 0 on its site, the others displaced by the same draws.
    x = crystal.sample(jax.random.PRNGKey(3), 8)
    assert x.shape == (8, 8, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], np.broadcast_to(crystal.sites[0], (8, 3)), atol=1e-6)
    offsets = minimum_image(x[:, 1:].astype(np.float64) - crystal.sites[1:], crystal.box)
    np.testing.assert_allclose(offsets, d[:8].reshape(8, 7, 3), rtol=0, atol=1e-5)


@pytest.mark.parametrize("isotropic", [False, True])
def test_energy_of_a_draw_is_the_quadratic_form(crystal, isotropic):
    """U_ref(x) = (1/2) d^T K d with d the minimum-image displacements (float32 energy)."""
    if isotropic:
        crystal = GaussianCrystal(crystal.sites, crystal.box, 30.0, crystal.beta)
    x = crystal.sample(jax.random.PRNGKey(5), 16)
    d = minimum_image(x[:, 1:].astype(np.float64) - crystal.sites[1:], crystal.box)
    d = d.reshape(16, 21)
    stiffness = crystal.stiffness * np.eye(21) if isotropic else crystal.stiffness
    expected = 0.5 * np.einsum("ni,ij,nj->n", d, stiffness, d)
    energy = jax.vmap(crystal.energy_fn)(jnp.asarray(x))
    # float32 sites and arithmetic: a few 1e-6 relative on energies of order 3P kT / 2.
    np.testing.assert_allclose(energy, expected, rtol=1e-4)


def test_refusals_name_their_fix(systems):
    system = systems("mw_cubic_8")
    hessian = np.zeros((24, 24))
    hessian[3:, 3:] = _random_stiffness(21, seed=3, width=0.12, beta=system.beta)
    hessian[3, 3] = -hessian[3, 3]
    unstable = types.SimpleNamespace(lattice=system.lattice, box=system.box, beta=system.beta,
                                     lattice_hessian=lambda: hessian)
    with pytest.raises(ValueError, match=r"not positive definite.*--base einstein"):
        harmonic_base(unstable)
    with pytest.raises(ValueError, match=r"not positive definite.*Einstein reference"):
        harmonic_crystal(unstable)
    with pytest.raises(ValueError, match="must be symmetric"):
        GaussianCrystal(system.lattice, system.box, np.triu(hessian[3:, 3:]) + np.eye(21),
                        system.beta)
    # Vibrations of one length unit in a box of a few: the periodic images are not negligible.
    with pytest.raises(ValueError, match="not small against the box"):
        GaussianCrystal(system.lattice, system.box, 1.0, 1.0)
    wide = GaussianCrystal(system.lattice, system.box, 1.0, 1.0, ln_box_tail_limit=None)
    assert wide.widest_width == pytest.approx(1.0)


# -- bit for bit the numbers of the earlier separate factorisations ---------------------------

def _old_harmonic_base(system, temperature_factor):
    """The harmonic base's numbers as ``HarmonicLatticeBase`` computed them before it held a
    ``GaussianCrystal``: numpy float64 Cholesky of ``beta H_mm / c``, in that order."""
    precision = system.beta * system.lattice_hessian()[3:, 3:] / temperature_factor
    cholesky = np.linalg.cholesky(precision)
    size, num_mobile = len(precision), len(precision) // 3
    log_normalizer = float(np.sum(np.log(np.diag(cholesky)))
                           - 0.5 * size * math.log(2.0 * math.pi)
                           - math.lgamma(num_mobile + 1))
    return precision, cholesky, np.linalg.inv(cholesky), log_normalizer


@pytest.mark.parametrize("temperature_factor", [1.0, 0.8371])
def test_harmonic_base_is_bit_for_bit_the_earlier_one(systems, temperature_factor):
    system = systems("mw_cubic_8")
    precision, cholesky, colour, log_normalizer = _old_harmonic_base(system,
                                                                     temperature_factor)
    base = harmonic_base(system, temperature_factor)
    np.testing.assert_array_equal(base.precision, precision)
    np.testing.assert_array_equal(base.crystal.whiten, cholesky)
    np.testing.assert_array_equal(base.colour, colour)
    assert base.log_normalizer == log_normalizer
    # The sign convention: ln b = -|eps|^2 / 2 - ln Z_fixed - ln P!.
    assert base.log_normalizer == -base.crystal.ln_z_fixed - math.lgamma(8)
    box, sites = mobile_sites(system.lattice, system.box)

    def old_sample_and_log_prob(key, n):
        k_noise, k_perm = jax.random.split(key)
        white = jax.random.normal(k_noise, (n, 21))
        displacement = (white @ jnp.asarray(colour, white.dtype)).reshape(n, 7, 3)
        positions = place_and_shuffle(k_perm, sites, box, displacement)
        return positions, -0.5 * jnp.sum(white**2, axis=-1) + log_normalizer

    def old_log_prob(z):
        offsets = site_offsets(z, sites, box)
        nearest = jnp.argmin(jnp.sum(offsets**2, axis=-1), axis=-1)
        displacement = jnp.take_along_axis(offsets, nearest[..., None, None], axis=-2)[..., 0, :]
        one_each = jnp.all(jax.nn.one_hot(nearest, 7).sum(-2) == 1, axis=-1)
        in_site_order = jnp.take_along_axis(displacement, jnp.argsort(nearest, axis=-1)[
            ..., None], axis=-2)
        white = (in_site_order.reshape(*offsets.shape[:-3], -1)
                 @ jnp.asarray(cholesky, offsets.dtype))
        return jnp.where(one_each, -0.5 * jnp.sum(white**2, axis=-1) + log_normalizer,
                         -jnp.inf)

    key = jax.random.PRNGKey(11)
    z, log_b = base.sample_and_log_prob(key, 64)
    z_old, log_b_old = jax.jit(old_sample_and_log_prob, static_argnums=1)(key, 64)
    np.testing.assert_array_equal(z, z_old)
    np.testing.assert_array_equal(log_b, log_b_old)
    np.testing.assert_array_equal(base.log_prob(z), jax.jit(old_log_prob)(z))
    # SMC's whitening reads the same matrices.
    whitening = Whitening.of(system, base)
    np.testing.assert_array_equal(whitening.colour, colour)
    np.testing.assert_array_equal(whitening.whiten, cholesky)


def test_mbar_references_are_bit_for_bit_the_earlier_ones(systems):
    """``harmonic_crystal`` and ``einstein_crystal``: the same Cholesky, ln Z_fixed and draws
    as ``GaussianCrystal`` computed before it took a temperature factor."""
    system = systems("mw_cubic_8")
    size = 21
    for crystal, cholesky in [
            (harmonic_crystal(system),
             np.linalg.cholesky(system.beta * system.lattice_hessian()[3:, 3:])),
            (einstein_crystal(system, 25.0),
             np.sqrt(system.beta * np.asarray(25.0)) * np.eye(size))]:
        colour = np.linalg.inv(cholesky)
        np.testing.assert_array_equal(crystal.whiten, cholesky)
        np.testing.assert_array_equal(crystal.colour, colour)
        assert crystal.ln_z_fixed == float(0.5 * size * math.log(2 * math.pi)
                                           - np.sum(np.log(np.diag(cholesky))))
        key = jax.random.PRNGKey(2)
        white = jax.random.normal(key, (10, size), jnp.float64
                                  if jax.config.read("jax_enable_x64") else jnp.float32)
        x = np.broadcast_to(crystal.sites, (10,) + crystal.sites.shape).copy()
        x[:, 1:] += (np.asarray(white, np.float64) @ colour).reshape(10, -1, 3)
        np.testing.assert_array_equal(crystal.sample(key, 10),
                                      np.mod(x, crystal.box).astype(np.float32))
