"""The result types: JSON round trip, differences of two systems."""

import json
import math

import pytest

from freeflow.estimators.result import FreeEnergy, delta_f


def test_free_energy_round_trips_through_json():
    result = FreeEnergy(2.91916, 0.00091, "mbar", "lj_32", 147136, num_states=16,
                        energy_evaluations=9_997_376, wall_time=1205.0, log_z=-12.0,
                        details={"counting": "bravais", "reference": "harmonic"})
    row = json.loads(json.dumps(result.to_dict()))
    assert row["beta_f_per_particle"] == 2.91916 and row["counting"] == "bravais"
    back = FreeEnergy.from_dict(row)
    assert back == result


def test_delta_f_adds_errors_in_quadrature():
    ic = FreeEnergy(-25.16352, 0.00086, "mbar", "mw_cubic_64", 1)
    ih = FreeEnergy(-25.18573, 0.00090, "mbar", "mw_hex_64", 1)
    d = delta_f(ic, ih)
    assert d.value == pytest.approx(-0.02221) and d.stderr == pytest.approx(math.hypot(86e-5, 90e-5))
    assert "mw_hex_64" in str(d)
