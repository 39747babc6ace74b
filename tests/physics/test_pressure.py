"""The volume derivative of the energy against LAMMPS's virial pressure, for a pair potential,
Stillinger-Weber (silicon and mW) and EAM, and the units of pressures.

LAMMPS sums the virial ``sum r . f`` analytically; freeflow takes ``dU/dV`` by a central
difference of the energy in boxes scaled by ``1 +- 1e-5`` (``freeflow.physics.pressure``).
The difference's error is ``~h^2 U''' / U'`` relative, largest near zero pressure, where
``dU/dV`` is small against its curvature; at ``h = 1e-5`` it is far below the 1e-5 relative
(of the largest of the pressures compared) asked here.
"""

import numpy as np
import pytest
from lammps_oracle import lammps_run_zero, require_lammps

from freeflow.physics.pressure import volume_derivative_fn
from freeflow.physics.system_files import load_system
from freeflow.physics.units import BAR_PER_ENERGY_PER_CUBIC_ANGSTROM

RTOL = 1e-5
ATM_IN_BAR = 1.01325


def _sw_lines(tmp_path, p, species):
    values = [p.epsilon, p.sigma, p.a, p.lam, p.gamma, p.cos_theta0, p.A, p.B, p.p, p.q, 0.0]
    path = tmp_path / "pot.sw"
    path.write_text(f"{species} {species} {species} "
                    + " ".join(repr(float(v)) for v in values) + "\n")
    return ["pair_style sw", f"pair_coeff * * {path} {species}"]


def _pair_lines(system, tmp_path):
    p = system.potential
    if p.kind == "lennard_jones":
        return "lj", 1.0, ["pair_style lj/cut {!r}".format(p.cutoff), "pair_modify shift yes",
                           "pair_coeff 1 1 {!r} {!r}".format(p.epsilon, p.sigma)]
    if p.kind == "stillinger_weber":
        return "metal", 1.0, _sw_lines(tmp_path, p, "Si")
    if p.kind == "monatomic_water":
        return "real", ATM_IN_BAR, _sw_lines(tmp_path, p, "O")
    if p.kind == "eam":
        return "metal", 1.0, ["pair_style eam/alloy", f"pair_coeff * * {p.file} Cu"]
    raise AssertionError(p.kind)


@pytest.mark.parametrize("name, amplitude", [
    ("lj_32", 0.06), ("si_64", 0.1), ("mw_cubic_64", 0.15), ("cu_32", 0.1)])
def test_volume_derivative_is_lammps_virial_pressure(tmp_path, name, amplitude):
    """Perturbed crystals (lj_32 and cu_32 in boxes under two cutoffs: images interact)."""
    require_lammps()
    system = load_system(name)
    units, to_bar, lines = _pair_lines(system, tmp_path)
    rng = np.random.default_rng(1)
    x = system.lattice + amplitude * rng.standard_normal((2,) + system.lattice.shape)
    derivative = volume_derivative_fn(system)(x)
    ours = -derivative * (system.units.bar_per_pressure_unit or 1.0)
    theirs = []
    for positions in x:
        atoms = system.atoms.copy()
        atoms.positions = positions
        theirs.append(lammps_run_zero(atoms, units, lines)["pressure"] * to_bar)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=RTOL * np.max(np.abs(theirs)))


def _assert_springs_scale_as_s_squared(system, seed):
    """Springs ``(k/2) |x_i - s site_i|^2`` in a box scaled by ``s`` have ``U(s) = s^2 U``:
    ``dU/dV = 2 U / (3 V)`` exactly, for every configuration (float32 energies: 1e-5)."""
    rng = np.random.default_rng(seed)
    x = system.lattice + 0.1 * rng.standard_normal((3,) + system.lattice.shape)
    energies = np.array([float(system.energy(c.astype(np.float32))) for c in x])
    np.testing.assert_allclose(volume_derivative_fn(system)(x),
                               2 * energies / (3 * system.volume), rtol=1e-5)


def test_springs_that_move_with_the_box():
    import freeflow

    system = freeflow.System(name="springs", atoms=freeflow.build_lattice("diamond", 8, 0.5),
                             potential=freeflow.EinsteinCrystal(spring_constant=30.0),
                             temperature=1.0)
    _assert_springs_scale_as_s_squared(system, seed=2)


def test_a_users_function_of_the_box():
    """The same springs written by a user as a function of positions and box, with the sites
    at fixed fractions of the box: the box reaches the function in float64 (rounded to
    float32, the scaled boxes move the sites, and this check fails at 2e-3 relative)."""
    import jax.numpy as jnp

    import freeflow
    from freeflow.physics.potentials.function import FunctionPotential
    from freeflow.physics.units import reduced_units

    atoms = freeflow.build_lattice("diamond", 8, 0.5)
    fractions = atoms.positions / np.diag(np.asarray(atoms.cell))

    def springs(x, box):
        d = x - jnp.asarray(fractions, x.dtype) * box
        d = d - box * jnp.round(d / box)
        return 15.0 * jnp.sum(d**2)

    system = freeflow.System(name="user", atoms=atoms, temperature=1.0,
                             potential=FunctionPotential(springs, reduced_units()))
    _assert_springs_scale_as_s_squared(system, seed=3)


def test_shapes_and_units():
    system = load_system("mw_cubic_8")
    derivative = volume_derivative_fn(system)
    assert derivative(np.stack([system.lattice] * 3).reshape(3, 1, 8, 3)).shape == (3, 1)
    with pytest.raises(ValueError, match="positions must have shape"):
        derivative(np.zeros((2, 7, 3)))
    with pytest.raises(ValueError, match="relative_step"):
        volume_derivative_fn(system, relative_step=0.1)
    assert system.units.pressure == "kcal/mol/Angstrom^3"
    # 1 kcal/mol per cubic Angstrom is 69476.95 bar; reduced units have no bar.
    assert BAR_PER_ENERGY_PER_CUBIC_ANGSTROM["kcal/mol"] == pytest.approx(69476.95, rel=1e-7)
    assert BAR_PER_ENERGY_PER_CUBIC_ANGSTROM["eV"] == pytest.approx(1.602176634e6, rel=1e-12)
    assert load_system("lj_32").units.bar_per_pressure_unit is None
