"""A ``System``: a crystal in a periodic box, its potential and its temperature.

Named systems are declared in TOML files (``systems/*.toml`` in the repository); users can also
build a system from any ``ase.Atoms`` or structure file plus a potential and a temperature.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from freeflow.physics.lattice import (
    LATTICES,
    build_lattice,
    check_orthorhombic,
    checked_repeat,
    nearest_neighbour_distance,
)
from freeflow.physics.memory import check_memory, estimated_memory
from freeflow.physics.neighbors import check_plan_memory, plan_memory
from freeflow.physics.potentials import potential_from_config
from freeflow.physics.potentials.base import UNLABELLED, recompute_flagged
from freeflow.physics.units import Units
from freeflow.physics.validation import POSITIVE, check_number, check_table


def systems_directory() -> Path:
    """Where the named system definitions live.

    ``$FREEFLOW_SYSTEMS_DIR`` if set, else the repository's ``systems/`` (editable installs),
    else the copy installed under ``<prefix>/share/freeflow/systems``.
    """
    candidates = []
    if os.environ.get("FREEFLOW_SYSTEMS_DIR"):
        candidates.append(Path(os.environ["FREEFLOW_SYSTEMS_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "systems")
    candidates.append(Path(sys.prefix) / "share" / "freeflow" / "systems")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.toml")):
            return path
    raise FileNotFoundError(
        "no system definitions found; looked in " + ", ".join(map(str, candidates))
        + ". Set FREEFLOW_SYSTEMS_DIR to a folder of *.toml system files.")


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


# -- construction -----------------------------------------------------------------------------


#: The tables of a system file and the keys each accepts; ``[potential]`` accepts ``kind`` and
#: that potential's parameters (``potential_from_config``). Every table refuses other keys
#: (``freeflow.physics.validation.check_table``).
DEFINITION_KEYS = {
    "the system definition": ("name", "description", "potential", "state", "lattice"),
    "[state]": ("temperature", "number_density"),
    "[lattice]": ("kind", "num_particles", "symbol", "repeat", "c_over_a"),
}


def system_from_definition(definition: dict, source: str | None = None) -> System:
    """Build a system from a declarative mapping (the parsed content of a system TOML file).

    Every error is one ``ValueError`` line starting with ``source`` (the file's path; default:
    the definition's name). A system too large for the machine's memory is refused before its
    lattice is built (``check_energy_memory``).
    """
    name = definition.get("name") if isinstance(definition, dict) else None
    with errors_about(source or (name if isinstance(name, str) and name else "system")):
        return _system_from_definition(definition, source)


def _system_from_definition(definition, source: str | None = None) -> System:
    top = check_table(definition, "the system definition",
                      DEFINITION_KEYS["the system definition"])
    missing = [key for key in ("name", "potential", "state", "lattice") if key not in top]
    if missing:
        raise ValueError(f"the system definition lacks {', '.join(missing)}; a definition "
                         f"needs name, [potential], [state] and [lattice]")
    state = check_table(top["state"], "[state]", DEFINITION_KEYS["[state]"])
    lattice = check_table(top["lattice"], "[lattice]", DEFINITION_KEYS["[lattice]"])
    name, description = top["name"], top.get("description", "")
    if not (isinstance(name, str) and name) or not isinstance(description, str):
        raise ValueError(f"name must be a non-empty string and description a string; got "
                         f"name = {name!r}, description = {description!r}")
    potential = potential_from_config(files_relative_to(top["potential"], source),
                                      require_all=True)
    density = _entry(state, "number_density", "[state]")
    temperature = _entry(state, "temperature", "[state]")
    count, kind, symbol = (lattice.get(key) for key in ("num_particles", "kind", "symbol"))
    repeat, c_over_a = lattice.get("repeat"), lattice.get("c_over_a")
    if c_over_a is not None:
        c_over_a = check_number(c_over_a, "c_over_a", POSITIVE, "[lattice]")
    if count is None and repeat is not None and kind in LATTICES:  # N from the repeats
        count = LATTICES[kind].sites_per_cell * math.prod(checked_repeat(repeat))
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"[lattice] num_particles must be a positive whole number (or give "
                         f"repeat = [n1, n2, n3] cells); got {count!r}")
    if kind is None:
        raise ValueError("[lattice] lacks kind (fcc, diamond, hexagonal_ice, ...)")
    symbol = UNLABELLED if symbol is None else symbol
    if symbol not in chemical_symbols:
        raise ValueError(f"[lattice] symbol {symbol!r} is not a chemical symbol; give the "
                         f"element's ('Ar', 'O', ...) or {UNLABELLED!r} for unlabelled sites")
    # Before the lattice exists: its box is about a cube of the same volume.
    box = np.full(3, (count / density) ** (1.0 / 3.0))
    check_box(box, potential.units.length)
    check_energy_memory(count, box, potential)
    atoms = build_lattice(kind, count, density, symbol, repeat=repeat, c_over_a=c_over_a)
    return System(name=name, atoms=atoms, potential=potential, temperature=temperature,
                  description=description, definition=definition)


def files_relative_to(potential: Any, source: str | None) -> Any:
    """``[potential]`` with a relative ``file`` (an EAM table) taken relative to the folder of
    the system file ``source`` (without one: to the working directory), made absolute so that
    a run's record finds it from anywhere."""
    if not (isinstance(potential, dict) and isinstance(potential.get("file"), str)):
        return potential
    path = Path(potential["file"]).expanduser()
    if source and not path.is_absolute():
        path = Path(source).parent / path
    return {**potential, "file": os.path.abspath(path)}


def _entry(table: dict, key: str, where: str) -> float:
    """A positive, finite number from a definition's table, or one line saying what is wrong."""
    if key not in table:
        raise ValueError(f"{where} lacks {key}")
    return check_number(table[key], key, POSITIVE, where)


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


def named_systems() -> list[str]:
    """Names of the systems declared in the systems directory, sorted."""
    def natural(name):
        head, _, size = name.rpartition("_")
        return (head, int(size)) if size.isdigit() else (name, 0)

    return sorted((p.stem for p in systems_directory().glob("*.toml")), key=natural)


def load_system(name_or_path: str | os.PathLike) -> System:
    """Load a named system (``"lj_256"``) or a system TOML file."""
    path = Path(name_or_path)
    if path.suffix.lower() == ".toml" or path.exists():
        if path.is_dir():
            raise ValueError(f"{path} is a directory, not a system .toml file")
        if not path.is_file():
            raise FileNotFoundError(f"system file {str(path)!r} does not exist")
        try:
            with open(path, "rb") as fh:
                definition = tomllib.load(fh)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path} is not valid TOML ({error})") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not valid TOML (not UTF-8 text: {error})") from None
        return system_from_definition(definition, source=str(path))
    return load_named_system(str(name_or_path))


