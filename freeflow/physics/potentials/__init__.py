"""Interaction potentials as pure JAX functions of periodic positions.

Each potential is a frozen dataclass of its parameters with ``kind``, ``units`` and an
``energy_fn(box, sites, ...)`` that returns ``positions [..., N, 3] -> U [...]``. A potential
with pairs inside a ``cutoff`` also has ``neighbor_plan(box, sites, ...)`` (see
``freeflow.physics.potentials.base.PairNeighbors``), the plan its ``energy_fn`` uses.
"""

import dataclasses

from freeflow.physics.potentials.eam import EAM
from freeflow.physics.potentials.einstein import (
    EinsteinCrystal,
    SymmetricEinsteinCrystal,
)
from freeflow.physics.potentials.lennard_jones import LennardJones
from freeflow.physics.potentials.function import FunctionPotential
from freeflow.physics.potentials.monatomic_water import MonatomicWater
from freeflow.physics.potentials.pair import Buckingham, Morse, PairPotential
from freeflow.physics.potentials.stillinger_weber import StillingerWeber
from freeflow.physics.validation import check_known_keys

POTENTIALS = {cls.kind: cls for cls in (LennardJones, MonatomicWater, EinsteinCrystal,
                                  SymmetricEinsteinCrystal, StillingerWeber, Morse, Buckingham,
                                  EAM)}


def register_potential(cls):
    """Make a user's potential class (a frozen dataclass of numbers with a ``kind``, see
    docs/potentials.md) buildable from a system file's ``[potential]`` table by that kind.
    Returns ``cls``, so it serves as a class decorator. A kind already registered for another
    class is refused."""
    kind = getattr(cls, "kind", None)
    if not (isinstance(kind, str) and kind) or not dataclasses.is_dataclass(cls):
        raise ValueError(f"register_potential takes a dataclass with a string kind; got {cls!r}")
    if POTENTIALS.get(kind, cls) is not cls:
        raise ValueError(f"potential kind {kind!r} is taken by {POTENTIALS[kind].__name__}; "
                         f"give {cls.__name__} another kind")
    POTENTIALS[kind] = cls
    return cls


def potential_from_config(config: dict, require_all: bool = False):
    """Build a potential from a mapping with ``kind`` and the dataclass's parameters.

    ``require_all`` (system definitions written by hand) refuses a mapping that leaves out a
    parameter the potential lists in ``required_parameters``: a forgotten ``epsilon`` would
    otherwise take a default without a word. Unknown keys are refused
    (``freeflow.physics.validation.check_known_keys``, as for every table of a system file) and
    each parameter is checked against its domain when the potential is built."""
    if not isinstance(config, dict):
        raise ValueError(f"[potential] must be a table with kind and parameters; got {config!r}")
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in POTENTIALS:
        raise ValueError(f"unknown potential kind {kind!r}; known kinds: {sorted(POTENTIALS)}")
    cls = POTENTIALS[kind]
    where = f"potential {kind!r}"
    if hasattr(cls, "from_config"):  # a potential with its own keys (a named parameter set)
        return cls.from_config(config, require_all)
    # ``units`` (a Units object of the Einstein crystals) is no parameter a mapping can give.
    parameters = [f.name for f in dataclasses.fields(cls) if f.name != "units"]
    check_known_keys(config, ["kind", *parameters], where)
    missing = [p for p in getattr(cls, "required_parameters", ()) if p not in config]
    if require_all and missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}; give every "
                         f"parameter of {', '.join(cls.required_parameters)}")
    return cls(**config)


__all__ = ["Buckingham", "EAM", "EinsteinCrystal", "FunctionPotential", "LennardJones",
           "MonatomicWater", "Morse", "POTENTIALS", "PairPotential", "register_potential",
           "StillingerWeber", "SymmetricEinsteinCrystal", "potential_from_config"]
