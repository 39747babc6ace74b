"""Lattice field theories as targets of the generic samplers and estimators (no crystals)."""
