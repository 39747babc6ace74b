"""The result types of every estimator.

``FreeEnergy`` is the absolute ``beta F / N`` of one system, whatever the method (LFEP, LBAR,
MBAR, ...). ``ReducedFreeEnergy`` is the dimensionless ``Delta f = -ln(Z_1 / Z_0)`` between two
thermodynamic states, what BAR and MBAR compute before the conventions turn it into ``beta F /
N``. ``FreeEnergyDifference`` is ``beta (F_B - F_A) / N`` between two systems.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["FreeEnergy", "FreeEnergyDifference", "ReducedFreeEnergy", "delta_f"]

_OPTIONAL = ("ess", "num_states", "energy_evaluations", "wall_time", "log_z")


@dataclasses.dataclass(frozen=True)
class FreeEnergy:
    """A free-energy estimate from any of freeflow's methods.

    Attributes:
      value: ``beta F / N`` (dimensionless, convention of ``freeflow.estimators.conventions``).
      stderr: its standard error.
      method: ``"lfep"``, ``"lbar"``, ``"mbar"`` or ``"smc"``.
      system: system name.
      num_samples: samples entering the estimator (after decorrelation for MBAR).
      ess: effective sample size as a fraction of ``num_samples`` (LFEP), else ``None``.
      num_states: thermodynamic states combined (MBAR, LBAR), else ``None``.
      energy_evaluations: target (and reference) energy evaluations spent, warm-up included.
      wall_time: seconds.
      log_z: the full configurational ``ln Z`` behind ``value``.
      work: the works ``beta Phi`` of the model samples (LFEP), float64, or ``None``.
      samples: ``[S, N, 3]`` equal-weight target samples the method produced on the way
        (SMC's final particles), or ``None``.
      details: method-specific numbers (overlaps, spring constants, multiplicity, ...).
    """

    value: float
    stderr: float
    method: str
    system: str
    num_samples: int
    ess: float | None = None
    num_states: int | None = None
    energy_evaluations: int | None = None
    wall_time: float | None = None
    log_z: float | None = None
    work: Any = dataclasses.field(default=None, repr=False, compare=False)
    samples: Any = dataclasses.field(default=None, repr=False, compare=False)
    details: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able summary (the works and samples are left out; ``details`` are merged
        in)."""
        out = {"system": self.system, "method": self.method, "beta_f_per_particle": self.value,
               "stderr": self.stderr, "num_samples": self.num_samples}
        for name in _OPTIONAL:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update(self.details)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FreeEnergy":
        """Inverse of ``to_dict``: keys that are not fields go back into ``details``."""
        core = {"system": data.get("system", ""), "method": data.get("method", ""),
                "value": float(data["beta_f_per_particle"]), "stderr": float(data["stderr"]),
                "num_samples": data.get("num_samples")}
        optional = {name: data[name] for name in _OPTIONAL if data.get(name) is not None}
        known = set(core) | set(optional) | {"beta_f_per_particle"}
        details = {k: v for k, v in data.items() if k not in known}
        return cls(**core, **optional, details=details)

    def __str__(self):
        ess = f", ESS {100 * self.ess:.1f}%" if self.ess is not None else ""
        return (f"{self.system} {self.method.upper()}: beta F / N = {self.value:.6f} "
                f"+- {self.stderr:.6f} ({self.num_samples} samples{ess})")


@dataclasses.dataclass(frozen=True)
class ReducedFreeEnergy:
    """``Delta f = f_1 - f_0 = -ln(Z_1 / Z_0)`` between two states (dimensionless, whole system).

    Attributes:
      delta_f: the estimate. stderr: its standard error.
      num_samples: samples entering the estimator (all states, after decorrelation).
      energy_evaluations: energy evaluations spent producing them, if known.
      details: estimator-specific numbers (overlaps, per-state diagnostics, ...).
    """

    delta_f: float
    stderr: float
    num_samples: int
    energy_evaluations: int | None = None
    details: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FreeEnergyDifference:
    """``beta (F_B - F_A) / N`` with the propagated standard error (independent estimates)."""

    value: float
    stderr: float
    a: str
    b: str

    def __str__(self):
        return f"beta (F[{self.b}] - F[{self.a}]) / N = {self.value:.6f} +- {self.stderr:.6f}"


def delta_f(result_a: FreeEnergy, result_b: FreeEnergy) -> FreeEnergyDifference:
    """``beta (F_B - F_A) / N`` per particle, errors added in quadrature."""
    return FreeEnergyDifference(value=result_b.value - result_a.value,
                                stderr=math.hypot(result_a.stderr, result_b.stderr),
                                a=result_a.system, b=result_b.system)
