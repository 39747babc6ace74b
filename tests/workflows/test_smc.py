"""Annealed SMC: the sampler on arrays (freeflow.sampling.smc), the combination of runs
(freeflow.estimators.smc) and the crystal workflow (freeflow.workflows.smc), against analytic
free energies."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import freeflow
from freeflow.cli import main
from freeflow.estimators.smc import combine_log_z
from freeflow.flows.bases import harmonic_base
from freeflow.physics.potentials.einstein import einstein_ln_z_fixed
from freeflow.sampling.smc import AnnealConfig, anneal
from freeflow.workflows.smc import SMCConfig, smc_free_energy


def _springs():
    """mw_cubic_8's lattice on Einstein springs of width 0.07 nearest-neighbour distances:
    a target with an exact ``ln Z_fixed`` whose mass outside the crystal region (half the
    nearest-neighbour distance, 7 widths) is below 1e-10."""
    atoms = freeflow.load_system("mw_cubic_8").atoms
    probe = freeflow.System(name="probe", atoms=atoms,
                            potential=freeflow.EinsteinCrystal(spring_constant=1.0),
                            temperature=1.0)
    k = 1.0 / (0.07 * probe.nearest_neighbour_distance) ** 2
    system = freeflow.System(name="springs", atoms=atoms,
                             potential=freeflow.EinsteinCrystal(spring_constant=k),
                             temperature=1.0)
    exact = einstein_ln_z_fixed(system.beta, k, system.box, system.num_particles - 1)
    return system, exact


def test_combine_log_z():
    runs = np.log([0.9, 1.0, 1.1, 1.0])
    value, stderr = combine_log_z(runs + 5.0)
    assert value == pytest.approx(5.0, abs=1e-12)  # ln of the mean of Z_r
    assert stderr == pytest.approx(np.std([0.9, 1.0, 1.1, 1.0], ddof=1) / 2, rel=1e-12)
    assert combine_log_z([3.0, 3.0]) == (pytest.approx(3.0), 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        combine_log_z([1.0])
    with pytest.raises(ValueError, match="not finite"):
        combine_log_z([1.0, -np.inf])


def test_anneal_between_gaussians():
    """N(0, 1) to an unnormalised N(0, s^2) in 12 dimensions: ln Z, the schedule and the final
    particles' variance."""
    dim, s, c = 12, 0.6, 2.5

    def log_q(y):
        return -0.5 * jnp.sum(y**2) - 0.5 * y.size * math.log(2 * math.pi)

    def log_p(y):
        return -0.5 * jnp.sum(y**2) / s**2 + c

    exact = c + 0.5 * dim * math.log(2 * math.pi * s**2)
    runs, n = 16, 256
    y0 = jax.random.normal(jax.random.PRNGKey(0), (runs, n, dim))
    result = anneal(log_q, log_p, y0, jax.random.PRNGKey(1), step_size=0.3)
    value, stderr = combine_log_z(result.log_z)
    assert abs(value - exact) < 4 * stderr
    assert 0 < stderr < 0.05
    for t in result.temperatures:
        assert np.all(np.diff(t) > 0) and t[-1] == 1.0
    # The final particles are target samples: per-coordinate variance s^2 (about 50 000
    # coordinates, correlated within a run by resampling; 10% is many standard errors).
    assert np.var(result.positions) == pytest.approx(s**2, rel=0.1)
    assert result.target_evaluations > runs * n


def test_matched_base_takes_one_step_with_equal_weights():
    """The harmonic base of an Einstein crystal is the target itself: one increment to t = 1,
    every weight equal, and ln Z_fixed exact."""
    system, exact = _springs()
    result = smc_free_energy(system=system, base="harmonic",
                             config=SMCConfig(particles=32, repeats=2))
    d = result.details
    assert d["num_temperatures"] == [1, 1]
    assert min(d["final_ess"]) > 1 - 1e-5
    np.testing.assert_allclose(d["ln_z_fixed_runs"], exact, atol=2e-5 * abs(exact))
    assert d["ln_z_fixed_stderr"] < 1e-5


def test_a_log_shows_the_runs_done(monkeypatch):
    """With stderr a file (a batch job's log), the estimate writes plain lines counting its
    runs, also when every run is too short to print its own."""
    import io

    from freeflow import progress

    system, _ = _springs()
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    smc_free_energy(system=system, base="harmonic",
                    config=SMCConfig(particles=16, repeats=3, group_size=1))
    lines = [line for line in err.getvalue().splitlines() if line.startswith("SMC springs: ")
             and " run " in line]
    assert [line.split()[2] for line in lines][-1] == "3/3", lines
    assert "\r" not in err.getvalue()


def test_coverage_from_a_mismatched_base():
    """SMC from the harmonic base at twice the temperature (3.2 nats from the target) to the
    Einstein crystal, 100 experiments of 16 runs each. Each experiment's value and error bar
    (what freeflow reports for --repeats 16) give z = (value - exact) / stderr, which is
    Student-t with 15 degrees of freedom if the error bar is right: 93.6% within 2. With 100
    experiments the fraction has a binomial sd of 2.4%, the mean z one of 0.11."""
    system, exact = _springs()
    blocks, repeats = 100, 16
    result = smc_free_energy(system=system, base=harmonic_base(system, 2.0),
                             config=SMCConfig(particles=64, repeats=blocks * repeats),
                             seed=1)
    assert min(result.details["num_temperatures"]) > 2  # a real annealing, not one jump
    runs = np.asarray(result.details["ln_z_fixed_runs"]).reshape(blocks, repeats)
    z = np.array([(combine_log_z(b)[0] - exact) / combine_log_z(b)[1] for b in runs])
    assert np.mean(np.abs(z) < 2) > 0.936 - 3 * 0.0245
    assert abs(np.mean(z)) < 3 * 0.11
    pooled, stderr = combine_log_z(runs.reshape(-1))
    assert abs(pooled - exact) < 3 * stderr
    # and the value freeflow reports is the same combination, converted
    assert result.details["ln_z_fixed"] == pytest.approx(pooled, abs=1e-9)


