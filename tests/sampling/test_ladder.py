"""The ladder of states for MBAR (sampling.ladder): an analytic path between two Einstein
crystals, extending saved states, the schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from freeflow.physics.potentials.einstein import einstein_ln_z_fixed
from freeflow.rundir import MbarWorkdir
from freeflow.sampling.hmc import HMCConfig
from freeflow.sampling.ladder import (LinearPath, lambda_schedule, path_free_energy,
                                      samples_per_chain)
from freeflow.workflows.baseline import unit_einstein_energy_fn


def test_lambda_schedule():
    lam = lambda_schedule(5, 2.0)
    np.testing.assert_allclose(lam, [0, 1 / 16, 1 / 4, 9 / 16, 1])


def _einstein_to_einstein(system, key, samples_per_state, workdir=None):
    """MBAR from springs k1 = 100 to k2 = 300 (minimum-image Einstein crystals on the system's
    lattice, particle 0 fixed); returns ``(path_free_energy output, exact Delta f)`` with
    Delta f = -ln(Z2/Z1) = (3(N-1)/2) ln(k2/k1) up to the periodic cut."""
    from freeflow.physics.potentials import EinsteinCrystal

    beta, n = system.beta, system.num_particles
    k1, k2 = 100.0, 300.0
    fixed = np.zeros(n, bool)
    fixed[0] = True
    target = EinsteinCrystal(k2).energy_fn(system.box, system.lattice)
    path = LinearPath(unit_einstein_energy_fn(system), target, beta, lambda_schedule(4, 1.0),
                      box=system.box, reference_scale=k1, fixed=fixed)
    config = HMCConfig(num_chains=32, num_samples=samples_per_chain(samples_per_state, 32),
                       num_warmup=100, thin=2)
    store = MbarWorkdir(workdir) if workdir is not None else None
    out = path_free_energy(path, system.lattice, key, config, store=store)
    exact = (einstein_ln_z_fixed(beta, k1, system.box, n - 1)
             - einstein_ln_z_fixed(beta, k2, system.box, n - 1))
    return out, exact


def test_mbar_between_einstein_crystals(systems):
    out, exact = _einstein_to_einstein(systems("lj_32"), jax.random.key(7), 1024)
    assert abs(out.delta_f - exact) < 3 * out.stderr, (out.delta_f, exact, out)
    assert out.stderr < 0.05 * exact  # able to fail
    assert out.details["min_neighbour_overlap"] > 0.01
    # pymbar must have left JAX in its default 32-bit mode.
    assert jnp.zeros(1).dtype == jnp.float32
    assert jax.random.normal(jax.random.key(0), (2,)).dtype == jnp.float32


def test_mbar_extends_saved_states(systems, tmp_path):
    # Raising samples_per_state continues the saved chains instead of starting again: the
    # saved samples stay as they were, each chain grows, and the estimate stays right.
    system = systems("lj_32")

    def run(samples):
        return _einstein_to_einstein(system, jax.random.key(3), samples, workdir=tmp_path)

    short, exact = run(256)
    before = [np.load(tmp_path / f"state_{k:03d}.npz")["components"] for k in range(4)]
    long, _ = run(1024)
    for k in range(4):
        after = np.load(tmp_path / f"state_{k:03d}.npz")["components"]
        assert before[k].shape == (32, 8, 2) and after.shape == (32, 32, 2)
        np.testing.assert_array_equal(after[:, :8], before[k])
        assert not np.allclose(after[:, 8:16], after[:, :8])  # new samples, not a copy
    # Each state: 24 more samples per chain, thin 2, 8 leapfrog steps, no warm-up; target and
    # reference both count (factor 2), plus one observable evaluation per sample.
    extra = 4 * 2 * (32 * (1 + 24 * 2 * 8) + 32 * 24)
    assert long.energy_evaluations - short.energy_evaluations == extra
    assert long.num_samples > 2 * short.num_samples
    assert abs(long.delta_f - exact) < 3 * long.stderr, (long.delta_f, exact)
    assert long.stderr < short.stderr
    # Asking for fewer samples than saved uses the first ones and samples nothing.
    again, _ = run(256)
    assert again.delta_f == short.delta_f
    assert again.energy_evaluations == long.energy_evaluations


def test_lambdas_must_run_from_zero_to_one():
    for bad in ([0.0, 0.5], [0.1, 1.0], [0.0, 0.6, 0.4, 1.0], [0.0]):
        with pytest.raises(ValueError, match="lambdas must increase from 0 to 1"):
            LinearPath(abs, abs, 1.0, bad)
