"""A user's own potential through the API: a plain JAX function, and a registered dataclass.

``FunctionPotential`` wraps ``f(positions [N, 3], box [3]) -> U``; here ``f`` is Lennard-Jones
written by hand (all pairs, 27 images), so ``System`` must give LennardJones's energies, lattice
energy and lattice Hessian. Both sides are float64 sums of the same terms in different orders:
1e-12 relative for energies, 1e-9 of the largest element for the Hessian (as
tests/physics/test_forces.py).
"""

import dataclasses
import itertools
import json

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed

from freeflow.physics.potentials import POTENTIALS, FunctionPotential, register_potential
from freeflow.physics.potentials.base import CheckedParameters
from freeflow.physics.potentials.pair import PairForm
from freeflow.physics.system_files import load_system, system_from_atoms
from freeflow.physics.identity import system_to_dict
from freeflow.physics.units import reduced_units
from freeflow.physics.validation import POSITIVE

CUTOFF = 2.7


def lj_energy(x, box):
    """Truncated-and-shifted LJ (reduced units) over every image within one box of the
    minimum image: enough for boxes longer than 2/3 of the cutoff."""
    d = x[:, None, :] - x[None, :, :]
    d = d - box * jnp.round(d / box)
    shifts = jnp.asarray(list(itertools.product((-1, 0, 1), repeat=3)), x.dtype) * box
    d = d[:, :, None, :] + shifts[None, None, :, :]
    r2 = jnp.sum(d * d, axis=-1)
    n = x.shape[0]
    itself = jnp.eye(n, dtype=bool)[:, :, None] & jnp.all(shifts == 0, axis=-1)[None, None, :]
    inside = ~itself & (r2 < CUTOFF**2)
    s6 = 1.0 / jnp.where(inside, r2, 1.0) ** 3
    c6 = CUTOFF**-6
    u = 4.0 * (s6 * s6 - s6) - 4.0 * (c6 * c6 - c6)
    return 0.5 * jnp.sum(jnp.where(inside, u, 0.0))


def test_function_potential_runs_through_system(systems):
    lj = systems("lj_32")
    system = system_from_atoms(lj.atoms, FunctionPotential(lj_energy, units=reduced_units()),
                               lj.temperature, name="lj_32_by_hand")
    x = perturbed(lj, 0.08, 0, count=3)
    np.testing.assert_allclose(np.asarray(system.energy(x)), np.asarray(lj.energy(x)),
                               rtol=1e-5)  # float32, as System evaluates
    assert system.lattice_energy() == pytest.approx(lj.lattice_energy(), rel=1e-12)
    hessian, reference = system.lattice_hessian(), lj.lattice_hessian()
    np.testing.assert_allclose(hessian, reference, rtol=0, atol=1e-9 * np.abs(reference).max())
    assert system.neighbor_plan() is None and system.units == lj.units
    # A run record holds it by name: plain data, though not rebuildable.
    record = system_to_dict(system)["potential"]
    assert record["kind"] == "function" and "lj_energy" in json.dumps(record)


def test_bad_function_potential():
    with pytest.raises(ValueError, match="potential 'function': fn"):
        FunctionPotential("lj", units=reduced_units())
    with pytest.raises(ValueError, match="potential 'function': units must be"):
        FunctionPotential(lj_energy, units="eV")
    with pytest.raises(ValueError, match="species must be a list of chemical symbols"):
        FunctionPotential(lj_energy, units=reduced_units(), species=["Xx"])


@dataclasses.dataclass(frozen=True)
class SoftSpheres(PairForm, CheckedParameters):
    """A user's pair potential: ``epsilon (sigma / r)^12``, reduced units."""

    epsilon: float = 1.0
    sigma: float = 1.0
    cutoff: float = 2.5
    shift: bool = True

    parameter_domains = (("epsilon", POSITIVE), ("sigma", POSITIVE), ("cutoff", POSITIVE))
    kind = "soft_spheres_test"
    soft_linear_below = None

    @property
    def units(self):
        return reduced_units(self.sigma)

    def bare_pair(self, r):
        return self.epsilon * (self.sigma / r) ** 12


def test_registered_user_potential_in_a_system_file(tmp_path):
    register_potential(SoftSpheres)
    try:
        path = tmp_path / "soft.toml"
        path.write_text('name = "soft_32"\n[potential]\nkind = "soft_spheres_test"\n'
                        'epsilon = 1.0\nsigma = 1.0\ncutoff = 2.5\n[state]\ntemperature = 1.0\n'
                        'number_density = 1.2\n[lattice]\nkind = "fcc"\nnum_particles = 32\n')
        system = load_system(path)
        assert system.potential == SoftSpheres() and system.lattice_energy() > 0
        with pytest.raises(ValueError, match="kind 'lennard_jones' is taken by LennardJones"):
            register_potential(dataclasses.make_dataclass(
                "Other", [], frozen=True, namespace={"kind": "lennard_jones"}))
    finally:
        POTENTIALS.pop("soft_spheres_test", None)
