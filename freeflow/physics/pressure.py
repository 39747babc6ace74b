"""The pressure of a crystal from the volume derivative of its energy.

At fixed ``N``, ``V`` and ``T`` the pressure is ``P = -dF/dV``. Scaling every coordinate and
the box together by ``s`` (``V -> s^3 V``) leaves the configuration's shape unchanged, so

    P = N k_B T / V - < dU/dV >,      dU/dV = d U(s x; s box) / ds / (3 V) at s = 1,

the kinetic (ideal) term and the virial term. The first needs no sampling, and holding one
particle on its site does not change it: ``Z`` grows as ``V`` through the free translation and
``Z_fixed`` as ``V^(N-1)`` through the scaled coordinates of the others.

``volume_derivative_fn`` takes ``dU/dV`` by a central difference of the energy of the same
potential in boxes scaled by ``1 +- h``. It needs no virial formula of its own, so it serves every
potential (pair, Stillinger-Weber, EAM, a user's) and is checked against LAMMPS's virial
pressure (``tests/physics/test_pressure.py``). In float64, with ``h = 1e-5``, the truncation
error is ``~h^2`` relative, and rounding leaves ``~1e-16 |U| / (6 h V)``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["RELATIVE_STEP", "volume_derivative_fn"]

#: ``h``: the boxes are scaled by ``1 - h`` and ``1 + h``. Near zero pressure dU/dV is small
#: against its curvature, so the ``h^2`` error is relatively larger there; rounding in float64
#: stays far below it down to steps much smaller than this one.
RELATIVE_STEP = 1e-5
#: Configurations evaluated together (memory).
_BATCH = 64


def _scaled(system, factor: float):
    atoms = system.atoms.copy()
    atoms.set_cell(np.asarray(atoms.cell[:], np.float64) * factor, scale_atoms=True)
    return dataclasses.replace(system, atoms=atoms)


def volume_derivative_fn(system, relative_step: float = RELATIVE_STEP
                         ) -> Callable[[np.ndarray], np.ndarray]:
    """``dU/dV`` of configurations under uniform scaling, ``[..., N, 3] -> [...]``.

    Positions are in the length unit, in ``system``'s box; the result is in energy / length^3
    (``system.units.pressure``), float64. Not jitted by the caller: it runs its own float64
    computation (a scoped ``jax.enable_x64``) in batches.
    """
    if not 0 < relative_step < 0.01:
        raise ValueError(f"relative_step must be in (0, 0.01); got {relative_step}")
    low, high = 1.0 - relative_step, 1.0 + relative_step
    volumes = system.volume * low**3, system.volume * high**3
    energy_low = _scaled(system, low).energy_fn(strays="recompute")
    energy_high = _scaled(system, high).energy_fn(strays="recompute")
    # Jitted as a whole: op by op, float64 would compile every primitive on its own.
    difference = jax.jit(lambda x: energy_high(high * x) - energy_low(low * x))

    def derivative(positions):
        positions = np.asarray(positions, np.float64)
        if positions.shape[-2:] != (system.num_particles, 3):
            raise ValueError(f"{system.name} has {system.num_particles} particles; positions "
                             f"must have shape [..., {system.num_particles}, 3], got "
                             f"{positions.shape}")
        flat = positions.reshape(-1, system.num_particles, 3)
        count = len(flat)
        batch = min(_BATCH, max(count, 1))
        # The last batch is padded (with copies of the first configuration) to one shape, so
        # one program compiles.
        padded = np.concatenate([flat, np.repeat(flat[:1], -count % batch, axis=0)]) \
            if count else flat
        out = []
        with jax.enable_x64(True):
            for start in range(0, len(padded), batch):
                x = jnp.asarray(padded[start:start + batch], jnp.float64)
                out.append(np.asarray(difference(x), np.float64))
        values = np.concatenate(out)[:count] if out else np.zeros(0)
        return (values / (volumes[1] - volumes[0])).reshape(positions.shape[:-2])

    return derivative

