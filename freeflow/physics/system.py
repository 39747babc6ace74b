"""A ``System``: a crystal in a periodic box, its potential and its temperature.

Named systems are declared in TOML files (``systems/*.toml`` in the repository) and read by
``freeflow.physics.system_files``; users can also build a system from any ``ase.Atoms`` or
structure file plus a potential and a temperature (``system_files.system_from_atoms``).
``freeflow.physics.identity`` says when two systems are the same state point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from freeflow.physics.lattice import check_orthorhombic, nearest_neighbour_distance
from freeflow.physics.memory import check_memory, estimated_memory
from freeflow.physics.neighbors import check_plan_memory, plan_memory
from freeflow.physics.potentials.base import UNLABELLED, recompute_flagged
from freeflow.physics.units import Units
from freeflow.physics.validation import POSITIVE, check_number


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """A periodic crystal at a temperature.

    Attributes:
      name: identifier (``lj_256``, ``mw_hex_64``, or the user's).
      atoms: the perfect crystal as ``ase.Atoms`` with an orthorhombic periodic cell; its
        positions are the lattice sites, one of them at the box corner (origin).
      potential: a potential from ``freeflow.physics.potentials``.
      temperature: in the potential's temperature unit (``epsilon/k_B`` or K).
      description: free text.
      definition: the declarative mapping this system was built from, if any.
    """

    name: str
    atoms: Atoms
    potential: Any
    temperature: float
    description: str = ""
    definition: dict | None = None

    def __post_init__(self):
        """Refuse what is no solid freeflow can compute, one line each (no name prefix: the
        builders ``system_from_definition`` and ``system_from_atoms`` add the file's)."""
        if not isinstance(self.atoms, Atoms):
            raise TypeError(f"atoms must be an ase.Atoms; got {type(self.atoms).__name__}")
        if len(self.atoms) < 2:
            raise ValueError(f"a system needs at least 2 particles; got {len(self.atoms)}")
        check_positions(self.atoms)
        check_orthorhombic(self.atoms)
        check_box(self.box, self.units.length)
        object.__setattr__(self, "temperature", check_number(
            self.temperature, "temperature", POSITIVE, unit=self.units.temperature))
        check_species(self.atoms.get_chemical_symbols(), self.potential)
        check_energy_memory(self.num_particles, self.box, self.potential)
        cutoff = float(getattr(self.potential, "cutoff", 0.0) or 0.0)
        if cutoff > 0 and self.nearest_neighbour_distance >= cutoff:
            raise ValueError(
                f"no two sites interact: the nearest-neighbour distance "
                f"{self.nearest_neighbour_distance:.6g} {self.units.length} is beyond the "
                f"potential's cutoff {cutoff:g} {self.units.length}, so this is no solid; "
                f"raise the number density")

    # -- physical quantities -------------------------------------------------------------

    @property
    def units(self) -> Units:
        return self.potential.units

    @property
    def beta(self) -> float:
        """Inverse temperature 1 / (k_B T) in inverse energy units."""
        return self.units.beta(self.temperature)

    @property
    def num_particles(self) -> int:
        return len(self.atoms)

    @property
    def box(self) -> np.ndarray:
        """Edge lengths ``[3]`` of the orthorhombic box (length unit)."""
        return np.diag(np.asarray(self.atoms.cell)).copy()

    @property
    def volume(self) -> float:
        return float(np.prod(self.box))

    @property
    def number_density(self) -> float:
        return self.num_particles / self.volume

    @property
    def lattice(self) -> np.ndarray:
        """Lattice sites ``[N, 3]`` wrapped into the box (length unit)."""
        return np.mod(self.atoms.positions, self.box)

    @functools.cached_property
    def nearest_neighbour_distance(self) -> float:
        return nearest_neighbour_distance(self.lattice, self.box)

    # -- energies --------------------------------------------------------------------------

    def energy_fn(self, softened: bool = False, neighbors: str = "auto",
                  strays: str = "recompute"):
        """Pure, jit- and grad-safe ``U(positions [..., N, 3]) -> [...]`` in energy units.

        ``softened=True`` selects the softened training energy
        (``freeflow.physics.potentials.base``); free-energy estimates always use the exact
        one. ``neighbors``: see ``freeflow.physics.neighbors.plan_neighbors`` (and
        ``neighbor_plan`` for the plan it picks); for the exact energy ``auto`` may choose the
        site list, which is only valid while every particle is within half the nearest-neighbour
        distance of its site. ``strays`` says what happens to a configuration outside that:
        ``"recompute"`` evaluates it again without the site list (exact for any
        configuration, at the price of one more evaluation of that configuration; call it on
        whole batches), ``"nan"`` returns NaN (for the Metropolis sampler, which rejects such
        a move, and for use under ``vmap``).

        The function is built once per System object and arguments (cached by identity), so
        repeated calls return the same object, which lets samplers reuse their compilation.
        """
        if strays not in ("recompute", "nan"):
            raise ValueError(f"strays must be 'recompute' or 'nan', not {strays!r}")
        return self._energy_fn(bool(softened), neighbors, strays)

    def neighbor_plan(self, softened: bool = False, neighbors: str = "auto"):
        """The pair-finding plan behind ``energy_fn(softened, neighbors)`` (a value with a
        ``strategy`` of ``"dense"``, ``"cells"`` or ``"sites"``; ``None`` for a potential with
        no pairs, such as an Einstein crystal)."""
        # A potential without pairs to find (springs, say) need not define neighbor_plan.
        planner = getattr(self.potential, "neighbor_plan", None)
        if planner is None:
            return None
        return planner(self.box, self.lattice,
                       max_displacement=0.5 * self.nearest_neighbour_distance,
                       softened=bool(softened), neighbors=neighbors)

    # Energy functions are cached per System object (by identity), so that every caller of
    # the same system shares one function and hence one compilation per shape.
    @functools.lru_cache(maxsize=8)
    def _energy_fn(self, softened: bool, neighbors: str, strays: str):
        def build(plan, allow_sites=None):
            return self.potential.energy_fn(
                self.box, self.lattice, max_displacement=0.5 * self.nearest_neighbour_distance,
                softened=softened, neighbors=plan, allow_sites=allow_sites)

        plan = self.neighbor_plan(softened, neighbors)
        fast = build(plan if plan is not None else neighbors)
        if strays == "nan" or plan is None or plan.strategy != "sites":
            return fast
        return recompute_flagged(fast, build("auto", allow_sites=False))

    def energy(self, positions, softened: bool = False):
        """Potential energy of configurations ``[..., N, 3]`` (energy unit)."""
        positions = jnp.asarray(positions)
        if positions.shape[-2:] != (self.num_particles, 3):
            raise ValueError(f"{self.name} has {self.num_particles} particles; positions must "
                             f"have shape [..., {self.num_particles}, 3], got {positions.shape}")
        return self.energy_fn(softened)(positions)

    @functools.lru_cache(maxsize=16)
    def lattice_energy(self) -> float:
        """Energy of the perfect crystal (energy unit), evaluated in float64.

        In float32 the last printed digit of U / N would depend on the summation order of the
        neighbour list; the context switches 64-bit mode on for this call only.
        """
        with jax.enable_x64(True):
            lattice = jnp.asarray(self.lattice, jnp.float64)
            return float(self.energy_fn(strays="nan")(lattice))

    @functools.lru_cache(maxsize=4)
    def check_batch_memory(self, configurations: int, what: str) -> None:
        """Refuse, before anything is allocated, evaluating the exact energy (and forces) of
        ``configurations`` configurations at once when the largest plan ``auto`` may build
        for them needs more memory than the machine has available (``what`` names the job,
        e.g. ``"HMC of 64 chains"``)."""
        n, box = self.num_particles, self.box
        cutoff = float(getattr(self.potential, "cutoff", 0.0) or 0.0)
        if cutoff <= 0:
            need, grows = estimated_memory(n, configurations=configurations), "springs"
        else:
            spacing = (2.0**0.5 * float(np.prod(box)) / n) ** (1.0 / 3.0)
            # As check_energy_memory: the plans auto may build for the exact energy (the
            # site list, and the cell list in a box of three cutoffs a side).
            plans = ["sites"] + (["cells"] if min(np.floor(box / cutoff)) >= 3 else [])
            need, grows = max(plan_memory(strategy, n, box, cutoff, 0.5 * spacing,
                                          configurations) for strategy in plans)
        check_memory(need, f"{self.name}: {what} (N = {n}, {grows})",
                     "use fewer chains, particles or configurations at once")

    def lattice_hessian(self) -> np.ndarray:
        """Hessian ``d^2 U / dr dr`` of the exact energy at the perfect lattice, float64.

        Shape ``[3N, 3N]``, rows and columns ordered (particle, axis); units energy /
        length^2. Evaluated in float64 (a scoped ``jax.enable_x64``) because the harmonic
        base of a flow inverts it. Computed once per System (its compilation costs seconds
        even for N = 8, and a flow's base, MBAR's and SMC's harmonic crystals all need it)
        and returned read-only.
        """
        return self._lattice_hessian

    @functools.cached_property
    def _lattice_hessian(self) -> np.ndarray:
        # The cheapest exact plan: at the lattice every particle sits on its site, so the site
        # list (which ``auto`` takes for mW from N = 216) equals the exact energy in a
        # neighbourhood of this point, derivatives included; it turns the 512-molecule ice's
        # Hessian from minutes into seconds.
        # The [3N, 3N] result and the two copies the symmetrisation makes.
        check_memory(estimated_memory(self.num_particles, square_matrices=3),
                     f"{self.name}: the lattice Hessian of N = {self.num_particles} particles "
                     f"([3N, 3N] in float64)", "use fewer particles")
        with jax.enable_x64(True):
            energy = self.energy_fn(neighbors="auto", strays="nan")
            lattice = jnp.asarray(self.lattice, jnp.float64)
            hessian = np.asarray(jax.jit(jax.hessian(energy))(lattice), np.float64)
        size = 3 * self.num_particles
        hessian = hessian.reshape(size, size)
        if not np.all(np.isfinite(hessian)):
            raise ValueError(f"{self.name}: the energy's Hessian at the lattice is not finite")
        hessian = 0.5 * (hessian + hessian.T)
        hessian.setflags(write=False)
        return hessian

    @functools.cached_property
    def einstein_width(self) -> float:
        """Thermal width ``1 / sqrt(beta k_E)`` of one atom moving alone in the frozen lattice.

        ``k_E`` is the mean curvature ``(1/3) tr d^2 U / d r_i^2`` at the perfect lattice,
        averaged over up to 8 sites (length unit). It is the conditional width of a harmonic
        crystal, so it somewhat underestimates the true vibration amplitude, but it is
        data-free and a far better starting point for a flow's base than a fixed small number.
        """
        # The all-pairs sum: exact for any configuration and cheap for one atom's 3 x 3
        # Hessian at the sizes a flow is trained on.
        energy = self.energy_fn(neighbors="dense" if self.num_particles <= 2048 else "auto",
                                strays="nan")
        lattice = jnp.asarray(self.lattice, jnp.float32)
        sites = np.unique(np.linspace(0, self.num_particles - 1, 8).astype(int))

        def curvature(i):
            def moved(d):
                return energy(lattice.at[i].add(d))
            return jnp.trace(jax.hessian(moved)(jnp.zeros(3, jnp.float32))) / 3.0

        k = float(np.mean([float(jax.jit(curvature)(int(i))) for i in sites]))
        if not (np.isfinite(k) and k > 0):
            raise ValueError(f"{self.name}: the perfect lattice is not a minimum of the energy "
                             f"(mean curvature {k}); use the flow's 'truncated_gaussian' base "
                             f"with an explicit noise_scale")
        return float(1.0 / np.sqrt(self.beta * k))

    def summary(self) -> dict:
        return {
            "system": self.name,
            "potential": self.potential.kind,
            "num_particles": self.num_particles,
            "temperature": self.temperature,
            "temperature_unit": self.units.temperature,
            "beta": self.beta,
            "number_density": self.number_density,
            "box": self.box.tolist(),
            "length_unit": self.units.length,
            "energy_unit": self.units.energy,
        }

    def __repr__(self):
        return (f"System({self.name!r}, N={self.num_particles}, {self.potential.kind}, "
                f"T={self.temperature:g} {self.units.temperature}, beta={self.beta:.6g})")


@contextlib.contextmanager
def errors_about(label: str):
    """Start the line of every ``ValueError`` raised inside with ``label`` (a file's path or a
    system's name), so that a message names the input it is about."""
    try:
        yield
    except ValueError as error:
        raise ValueError(f"{label}: {error}") from None


def check_positions(atoms: Atoms) -> None:
    """Refuse sites that are not finite (NaN or inf), naming the first few."""
    bad = np.flatnonzero(~np.all(np.isfinite(atoms.positions), axis=1))
    if len(bad):
        raise ValueError(f"positions of atoms {', '.join(map(str, bad[:5].tolist()))}"
                         f"{' ...' if len(bad) > 5 else ''} are not finite (NaN or inf)")


def check_box(box, length_unit: str) -> None:
    """Refuse box edges that float32, in which energies are evaluated, cannot hold: beyond its
    largest number or below its smallest normal one (a number density of 1e-300 or 1e300)."""
    box = np.asarray(box, dtype=np.float64)
    info = np.finfo(np.float32)
    if not np.all((box >= info.tiny) & (box <= info.max)):
        raise ValueError(f"the box edges {np.asarray(box).tolist()} {length_unit} are outside "
                         f"the range of float32 ({info.tiny:.3g} to {info.max:.3g}), in which "
                         f"energies are evaluated; check the number density")


def check_species(symbols, potential) -> None:
    """Refuse a structure of several species, or of one its potential was not made for.

    freeflow's solids are of one species: its free energies count the particles as identical
    (``ln N!``). A potential states its species in ``species`` (``None``: any one; mW:
    ``("O",)``, the molecule sits on its oxygen); ``"X"`` (unlabelled) is always accepted.
    """
    found = sorted(set(symbols))
    if len(found) > 1:
        raise ValueError(f"the atoms are of {len(found)} species ({', '.join(found)}); freeflow "
                         f"computes solids of one species (identical particles): relabel them "
                         f"with one symbol")
    expected = getattr(potential, "species", None)
    if expected and found[0] not in (*expected, UNLABELLED):
        raise ValueError(f"the atoms are {found[0]}, but potential {potential.kind!r} models "
                         f"{' or '.join(expected)}; relabel them (atoms.set_chemical_symbols, "
                         f"or symbol = {expected[0]!r} in [lattice]), or use {UNLABELLED!r} for "
                         f"unlabelled sites")


def check_energy_memory(num_particles: int, box, potential) -> None:
    """Refuse, before anything is allocated, a system whose exact energy (the plan ``auto``
    builds for it, one configuration) needs more memory than the machine has available.

    The half nearest-neighbour distance that bounds the particles' excursions is taken at its
    largest for this density, that of close packing ``(sqrt(2) V / N)^(1/3)``, so the lattice
    itself is not needed. A potential with no ``cutoff`` (springs) needs memory per particle
    alone.
    """
    box = np.asarray(box, dtype=np.float64)
    cutoff = float(getattr(potential, "cutoff", 0.0) or 0.0)
    what = f"the energy of N = {num_particles} particles"
    if cutoff <= 0:
        check_memory(estimated_memory(num_particles), what, "use fewer particles")
        return
    spacing = (2.0**0.5 * float(np.prod(box)) / num_particles) ** (1.0 / 3.0)
    check_plan_memory("auto", num_particles, box, cutoff, 0.5 * spacing, allow_sites=True)


