"""Estimates of a flow (workflows.estimate): LFEP and LBAR from a model, the counting recorded."""

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import freeflow
from freeflow.physics.potentials import EinsteinCrystal
from freeflow.physics.units import reduced_units
from freeflow.workflows.estimate import lbar_from_model


def test_lbar_from_model_plumbing():
    # Target: Einstein crystal with particle 0 fixed; its ln Z_fixed is analytic.
    n, beta, k = 4, 2.0, 50.0
    box = np.full(3, 4.0)
    sites = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2]], float)
    ec = EinsteinCrystal(k).energy_fn(box, sites)
    system = SimpleNamespace(energy_fn=lambda: ec, beta=beta, num_particles=n, name="ec4",
                             units=reduced_units(), lattice=sites, box=box)
    model = GaussianModel(sites, box, width=1.2 / math.sqrt(beta * k))
    target = GaussianModel(sites, box, width=1.0 / math.sqrt(beta * k))
    y, _ = target.sample_and_log_prob(None, jax.random.key(5), 3000)
    res = lbar_from_model(model, None, system, jax.random.key(6), 3000, y)
    ln_z = 1.5 * (n - 1) * math.log(2 * math.pi / (beta * k))
    err = res.details["ln_z_stderr"]
    assert abs(res.details["ln_z_model"] - ln_z) < 3 * err and err < 0.1
    # These 4 sites are 4 different sublattices (no translation maps them onto themselves);
    # the default counting leaves ln m out, the exact one adds it.
    assert res.details["lattice_multiplicity"] == 4 and res.details["multiplicity"] == 1
    assert math.isclose(res.details["ln_z"], res.details["ln_z_model"])
    exact = res.recounted("exact")
    assert math.isclose(exact.details["ln_z"], exact.details["ln_z_model"] + math.log(4))
    assert res.energy_evaluations == 6000


def test_estimate_of_a_run_records_its_counting(tiny_run):
    result = freeflow.estimate(tiny_run, config=freeflow.WorksConfig(64))
    assert result.details["counting"] == "bravais" and result.details["lattice_multiplicity"] == 2
    exact = freeflow.estimate(tiny_run, config=freeflow.WorksConfig(64), counting="exact")
    assert exact.value - result.value == pytest.approx(-math.log(2) / 8, abs=1e-12)


class GaussianModel:
    """Stand-in flow: mobile particles ~ N(site, s^2) per coordinate, particle 0 on site 0."""

    def __init__(self, sites, box, width):
        self.sites, self.box, self.width = jnp.asarray(sites), jnp.asarray(box), width

    def log_prob(self, params, y):
        d = y[:, 1:] - self.sites[1:]
        d = d - self.box * jnp.round(d / self.box)
        dim = d.shape[1] * 3
        return (-0.5 * jnp.sum(d**2, (1, 2)) / self.width**2
                - 0.5 * dim * jnp.log(2 * jnp.pi * self.width**2))

    def sample_and_log_prob(self, params, key, n):
        noise = self.width * jax.random.normal(key, (n,) + self.sites.shape)
        x = jnp.mod(self.sites + noise.at[:, 0].set(0.0), self.box)
        return x, self.log_prob(params, x)


def test_estimates_from_a_base_agree_with_smc_from_it():
    """LFEP and LBAR from mw_cubic_8's harmonic crystal (no training; ESS about 50%) and SMC
    from the same base reach the same free energy by different routes: the flow's density on
    box^N, and the labelled frame with particle 0 on its site."""
    from freeflow.workflows.smc import SMCConfig, smc_free_energy

    system = freeflow.load_system("mw_cubic_8")
    by_smc = smc_free_energy(system=system, base="harmonic",
                             config=SMCConfig(particles=64, repeats=4))
    start, works = freeflow.FromBase(system, "harmonic"), freeflow.WorksConfig(4000)
    by_lfep = freeflow.estimate(start, "lfep", works)
    assert by_lfep.ess > 0.2
    # SMC's final particles are target samples: LBAR's reference set.
    by_lbar = freeflow.estimate(start, "lbar", works, target_samples=by_smc.samples)
    assert by_lbar.energy_evaluations == 4000 + len(by_smc.samples)
    for result in (by_lfep, by_lbar):
        assert result.details["counting"] == "bravais"
        assert result.stderr < 5e-3
        z = (result.value - by_smc.value) / math.hypot(result.stderr, by_smc.stderr)
        assert abs(z) < 4, (result.method, result.value, by_smc.value, z)


def test_estimate_from_a_base_refuses_bad_input():
    with pytest.raises(ValueError, match="unknown base 'gaussian'"):
        freeflow.estimate(freeflow.FromBase("mw_cubic_8", "gaussian"))
    with pytest.raises(ValueError, match="LBAR needs target samples"):
        freeflow.estimate(freeflow.FromBase("mw_cubic_8"), "lbar")
    with pytest.raises(ValueError, match="unknown method 'bar'; use one of lfep, lbar, smc, mbar"):
        freeflow.estimate(freeflow.FromBase("mw_cubic_8"), "bar")
    with pytest.raises(ValueError, match="smc takes a SMCConfig; got a WorksConfig"):
        freeflow.estimate(freeflow.FromBase("mw_cubic_8"), "smc", freeflow.WorksConfig())
    with pytest.raises(ValueError, match="not a run directory"):
        freeflow.estimate("mw_cubic_8", "lfep")
    with pytest.raises(ValueError, match="samples must be a whole number >= 2; got 1"):
        freeflow.WorksConfig(samples=1)
