"""Counting conventions: the literature's by default, the exact one on request, stored rows."""

import math

import jax
import numpy as np
import pytest

import freeflow
from freeflow.estimators.conventions import (
    beta_f_per_particle,
    convert_counting,
    translation_multiplicity,
)
from freeflow.flows.config import ModelConfig
from freeflow.physics.potentials import SymmetricEinsteinCrystal
from freeflow.reports.tables import SHIPPED_RESULTS
from freeflow.rundir import read_baseline
from freeflow.workflows.baseline import PathConfig, mbar_free_energy
from freeflow.workflows.estimate import lbar_from_model, lfep_from_model

TINY = ModelConfig(num_layers=2, num_bins=8, embedding_size=16, num_heads=2, num_blocks=1,
                   num_frequencies=2, base="harmonic")


def harmonic_diamond(width=0.06):
    """An 8-site diamond lattice (m = 2) under springs with the flow's symmetries, analytic
    ln Z: the target of ``SymmetricEinsteinCrystal`` holds the crystals of one sublattice
    only, so its true ln Z is already counted as for a Bravais lattice."""
    target = SymmetricEinsteinCrystal(spring_constant=1.0 / (0.5 * width**2))
    atoms = freeflow.build_lattice("diamond", 8, 0.5)
    system = freeflow.System(name="harmonic_diamond_8", atoms=atoms, potential=target,
                             temperature=2.0)
    return system, target


def test_every_method_agrees_with_the_analytic_value_and_shifts_by_ln_m_over_n():
    system, target = harmonic_diamond()
    n = system.num_particles
    assert translation_multiplicity(system.lattice, system.box) == 2
    analytic = beta_f_per_particle(target.log_partition_function(system), n, 1.0)
    # A fresh flow with the harmonic base is this target, so its samples are target samples.
    model = freeflow.FlowModel(system, TINY)
    params = model.init(jax.random.PRNGKey(0))
    target_samples = model.sample_and_log_prob(params, jax.random.PRNGKey(5), 512)[0]
    # Every method estimates in the Bravais counting; the exact one is the same result
    # recounted (FreeEnergy.recounted).
    results = [
        lfep_from_model(model, params, system, jax.random.PRNGKey(1), 2048),
        lbar_from_model(model, params, system, jax.random.PRNGKey(2), 512,
                        np.asarray(target_samples)),
        mbar_free_energy(system, PathConfig(num_states=3, samples_per_state=512, num_chains=8)),
    ]
    for bravais in results:
        # float32 works of size ~20 round at ~1e-6 per particle; add that to 3 sigma.
        assert abs(bravais.value - analytic) <= 3 * bravais.stderr + 1e-5, bravais
        assert bravais.details["counting"] == "bravais"
        assert bravais.details["multiplicity"] == 1
        exact = bravais.recounted("exact")
        assert exact.value - bravais.value == pytest.approx(-math.log(2) / n, abs=1e-12)
        assert exact.stderr == bravais.stderr
        assert exact.details["counting"] == "exact" and exact.details["multiplicity"] == 2
        # ln Z gains ln m wherever the result carries it.
        for before, after in ((bravais.log_z, exact.log_z),
                              (bravais.details.get("ln_z"), exact.details.get("ln_z"))):
            if before is not None:
                assert after - before == pytest.approx(math.log(2), abs=1e-9)
        assert exact.recounted("bravais").value == pytest.approx(bravais.value, abs=1e-12)
    assert results[2].details["reference_beta_f_per_particle"] - results[2].recounted(
        "exact").details["reference_beta_f_per_particle"] == pytest.approx(math.log(2) / n)


def test_unknown_counting_is_refused_before_any_work():
    system, _ = harmonic_diamond()
    with pytest.raises(ValueError, match="unknown counting 'cubic'"):
        freeflow.estimate(system, "mbar", counting="cubic")
    with pytest.raises(ValueError, match="unknown counting"):
        convert_counting(1.0, 8, 2, "exact", "cubic")
    with pytest.raises(ValueError, match="does not record its counting"):
        freeflow.FreeEnergy(value=1.0, stderr=0.1, method="mbar", system="x",
                            num_samples=10).recounted("exact")


def test_conversion_is_ln_m_over_n_and_round_trips():
    exact = convert_counting(-25.16352, 64, 2, "bravais", "exact")
    assert exact == pytest.approx(-25.16352 - math.log(2) / 64, abs=1e-15)
    assert convert_counting(exact, 64, 2, "exact", "bravais") == pytest.approx(-25.16352)
    assert convert_counting(2.9, 32, 1, "bravais", "exact") == 2.9


# Published MBAR values (Wirnsberger et al. 2022) for the 64-molecule ices: value, stderr.
PUBLISHED_MBAR = {"mw_cubic_64": (-25.16306, 0.00020), "mw_hex_64": (-25.18687, 0.00026)}


@pytest.mark.parametrize("name", sorted(PUBLISHED_MBAR))
def test_stored_baseline_matches_the_published_64_molecule_rows(name):
    """The latest stored MBAR row of each ice, read in the default counting, agrees with the
    publication within 3 combined standard errors; in the exact counting, which the
    publication does not use, it is far off."""
    path = SHIPPED_RESULTS / "baseline.jsonl"
    value, stderr = PUBLISHED_MBAR[name]
    default = read_baseline(path)[name]
    assert abs(default.value - value) <= 3 * math.hypot(default.stderr, stderr)
    exact = read_baseline(path, "exact")[name]
    assert abs(exact.value - value) > 10 * math.hypot(exact.stderr, stderr)
