"""Interaction potentials as pure JAX functions of periodic positions.

Each potential is a frozen dataclass of its parameters with ``kind``, ``units`` and an
``energy_fn(box, sites, ...)`` that returns ``positions [..., N, 3] -> U [...]``. A potential
with pairs inside a ``cutoff`` also has ``neighbor_plan(box, sites, ...)`` (see
``freeflow.physics.potentials.base.PairNeighbors``), the plan its ``energy_fn`` uses.
"""

import dataclasses

from freeflow.physics.potentials.einstein import (
    EinsteinCrystal,
    SymmetricEinsteinCrystal,
)
from freeflow.physics.potentials.lennard_jones import LennardJones
from freeflow.physics.potentials.monatomic_water import MonatomicWater

POTENTIALS = {cls.kind: cls for cls in (LennardJones, MonatomicWater, EinsteinCrystal,
                                  SymmetricEinsteinCrystal)}


def potential_from_config(config: dict):
    """Build a potential from a mapping with ``kind`` and the dataclass's parameters."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in POTENTIALS:
        raise ValueError(f"unknown potential kind {kind!r}; known kinds: {sorted(POTENTIALS)}")
    cls = POTENTIALS[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(config) - fields
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)} for potential {kind!r}; "
                         f"accepted: {sorted(fields)}")
    return cls(**config)


__all__ = ["EinsteinCrystal", "LennardJones", "MonatomicWater", "POTENTIALS",
           "SymmetricEinsteinCrystal", "potential_from_config"]
