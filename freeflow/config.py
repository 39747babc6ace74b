"""Configuration dataclasses and named presets.

Configs are frozen dataclasses of plain JSON-able fields so that a run directory can record
them (``config_to_dict``) and rebuild them exactly (``config_from_dict``). ``ModelConfig``
describes the flow (``freeflow.flow.FlowModel``); other configs (training, ...) live next to it
and follow the same pattern: a frozen dataclass, an entry in a presets table, and the generic
dict helpers below.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: Base-distribution noise scale of the paper, per potential kind, in the potential's length
#: unit: 0.01 sigma for Lennard-Jones (reduced units), 0.2 Angstrom for monatomic water.
PAPER_NOISE_SCALE = {"lennard_jones": 0.01, "monatomic_water": 0.2}

#: The values of ``ModelConfig.noise_scale`` that name a base instead of giving its width.
NAMED_BASES = ("einstein", "harmonic", "effective_harmonic")

#: Base distributions by the names the CLI and bench scripts use -> ``ModelConfig.noise_scale``.
BASES = {"harmonic": "harmonic", "effective_harmonic": "effective_harmonic", "einstein": "einstein",
         "paper": None}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Size and shape of the flow model (science.md section 3).

    Attributes:
      num_layers: coupling layers; each transforms one axis of every mobile particle, cycling
        z, x, y, z, ...
      num_bins: bins K of every circular rational-quadratic spline.
      embedding_size: width of the transformer's particle embeddings.
      num_heads: attention heads per transformer block.
      num_blocks: transformer blocks per conditioner.
      num_frequencies: Fourier frequencies k = 1..K of the circular embedding of each
        conditioning coordinate.
      mlp_width: hidden width of the transformer's MLPs; ``None`` means ``embedding_size``.
      noise_scale: standard deviation of the base distribution's Gaussian noise, in the
        system's length unit; ``None`` means the paper's value for the potential
        (``PAPER_NOISE_SCALE``); ``"einstein"`` means the system's ``einstein_width`` (one
        atom vibrating in the frozen lattice), which starts training much closer to the target;
        ``"harmonic"`` replaces the isotropic noise by the harmonic crystal
        (``freeflow.base.HarmonicLatticeBase``: correlated displacements with precision
        ``beta`` times the energy's Hessian at the lattice), closer still;
        ``"effective_harmonic"`` is that crystal at the temperature at which it obeys the
        target's virial theorem (``System.harmonic_temperature_factor``), the best Gaussian of
        its shape, which matters for strongly anharmonic crystals such as Lennard-Jones at
        T* = 2.
      min_bin_size: smallest spline bin width/height as a fraction of the box edge; keeps
        the spline's slopes bounded.
      min_derivative: smallest spline knot slope (dimensionless).
    """

    num_layers: int = 24
    num_bins: int = 16
    embedding_size: int = 256
    num_heads: int = 2
    num_blocks: int = 2
    num_frequencies: int = 8
    mlp_width: int | None = None
    noise_scale: float | str | None = None
    min_bin_size: float = 1e-3
    min_derivative: float = 1e-3

    def __post_init__(self):
        positive = ("num_layers", "num_bins", "embedding_size", "num_heads", "num_blocks",
                    "num_frequencies")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"ModelConfig.{name} must be a positive integer; got {value!r}")
        if self.embedding_size % self.num_heads:
            raise ValueError(f"embedding_size ({self.embedding_size}) must be a multiple of "
                             f"num_heads ({self.num_heads})")
        if self.mlp_width is not None and self.mlp_width <= 0:
            raise ValueError(f"mlp_width must be positive or None; got {self.mlp_width}")
        if (isinstance(self.noise_scale, str) and self.noise_scale not in NAMED_BASES
                or not isinstance(self.noise_scale, str) and self.noise_scale is not None
                and not self.noise_scale > 0):
            raise ValueError(f"noise_scale must be a positive length, None (the paper's "
                             f"value), or one of {NAMED_BASES}; got {self.noise_scale!r}")
        if not 0 < self.min_bin_size * self.num_bins < 1:
            raise ValueError(f"min_bin_size * num_bins must lie in (0, 1); got "
                             f"{self.min_bin_size} * {self.num_bins}")
        if not self.min_derivative > 0:
            raise ValueError(f"min_derivative must be positive; got {self.min_derivative}")

    @property
    def hidden_width(self) -> int:
        return self.mlp_width if self.mlp_width is not None else self.embedding_size


def default_noise_scale(potential) -> float:
    """The paper's base noise scale for a potential object, in its length unit."""
    kind = getattr(potential, "kind", None)
    if kind not in PAPER_NOISE_SCALE:
        raise ValueError(f"no default noise scale for potential kind {kind!r}; set "
                         f"ModelConfig.noise_scale explicitly (length unit of the system)")
    scale = PAPER_NOISE_SCALE[kind]
    # The LJ value is 0.01 sigma: follow sigma if the user's potential is not in sigma = 1.
    if kind == "lennard_jones":
        scale *= float(getattr(potential, "sigma", 1.0))
    return scale


