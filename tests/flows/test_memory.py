"""Training refuses, before it runs, a step the machine's memory cannot hold (issue 39, case 9):
first by the attention weights' lower bound (``freeflow.flows.memory``), before any parameter
is built, then by XLA's buffer assignment of the compiled step."""

import re

import pytest

import freeflow
import freeflow.physics.memory as memory
import freeflow.workflows.train as train_module
from freeflow import LennardJones, build_lattice, system_from_atoms
from freeflow.flows.memory import attention_memory, conditioner_calls
from freeflow.physics.memory import available_memory

TINY = freeflow.ModelConfig(num_layers=2, num_bins=4, embedding_size=16, num_heads=4,
                            num_blocks=2, num_frequencies=2, base="harmonic")
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def needed_bytes(message: str) -> float:
    """The ``needs about 13.7 MB`` figure of a refusal, in bytes."""
    value, unit = re.search(r"needs about ([0-9.e+]+) (TB|GB|MB|kB|B)\b", message).groups()
    return float(value) * UNITS[unit]


def test_attention_memory_is_the_documented_product():
    split = freeflow.ModelConfig(num_layers=3, num_heads=2, num_blocks=2, coupling="split")
    assert conditioner_calls(split) == 6 and conditioner_calls(TINY) == 2
    assert attention_memory(split, 101, 16) == 4 * 16 * 6 * 2 * 2 * 100**2
    # Python integers: a million particles is arithmetic, not an overflow.
    assert attention_memory(split, 10**6, 128) > 10**16


def test_a_step_larger_than_the_memory_is_refused_by_xla_s_figure(tmp_path, monkeypatch):
    """Available memory faked at five times the attention bound (10.2 MB, above the 8.8 MB
    estimated for the exact energy's site list): the bound lets the run through, the compiled
    step's buffers (several times the bound) do not fit, and the refusal comes before run.json
    is written. Its figure is above the bound, which is what makes the bound a lower bound."""
    system = freeflow.load_system("mw_cubic_64")
    bound = attention_memory(TINY, system.num_particles, 8)
    monkeypatch.setattr(memory, "available_memory", lambda: (5 * bound, "a test limit"))
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="a training step of 8 configurations of N = 64") as e:
        freeflow.train(system, out, model_config=TINY, batch_size=8, num_steps=1)
    assert "a test limit" in str(e.value) and "--batch-size" in str(e.value)
    assert needed_bytes(str(e.value)) > 5 * bound
    assert not (out / "run.json").exists()


def test_a_crystal_whose_attention_no_machine_holds_is_refused_before_the_model(
        tmp_path, monkeypatch):
    """fcc Lennard-Jones of N = 6912 with the cpu preset (batch 128): the attention weights
    alone are about 590 GB, refused against this machine's real memory before the flow (or
    its base's Hessian) is built. (The System itself, whose neighbour list would need about
    5 GB, is accepted.)"""
    n = 6912
    need = attention_memory(freeflow.model_preset("cpu"), n, 128)
    available = available_memory()
    if available is None or need <= available[0]:
        pytest.skip(f"this machine's available memory is unknown or above {need / 1e9:.0f} GB")
    try:
        system = system_from_atoms(build_lattice("fcc", n, 1.28), LennardJones(),
                                   temperature=2.0)
    except ValueError as error:  # the System's own memory check, on a small or busy machine
        pytest.skip(str(error))

    def never(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(train_module, "FlowModel", never)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="attention weights alone") as e:
        freeflow.train(system, out)
    assert needed_bytes(str(e.value)) == pytest.approx(need, rel=5e-3)
    assert not out.exists()


def test_a_finished_run_loads_without_compiling_or_checking(tmp_path, monkeypatch):
    """Once a run's checkpoint holds its last step, train() returns it without compiling a
    step (none is left to take), so the step's memory is not what decides whether a finished
    run can be read on a smaller machine."""
    out = tmp_path / "run"
    small = dict(model_config=TINY, batch_size=8, num_steps=1, eval_every=0)
    system = freeflow.load_system("mw_cubic_8")
    first = freeflow.train(system, out, **small)

    def never(*args, **kwargs):
        raise AssertionError("a finished run compiled its step")

    monkeypatch.setattr(train_module, "compile_step", never)
    again = freeflow.train(system, out, **small)
    assert [m["loss"] for m in again.metrics] == [m["loss"] for m in first.metrics]
