import numpy as np
import pytest

from freeflow.system import load_system


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
