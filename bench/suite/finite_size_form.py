"""How well ``beta F / N = beta f - ln(N) / (2N) + b / N`` describes a crystal at the sizes one
can afford, measured on the exact harmonic Lennard-Jones crystal (``lj_N``'s lattice,
density 1.28, beta = 0.5).

The harmonic ``beta F / N`` comes from lattice dynamics at any ``N = 4 n^3``
(``tests/harmonic_oracle.py``; at N = 32 and 108 it equals freeflow's own harmonic crystal to
1e-10, ``tests/estimators/test_finite_size.py``). The infinite crystal's ``beta f`` comes
from a five-term fit (``1, ln N / N, 1 / N, N^-5/3, N^-2``) to N = 4000 ... 256000. For each
set of sizes, the script fits the two-parameter form that ``freeflow limit`` uses (``a = -1/2``
held) to the exact values and prints what the left-out higher-order terms do to the limit
(``bias``), and the chi-squared those terms alone would give at errors of 1e-4 per size. It
also fits ``a`` freely at large N.

    python bench/suite/finite_size_form.py --out bench/results/finite_size_form.jsonl

Seconds on one core. docs/sweep.md, "Size: the thermodynamic limit", quotes the stored run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from harmonic_oracle import harmonic_beta_f  # noqa: E402

from freeflow.estimators.finite_size import fit_finite_size  # noqa: E402

SIZE_SETS = ([32, 256, 500], [108, 256, 500], [32, 108, 256, 500], [108, 256, 500, 864],
             [256, 500, 864], [256, 500, 864, 1372], [500, 864, 1372, 2048])
LARGE_CELLS = (10, 12, 14, 17, 20, 24, 28, 34, 40)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--error", type=float, default=1e-4,
                        help="error per size for the chi-squared of the left-out terms")
    parser.add_argument("--out", default=None, help="append the JSON lines here")
    args = parser.parse_args(argv)

    sizes = np.array([4 * c**3 for c in LARGE_CELLS], float)
    exact = np.array([harmonic_beta_f(c) for c in LARGE_CELLS])
    design = np.stack([np.ones_like(sizes), np.log(sizes) / sizes, 1 / sizes,
                       sizes ** (-5 / 3), sizes ** -2.0], axis=1)
    terms, *_ = np.linalg.lstsq(design, exact, rcond=None)
    limit = float(terms[0])
    free = fit_finite_size(sizes, exact, [1e-9] * len(sizes), fit_log_coefficient=True)
    rows = [{"bench": "finite_size_form", "crystal": "harmonic lj (rho 1.28, beta 0.5)",
             "what": "a fitted freely to N = 4000 ... 256000",
             "a": free.log_coefficient, "beta_f_limit_five_terms": limit,
             "largest_five_term_residual": float(np.max(np.abs(design @ terms - exact)))}]
    for chosen in SIZE_SETS:
        values = [harmonic_beta_f(round((n / 4) ** (1 / 3))) for n in chosen]
        fit = fit_finite_size(chosen, values, [args.error] * len(chosen))
        rows.append({"bench": "finite_size_form", "crystal": "harmonic lj (rho 1.28, beta 0.5)",
                     "sizes": chosen, "bias": fit.value - limit, "error_per_size": args.error,
                     "chi2": fit.chi2, "dof": fit.dof,
                     "p_value": fit.p_value})
    for row in rows:
        line = json.dumps(row)
        print(line)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")
    print(f"harmonic LJ: a = {free.log_coefficient:.5f} (fitted, N >= 4000); "
          f"beta f = {limit:.8f}", file=sys.stderr)
    for row in rows[1:]:
        print(f"  sizes {row['sizes']}: bias of the limit {row['bias']:+.2e}, chi2 "
              f"{row['chi2']:.2f} on {row['dof']} dof at {args.error:g} per size",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
