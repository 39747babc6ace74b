"""Thermodynamics of one crystal along temperature, from independent annealing runs.

A temperature sweep (``freeflow.workflows.sweep``) gives, for each of ``R`` independent runs
``r`` and each requested temperature ``T_k``, an estimate ``ln Z_rk`` of ``ln Z_fixed(beta_k)``
(unbiased in ``Z``) and ``n`` equal-weight configurations of the crystal at ``T_k`` with their
potential energies ``U_rik``. This module turns them into per-particle quantities with error
bars and covariances:

* ``beta F / N`` at each temperature from ``ln Z_bar_k = ln mean_r Z_rk``
  (``freeflow.estimators.smc.combine_log_z``; convention of
  ``freeflow.estimators.conventions``). One run's ``ln Z_rk`` at all temperatures share the
  stages below ``T_k``, so their errors correlate; the delta method gives the covariance from
  the runs' relative weights ``w_rk = Z_rk / Z_bar_k`` (mean 1 over ``r``):
  ``cov(ln Z_bar_j, ln Z_bar_k) = cov_r(w_rj, w_rk) / R``, whose diagonal is
  ``combine_log_z``'s squared error. The error of ``F(T_1) - F(T_2)`` is then
  ``sqrt(var_1 + var_2 - 2 cov_12)``.
* ``U / N``: the mean potential energy of the final particles (energy unit), its error from
  the spread of the runs' means.
* ``C_v / N k_B = beta^2 Var(U) / N``, configurational: the variance of the potential energy
  within a run's population (the kinetic ``3/2`` per particle of a classical crystal is not
  included), averaged over runs; error from the runs' spread.
* ``S / N k_B = beta (U - F) / N``, configurational and in freeflow's convention of ``F``
  (which fixes the reference length ``Lambda``, not the thermal wavelength, and counts
  ``ln N!``): no kinetic part. Its error is that of the per-run combination (delta method),
  so the correlation between a run's energy and its weight is kept.
* ``P = N k_B T / V - <dU/dV>`` (``freeflow.physics.pressure``) when the configurations'
  volume derivatives are given: the ideal term plus the mean over the final particles, its
  error from the spread of the runs' means. In energy / length^3, and in bar for physical
  units.

``beta_f_per_particle`` is reported in the ``"bravais"`` counting; ``Curve.recounted`` gives
the ``"exact"`` one (``beta F / N`` lower by ``ln m / N``, ``S / N`` higher by as much).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from freeflow.estimators.conventions import (beta_f_from_ln_z_fixed, convert_counting,
                                             translation_multiplicity)
from freeflow.estimators.smc import combine_log_z

__all__ = ["Curve", "DeltaCurve", "curve_from_chains", "curve_from_runs", "delta_f_curve"]


@dataclasses.dataclass(frozen=True)
class Curve:
    """Per-particle thermodynamics of one crystal at ``K`` temperatures (module docstring).

    Arrays are ``[K]`` (``covariance``: ``[K, K]``, of ``beta_f_per_particle``). Energies are
    in ``energy_unit``, ``temperatures`` in ``temperature_unit``, ``beta`` in inverse energy
    units; ``s_per_particle`` and ``cv_per_particle`` in ``k_B``. ``details`` holds the runs'
    ``ln Z_fixed`` and the annealing record.
    """

    system: str
    num_particles: int
    temperatures: np.ndarray
    beta: np.ndarray
    beta_f_per_particle: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    u_per_particle: np.ndarray
    u_stderr: np.ndarray
    s_per_particle: np.ndarray
    s_stderr: np.ndarray
    cv_per_particle: np.ndarray
    cv_stderr: np.ndarray
    temperature_unit: str
    energy_unit: str
    counting: str
    lattice_multiplicity: int | None
    pressure: np.ndarray | None = None
    pressure_stderr: np.ndarray | None = None
    pressure_unit: str | None = None
    bar_per_pressure_unit: float | None = None
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def f_per_particle(self) -> np.ndarray:
        """``F / N`` in the energy unit: ``(beta F / N) / beta``."""
        return self.beta_f_per_particle / self.beta

    @property
    def f_stderr(self) -> np.ndarray:
        return self.stderr / self.beta

    def recounted(self, counting: str) -> "Curve":
        """The same curve under another counting (``freeflow.estimators.conventions``): a
        constant shift of ``beta F / N`` by ``-ln m / N`` (exact) and of ``S / N`` by the
        opposite; errors unchanged. ``lattice_multiplicity`` ``None`` (a curve read from an
        older record) allows only the curve's own counting."""
        if counting == self.counting:
            return self
        if self.lattice_multiplicity is None:
            raise ValueError(f"{self.system}'s curve was recorded in the {self.counting} "
                             f"counting without its lattice multiplicity; ask for "
                             f"--counting {self.counting}, or sweep it again")
        shift = convert_counting(0.0, self.num_particles, self.lattice_multiplicity,
                                 self.counting, counting)
        return dataclasses.replace(self, beta_f_per_particle=self.beta_f_per_particle + shift,
                                   s_per_particle=self.s_per_particle - shift,
                                   counting=counting)

    def rows(self) -> list[dict]:
        """One JSON-ready dict per temperature, under self-explaining names."""
        columns = {"temperature": self.temperatures, "beta": self.beta,
                   "beta_f_per_particle": self.beta_f_per_particle, "stderr": self.stderr,
                   "f_per_particle": self.f_per_particle, "f_stderr": self.f_stderr,
                   "u_per_particle": self.u_per_particle, "u_stderr": self.u_stderr,
                   "s_per_particle": self.s_per_particle, "s_stderr": self.s_stderr,
                   "cv_per_particle": self.cv_per_particle, "cv_stderr": self.cv_stderr}
        if self.pressure is not None:
            columns |= {"pressure": self.pressure, "pressure_stderr": self.pressure_stderr}
            if self.bar_per_pressure_unit is not None:
                columns |= {"pressure_bar": self.pressure * self.bar_per_pressure_unit,
                            "pressure_bar_stderr":
                                self.pressure_stderr * self.bar_per_pressure_unit}
        return [{name: float(values[k]) for name, values in columns.items()}
                for k in range(len(self.temperatures))]

    def difference_stderr(self, i: int, j: int) -> float:
        """Standard error of ``beta F / N`` at temperature ``j`` minus that at ``i``, with the
        correlation of the two (``covariance``)."""
        c = self.covariance
        return float(math.sqrt(max(c[i, i] + c[j, j] - 2.0 * c[i, j], 0.0)))


