"""Writing a field-store file: atomically, resumably, one trajectory at a time.

:class:`FieldStoreWriter` creates the layout of ``data/FORMAT.md`` in ``<path>.partial``
(groups, dimension scales, float32 fields chunked one snapshot per chunk with Fletcher-32
checksums, per-trajectory parameters, seeds and split), writes trajectories as they
come, and :meth:`FieldStoreWriter.finalize` computes the training-split statistics,
flushes, fsyncs and renames the file to ``<path>``. A crash leaves at most a ``.partial``
file, which ``resume=True`` continues. :class:`Provenance` is who made the file and how.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from simulators.messages import first_line as _first_line
from simulators.store.hdf5 import _READ_ERRORS, FieldStoreError, attribute_text
from simulators.store.schema import (
    FORMAT_VERSION,
    SPLIT_NAMES,
    StoreSchema,
    assign_split,
    check_split_layout,
)
from simulators.store.statistics import write_statistics

PARTIAL_SUFFIX = ".partial"


def package_version() -> str:
    """Version of the installed distribution (``0.0.0+unknown`` from a bare source tree)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("physics-surrogate")
    except PackageNotFoundError:
        return "0.0.0+unknown"


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


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries to disk (after a rename into it), so that a crash
    cannot lose the rename; a no-op where directories cannot be opened (Windows)."""
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
        split: ``(B,)`` train/valid/test codes (0/1/2) laid out by the caller (a
            stratified sweep, a converted file keeping its source's); ``None`` draws
            them at random from ``provenance.seed`` (:func:`assign_split`).
        split_layout: how ``split`` was laid out (``SPLIT_LAYOUTS``; ``"random"`` when
            ``split`` is ``None``): the ``split`` dataset's attribute ``layout``, written
            only when not ``"random"`` (a random file is laid out as before the option).
    """

    def __init__(self, path: str | os.PathLike, schema: StoreSchema, n_trajectories: int,
                 provenance: Provenance, *, overwrite: bool = False, resume: bool = False,
                 resume_key: str = "", extra_attrs: Mapping[str, Any] | None = None,
                 split: np.ndarray | None = None, split_layout: str = "random") -> None:
        if n_trajectories < 1:
            raise FieldStoreError(f"{path}: need at least one trajectory, got {n_trajectories}")
        # checked before any file is touched
        if split is None:
            split, split_layout = assign_split(int(n_trajectories), provenance.seed), "random"
        split = np.asarray(split)
        if split.shape != (n_trajectories,) or not np.isin(split, (0, 1, 2)).all():
            raise ValueError(f"split must hold {n_trajectories} codes 0, 1 or 2")
        check_split_layout(split_layout)
        split = split.astype(np.int8)
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
            self._file = self._create(provenance, resume_key, extra_attrs or {}, split,
                                      split_layout)
        self.completed = np.asarray(self._file["completed"][...], dtype=bool)

    # ----------------------------------------------------------------- creation
    def _reopen(self, resume_key: str) -> h5py.File:
        # identify the job read-only first: a partial file of another job stays untouched
        # (closing a file opened for writing rewrites its superblock)
        try:
            with h5py.File(self.partial, "r") as handle:
                same = attribute_text(handle.attrs.get("resume_key", "")) == resume_key and \
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
                extra_attrs: Mapping[str, Any], split: np.ndarray, layout: str) -> h5py.File:
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
                ("split", split,
                 {"flag_values": np.arange(3, dtype=np.int8),
                  "flag_meanings": " ".join(SPLIT_NAMES),
                  "long_name": "train/valid/test assignment of each trajectory",
                  # only a stratified split says so: random files stay as they were
                  **({"layout": layout} if layout != "random" else {})}),
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
        fsync_directory(self.path.parent)
        return self.path

