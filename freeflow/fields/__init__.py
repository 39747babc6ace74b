"""Lattice field theories as targets of freeflow's generic samplers and estimators (no crystals)."""
