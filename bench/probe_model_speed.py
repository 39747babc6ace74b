"""Probe: model sampling speed after different first computations in the same process.

Found while profiling the site list: ``sample_and_log_prob`` of the ``cpu`` model on lj_108
runs about twice as fast in a process that first computed the Hessian of the all-pairs
energy (what ``System.einstein_width`` does) than in one that did not. Cause not understood.

    python bench/probe_model_speed.py none        # the model alone
    python bench/probe_model_speed.py dense_hess  # after an all-pairs energy Hessian
    python bench/probe_model_speed.py sites_hess  # after a site-list energy Hessian
    python bench/probe_model_speed.py dense       # after an all-pairs energy value
"""
import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import freeflow
from freeflow.training.config import presets

s = freeflow.load_system("lj_108")
pre = sys.argv[1] if len(sys.argv) > 1 else "none"
x = jnp.asarray(s.lattice, jnp.float32)
if pre == "dense":
    float(s.energy_fn(neighbors="dense")(x))
elif pre == "sites":
    float(s.energy_fn(neighbors="sites")(x))
elif pre == "dense_hess":
    e = s.energy_fn(neighbors="dense", strays="nan")
    print(jax.jit(jax.hessian(lambda d: e(x.at[3].add(d))))(jnp.zeros(3)).sum())
elif pre == "sites_hess":
    e = s.energy_fn(neighbors="sites", strays="nan")
    print(jax.jit(jax.hessian(lambda d: e(x.at[3].add(d))))(jnp.zeros(3)).sum())
# The noise scale einstein_width would give, fixed, so that nothing else runs an energy first.
mc = dataclasses.replace(presets("cpu")[0], base="truncated_gaussian", noise_scale=0.0460927)
model = freeflow.FlowModel(s, mc)
params = model.init(jax.random.key(0))
f = jax.jit(lambda p, k: model.sample_and_log_prob(p, k, 128))
f(params, jax.random.key(1))[1].block_until_ready()
ts = []
for i in range(4):
    t = time.perf_counter()
    f(params, jax.random.key(i))[1].block_until_ready()
    ts.append(time.perf_counter() - t)
print(pre, "seconds per batch of 128:", np.round(ts, 3))
