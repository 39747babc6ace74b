"""Base distribution: exact truncated-Gaussian sampling, exact (normalised) log-density."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import freeflow
from freeflow.flows.bases import (
    HarmonicLatticeBase,
    LatticeBase,
    effective_temperature_factor,
    gaussian_ball_log_probability,
    truncated_chi3_cdf,
)
from freeflow.physics.harmonic import GaussianCrystal
from freeflow.physics.space import minimum_image


def test_ball_probability_against_monte_carlo():
    rho = 1.5
    n = 400_000
    d = np.random.default_rng(0).standard_normal((n, 3))
    inside = np.mean(np.sum(d**2, axis=1) < rho**2)
    standard_error = math.sqrt(inside * (1 - inside) / n)
    expected = math.exp(gaussian_ball_log_probability(rho, 1.0))
    assert abs(inside - expected) < 5 * standard_error
    # A ball many standard deviations wide holds all the mass.
    assert gaussian_ball_log_probability(50.0, 1.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("rounds", [0, None])
def test_radii_follow_the_truncated_chi_distribution(rounds):
    # rounds=0 exercises the inverse-CDF fallback alone; None the rejection path.
    radius, scale = 1.0, 0.8
    sites = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    base = LatticeBase(sites, np.array([4.0, 4.0, 4.0]), scale, radius=radius,
                       num_rejection_rounds=rounds)
    n = 20_000
    d = base._sample_displacements(jax.random.PRNGKey(1), (n,))
    r = np.sort(np.linalg.norm(np.asarray(d), axis=-1))
    assert r.max() < radius
    cdf = np.asarray(truncated_chi3_cdf(jnp.asarray(r / scale), radius / scale))
    ks = np.max(np.abs(cdf - np.arange(1, n + 1) / n))
    # Kolmogorov-Smirnov at the 0.1% level: 1.95 / sqrt(n).
    assert ks < 1.95 / math.sqrt(n)
    # Isotropy: each axis's mean is zero within 5 standard errors.
    assert np.all(np.abs(np.mean(np.asarray(d), axis=0)) < 5 * radius / math.sqrt(3 * n))


def test_samples_are_permuted_lattices_with_matching_log_prob(systems):
    system = systems("mw_cubic_8")
    base = LatticeBase(system.lattice, system.box, 0.2)
    z, log_prob = base.sample_and_log_prob(jax.random.PRNGKey(2), 64)
    assert z.shape == (64, 7, 3)
    assert np.all((np.asarray(z) >= 0) & (np.asarray(z) < system.box))
    d = minimum_image(np.asarray(z)[:, :, None, :] - base.mobile_sites, system.box)
    inside = np.linalg.norm(d, axis=-1) < base.radius
    assert np.all(inside.sum(axis=-1) == 1) and np.all(inside.sum(axis=-2) == 1)
    # The labels really are shuffled (identity order for all 64 is ~(1/7!)^64 unlikely).
    assert not np.all(np.argmax(inside, axis=-1) == np.arange(7))
    # Rounding of positions near the box edge is the only float32 difference.
    np.testing.assert_allclose(base.log_prob(z), log_prob, rtol=0, atol=1e-3)


def test_log_prob_is_permutation_invariant_and_periodic(systems):
    system = systems("lj_32")
    base = LatticeBase(system.lattice, system.box, 0.05)
    z = base.sample(jax.random.PRNGKey(3), 4)
    perm = np.random.default_rng(0).permutation(31)
    shifted = np.asarray(z) + system.box * np.array([1, -2, 3])
    np.testing.assert_allclose(base.log_prob(z[:, perm]), base.log_prob(z), atol=1e-4)
    np.testing.assert_allclose(base.log_prob(shifted), base.log_prob(z), atol=1e-2)


def test_log_prob_is_minus_infinity_off_support(systems):
    system = systems("mw_cubic_8")
    base = LatticeBase(system.lattice, system.box, 0.2)
    z = np.asarray(base.mobile_sites, np.float32).copy()
    assert np.isfinite(base.log_prob(z))
    doubled = z.copy()
    doubled[1] = z[0] + 0.05 * base.radius  # two particles in the ball of site 0
    assert base.log_prob(doubled) == -np.inf
    outside = z.copy()
    outside[3] = z[3] + np.array([1.0, 0, 0]) * 1.01 * base.radius  # between the balls
    assert base.log_prob(outside) == -np.inf
    # The corner site was removed: a particle on it is off-support too.
    corner = z.copy()
    corner[0] = 0.0
    assert base.log_prob(corner) == -np.inf


def test_log_prob_integrates_to_one_on_a_tiny_case():
    # Two mobile particles, balls of radius 0.25 in a unit box, broad noise so the truncation
    # normaliser matters (P(|d| < R) ~ 0.2). Integral over box^2 = V^2 E_uniform[b(z)].
    sites = np.array([[0.0, 0, 0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])
    box = np.ones(3)
    base = LatticeBase(sites, box, 0.25)
    assert 0.1 < math.exp(base.log_ball_probability) < 0.5
    n = 1_000_000
    z = jax.random.uniform(jax.random.PRNGKey(4), (n, 2, 3))
    density = np.exp(np.asarray(base.log_prob(z), np.float64))
    estimate = density.mean()
    standard_error = density.std() / math.sqrt(n)
    assert standard_error < 0.1
    assert abs(estimate - 1.0) < 5 * standard_error


@pytest.mark.parametrize("name", ["lj_32", "mw_cubic_8", "mw_hex_64"])
def test_every_lattice_has_disjoint_balls_around_mobile_sites(systems, name):
    system = systems(name)
    base = LatticeBase(system.lattice, system.box, 0.01)
    assert base.num_mobile == system.num_particles - 1
    assert base.radius == pytest.approx(0.5 * system.nearest_neighbour_distance)
    z, log_prob = base.sample_and_log_prob(jax.random.PRNGKey(5), 3)
    assert np.all(np.isfinite(log_prob))
    assert np.all(np.isfinite(base.log_prob(z)))


# -- the harmonic crystal base ---------------------------------------------------------------

def _random_precision(size, seed, scale):
    """A random symmetric positive-definite precision, (length unit)^-2."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((size, size))
    return (m @ m.T / size + 0.5 * np.eye(size)) / scale**2


