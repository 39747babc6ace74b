"""``freeflow sample``: HMC samples of a system written to a file as they are drawn.

The chains run in chunks; after each chunk every sample so far is written to the output file
(atomically), with the chains' state in a ``.npz`` file. An interrupted run keeps what it had
drawn, and the same command continues the chains until the requested number of samples is
reached, with the same step size (so the samples are those of one fixed Markov kernel).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from freeflow import rundir
from freeflow.physics.identity import check_same_system
from freeflow.progress import progress_bar, showing
from freeflow.sampling.hmc import HMCConfig, integrated_autocorrelation_time, sample_system

__all__ = ["sample_to_file"]

#: Saved samples per chain in one chunk, at least (a write after every chunk).
_MIN_CHUNK = 50


def sample_to_file(system, path, *, num_samples: int, num_chains: int, num_warmup: int,
                   thin: int, seed: int = 0) -> dict:
    """Draw at least ``num_samples`` samples over ``num_chains`` chains into ``path``.

    Returns a summary: acceptance, step size, tau of U (saved samples), the mean ``U`` and its
    error, the number saved, the evaluations and the wall time of this call, and how many
    samples were continued from an earlier call.
    """
    start = time.perf_counter()
    path = Path(path)
    per_chain = -(-num_samples // num_chains)
    saved, energies, chains = _resume(system, path, num_chains)
    have = 0 if saved is None else saved.shape[1]
    continued = have * num_chains
    # Chunk keys depend on the seed and the samples before them only, so that a resumed
    # call continues the very chains an uninterrupted one would have drawn.
    key = jax.random.key(seed)
    chunk = max(_MIN_CHUNK, -(-per_chain // 10))
    acceptance, evaluations = [], 0
    with progress_bar(per_chain, f"sampling {system.name}", "sample", initial=have) as bar:
        while have < per_chain:
            n = min(chunk, per_chain - have)
            warm = chains is None
            config = HMCConfig(num_chains=num_chains, num_samples=n,
                               num_warmup=num_warmup if warm else 0, thin=thin,
                               step_size=None if warm else chains["step_size"])
            with showing(False):  # one bar, this one, over the chunks
                result = sample_system(system, jax.random.fold_in(key, have), config,
                                       initial_positions=None if warm else chains["positions"])
            new = result.by_chain(result.positions)
            new_u = result.by_chain(result.energies)
            saved = new if saved is None else np.concatenate([saved, new], axis=1)
            energies = new_u if energies is None else np.concatenate([energies, new_u], axis=1)
            chains = {"positions": result.final_positions, "step_size": result.step_size}
            rundir.save_samples(path, saved.reshape(-1, *saved.shape[2:]), system,
                                energies=energies.reshape(-1),
                                chains=chains if path.suffix.lower() == ".npz" else None)
            have += n
            acceptance.append(result.acceptance)
            evaluations += result.energy_evaluations
            bar.update(n)
            bar.set_postfix(acc=f"{result.acceptance:.2f}")
    tau = integrated_autocorrelation_time(energies)
    n_total = energies.size
    return {"system": system.name, "out": str(path), "num_saved": int(n_total),
            "num_chains": num_chains, "continued": int(continued),
            "acceptance": float(np.mean(acceptance)) if acceptance else None,
            "step_size": float(chains["step_size"]), "tau": float(tau),
            "energy_mean": float(np.mean(energies)),
            # One sample has no spread to estimate an error from: absent, not zero.
            "energy_stderr": (float(np.sqrt(np.var(energies) * tau / n_total)) if n_total > 1
                              else None),
            "energy_evaluations": int(evaluations), "thin": thin,
            "wall_time": time.perf_counter() - start}


def _resume(system, path: Path, num_chains: int):
    """``(positions [C, S, N, 3], energies [C, S], chains)`` saved in ``path`` by an earlier
    call with the same system and chains, or ``(None, None, None)`` to start afresh."""
    chains = rundir.read_chains(path)
    if chains is None:
        return None, None, None
    positions, sampled, energies = rundir.load_samples(path)
    check_same_system(system, sampled, f"sample file {path} (to continue it)")
    if len(chains["positions"]) != num_chains or energies is None:
        raise ValueError(f"{path} holds {len(chains['positions'])} chains, not {num_chains}; "
                         f"use --chains {len(chains['positions'])} to continue it, or another "
                         "--out")
    per = len(positions) // num_chains
    return (positions.reshape(num_chains, per, *positions.shape[1:]),
            energies.reshape(num_chains, per), chains)
