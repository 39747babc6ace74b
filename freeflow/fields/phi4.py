"""The two-dimensional lattice phi^4 field, and ``ln Z`` of it from freeflow's SMC, BAR and MBAR.

A real scalar field ``phi [L, L]`` lives on the sites ``x`` of an ``L x L`` square lattice,
periodic in both directions. Everything is in lattice units (spacing ``a = 1``), so the field,
the parameters and the action are dimensionless. The action is

    S[phi] = sum_x [ 1/2 sum_{mu=1,2} (phi_{x+mu} - phi_x)^2 + m^2/2 phi_x^2 + lambda phi_x^4 ],

with ``x + mu`` the neighbour of ``x`` in direction ``mu``, and the field's density is
``exp(-S[phi]) / Z`` with respect to ``d^(L^2) phi``. Written as ``S = G + m^2 M + lambda V``
with the gradient term ``G``, the mass term ``M = 1/2 sum phi^2`` and the quartic term
``V = sum phi^4``, every state of a path in ``(m^2, lambda)`` is a linear function of the three
``action_terms``, which is what BAR and MBAR need.

At ``lambda = 0`` (the free field) ``S = 1/2 phi^T K phi`` with the precision
``K = m^2 - Laplacian``, which the lattice Fourier transform diagonalises:

    omega_k^2 = m^2 + 4 sum_mu sin^2(k_mu / 2),      k_mu = 2 pi n_mu / L,  n_mu = 0 .. L - 1,
    ln Z_0 = sum_k 1/2 ln(2 pi / omega_k^2).

So the free field has an exact ``ln Z`` and exact independent draws (white noise filtered by
``1 / omega_k`` in Fourier space); it is the normalised start density of every estimator here.
The interacting ``ln Z`` comes from freeflow's generic layers unchanged: the SMC annealer
(``freeflow.sampling.smc``), HMC (``freeflow.sampling.hmc``), BAR and MBAR on arrays
(``freeflow.estimators``). Nothing here knows of crystals, and nothing of crystals is imported.

``m^2 > 0`` is required, because the free base field with that mass must be normalisable.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from freeflow.estimators.bar import bar
from freeflow.estimators.mbar import mbar
from freeflow.estimators.smc import combine_log_z
from freeflow.sampling.hmc import (Boltzmann, HMCConfig, integrated_autocorrelation_time,
                                   sample)
from freeflow.sampling.smc import AnnealConfig, anneal

__all__ = ["FIELD_HMC", "FieldLogZ", "Phi4", "action", "action_terms", "bar_log_z",
           "free_frequencies", "free_log_density", "free_log_z", "mbar_log_z", "sample_free",
           "smc_log_z"]


@dataclasses.dataclass(frozen=True)
class Phi4:
    """Parameters of the lattice phi^4 field (module docstring; lattice units).

    Attributes:
      size: ``L``, sites per side (the field is ``[L, L]``), at least 2.
      mass_squared: ``m^2 > 0``.
      coupling: the quartic coupling ``lambda >= 0``; 0 is the free field.
    """

    size: int
    mass_squared: float
    coupling: float

    def __post_init__(self):
        if isinstance(self.size, bool) or int(self.size) != self.size or self.size < 2:
            raise ValueError(f"size must be an integer >= 2; got {self.size!r}")
        if not (math.isfinite(self.mass_squared) and self.mass_squared > 0):
            raise ValueError(f"mass_squared must be finite and > 0; got {self.mass_squared!r}")
        if not (math.isfinite(self.coupling) and self.coupling >= 0):
            raise ValueError(f"coupling must be finite and >= 0; got {self.coupling!r}")
        # Plain Python numbers: the dataclass is a hash key of compiled densities.
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "mass_squared", float(self.mass_squared))
        object.__setattr__(self, "coupling", float(self.coupling))

    @property
    def free_log_z(self) -> float:
        """Exact ``ln Z_0`` of the free field with this ``L`` and ``m^2``."""
        return free_log_z(self.size, self.mass_squared)


@dataclasses.dataclass(frozen=True)
class FieldLogZ:
    """An estimate of a field's ``ln Z`` (dimensionless, whole lattice).

    Attributes:
      log_z: the estimate. stderr: its standard error.
      method: ``"smc"``, ``"bar"`` or ``"mbar"``.
      num_samples: configurations entering the estimator (after decorrelation).
      details: method-specific diagnostics (per-run values, overlaps, autocorrelation times).
    """

    log_z: float
    stderr: float
    method: str
    num_samples: int
    details: dict = dataclasses.field(default_factory=dict)


#: HMC of one state of a ladder (``freeflow.sampling.hmc.HMCConfig``): 16 chains of 200 warm-up
#: transitions, then 200 samples saved every 2 transitions of 8 leapfrog steps.
FIELD_HMC = HMCConfig(num_chains=16, num_samples=200, num_warmup=200, thin=2,
                      num_integration_steps=8)


# -- the action --------------------------------------------------------------------------------


def action_terms(phi):
    """``[G, M, V]`` of one field ``phi [L, L]``: gradient ``1/2 sum_x sum_mu (phi_{x+mu} -
    phi_x)^2``, mass ``1/2 sum_x phi_x^2`` and quartic ``sum_x phi_x^4`` terms, ``[3]``."""
    gradient = 0.5 * sum(jnp.sum((jnp.roll(phi, -1, axis=a) - phi) ** 2) for a in (0, 1))
    return jnp.stack([gradient, 0.5 * jnp.sum(phi ** 2), jnp.sum(phi ** 4)])


def action(phi, mass_squared, coupling):
    """``S[phi] = G + m^2 M + lambda V`` of one field ``phi [L, L]`` (scalar; ``mass_squared``
    and ``coupling`` may be traced, so a ladder of states compiles once)."""
    gradient, mass, quartic = action_terms(phi)
    return gradient + mass_squared * mass + coupling * quartic


def _terms_observable(phi, mass_squared, coupling):
    """``action_terms`` with ``action``'s signature, as HMC records its observables."""
    del mass_squared, coupling
    return action_terms(phi)