# The "paper" preset is the published model (science.md section 3), with the low end of the
# paper's K = 8..32 frequency range.
#
# The "cpu" preset was chosen by timing one jitted reverse-KL training step (softened energy,
# Adam, batch 128, float32) on 2 CPU cores shared with other jobs (bench/model.py's measure()):
#
#   layers embed blocks  params   lj_32 s/step  mw_cubic_64 s/step
#      8     64     1     233k        0.39           1.30
#     12     64     1     349k        0.52           1.51   <- cpu
#     12    128     1    1.29M        1.01           2.57
#     12     64     2     652k        1.22           2.23
#
# Doubling the width or the depth of the transformer roughly doubles the step, while going
# from 8 to 12 layers costs little on mW (the three-body energy dominates there). 12 layers
# (each axis transformed four times) of width 64 with one block give ~2000-3500 steps in
# 20-30 minutes for lj_32 and ~1000 for mw_cubic_64 at batch 128 (twice that at batch 64).
PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(num_layers=24, num_bins=16, embedding_size=256, num_heads=2,
                         num_blocks=2, num_frequencies=8),
    "cpu": ModelConfig(num_layers=12, num_bins=8, embedding_size=64, num_heads=2,
                       num_blocks=1, num_frequencies=8, noise_scale="harmonic"),
}


def model_preset(name: str) -> ModelConfig:
    """The ``ModelConfig`` of a named preset (``"paper"`` or ``"cpu"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; presets: {sorted(PRESETS)}")
    return PRESETS[name]


def config_to_dict(config: Any) -> dict:
    """A config dataclass as a plain dict (JSON-able)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance; got {type(config).__name__}")
    return dataclasses.asdict(config)


def config_from_dict(cls: type, data: dict) -> Any:
    """Rebuild a config dataclass ``cls`` from ``config_to_dict`` output.

    Missing fields take their defaults (older files stay readable); unknown fields are an
    error, so a typo never silently falls back to a default.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: "
                         f"{sorted(names)}")
    values = dict(data)
    for f in dataclasses.fields(cls):
        # JSON turns tuples into lists; frozen configs keep them hashable as tuples.
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


#: Gradient estimators of the reverse-KL loss (``TrainingConfig.gradient_estimator``).
GRADIENT_ESTIMATORS = ("reparameterized", "path")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Reverse-KL training settings (``freeflow.train``).

    Attributes:
      num_steps: optimiser steps in total (a resumed run continues up to this number).
      batch_size: model samples per step (split across devices; a multiple of their number).
      learning_rate: Adam's initial learning rate.
      decay_steps: steps at which the learning rate is multiplied by ``decay_factor``.
      decay_factor: multiplier applied at each of ``decay_steps``.
      warmup_steps: the learning rate rises linearly from ``learning_rate / warmup_steps`` to
        ``learning_rate`` over these first steps (0: no warm-up).
      max_grad_norm: gradients are clipped to this global norm.
      checkpoint_every: steps between checkpoints (one is always written at the end).
      eval_every: steps between LFEP evaluations on the exact energy (0: never).
      eval_samples: model samples per evaluation.
      seed: PRNG seed of the initial parameters and of every step's samples.
      gradient_estimator: ``"reparameterized"`` differentiates every term of the loss through
        the samples and the parameters; ``"path"`` drops the score term
        ``E_q[grad_params ln q]`` (zero in expectation) and keeps only the dependence through
        the samples, whose variance vanishes as q approaches the target ("sticking the
        landing"); it costs one more inverse pass through the flow per step.
    """

    num_steps: int = 1_000_000
    batch_size: int = 128
    learning_rate: float = 7e-5
    decay_steps: tuple[int, ...] = (250_000, 500_000)
    decay_factor: float = 0.1
    warmup_steps: int = 0
    max_grad_norm: float = 10.0
    checkpoint_every: int = 1000
    eval_every: int = 10_000
    eval_samples: int = 4096
    seed: int = 0
    gradient_estimator: str = "reparameterized"

    def validate(self):
        """Raise ``ValueError`` naming the first setting that cannot work."""
        for name in ("num_steps", "batch_size", "checkpoint_every", "eval_samples"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        for name in ("eval_every", "warmup_steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate}")
        if not 0 < self.decay_factor <= 1:
            raise ValueError(f"decay_factor must lie in (0, 1]; got {self.decay_factor}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive; got {self.max_grad_norm}")
        if self.gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}; got "
                             f"{self.gradient_estimator!r}")
        return self


# "paper": science.md section 3 (weeks on accelerators). "cpu": a few thousand steps with a
# larger learning rate decayed twice, which bench/train_cpu.py measures on 2 CPU cores. Its
# path gradient costs 8-50% more per step and still ends better in the same wall time on
# lj_32, mw_cubic_8 and mw_cubic_64 (README, "Training on CPU").
TRAINING_PRESETS: dict[str, TrainingConfig] = {
    "paper": TrainingConfig(),
    "cpu": TrainingConfig(num_steps=4000, batch_size=128, learning_rate=5e-4,
                          decay_steps=(2500, 3500), warmup_steps=200, max_grad_norm=10.0,
                          checkpoint_every=250,
                          eval_every=1000, eval_samples=2048, gradient_estimator="path"),
}


def presets(name: str) -> tuple[ModelConfig, TrainingConfig]:
    """``(model, training)`` configs of a named preset."""
    if name not in TRAINING_PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(TRAINING_PRESETS)}")
    return model_preset(name), TRAINING_PRESETS[name]
