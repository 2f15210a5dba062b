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
                       dataset_name: str = "") -> StoreSchema:
        """Schema of the files written for ``simulator`` on ``grid`` at ``times``."""
        return cls(system=simulator.name, parameters=tuple(simulator.parameters),
                   fields=tuple(simulator.fields), invariants=tuple(simulator.invariants),
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
        """Inverse of :meth:`description_json` plus the grid and times."""
        data = json.loads(text)
        invariants = []
        for item in data.get("invariants", []):
            if item.get("values") is not None:
                item = {**item, "values": tuple(item["values"])}
            invariants.append(Invariant(**item))
        return cls(system=data["system"],
                   parameters=tuple(Parameter(**p) for p in data["parameters"]),
                   fields=tuple(FieldSpec(**f) for f in data["fields"]),
                   invariants=tuple(invariants), times=np.asarray(times, dtype=np.float64),
                   resolution=int(resolution), box_size=float(box_size),
                   time_units=time_units, length_units=length_units,
                   dataset_name=dataset_name or data["system"])


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
        try:
            handle = h5py.File(self.partial, "r+")
        except OSError as error:
            raise FieldStoreError(f"{self.partial}: cannot resume, the partial file is "
                                  f"unreadable ({error}); delete it and start again") from None
        if handle.attrs.get("resume_key", "") != resume_key or \
                int(handle.attrs.get("n_trajectories", -1)) != self.n_trajectories:
            handle.close()
            raise FieldStoreError(f"{self.partial}: was written by a different job; "
                                  f"delete it or rerun with the original options")
        return handle

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
def _open_h5(path: str | os.PathLike) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise FieldStoreError(f"{path}: no such file")
    if path.is_dir():
        raise FieldStoreError(f"{path}: is a directory, not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise FieldStoreError(f"{path}: not a readable HDF5 file (truncated or another "
                              f"format)") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FieldStore:
    """Read-only view of a field-store file; reads lazily, one chunk at a time.

    Use as a context manager (``with FieldStore(path) as store: ...``).

    Attributes:
        path, system, dataset_name, n_trajectories, resolution, box_size.
        times: (T,) snapshot times; x, y: (N,) coordinates.
        schema: the :class:`StoreSchema` of the file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = _open_h5(self.path)
        try:
            self._load_metadata()
        except FieldStoreError:
            self._file.close()
            raise
        except (KeyError, TypeError, ValueError, OSError, json.JSONDecodeError) as error:
            self._file.close()
            raise FieldStoreError(f"{self.path}: not a field-store file "
                                  f"(data/FORMAT.md): {error}") from None

    def _load_metadata(self) -> None:
        handle = self._file
        for group in ("dimensions", "scalars", "t0_fields", "t1_fields"):
            if group not in handle:
                raise FieldStoreError(f"{self.path}: missing group {group!r} (not a field-store "
                                      f"file, see data/FORMAT.md)")
        attrs = handle.attrs
        self.system = _text(attrs["system"])
        self.dataset_name = _text(attrs["dataset_name"])
        self.n_trajectories = int(attrs["n_trajectories"])
        self.times = handle["dimensions/time"][...]
        self.x = handle["dimensions/x"][...]
        self.y = handle["dimensions/y"][...]
        self.resolution = int(attrs["resolution"])
        self.box_size = float(attrs["box_size"])
        self.schema = StoreSchema.from_description(
            _text(attrs["system_description"]), times=self.times, resolution=self.resolution,
            box_size=self.box_size,
            time_units=_text(handle["dimensions/time"].attrs.get("units", "1")),
            length_units=_text(handle["dimensions/x"].attrs.get("units", "1")),
            dataset_name=self.dataset_name)

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
        """Read field ``name`` for the selected trajectories and times (float32)."""
        return self.dataset(name)[trajectories, times]

    def parameters(self) -> dict[str, np.ndarray]:
        """``{parameter name: (B,) float64}`` per-trajectory physical parameters."""
        return {name: self._file[f"scalars/{name}"][...] for name in self.parameter_names}

    @property
    def split(self) -> np.ndarray:
        """Train/valid/test code (0/1/2) per trajectory, shape (B,)."""
        return self._file["split"][...]

    @property
    def seeds(self) -> np.ndarray:
        return self._file["trajectory_seed"][...]

    def statistics(self) -> dict[str, dict[str, Any]]:
        """``{field: {"mean", "std", "rms", ...}}`` of the training split (see FORMAT.md)."""
        group = self._file.get("stats")
        if group is None:
            return {}
        return {name: dict(group[name].attrs) for name in group}

    def provenance(self) -> dict[str, Any]:
        attrs = self._file.attrs
        keys = ("producer", "producer_version", "seed", "created", "command", "format_version")
        return {key: (attrs[key].item() if hasattr(attrs[key], "item") else _text(attrs[key]))
                for key in keys if key in attrs}

    def iter_snapshots(self, name: str, trajectories: Sequence[int] | None = None
                       ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(trajectory, time index, snapshot)`` one chunk at a time."""
        dataset = self.dataset(name)
        indices = range(dataset.shape[0]) if trajectories is None else trajectories
        for b in indices:
            for t in range(dataset.shape[1]):
                yield int(b), t, dataset[int(b), t]

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
    """Summary of a field-store file for ``surrogate info`` (JSON-serialisable)."""
    with FieldStore(path) as store:
        parameters = store.parameters()
        split = store.split
        return {
            "path": str(store.path),
            "system": store.system,
            "dataset_name": store.dataset_name,
            "format_version": _text(store.h5.attrs.get("format_version", "?")),
            "n_trajectories": store.n_trajectories,
            "resolution": store.resolution,
            "box_size": store.box_size,
            "times": {"n": int(store.times.size), "first": float(store.times[0]),
                      "last": float(store.times[-1]),
                      "units": store.schema.time_units},
            "fields": {name: {"shape": list(store.dataset(name).shape),
                              "units": store.field_spec(name).units,
                              "long_name": store.field_spec(name).long_name}
                       for name in store.field_names},
            "parameters": {name: {"min": float(np.nanmin(values)),
                                  "max": float(np.nanmax(values)),
                                  "units": store.schema.parameters[i].units,
                                  "declared_range": [store.schema.parameters[i].low,
                                                     store.schema.parameters[i].high]}
                           for i, (name, values) in enumerate(parameters.items())},
            "split": {name: int(np.sum(split == code)) for code, name in enumerate(SPLIT_NAMES)},
            "provenance": store.provenance(),
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
    handle = _open_h5(path)
    try:
        _check_structure(handle, problems)
        if scan_values and not problems:
            _check_values(handle, problems)
    except (KeyError, TypeError, ValueError, OSError, json.JSONDecodeError) as error:
        problems.append(f"unreadable structure: {error}")
    finally:
        handle.close()
    return problems


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
    if _text(attrs["format_version"]) != FORMAT_VERSION:
        problems.append(f"format_version {_text(attrs['format_version'])!r} is not "
                        f"{FORMAT_VERSION!r}")
    if _text(attrs["grid_type"]) != "cartesian" or int(attrs["n_spatial_dims"]) != 2:
        problems.append("grid_type must be 'cartesian' and n_spatial_dims 2")
    if not bool(attrs.get("complete", False)):
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
    try:
        schema = StoreSchema.from_description(
            _text(attrs["system_description"]), times=handle["dimensions/time"][...],
            resolution=int(attrs["resolution"]), box_size=float(attrs["box_size"]))
    except (KeyError, TypeError, ValueError) as error:
        problems.append(f"system_description is not valid: {error}")
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
        values = handle[key][...]
        if values.shape != (n,):
            problems.append(f"{key} has shape {values.shape}, expected ({n},)")
        elif not np.all(np.isfinite(values)):
            problems.append(f"{key} has non-finite values (trajectory "
                            f"{int(np.flatnonzero(~np.isfinite(values))[0])})")
        elif np.any(values < parameter.low) or np.any(values > parameter.high):
            problems.append(f"{key} has values outside the declared range {parameter.range_text}")

    for name in ("split", "trajectory_seed", "completed"):
        if handle[name].shape != (n,):
            problems.append(f"{name} has shape {handle[name].shape}, expected ({n},)")
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
    if not problems:
        _check_netcdf_view(handle.filename, problems)


def _check_netcdf_view(filename: str, problems: list[str]) -> None:
    """The fields groups open in xarray (h5netcdf) with named dims, no ``phony_dim_*``."""
    import xarray as xr
    for group in ("t0_fields", "t1_fields", "scalars"):
        try:
            with xr.open_dataset(filename, engine="h5netcdf", group=group) as view:
                phony = [str(d) for d in view.dims if str(d).startswith("phony_dim")]
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"{group} does not open as netCDF-4 with xarray: {error}")
            continue
        if phony:
            problems.append(f"{group} has unnamed dimensions {phony} (dimension scales missing)")


def _check_values(handle: h5py.File, problems: list[str]) -> None:
    for rank in (0, 1):
        group = handle[f"t{rank}_fields"]
        for name in group:
            dataset = group[name]
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
