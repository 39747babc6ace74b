"""Training settings and the named presets (a flow's config paired with its training).

``TrainingConfig`` follows the pattern of ``freeflow.flows.config.ModelConfig``: a frozen
dataclass of JSON-able fields that a run directory records and rebuilds exactly.
"""

from __future__ import annotations

import dataclasses

from freeflow.flows.config import ModelConfig, model_preset

#: Gradient estimators of the reverse-KL loss (``TrainingConfig.gradient_estimator``).
GRADIENT_ESTIMATORS = ("reparameterized", "path")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Reverse-KL training settings (``freeflow.training.trainer``).

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
            # The step counter and the batch are int32 on the device.
            if value >= 2**31:
                raise ValueError(f"{name} must be below 2^31 = {2**31}; got {value}")
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


# "paper": the publication's schedule (weeks on accelerators): Adam, 1e6 steps of batch 128 from
# 7e-5, times 0.1 at steps 250k and 500k, no warm-up, gradients clipped to a global norm of 1e4,
# seed 42 (deepmind/flows_for_atomic_solids, experiments/*_config.py). "cpu": a few thousand
# steps with a
# larger learning rate decayed twice, measured for 10 to 30 minutes on 2 CPU cores. Its
# path gradient costs 8-50% more per step and still ends better in the same wall time on
# lj_32, mw_cubic_8 and mw_cubic_64 (docs/training.md, "The CPU training study").
TRAINING_PRESETS: dict[str, TrainingConfig] = {
    "paper": TrainingConfig(num_steps=1_000_000, batch_size=128, learning_rate=7e-5,
                            decay_steps=(250_000, 500_000), decay_factor=0.1, warmup_steps=0,
                            max_grad_norm=10_000.0, seed=42),
    "cpu": TrainingConfig(num_steps=4000, batch_size=128, learning_rate=5e-4,
                          decay_steps=(2500, 3500), warmup_steps=200, max_grad_norm=10.0,
                          checkpoint_every=250,
                          eval_every=1000, eval_samples=2048, gradient_estimator="path"),
}


def scheduled_over(training: TrainingConfig, num_steps: int) -> TrainingConfig:
    """``training`` rescheduled over ``num_steps`` steps, in the proportions of the ``cpu``
    preset's schedule: the learning rate warms up over the first 5% and is multiplied by
    ``decay_factor`` at 60% and 85%; five evaluations and twenty checkpoints in all.

    Used where a run is sized by its wall-clock budget or by a given number of steps (the
    benchmarks' training runs, ``freeflow compare``), so that both train alike.
    """
    return dataclasses.replace(
        training, num_steps=num_steps, warmup_steps=int(0.05 * num_steps),
        decay_steps=(int(0.6 * num_steps), int(0.85 * num_steps)),
        eval_every=max(1, num_steps // 5), checkpoint_every=max(1, num_steps // 20))


def presets(name: str, system=None) -> tuple[ModelConfig, TrainingConfig]:
    """``(model, training)`` configs of a named preset.

    ``system`` (a ``System`` or a system name, optional) is passed to
    ``freeflow.flows.config.model_preset``: the ``"paper"`` model's frequencies depend on it.
    """
    if name not in TRAINING_PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(TRAINING_PRESETS)}")
    return model_preset(name, system), TRAINING_PRESETS[name]