# -- the free field ----------------------------------------------------------------------------


def free_frequencies(size: int, mass_squared: float) -> np.ndarray:
    """``omega_k^2 = m^2 + 4 sum_mu sin^2(k_mu / 2)`` on the ``[L, L]`` grid of lattice momenta
    ``k_mu = 2 pi n_mu / L`` (numpy float64, in the layout of ``numpy.fft.fft2``)."""
    s = 4.0 * np.sin(np.pi * np.arange(size) / size) ** 2
    return mass_squared + s[:, None] + s[None, :]


def free_log_z(size: int, mass_squared: float) -> float:
    """Exact ``ln Z_0 = sum_k 1/2 ln(2 pi / omega_k^2)`` of the free ``L x L`` field."""
    return float(0.5 * np.sum(np.log(2.0 * np.pi / free_frequencies(size, mass_squared))))


def sample_free(key, size: int, mass_squared: float, num: int):
    """``num`` independent exact draws of the free field, ``[num, L, L]`` float32.

    ``phi = K^(-1/2) xi`` for white noise ``xi``: ``K^(-1/2)`` is a real symmetric circulant
    matrix, so filtering the noise's Fourier transform by ``1 / omega_k`` gives a real field
    with covariance ``K^(-1)`` exactly.
    """
    noise = jax.random.normal(key, (num, size, size), jnp.float32)
    filter_k = jnp.asarray(1.0 / np.sqrt(free_frequencies(size, mass_squared)), jnp.float32)
    return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(noise) * filter_k)).astype(jnp.float32)


def free_log_density(phi, mass_squared: float):
    """Normalised ``ln q(phi) = -S_0[phi] - ln Z_0`` of the free field at one ``phi [L, L]``
    (scalar). ``mass_squared`` must be a Python number: ``ln Z_0`` is computed on the host."""
    return -action(phi, mass_squared, 0.0) - free_log_z(phi.shape[-1], mass_squared)


