"""Reference sampler: exact means of analytic targets, conventions, sample I/O."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

from freeflow.physics.potentials import EinsteinCrystal
from freeflow.sampling.hmc import (Boltzmann, HMCConfig, integrated_autocorrelation_time,
                                   sample, sample_system)

# Means are compared within this many standard errors, the errors carrying the measured
# integrated autocorrelation time (a correct sampler fails a test ~1 time in 10^4).
Z_TOL = 4.0


def test_einstein_crystal_mean_energy(systems):
    # Particle 0 fixed, 3(N-1) harmonic coordinates: <U> = (3/2)(N-1) k_B T exactly
    # (the minimum-image cut-off at L/2 is ~30 widths away here).
    system = systems("lj_32")
    k = 400.0
    ec = EinsteinCrystal(k).energy_fn(system.box, system.lattice)
    res = sample_system(system, jax.random.key(1),
                        HMCConfig(num_chains=32, num_samples=150, num_warmup=150, thin=2),
                        energy_fn=ec)
    exact = 1.5 * (system.num_particles - 1) / system.beta
    mean, err = res.mean_and_stderr()
    assert abs(mean - exact) < Z_TOL * err, (mean, exact, err)
    # The test can fail: a 3 % bias would be far outside the error bar.
    assert 0.03 * exact > Z_TOL * err
    assert 0.4 < res.acceptance < 0.95
    assert res.tau >= 1.0
    # Conventions: particle 0 never moves, everything is wrapped, shapes are chain-major.
    assert res.positions.shape == (32 * 150, system.num_particles, 3)
    np.testing.assert_array_equal(res.positions[:, 0], np.broadcast_to(
        np.float32(system.lattice[0]), res.positions[:, 0].shape))
    assert np.all(res.positions >= 0) and np.all(res.positions < system.box)
    np.testing.assert_allclose(np.asarray(ec(jnp.asarray(res.positions[:64]))),
                               res.energies[:64], rtol=1e-4, atol=1e-3)
    assert res.energy_evaluations == 32 * (1 + (150 + 150 * 2) * 8)


def double_well(x):
    # Two wells at x = +-1, barrier 2 k_B T, tilted so the exact mean is not symmetric.
    x = x[0, 0]
    return 2.0 * (x**2 - 1.0) ** 2 + 0.5 * x


def test_double_well_mean_energy():
    def boltzmann(x, power):
        u = double_well(np.array([[x]]))
        return u**power * np.exp(-u)

    z = integrate.quad(boltzmann, -4, 4, args=(0,))[0]
    exact = integrate.quad(boltzmann, -4, 4, args=(1,))[0] / z
    res = sample(Boltzmann(double_well, 1.0), np.zeros((1, 1)), jax.random.key(2),
                 HMCConfig(num_chains=64, num_samples=300, num_warmup=200, thin=1,
                           num_integration_steps=4))
    mean, err = res.mean_and_stderr()
    assert abs(mean - exact) < Z_TOL * err, (mean, exact, err)
    # Able to fail: the error bar is a small fraction of k_B T / 2 (the scale of <U>).
    assert Z_TOL * err < 0.1
    x = res.positions[:, 0, 0]
    # Both wells are visited in proportion to their weights.
    p_right = integrate.quad(lambda x: np.exp(-double_well(np.array([[x]]))), 0, 4)[0] / z
    assert abs(np.mean(x > 0) - p_right) < 0.06


def test_autocorrelation_time_of_ar1():
    rng = np.random.default_rng(0)
    phi, n = 0.8, 20000
    x = np.zeros((8, n))
    noise = rng.standard_normal((8, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    exact = (1 + phi) / (1 - phi)  # 9
    assert abs(integrated_autocorrelation_time(x) - exact) < 0.1 * exact
    assert integrated_autocorrelation_time(rng.standard_normal((4, 1000))) < 1.3
