"""The HDF5 field store: writer, reader and format checker (spec: ``data/FORMAT.md``).

One file holds ``B`` trajectories of one system on one grid, laid out as in The Well
(``t0_fields/``, ``t1_fields/``, ``scalars/``, ``dimensions/``,
``boundary_conditions/``), with per-trajectory physical parameters in ``scalars/``,
HDF5 dimension scales so that ``xarray.open_dataset(path, engine="h5netcdf",
group="t0_fields")`` shows the named dims ``trajectory, time, x, y``, float32 fields
chunked one snapshot per chunk (with Fletcher-32 checksums), normalisation statistics
of the training split computed when the file is finalised, and provenance attributes.

Writes are atomic: data goes to ``<path>.partial``; :meth:`FieldStoreWriter.finalize`
computes the statistics, flushes, fsyncs and renames the file to ``<path>``. A crash
leaves at most a ``.partial`` file, which ``resume=True`` continues.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from simulators.base import FieldSpec, Invariant, Parameter, Simulator
from simulators.grid import PeriodicGrid

FORMAT_VERSION = "1.0"
PARTIAL_SUFFIX = ".partial"
SPLIT_NAMES = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


class FieldStoreError(ValueError):
    """A field-store file is missing, unreadable or does not follow data/FORMAT.md."""


def package_version() -> str:
    """Version of the installed distribution (``0.0.0+unknown`` from a bare source tree)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("physics-surrogate")
    except PackageNotFoundError:
        return "0.0.0+unknown"


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


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


def partial_path(path: str | os.PathLike) -> Path:
    """Where a file is written before its atomic rename: ``<path>.partial``."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an output path whose directory is missing, or that exists without overwrite."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FieldStoreError(f"{path}: output directory {path.parent} does not exist")
    if path.is_dir():
        raise FieldStoreError(f"{path}: is a directory")
    if path.exists() and not overwrite:
        raise FieldStoreError(f"{path}: already exists (pass --overwrite to replace it)")
    return path


def assign_split(n_trajectories: int, seed: int) -> np.ndarray:
    """Deterministic train/valid/test assignment by trajectory (0/1/2), shape (B,).

    With ``B >= 5``: ``max(1, round(0.1 B))`` trajectories each for validation and
    test, chosen by a permutation seeded from ``seed``; the rest train. With fewer
    trajectories, all train. Snapshots of one trajectory never straddle splits.
    """
    split = np.zeros(n_trajectories, dtype=np.int8)
    if n_trajectories >= 5:
        n_held = max(1, round(SPLIT_FRACTIONS[1] * n_trajectories))
        order = np.random.default_rng([seed, 0x5B1]).permutation(n_trajectories)
        split[order[:n_held]] = 1
        split[order[n_held:2 * n_held]] = 2
    return split


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def command_line() -> str:
    """The running command line, with the program reduced to its name (no machine paths)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


@dataclass
class Provenance:
    """Who made a file and how (root attributes of every file)."""

    producer: str
    seed: int
    command: str = field(default_factory=lambda: command_line())
    version: str = field(default_factory=package_version)
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.UTC).isoformat(timespec="seconds"))


