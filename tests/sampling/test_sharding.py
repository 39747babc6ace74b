"""Splitting the chains (or the batch) over two CPU devices changes nothing but rounding.

Each check runs one short piece of work twice in fresh processes, on one device and on two,
where the arithmetic per chain is the same: a few HMC transitions at a fixed step size (no
warm-up, whose step-size tuning averages over chains and so depends on the reduction order),
and one training step. A sharding bug (a shard dropped, duplicated, misplaced or given
another's random numbers) moves a chain by its whole displacement, about 1e-2 of the box; XLA
may round a 4-chain shard and an 8-chain batch differently at float32's 1e-7, so the positions
must agree to 1e-5 (length unit) and the loss to 1e-6 relative.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import freeflow

TRANSITIONS = textwrap.dedent("""
    import sys, jax, numpy as np
    from freeflow import load_system
    from freeflow.sampling.hmc import sample_system
    assert len(jax.devices()) == int(sys.argv[2]), jax.devices()
    system = load_system("mw_cubic_8")
    result = sample_system(system, jax.random.key(3), num_chains=8, num_samples=3,
                           num_warmup=0, thin=1, step_size=0.02, progress=False)
    np.save(sys.argv[1], np.asarray(result.positions))
""")

TRAINING_STEP = textwrap.dedent("""
    import sys, json, jax
    from freeflow import train
    from freeflow.flows.config import ModelConfig
    from freeflow.training.config import TrainingConfig
    assert len(jax.devices()) == int(sys.argv[2]), jax.devices()
    tiny = ModelConfig(num_layers=2, num_bins=4, embedding_size=8, num_heads=1, num_blocks=1,
                       num_frequencies=1)
    result = train("mw_cubic_8", None, model_config=tiny, progress=False,
                   training=TrainingConfig(num_steps=1, batch_size=8, eval_every=0, seed=5))
    open(sys.argv[1], "w").write(json.dumps(result.metrics[0]["loss"]))
""")


def _run(script: str, out, devices: int):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    done = subprocess.run([sys.executable, "-c", script, str(out), str(devices)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_hmc_transitions_on_one_and_two_devices(tmp_path):
    paths = [tmp_path / f"x{devices}.npy" for devices in (1, 2)]
    for devices, path in zip((1, 2), paths):
        _run(TRANSITIONS, path, devices)
    one, two = (np.load(path) for path in paths)
    assert one.shape == two.shape == (24, 8, 3)
    box = freeflow.load_system("mw_cubic_8").box

    def periodic(d):
        return d - box * np.round(d / box)

    moved = np.abs(periodic(np.diff(one.reshape(8, 3, 8, 3), axis=1))).max()
    assert moved > 1e-3  # the chains did move: the comparison means something
    np.testing.assert_allclose(periodic(two - one), 0.0, rtol=0, atol=1e-5)


def test_one_training_step_on_one_and_two_devices(tmp_path):
    losses = []
    for devices in (1, 2):
        path = tmp_path / f"loss{devices}.json"
        _run(TRAINING_STEP, path, devices)
        losses.append(json.loads(path.read_text()))
    assert np.isfinite(losses[0])
    assert losses[1] == pytest.approx(losses[0], rel=1e-6, abs=0)
