"""One process of ``tests/test_multiprocess.py``: train, MBAR and SMC on two CPU devices.

``python tests/multiprocess_worker.py OUT`` runs them in one process with two CPU devices;
``python tests/multiprocess_worker.py OUT --process-id I --num-processes 2 --port P`` is one of
two processes with one CPU device each, joined by ``jax.distributed`` (gloo collectives on
the CPU), so that the same two-device mesh spans both processes. Each process gives its own
OUT: the worker writes its results to ``OUT/results.json``, and freeflow writes the training
run to ``OUT/run`` in process 0 only.
"""

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    import jax

    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}",
                                   num_processes=args.num_processes,
                                   process_id=args.process_id, initialization_timeout=120)
    else:
        jax.config.update("jax_num_cpu_devices", 2)
    assert len(jax.devices()) == 2, jax.devices()

    import numpy as np

    import freeflow
    from freeflow.flows.config import ModelConfig
    from freeflow.sampling.smc import AnnealConfig
    from freeflow.training.config import TrainingConfig
    from freeflow.workflows.baseline import PathConfig, mbar_free_energy
    from freeflow.workflows.smc import SMCConfig, smc_free_energy

    system = freeflow.load_system("mw_cubic_8")
    tiny = ModelConfig(num_layers=2, num_bins=8, embedding_size=16, num_heads=2, num_blocks=1,
                       num_frequencies=2, base="harmonic")
    training = TrainingConfig(num_steps=3, batch_size=8, checkpoint_every=3, eval_every=0,
                              eval_samples=64, warmup_steps=0, decay_steps=())
    run = args.out / "run"
    trained = freeflow.train(system, run, model_config=tiny, training=training)
    # The fewest transitions that still shard chains and particles over the devices: the
    # cost of each phase is its compilation, the check is that both layouts agree.
    mbar = mbar_free_energy(system, PathConfig(num_states=3, samples_per_state=64, num_chains=4,
                                               num_warmup=5, thin=1, num_integration_steps=2))
    anneal = AnnealConfig(target_ess=0.5, mcmc_steps=1, integration_steps=2)
    smc = smc_free_energy(system=system, base="harmonic",
                          config=SMCConfig(particles=8, repeats=2, anneal=anneal))
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(trained.params)]
    results = {
        "losses": [m["loss"] for m in trained.metrics],
        "params_norm": float(sum(np.sum(leaf.astype(np.float64) ** 2) for leaf in leaves)),
        "mbar": [mbar.value, mbar.stderr], "smc": [smc.value, smc.stderr],
        "run_files": sorted(p.name for p in run.iterdir()),
    }
    (args.out / "results.json").write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
