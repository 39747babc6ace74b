"""Short training probe: mean loss, batch ESS and batch beta F / N over the first steps.

Used to choose the ``cpu`` preset's base noise and learning rate (README, "Training and free
energies") and to compare gradient estimators and model sizes over the first steps. The
learning rate is held constant after an optional linear warm-up; nothing is written to disk.
The JSON line's ``seconds_per_step`` is the whole call's wall time per step, compilation and
the base's set-up included: a rough cost, not a step time (``bench/train_step.py`` times steps).

    python bench/train_probe.py lj_32 --steps 300 --lr 5e-4 --noise harmonic
    python bench/train_probe.py lj_32 --steps 300 --lr 5e-4 --noise einstein
    python bench/train_probe.py lj_32 --steps 300 --lr 5e-4 --noise paper
    python bench/train_probe.py lj_32 --steps 400 --lr 1e-4 --warmup 20 --noise effective_harmonic
    python bench/train_probe.py lj_32 --steps 400 --lr 1e-4 --warmup 20 --noise effective_harmonic \
        --gradient path
    python bench/train_probe.py lj_32 --steps 200 --lr 1e-4 --warmup 20 --noise effective_harmonic \
        --gradient path --bins 16           # or --layers 24, --embedding 128
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from freeflow.flows.config import BASES
from freeflow.training.config import GRADIENT_ESTIMATORS, presets
from freeflow.workflows.train import train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    parser.add_argument("--noise", default="einstein",
                        help="a base name (harmonic, effective_harmonic, einstein, paper) or a "
                             "length in the system's unit")
    parser.add_argument("--gradient", default="reparameterized",
                        choices=GRADIENT_ESTIMATORS, help="reverse-KL gradient estimator")
    parser.add_argument("--bins", type=int, default=None, help="spline bins (default: preset)")
    parser.add_argument("--layers", type=int, default=None,
                        help="coupling layers (default: preset)")
    parser.add_argument("--embedding", type=int, default=None,
                        help="transformer embedding width (default: preset)")
    args = parser.parse_args(argv)
    model, training = presets("cpu")
    base = (BASES[args.noise] if args.noise in BASES
            else {"base": "truncated_gaussian", "noise_scale": float(args.noise)})
    model = dataclasses.replace(model, **base)
    for field, value in (("num_bins", args.bins), ("num_layers", args.layers),
                         ("embedding_size", args.embedding)):
        if value is not None:
            model = dataclasses.replace(model, **{field: value})
    training = dataclasses.replace(training, num_steps=args.steps, learning_rate=args.lr,
                                   eval_every=0, decay_steps=(10**9,),
                                   warmup_steps=args.warmup,
                                   gradient_estimator=args.gradient)
    start = time.perf_counter()
    result = train(args.system, None, model_config=model, training=training, progress=False)
    seconds = time.perf_counter() - start
    loss = np.array([m["loss"] for m in result.metrics])
    ess = np.array([m["ess"] for m in result.metrics])
    beta_f = np.array([m["beta_f_per_particle_batch"] for m in result.metrics])
    window = max(1, args.steps // 10)
    print("steps        mean loss  mean ESS  median batch beta F / N")
    for start in range(0, args.steps, window):
        sl = slice(start, start + window)
        print(f"{start:>5}-{start + window - 1:<5}{loss[sl].mean():>11.2f}{100 * ess[sl].mean():>9.2f}%"
              f"{np.median(beta_f[sl]):>12.4f}")
    print(json.dumps({"bench": "train_probe", "system": args.system, "noise": args.noise,
                      "gradient": args.gradient, "bins": model.num_bins,
                      "layers": model.num_layers, "embedding": model.embedding_size,
                      "seconds_per_step": seconds / args.steps,
                      "lr": args.lr, "warmup": args.warmup, "steps": args.steps, "first_loss": float(loss[0]),
                      "last_window_loss": float(loss[-window:].mean()),
                      "last_window_ess": float(ess[-window:].mean())}))


if __name__ == "__main__":
    main()