def test_smc_from_an_untrained_flow_matches_its_base(tiny_run):
    """The tiny run's flow is the identity on its base, so SMC from the flow and SMC from the
    base estimate the same ln Z; both agree within their errors."""
    system, model, _, _ = freeflow.load_run(tiny_run)
    kwargs = dict(config=SMCConfig(particles=32, repeats=4))
    from_flow = smc_free_energy(tiny_run, **kwargs)
    from_base = smc_free_energy(system=system, base=model.base, **kwargs)
    assert from_flow.details["start"] == "flow"
    assert from_flow.details["model_evaluations"] > 0
    assert from_flow.samples.shape == (4 * 32, system.num_particles, 3)
    difference = from_flow.value - from_base.value
    assert abs(difference) < 4 * math.hypot(from_flow.stderr, from_base.stderr)


_DEVICES_SCRIPT = """
import json, freeflow
from freeflow.workflows.smc import SMCConfig, smc_free_energy
import jax
r = smc_free_energy(system="mw_cubic_8", base="harmonic",
                    config=SMCConfig(particles=16, repeats=2))
print(json.dumps({"devices": jax.device_count(), "runs": r.details["ln_z_fixed_runs"]}))
"""


def test_one_and_two_devices_agree():
    """The particles split over two forced host devices give the same runs as one device."""
    out = {}
    for count in (1, 2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}",
                   JAX_PLATFORMS="cpu")
        proc = subprocess.run([sys.executable, "-c", _DEVICES_SCRIPT], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[count] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out[1]["devices"] == 1 and out[2]["devices"] == 2
    np.testing.assert_allclose(out[2]["runs"], out[1]["runs"], rtol=1e-5)


def test_cli_smc_from_a_base(tmp_path, capsys):
    samples = tmp_path / "final.npz"
    assert main(["estimate", "mw_cubic_8", "--method", "smc", "--base", "harmonic",
                 "--particles", "16", "--repeats", "2", "--samples-out", str(samples),
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["method"] == "smc" and row["start"] == "base:harmonic"
    assert row["counting"] == "bravais" and row["num_particles"] == 8
    for key in ("beta_f_per_particle", "stderr", "smc_particles", "num_temperatures",
                "final_ess", "energy_evaluations", "base_evaluations", "wall_time"):
        assert key in row
    positions, system, _ = freeflow.load_samples(samples)
    assert positions.shape == (32, 8, 3) and system.name == "mw_cubic_8"


@pytest.mark.parametrize("argv, message", [
    (["mw_cubic_8", "--method", "smc", "--base", "harmonic", "--particles", "0"],
     "at least 2 particles"),
    (["mw_cubic_8", "--method", "smc", "--base", "harmonic", "--repeats", "1"],
     "at least 2 independent runs"),
    (["mw_cubic_8", "--method", "smc"], "not a run directory"),
])
def test_cli_smc_bad_input(argv, message, capsys):
    assert main(["estimate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_smc_run_without_model(tmp_path, capsys):
    assert main(["estimate", str(tmp_path), "--method", "smc"]) == 2
    assert "not a freeflow run directory" in capsys.readouterr().err


def test_cli_smc_unknown_base(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["estimate", "mw_cubic_8", "--method", "smc", "--base", "gaussian"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'gaussian'" in capsys.readouterr().err


def test_workdir_resumes_to_the_same_result(tmp_path):
    """Groups are seeded by their index: an estimate interrupted after some groups and run
    again gives exactly the runs of an uninterrupted one; other settings are refused."""
    system, _ = _springs()
    base = harmonic_base(system, 2.0)
    config = SMCConfig(particles=16, repeats=3, group_size=1)
    kwargs = dict(system=system, base=base, config=config)
    whole = smc_free_energy(**kwargs)
    work = tmp_path / "smc"
    first = smc_free_energy(**kwargs, workdir=work)
    np.testing.assert_array_equal(first.details["ln_z_fixed_runs"],
                                  whole.details["ln_z_fixed_runs"])
    (work / "group_001.npz").unlink()  # as if interrupted during the second group
    again = smc_free_energy(**kwargs, workdir=work)
    np.testing.assert_allclose(again.details["ln_z_fixed_runs"],
                               whole.details["ln_z_fixed_runs"], rtol=0, atol=1e-9)
    more = smc_free_energy(**dict(kwargs, config=dataclasses.replace(config, repeats=4)),
                           workdir=work)  # extends
    assert more.details["repeats"] == 4
    np.testing.assert_allclose(more.details["ln_z_fixed_runs"][:3],
                               whole.details["ln_z_fixed_runs"], atol=1e-9)
    fewer_steps = dataclasses.replace(config, anneal=AnnealConfig(mcmc_steps=2))
    with pytest.raises(ValueError, match="other settings.*mcmc_steps"):
        smc_free_energy(**dict(kwargs, config=fewer_steps), workdir=work)
