"""The thermodynamic limit of ``beta F / N`` from estimates at several sizes of one crystal.

For a crystal of ``N`` particles in a periodic box with one particle held on its site (the
counting of ``freeflow.estimators.conventions``), at fixed density and temperature,

    beta F / N = beta f + a ln(N) / N + b / N + O(N^-5/3),          a = -1/2.

``a`` is not a fit parameter: it comes from the harmonic part of the crystal and is the same
for every crystal and potential. Holding one particle fixed removes the three translations,
and the determinant of the Hessian with that particle's rows removed is the product of the
``3N - 3`` non-zero mode stiffnesses divided by ``N^3``: ``-(3/2) ln(N) / N``. The three
acoustic branches lose their ``k = 0`` mode, whose neighbours on the grid of allowed wave
vectors sit at ``|k| ~ 2 pi / L ~ N^(-1/3)``; summing ``ln(c k^2)`` over the grid instead of
integrating it over the Brillouin zone adds ``(2/3) ln N`` per branch, ``+ ln(N) / N`` in all.
Anharmonic terms and the counting's ``ln(m) / N`` change only ``b`` (docs/sweep.md derives
this in full; ``tests/estimators/test_finite_size.py`` checks ``a`` on the exact harmonic
Lennard-Jones crystal from N = 4000 to 256000).

``fit_finite_size`` is a weighted least-squares fit of ``beta f`` and ``b`` (and ``a`` if
asked) to values with independent standard errors; ``thermodynamic_limit`` does the same for
``FreeEnergy`` results.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats

from freeflow.estimators.result import FreeEnergy

__all__ = ["LOG_COEFFICIENT", "ThermodynamicLimit", "fit_finite_size", "limit_difference",
           "thermodynamic_limit"]

#: ``a`` of ``beta F / N = beta f + a ln(N) / N + b / N`` for a crystal with one particle held.
LOG_COEFFICIENT = -0.5
#: Below this p-value the finite-size form does not describe the values within their errors.
POOR_FIT_P_VALUE = 0.01


@dataclasses.dataclass(frozen=True)
class ThermodynamicLimit:
    """``beta f = lim beta F / N`` of one crystal at one state point, and the fit behind it.

    Attributes:
      value: ``beta f`` (dimensionless, the counting of the values fitted).
      stderr: its standard error, propagated from the values' errors (not scaled by the fit's
        chi-squared; see ``p_value``).
      log_coefficient: ``a``; ``LOG_COEFFICIENT`` unless fitted.
      log_coefficient_stderr: its error; ``None`` when it was held at ``LOG_COEFFICIENT``.
      inverse_coefficient: ``b`` and ``inverse_coefficient_stderr`` its error.
      covariance: ``[P, P]`` covariance of the fitted parameters (``beta f``, ``b``, then ``a``
        if fitted).
      num_particles: ``[S]`` the sizes fitted; ``values`` and ``stderrs`` their ``beta F / N``.
      residuals: ``[S]`` (value - fit) / stderr.
      chi2: sum of the squared residuals; ``dof`` its degrees of freedom (sizes less
        parameters).
      p_value: the chance of a chi-squared at least this large if the form holds and the
        errors are right; ``None`` when ``dof`` is 0 (the fit passes through every value and
        checks nothing).
      system: a label of the crystal; ``counting``: the counting of the values, or ``None``.
    """

    value: float
    stderr: float
    log_coefficient: float
    log_coefficient_stderr: float | None
    inverse_coefficient: float
    inverse_coefficient_stderr: float
    covariance: np.ndarray = dataclasses.field(repr=False)
    num_particles: tuple[int, ...]
    values: tuple[float, ...]
    stderrs: tuple[float, ...]
    residuals: tuple[float, ...]
    chi2: float
    dof: int
    p_value: float | None
    system: str = ""
    counting: str | None = None

    @property
    def poor_fit(self) -> bool:
        """True when the form does not describe the values within their errors."""
        return self.p_value is not None and self.p_value < POOR_FIT_P_VALUE

    def at(self, num_particles: int) -> float:
        """The fitted ``beta F / N`` at ``num_particles``."""
        n = float(num_particles)
        return (self.value + self.log_coefficient * math.log(n) / n
                + self.inverse_coefficient / n)

    def to_dict(self) -> dict:
        """Plain JSON-able data; the limit is ``beta_f_limit`` with its ``stderr``."""
        return {"system": self.system, "counting": self.counting,
                "beta_f_limit": self.value, "stderr": self.stderr,
                "form": "beta F / N = beta_f_limit + a ln(N) / N + b / N",
                "a": self.log_coefficient, "a_stderr": self.log_coefficient_stderr,
                "a_fitted": self.log_coefficient_stderr is not None,
                "b": self.inverse_coefficient, "b_stderr": self.inverse_coefficient_stderr,
                "covariance": self.covariance.tolist(),
                "chi2": self.chi2, "dof": self.dof, "p_value": self.p_value,
                "poor_fit": self.poor_fit,
                "sizes": [{"num_particles": n, "beta_f_per_particle": v, "stderr": e,
                           "fit": self.at(n), "residual_in_stderr": r}
                          for n, v, e, r in zip(self.num_particles, self.values,
                                                self.stderrs, self.residuals)]}


def fit_finite_size(num_particles: Sequence[int], values: Sequence[float],
                    stderrs: Sequence[float], *, fit_log_coefficient: bool = False,
                    system: str = "", counting: str | None = None) -> ThermodynamicLimit:
    """Fit ``beta F / N = beta f + a ln(N) / N + b / N`` to independent estimates.

    Args:
      num_particles: ``[S]`` distinct sizes ``N`` (particles) of one crystal at one state point.
      values: ``[S]`` ``beta F / N`` (dimensionless) at those sizes, one counting.
      stderrs: ``[S]`` their standard errors (positive; the estimates independent).
      fit_log_coefficient: fit ``a`` as well (needs four sizes for a check of the fit);
        otherwise ``a = LOG_COEFFICIENT``.
      system, counting: labels carried into the result.

    Returns:
      ``ThermodynamicLimit`` with ``beta f``, its error and the fit's chi-squared.
    """
    n = np.asarray(num_particles, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    e = np.asarray(stderrs, dtype=np.float64)
    if not (n.ndim == y.ndim == e.ndim == 1 and len(n) == len(y) == len(e)):
        raise ValueError("num_particles, values and stderrs must be 1-d and of one length; got "
                         f"shapes {n.shape}, {y.shape}, {e.shape}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(e)) and np.all(e > 0)):
        raise ValueError("every value must be finite and every standard error finite and "
                         "positive")
    if not np.all(np.isfinite(n)) or np.any(n < 2) or np.any(n != np.round(n)):
        raise ValueError(f"sizes must be whole numbers of at least 2 particles; got {n.tolist()}")
    if len(np.unique(n)) != len(n):
        raise ValueError(f"give each size once (combine repeated estimates first); got "
                         f"{sorted(n.astype(int).tolist())}")
    columns = [np.ones_like(n), 1.0 / n] + ([np.log(n) / n] if fit_log_coefficient else [])
    if len(n) < len(columns):
        raise ValueError(f"a fit of {len(columns)} parameters needs at least {len(columns)} "
                         f"sizes; got {len(n)} ({sorted(n.astype(int).tolist())})")
    design = np.stack(columns, axis=1)
    target = y if fit_log_coefficient else y - LOG_COEFFICIENT * np.log(n) / n
    weighted = design / e[:, None]
    # Least squares on the whitened system: the covariance is (X^T W X)^-1 with W = 1/e^2.
    params, *_ = np.linalg.lstsq(weighted, target / e, rcond=None)
    covariance = np.linalg.inv(weighted.T @ weighted)
    residuals = (target - design @ params) / e
    chi2 = float(residuals @ residuals)
    dof = len(n) - len(columns)
    errors = np.sqrt(np.diag(covariance))
    return ThermodynamicLimit(
        value=float(params[0]), stderr=float(errors[0]),
        log_coefficient=float(params[2]) if fit_log_coefficient else LOG_COEFFICIENT,
        log_coefficient_stderr=float(errors[2]) if fit_log_coefficient else None,
        inverse_coefficient=float(params[1]), inverse_coefficient_stderr=float(errors[1]),
        covariance=covariance, num_particles=tuple(int(k) for k in n),
        values=tuple(float(v) for v in y), stderrs=tuple(float(s) for s in e),
        residuals=tuple(float(r) for r in residuals), chi2=chi2, dof=dof,
        p_value=float(stats.chi2.sf(chi2, dof)) if dof > 0 else None,
        system=system, counting=counting)


def thermodynamic_limit(results: Sequence[FreeEnergy], *, fit_log_coefficient: bool = False,
                        system: str | None = None) -> ThermodynamicLimit:
    """``beta f`` from ``FreeEnergy`` results of one crystal at several sizes.

    Each result must carry its size (``details["num_particles"]``) and counting
    (``details["counting"]``), as the stored result rows do; all must share one counting.
    ``system`` labels the crystal (default: the results' names joined).
    """
    if len(results) < 2:
        raise ValueError(f"the thermodynamic limit needs results at two sizes or more; got "
                         f"{len(results)}")
    sizes, countings = [], set()
    for r in results:
        size = r.details.get("num_particles")
        if size is None:
            raise ValueError(f"the result for {r.system} does not record its num_particles")
        sizes.append(int(size))
        countings.add(r.details.get("counting"))
    if len(countings) > 1:
        raise ValueError(f"the results are in different countings ({sorted(map(str, countings))});"
                         " recount them to one first (FreeEnergy.recounted)")
    return fit_finite_size(sizes, [r.value for r in results], [r.stderr for r in results],
                           fit_log_coefficient=fit_log_coefficient,
                           system=system or ", ".join(r.system for r in results),
                           counting=countings.pop())


def limit_difference(limit_a: ThermodynamicLimit, limit_b: ThermodynamicLimit
                     ) -> tuple[float, float]:
    """``beta (f_B - f_A)`` and its standard error, for limits fitted to independent
    estimates (errors added in quadrature)."""
    if limit_a.counting != limit_b.counting:
        raise ValueError(f"the limits are in different countings ({limit_a.counting}, "
                         f"{limit_b.counting})")
    return limit_b.value - limit_a.value, math.hypot(limit_a.stderr, limit_b.stderr)
