"""An exactly solvable crystal for the temperature routes: Einstein springs on a small diamond
lattice, with ``ln Z_fixed``, ``U`` and ``C_v`` in closed form at every temperature (the
crystal region's cut included)."""

import math

import numpy as np

import freeflow
from freeflow.estimators.conventions import beta_f_from_ln_z_fixed

#: A cold point, then a long step and a short one: the short step's difference is far better
#: known than either value, which the covariance must show.
TEMPERATURES = (0.5, 1.3, 1.5)


SPRINGS = """name = "springs"
description = "Einstein springs on a diamond lattice (reduced units)"

[potential]
kind = "einstein_crystal"
spring_constant = {k!r}

[state]
temperature = 1.0
number_density = 0.5

[lattice]
kind = "diamond"
num_particles = 8
"""


def springs(directory):
    """A system file of 8 particles on a diamond lattice tied to their sites by springs of
    width 0.07 nearest-neighbour distances at T = 1 (reduced units): exact ``ln Z_fixed``,
    ``U`` and ``C_v`` at every temperature. Returns ``(path, system, k, region radius)``."""
    probe = freeflow.System(name="probe", atoms=freeflow.build_lattice("diamond", 8, 0.5),
                            potential=freeflow.EinsteinCrystal(spring_constant=1.0),
                            temperature=1.0)
    k = 1.0 / (0.07 * probe.nearest_neighbour_distance) ** 2
    path = directory / "springs.toml"
    path.write_text(SPRINGS.format(k=k))
    system = freeflow.load_system(path)
    return path, system, k, 0.5 * system.nearest_neighbour_distance


def exact_ln_z_fixed(beta, k, radius, mobile):
    """``ln Z_fixed`` of ``mobile`` springs, each cut at the crystal region's sphere of radius
    ``radius`` (the Gaussian mass inside a sphere, in closed form)."""
    s = 1.0 / math.sqrt(beta * k)
    x = radius / s
    inside = math.erf(x / math.sqrt(2)) - math.sqrt(2 / math.pi) * x * math.exp(-x * x / 2)
    return mobile * (1.5 * math.log(2 * math.pi * s * s) + math.log(inside))


def exact(system, k, radius, temperature):
    """Exact ``(beta F / N, U / N, C_v / N)``; U and C_v as derivatives of ``ln Z`` in beta
    (central differences of a smooth float64 function: error ~1e-8, far below the test's)."""
    n, volume = system.num_particles, float(np.prod(system.box))
    beta, h = 1.0 / temperature, 1e-4 / temperature

    def ln_z(b):
        return exact_ln_z_fixed(b, k, radius, n - 1)

    beta_f = beta_f_from_ln_z_fixed(ln_z(beta), n, volume, 1.0)
    u = -(ln_z(beta + h) - ln_z(beta - h)) / (2 * h) / n
    cv = beta**2 * (ln_z(beta + h) - 2 * ln_z(beta) + ln_z(beta - h)) / h**2 / n
    return beta_f, u, cv


def assert_exact_row(system, k, radius, row):
    """One temperature's row of a ``Curve`` against the exact springs: ``beta F / N``, ``U``,
    ``C_v``, ``S`` and the pressure (``k_B T / V``: springs tied to sites that move with the
    box leave ``Z_fixed`` independent of ``V``) within 3 standard errors. float32 energies of
    size ~10 round at ~1e-6 per particle; 1e-5 covers that in ``F`` and ``S``."""
    beta_f, u, cv = exact(system, k, radius, row["temperature"])
    assert abs(row["beta_f_per_particle"] - beta_f) <= 3 * row["stderr"] + 1e-5, row
    assert abs(row["u_per_particle"] - u) <= 3 * row["u_stderr"], row
    assert abs(row["cv_per_particle"] - cv) <= 3 * row["cv_stderr"], row
    s = u / row["temperature"] - beta_f
    assert abs(row["s_per_particle"] - s) <= 3 * row["s_stderr"] + 1e-5, row
    assert abs(row["pressure"] - row["temperature"] / system.volume) \
        <= 3 * row["pressure_stderr"], row
    return u, cv
