"""calphy's free energy in freeflow's convention (``freeflow.estimators.calphy``).

The case is what calphy 2.3.0 printed in ``report.yaml`` for argon-like Lennard-Jones
(sigma = 3.405 Angstrom, epsilon / k_B = 100 K, mass 39.948 g/mol, the shifted table of
``bench/peers/calphy_side_by_side.py``), FCC N = 32 at 200 K and freeflow's density 1.28 /
sigma^3 (box edge 9.95628 Angstrom, which calphy rounds to 9.956), 2000-step
switching: only the reference and the conversion are checked here, not the switching.
"""

import math

import pytest

from freeflow.estimators.calphy import (
    BAR_PER_EV_PER_CUBIC_ANGSTROM,
    BOLTZMANN_EV_PER_K,
    CalphyResult,
    beta_f_from_calphy,
    de_broglie_wavelength,
)
from freeflow.physics.potentials.einstein import com_fixed_einstein_beta_f

REPORT = {
    "average": {"density": 0.03242614455990339, "spring_constant": "0.3041411739580651",
                "vol_atom": 30.84191436199728},
    "input": {"pressure": 15115.423232323234, "temperature": 200},
    "results": {"com_correction": -0.007347444310649306, "dissipation": -0.0035304393577210123,
                "einstein_crystal": -0.05774258663766391, "error": 0.0,
                "free_energy": 0.1926261407425372, "pv": 0.29094748250003355,
                "reference_system": -0.06509003094831321, "unit": "eV/atom",
                "work": -0.03323131080918312},
}
N, TEMPERATURE, MASS, SIGMA = 32, 200.0, 39.948, 3.405
VOLUME = N / 1.28 * SIGMA**3  # freeflow's box: 986.94 cubic Angstrom


def test_calphys_einstein_crystal_is_the_literatures_after_conversion():
    """calphy's reference (Einstein crystal with momenta, its centre-of-mass term) converted
    equals the literature's centre-of-mass-fixed Einstein crystal (springs ``(k / 2) r^2`` in
    calphy, ``k' r^2`` with ``k' = k / 2`` in the formula) in calphy's own box, to rounding:
    this checks the de Broglie and the centre-of-mass terms exactly."""
    reference = CalphyResult.from_report({**REPORT, "results": {
        **REPORT["results"], "free_energy": REPORT["results"]["reference_system"], "pv": 0.0}})
    calphy_volume = N / REPORT["average"]["density"]
    converted = beta_f_from_calphy(reference, temperature=TEMPERATURE, mass=MASS,
                                   num_particles=N, volume=calphy_volume,
                                   reference_length=SIGMA)
    beta = 1.0 / (BOLTZMANN_EV_PER_K * TEMPERATURE)
    k = float(REPORT["average"]["spring_constant"])
    width = math.sqrt(1.0 / (beta * k))  # k' = 1 / (2 beta width^2) = k / 2
    literature = com_fixed_einstein_beta_f(N, beta, width, calphy_volume, SIGMA)
    assert converted.box == 0.0
    assert converted.beta_f_per_particle == pytest.approx(literature, rel=1e-10)
    # Without the centre-of-mass term calphy is ln N / N lower.
    assert converted.centre_of_mass == pytest.approx(math.log(N) / N, rel=1e-15)


def test_every_term_of_a_fixed_lattice_result():
    result = CalphyResult.from_report(REPORT)
    converted = beta_f_from_calphy(result, temperature=TEMPERATURE, mass=MASS, num_particles=N,
                                   volume=VOLUME, reference_length=SIGMA)
    beta = 1.0 / (BOLTZMANN_EV_PER_K * TEMPERATURE)
    # pV at the lattice is removed: Helmholtz, not the Gibbs-like sum calphy prints.
    assert converted.helmholtz == pytest.approx(beta * (0.1926261407425372
                                                        - 0.29094748250003355), rel=1e-14)
    # Argon at 200 K: h / sqrt(2 pi m k T) = 0.195316 Angstrom.
    assert de_broglie_wavelength(MASS, TEMPERATURE) == pytest.approx(0.1953158, rel=1e-6)
    assert converted.de_broglie == pytest.approx(-3 * math.log(0.1953158 / SIGMA), abs=1e-5)
    # calphy's box edges are rounded to 9.956 Angstrom: 0.083 cubic Angstrom smaller, at
    # 15115 bar; the free energy at freeflow's larger box is lower by p dV.
    dv = VOLUME - 9.956**3
    assert dv == pytest.approx(0.0834, abs=1e-4)
    expected = -beta * (15115.423232323234 / BAR_PER_EV_PER_CUBIC_ANGSTROM) * dv / N
    assert converted.box == pytest.approx(expected, rel=1e-6)
    assert converted.box == pytest.approx(-1.43e-3, abs=1e-5)
    assert converted.beta_f_per_particle == pytest.approx(
        converted.helmholtz + converted.de_broglie + math.log(N) / N + converted.box, rel=1e-15)
    # One switching iteration: calphy prints error 0, which is no error bar.
    assert converted.stderr == math.inf


def test_error_is_scaled_by_beta_and_bad_units_are_refused():
    result = CalphyResult.from_report({**REPORT, "results": {**REPORT["results"],
                                                             "error": 1e-4}})
    converted = beta_f_from_calphy(result, temperature=TEMPERATURE, mass=MASS, num_particles=N,
                                   volume=VOLUME, reference_length=SIGMA)
    assert converted.stderr == pytest.approx(1e-4 / (BOLTZMANN_EV_PER_K * TEMPERATURE))
    with pytest.raises(ValueError, match="kJ/mol"):
        CalphyResult.from_report({**REPORT, "results": {**REPORT["results"],
                                                        "unit": "kJ/mol"}})