def _weights_covariance(log_z):
    """``(ln Z_bar [K], its covariance [K, K], the relative weights w [R, K])`` of per-run
    ``ln Z`` ``[R, K]``; the diagonal equals ``combine_log_z``'s squared error."""
    runs = log_z.shape[0]
    mean = np.array([combine_log_z(column)[0] for column in log_z.T])
    weights = np.exp(log_z - mean)
    return mean, np.cov(weights, rowvar=False, ddof=1).reshape(len(mean), len(mean)) / runs, \
        weights


def curve_from_runs(system, temperatures, log_z, energies, *, volume_derivatives=None,
                    details=None) -> Curve:
    """The ``Curve`` of a system from its SMC runs (module docstring).

    Args:
      system: the ``System`` (any of its temperatures: only N, the box, the lattice and the
        units are read).
      temperatures: ``[K]`` the temperatures of the columns.
      log_z: ``[R, K]`` each run's ``ln Z_fixed`` at each temperature (R >= 2).
      energies: ``[R, n, K]`` potential energies (energy unit) of each run's ``n``
        equal-weight final particles at each temperature.
      volume_derivatives: ``[R, n, K]`` ``dU/dV`` of the same configurations
        (energy / length^3), for the pressure; ``None``: no pressure.
    """
    log_z = np.asarray(log_z, np.float64)
    energies = _checked_groups(energies, volume_derivatives, log_z.shape)
    ln_z, cov_ln_z, weights = _weights_covariance(log_z)
    beta = np.array([system.units.beta(t) for t in temperatures])
    u_runs = energies.mean(axis=1) / system.num_particles          # [R, K]
    # Per-run influence of S = beta U / N - beta F / N (delta method, module docstring).
    influence = beta * (u_runs - u_runs.mean(axis=0)) + (weights - 1.0) / system.num_particles
    s_stderr = influence.std(axis=0, ddof=1) / math.sqrt(log_z.shape[0])
    return _curve(system, temperatures, ln_z, cov_ln_z, energies, volume_derivatives, s_stderr,
                  {"ln_z_fixed_runs": log_z.tolist(), **(details or {})})


