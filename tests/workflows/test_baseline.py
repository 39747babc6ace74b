"""The MBAR baseline (workflows.baseline): reference conventions, resumability, the harmonic
and Einstein references. Sharding the chains over devices is checked exactly, transition by
transition, in tests/sampling/test_sharding.py."""

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from freeflow.estimators.conventions import beta_f_from_ln_z_fixed
from freeflow.physics.potentials.einstein import (
    com_fixed_einstein_beta_f,
    einstein_ln_z_fixed,
)
from freeflow.workflows.baseline import PathConfig, mbar_free_energy

MW_SIGMA = 2.3925
MW_BETA = 1.0 / (0.0019872067 * 200.0)
MW_DENSITY = 0.033567184


@pytest.mark.parametrize("n, expected", [(64, 4.50564), (216, 4.62588), (512, 4.65956)])
def test_com_fixed_formula_mw(n, expected):
    value = com_fixed_einstein_beta_f(n, MW_BETA, 0.2, n / MW_DENSITY, MW_SIGMA)
    assert round(value, 5) == expected


@pytest.mark.parametrize("n, expected", [(108, 6.10995), (180, 6.15386), (256, 6.17452),
                                         (500, 6.19977)])
def test_com_fixed_formula_lj(n, expected):
    value = com_fixed_einstein_beta_f(n, 0.5, 0.05, n / 1.28, 1.0)
    assert round(value, 5) == expected


@pytest.mark.parametrize("n", [64, 216, 512])
def test_fixed_particle_reference_relates_to_com_formula(n):
    # Same width s: freeflow's spring energy (k/2) d^2 with k = 1/(beta s^2). The documented
    # identity beta F_COM / N = beta F_fixed / N - (3 / (2N)) ln N.
    s, volume = 0.2, n / MW_DENSITY
    box = np.full(3, volume ** (1 / 3))
    k = 1.0 / (MW_BETA * s**2)
    fixed = beta_f_from_ln_z_fixed(einstein_ln_z_fixed(MW_BETA, k, box, n - 1), n, volume,
                                   MW_SIGMA, multiplicity=1)
    com = com_fixed_einstein_beta_f(n, MW_BETA, s, volume, MW_SIGMA)
    assert fixed - com == pytest.approx(1.5 * math.log(n) / n, abs=1e-10)


def test_einstein_ln_z_includes_periodic_cut():
    # Wide springs in a small box: the erf factor matters; compare with quadrature.
    beta, k, box = 1.0, 0.5, np.array([2.0, 3.0, 4.0])
    per_axis = [integrate.quad(lambda d: math.exp(-0.5 * beta * k * d * d), -b / 2, b / 2)[0]
                for b in box]
    exact = 2 * sum(math.log(p) for p in per_axis)
    assert einstein_ln_z_fixed(beta, k, box, 2) == pytest.approx(exact, rel=1e-10)


def test_mbar_free_energy_resumes(systems, tmp_path):
    system = systems("mw_cubic_8")
    config = PathConfig(num_states=3, samples_per_state=64, num_chains=16, num_warmup=60)
    kwargs = dict(workdir=tmp_path)
    first = mbar_free_energy(system, config, **kwargs)
    files = sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["target_shift"] == system.lattice_energy()  # reused on resume
    assert files == ["config.json", "state_000.npz", "state_001.npz", "state_002.npz"]
    d = first.to_dict()
    for key in ("system", "method", "beta_f_per_particle", "stderr", "num_states",
                "energy_evaluations", "num_samples", "wall_time"):
        assert key in d
    assert d["method"] == "mbar" and d["num_states"] == 3 and d["system"] == "mw_cubic_8"
    json.dumps(d)
    assert np.isfinite(first.value) and 0 < first.stderr < 1
    # A plausible value: the lattice energy dominates (beta u_lattice = -31.1 per particle).
    assert -28 < first.value < -24
    assert d["lattice_multiplicity"] == 2  # diamond: two sites per primitive cell
    # The default (literature's) counting leaves ln m out of ln Z.
    assert d["counting"] == "bravais" and d["multiplicity"] == 1
    ln_z = d["ln_z_fixed"] + math.lgamma(8) + math.log(system.volume)
    assert first.value == pytest.approx(-(ln_z - math.lgamma(9)) / 8 + 3 * math.log(MW_SIGMA))
    # Re-run: everything is read back, nothing is sampled, the estimate is identical.
    again = mbar_free_energy(system, config, **kwargs)
    assert again.value == first.value and again.energy_evaluations == first.energy_evaluations
    assert again.wall_time < first.wall_time
    # The sampling time of the read-back states is still reported.
    assert again.to_dict()["sampling_wall_time"] == d["sampling_wall_time"] > 0
    with pytest.raises(ValueError, match="other settings"):
        mbar_free_energy(system, dataclasses.replace(config, num_chains=8), **kwargs)
    with pytest.raises(ValueError, match="other settings"):
        mbar_free_energy(system, config, seed=1, **kwargs)
    assert jnp.zeros(1).dtype == jnp.float32


def test_harmonic_and_einstein_references_agree_on_mw_cubic_8(systems):
    system = systems("mw_cubic_8")
    results = {reference: mbar_free_energy(system, PathConfig(
                   reference=reference, num_states=4, samples_per_state=1024, num_chains=16))
               for reference in ("harmonic", "einstein")}
    h, e = results["harmonic"], results["einstein"]
    scale = math.hypot(h.stderr, e.stderr)
    assert abs(h.value - e.value) < 3 * scale, (h.value, e.value, scale)
    assert scale < 0.02  # able to fail
    assert h.details["reference"] == "harmonic" and e.details["reference"] == "einstein"
    # The first state is drawn exactly: independent samples, no decorrelation.
    assert h.details["states"][0]["exact_draws"] and h.details["states"][0]["tau"] == 1.0


def test_path_config_refuses():
    with pytest.raises(ValueError, match="unknown MBAR reference 'debye'"):
        PathConfig(reference="debye")
    with pytest.raises(ValueError, match="width applies to the Einstein reference only"):
        PathConfig(width=0.1)
    with pytest.raises(ValueError, match="Einstein width must be a positive length; got -0.1"):
        PathConfig(reference="einstein", width=-0.1)
    with pytest.raises(ValueError, match="num_states must be a whole number >= 2; got 1"):
        PathConfig(num_states=1)
