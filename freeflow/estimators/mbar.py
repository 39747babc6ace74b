"""MBAR on reduced energies (pymbar), and the guard that keeps pymbar from changing JAX.

``mbar(u_kn, n_k)`` combines samples of K thermodynamic states and returns the reduced free
energy of the last state relative to the first, with pymbar's standard error and the smallest
overlap between neighbouring states (a too-sparse path shows there). Building the states,
sampling them and turning the result into ``beta F / N`` is the MBAR baseline's job
(``freeflow.workflows.baseline``).

pymbar 4 switches JAX to float64 for the whole process when it is imported and when it
solves; every pymbar call in freeflow runs inside ``pymbar_guard``, which restores the previous
setting (and quiets pymbar's import banner). pymbar is only imported there.
"""

from __future__ import annotations

import contextlib
import logging

import jax
import numpy as np

from freeflow.estimators.result import ReducedFreeEnergy

__all__ = ["mbar", "pymbar_guard"]


@contextlib.contextmanager
def pymbar_guard():
    """Import pymbar quietly and undo its switch of JAX to float64 on exit.

    Yields the ``pymbar`` module.
    """
    previous = bool(jax.config.read("jax_enable_x64"))
    log = logging.getLogger("pymbar")
    level = log.level
    log.setLevel(logging.ERROR)  # pymbar warns about 64-bit JAX at import and first solve
    try:
        import pymbar  # deferred: heavy, and it flips JAX's float64 switch

        yield pymbar
    finally:
        jax.config.update("jax_enable_x64", previous)
        log.setLevel(level)


def mbar(u_kn, n_k) -> ReducedFreeEnergy:
    """MBAR estimate of ``f_{K-1} - f_0 = -ln(Z_{K-1} / Z_0)`` (dimensionless).

    Args:
      u_kn: ``[K, n]`` reduced energies ``beta_k U_k(x_n)`` of every sample in every state;
        ``+inf`` where a state excludes a sample (zero density there).
      n_k: ``[K]`` number of (decorrelated) samples drawn from each state, in the order of
        the columns of ``u_kn``.

    Returns:
      ``ReducedFreeEnergy`` whose ``details`` hold ``f_k`` (all states relative to state 0)
      and ``min_neighbour_overlap`` (the smallest overlap-matrix entry between states k and
      k + 1).
    """
    u_kn = np.asarray(u_kn, dtype=np.float64)
    n_k = np.asarray(n_k)
    if u_kn.ndim != 2 or len(n_k) != len(u_kn) or int(n_k.sum()) != u_kn.shape[1]:
        raise ValueError(f"u_kn must be [K, sum(n_k)]; got {u_kn.shape} for n_k = "
                         f"{n_k.tolist()}")
    if np.any(np.isnan(u_kn) | (u_kn == -np.inf)):
        raise FloatingPointError("NaN or -inf reduced energies in the MBAR matrix")
    # +inf is allowed (a sample another state excludes), but not in the state it came from.
    own = np.repeat(np.arange(len(n_k)), n_k)
    if not np.all(np.isfinite(u_kn[own, np.arange(u_kn.shape[1])])):
        raise FloatingPointError("a sample has an infinite reduced energy in its own state")
    with pymbar_guard() as pymbar:
        solver = pymbar.MBAR(u_kn, n_k, solver_protocol="robust")
        out = solver.compute_free_energy_differences(compute_uncertainty=True)
        overlap = solver.compute_overlap()["matrix"]
    k = len(n_k)
    neighbour = min(float(overlap[i, i + 1]) for i in range(k - 1)) if k > 1 else 1.0
    return ReducedFreeEnergy(delta_f=float(out["Delta_f"][0, -1]),
                             stderr=float(out["dDelta_f"][0, -1]), num_samples=int(n_k.sum()),
                             details={"f_k": [float(f) for f in out["Delta_f"][0]],
                                      "min_neighbour_overlap": neighbour})
