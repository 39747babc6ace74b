"""Splitting HMC's chains over two CPU devices changes nothing but rounding.

A few HMC transitions at a fixed step size run twice in fresh processes, on one device and on
two, where the arithmetic per chain is the same (no warm-up, whose step-size tuning averages
over chains and so depends on the reduction order). A sharding bug (a shard dropped,
duplicated, misplaced or given another's random numbers) moves a chain by its whole
displacement, about 1e-2 of the box; XLA may round a 4-chain shard and an 8-chain batch
differently at float32's 1e-7, so the positions must agree to 1e-5 (length unit). Training's
steps on one and two devices are compared in ``tests/training/test_training.py``.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np

import freeflow

TRANSITIONS = textwrap.dedent("""
    import sys, jax, numpy as np
    from freeflow import load_system
    from freeflow.sampling.hmc import HMCConfig, sample_system
    assert len(jax.devices()) == int(sys.argv[2]), jax.devices()
    system = load_system("mw_cubic_8")
    result = sample_system(system, jax.random.key(3),
                           HMCConfig(num_chains=8, num_samples=3, num_warmup=0, thin=1,
                                     step_size=0.02))
    np.save(sys.argv[1], np.asarray(result.positions))
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
