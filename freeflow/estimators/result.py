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

from freeflow.estimators.conventions import convert_counting

__all__ = ["FreeEnergy", "FreeEnergyDifference", "MIN_EFFECTIVE_SAMPLES", "PARETO_K_LIMIT",
           "ReducedFreeEnergy", "delta_f"]

_OPTIONAL = ("ess", "num_states", "energy_evaluations", "wall_time", "log_z")

#: Above this tail shape an importance-weight estimate and its error bar are not to be trusted
#: (Vehtari et al., "Pareto smoothed importance sampling": the weights' variance is infinite
#: beyond 0.5 and the estimate converges impractically slowly beyond 0.7).
PARETO_K_LIMIT = 0.7
#: Below this many effective samples (ESS x samples) a few weights decide the value and the
#: bootstrap error alike, whatever the tail.
MIN_EFFECTIVE_SAMPLES = 100
#: Methods whose value is an importance-weighted average of one set of samples, so that the
#: effective sample count and the weights' tail decide whether it can be trusted.
IMPORTANCE_METHODS = ("lfep",)
#: Entries of ``details`` that a change of counting moves as it moves the value (other
#: ``beta F / N``) or as it moves ``log_z`` (other ``ln Z``): ``FreeEnergy.recounted``.
_COUNTED_VALUES = ("reference_beta_f_per_particle",)
_COUNTED_LOG_Z = ("ln_z",)
#: Keys ``to_dict`` derives from the other fields; ``from_dict`` recomputes them.
_DERIVED = ("trustworthy", "untrustworthy_because", "effective_samples")


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

    @property
    def effective_samples(self) -> float | None:
        """``ess * num_samples``: the samples an importance-weighted estimate rests on."""
        if self.ess is None or self.num_samples is None:
            return None
        return self.ess * self.num_samples

    def untrustworthy_because(self) -> tuple[str, ...]:
        """Why this value and its error bar are not to be trusted; empty when they are.

        A value or error that is not finite is never trusted. An importance-weighted estimate
        (``IMPORTANCE_METHODS``) also needs ``MIN_EFFECTIVE_SAMPLES`` effective samples and a
        Pareto k of the weights' tail (``details["pareto_k"]``) at most ``PARETO_K_LIMIT``;
        a missing k counts against it.
        """
        reasons = []
        if not (math.isfinite(self.value) and math.isfinite(self.stderr)):
            reasons.append("the value or its standard error is not finite")
        if self.method in IMPORTANCE_METHODS:
            effective = self.effective_samples
            if effective is None or not effective >= MIN_EFFECTIVE_SAMPLES:
                shown = "unknown" if effective is None else f"{effective:.0f}"
                reasons.append(f"{shown} effective samples (fewer than "
                               f"{MIN_EFFECTIVE_SAMPLES})")
            k = self.details.get("pareto_k")
            if k is None or not math.isfinite(k):
                reasons.append("no Pareto k of the weights' tail")
            elif k > PARETO_K_LIMIT:
                reasons.append(f"the weights have a heavy tail (Pareto k {k:.2f} > "
                               f"{PARETO_K_LIMIT})")
        return tuple(reasons)

    def recounted(self, counting: str) -> "FreeEnergy":
        """This estimate under another counting of the crystal's regions (``"bravais"`` or
        ``"exact"``; ``freeflow.estimators.conventions``): ``exact = bravais - ln(m) / N``.

        The estimate must record its own counting, ``num_particles`` and
        ``lattice_multiplicity`` (``m``, the lattice's sites per primitive cell) in
        ``details``, as every workflow's result does. The standard error is unchanged.
        """
        missing = [k for k in ("counting", "num_particles", "lattice_multiplicity")
                   if self.details.get(k) is None]
        if missing:
            raise ValueError(f"this {self.method} estimate does not record its "
                             f"{', '.join(missing)}, so it cannot be recounted")
        n, m = int(self.details["num_particles"]), int(self.details["lattice_multiplicity"])
        value = convert_counting(self.value, n, m, self.details["counting"], counting)
        change = value - self.value  # beta F / N = -(ln Z - ...) / N: ln Z moves by -N change
        details = dict(self.details, counting=counting,
                       multiplicity=m if counting == "exact" else 1)
        for key in _COUNTED_VALUES:
            if details.get(key) is not None:
                details[key] += change
        for key in _COUNTED_LOG_Z:
            if details.get(key) is not None:
                details[key] -= n * change
        return dataclasses.replace(
            self, value=value, details=details,
            log_z=None if self.log_z is None else self.log_z - n * change)

    @property
    def trustworthy(self) -> bool:
        """Whether the value and its error bar can be trusted (``untrustworthy_because``)."""
        return not self.untrustworthy_because()

    def to_dict(self) -> dict:
        """Plain JSON-able summary (the works and samples are left out; ``details`` are merged
        in), with the verdict: ``trustworthy``, ``untrustworthy_because`` (a list, empty when
        trusted) and, where weights decide, ``effective_samples``."""
        out = {"system": self.system, "method": self.method, "beta_f_per_particle": self.value,
               "stderr": self.stderr, "num_samples": self.num_samples}
        for name in _OPTIONAL:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update({k: v for k, v in self.details.items() if k not in _DERIVED})
        reasons = self.untrustworthy_because()
        out.update(trustworthy=not reasons, untrustworthy_because=list(reasons))
        if self.effective_samples is not None:
            out["effective_samples"] = self.effective_samples
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "FreeEnergy":
        """Inverse of ``to_dict``: keys that are not fields go back into ``details``."""
        core = {"system": data.get("system", ""), "method": data.get("method", ""),
                "value": float(data["beta_f_per_particle"]), "stderr": float(data["stderr"]),
                "num_samples": data.get("num_samples")}
        optional = {name: data[name] for name in _OPTIONAL if data.get(name) is not None}
        known = set(core) | set(optional) | {"beta_f_per_particle"} | set(_DERIVED)
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
