import jax
import numpy as np
import pytest
from tiny_runs import write_tiny_run

from freeflow.physics.system import load_system

# In-process CLI tests call `freeflow train`, whose automatic --cpu-devices would make this
# whole test process one CPU device per core if it came first; starting JAX now keeps every
# in-process test on the devices the environment gives (subprocess tests set their own).
jax.devices()


@pytest.fixture(scope="session")
def systems():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_system(name)
        return cache[name]

    return get


def perturbed(system, scale, seed=0, count=None):
    """Lattice positions displaced by Gaussian noise of ``scale`` (length unit), wrapped."""
    rng = np.random.default_rng(seed)
    shape = ((count,) if count else ()) + system.lattice.shape
    return np.mod(system.lattice + scale * rng.standard_normal(shape), system.box)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run directory of an untrained tiny mw_cubic_8 flow (``tiny_runs.write_tiny_run``)."""
    return write_tiny_run(tmp_path_factory.mktemp("runs") / "mw_cubic_8")
