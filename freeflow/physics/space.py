"""Geometry of an orthorhombic periodic box (a 3-torus).

Positions are Cartesian, shape ``[..., N, 3]``, in the system's length unit (sigma for
Lennard-Jones, Angstrom for monatomic water). ``box`` is the vector of the three edge lengths
``(Lx, Ly, Lz)``; the box spans ``[0, L)`` along each axis.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np


def wrap(positions, box):
    """Map positions into the primary box ``[0, L)`` along every axis."""
    return jnp.mod(positions, box)


def minimum_image(displacement, box):
    """Shift each displacement vector by box vectors into ``[-L/2, L/2]`` per axis."""
    return displacement - box * jnp.round(displacement / box)


def image_shifts(box, cutoff: float) -> np.ndarray:
    """Lattice translations ``n * L`` that may bring a minimum-image partner inside ``cutoff``.

    A minimum-image displacement has every component in ``[-L/2, L/2]``, so the image shifted by
    ``n L`` along an axis is at least ``(|n| - 1/2) L`` away along that axis; images with
    ``|n| > cutoff / L + 1/2`` can never be inside the cutoff. For boxes whose edges are all at
    least ``2 * cutoff`` this returns only the zero shift.

    Returns:
      ``[S, 3]`` numpy array of Cartesian shifts, the zero shift first.
    """
    box = np.asarray(box, dtype=np.float64)
    n_max = _largest_shifts(box, cutoff).astype(int)
    ranges = [range(-n, n + 1) for n in n_max]
    shifts = [s for s in itertools.product(*ranges) if any(s)]
    shifts = [(0, 0, 0)] + sorted(shifts, key=lambda s: (sum(abs(c) for c in s), s))
    return np.asarray(shifts, dtype=np.float64) * box


def count_image_shifts(box, cutoff: float) -> float:
    """How many shifts ``image_shifts(box, cutoff)`` returns, by arithmetic alone (a float, so
    that a box far smaller than the cutoff gives a huge count rather than an overflow)."""
    return float(np.prod(2.0 * _largest_shifts(np.asarray(box, dtype=np.float64), cutoff) + 1.0))


def _largest_shifts(box: np.ndarray, cutoff: float) -> np.ndarray:
    """Largest ``|n|`` per axis whose image can come inside ``cutoff`` (see ``image_shifts``)."""
    return np.floor(cutoff / box + 0.5)
