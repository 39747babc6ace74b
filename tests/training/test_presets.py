"""The named presets: the published model's size, the unchanged cpu model, old records."""

import dataclasses
import json

import jax
import pytest

from freeflow.flows.config import (
    PRESETS,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    model_preset,
    paper_frequencies,
)
from freeflow.flows.model import FlowModel, num_parameters
from freeflow.training.config import TRAINING_PRESETS, TrainingConfig, presets

#: The ``ModelConfig`` fields a run record had before the published model's options existed.
OLD_RECORD_FIELDS = ["num_layers", "num_bins", "embedding_size", "num_heads", "num_blocks",
                     "num_frequencies", "mlp_width", "base", "noise_scale", "min_bin_size",
                     "min_derivative"]


def parameter_shapes(system, config):
    """The parameter pytree of ``FlowModel(system, config)`` as shapes (nothing allocated)."""
    return jax.eval_shape(FlowModel(system, config).init, jax.random.PRNGKey(0))


def published_count(num_frequencies, layers=24, embedding=256, mlp=1024, bins=16, blocks=2):
    """Parameters of the published flow, counted from its code (all linears have biases)."""
    def linear(n_in, n_out):
        return n_in * n_out + n_out

    block = 4 * linear(embedding, embedding) + linear(embedding, mlp) + linear(mlp, embedding)
    outputs = 3 * bins + 1  # per transformed coordinate; the last one is unused
    one_given_two = linear(2 * num_frequencies * 2, embedding) + blocks * block + linear(
        embedding, outputs)
    two_given_one = linear(2 * num_frequencies * 1, embedding) + blocks * block + linear(
        embedding, 2 * outputs)
    return layers * (one_given_two + two_given_one + 3)


@pytest.mark.parametrize("name, frequencies, count", [("lj_256", 16, 77_227_536),
                                                      ("mw_cubic_64", 8, 76_932_624)])
def test_paper_preset_has_the_published_size(systems, name, frequencies, count):
    system = systems(name)
    config = model_preset("paper", system)
    assert config.num_frequencies == frequencies
    assert published_count(frequencies) == count
    shapes = parameter_shapes(system, config)
    assert num_parameters(shapes) == count
    # 24 layers of two conditioners (1 | 2 then 2 | 1) and one [3] circular shift.
    assert sum(k.endswith("/head") for k in shapes) == 48
    assert sum(k.startswith("circular_shift_") for k in shapes) == 24
    assert not any("norm" in k for k in shapes)
    assert shapes["coupling_0_single/head"]["w"].shape == (256, 49)
    assert shapes["coupling_0_pair/head"]["w"].shape == (256, 98)
    assert shapes["coupling_0_pair/embed"]["w"].shape == (2 * frequencies, 256)
    assert shapes["coupling_0_single/block_0/linear"]["w"].shape == (256, 1024)


def test_cpu_preset_is_unchanged(systems):
    """The number measured before the published model's options were added."""
    for name in ("lj_32", "mw_cubic_64"):
        system = systems(name)
        assert model_preset("cpu", system) == PRESETS["cpu"]
        shapes = parameter_shapes(system, model_preset("cpu"))
        assert num_parameters(shapes) == 348_972
        assert sum(k.endswith("/head") for k in shapes) == 12
    assert sorted(config_to_dict(PRESETS["cpu"])) == sorted(OLD_RECORD_FIELDS)


def test_records_without_the_new_fields_load_as_before():
    for config in (PRESETS["cpu"], dataclasses.replace(PRESETS["paper"], coupling="axis",
                                                       circular_shift=False,
                                                       conditioned_shift=True,
                                                       layer_norm=True,
                                                       zero_init_residual=False,
                                                       init_depth_power=1.0)):
        data = json.loads(json.dumps(config_to_dict(config)))
        assert sorted(data) == sorted(OLD_RECORD_FIELDS)  # run.json as it was written before
        old = {k: v for k, v in data.items() if k in OLD_RECORD_FIELDS}
        assert config_from_dict(ModelConfig, old) == config
    paper = json.loads(json.dumps(config_to_dict(PRESETS["paper"])))
    assert paper["coupling"] == "split" and paper["layer_norm"] is False
    assert config_from_dict(ModelConfig, paper) == PRESETS["paper"]
    with pytest.raises(ValueError, match="coupling must be one of"):
        ModelConfig(coupling="splt")
    with pytest.raises(ValueError, match="layer_norm must be True or False"):
        ModelConfig(layer_norm="no")
    with pytest.raises(ValueError, match="init_depth_power"):
        ModelConfig(init_depth_power=-1.0)


def test_paper_frequencies_follow_the_published_table(systems):
    table = {("lennard_jones", 32): 8, ("lennard_jones", 256): 16, ("lennard_jones", 500): 32,
             ("monatomic_water", 8): 8, ("monatomic_water", 64): 8,
             ("monatomic_water", 216): 16, ("monatomic_water", 512): 24}
    for (kind, n), frequencies in table.items():
        assert paper_frequencies(n, kind) == frequencies
    assert paper_frequencies(108, "lennard_jones") == 8  # nearest published size: 32
    assert paper_frequencies(400, "lennard_jones") == 32  # 500 is nearer than 256
    assert paper_frequencies(1000, "einstein") == 24  # nearest published system: mW 512
    for name, frequencies in (("lj_32", 8), ("mw_hex_64", 8), ("mw_cubic_8", 8)):
        assert model_preset("paper", systems(name)).num_frequencies == frequencies
        assert model_preset("paper", name).num_frequencies == frequencies
    assert model_preset("paper") == PRESETS["paper"]
    with pytest.raises(ValueError, match="unknown model preset"):
        model_preset("gpu", systems("lj_32"))


def test_paper_training_preset_is_the_published_schedule(systems):
    paper = TRAINING_PRESETS["paper"]
    assert (paper.num_steps, paper.batch_size, paper.learning_rate) == (1_000_000, 128, 7e-5)
    assert paper.decay_steps == (250_000, 500_000) and paper.decay_factor == 0.1
    assert paper.warmup_steps == 0 and paper.max_grad_norm == 10_000.0 and paper.seed == 42
    assert TRAINING_PRESETS["cpu"].max_grad_norm == 10.0 and TRAINING_PRESETS["cpu"].seed == 0
    assert TrainingConfig().seed == 0  # older training records keep their defaults
    model, training = presets("paper", systems("lj_256"))
    assert model.num_frequencies == 16 and training == paper
    assert presets("cpu") == (PRESETS["cpu"], TRAINING_PRESETS["cpu"])
