"""The flow's configuration: its size, its shape and its base distribution.

Configs are frozen dataclasses of plain JSON-able fields so that a run directory can record
them (``config_to_dict``) and rebuild them exactly (``config_from_dict``). ``ModelConfig``
describes the flow (``freeflow.flows.model.FlowModel``); ``freeflow.training.config`` holds the
training settings and the named presets that pair the two.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: Base-distribution noise scale of the paper, per potential kind, in the potential's length
#: unit: 0.01 sigma for Lennard-Jones (reduced units), 0.2 Angstrom for monatomic water.
PAPER_NOISE_SCALE = {"lennard_jones": 0.01, "monatomic_water": 0.2}

#: Kinds of base distribution (``ModelConfig.base``), see ``freeflow.flows.bases``.
BASE_KINDS = ("truncated_gaussian", "einstein", "harmonic", "effective_harmonic")

#: Base distributions by the names the CLI and bench scripts use -> ``ModelConfig`` fields.
#: ``paper`` is the publication's truncated Gaussian of 0.01 sigma (LJ) or 0.2 Angstrom (mW).
BASES = {"harmonic": {"base": "harmonic", "noise_scale": None},
         "effective_harmonic": {"base": "effective_harmonic", "noise_scale": None},
         "einstein": {"base": "einstein", "noise_scale": None},
         "paper": {"base": "truncated_gaussian", "noise_scale": None}}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Size and shape of the flow model.

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
      base: the kind of base distribution, one of ``BASE_KINDS``:
        ``"truncated_gaussian"``: isotropic Gaussian noise of standard deviation
        ``noise_scale`` about each site, truncated to half the nearest-neighbour distance
        (``freeflow.flows.bases.LatticeBase``); ``"einstein"``: the same with the system's
        ``einstein_width`` (one atom vibrating in the frozen lattice), which starts training
        much closer to the target; ``"harmonic"``: the harmonic crystal
        (``freeflow.flows.bases.HarmonicLatticeBase``: correlated displacements with precision
        ``beta`` times the energy's Hessian at the lattice), closer still;
        ``"effective_harmonic"``: that crystal at the temperature at which it obeys the
        target's virial theorem (``freeflow.flows.bases.effective_temperature_factor``), the
        best Gaussian of its shape, which matters for strongly anharmonic crystals such as
        Lennard-Jones at T* = 2.
      noise_scale: ``truncated_gaussian`` only: the noise's standard deviation in the system's
        length unit; ``None`` means the paper's value for the potential
        (``PAPER_NOISE_SCALE``). Must be ``None`` for the other kinds.
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
    base: str = "truncated_gaussian"
    noise_scale: float | None = None
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
        if self.base not in BASE_KINDS:
            raise ValueError(f"ModelConfig.base must be one of {BASE_KINDS}; got {self.base!r}")
        if self.noise_scale is not None:
            if self.base != "truncated_gaussian":
                raise ValueError(f"noise_scale belongs to the 'truncated_gaussian' base; the "
                                 f"{self.base!r} base sets its own widths (got noise_scale="
                                 f"{self.noise_scale!r})")
            if isinstance(self.noise_scale, str):
                raise ValueError(f"noise_scale is a length; a base is named by "
                                 f"ModelConfig(base={self.noise_scale!r}) (kinds: {BASE_KINDS})")
            if isinstance(self.noise_scale, bool) or not self.noise_scale > 0:
                raise ValueError(f"noise_scale must be a positive length or None (the paper's "
                                 f"value); got {self.noise_scale!r}")
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
    kind = getattr(potential, "kind", None)  # a user's potential may not name itself
    if kind not in PAPER_NOISE_SCALE:
        raise ValueError(f"no default noise scale for potential kind {kind!r}; set "
                         f"ModelConfig.noise_scale explicitly (length unit of the system)")
    scale = PAPER_NOISE_SCALE[kind]
    # The LJ value is 0.01 sigma: follow sigma if the user's potential is not in sigma = 1.
    if kind == "lennard_jones":
        scale *= float(getattr(potential, "sigma", 1.0))
    return scale


# The "paper" preset is the published model of Wirnsberger et al. (2022), with the low end of the
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
                       num_blocks=1, num_frequencies=8, base="harmonic"),
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


