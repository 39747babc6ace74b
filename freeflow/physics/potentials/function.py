"""A user's own energy function ``f(positions [N, 3], box [3]) -> U`` as a potential.

``FunctionPotential`` is the shortest way to bring any energy written in JAX to freeflow: it
satisfies the potential protocol (``docs/potentials.md``) with the function's own autodiff
gradient and no neighbour plan. The function sees the positions of one configuration and the
orthorhombic box edges; it must honour the periodic boundaries itself (minimum image or a sum
over images) and return a scalar in ``units.energy``.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np
from ase.data import chemical_symbols

from freeflow.physics.neighbors import Strategy
from freeflow.physics.potentials.base import GRADIENTS, EnergyFn, over_configurations
from freeflow.physics.units import Units


class FunctionPotential:
    """A potential from ``fn(positions [N, 3], box [3]) -> U`` (a scalar, ``units.energy``).

    Args:
      fn: the energy of one configuration, written with ``jax.numpy`` (jit-, vmap- and
        grad-safe); positions in ``units.length``, wrapped into the box or not.
      units: a ``freeflow.physics.units.Units`` (``physical_units("eV", 1.0)``,
        ``reduced_units()``), which fixes k_B and the temperature unit.
      species: the chemical symbols ``fn`` models, or ``None`` (any one species).
      softened_fn: the training energy, same signature (default: ``fn`` itself). A flow's
        training meets overlapping particles early on; give a function that stays finite there
        if ``fn`` does not.
      name: a label for messages and run records (default: the function's name).

    Forces are reverse-mode autodiff of ``fn`` (``gradient="analytic"`` is the same route: no
    analytic pull-back exists for an arbitrary function). There is no neighbour plan and no
    ``cutoff``: ``fn`` does its own pair finding, and freeflow's memory checks count only the
    particles. Not a dataclass: a system of it is recorded in a run directory by ``repr`` and
    cannot be rebuilt from there.
    """

    kind = "function"

    def __init__(self, fn: Callable, units: Units, species=None,
                 softened_fn: Callable | None = None, name: str | None = None):
        if not callable(fn) or (softened_fn is not None and not callable(softened_fn)):
            raise ValueError("potential 'function': fn (and softened_fn) must be functions "
                             "(positions [N, 3], box [3]) -> energy")
        if not isinstance(units, Units):
            raise ValueError(f"potential 'function': units must be a "
                             f"freeflow.physics.units.Units (physical_units('eV', 1.0), "
                             f"reduced_units()); got {units!r}")
        if species is not None:
            found = (species,) if isinstance(species, str) else species
            found = tuple(found) if isinstance(found, (list, tuple)) else None
            if not found or any(s not in chemical_symbols for s in found):
                raise ValueError(f"potential 'function': species must be a list of chemical "
                                 f"symbols such as ['Cu']; got {species!r}")
            species = found
        self.fn, self.units, self.species = fn, units, species
        self.softened_fn = softened_fn or fn
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)

    def energy_fn(self, box, sites, *, max_displacement: float, softened: bool = False,
                  neighbors: Strategy = "auto", allow_sites: bool | None = None,
                  gradient: str = "analytic") -> EnergyFn:
        """``positions [..., N, 3] -> U [...]``: ``fn`` (``softened_fn`` when ``softened``)
        over every configuration. ``sites``, ``max_displacement``, ``neighbors`` and
        ``allow_sites`` are part of the protocol and unused here."""
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, not {gradient!r}")
        fn = self.softened_fn if softened else self.fn
        # Kept in float64 until the call: a float32 copy would round a box scaled by 1 +- 1e-5
        # (the pressure's volume derivative) to ~6e-8 of its edge.
        edges = np.asarray(box, np.float64)

        def energy(x):
            return jnp.asarray(fn(x, jnp.asarray(edges, x.dtype)), x.dtype).reshape(())

        return over_configurations(energy)

    def __repr__(self):
        return (f"FunctionPotential({self.name}, energy={self.units.energy!r}, "
                f"length={self.units.length!r}, species={self.species!r})")