def curve_from_chains(system, temperatures, ln_z_fixed, ln_z_covariance, energies, *,
                      volume_derivatives=None, details=None) -> Curve:
    """The ``Curve`` of a system from ``ln Z_fixed`` at every temperature with its covariance
    (an MBAR temperature ladder anchored at one absolute value, say) and independent Markov
    chains at every temperature for the averages.

    Args:
      system, temperatures: as ``curve_from_runs``.
      ln_z_fixed: ``[K]``; ln_z_covariance: ``[K, K]``, its covariance.
      energies: ``[C, S, K]`` potential energies of ``S`` samples of each of ``C >= 2``
        independent chains at each temperature. The chains' means give the errors of ``U``,
        ``C_v`` and ``P`` (honest for correlated samples as long as each chain is long
        against its correlation time).
      volume_derivatives: ``[C, S, K]`` ``dU/dV`` of the same samples, or ``None``.

    ``S / N``'s error adds the errors of ``beta U / N`` and ``beta F / N`` in quadrature,
    treating them as independent (they come from different samples but for the ladder's
    reweighting).
    """
    energies = _checked_groups(energies, volume_derivatives,
                               (np.shape(energies)[0], len(temperatures)))
    return _curve(system, temperatures, np.asarray(ln_z_fixed, np.float64),
                  np.asarray(ln_z_covariance, np.float64), energies, volume_derivatives, None,
                  dict(details or {}))


def _checked_groups(energies, volume_derivatives, shape) -> np.ndarray:
    """``energies`` ``[G, n, K]`` as float64, refused unless ``G`` and ``K`` match ``shape``
    (``(groups, temperatures)``, at least 2 groups) and every value is finite."""
    energies = np.asarray(energies, np.float64)
    groups, k = shape
    if groups < 2 or energies.ndim != 3 or energies.shape[0] != groups \
            or energies.shape[2] != k:
        raise ValueError(f"need [R >= 2, K] ln Z and [R, n, K] energies; got {shape} and "
                         f"{energies.shape}")
    if not np.all(np.isfinite(energies)):
        raise ValueError("a configuration's energy is not finite (it left the crystal "
                         "region); use more particles or MCMC steps")
    if volume_derivatives is not None and np.shape(volume_derivatives) != energies.shape:
        raise ValueError(f"volume_derivatives must have the energies' shape "
                         f"{energies.shape}; got {np.shape(volume_derivatives)}")
    return energies


def _curve(system, temperatures, ln_z, cov_ln_z, energies, volume_derivatives, s_stderr,
           details) -> Curve:
    """The ``Curve`` from ``ln Z_fixed`` ``[K]`` with its covariance and ``G`` independent
    groups (runs or chains) of configurations ``[G, n, K]``. ``s_stderr`` ``None``: the errors
    of ``beta U / N`` and ``beta F / N`` in quadrature."""
    temperatures = np.asarray(temperatures, np.float64)
    n, volume = system.num_particles, float(np.prod(system.box))
    units = system.units
    beta = np.array([units.beta(t) for t in temperatures])
    beta_f = np.array([beta_f_from_ln_z_fixed(v, n, volume, units.reference_length)
                       for v in ln_z])
    covariance = cov_ln_z / n**2
    u_groups = energies.mean(axis=1) / n                             # [G, K]
    cv_groups = beta**2 * energies.var(axis=1, ddof=1) / n           # [G, K]
    u = u_groups.mean(axis=0)
    root = math.sqrt(energies.shape[0])
    u_stderr = u_groups.std(axis=0, ddof=1) / root
    if s_stderr is None:
        s_stderr = np.hypot(beta * u_stderr, np.sqrt(np.diag(covariance)))
    pressure = {}
    if volume_derivatives is not None:
        volume_derivatives = np.asarray(volume_derivatives, np.float64)
        if not np.all(np.isfinite(volume_derivatives)):
            raise ValueError("a configuration's dU/dV is not finite; check the potential "
                             "in a box scaled by 1 +- 1e-5")
        p_groups = n / (beta * volume) - volume_derivatives.mean(axis=1)   # [G, K]
        pressure = dict(pressure=p_groups.mean(axis=0),
                        pressure_stderr=p_groups.std(axis=0, ddof=1) / root,
                        pressure_unit=units.pressure,
                        bar_per_pressure_unit=units.bar_per_pressure_unit)
    return Curve(
        system=system.name, num_particles=n, temperatures=temperatures, beta=beta,
        beta_f_per_particle=beta_f, stderr=np.sqrt(np.diag(covariance)),
        covariance=covariance, u_per_particle=u,
        u_stderr=u_stderr,
        s_per_particle=beta * u - beta_f, s_stderr=s_stderr,
        cv_per_particle=cv_groups.mean(axis=0), cv_stderr=cv_groups.std(axis=0, ddof=1) / root,
        temperature_unit=units.temperature, energy_unit=units.energy, counting="bravais",
        lattice_multiplicity=translation_multiplicity(system.lattice, system.box),
        **pressure, details=details)