# -- SMC ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _annealing_densities(model: Phi4, base_mass_squared: float):
    """``(ln q, ln p)`` of one field: the annealer caches its compiled steps by the functions'
    identity, so equal arguments must give the same function objects."""
    def log_start(phi):
        return free_log_density(phi, base_mass_squared)

    def log_target(phi):
        return -action(phi, model.mass_squared, model.coupling)

    return log_start, log_target


def smc_log_z(model: Phi4, key, *, base_mass_squared: float | None = None,
              num_runs: int = 8, num_particles: int = 256, step_size: float = 0.3,
              target_ess: float = 0.9, num_mcmc_steps: int = 5) -> FieldLogZ:
    """``ln Z`` of ``model`` by ``freeflow.sampling.smc.anneal`` from the free field.

    The annealer starts from exact draws of the free field of mass ``base_mass_squared``
    (default the model's ``m^2``), whose ``ln Z_0`` is exact, so each run's estimate of
    ``ln(Z / Z_0)`` is already ``ln Z``. The ``num_runs`` independent runs are combined by
    ``freeflow.estimators.smc.combine_log_z``, whose error is their spread. ``step_size`` is
    the first leapfrog step (field units); the annealer adapts it.
    """
    base = model.mass_squared if base_mass_squared is None else float(base_mass_squared)
    log_start, log_target = _annealing_densities(model, base)
    key_draw, key_run = jax.random.split(key)
    start = sample_free(key_draw, model.size, base, num_runs * num_particles)
    start = start.reshape(num_runs, num_particles, model.size, model.size)
    config = AnnealConfig(target_ess=target_ess, mcmc_steps=num_mcmc_steps)
    result = anneal(log_start, log_target, start, key_run, config, step_size=step_size,
                    desc="phi4 SMC")
    log_z, stderr = combine_log_z(result.log_z)
    return FieldLogZ(log_z=log_z, stderr=stderr, method="smc",
                     num_samples=num_runs * num_particles,
                     details={"runs": result.log_z.tolist(),
                              "temperatures": result.num_temperatures.tolist(),
                              "acceptance": result.acceptance,
                              "final_ess": result.final_ess.tolist(),
                              "wall_time": result.wall_time})


# -- HMC states, BAR and MBAR ------------------------------------------------------------------


def _hmc_terms(mass_squared: float, coupling: float, start, key, hmc: HMCConfig,
               step_size: float | None):
    """Decorrelated ``action_terms [n, 3]`` (float64) of HMC samples of the state ``(m^2,
    lambda)``, with the chains' final fields ``[C, L, L]``, their step and ``tau``.

    Each chain keeps every ``ceil(tau)``-th sample, ``tau`` the largest integrated
    autocorrelation time of the three terms: every reduced energy of a ladder is a linear
    combination of them, so none is sampled more densely than it decorrelates.
    """
    res = sample(Boltzmann(action, 1.0, energy_args=(mass_squared, coupling)), start, key,
                 dataclasses.replace(hmc, step_size=step_size),
                 observables=_terms_observable, keep_positions=False,
                 desc="phi4 HMC")
    terms = res.by_chain(res.observables).astype(np.float64)  # [C, S, 3]
    tau = max(integrated_autocorrelation_time(terms[..., j]) for j in range(3))
    kept = terms[:, ::math.ceil(tau)].reshape(-1, 3)
    return kept, res.final_positions, res.step_size, tau


def _free_terms(key, size: int, mass_squared: float, num: int) -> np.ndarray:
    """``action_terms [num, 3]`` (float64) of exact free-field draws."""
    phi = sample_free(key, size, mass_squared, num)
    return np.asarray(jax.jit(jax.vmap(action_terms))(phi), np.float64)


