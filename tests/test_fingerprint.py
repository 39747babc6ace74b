"""The one identity scheme: canonical, order-blind for records, value-sensitive."""

import hashlib
import json

import numpy as np

from freeflow.fingerprint import LENGTH, array_fingerprint, fingerprint
from freeflow.physics.identity import system_fingerprint, system_identity
from freeflow.physics.system_files import load_system


def test_record_fingerprints_ignore_key_order_and_see_every_value():
    a = fingerprint({"seed": 0, "states": [1, 2], "nested": {"x": 1.5, "y": None}})
    b = fingerprint({"nested": {"y": None, "x": 1.5}, "states": [1, 2], "seed": 0})
    assert a == b and len(a) == LENGTH
    assert fingerprint({"seed": 1, "states": [1, 2], "nested": {"x": 1.5, "y": None}}) != a
    assert fingerprint({"seed": 0, "states": [2, 1], "nested": {"x": 1.5, "y": None}}) != a
    # the canonical form is sorted JSON, as the files written before this module used, so
    # their stored fingerprints still match
    text = json.dumps({"b": 1, "a": [2.0]}, sort_keys=True)
    assert fingerprint({"b": 1, "a": [2.0]}) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_array_fingerprints_are_float64_values():
    x = np.arange(6.0).reshape(2, 3)
    assert array_fingerprint([x]) == array_fingerprint([x.astype(np.float32)])
    assert array_fingerprint([x]) != array_fingerprint([x + 1e-12])
    assert array_fingerprint([x, x]) != array_fingerprint([x])


def test_a_system_fingerprint_is_its_identity_and_not_its_name():
    system = load_system("lj_32")
    assert system_fingerprint(system) == fingerprint(system_identity(system))
    renamed = type(system)(name="another", atoms=system.atoms, potential=system.potential,
                           temperature=system.temperature)
    assert system_fingerprint(renamed) == system_fingerprint(system)
    hotter = type(system)(name=system.name, atoms=system.atoms, potential=system.potential,
                          temperature=1.01 * system.temperature)
    assert system_fingerprint(hotter) != system_fingerprint(system)
