"""Reference sampler: exact means of analytic targets, conventions, sample I/O."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

import dataclasses

import pytest

from freeflow.physics.harmonic import harmonic_crystal
from freeflow.physics.potentials import EinsteinCrystal
from freeflow.sampling.hmc import (QUARTER_PERIOD, Boltzmann, HMCConfig, Preconditioner,
                                   integrated_autocorrelation_time, sample, sample_system)
from freeflow.workflows.frame import harmonic_preconditioner

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


def test_harmonic_coordinates_sample_the_harmonic_crystal_exactly(systems):
    """In the coordinates where the harmonic crystal is standard normal, a quarter-period
    trajectory turns every mode by about pi / 2, so the energy decorrelates in about one
    accepted transition; unit mass in the positions with as many leapfrog steps (the step
    set by the stiffest mode) decorrelates it more slowly. The samples are the crystal's at
    its own temperature and, scaled, at twice it."""
    system = systems("lj_32")
    crystal = harmonic_crystal(system)
    energy = crystal.energy_fn
    coordinates = harmonic_preconditioner(system)
    config = HMCConfig(num_chains=32, num_samples=200, num_warmup=150, thin=1,
                       num_integration_steps=3, trajectory=QUARTER_PERIOD)
    exact = 1.5 * (system.num_particles - 1) / system.beta
    res = sample_system(system, jax.random.key(3), config, energy_fn=energy,
                        preconditioner=coordinates)
    mean, err = res.mean_and_stderr()
    assert abs(mean - exact) < Z_TOL * err, (mean, exact, err)
    assert 0.03 * exact > Z_TOL * err
    # About 1 / acceptance (a rejection repeats the energy): 3.0 measured at acceptance 0.71.
    assert res.tau < 4.0
    assert res.num_integration_steps == max(1, round(QUARTER_PERIOD / res.step_size))
    assert res.energy_evaluations == 32 * (1 + 150 * 3 + 200 * res.num_integration_steps)
    plain = sample_system(system, jax.random.key(3), dataclasses.replace(
        config, trajectory=None, num_integration_steps=res.num_integration_steps),
        energy_fn=energy)
    assert plain.tau > res.tau, (plain.tau, res.tau)  # 4.6 against 3.0 measured
    # Conventions as with unit mass: particle 0 on its site, positions wrapped, energies
    # those of the positions, and the chains' last states where they stopped.
    np.testing.assert_array_equal(res.positions[:, 0], np.broadcast_to(
        np.float32(np.mod(system.lattice[0], system.box)), res.positions[:, 0].shape))
    assert np.all(res.positions >= 0) and np.all(res.positions < system.box)
    np.testing.assert_allclose(np.asarray(jax.vmap(energy)(jnp.asarray(res.positions[:64]))),
                               res.energies[:64], rtol=1e-4, atol=1e-4 * exact)
    last = res.by_chain(res.energies)[:, -1]
    np.testing.assert_allclose(np.asarray(jax.vmap(energy)(jnp.asarray(res.final_positions))),
                               last, rtol=1e-4, atol=1e-4 * exact)
    hot = dataclasses.replace(system, temperature=2.0 * system.temperature)
    res = sample_system(hot, jax.random.key(4), config, energy_fn=energy,
                        preconditioner=coordinates.scaled(np.sqrt(2.0)))
    mean, err = res.mean_and_stderr()
    assert abs(mean - 2.0 * exact) < Z_TOL * err, (mean, 2.0 * exact, err)
    assert res.tau < 4.0


def test_harmonic_coordinates_refuse_what_does_not_fit(systems):
    system = systems("lj_32")
    coordinates = harmonic_preconditioner(system)
    with pytest.raises(ValueError, match="trajectory is a length in a preconditioner"):
        sample_system(system, jax.random.key(0), HMCConfig(trajectory=QUARTER_PERIOD))
    with pytest.raises(ValueError, match="reference must be"):
        sample_system(system, jax.random.key(0), HMCConfig(), preconditioner=Preconditioner(
            coordinates.reference[1:], coordinates.colour, coordinates.whiten))
    with pytest.raises(ValueError, match="trajectory must be a positive"):
        HMCConfig(trajectory=-1.0)


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