def bar_log_z(model: Phi4, key, *, base_mass_squared: float | None = None,
              num_samples: int = 2000, hmc: HMCConfig = FIELD_HMC) -> FieldLogZ:
    """``ln Z`` of ``model`` by ``freeflow.estimators.bar.bar`` between the free field of mass
    ``base_mass_squared`` (state 0, normalised, ``num_samples`` exact draws) and the model.

    The model's own samples are exact draws too when ``lambda = 0`` (it is then a free field),
    else decorrelated HMC samples (``hmc``). Works, reduced: ``S[x] + ln q(x)`` of the base's
    draws and ``-(S[y] + ln q(y))`` of the model's; ``ln Z = -Delta f``.
    """
    base = model.mass_squared if base_mass_squared is None else float(base_mass_squared)
    key_base, key_model, key_start = jax.random.split(key, 3)
    base_terms = _free_terms(key_base, model.size, base, num_samples)
    details = {}
    if model.coupling == 0.0:
        model_terms = _free_terms(key_model, model.size, model.mass_squared, num_samples)
    else:
        start = sample_free(key_start, model.size, model.mass_squared, hmc.num_chains)
        model_terms, _, _, tau = _hmc_terms(model.mass_squared, model.coupling, start,
                                            key_model, hmc, None)
        details["tau"] = tau
    target = np.array([1.0, model.mass_squared, model.coupling])
    start_action = np.array([1.0, base, 0.0])
    log_norm = free_log_z(model.size, base)

    def work(terms):  # S[x] + ln q(x) = S[x] - S_0[x] - ln Z_0
        return terms @ (target - start_action) - log_norm

    result = bar(work(base_terms), -work(model_terms))
    return FieldLogZ(log_z=-result.delta_f, stderr=result.stderr, method="bar",
                     num_samples=result.num_samples,
                     details=dict(details, num_base=len(base_terms),
                                  num_model=len(model_terms)))


def mbar_log_z(model: Phi4, key, *, num_states: int = 6,
               hmc: HMCConfig = FIELD_HMC) -> FieldLogZ:
    """``ln Z`` of ``model`` by ``freeflow.estimators.mbar.mbar`` on the ladder of
    ``num_states`` evenly spaced couplings ``lambda_k`` from 0 to the model's, at its ``m^2``.

    State 0 is the free field: ``hmc.num_chains * hmc.num_samples`` exact draws. Every other
    state is sampled by HMC (``freeflow.sampling.hmc.sample``, compiled once for the whole
    ladder), its chains starting where the previous state's ended, and decorrelated. With
    ``u_k = G + m^2 M + lambda_k V`` of every sample in every state, MBAR gives
    ``Delta f = -ln(Z / Z_0)``, so ``ln Z = ln Z_0 - Delta f``.
    """
    if num_states < 2:
        raise ValueError(f"num_states must be >= 2; got {num_states}")
    couplings = np.linspace(0.0, model.coupling, num_states)
    key_free, key_start, *keys = jax.random.split(key, num_states + 1)
    terms = [_free_terms(key_free, model.size, model.mass_squared,
                         hmc.num_chains * hmc.num_samples)]
    start = sample_free(key_start, model.size, model.mass_squared, hmc.num_chains)
    step, taus = None, []
    for lam, k in zip(couplings[1:], keys):
        kept, start, step, tau = _hmc_terms(model.mass_squared, float(lam), start, k, hmc,
                                            step)
        terms.append(kept)
        taus.append(tau)
    all_terms = np.concatenate(terms)  # [n, 3]
    free_action = all_terms[:, 0] + model.mass_squared * all_terms[:, 1]
    u_kn = free_action[None, :] + couplings[:, None] * all_terms[None, :, 2]
    result = mbar(u_kn, [len(t) for t in terms])
    return FieldLogZ(log_z=model.free_log_z - result.delta_f, stderr=result.stderr,
                     method="mbar", num_samples=result.num_samples,
                     details={"couplings": couplings.tolist(), "tau": taus,
                              "num_per_state": [len(t) for t in terms],
                              "min_neighbour_overlap":
                                  result.details["min_neighbour_overlap"]})
