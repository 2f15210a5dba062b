"""What fixes a file's layout, and how its trajectories are split.

:class:`StoreSchema` holds the system, its declared parameters, fields and invariants,
the grid and the snapshot times (everything that decides the shapes and attributes of a
file, see ``data/FORMAT.md``); it is written to the root attribute
``system_description`` as JSON and read back from it. :func:`assign_split` is the
train/valid/test policy: by trajectory, fixed from the master seed (and, in the
stratified layout, the conditions) when a file is created.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulators.base import FieldSpec, Invariant, Parameter, Simulator
from simulators.grid import PeriodicGrid
from simulators.messages import first_line as _first_line
from simulators.store.hdf5 import _is_number

FORMAT_VERSION = "1.0"
SPLIT_NAMES = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
#: how :func:`assign_split` chooses the held-out trajectories
SPLIT_LAYOUTS = ("random", "stratified")


@dataclass(frozen=True)
class StoreSchema:
    """Everything that fixes a file's layout: system, parameters, fields, grid, times.

    Attributes:
        system: simulator name (``"navier_stokes2d"``).
        parameters: declared parameters (names, ranges, units), in order.
        fields: declared fields; rank 0 go to ``t0_fields``, rank 1 to ``t1_fields``.
        invariants: declared invariants (stored as JSON for downstream tools).
        times: snapshot times, shape (T,).
        resolution: grid points per side ``N``.
        box_size: side ``L`` of the periodic square.
        time_units, length_units: CF unit strings.
        dataset_name: free name (default: the system name).
    """

    system: str
    parameters: tuple[Parameter, ...]
    fields: tuple[FieldSpec, ...]
    invariants: tuple[Invariant, ...]
    times: np.ndarray
    resolution: int
    box_size: float
    time_units: str = "1"
    length_units: str = "1"
    dataset_name: str = ""

    @classmethod
    def from_simulator(cls, simulator: Simulator, grid: PeriodicGrid, times: np.ndarray,
                       dataset_name: str = "", init: str | None = "random") -> StoreSchema:
        """Schema of the files written for ``simulator`` on ``grid`` at ``times``, for
        trajectories started from ``init`` (its invariants are
        :meth:`Simulator.invariants_for` that init; ``None`` for states of unknown origin,
        e.g. converted data)."""
        return cls(system=simulator.name, parameters=tuple(simulator.parameters),
                   fields=tuple(simulator.fields), invariants=simulator.invariants_for(init),
                   times=np.asarray(times, dtype=np.float64), resolution=grid.resolution,
                   box_size=grid.box_size, time_units=simulator.time_units,
                   length_units=simulator.length_units,
                   dataset_name=dataset_name or simulator.name)

    @property
    def grid(self) -> PeriodicGrid:
        return PeriodicGrid(self.resolution, self.box_size)

    def description_json(self) -> str:
        """JSON text of parameters, fields and invariants (root attr ``system_description``)."""
        return json.dumps({
            "system": self.system,
            "parameters": [vars(p) for p in self.parameters],
            "fields": [vars(f) for f in self.fields],
            "invariants": [{k: v for k, v in vars(i).items() if v is not None}
                           for i in self.invariants],
        })

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of the whole schema (a run's ``config.json`` keeps it, so generated
        files follow the training file's layout): the description of
        :meth:`description_json` plus grid, times, units and name. Inverse:
        :meth:`from_dict`."""
        return {"description": json.loads(self.description_json()),
                "times": [float(t) for t in self.times], "resolution": int(self.resolution),
                "box_size": float(self.box_size), "time_units": self.time_units,
                "length_units": self.length_units, "dataset_name": self.dataset_name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreSchema:
        """Inverse of :meth:`to_dict` (``KeyError``/``ValueError`` for a damaged dict)."""
        return cls.from_description(
            json.dumps(data["description"]), times=np.asarray(data["times"]),
            resolution=data["resolution"], box_size=data["box_size"],
            time_units=data["time_units"], length_units=data["length_units"],
            dataset_name=data["dataset_name"])

    @classmethod
    def from_description(cls, text: str, *, times: np.ndarray, resolution: int,
                         box_size: float, time_units: str = "1", length_units: str = "1",
                         dataset_name: str = "") -> StoreSchema:
        """Inverse of :meth:`description_json` plus the grid and times.

        Raises:
            ValueError: ``text`` is not such a JSON description (bad JSON, missing or
                unknown keys, values of the wrong type, a field rank other than 0 or 1,
                duplicate names, a non-finite or inverted parameter range).
        """
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object, got {type(data).__name__}")
            invariants = []
            for item in data.get("invariants", []):
                if item.get("values") is not None:
                    item = {**item, "values": tuple(item["values"])}
                invariants.append(Invariant(**item))
            parameters = tuple(Parameter(**p) for p in data["parameters"])
            fields = tuple(FieldSpec(**f) for f in data["fields"])
        except (KeyError, TypeError, AttributeError, RecursionError) as error:
            raise ValueError(f"not a valid system description ({type(error).__name__}: "
                             f"{_first_line(error)})") from None
        _check_declarations(data["system"], parameters, fields)
        return cls(system=data["system"], parameters=parameters, fields=fields,
                   invariants=tuple(invariants), times=np.asarray(times, dtype=np.float64),
                   resolution=int(resolution), box_size=float(box_size),
                   time_units=time_units, length_units=length_units,
                   dataset_name=dataset_name or data["system"])


def _check_declarations(system: Any, parameters: Sequence[Parameter],
                        fields: Sequence[FieldSpec]) -> None:
    """Types and ranges of a description read from a file (it may be damaged or crafted)."""
    if not isinstance(system, str) or not system:
        raise ValueError(f"system name {system!r} is not a non-empty string")
    names = [p.name for p in parameters] + [f.name for f in fields]
    for name in names:
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ValueError(f"parameter or field name {name!r} is not a plain name")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate parameter or field names in {names}")
    for p in parameters:
        if not all(_is_number(v) and math.isfinite(v) for v in (p.low, p.high, p.default)) \
                or p.low > p.high:
            raise ValueError(f"parameter {p.name!r}: range [{p.low!r}, {p.high!r}] (default "
                             f"{p.default!r}) is not a finite interval")
        if not isinstance(p.units, str) or not isinstance(p.integer, bool) \
                or p.log not in (None, True, False):
            raise ValueError(f"parameter {p.name!r}: units, log or integer of the wrong type")
    for f in fields:
        if isinstance(f.rank, bool) or f.rank not in (0, 1):
            raise ValueError(f"field {f.name!r}: rank {f.rank!r} is not 0 or 1")
        if not isinstance(f.units, str) or not isinstance(f.long_name, str):
            raise ValueError(f"field {f.name!r}: units or long_name is not a string")
    if not fields:
        raise ValueError("no fields declared")


def assign_split(n_trajectories: int, seed: int, positions: np.ndarray | None = None
                 ) -> np.ndarray:
    """Deterministic train/valid/test assignment by trajectory (0/1/2), shape (B,).

    With ``B >= 5``: ``n_held = max(1, round(0.1 B))`` trajectories each for validation
    and test, the rest train; with fewer trajectories, all train. Snapshots of one
    trajectory never straddle splits.

    ``positions=None`` (layout ``"random"``): the held-out trajectories are the first
    ``2 n_held`` of a permutation seeded from ``seed``. With ``positions`` (layout
    ``"stratified"``), each trajectory's condition as a point of the unit cube ``(B, P)``
    (:func:`simulators.sweep.design_positions`: every varying parameter mapped to
    [0, 1], in log for a log-scaled one): the trajectories are ordered by value for
    ``P = 1``, else along a Z-order (Morton) curve through the cube
    (:func:`morton_key`, ``min(10, 64 // P)`` bits per axis; ties in index order), cut into
    ``n_held`` runs of consecutive trajectories whose lengths differ by at most one,
    and each run gives one trajectory, drawn from the seeded stream, to validation and
    another to test. Every stretch of the range then holds its share of both held-out
    splits (a 1-D sweep of 240 trajectories: 8 validation trajectories in each third),
    where a random draw can leave one nearly empty (the Ising fidelity data drew 1, 12
    and 11 validation trajectories into the thirds of its temperature range).
    """
    if positions is not None:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[0] != n_trajectories:
            raise ValueError(f"positions must have shape ({n_trajectories}, P), "
                             f"got {positions.shape}")
        if not np.isfinite(positions).all():
            raise ValueError("positions must be finite")
    split = np.zeros(n_trajectories, dtype=np.int8)
    if n_trajectories < 5:
        return split
    n_held = max(1, round(SPLIT_FRACTIONS[1] * n_trajectories))
    rng = np.random.default_rng([seed, 0x5B1])
    if positions is None:
        order = rng.permutation(n_trajectories)
        split[order[:n_held]] = 1
        split[order[n_held:2 * n_held]] = 2
        return split
    dims = positions.shape[1]
    key = (positions[:, 0] if dims == 1 else
           morton_key(positions, bits=min(10, 64 // max(dims, 1))))
    for run in np.array_split(np.argsort(key, kind="stable"), n_held):
        chosen = rng.choice(run, size=2, replace=False)
        split[chosen[0]], split[chosen[1]] = 1, 2
    return split


def check_split_layout(layout: str) -> None:
    """``ValueError`` naming ``layout`` unless it is one of :data:`SPLIT_LAYOUTS`."""
    if layout not in SPLIT_LAYOUTS:
        raise ValueError(f"unknown split layout {layout!r} "
                         f"(choose from {', '.join(SPLIT_LAYOUTS)})")


def morton_key(positions: np.ndarray, bits: int = 10) -> np.ndarray:
    """Z-order (Morton) index of points of the unit cube ``(B, P)``, shape (B,) uint64:
    each coordinate clipped to [0, 1] and quantised to ``bits`` bits, the bits of the P
    axes interleaved (most significant first), so that points close on the curve are
    close in the cube. ``P * bits`` must not exceed 64; ``P = 0`` gives zeros."""
    positions = np.asarray(positions, dtype=np.float64)
    count, dims = positions.shape
    if dims * bits > 64:
        raise ValueError(f"{dims} axes of {bits} bits do not fit a 64-bit Morton key")
    levels = np.clip(np.floor(np.clip(positions, 0.0, 1.0) * 2**bits), 0, 2**bits - 1
                     ).astype(np.uint64)
    key = np.zeros(count, dtype=np.uint64)
    for bit in range(bits - 1, -1, -1):
        for axis in range(dims):
            key = (key << np.uint64(1)) | ((levels[:, axis] >> np.uint64(bit)) & np.uint64(1))
    return key
