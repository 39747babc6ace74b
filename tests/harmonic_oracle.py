"""The exact harmonic free energy of the Lennard-Jones FCC crystal (``lj_N``) at any size, by
lattice dynamics: an oracle independent of ``System.lattice_hessian``, for the finite-size
form of ``freeflow.estimators.finite_size``.

Tests import it as ``from harmonic_oracle import harmonic_beta_f`` (``tests/`` is on
``sys.path``, as for ``lammps_oracle``); ``bench/suite/finite_size_form.py`` puts ``tests/`` on
its path to do the same.
"""

import math

import numpy as np

# Lennard-Jones FCC, truncated and shifted at 2.7 sigma, density 1.28, beta = 0.5 (lj_N).
RHO, BETA, CUTOFF = 1.28, 0.5, 2.7


def fcc_force_constants():
    """Lattice vectors ``R [M, 3]`` within the cutoff, the pair force-constant tensors
    ``Phi(R) [M, 3, 3]``, the lattice energy per particle and the cubic cell's edge ``a``,
    for the LJ crystal."""
    a = (4 / RHO) ** (1 / 3)
    cell = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    m = np.arange(-6, 7)
    shifts = np.stack(np.meshgrid(m, m, m, indexing="ij"), -1).reshape(-1, 3)
    points = ((shifts[:, None, :] + cell[None]) * a).reshape(-1, 3)
    r = np.linalg.norm(points, axis=1)
    keep = (r > 1e-9) & (r < CUTOFF)
    vectors, r = points[keep], r[keep]
    u = 4 * (r**-12 - r**-6) - 4 * (CUTOFF**-12 - CUTOFF**-6)
    du = 4 * (-12 * r**-13 + 6 * r**-7)
    d2u = 4 * (156 * r**-14 - 42 * r**-8)
    unit = vectors / r[:, None]
    outer = unit[:, :, None] * unit[:, None, :]
    phi = d2u[:, None, None] * outer + (du / r)[:, None, None] * (np.eye(3) - outer)
    return vectors, phi, 0.5 * float(np.sum(u)), a


def harmonic_beta_f(cells: int) -> float:
    """``beta F / N`` of the harmonic LJ crystal of ``N = 4 cells^3`` particles, particle 0
    held, from the dynamical matrix on the box's allowed wave vectors (an implementation
    independent of ``System.lattice_hessian``).

    The Hessian's eigenvalues are those of ``D(k) = sum_R Phi(R) (1 - cos k.R)`` at the
    ``N`` wave vectors ``2 pi m / L`` distinct modulo the reciprocal lattice; the cube
    ``m in [0, 2 cells)^3`` holds each twice. With one particle held,
    ``ln Z_fixed = -beta U_0 + (3(N-1)/2) ln(2 pi / beta) - (1/2) sum' ln lambda
    + (3/2) ln N`` and ``beta F / N = -(1/N) ln((V/N) Z_fixed)`` (Lambda = 1)."""
    vectors, phi, u0, a = fcc_force_constants()
    n = 4 * cells**3
    box = cells * a
    m = np.arange(2 * cells)
    grid = np.stack(np.meshgrid(m, m, m, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[~(np.all(grid == 0, 1) | np.all(grid == cells, 1))]  # the two k = 0 copies
    total = 0.0
    for chunk in np.array_split(grid, max(1, len(grid) // 20000)):
        phase = 1 - np.cos((2 * np.pi / box) * chunk @ vectors.T)
        sign, logdet = np.linalg.slogdet(np.einsum("kr,rab->kab", phase, phi))
        assert np.all(sign > 0)
        total += float(logdet.sum())
    sum_ln_lambda = total / 2
    ln_z_fixed = (-BETA * u0 * n + 1.5 * (n - 1) * math.log(2 * math.pi / BETA)
                  - 0.5 * sum_ln_lambda + 1.5 * math.log(n))
    return -(math.log(box**3 / n) + ln_z_fixed) / n
