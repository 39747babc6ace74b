import os
import tempfile
from pathlib import Path

# One persistent XLA compilation cache for the whole session: the xdist workers, the CLI and
# notebook subprocesses (which inherit the environment) and the in-process tests compile many
# identical programs (the same tiny systems, models and samplers); each is compiled once.
# Set before JAX starts; FREEFLOW_TEST_JAX_CACHE=off compiles everything afresh.
_CACHE = os.environ.setdefault(
    "FREEFLOW_TEST_JAX_CACHE", str(Path(tempfile.gettempdir()) / f"freeflow-jax-cache-{os.getuid()}"))
if _CACHE != "off":
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from tiny_runs import write_tiny_run  # noqa: E402

from freeflow.physics.system_files import load_system

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


# The longest tests (a minute or more each on 2 cores) start first: with one xdist worker per
# core, a long test drawn near the end would otherwise run alone while the other core idles.
LONGEST_FIRST = (
    "tests/test_multiprocess.py::",
    "tests/test_notebooks.py::test_notebook_executes",
    "tests/physics/test_forces.py::test_blocked_site_list_and_cell_list",
    "tests/physics/test_forces.py::test_hessian_through_the_analytic_gradient",
    "tests/physics/test_neighbors.py::test_cell_list_agrees_with_all_images",
    "tests/training/test_training.py::test_one_and_two_devices_agree",
    "tests/workflows/test_smc.py::test_coverage_from_a_mismatched_base",
    "tests/workflows/test_smc.py::test_one_and_two_devices_agree",
    "tests/flows/test_couplings.py::test_split_flow_is_the_published_construction",
)


def pytest_collection_modifyitems(config, items):
    rank = {prefix: i for i, prefix in enumerate(LONGEST_FIRST)}

    def order(item):
        return next((rank[p] for p in LONGEST_FIRST if item.nodeid.startswith(p)), len(rank))

    items.sort(key=order)  # stable: every other test keeps its collected order
