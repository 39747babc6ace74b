"""Lattices: bcc, hcp (orthorhombic 4-site setting), and n1 x n2 x n3 repeats of any cell."""

import math

import numpy as np
import pytest
from ase.build import bulk

from freeflow.physics.lattice import build_lattice, repeat_cell
from freeflow.physics.system_files import system_from_definition


def shells(atoms, count=2):
    """The first ``count`` neighbour distances and how many sites sit at each (site 0)."""
    box = np.diag(np.asarray(atoms.cell))
    d = atoms.positions - atoms.positions[0]
    d -= box * np.round(d / box)
    r = np.sort(np.linalg.norm(d, axis=1))[1:]
    distances = np.unique(np.round(r, 9))[:count]
    return distances, [int(np.sum(np.abs(r - x) < 1e-7)) for x in distances]


def test_bcc():
    atoms = build_lattice("bcc", 54, 0.5, "Fe")  # 3^3 cells of 2 sites
    a = (2 / 0.5) ** (1 / 3)
    assert len(atoms) == 54 and np.allclose(np.diag(atoms.cell), 3 * a)
    distances, counts = shells(atoms)
    assert np.allclose(distances, [math.sqrt(3) / 2 * a, a]) and counts == [8, 6]


@pytest.mark.parametrize("c_over_a", [None, 1.5])
def test_hcp(c_over_a):
    atoms = build_lattice("hcp", 108, 1.0, "Mg", c_over_a=c_over_a)
    ratio = math.sqrt(8 / 3) if c_over_a is None else c_over_a
    a = (4 / (math.sqrt(3) * ratio)) ** (1 / 3)  # 4 sites per a x sqrt(3) a x c cell
    assert np.allclose(np.diag(atoms.cell), 3 * a * np.array([1, math.sqrt(3), ratio]))
    assert len(atoms) / atoms.get_volume() == pytest.approx(1.0)
    distances, counts = shells(atoms, 1 if c_over_a is None else 2)
    if c_over_a is None:  # ideal: 12 nearest neighbours at a
        assert np.allclose(distances, [a]) and counts == [12]
    else:  # 6 in the plane at a, 6 across at sqrt(a^2 / 3 + c^2 / 4)
        across = math.sqrt(a**2 / 3 + (ratio * a) ** 2 / 4)
        assert np.allclose(sorted(distances), sorted([a, across])) and counts == [6, 6]


def test_repeat_gives_non_cubic_boxes():
    atoms = build_lattice("fcc", None, 1.0, "Ar", repeat=[1, 2, 3])
    a = 4 ** (1 / 3)
    assert len(atoms) == 24 and np.allclose(np.diag(atoms.cell), a * np.array([1, 2, 3]))
    assert np.allclose(atoms.positions[0], 0) and np.all(atoms.get_scaled_positions() < 1)
    same = build_lattice("fcc", 24, 1.0, "Ar", repeat=(1, 2, 3))
    np.testing.assert_array_equal(same.positions, atoms.positions)
    # Any orthorhombic ASE cell: copper's 2-site orthorhombic cell, 2 x 2 x 1.
    cell = bulk("Cu", "fcc", a=3.6, orthorhombic=True)
    big = repeat_cell(cell, (2, 2, 1))
    assert len(big) == 8 and np.allclose(np.diag(big.cell), np.diag(cell.cell) * [2, 2, 1])


@pytest.mark.parametrize("call, message", [
    (lambda: build_lattice("bcc", 20, 1.0, repeat=[2, 2, 3]),
     "a bcc lattice of repeat = [2, 2, 3] cells holds N = 24 (2 per cell), not "
     "num_particles = 20; give one of the two, or both agreeing"),
    (lambda: build_lattice("fcc", None, 1.0, repeat=[2, 0, 1]), "repeat must be three positive"),
    (lambda: build_lattice("fcc", 32, 1.0, c_over_a=1.6), "is for hcp only"),
    (lambda: build_lattice("hcp", 30, 1.0), "or give repeat = [n1, n2, n3] for N = 4 n1 n2 n3"),
    (lambda: repeat_cell(bulk("Cu", "fcc", a=3.6), (2, 2, 2)),
     "freeflow needs an orthorhombic cell"),
])
def test_bad_lattice_input(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def definition(**lattice):
    return {"name": "lj_box", "potential": {"kind": "lennard_jones", "epsilon": 1.0,
                                             "sigma": 1.0, "cutoff": 2.5},
            "state": {"temperature": 1.0, "number_density": 1.1},
            "lattice": {"kind": "hcp", "symbol": "Ar", **lattice}}


def test_system_file_repeat_and_c_over_a():
    system = system_from_definition(definition(repeat=[3, 2, 2], c_over_a=1.60))
    assert system.num_particles == 48
    edges = system.box / np.array([3, 2, 2])
    assert edges[1] / edges[0] == pytest.approx(math.sqrt(3)) and edges[2] / edges[0] == (
        pytest.approx(1.60))
    with pytest.raises(ValueError, match="lj_box: a hcp lattice of repeat = .3, 2, 2. cells "
                                         "holds N = 48 .4 per cell., not num_particles = 32"):
        system_from_definition(definition(repeat=[3, 2, 2], num_particles=32))