def load_named_system(name: str) -> System:
    """Load the named system ``name`` from the systems folder, whatever files or folders of
    that name the working directory holds."""
    file = systems_directory() / f"{name}.toml"
    if not file.is_file():
        raise ValueError(f"unknown system {name!r}; named systems: {', '.join(named_systems())} "
                         f"(or give the path of a system .toml file)")
    with open(file, "rb") as fh:
        return system_from_definition(tomllib.load(fh), source=str(file))


def system_from_atoms(atoms: Atoms | str | os.PathLike, potential, temperature: float,
                      name: str | None = None, description: str = "") -> System:
    """A system from the user's own crystal.

    Args:
      atoms: an ``ase.Atoms`` or the path of a file ``ase.io.read`` understands holding one
        structure (``read_structure``). Its positions are taken as the lattice sites,
        translated so that the first atom sits at the box corner; its cell must be orthorhombic
        and periodic, its atoms of one species that the potential models (see
        ``check_species``).
      potential: a ``freeflow.physics.potentials`` object (``LennardJones(...)``, ``MonatomicWater()``).
      temperature: in the potential's temperature unit (``epsilon/k_B`` for LJ, K for mW).

    Every error is one ``ValueError`` line that starts with the file's path (or the name).
    """
    label = name or "the structure"
    if not isinstance(atoms, Atoms):
        path = Path(atoms)
        if not path.is_file():
            raise FileNotFoundError(f"structure file {str(path)!r} does not exist")
        name, label = name or path.stem, str(path)
        atoms = read_structure(path)
    with errors_about(label):
        atoms = atoms.copy()
        atoms.calc = None
        check_positions(atoms)
        check_orthorhombic(atoms)
        # The flow fixes one particle at the box corner; a global translation changes no energy.
        atoms.translate(-atoms.positions[0])
        atoms.wrap()
        return System(name=name or "custom", atoms=atoms, potential=potential,
                      temperature=temperature, description=description)