def _harmonic(system, precision):
    """The harmonic base of the lattice with this precision (the stiffness at beta = 1),
    without the crystal's box check, as ``harmonic_base`` builds it."""
    return HarmonicLatticeBase(GaussianCrystal(system.lattice, system.box, precision, 1.0,
                                               ln_box_tail_limit=None))


def test_harmonic_base_is_the_correlated_gaussian(systems):
    system = systems("mw_cubic_8")
    precision = _random_precision(21, seed=1, scale=0.15)
    base = _harmonic(system, precision)
    z, log_prob = base.sample_and_log_prob(jax.random.PRNGKey(6), 20_000)
    z = np.asarray(z, np.float64)
    # Back to site order: each particle's nearest site.
    offsets = minimum_image(z[:, :, None, :] - base.mobile_sites, system.box)
    nearest = np.argmin(np.sum(offsets**2, axis=-1), axis=-1)
    assert not np.all(nearest == np.arange(7))  # labels shuffled
    d = np.zeros_like(z)
    rows = np.arange(len(z))[:, None]
    d[rows, nearest] = offsets[rows, np.arange(7), nearest]
    d = d.reshape(len(z), 21)
    # The density is the Gaussian's at the site-ordered displacements, minus ln 7!.
    sign, logdet = np.linalg.slogdet(precision)
    expected = (-0.5 * np.einsum("ni,ij,nj->n", d, precision, d) + 0.5 * logdet
                - 10.5 * math.log(2 * math.pi) - math.lgamma(8))
    np.testing.assert_allclose(log_prob, expected, atol=2e-3)
    np.testing.assert_allclose(base.log_prob(z.astype(np.float32)), expected, atol=2e-3)
    # Sample covariance against the inverse precision: each entry within 5 standard errors.
    covariance = np.linalg.inv(precision)
    sample = np.cov(d, rowvar=False)
    stderr = np.sqrt((covariance**2 + np.outer(np.diag(covariance), np.diag(covariance)))
                     / len(d))
    assert np.all(np.abs(sample - covariance) < 5 * stderr)


