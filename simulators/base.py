"""The simulator protocol: parameters, field declarations, invariants and ``run``.

Every reference system is a subclass of :class:`Simulator`. A subclass declares

* ``name``: registry name (``"navier_stokes2d"``),
* ``parameters``: a tuple of :class:`Parameter` (name, default, declared range, units),
* ``fields``: a tuple of :class:`FieldSpec` (scalar fields are rank 0, vectors rank 1),
* ``invariants``: a tuple of :class:`Invariant` (what is conserved or bounded), used by
  the validation library and by the GAN's constrained output heads,
* ``symmetries``: names from :data:`SYMMETRIES` (grid symmetries of the system), used by
  the GAN's data augmentation,

and implements :meth:`Simulator.simulate`, which integrates a *batch* of trajectories
(one parameter vector and one seed each) and returns arrays of shape
``(B, T, Nx, Ny)`` for scalar fields and ``(B, T, Nx, Ny, 2)`` for vector fields.

Backends: ``simulate(..., device=None)`` runs the numpy reference code. Systems with
:attr:`Simulator.torch_backend` (the spectral ones: ``diffusion``,
``gaussian_random_field``, ``navier_stokes2d``, ``gray_scott``) also take a torch device
string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) and run the same scheme with ``torch.fft``
there, in float64, from the same numpy initial conditions; results are numpy float64
arrays of the same shapes either way (:mod:`simulators.backend`).

:meth:`Simulator.run` is the one-trajectory convenience wrapper (README.md, "Python in
five lines"); it validates its input and returns an :class:`xarray.Dataset`.

Conventions: the domain is the periodic square ``[0, L)^2`` with ``L = box_size``;
array axis ``-2`` is ``x`` and axis ``-1`` is ``y`` (``field[..., ix, iy]``); grid
points sit at ``x_i = i L / N``. Trajectory seeds are plain non-negative integers; a
trajectory's random numbers come from ``numpy.random.default_rng(seed)`` only, so its
result does not depend on which batch it was integrated in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import xarray as xr

from simulators.grid import PeriodicGrid

if TYPE_CHECKING:
    import torch

MIN_RESOLUTION = 8
MAX_RESOLUTION = 4096


@dataclass(frozen=True)
class Parameter:
    """A physical parameter of a simulator and its declared range.

    Attributes:
        name: identifier used in the API, the CLI (``--sweep name=lo:hi``) and the
            HDF5 ``scalars/`` group.
        default: value used when the caller does not give one.
        low, high: inclusive declared range; values outside raise ``ValueError``.
        units: physical units (``"1"`` for dimensionless).
        doc: one-line meaning.
        log: sample this parameter log-uniformly in sweeps. ``None`` (default) means:
            log-uniform when ``low > 0`` and the range spans at least two decades
            (``high / low >= 100``).
        integer: the parameter only takes integer values (e.g. a forcing mode number).
    """

    name: str
    default: float
    low: float
    high: float
    units: str
    doc: str
    log: bool | None = None
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high:
            raise ValueError(f"parameter {self.name}: default {self.default} outside "
                             f"[{self.low}, {self.high}]")

    @property
    def log_scale(self) -> bool:
        """Whether sweeps sample this parameter uniformly in ``log(value)``."""
        if self.log is not None:
            return self.log
        return self.low > 0 and self.high / self.low >= 100.0

    @property
    def range_text(self) -> str:
        """The declared range as ``[low, high]`` text for messages."""
        return f"[{self.low:g}, {self.high:g}]"

    def check(self, value: Any, *, low: float | None = None,
              high: float | None = None) -> float:
        """Return ``value`` as a float after checking it against the declared range.

        Raises:
            ValueError: naming the parameter and its range if the value is not a
                finite number inside ``[low, high]`` (or not an integer when
                ``integer`` is set).
        """
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {self.name!r}: {value!r} is not a number") from None
        low = self.low if low is None else low
        high = self.high if high is None else high
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError(f"parameter {self.name!r} = {value!r} is outside its declared "
                             f"range [{low:g}, {high:g}] ({self.units})")
        if self.integer and number != round(number):
            raise ValueError(f"parameter {self.name!r} = {value!r} must be an integer")
        return number


@dataclass(frozen=True)
class FieldSpec:
    """Declaration of an output field.

    Attributes:
        name: dataset name in the HDF5 store and data variable name in ``run``'s Dataset.
        units: physical units (CF style, ``"1"`` for dimensionless).
        long_name: human-readable description.
        rank: 0 for scalar fields ``(…, Nx, Ny)``, 1 for vector fields
            ``(…, Nx, Ny, 2)`` whose last axis holds the (x, y) components.
    """

    name: str
    units: str
    long_name: str
    rank: int = 0


@dataclass(frozen=True)
class Invariant:
    """A property that the true dynamics keep, declared by each simulator.

    ``kind`` is one of:

    * ``"conserved_mean"``: the domain mean of ``field`` is constant in time.
    * ``"zero_mean"``: the domain mean of ``field`` is zero at every time.
    * ``"bounded"``: ``low <= field <= high`` everywhere (``None`` for an open side);
      ``low=0`` with ``high=None`` states positivity.
    * ``"divergence_free"``: the vector ``field`` satisfies ``div field = 0``.
    * ``"curl_of"``: the scalar ``field`` equals ``curl(of) = d(of_y)/dx - d(of_x)/dy``.
    * ``"energy_budget"``: ``dE/dt = -2 nu Z + P`` for the vector ``field`` with
      ``E = <|u|^2>/2``, ``Z = <(curl u)^2>/2`` and ``P`` the forcing work
      (Navier–Stokes); checked only where the simulator provides the terms.
    * ``"discrete_values"``: ``field`` only takes the values in ``values``.
    * ``"initial_energy"``: the vector ``field`` has ``E = <|u|^2>/2 = value`` at
      ``t = 0`` exactly (a global norm the initial condition fixes, e.g. Navier–Stokes'
      random state scaled to unit rms velocity, ``E = 0.5``).

    ``init`` restricts an invariant to trajectories started from that named initial
    condition (``None``: every one); :meth:`Simulator.invariants_for` applies it, and a
    file's schema keeps only the invariants of the init it was simulated from.
    """

    kind: str
    field: str
    low: float | None = None
    high: float | None = None
    of: str | None = None
    values: tuple[float, ...] | None = None
    value: float | None = None
    init: str | None = None
    doc: str = ""

    KINDS: ClassVar[tuple[str, ...]] = ("conserved_mean", "zero_mean", "bounded",
                                        "divergence_free", "curl_of", "energy_budget",
                                        "discrete_values", "initial_energy")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown invariant kind {self.kind!r}; expected one of "
                             f"{', '.join(self.KINDS)}")
        if self.kind == "initial_energy" and not (
                isinstance(self.value, (int, float)) and not isinstance(self.value, bool)
                and math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"invariant initial_energy({self.field}) needs a positive "
                             f"finite value, got {self.value!r}")



#: Parameter names an ``energy_budget`` invariant reads from a trajectory's parameters
#: (``navier_stokes2d``'s): the viscosity ``nu`` of ``-2 nu Z``; the amplitude ``A`` and
#: mode number ``m_f`` of a Kolmogorov body force ``F = (A sin(2 pi m_f y / L), 0)`` whose
#: work is ``P = <F . u>``; and the terms no budget implements (hyperviscosity, linear
#: drag): a trajectory with any of them non-zero has no checkable budget.
ENERGY_BUDGET_VISCOSITY = "nu"
ENERGY_BUDGET_FORCING = ("forcing_amplitude", "forcing_wavenumber")
ENERGY_BUDGET_UNSUPPORTED = ("hyperviscosity", "drag")

#: Vocabulary of :attr:`Simulator.symmetries`: exact symmetries of the periodic grid that a
#: system may declare. A transformation ``g: x -> M x + s`` (``M`` an orthogonal integer
#: 2x2 matrix, ``s`` a shift) acts on fields as
#: ``f'(x) = f(g^-1 x)`` for scalars, ``u'(x) = M u(g^-1 x)`` for vectors (components
#: rotate and flip with the grid) and ``w'(x) = det(M) w(g^-1 x)`` for pseudoscalars (a
#: field declared ``curl_of`` a vector, e.g. vorticity: it changes sign under a mirror
#: reflection, not under a rotation). Reflections and rotations are about the grid point
#: ``x = 0`` (index ``i -> -i mod N``); on the grid, shifts are by whole cells. ``negate``
#: is the one internal symmetry: ``f'(x) = -f(x)`` for every field at once.
#: ``negate_each_snapshot`` is a statement about trajectories rather than single
#: snapshots: the joint law of ``(f(t_0), f(t_1), ...)`` is unchanged when any one
#: snapshot alone is negated, so the sign of one snapshot says nothing about the sign of
#: another (the GAN then draws the sign of every generated snapshot independently).
SYMMETRIES: dict[str, str] = {
    "shift": "periodic translations in x and in y",
    "shift_x": "periodic translations in x only",
    "shift_y": "periodic translations in y only",
    "flip_x": "mirror x -> -x (u_x -> -u_x, pseudoscalars change sign)",
    "flip_y": "mirror y -> -y (u_y -> -u_y, pseudoscalars change sign)",
    "rotate_90": "rotation by 90 degrees counterclockwise, (x, y) -> (-y, x), "
                 "(u_x, u_y) -> (-u_y, u_x)",
    "rotate_180": "point reflection (x, y) -> (-x, -y), u -> -u (a proper rotation)",
    "negate": "global sign change of every field, f -> -f (e.g. Ising spins in zero field); "
              "not a grid map",
    "negate_each_snapshot": "negating any one stored snapshot of a trajectory alone leaves "
                            "the law of the whole trajectory unchanged: the global sign has "
                            "no memory between snapshots (Ising under Swendsen-Wang); "
                            "implies negate",
}


def check_resolution(resolution: Any) -> int:
    """Validate a grid resolution: a power of two between 8 and 4096 points per side."""
    try:
        number = int(resolution)
    except (TypeError, ValueError):
        raise ValueError(f"resolution {resolution!r} is not an integer") from None
    if number != resolution or number < MIN_RESOLUTION or number > MAX_RESOLUTION \
            or number & (number - 1):
        raise ValueError(f"resolution {resolution!r} must be a power of two between "
                         f"{MIN_RESOLUTION} and {MAX_RESOLUTION}")
    return number


class Simulator:
    """Base class of the reference simulators (see the module docstring).

    Subclasses keep their constructors small: only numerical options that are not
    physical parameters (e.g. a CFL number) belong there.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    fields: ClassVar[tuple[FieldSpec, ...]] = ()
    invariants: ClassVar[tuple[Invariant, ...]] = ()
    inits: ClassVar[tuple[str, ...]] = ("random",)
    #: static systems (no dynamics) produce exactly one snapshot at t = 0
    static: ClassVar[bool] = False
    default_box_size: ClassVar[float] = 2.0 * math.pi
    default_t_end: ClassVar[float] = 1.0
    default_snapshots: ClassVar[int] = 11
    #: trajectories per simulator call in sweeps (batched FFTs); never changes results
    sweep_batch_size: ClassVar[int] = 8
    #: whether ``simulate``/``run`` take a torch ``device`` (see :meth:`check_device`)
    torch_backend: ClassVar[bool] = False
    #: why a system without a torch backend stays on numpy (quoted when it refuses one)
    numpy_only_reason: ClassVar[str] = "it has no torch backend"
    #: exact symmetries (names from :data:`SYMMETRIES`) of the *distribution* of the
    #: system's fields at every time and for every parameter value: the dynamics commute
    #: with them and the random initial conditions are statistically invariant under
    #: them. The GAN's data augmentation applies only these. Default: none.
    symmetries: ClassVar[tuple[str, ...]] = ()
    time_units: ClassVar[str] = "time"
    length_units: ClassVar[str] = "length"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [name for name in cls.symmetries if name not in SYMMETRIES]
        if unknown:
            raise TypeError(f"{cls.__name__}.symmetries: unknown name(s) {unknown}; "
                            f"expected names from {', '.join(SYMMETRIES)}")
        if "negate_each_snapshot" in cls.symmetries and "negate" not in cls.symmetries:
            raise TypeError(f"{cls.__name__}.symmetries: negate_each_snapshot implies negate; "
                            "declare both")

    # ------------------------------------------------------------------ metadata
    def parameter(self, name: str) -> Parameter:
        """The declared :class:`Parameter` called ``name`` (``ValueError`` if unknown)."""
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        known = ", ".join(p.name for p in self.parameters) or "none"
        raise ValueError(f"{self.name} has no parameter {name!r} (known: {known})")

    def field(self, name: str) -> FieldSpec:
        """The declared :class:`FieldSpec` called ``name`` (``ValueError`` if unknown)."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        known = ", ".join(f.name for f in self.fields)
        raise ValueError(f"{self.name} has no field {name!r} (known: {known})")

    def resolve_parameters(self, values: Mapping[str, Any] | None) -> dict[str, float]:
        """Fill in defaults and check every value against its declared range.

        Returns:
            ``{name: float}`` for every declared parameter, in declaration order.
        Raises:
            ValueError: for unknown names or values outside the declared range.
        """
        values = dict(values or {})
        for name in values:
            self.parameter(name)
        return {p.name: p.check(values.get(p.name, p.default)) for p in self.parameters}

    def snapshot_times(self, t_end: Any, n_snapshots: Any) -> np.ndarray:
        """Snapshot times ``linspace(0, t_end, n_snapshots)`` (float64, shape (T,)).

        Static systems accept only ``n_snapshots == 1`` and return ``[0.0]``.
        """
        try:
            count = int(n_snapshots)
        except (TypeError, ValueError):
            raise ValueError(f"n_snapshots {n_snapshots!r} is not an integer") from None
        if count != n_snapshots or count < 1:
            raise ValueError(f"n_snapshots must be a positive integer, got {n_snapshots!r}")
        if self.static:
            if count != 1:
                raise ValueError(f"{self.name} is static: n_snapshots must be 1, "
                                 f"got {count}")
            return np.zeros(1)
        try:
            end = float(t_end)
        except (TypeError, ValueError):
            raise ValueError(f"t_end {t_end!r} is not a number") from None
        if not math.isfinite(end) or end <= 0.0:
            raise ValueError(f"t_end must be a positive finite time, got {t_end!r}")
        if count == 1:
            return np.array([end])
        return np.linspace(0.0, end, count)

    def make_grid(self, resolution: Any, box_size: float | None = None) -> PeriodicGrid:
        """The periodic grid for ``resolution`` points per side (checked)."""
        size = self.default_box_size if box_size is None else float(box_size)
        if not math.isfinite(size) or size <= 0:
            raise ValueError(f"box_size must be positive, got {box_size!r}")
        return PeriodicGrid(check_resolution(resolution), size)

    def check_initial_state(self, initial_state: Mapping[str, Any] | None,
                            grid: PeriodicGrid) -> dict[str, np.ndarray] | None:
        """Validate a user initial state ``{field name: (Nx, Ny) array}``.

        Only the fields named in :attr:`initial_fields` are accepted; each must be a
        finite 2-D array of the grid's shape. Subclasses add physical bound checks in
        :meth:`validate_initial_state`.
        """
        if initial_state is None:
            return None
        if not isinstance(initial_state, Mapping):
            raise ValueError("initial_state must be a dict of field name -> 2-D array")
        expected = set(self.initial_fields)
        unknown = set(initial_state) - expected
        if unknown:
            raise ValueError(f"initial_state: {self.name} does not take field(s) "
                             f"{', '.join(sorted(unknown))} "
                             f"(expected {', '.join(sorted(expected)) or 'none'})")
        missing = expected - set(initial_state)
        if missing:
            raise ValueError(f"initial_state: missing field(s) {', '.join(sorted(missing))}")
        state = {}
        for name, value in initial_state.items():
            array = np.asarray(value, dtype=np.float64)
            if array.shape != grid.shape:
                raise ValueError(f"initial_state[{name!r}] has shape {array.shape}, "
                                 f"expected {grid.shape}")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"initial_state[{name!r}] contains NaN or Inf")
            state[name] = array
        self.validate_initial_state(state)
        return state

    #: fields an ``initial_state`` must give (default: all rank-0 fields)
    @property
    def initial_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.rank == 0)

    def validate_initial_state(self, state: dict[str, np.ndarray]) -> None:
        """Hook for subclasses: raise ``ValueError`` if ``state`` breaks physical bounds."""

    # ---------------------------------------------------------------- integration
    def check_device(self, device: str | None) -> torch.device | None:
        """``None`` for the numpy path, else the checked :class:`torch.device`.

        Raises:
            ValueError: one line, when this system has no torch backend
                (:attr:`torch_backend`) or the device is unknown or absent
                (:func:`simulators.backend.resolve_device`).
        """
        if device is None:
            return None
        if not self.torch_backend:
            raise ValueError(f"{self.name} runs on numpy only (device={device!r} refused): "
                             f"{self.numpy_only_reason}")
        from simulators.backend import resolve_device
        return resolve_device(device)

    def simulate(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                 times: np.ndarray, seeds: Sequence[int], init: str = "random",
                 initial_state: Mapping[str, np.ndarray] | None = None,
                 device: str | None = None) -> dict[str, np.ndarray]:
        """Integrate a batch of ``B`` trajectories.

        Args:
            parameters: ``{name: array of shape (B,)}``, already range-checked.
            grid: the periodic grid.
            times: snapshot times, shape (T,), non-decreasing, ``times[0] >= 0``.
            seeds: one integer seed per trajectory (length B).
            init: name of the initial condition, one of :attr:`inits`.
            initial_state: optional checked initial fields ``{name: (Nx, Ny)}``, shared
                by the whole batch (overrides ``init``).
            device: ``None`` (numpy) or a torch device string for systems with
                :attr:`torch_backend` (see :meth:`check_device`).

        Returns:
            ``{field name: float64 array (B, T, Nx, Ny) or (B, T, Nx, Ny, 2)}``.
        """
        raise NotImplementedError

    def run(self, parameters: Mapping[str, Any] | None = None, resolution: int = 64,
            t_end: float | None = None, n_snapshots: int | None = None, seed: int = 0,
            init: str = "random", initial_state: Mapping[str, Any] | None = None,
            box_size: float | None = None, device: str | None = None) -> xr.Dataset:
        """Run one trajectory and return it as an :class:`xarray.Dataset`.

        Args:
            parameters: ``{name: value}``; missing names take their defaults.
            resolution: grid points per side (a power of two, 8 to 4096).
            t_end: final time (system units); default :attr:`default_t_end`.
            n_snapshots: number of snapshots, equally spaced on ``[0, t_end]``;
                default :attr:`default_snapshots` (1 for static systems).
            seed: integer seed of the random initial condition / noise.
            init: initial condition name (:attr:`inits`).
            initial_state: ``{field: (Nx, Ny) array}`` overriding ``init``.
            box_size: side ``L`` of the periodic square (default :attr:`default_box_size`).
            device: ``None`` (numpy) or a torch device string (systems with
                :attr:`torch_backend`; ``ValueError`` otherwise).

        Returns:
            Dataset with data variables named after :attr:`fields` (dims
            ``time, x, y`` and ``component`` for vectors), coordinates ``time``, ``x``,
            ``y`` in physical units, and attrs ``system``, ``seed``, ``init``,
            ``box_size`` and every parameter value. The same arguments give the same
            bytes.
        """
        parameters = self.resolve_parameters(parameters)
        grid = self.make_grid(resolution, box_size)
        if t_end is None:
            t_end = self.default_t_end
        if n_snapshots is None:
            n_snapshots = 1 if self.static else self.default_snapshots
        times = self.snapshot_times(t_end, n_snapshots)
        seed = check_seed(seed)
        self.check_init(init)
        state = self.check_initial_state(initial_state, grid)
        self.check_device(device)
        batch = {name: np.array([value]) for name, value in parameters.items()}
        fields = self.simulate(batch, grid, times, [seed], init=init, initial_state=state,
                               device=device)
        return self.to_dataset({name: array[0] for name, array in fields.items()},
                               grid, times, parameters, seed=seed,
                               init="initial_state" if state is not None else init)

    def check_init(self, init: str) -> str:
        """Check that ``init`` names a known initial condition of this system."""
        if init not in self.inits:
            raise ValueError(f"{self.name}: unknown init {init!r} (known: "
                             f"{', '.join(self.inits)})")
        return init

    def to_dataset(self, fields: Mapping[str, np.ndarray], grid: PeriodicGrid,
                   times: np.ndarray, parameters: Mapping[str, float], *, seed: int,
                   init: str) -> xr.Dataset:
        """Wrap one trajectory's arrays ``(T, Nx, Ny[, 2])`` as a Dataset (float32)."""
        data_vars = {}
        for spec in self.fields:
            dims = ("time", "x", "y") + (("component",) if spec.rank == 1 else ())
            data_vars[spec.name] = xr.Variable(
                dims, np.asarray(fields[spec.name], dtype=np.float32),
                attrs={"units": spec.units, "long_name": spec.long_name})
        coords = {
            "time": ("time", np.asarray(times, dtype=np.float64),
                     {"units": self.time_units, "long_name": "time"}),
            "x": ("x", grid.x, {"units": self.length_units, "long_name": "x coordinate"}),
            "y": ("y", grid.y, {"units": self.length_units, "long_name": "y coordinate"}),
        }
        if any(spec.rank == 1 for spec in self.fields):
            coords["component"] = ("component", np.array(["x", "y"]))
        attrs = {"system": self.name, "seed": int(seed), "init": init,
                 "box_size": float(grid.box_size), **{k: float(v) for k, v in parameters.items()}}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def invariants_for(self, init: str | None) -> tuple[Invariant, ...]:
        """The declared invariants that hold for trajectories started from ``init``
        (those without an ``init`` restriction, and those restricted to ``init``);
        ``None`` gives those without a restriction only (e.g. a user's initial state)."""
        return tuple(i for i in self.invariants if i.init is None or i.init == init)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description (name, parameters, fields, invariants, symmetries)."""
        return {
            "name": self.name,
            "description": self.description,
            "static": self.static,
            "inits": list(self.inits),
            "parameters": [vars(p) | {"log_scale": p.log_scale} for p in self.parameters],
            "fields": [vars(f) for f in self.fields],
            "invariants": [{k: v for k, v in vars(i).items() if v not in (None, "")}
                           for i in self.invariants],
            "symmetries": list(self.symmetries),
        }


def check_seed(seed: Any) -> int:
    """Validate a seed: a non-negative integer below 2**63."""
    try:
        number = int(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed {seed!r} is not an integer") from None
    if number != seed or not 0 <= number < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return number