def read_structure(path: str | os.PathLike) -> Atoms:
    """The one structure in a file ``ase.io.read`` understands, or one line naming the file.

    An empty file, a file ASE cannot parse (binary data, an unknown format) and a file of
    several structures (a trajectory, whose last frame ASE would take without a word) are
    refused.
    """
    import ase.io

    path = Path(path)
    fix = "give one structure in a format ase.io.read understands (extxyz, cif, POSCAR, ...)"
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty; {fix}")
    try:
        frames = ase.io.read(path, index=slice(0, 2))
    except MemoryError:
        raise
    except Exception as error:  # ASE's readers raise anything, UnicodeDecodeError to AssertionError
        detail = str(error).splitlines()[0][:160] if str(error).strip() else ""
        raise ValueError(f"{path} is not a structure file ASE can read "
                         f"({type(error).__name__}{': ' + detail if detail else ''}); "
                         f"{fix}") from None
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    if not frames:
        raise ValueError(f"{path} holds no structure; {fix}")
    if len(frames) > 1:
        raise ValueError(f"{path} holds more than one structure; freeflow takes one crystal: "
                         f"write the one you mean to a file of its own (ase.io.write(FILE, "
                         f"ase.io.read({str(path)!r}, index=K)))")
    return frames[0]


# -- serialisation (run directories, sample files) ------------------------------------------


def system_to_dict(system: System) -> dict:
    """Everything needed to rebuild ``system`` exactly, as plain JSON-able data."""
    if dataclasses.is_dataclass(system.potential):
        potential = dataclasses.asdict(system.potential)
        potential.pop("units", None)
    else:
        # A user's own potential class: recorded by name (so a resumed run can be checked
        # against it) but not rebuildable from the run directory alone.
        potential = {"repr": repr(system.potential)}
    return {
        "name": system.name,
        "description": system.description,
        "potential": {"kind": system.potential.kind, **potential},
        "temperature": system.temperature,
        "atoms": {
            "symbols": system.atoms.get_chemical_symbols(),
            "positions": system.atoms.positions.tolist(),
            "cell": np.asarray(system.atoms.cell).tolist(),
        },
        "definition": system.definition,
    }


def system_identity(system: System) -> dict:
    """What makes two systems the same physical state point, as plain data: the potential
    and its parameters, the temperature, the cell and the lattice sites (rounded to 1e-9 of
    the length unit). The name and description are labels and are left out."""
    data = system_to_dict(system)
    return {"potential": data["potential"], "temperature": float(system.temperature),
            "cell": np.round(np.asarray(data["atoms"]["cell"], np.float64), 9).tolist(),
            "sites": np.round(np.asarray(system.lattice, np.float64), 9).tolist(),
            "symbols": data["atoms"]["symbols"]}


def crystal_identity(system: System) -> dict:
    """What systems of different sizes share when they are one crystal at one state point:
    the potential, the temperature, the number density (9 significant digits), the species,
    and the lattice's definition less its size (kind, ``c_over_a``, ...) or, for a crystal
    built from atoms, its lattice energy per particle (9 significant digits)."""
    data = system_to_dict(system)
    lattice = dict((system.definition or {}).get("lattice", {}))
    for size in ("num_particles", "repeat"):
        lattice.pop(size, None)
    structure = ({"lattice": lattice} if lattice.get("kind") else
                 {"lattice_energy_per_particle":
                  float(f"{system.lattice_energy() / system.num_particles:.9g}")})
    return {"potential": data["potential"], "temperature": float(system.temperature),
            "number_density": float(f"{system.number_density:.9g}"),
            "species": sorted(set(data["atoms"]["symbols"])), **structure}


def system_fingerprint(system: System) -> str:
    """A short hash of ``system_identity``: equal for the same state point, whatever its name."""
    text = json.dumps(system_identity(system), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_system(system: System) -> str:
    """A one-line label of a state point: name, potential, N, temperature, density."""
    density = system.num_particles / float(np.prod(system.box))
    return (f"{system.name} ({system.potential.kind}, N = {system.num_particles}, "
            f"T = {system.temperature:g} {system.units.temperature}, "
            f"density {density:.6g}/{system.units.length}^3)")


def check_same_system(expected: System, found: System, what: str):
    """Refuse ``found`` (described by ``what``, e.g. a sample file) unless it is the same state
    point as ``expected``, naming both sides in one line."""
    if system_fingerprint(expected) != system_fingerprint(found):
        raise ValueError(f"{what} belongs to {describe_system(found)}, not to "
                         f"{describe_system(expected)}")


def system_from_dict(data: dict) -> System:
    """Inverse of ``system_to_dict``."""
    if "repr" in data["potential"]:
        raise ValueError(f"system {data['name']!r} uses a custom potential "
                         f"({data['potential']['repr']}) that cannot be rebuilt from its "
                         "definition; pass the System object itself instead of a run directory")
    atoms = Atoms(symbols=data["atoms"]["symbols"], positions=data["atoms"]["positions"],
                  cell=data["atoms"]["cell"], pbc=True)
    return System(name=data["name"], atoms=atoms,
                  potential=potential_from_config(data["potential"]),
                  temperature=float(data["temperature"]),
                  description=data.get("description", ""), definition=data.get("definition"))