class FieldStoreWriter:
    """Stream trajectories into a new field-store file, then finalise it atomically.

    Usage::

        with FieldStoreWriter(path, schema, n_trajectories=64, provenance=prov) as writer:
            for index in range(64):
                writer.write(index, parameters={"nu": 1e-3}, fields=arrays, seed=seeds[index])
        # leaving the block without an exception finalises: stats, fsync, rename

    Args:
        path: final file name (the data is first written to ``<path>.partial``).
        schema: layout (system, parameters, fields, times, grid).
        n_trajectories: ``B``, the number of trajectories the file will hold.
        provenance: producer, seed, command line, version, creation time.
        overwrite: replace an existing final file (only at the final rename).
        resume: reopen an existing ``.partial`` file written with the same
            ``resume_key`` and keep its completed trajectories.
        resume_key: text that identifies the job (e.g. its JSON configuration); a
            partial file with another key is never resumed.
        extra_attrs: further root attributes (JSON-serialisable scalars or strings).
    """

    def __init__(self, path: str | os.PathLike, schema: StoreSchema, n_trajectories: int,
                 provenance: Provenance, *, overwrite: bool = False, resume: bool = False,
                 resume_key: str = "", extra_attrs: Mapping[str, Any] | None = None) -> None:
        if n_trajectories < 1:
            raise FieldStoreError(f"{path}: need at least one trajectory, got {n_trajectories}")
        self.path = check_output_path(path, overwrite)
        self.partial = partial_path(self.path)
        self.schema = schema
        self.n_trajectories = int(n_trajectories)
        self._file: h5py.File | None = None
        self.resumed = False
        if resume and self.partial.exists():
            self._file = self._reopen(resume_key)
            self.resumed = True
        else:
            self._file = self._create(provenance, resume_key, extra_attrs or {})
        self.completed = np.asarray(self._file["completed"][...], dtype=bool)

    # ----------------------------------------------------------------- creation
    def _reopen(self, resume_key: str) -> h5py.File:
        # identify the job read-only first: a partial file of another job stays untouched
        # (closing a file opened for writing rewrites its superblock)
        try:
            with h5py.File(self.partial, "r") as handle:
                same = _text(handle.attrs.get("resume_key", "")) == resume_key and \
                    int(handle.attrs.get("n_trajectories", -1)) == self.n_trajectories
                completed = handle.get("completed")
                shape_ok = isinstance(completed, h5py.Dataset) and \
                    completed.shape == (self.n_trajectories,)
        except _READ_ERRORS as error:
            raise FieldStoreError(f"{self.partial}: cannot resume, the partial file is "
                                  f"unreadable ({_first_line(error)}); delete it and start "
                                  f"again") from None
        if not same or not shape_ok:
            raise FieldStoreError(f"{self.partial}: was written by a different job; "
                                  f"delete it or rerun with the original options")
        try:
            return h5py.File(self.partial, "r+")
        except OSError as error:
            raise FieldStoreError(f"{self.partial}: cannot resume, the partial file is "
                                  f"unreadable ({_first_line(error)}); delete it and start "
                                  f"again") from None

    def _create(self, provenance: Provenance, resume_key: str,
                extra_attrs: Mapping[str, Any]) -> h5py.File:
        schema = self.schema
        n, grid = self.n_trajectories, schema.grid
        handle = h5py.File(self.partial, "w", track_order=True)
        try:
            attrs = handle.attrs
            attrs["dataset_name"] = schema.dataset_name or schema.system
            attrs["grid_type"] = "cartesian"
            attrs["n_spatial_dims"] = 2
            attrs["n_trajectories"] = n
            attrs["simulation_parameters"] = [p.name for p in schema.parameters]
            attrs["format_version"] = FORMAT_VERSION
            attrs["Conventions"] = "CF-1.8"
            attrs["system"] = schema.system
            attrs["system_description"] = schema.description_json()
            attrs["producer"] = provenance.producer
            attrs["producer_version"] = provenance.version
            attrs["seed"] = int(provenance.seed)
            attrs["created"] = provenance.created
            attrs["command"] = provenance.command
            attrs["box_size"] = float(schema.box_size)
            attrs["resolution"] = int(schema.resolution)
            attrs["resume_key"] = resume_key
            attrs["complete"] = False
            for key, value in extra_attrs.items():
                attrs[key] = value

            dims = handle.create_group("dimensions")
            dims.attrs["spatial_dims"] = ["x", "y"]
            coords = {"time": (schema.times, schema.time_units, "time"),
                      "x": (grid.x, schema.length_units, "x coordinate (cell start)"),
                      "y": (grid.y, schema.length_units, "y coordinate (cell start)")}
            for name, (values, units, long_name) in coords.items():
                scale = dims.create_dataset(name, data=np.asarray(values, dtype=np.float64))
                scale.attrs.update({"units": units, "long_name": long_name,
                                    "sample_varying": False, "time_varying": False})
                scale.make_scale(name)
                handle[name] = scale      # hard link: netCDF dims must be visible to siblings
            trajectory = handle.create_dataset("trajectory", data=np.arange(n, dtype=np.int64))
            trajectory.attrs["long_name"] = "trajectory index"
            trajectory.make_scale("trajectory")
            if any(spec.rank == 1 for spec in schema.fields):
                component = handle.create_dataset("component", data=np.arange(2, dtype=np.int8))
                component.attrs.update({"long_name": "vector component",
                                        "labels": "x y"})
                component.make_scale("component")

            for name, values, extra in (
                ("split", assign_split(n, provenance.seed),
                 {"flag_values": np.arange(3, dtype=np.int8),
                  "flag_meanings": " ".join(SPLIT_NAMES),
                  "long_name": "train/valid/test assignment of each trajectory"}),
                ("trajectory_seed", np.zeros(n, dtype=np.uint64),
                 {"long_name": "seed of each trajectory's random numbers"}),
                ("completed", np.zeros(n, dtype=bool),
                 {"long_name": "trajectory has been written"}),
            ):
                dataset = handle.create_dataset(name, data=values)
                dataset.attrs.update(extra)
                dataset.dims[0].attach_scale(trajectory)

            scalars = handle.create_group("scalars")
            scalars.attrs["field_names"] = [p.name for p in schema.parameters]
            for parameter in schema.parameters:
                dataset = scalars.create_dataset(parameter.name, shape=(n,), dtype=np.float64,
                                                 fillvalue=np.nan)
                dataset.attrs.update({
                    "units": parameter.units, "long_name": parameter.doc,
                    "valid_min": parameter.low, "valid_max": parameter.high,
                    "log_scale": parameter.log_scale, "integer": parameter.integer,
                    "sample_varying": True, "time_varying": False})
                dataset.dims[0].attach_scale(trajectory)

            boundaries = handle.create_group("boundary_conditions")
            for axis in ("x", "y"):
                group = boundaries.create_group(f"{axis}_periodic")
                group.attrs.update({"associated_dims": [axis], "associated_fields": [],
                                    "bc_type": "PERIODIC", "sample_varying": False,
                                    "time_varying": False})
                # The Well marks the cells a boundary condition applies to: for a periodic
                # axis the first and the last cell (its readers call an all-False mask OPEN)
                edges = np.zeros(grid.resolution, dtype=bool)
                edges[[0, -1]] = True
                mask = group.create_dataset("mask", data=edges)
                mask.dims[0].attach_scale(handle[axis])
                values = group.create_dataset("values", data=np.zeros(0, dtype=np.float32))
                values.make_scale("values")   # its own (empty) dimension: no phony dims

            n_times = len(schema.times)
            # no rank-2 (tensor) fields, but The Well's readers expect the group
            handle.create_group("t2_fields").attrs["field_names"] = np.array(
                [], dtype=h5py.string_dtype())
            for rank in (0, 1):
                group = handle.create_group(f"t{rank}_fields")
                specs = [spec for spec in schema.fields if spec.rank == rank]
                group.attrs["field_names"] = [spec.name for spec in specs]
                for spec in specs:
                    shape = (n, n_times, *grid.shape) + ((2,) if rank == 1 else ())
                    dataset = group.create_dataset(
                        spec.name, shape=shape, dtype=np.float32,
                        chunks=(1, 1, *shape[2:]), fletcher32=True)
                    dataset.attrs.update({
                        "units": spec.units, "long_name": spec.long_name,
                        "dim_varying": [True, True], "sample_varying": True,
                        "time_varying": True})
                    names = ["trajectory", "time", "x", "y"] + (["component"] if rank else [])
                    for axis, name in enumerate(names):
                        dataset.dims[axis].attach_scale(handle[name])
            handle.flush()
        except BaseException:
            handle.close()
            self.partial.unlink(missing_ok=True)
            raise
        return handle

    # ------------------------------------------------------------------ writing
    def __enter__(self) -> FieldStoreWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.finalize()
        else:
            self.close()

    @property
    def pending(self) -> list[int]:
        """Indices of trajectories not yet written."""
        return [int(i) for i in np.flatnonzero(~self.completed)]

    def write(self, index: int, parameters: Mapping[str, float],
              fields: Mapping[str, np.ndarray], seed: int) -> None:
        """Write trajectory ``index``: parameters, fields ``(T, N, N[, 2])`` and seed.

        Raises:
            FieldStoreError: on a missing or misshapen field, or on NaN/Inf values
                (naming the trajectory, field and first bad time index).
        """
        if self._file is None:
            raise FieldStoreError(f"{self.path}: writer is closed")
        if not 0 <= index < self.n_trajectories:
            raise FieldStoreError(f"trajectory index {index} outside [0, {self.n_trajectories})")
        handle = self._file
        n_times, grid = len(self.schema.times), self.schema.grid
        arrays = {}
        for spec in self.schema.fields:
            if spec.name not in fields:
                raise FieldStoreError(f"trajectory {index}: field {spec.name!r} missing")
            array = np.asarray(fields[spec.name], dtype=np.float32)
            expected = (n_times, *grid.shape) + ((2,) if spec.rank == 1 else ())
            if array.shape != expected:
                raise FieldStoreError(f"trajectory {index}: field {spec.name!r} has shape "
                                      f"{array.shape}, expected {expected}")
            finite = np.isfinite(array).reshape(n_times, -1).all(axis=1)
            if not finite.all():
                raise FieldStoreError(
                    f"trajectory {index}: field {spec.name!r} has NaN/Inf at time index "
                    f"{int(np.flatnonzero(~finite)[0])} (parameters "
                    f"{dict(parameters)}); the simulation became unstable")
            arrays[spec.name] = array
        for parameter in self.schema.parameters:
            if parameter.name not in parameters:
                raise FieldStoreError(f"trajectory {index}: parameter {parameter.name!r} "
                                      f"missing")
            value = float(parameters[parameter.name])
            if not parameter.low <= value <= parameter.high:     # also refuses NaN
                raise FieldStoreError(f"trajectory {index}: parameter {parameter.name!r} = "
                                      f"{value:g} is outside the declared range "
                                      f"{parameter.range_text}")
        for parameter in self.schema.parameters:
            handle[f"scalars/{parameter.name}"][index] = float(parameters[parameter.name])
        for spec in self.schema.fields:
            handle[f"t{spec.rank}_fields/{spec.name}"][index] = arrays[spec.name]
        handle["trajectory_seed"][index] = np.uint64(seed)
        handle["completed"][index] = True
        self.completed[index] = True
        handle.flush()

    def close(self) -> None:
        """Close the partial file without finalising (it stays for ``resume``)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def finalize(self) -> Path:
        """Compute training-split statistics, fsync and atomically rename to ``path``.

        Raises:
            FieldStoreError: if some trajectories were never written.
        """
        if self._file is None:
            raise FieldStoreError(f"{self.path}: writer is closed")
        if not self.completed.all():
            missing = self.pending
            self.close()
            raise FieldStoreError(f"{self.path}: {len(missing)} trajectories were not "
                                  f"written (first: {missing[0]}); the partial file is kept")
        write_statistics(self._file, self.schema)
        self._file.attrs["complete"] = True
        self._file.close()
        self._file = None
        _fsync(self.partial)
        os.replace(self.partial, self.path)
        _fsync_directory(self.path.parent)
        return self.path


# ---------------------------------------------------------------- statistics
def _moments(values: Iterator[np.ndarray], rank: int) -> dict[str, Any]:
    """Streaming mean/std/rms/min/max (and log-moments when all values are positive)."""
    count = 0
    total = total_sq = 0.0
    log_total = log_total_sq = 0.0
    component_total = np.zeros(2)
    component_sq = np.zeros(2)
    low, high = math.inf, -math.inf
    positive = True
    for chunk in values:
        chunk = np.asarray(chunk, dtype=np.float64)
        if rank == 1:
            flat = chunk.reshape(-1, 2)
            component_total += flat.sum(axis=0)
            component_sq += (flat**2).sum(axis=0)
            count += flat.shape[0]
            total_sq += float((flat**2).sum())
            low, high = min(low, float(flat.min())), max(high, float(flat.max()))
            continue
        count += chunk.size
        total += float(chunk.sum())
        total_sq += float((chunk**2).sum())
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
        if positive and chunk.min() > 0:
            logs = np.log(chunk)
            log_total += float(logs.sum())
            log_total_sq += float((logs**2).sum())
        else:
            positive = False
    if count == 0:
        return {}
    if rank == 1:
        mean = component_total / count
        variance = np.maximum(component_sq / count - mean**2, 0.0)
        return {"mean": mean, "std": np.sqrt(variance), "rms": math.sqrt(total_sq / count),
                "min": low, "max": high, "count": count}
    mean = total / count
    stats = {"mean": mean, "std": math.sqrt(max(total_sq / count - mean**2, 0.0)),
             "rms": math.sqrt(total_sq / count), "min": low, "max": high, "count": count}
    if positive:
        log_mean = log_total / count
        stats["log_mean"] = log_mean
        stats["log_std"] = math.sqrt(max(log_total_sq / count - log_mean**2, 0.0))
    return stats


def write_statistics(handle: h5py.File, schema: StoreSchema) -> None:
    """Write ``stats/<field>`` attrs over the training split, reading one snapshot at a time.

    For scalar fields: ``mean``, ``std``, ``rms``, ``min``, ``max``, ``count`` pooled over
    all training trajectories, times and grid points (and ``log_mean``, ``log_std``
    when every value is positive). Vector fields: per-component ``mean``/``std``
    (shape (2,)), ``rms`` of the components. If the training split is empty, all
    trajectories are used (attr ``split`` says which).
    """
    split = handle["split"][...]
    train = np.flatnonzero(split == 0)
    used = "train"
    if train.size == 0:
        train, used = np.arange(split.size), "all"
    if "stats" in handle:
        del handle["stats"]
    group = handle.create_group("stats")
    group.attrs["split"] = used
    group.attrs["n_trajectories"] = int(train.size)
    for spec in schema.fields:
        dataset = handle[f"t{spec.rank}_fields/{spec.name}"]
        chunks = (dataset[int(b), t] for b in train for t in range(dataset.shape[1]))
        stats = _moments(chunks, spec.rank)
        sub = group.create_group(spec.name)
        for key, value in stats.items():
            sub.attrs[key] = value


# ------------------------------------------------------------------- reading
#: the most elements of a dataset that is read whole (coordinates, per-trajectory
#: parameters, split, seeds, completion flags): a damaged or crafted file that declares
#: more is refused instead of allocated (2**26 trajectories is far beyond any real file)
MAX_INDEX_ELEMENTS = 2**26
#: the largest grid side read: one float32 vector snapshot is then at most 512 MiB
MAX_RESOLUTION = 2**13
#: what h5py and numpy raise on a damaged file structure (turned into FieldStoreError)
_READ_ERRORS = (KeyError, TypeError, ValueError, OSError, RuntimeError, IndexError,
                AttributeError, RecursionError)


def open_hdf5(path: str | os.PathLike, error: type[FieldStoreError] = FieldStoreError
              ) -> h5py.File:
    """Open a regular HDF5 file read-only, or raise ``error`` with one line naming it.

    Missing files, directories, non-regular files (a FIFO would block the open), empty
    files and files h5py cannot open (truncated, another format) are refused.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a directory, not an HDF5 file")
    if not path.is_file():         # a FIFO would block the open, a device never ends
        raise error(f"{path}: not a regular file (a pipe, socket or device)")
    if path.stat().st_size == 0:
        raise error(f"{path}: empty file (0 bytes), not HDF5")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise error(f"{path}: not a readable HDF5 file (truncated or another "
                    f"format)") from None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _selection_text(selection: Any) -> str:
    if isinstance(selection, slice) and selection == slice(None):
        return "all"
    return printable(repr(selection))[:60]