@dataclasses.dataclass(frozen=True)
class DeltaCurve:
    """``beta (F_B - F_A) / N`` of two crystals along the same temperatures.

    Attributes:
      systems: ``(A, B)``; the difference is B minus A.
      temperatures, beta: ``[K]``.
      delta_beta_f_per_particle, stderr: ``[K]``; the two curves' runs are independent, so
        the variances add (``covariance = cov_A + cov_B``, ``[K, K]``).
      crossings: one dict per sign change between neighbouring temperatures:
        ``temperature`` (linear interpolation of the difference), ``stderr`` (delta method,
        with the covariance of the two neighbouring differences) and ``between``.
    """

    systems: tuple
    temperatures: np.ndarray
    beta: np.ndarray
    delta_beta_f_per_particle: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray
    temperature_unit: str
    energy_unit: str
    crossings: list

    @property
    def delta_f_per_particle(self) -> np.ndarray:
        """``(F_B - F_A) / N`` in the energy unit."""
        return self.delta_beta_f_per_particle / self.beta

    def rows(self) -> list[dict]:
        return [{"temperature": float(t), "delta_beta_f_per_particle": float(d),
                 "stderr": float(e), "delta_f_per_particle": float(d / b),
                 "delta_f_stderr": float(e / b)}
                for t, b, d, e in zip(self.temperatures, self.beta,
                                      self.delta_beta_f_per_particle, self.stderr)]


def _crossing(t, d, c, i):
    """The zero of the line through ``(t_i, d_i)`` and ``(t_{i+1}, d_{i+1})`` with its error
    from the covariance ``c`` of the differences."""
    t1, t2, d1, d2 = t[i], t[i + 1], d[i], d[i + 1]
    span, gap = t2 - t1, d1 - d2
    value = t1 + span * d1 / gap
    grad = np.array([-span * d2 / gap**2, span * d1 / gap**2])
    block = c[np.ix_([i, i + 1], [i, i + 1])]
    return {"temperature": float(value), "stderr": float(math.sqrt(max(grad @ block @ grad,
                                                                       0.0))),
            "between": [float(t1), float(t2)]}


def delta_f_curve(curve_a: Curve, curve_b: Curve) -> DeltaCurve:
    """``beta (F_B - F_A) / N`` at every temperature of two curves of independent runs, and
    where it changes sign (``DeltaCurve``). Raises ``ValueError`` unless both have the same
    temperatures, units and counting."""
    if (len(curve_a.temperatures) != len(curve_b.temperatures)
            or not np.allclose(curve_a.temperatures, curve_b.temperatures, rtol=0, atol=1e-9)):
        raise ValueError(f"{curve_a.system} and {curve_b.system} were swept over different "
                         "temperatures; sweep both over the same --temperatures")
    for field in ("temperature_unit", "energy_unit", "counting"):
        if getattr(curve_a, field) != getattr(curve_b, field):
            raise ValueError(f"{curve_a.system} and {curve_b.system} differ in {field} "
                             f"({getattr(curve_a, field)} and {getattr(curve_b, field)}); "
                             "compare crystals of the same potential and counting")
    t = curve_a.temperatures
    d = curve_b.beta_f_per_particle - curve_a.beta_f_per_particle
    c = curve_a.covariance + curve_b.covariance
    crossings = [_crossing(t, d, c, i) for i in range(len(t) - 1)
                 if d[i] != d[i + 1] and (d[i] == 0.0 or np.sign(d[i]) * np.sign(d[i + 1]) < 0)]
    return DeltaCurve(systems=(curve_a.system, curve_b.system), temperatures=t,
                      beta=curve_a.beta, delta_beta_f_per_particle=d,
                      stderr=np.sqrt(np.diag(c)), covariance=c,
                      temperature_unit=curve_a.temperature_unit,
                      energy_unit=curve_a.energy_unit, crossings=crossings)
