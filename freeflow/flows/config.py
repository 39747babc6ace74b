"""The flow's configuration: its size, its shape and its base distribution.

Configs are frozen dataclasses of plain JSON-able fields so that a run directory can record
them (``config_to_dict``) and rebuild them exactly (``config_from_dict``). ``ModelConfig``
describes the flow (``freeflow.flows.model.FlowModel``); ``freeflow.training.config`` holds the
training settings and the named presets that pair the two.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from freeflow.physics.system_files import load_system

#: Base-distribution noise scale of the paper, per potential kind, in the potential's length
#: unit: 0.01 sigma for Lennard-Jones (reduced units), 0.2 Angstrom for monatomic water.
PAPER_NOISE_SCALE = {"lennard_jones": 0.01, "monatomic_water": 0.2}

#: Fourier frequencies F of the published models' circular embeddings, per potential kind and
#: number of particles (Wirnsberger et al. 2022; cubic and hexagonal ice alike).
PAPER_FREQUENCIES = {"lennard_jones": {32: 8, 256: 16, 500: 32},
                     "monatomic_water": {8: 8, 64: 8, 216: 16, 512: 24}}

#: Layer structures (``ModelConfig.coupling``), see ``freeflow.flows.couplings``.
COUPLINGS = ("axis", "split")

#: Kinds of base distribution (``ModelConfig.base``), see ``freeflow.flows.bases``.
BASE_KINDS = ("truncated_gaussian", "einstein", "harmonic", "effective_harmonic")

#: Base distributions by the names the command line (``--base``) uses -> ``ModelConfig`` fields.
#: ``paper`` is the publication's truncated Gaussian of 0.01 sigma (LJ) or 0.2 Angstrom (mW).
BASES = {"harmonic": {"base": "harmonic", "noise_scale": None},
         "effective_harmonic": {"base": "effective_harmonic", "noise_scale": None},
         "einstein": {"base": "einstein", "noise_scale": None},
         "paper": {"base": "truncated_gaussian", "noise_scale": None}}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Size and shape of the flow model.

    The defaults of the fields after ``min_derivative`` reproduce the models freeflow built
    before they existed, so older run records (which lack them) rebuild the same flow.

    Attributes:
      num_layers: layers of the flow; what a layer is depends on ``coupling``.
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
      coupling: ``"axis"``: each layer is one coupling that transforms one axis of every mobile
        particle given the other two, cycling z, x, y, z, ... (``num_layers`` conditioners);
        ``"split"``: the published layer, a coupling of two axes given the third then one of
        that axis given the two, with the axis roles rotating from layer to layer
        (``2 num_layers`` conditioners; ``freeflow.flows.couplings``).
      circular_shift: end every layer with a learned translation of all particles, ``[3]``
        fractions of the box edges per layer, zero at init (``CircularShift``).
      conditioned_shift: the spline's last raw parameter (``3 K + 1``-th) rotates its output,
        a per-particle conditioned shift; ``False`` leaves it unused (published).
      layer_norm: pre-layer-norm transformer blocks and a final layer norm; ``False``: no
        layer norm anywhere (published).
      zero_init_residual: the attention output projection and the MLP output linear of every
        block start at zero, so every block starts as the identity (published).
      init_depth_power: the transformer's other weights start from
        ``VarianceScaling(2 / num_blocks ** init_depth_power)`` (fan-in, truncated normal);
        1 is freeflow's scaling, 0.5 the published one.
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
    coupling: str = "axis"
    circular_shift: bool = False
    conditioned_shift: bool = True
    layer_norm: bool = True
    zero_init_residual: bool = False
    init_depth_power: float = 1.0

    #: Fields added after run records were first written: ``config_to_dict`` leaves them out
    #: while they hold their defaults, so a record (and the checkpoint identity hashed from it)
    #: of a model that does not use them is exactly what it was before they existed.
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = (
        "coupling", "circular_shift", "conditioned_shift", "layer_norm", "zero_init_residual",
        "init_depth_power")

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
        if self.coupling not in COUPLINGS:
            raise ValueError(f"ModelConfig.coupling must be one of {COUPLINGS}; got "
                             f"{self.coupling!r}")
        for name in ("circular_shift", "conditioned_shift", "layer_norm", "zero_init_residual"):
            if type(getattr(self, name)) is not bool:  # JSON keeps bools; 0/1 are refused
                raise ValueError(f"ModelConfig.{name} must be True or False; got "
                                 f"{getattr(self, name)!r}")
        power = self.init_depth_power
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not power >= 0:
            raise ValueError(f"init_depth_power must be a non-negative number; got {power!r}")

    @property
    def hidden_width(self) -> int:
        return self.mlp_width if self.mlp_width is not None else self.embedding_size


def base_config(name: str) -> ModelConfig:
    """A ``ModelConfig`` whose base is the one ``BASES`` names ``name`` (the other fields the
    defaults: only the base matters to a base alone). Raises ``ValueError`` naming the
    choices for an unknown name."""
    if name not in BASES:
        raise ValueError(f"unknown base {name!r}; use one of {', '.join(BASES)}")
    return ModelConfig(**BASES[name])


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


def paper_frequencies(num_particles: int, potential_kind: str | None) -> int:
    """Fourier frequencies F of the published model for a system (``PAPER_FREQUENCIES``).

    Lennard-Jones N = 32, 256, 500: 8, 16, 32; monatomic water N = 8, 64, 216, 512: 8, 8,
    16, 24. A size the paper did not train takes the value of the nearest published size of
    its potential (the larger one on a tie); another potential kind, that of the nearest
    size among all published systems.
    """
    num_particles = int(num_particles)
    if potential_kind in PAPER_FREQUENCIES:
        table = PAPER_FREQUENCIES[potential_kind]
    else:
        table = {}
        for sizes in PAPER_FREQUENCIES.values():
            for size, frequencies in sizes.items():
                table[size] = max(frequencies, table.get(size, 0))
    nearest = min(table, key=lambda size: (abs(size - num_particles), -size))
    return table[nearest]


# The "paper" preset is the published model of Wirnsberger et al. (2022),
# deepmind/flows_for_atomic_solids (experiments/*_config.py, models/coupling_flows.py,
# models/attention.py): 24 split layers (48 conditioners), each with a learned circular shift;
# 16-bin circular splines with margins 1e-4 and no conditioned shift; embedding 256, 2 heads,
# 2 blocks of MLP width 1024, no layer norm, residual outputs zero at init, weights
# VarianceScaling(2 / sqrt(2)). Its frequencies depend on the system (``paper_frequencies``,
# given by ``model_preset("paper", system)``); without a system the preset has F = 8, the low
# end of the paper's 8..32. Parameters: 77,227,536 for lj_256 (F = 16), 76,932,624 for
# mw_cubic_64 (F = 8).
#
# The "cpu" preset was chosen by timing one jitted reverse-KL training step (softened energy,
# Adam, batch 128, float32) on 2 CPU cores shared with other jobs (docs/training.md, "Presets"):
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
                         num_blocks=2, num_frequencies=8, mlp_width=1024,
                         min_bin_size=1e-4, min_derivative=1e-4, coupling="split",
                         circular_shift=True, conditioned_shift=False, layer_norm=False,
                         zero_init_residual=True, init_depth_power=0.5),
    "cpu": ModelConfig(num_layers=12, num_bins=8, embedding_size=64, num_heads=2,
                       num_blocks=1, num_frequencies=8, base="harmonic"),
}


def model_preset(name: str, system=None) -> ModelConfig:
    """The ``ModelConfig`` of a named preset (``"paper"`` or ``"cpu"``).

    Args:
      name: the preset.
      system: optional ``freeflow.physics.system.System`` (or a system name) the model is for.
        ``"paper"`` then takes the published frequencies of that system
        (``paper_frequencies(system.num_particles, system.potential.kind)``); ``"cpu"`` is the
        same for every system. Without a system, ``PRESETS[name]``.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; presets: {sorted(PRESETS)}")
    config = PRESETS[name]
    if system is not None and name == "paper":
        if isinstance(system, str):
            system = load_system(system)
        kind = getattr(getattr(system, "potential", None), "kind", None)
        config = dataclasses.replace(
            config, num_frequencies=paper_frequencies(system.num_particles, kind))
    return config


def config_to_dict(config: Any) -> dict:
    """A config dataclass as a plain dict (JSON-able).

    Fields named in the class's ``OMITTED_AT_DEFAULT`` are left out while they equal their
    defaults (``config_from_dict`` restores them), so adding such a field changes neither the
    records of existing configs nor anything derived from them.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance; got {type(config).__name__}")
    data = dataclasses.asdict(config)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for name in getattr(type(config), "OMITTED_AT_DEFAULT", ()):
        value = data[name]
        # ``1 == True`` and ``1.0 == 1``: compare types too, so only the default itself goes.
        if type(value) is type(defaults[name]) and value == defaults[name]:
            del data[name]
    return data


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


