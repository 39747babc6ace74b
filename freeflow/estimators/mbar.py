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

__all__ = ["linear_path_mbar", "mbar", "mbar_states", "pymbar_guard", "uncorrelated_indices"]


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


def mbar_states(u_kn, n_k, anchor: int = 0, *, uncertainty: bool = True
                ) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Every state's reduced free energy relative to state ``anchor``, with their covariance.

    Args: as ``mbar``; ``anchor`` indexes the state whose ``f`` is 0; ``uncertainty=False``
    skips the covariance and the overlap (a bootstrap replicate needs only ``f``).

    Returns:
      ``(f [K], covariance [K, K], smallest neighbour overlap)``: ``f_k - f_anchor`` and the
      covariance of those differences, from pymbar's pairwise errors ``d_jk`` of ``f_k - f_j``:
      ``cov_jk = (d_aj^2 + d_ak^2 - d_jk^2) / 2`` (zero in the anchor's row and column).
      pymbar's errors are asymptotic: with little overlap between states they run small.
    """
    u_kn = np.asarray(u_kn, dtype=np.float64)
    n_k = np.asarray(n_k)
    if u_kn.ndim != 2 or len(n_k) != len(u_kn) or int(n_k.sum()) != u_kn.shape[1]:
        raise ValueError(f"u_kn must be [K, sum(n_k)]; got {u_kn.shape} for n_k = "
                         f"{n_k.tolist()}")
    if not np.all(np.isfinite(u_kn)):
        raise FloatingPointError("non-finite reduced energies in the MBAR matrix")
    with pymbar_guard() as pymbar:
        solver = pymbar.MBAR(u_kn, n_k, solver_protocol="robust")
        out = solver.compute_free_energy_differences(compute_uncertainty=uncertainty)
        overlap = solver.compute_overlap()["matrix"] if uncertainty else None
    f = np.asarray(out["Delta_f"][anchor], np.float64)
    if not uncertainty:
        return f, None, None
    d2 = np.asarray(out["dDelta_f"], np.float64) ** 2
    covariance = 0.5 * (d2[anchor][:, None] + d2[anchor][None, :] - d2)
    k = len(n_k)
    neighbour = min(float(overlap[i, i + 1]) for i in range(k - 1)) if k > 1 else 1.0
    return f, covariance, neighbour


def linear_path_mbar(components: list[np.ndarray], lambdas, beta: float) -> ReducedFreeEnergy:
    """MBAR on the linear path ``U_l = (1 - l) U_ref + l U_tgt``.

    Args:
      components: per state ``[n_k, 2]`` energies (reference, target) of its (decorrelated)
        samples, energy unit.
      lambdas: ``[K]``, from 0 (the reference) to 1 (the target). beta: inverse energy unit.

    Returns:
      ``delta_f = f_target - f_reference = -ln(Z_target / Z_reference)`` (reduced units). A
      NaN target component (a configuration the target's states exclude) is allowed in the
      reference state's samples only.
    """
    lambdas = np.asarray(lambdas, dtype=np.float64)
    all_c = np.concatenate(components).astype(np.float64)  # [n, 2]
    n_k = np.array([len(c) for c in components])
    # A NaN target energy marks a configuration outside the target's region (a crystal's
    # stray, see System.energy_fn): every state with lambda > 0 excludes it (its HMC chains
    # reject such moves), so its reduced energy there is +inf, and only the reference counts it.
    target = np.where(np.isnan(all_c[:, 1]), np.inf, all_c[:, 1])
    with np.errstate(invalid="ignore"):
        target_part = np.where(lambdas[:, None] > 0, lambdas[:, None] * target[None, :], 0.0)
    u_kn = beta * ((1.0 - lambdas)[:, None] * all_c[None, :, 0] + target_part)
    return mbar(u_kn, n_k)


def uncorrelated_indices(du) -> tuple[list[np.ndarray], float]:
    """Indices of an uncorrelated subsample of each chain of ``du [C, S]`` (the derivative of
    the reduced energy along the path, what MBAR needs), and the statistical inefficiency
    ``g`` (pymbar's, over all chains) that spaces them. A constant series is kept whole
    (``g = 1``)."""
    du = np.asarray(du)
    s = du.shape[1]
    if np.allclose(du, du[:, :1]):
        return [np.arange(s) for _ in range(du.shape[0])], 1.0
    with pymbar_guard() as pymbar:
        timeseries = pymbar.timeseries
        g = float(timeseries.statistical_inefficiency_multiple([row for row in du]))
        # pymbar picks indices spaced by about g (not ceil(g)), keeping ~S/g samples per chain.
        return [np.asarray(timeseries.subsample_correlated_data(row, g=g)) for row in du], g
