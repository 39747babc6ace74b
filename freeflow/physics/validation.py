"""Checks shared by every input of the physics layer: known keys, numbers in their domains.

A system file's tables (``freeflow.physics.system_files``) and a potential's parameters
(``freeflow.physics.potentials``) go through the same two functions, so every table refuses a
key it does not know and every physical parameter is refused outside its domain, each with one
line that names the table or potential, the key and the value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable, Iterable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Domain:
    """Where a real parameter may lie: ``contains(value)``, described in words for messages."""

    description: str
    contains: Callable[[float], bool]


#: Lengths, energies, densities, temperatures, spring constants: ``0 < x < inf``.
POSITIVE = Domain("positive and finite", lambda x: 0.0 < x < math.inf)
#: Strengths that may vanish (a three-body weight, an exponent): ``0 <= x < inf``.
NON_NEGATIVE = Domain("zero or positive and finite", lambda x: 0.0 <= x < math.inf)
#: A cosine: ``-1 <= x <= 1``.
COSINE = Domain("a cosine, between -1 and 1", lambda x: -1.0 <= x <= 1.0)


def check_known_keys(table: dict, accepted: Iterable[str], where: str) -> None:
    """Refuse the keys of ``table`` outside ``accepted``, naming them and ``where`` they are.

    ``where`` names the table for the message, such as ``"[state]"`` or ``"potential
    'lennard_jones'"``.
    """
    accepted = sorted(accepted)
    unknown = sorted(set(table) - set(accepted))
    if unknown:
        keys = ", ".join(repr(k) for k in unknown)
        raise ValueError(f"{where} has unknown key{'s' if len(unknown) > 1 else ''} {keys}; "
                         f"accepted keys: {', '.join(accepted)}")


def check_number(value, name: str, domain: Domain, where: str = "", unit: str = "") -> float:
    """``value`` as a float, or one line naming ``where`` (if given), ``name`` and what is wrong.

    Booleans and strings are refused (TOML's ``true`` and ``"1.0"`` are not numbers); so is
    anything outside ``domain``, NaN included. ``unit`` follows the value in the message.
    """
    where = f"{where}: " if where else ""
    unit = f" {unit}" if unit else ""
    scalar = isinstance(value, numbers.Real) or getattr(value, "shape", None) == ()
    if isinstance(value, (bool, str, np.bool_)) or not scalar:
        raise ValueError(f"{where}{name} must be a number; got {value!r}")
    try:  # numpy and JAX scalars are numbers too
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}{name} must be a number; got {value!r}") from None
    if math.isnan(number) or not domain.contains(number):
        raise ValueError(f"{where}{name} must be {domain.description}; got {number!r}{unit}")
    return number


def check_table(value, where: str, accepted: Iterable[str]) -> dict:
    """``value`` if it is a table (a mapping) holding only ``accepted`` keys, else one line
    naming ``where``."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table of keys and values; got {value!r}")
    check_known_keys(value, accepted, where)
    return value