def test_harmonic_base_log_prob_symmetries_and_support(systems):
    system = systems("lj_32")
    base = _harmonic(system, _random_precision(93, seed=2, scale=0.05))
    z = base.sample(jax.random.PRNGKey(7), 4)
    perm = np.random.default_rng(0).permutation(31)
    shifted = np.asarray(z) + system.box * np.array([1, -2, 3])
    np.testing.assert_allclose(base.log_prob(z[:, perm]), base.log_prob(z), atol=1e-4)
    np.testing.assert_allclose(base.log_prob(shifted), base.log_prob(z), atol=1e-2)
    doubled = np.asarray(base.mobile_sites, np.float32).copy()
    doubled[1] = doubled[0] + 0.1 * base.radius  # particles 0 and 1 both nearest site 0
    assert base.log_prob(doubled) == -np.inf


def test_harmonic_base_refuses_an_unstable_or_soft_lattice(systems):
    system = systems("mw_cubic_8")
    unstable = _random_precision(21, seed=3, scale=0.15)
    unstable[0, 0] = -unstable[0, 0]
    with pytest.raises(ValueError, match="not positive definite"):
        _harmonic(system, unstable)
    with pytest.raises(ValueError, match="swap sites"):
        _harmonic(system, np.eye(21) / 1.0**2)
    with pytest.raises(ValueError, match=r"shape \[21, 21\]"):
        _harmonic(system, np.eye(20))


def test_harmonic_temperature_factor_of_a_harmonic_crystal_is_one():
    """For a quadratic energy the virial is c |eps|^2 exactly, so the factor is
    3 (N - 1) / mean |eps|^2 over the fixed draws: 1 within sqrt(2 / (3 (N - 1) n))."""
    atoms = freeflow.load_system("lj_32").atoms
    system = freeflow.System(name="springs", atoms=atoms,
                             potential=freeflow.EinsteinCrystal(spring_constant=400.0),
                             temperature=2.0)
    draws = np.random.default_rng(0).standard_normal((1024, 93))
    expected = 93 / np.mean(np.sum(draws**2, axis=1))
    factor = effective_temperature_factor(system, num_samples=1024, seed=0)
    # brentq's xtol 1e-3 in ln c, plus float32 virials.
    assert factor == pytest.approx(expected, rel=2e-3)
    assert abs(factor - 1.0) < 4 * np.sqrt(2 / (93 * 1024))


def test_effective_harmonic_base_minimises_kl_along_the_temperature_scale(systems):
    """On lj_32 (stiffer than its Hessian at T* = 2) the factor is below 1, and the mean work
    <beta U + ln b>, which is KL + const, is lower there than at the factor times or over 1.2
    (same draws, so the differences are not sampling noise)."""
    import jax
    import jax.numpy as jnp

    system = systems("lj_32")
    factor = effective_temperature_factor(system)
    assert 0.5 < factor < 0.9
    precision = system.beta * system.lattice_hessian()[3:, 3:]
    energy = jax.jit(system.energy_fn())

    def mean_work(c):
        base = _harmonic(system, precision / c)
        mobile, log_b = base.sample_and_log_prob(jax.random.PRNGKey(0), 4096)
        positions = jnp.concatenate([jnp.zeros((4096, 1, 3)), mobile], axis=1)
        return float(np.mean(system.beta * np.asarray(energy(positions), np.float64)
                             + np.asarray(log_b, np.float64)))

    best = mean_work(factor)
    # KL rises ~ (3 (N - 1) / 4) (ln 1.2)^2 ~ 0.8 nats either side; sampling noise of the
    # differences under common draws is a few hundredths.
    assert mean_work(factor * 1.2) > best + 0.2
    assert mean_work(factor / 1.2) > best + 0.2
