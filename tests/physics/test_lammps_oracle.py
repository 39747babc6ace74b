"""The LAMMPS oracle itself, checked on Lennard-Jones (lj_32, truncated and shifted, float64).

``lj/cut`` with ``pair_modify shift yes`` is the same function as ``LennardJones(shift=True)``;
both sum the same ~2000 pair terms in float64, so they agree to rounding: 1e-11 relative leaves
three orders of magnitude over the summation-order error (~1e-14 per term).
"""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import perturbed
from lammps_oracle import lammps_energy_and_forces, require_lammps

RTOL = 1e-11


def test_lennard_jones_matches_lammps(systems):
    require_lammps()
    system = systems("lj_32")
    p = system.potential
    assert p.shift
    pair_lines = ["pair_style lj/cut {!r}".format(p.cutoff), "pair_modify shift yes",
                  "pair_coeff 1 1 {!r} {!r}".format(p.epsilon, p.sigma)]
    fn = p.energy_fn(system.box, system.lattice,
                     max_displacement=0.5 * system.nearest_neighbour_distance)
    for seed in range(2):
        x = perturbed(system, 0.08, seed)
        atoms = system.atoms.copy()
        atoms.positions = x
        e_ref, f_ref = lammps_energy_and_forces(atoms, "lj", pair_lines)
        with jax.enable_x64(True):
            u, g = jax.jit(jax.value_and_grad(fn))(jnp.asarray(x, jnp.float64))
        assert abs(float(u) - e_ref) <= RTOL * abs(e_ref)
        np.testing.assert_allclose(-np.asarray(g), f_ref, rtol=0,
                                   atol=RTOL * np.abs(f_ref).max())