def printable(text: str) -> str:
    """``text`` with control characters (newlines, terminal escapes) shown as escapes.

    Text read from a file (provenance, names, units) is printed, never interpreted: this
    keeps it on one line and keeps a crafted attribute from driving the terminal.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def foreign_links(handle: h5py.File, *, datasets: bool = True) -> list[str]:
    """Members that point outside the file: external links and (with ``datasets``)
    virtual datasets and datasets whose raw data lives in external files. Readers
    refuse them; none is ever followed."""
    links: list[tuple[bytes, int]] = []
    # low-level visit: the callback only records (an exception inside an h5py callback
    # surfaces as SystemError), and no link is followed
    handle.id.links.visit(lambda name, info: links.append((name, info.type)), info=True)
    found = []
    for name, kind in links:
        if kind == h5py.h5l.TYPE_EXTERNAL:
            target = handle.id.links.get_val(name)[0]
            found.append(f"/{_text(name)} is a link to another file "
                         f"({printable(_text(target))})")
        elif kind not in (h5py.h5l.TYPE_HARD, h5py.h5l.TYPE_SOFT):
            found.append(f"/{_text(name)} is a user-defined link (not followed)")
    if found or not datasets:
        return found
    for name, kind in links:
        if kind != h5py.h5l.TYPE_HARD:
            continue
        obj = handle.get(_text(name))
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                found.append(f"/{_text(name)} is a virtual dataset mapping other files")
            elif obj.external:
                found.append(f"/{_text(name)} keeps its data in external files "
                             f"({printable(_text(obj.external[0][0]))})")
    return found


def _root_int(attrs: Any, key: str, low: int, high: int) -> int:
    value = attrs[key]
    if not _is_number(value) or not float(value).is_integer():
        raise FieldStoreError(f"root attribute {key!r} should be an integer, got "
                              f"{printable(repr(value))[:80]}")
    value = int(value)
    if not low <= value <= high:
        raise FieldStoreError(f"root attribute {key!r} = {value} is outside [{low}, {high}]")
    return value


def _root_text(attrs: Any, key: str) -> str:
    value = attrs[key]
    if not isinstance(value, (str, bytes)):
        raise FieldStoreError(f"root attribute {key!r} should be text, got "
                              f"{type(value).__name__}")
    return _text(value)


class FieldStore:
    """Read-only view of a field-store file; reads lazily, one chunk at a time.

    Use as a context manager (``with FieldStore(path) as store: ...``).

    Opening checks what reading needs, so that a damaged or crafted file gives one
    :class:`FieldStoreError` naming it rather than a crash or a huge allocation later:
    the root attributes that describe the layout (types, ``n_trajectories`` in
    ``[0, MAX_INDEX_ELEMENTS]``, ``resolution`` in ``[1, MAX_RESOLUTION]``, a finite
    positive ``box_size``), a valid ``system_description``, coordinates of the declared
    sizes (finite; times strictly increasing), every declared field with shape ``(B, T,
    N, N[, 2])``, a float dtype and chunks no larger than one snapshot, every parameter
    and ``split``, ``trajectory_seed``, ``completed`` of shape ``(B,)``, and no member
    pointing into other files. Completion, statistics and value ranges are left to the
    callers (``surrogate check`` checks everything).

    Attributes:
        path, system, dataset_name, n_trajectories, resolution, box_size.
        times: (T,) snapshot times; x, y: (N,) coordinates.
        schema: the :class:`StoreSchema` of the file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = open_hdf5(self.path)
        try:
            self._load_metadata()
        except FieldStoreError as error:
            self._file.close()
            message = str(error)
            if not message.startswith(str(self.path)):
                message = f"{self.path}: {message}"
            raise FieldStoreError(message) from None
        except _READ_ERRORS as error:
            self._file.close()
            raise FieldStoreError(f"{self.path}: not a field-store file "
                                  f"(data/FORMAT.md): {_first_line(error)}") from None

    def _member(self, name: str, kind: type = h5py.Dataset) -> Any:
        obj = self._file.get(name)
        if not isinstance(obj, kind):
            what = "group" if kind is h5py.Group else "dataset"
            raise FieldStoreError(f"{self.path}: {what} {name!r} missing (not a field-store "
                                  f"file, see data/FORMAT.md)")
        if isinstance(obj, h5py.Dataset) and (obj.is_virtual or obj.external):
            raise FieldStoreError(f"{name} maps data in other files (a virtual dataset or "
                                  f"external storage); links out of the file are never "
                                  f"followed")
        return obj

    def _small(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Read a whole (small) numeric dataset after checking its shape and size."""
        dataset = self._member(name)
        if shape is not None and dataset.shape != shape:
            raise FieldStoreError(f"{name} has shape {dataset.shape}, expected {shape}")
        if dataset.size > MAX_INDEX_ELEMENTS:
            raise FieldStoreError(f"{name} declares {dataset.size} elements (more than "
                                  f"{MAX_INDEX_ELEMENTS})")
        if dataset.dtype.kind not in "biuf":
            raise FieldStoreError(f"{name} has dtype {dataset.dtype}, expected numbers")
        return dataset[()]

    def _load_metadata(self) -> None:
        handle = self._file
        for group in ("dimensions", "scalars", "t0_fields", "t1_fields"):
            if not isinstance(handle.get(group, getlink=True), (h5py.HardLink, h5py.SoftLink)) \
                    or not isinstance(handle.get(group), h5py.Group):
                raise FieldStoreError(f"{self.path}: missing group {group!r} (not a field-store "
                                      f"file, see data/FORMAT.md)")
        foreign = foreign_links(handle, datasets=False)
        if foreign:
            raise FieldStoreError(f"{foreign[0]}; links out of the file are never followed")
        attrs = handle.attrs
        self.system = _root_text(attrs, "system")
        self.dataset_name = _root_text(attrs, "dataset_name")
        self.n_trajectories = n = _root_int(attrs, "n_trajectories", 0, MAX_INDEX_ELEMENTS)
        self.resolution = size = _root_int(attrs, "resolution", 1, MAX_RESOLUTION)
        box_size = attrs["box_size"]
        if not _is_number(box_size) or not math.isfinite(box_size) or box_size <= 0:
            raise FieldStoreError(f"root attribute 'box_size' = "
                                  f"{printable(repr(box_size))[:80]} is not a positive number")
        self.box_size = float(box_size)
        time = self._member("dimensions/time")
        if time.ndim != 1 or not 1 <= time.size <= MAX_INDEX_ELEMENTS:
            raise FieldStoreError(f"dimensions/time has shape {time.shape}, expected (T,) "
                                  f"with T >= 1")
        self.times = np.asarray(self._small("dimensions/time"), dtype=np.float64)
        if not np.all(np.isfinite(self.times)) or np.any(np.diff(self.times) <= 0):
            raise FieldStoreError("dimensions/time is not finite and strictly increasing")
        self.x = self._small("dimensions/x", (size,))
        self.y = self._small("dimensions/y", (size,))
        if not (np.all(np.isfinite(self.x)) and np.all(np.isfinite(self.y))):
            raise FieldStoreError("dimensions/x or dimensions/y has NaN/Inf values")
        try:
            self.schema = StoreSchema.from_description(
                _root_text(attrs, "system_description"), times=self.times,
                resolution=self.resolution, box_size=self.box_size,
                time_units=_text(time.attrs.get("units", "1")),
                length_units=_text(self._member("dimensions/x").attrs.get("units", "1")),
                dataset_name=self.dataset_name)
        except ValueError as error:      # JSONDecodeError included
            raise FieldStoreError(f"system_description is not valid: "
                                  f"{_first_line(error)}") from None
        for spec in self.schema.fields:
            where = f"t{spec.rank}_fields/{spec.name}"
            dataset = self._member(where)
            expected = (n, self.times.size, size, size) + ((2,) if spec.rank else ())
            if dataset.shape != expected:
                raise FieldStoreError(f"{where} has shape {dataset.shape}, expected {expected}")
            if dataset.dtype.kind != "f":
                raise FieldStoreError(f"{where} has dtype {dataset.dtype}, expected float32")
            chunk = dataset.chunks
            if chunk is not None and math.prod(chunk) > math.prod(expected[2:]):
                raise FieldStoreError(f"{where} has chunks {chunk}, larger than one snapshot "
                                      f"(data/FORMAT.md: one snapshot per chunk)")
        for parameter in self.schema.parameters:
            dataset = self._member(f"scalars/{parameter.name}")
            if dataset.shape != (n,) or dataset.dtype.kind not in "biuf":
                raise FieldStoreError(f"scalars/{parameter.name} has shape {dataset.shape} "
                                      f"and dtype {dataset.dtype}, expected ({n},) numbers")
        for name in ("split", "trajectory_seed", "completed"):
            dataset = self._member(name)
            if dataset.shape != (n,) or dataset.dtype.kind not in "biu":
                raise FieldStoreError(f"{name} has shape {dataset.shape} and dtype "
                                      f"{dataset.dtype}, expected ({n},) integers")

    def __enter__(self) -> FieldStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def h5(self) -> h5py.File:
        """The open :class:`h5py.File` (read-only)."""
        return self._file

    @property
    def field_names(self) -> list[str]:
        return [spec.name for spec in self.schema.fields]

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.schema.parameters]

    def field_spec(self, name: str) -> FieldSpec:
        for spec in self.schema.fields:
            if spec.name == name:
                return spec
        raise FieldStoreError(f"{self.path}: no field {name!r} (fields: "
                              f"{', '.join(self.field_names)})")

    def dataset(self, name: str) -> h5py.Dataset:
        """The h5py dataset of field ``name`` (shape (B, T, N, N[, 2]))."""
        return self._file[f"t{self.field_spec(name).rank}_fields/{name}"]

    def read(self, name: str, trajectories: Any = slice(None), times: Any = slice(None)
             ) -> np.ndarray:
        """Read field ``name`` for the selected trajectories and times (float32).

        Raises:
            FieldStoreError: a chunk fails its Fletcher-32 checksum or cannot be read
                (naming the file, the field and the selection).
        """
        dataset = self.dataset(name)
        try:
            return dataset[trajectories, times]
        except OSError as error:
            raise FieldStoreError(
                f"{self.path}: {dataset.name.lstrip('/')}: trajectory "
                f"{_selection_text(trajectories)}, time index {_selection_text(times)}: "
                f"unreadable ({_first_line(error)}; a damaged chunk?)") from None

    def _index_array(self, name: str) -> np.ndarray:
        try:
            return self._file[name][()]
        except OSError as error:
            raise FieldStoreError(f"{self.path}: {name} is unreadable "
                                  f"({_first_line(error)})") from None

    def parameters(self) -> dict[str, np.ndarray]:
        """``{parameter name: (B,) float64}`` per-trajectory physical parameters.

        Raises:
            FieldStoreError: a value of a trajectory marked completed is NaN/Inf
                (not-yet-written trajectories of a partial file hold NaN).
        """
        completed = self._index_array("completed").astype(bool)
        values = {}
        for name in self.parameter_names:
            array = np.asarray(self._index_array(f"scalars/{name}"), dtype=np.float64)
            bad = completed & ~np.isfinite(array)
            if np.any(bad):
                raise FieldStoreError(f"{self.path}: scalars/{name} is NaN/Inf at trajectory "
                                      f"{int(np.flatnonzero(bad)[0])}")
            values[name] = array
        return values

    @property
    def split(self) -> np.ndarray:
        """Train/valid/test code (0/1/2) per trajectory, shape (B,)."""
        return self._index_array("split")

    @property
    def seeds(self) -> np.ndarray:
        return self._index_array("trajectory_seed")

    def statistics(self) -> dict[str, dict[str, Any]]:
        """``{field: {"mean", "std", "rms", ...}}`` of the training split (see FORMAT.md).

        Raises:
            FieldStoreError: a statistic that is not a finite number (or array of them).
        """
        group = self._file.get("stats")
        if not isinstance(group, h5py.Group):
            return {}
        out = {}
        for name in group:
            stats = dict(group[name].attrs)
            for key, value in stats.items():
                array = np.asarray(value)
                if key != "split" and (array.dtype.kind not in "biuf" or array.size > 2
                                       or not np.all(np.isfinite(array))):
                    raise FieldStoreError(f"{self.path}: stats/{name}: {key} = "
                                          f"{printable(repr(value))[:80]} is not a finite "
                                          f"number")
            out[name] = stats
        return out

    def provenance(self) -> dict[str, Any]:
        """Producer, version, seed, creation time and command line, as stored (text is
        returned as is: it is never run or opened; print it through :func:`printable`)."""
        attrs = self._file.attrs
        keys = ("producer", "producer_version", "seed", "created", "command", "format_version")
        out = {}
        for key in keys:
            if key not in attrs:
                continue
            value = attrs[key]
            if isinstance(value, (str, bytes)):
                out[key] = _text(value)
            elif isinstance(value, np.ndarray):
                out[key] = [_text(v) if isinstance(v, bytes) else v for v in value.tolist()]
            else:
                out[key] = value.item() if hasattr(value, "item") else value
        return out

    def iter_snapshots(self, name: str, trajectories: Sequence[int] | None = None
                       ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(trajectory, time index, snapshot)`` one chunk at a time."""
        dataset = self.dataset(name)
        indices = range(dataset.shape[0]) if trajectories is None else trajectories
        for b in indices:
            for t in range(dataset.shape[1]):
                yield int(b), t, self.read(name, int(b), t)

    def to_xarray(self, trajectory: int):
        """One trajectory as the same :class:`xarray.Dataset` that ``Simulator.run`` returns."""
        import xarray as xr
        data_vars = {}
        for spec in self.schema.fields:
            dims = ("time", "x", "y") + (("component",) if spec.rank else ())
            data_vars[spec.name] = xr.Variable(dims, self.read(spec.name, trajectory),
                                               {"units": spec.units, "long_name": spec.long_name})
        coords = {"time": ("time", self.times), "x": ("x", self.x), "y": ("y", self.y)}
        attrs = {"system": self.system, "box_size": self.box_size,
                 **{k: float(v[trajectory]) for k, v in self.parameters().items()}}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a field-store file for ``surrogate info`` (JSON-serialisable).

    Text from the file (names, units, provenance such as ``command``) is returned through
    :func:`printable`: it is printed, never run or opened.

    Raises:
        FieldStoreError: the file is missing, damaged or not a field-store file.
    """
    with FieldStore(path) as store:
        try:
            return _describe(store)
        except FieldStoreError:
            raise
        except _READ_ERRORS as error:
            raise FieldStoreError(f"{store.path}: unreadable ({_first_line(error)})") from None


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)


def _describe(store: FieldStore) -> dict[str, Any]:
    parameters = store.parameters()
    split = store.split
    specs = {p.name: p for p in store.schema.parameters}
    provenance = {key: printable(value) if isinstance(value, str) else value
                  for key, value in store.provenance().items()}
    return {
        "path": str(store.path),
        "system": printable(store.system),
        "dataset_name": printable(store.dataset_name),
        "format_version": printable(_text(store.h5.attrs.get("format_version", "?"))),
        "n_trajectories": store.n_trajectories,
        "resolution": store.resolution,
        "box_size": store.box_size,
        "times": {"n": int(store.times.size), "first": float(store.times[0]),
                  "last": float(store.times[-1]),
                  "units": printable(store.schema.time_units)},
        "fields": {printable(name): {"shape": list(store.dataset(name).shape),
                                     "units": printable(store.field_spec(name).units),
                                     "long_name": printable(store.field_spec(name).long_name)}
                   for name in store.field_names},
        "parameters": {printable(name): {"min": _finite_range(values)[0],
                                         "max": _finite_range(values)[1],
                                         "units": printable(specs[name].units),
                                         "declared_range": [specs[name].low, specs[name].high]}
                       for name, values in parameters.items()},
        "split": {name: int(np.sum(split == code)) for code, name in enumerate(SPLIT_NAMES)},
        "provenance": provenance,
    }


# ------------------------------------------------------------------- checker
REQUIRED_ROOT_ATTRS = {
    "dataset_name": str, "grid_type": str, "n_spatial_dims": int, "n_trajectories": int,
    "simulation_parameters": list, "format_version": str, "system": str,
    "system_description": str, "producer": str, "producer_version": str, "seed": int,
    "created": str, "command": str, "box_size": float, "resolution": int,
}
FIELD_ATTRS = ("units", "long_name", "dim_varying", "sample_varying", "time_varying")


def _attr_kind(value: Any) -> type:
    if isinstance(value, (str, bytes)):
        return str
    if isinstance(value, (bool, np.bool_)):
        return bool
    if isinstance(value, (int, np.integer)):
        return int
    if isinstance(value, (float, np.floating)):
        return float
    if isinstance(value, (np.ndarray, list)):
        return list
    return type(value)


def check_file(path: str | os.PathLike, *, scan_values: bool = True) -> list[str]:
    """Check a file against data/FORMAT.md; return the list of problems (empty if valid).

    Checks the root attributes and their types, the groups, dimension scales and their
    attachment (so xarray shows named dims), coordinates (uniform, periodic, matching
    the field shapes), per-trajectory scalars (shape (B,), finite, inside the declared
    range), field dtype/shape/chunking/attributes, statistics, split, completion flags
    and, with ``scan_values``, every snapshot for NaN/Inf and Fletcher-32 checksum
    errors (one chunk in memory at a time).

    Raises:
        FieldStoreError: only if the file cannot be opened as HDF5 at all.
    """
    problems: list[str] = []
    handle = open_hdf5(path)
    try:
        problems += foreign_links(handle)         # checked first: nothing below follows them
        if not problems:
            _check_structure(handle, problems)
        if scan_values and not problems:
            _check_values(handle, problems)
    except _READ_ERRORS as error:
        problems.append(f"unreadable structure: {_first_line(error)}")
    finally:
        handle.close()
    return problems


def _dataset_problem(handle: h5py.File, name: str, shape: tuple[int, ...] | None = None,
                     ndim: int | None = None) -> str | None:
    """Why ``name`` cannot be read whole (None: it is a small numeric dataset as expected)."""
    dataset = handle.get(name)
    if not isinstance(dataset, h5py.Dataset):
        return f"{name} is missing or not a dataset"
    if shape is not None and dataset.shape != shape:
        return f"{name} has shape {dataset.shape}, expected {shape}"
    if ndim is not None and dataset.ndim != ndim:
        return f"{name} has shape {dataset.shape}, expected {ndim} dimension(s)"
    if dataset.size > MAX_INDEX_ELEMENTS:
        return f"{name} declares {dataset.size} elements (more than {MAX_INDEX_ELEMENTS})"
    if dataset.dtype.kind not in "biuf":
        return f"{name} has dtype {dataset.dtype}, expected numbers"
    return None


def _check_structure(handle: h5py.File, problems: list[str]) -> None:
    attrs = handle.attrs
    for key, kind in REQUIRED_ROOT_ATTRS.items():
        if key not in attrs:
            problems.append(f"root attribute {key!r} missing")
        elif _attr_kind(attrs[key]) is not kind and not (kind is float
                                                          and _attr_kind(attrs[key]) is int):
            problems.append(f"root attribute {key!r} should be {kind.__name__}, "
                            f"got {type(attrs[key]).__name__}")
    if problems:
        return
    for key, high in (("n_trajectories", MAX_INDEX_ELEMENTS), ("resolution", MAX_RESOLUTION)):
        if not (0 if key == "n_trajectories" else 1) <= int(attrs[key]) <= high:
            problems.append(f"root attribute {key!r} = {int(attrs[key])} is outside "
                            f"[{0 if key == 'n_trajectories' else 1}, {high}]")
    if not math.isfinite(attrs["box_size"]) or attrs["box_size"] <= 0:
        problems.append(f"root attribute 'box_size' = {attrs['box_size']} is not positive")
    if problems:
        return
    if _text(attrs["format_version"]) != FORMAT_VERSION:
        problems.append(f"format_version {_text(attrs['format_version'])!r} is not "
                        f"{FORMAT_VERSION!r}")
    if _text(attrs["grid_type"]) != "cartesian" or int(attrs["n_spatial_dims"]) != 2:
        problems.append("grid_type must be 'cartesian' and n_spatial_dims 2")
    complete = attrs.get("complete", False)
    if _attr_kind(complete) is not bool:
        problems.append(f"root attribute 'complete' should be bool, got "
                        f"{type(complete).__name__}")
    elif not complete:
        problems.append("file is not marked complete (an interrupted write?)")
    for group in ("dimensions", "scalars", "boundary_conditions", "t0_fields", "t1_fields",
                  "stats"):
        if group not in handle or not isinstance(handle[group], h5py.Group):
            problems.append(f"group {group!r} missing")
    for name in ("trajectory", "time", "x", "y", "split", "trajectory_seed", "completed"):
        if name not in handle:
            problems.append(f"dataset {name!r} missing at the root")
    if problems:
        return
    for name in ("time", "x", "y"):
        problem = _dataset_problem(handle, f"dimensions/{name}", ndim=1)
        if problem:
            problems.append(problem)
    if problems:
        return
    try:
        schema = StoreSchema.from_description(
            _text(attrs["system_description"]), times=handle["dimensions/time"][...],
            resolution=int(attrs["resolution"]), box_size=float(attrs["box_size"]))
    except (KeyError, TypeError, ValueError) as error:
        problems.append(f"system_description is not valid: {_first_line(error)}")
        return
    n = int(attrs["n_trajectories"])
    resolution, box_size = schema.resolution, schema.box_size
    names = [_text(v) for v in attrs["simulation_parameters"]]
    if names != [p.name for p in schema.parameters]:
        problems.append("simulation_parameters does not match system_description")

    for name in ("time", "x", "y"):
        dataset = handle[f"dimensions/{name}"]
        if not dataset.is_scale:
            problems.append(f"dimensions/{name} is not a dimension scale")
        if handle[name] != dataset:
            problems.append(f"/{name} must be a hard link to dimensions/{name}")
        if "units" not in dataset.attrs:
            problems.append(f"dimensions/{name} has no units")
    times = handle["dimensions/time"][...]
    if times.ndim != 1 or times.size < 1 or np.any(np.diff(times) <= 0) \
            or not np.all(np.isfinite(times)):
        problems.append("dimensions/time must be finite and strictly increasing")
    for axis in ("x", "y"):
        coordinate = handle[f"dimensions/{axis}"][...]
        expected = np.arange(resolution) * box_size / resolution
        if coordinate.shape != expected.shape or not np.allclose(coordinate, expected,
                                                                 rtol=0, atol=1e-9 * box_size):
            problems.append(f"dimensions/{axis} is not the uniform periodic grid "
                            f"i*L/N with N={resolution}, L={box_size}")
    if handle["trajectory"].shape != (n,):
        problems.append(f"trajectory scale has shape {handle['trajectory'].shape}, expected ({n},)")

    for parameter in schema.parameters:
        key = f"scalars/{parameter.name}"
        if key not in handle:
            problems.append(f"{key} missing")
            continue
        problem = _dataset_problem(handle, key, (n,))
        if problem:
            problems.append(problem)
            continue
        values = handle[key][...]
        if not np.all(np.isfinite(values)):
            problems.append(f"{key} has non-finite values (trajectory "
                            f"{int(np.flatnonzero(~np.isfinite(values))[0])})")
        elif np.any(values < parameter.low) or np.any(values > parameter.high):
            problems.append(f"{key} has values outside the declared range {parameter.range_text}")

    for name in ("split", "trajectory_seed", "completed"):
        problem = _dataset_problem(handle, name, (n,))
        if problem:
            problems.append(problem)
    if not problems and not handle["completed"][...].all():
        problems.append("some trajectories were never written (completed is False)")

    for boundary in ("x_periodic", "y_periodic"):
        group = handle["boundary_conditions"].get(boundary)
        if group is None or _text(group.attrs.get("bc_type", "")).upper() != "PERIODIC":
            problems.append(f"boundary_conditions/{boundary} missing or not PERIODIC")

    for rank in (0, 1):
        group = handle[f"t{rank}_fields"]
        declared = [spec.name for spec in schema.fields if spec.rank == rank]
        listed = [_text(v) for v in group.attrs.get("field_names", [])]
        if listed != declared:
            problems.append(f"t{rank}_fields field_names {listed} != declared {declared}")
        for name in declared:
            if name not in group:
                problems.append(f"t{rank}_fields/{name} missing")
                continue
            dataset = group[name]
            expected = (n, times.size, resolution, resolution) + ((2,) if rank else ())
            where = f"t{rank}_fields/{name}"
            if not isinstance(dataset, h5py.Dataset):
                problems.append(f"{where} is not a dataset")
                continue
            if dataset.shape != expected:
                problems.append(f"{where} has shape {dataset.shape}, expected {expected}")
            if dataset.dtype != np.float32:
                problems.append(f"{where} has dtype {dataset.dtype}, expected float32")
            if dataset.chunks != (1, 1, *expected[2:]):
                problems.append(f"{where} is not chunked one snapshot per chunk")
            for key in FIELD_ATTRS:
                if key not in dataset.attrs:
                    problems.append(f"{where} lacks attribute {key!r}")
            dims = ["trajectory", "time", "x", "y"] + (["component"] if rank else [])
            for axis, dim in enumerate(dims[:dataset.ndim]):
                scales = list(dataset.dims[axis].values())
                if len(scales) != 1 or scales[0].name.rsplit("/", 1)[-1] != dim:
                    problems.append(f"{where} axis {axis} is not attached to the {dim!r} scale")
    stats = handle["stats"]
    for spec in schema.fields:
        if spec.name not in stats or "std" not in stats[spec.name].attrs:
            problems.append(f"stats/{spec.name} missing")
            continue
        for key in ("mean", "std", "rms", "min", "max", "count", "log_mean", "log_std"):
            value = stats[spec.name].attrs.get(key, 0.0)
            array = np.asarray(value)
            if array.dtype.kind not in "biuf" or array.size > 2 \
                    or not np.all(np.isfinite(array)) or (key == "std" and np.any(array < 0)):
                problems.append(f"stats/{spec.name}: {key} = {printable(repr(value))[:60]} is "
                                f"not a finite number")
    if not problems:
        _check_netcdf_view(handle.filename, problems)


def _check_netcdf_view(filename: str, problems: list[str]) -> None:
    """The fields groups open in xarray (h5netcdf) with named dims, no ``phony_dim_*``."""
    import xarray as xr
    for group in ("t0_fields", "t1_fields", "scalars"):
        try:
            with xr.open_dataset(filename, engine="h5netcdf", group=group) as view:
                phony = [str(d) for d in view.dims if str(d).startswith("phony_dim")]
        except _READ_ERRORS as error:
            problems.append(f"{group} does not open as netCDF-4 with xarray: "
                            f"{_first_line(error)}")
            continue
        if phony:
            problems.append(f"{group} has unnamed dimensions {phony} (dimension scales missing)")


def _check_values(handle: h5py.File, problems: list[str]) -> None:
    # fields declared discrete_values must hold exactly those values (as float32)
    description = json.loads(_text(handle.attrs["system_description"]))
    allowed = {item["field"]: np.asarray(item["values"], dtype=np.float32)
               for item in description.get("invariants", [])
               if item.get("kind") == "discrete_values" and item.get("values")}
    for rank in (0, 1):
        group = handle[f"t{rank}_fields"]
        for name in group:
            dataset = group[name]
            values = allowed.get(name)
            for b in range(dataset.shape[0]):
                for t in range(dataset.shape[1]):
                    try:
                        snapshot = dataset[b, t]
                    except OSError as error:
                        problems.append(f"t{rank}_fields/{name}: trajectory {b}, time index "
                                        f"{t}: unreadable chunk ({error})")
                        return
                    if not np.all(np.isfinite(snapshot)):
                        problems.append(f"t{rank}_fields/{name}: NaN/Inf at trajectory {b}, "
                                        f"time index {t}")
                        return
                    outside = None if values is None else ~np.isin(snapshot, values)
                    if outside is not None and outside.any():
                        other = snapshot[outside].flat[0]
                        problems.append(f"t{rank}_fields/{name}: value {other:g} at trajectory "
                                        f"{b}, time index {t} is not one of the declared "
                                        f"discrete values {values.tolist()}")
                        return
