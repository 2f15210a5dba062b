"""The format checker behind ``surrogate check``: every rule of ``data/FORMAT.md``.

:func:`check_file` lists the problems of a file (empty: it follows the format): root
attributes and their types, groups, dimension scales and their attachment (so that
xarray shows named dims), coordinates, per-trajectory scalars and codes, fields (dtype,
shape, chunking, attributes), statistics, completion and, unless ``--quick``, every
snapshot's values. The rules the reader enforces too are the shared functions of
:mod:`simulators.store.rules`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np

from simulators.messages import first_line as _first_line
from simulators.store.hdf5 import _READ_ERRORS, attribute_text, foreign_links, open_hdf5
from simulators.store.rules import (
    INDEX_DATASETS,
    _complete_flag_problem,
    _completed_flags_problem,
    box_size_problem,
    dataset_problem,
    field_shape,
    field_shape_problem,
    is_group,
    root_int_problem,
    statistics_problems,
    times_problem,
)
from simulators.store.schema import FORMAT_VERSION, StoreSchema

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


def _check_structure(handle: h5py.File, problems: list[str]) -> None:
    """The layout, in stages: a stage runs only when those it relies on found nothing
    (it would otherwise read what an earlier stage refused)."""
    attrs = handle.attrs
    _check_root_attributes(attrs, problems)
    if problems:
        return
    _check_members(handle, problems)
    if problems:
        return
    for name in ("time", "x", "y"):
        problem = dataset_problem(handle, f"dimensions/{name}", ndim=1)
        if problem:
            problems.append(problem)
    if problems:
        return
    try:
        schema = StoreSchema.from_description(
            attribute_text(attrs["system_description"]), times=handle["dimensions/time"][...],
            resolution=int(attrs["resolution"]), box_size=float(attrs["box_size"]))
    except (KeyError, TypeError, ValueError) as error:
        problems.append(f"system_description is not valid: {_first_line(error)}")
        return
    n = int(attrs["n_trajectories"])
    names = [attribute_text(v) for v in attrs["simulation_parameters"]]
    if names != [p.name for p in schema.parameters]:
        problems.append("simulation_parameters does not match system_description")
    _check_coordinates(handle, schema, n, problems)
    _check_scalars(handle, schema, n, problems)
    _check_index_datasets(handle, n, problems)
    _check_boundaries(handle, problems)
    _check_fields(handle, schema, n, problems)
    _check_statistics(handle, schema, problems)
    if not problems:
        import h5netcdf  # noqa: F401   imported here once, not again in every child
        import xarray  # noqa: F401
        problems += in_child_process(_netcdf_view_problems, handle.filename,
                                     what="opening its fields groups with xarray")


def _check_root_attributes(attrs: Any, problems: list[str]) -> None:
    """Every required root attribute, of its type; the sizes and the box size in range."""
    for key, kind in REQUIRED_ROOT_ATTRS.items():
        if key not in attrs:
            problems.append(f"root attribute {key!r} missing")
        elif _attr_kind(attrs[key]) is not kind and not (kind is float
                                                          and _attr_kind(attrs[key]) is int):
            problems.append(f"root attribute {key!r} should be {kind.__name__}, "
                            f"got {type(attrs[key]).__name__}")
    if problems:
        return
    for key in ("n_trajectories", "resolution"):
        problem = root_int_problem(key, attrs[key])
        if problem:
            problems.append(problem)
    problem = box_size_problem(attrs["box_size"])
    if problem:
        problems.append(problem)


def _check_members(handle: h5py.File, problems: list[str]) -> None:
    """Format version, grid type, the ``complete`` mark, and the groups and root datasets."""
    attrs = handle.attrs
    if attribute_text(attrs["format_version"]) != FORMAT_VERSION:
        problems.append(f"format_version {attribute_text(attrs['format_version'])!r} is not "
                        f"{FORMAT_VERSION!r}")
    if attribute_text(attrs["grid_type"]) != "cartesian" or int(attrs["n_spatial_dims"]) != 2:
        problems.append("grid_type must be 'cartesian' and n_spatial_dims 2")
    problem = _complete_flag_problem(attrs)
    if problem:
        problems.append(problem)
    for group in ("dimensions", "scalars", "boundary_conditions", "t0_fields", "t1_fields",
                  "stats"):
        if not is_group(handle, group):
            problems.append(f"group {group!r} missing")
    for name in ("trajectory", "time", "x", "y", *INDEX_DATASETS):
        if name not in handle:
            problems.append(f"dataset {name!r} missing at the root")


def _check_coordinates(handle: h5py.File, schema: StoreSchema, n: int,
                       problems: list[str]) -> None:
    """Dimension scales (hard-linked at the root, with units), times, the uniform periodic
    grid ``x_i = i L / N`` and the trajectory scale."""
    resolution, box_size = schema.resolution, schema.box_size
    for name in ("time", "x", "y"):
        dataset = handle[f"dimensions/{name}"]
        if not dataset.is_scale:
            problems.append(f"dimensions/{name} is not a dimension scale")
        if handle[name] != dataset:
            problems.append(f"/{name} must be a hard link to dimensions/{name}")
        if "units" not in dataset.attrs:
            problems.append(f"dimensions/{name} has no units")
    problem = times_problem(handle["dimensions/time"][...])
    if problem:
        problems.append(problem)
    for axis in ("x", "y"):
        coordinate = handle[f"dimensions/{axis}"][...]
        expected = np.arange(resolution) * box_size / resolution
        if coordinate.shape != expected.shape or not np.allclose(coordinate, expected,
                                                                 rtol=0, atol=1e-9 * box_size):
            problems.append(f"dimensions/{axis} is not the uniform periodic grid "
                            f"i*L/N with N={resolution}, L={box_size}")
    if handle["trajectory"].shape != (n,):
        problems.append(f"trajectory scale has shape {handle['trajectory'].shape}, expected ({n},)")


def _check_scalars(handle: h5py.File, schema: StoreSchema, n: int,
                   problems: list[str]) -> None:
    """Every declared parameter: shape (B,), finite, inside its declared range."""
    for parameter in schema.parameters:
        key = f"scalars/{parameter.name}"
        if key not in handle:
            problems.append(f"{key} missing")
            continue
        problem = dataset_problem(handle, key, (n,))
        if problem:
            problems.append(problem)
            continue
        values = handle[key][...]
        if not np.all(np.isfinite(values)):
            problems.append(f"{key} has non-finite values (trajectory "
                            f"{int(np.flatnonzero(~np.isfinite(values))[0])})")
        elif np.any(values < parameter.low) or np.any(values > parameter.high):
            problems.append(f"{key} has values outside the declared range {parameter.range_text}")


def _check_index_datasets(handle: h5py.File, n: int, problems: list[str]) -> None:
    """``split``, ``trajectory_seed``, ``completed``: shape (B,), integer codes; then (if
    nothing else was found so far) every trajectory completed."""
    for name in INDEX_DATASETS:
        problem = dataset_problem(handle, name, (n,), integers=True)
        if problem:
            problems.append(problem)
    if not problems:
        problem = _completed_flags_problem(handle["completed"][...])
        if problem:
            problems.append(problem)


def _check_boundaries(handle: h5py.File, problems: list[str]) -> None:
    """Both axes periodic."""
    for boundary in ("x_periodic", "y_periodic"):
        group = handle["boundary_conditions"].get(boundary)
        if group is None or attribute_text(group.attrs.get("bc_type", "")).upper() != "PERIODIC":
            problems.append(f"boundary_conditions/{boundary} missing or not PERIODIC")


def _check_fields(handle: h5py.File, schema: StoreSchema, n: int,
                  problems: list[str]) -> None:
    """Every declared field: listed, float32 of shape (B, T, N, N[, 2]), one snapshot per
    chunk, its attributes, and the dimension scale of each axis attached."""
    attached: list[tuple[str, list[str]]] = []      # (dataset path, its dims) to read
    for rank in (0, 1):
        group = handle[f"t{rank}_fields"]
        declared = [spec.name for spec in schema.fields if spec.rank == rank]
        listed = [attribute_text(v) for v in group.attrs.get("field_names", [])]
        if listed != declared:
            problems.append(f"t{rank}_fields field_names {listed} != declared {declared}")
        for name in declared:
            if name not in group:
                problems.append(f"t{rank}_fields/{name} missing")
                continue
            dataset = group[name]
            expected = field_shape(n, schema.times.size, schema.resolution, rank)
            where = f"t{rank}_fields/{name}"
            if not isinstance(dataset, h5py.Dataset):
                problems.append(f"{where} is not a dataset")
                continue
            problem = field_shape_problem(dataset, where, expected)
            if problem:
                problems.append(problem)
            if dataset.dtype != np.float32:
                problems.append(f"{where} has dtype {dataset.dtype}, expected float32")
            if dataset.chunks != (1, 1, *expected[2:]):
                problems.append(f"{where} is not chunked one snapshot per chunk")
            for key in FIELD_ATTRS:
                if key not in dataset.attrs:
                    problems.append(f"{where} lacks attribute {key!r}")
            dims = ["trajectory", "time", "x", "y"] + (["component"] if rank else [])
            attached.append((where, dims[:dataset.ndim]))
    if attached:
        # HDF5's dimension-scale code follows references stored in the file: a damaged
        # one can crash the library, so the attachments are read in a child process
        problems += in_child_process(_scale_attachment_problems, handle.filename, attached,
                                     what="reading its dimension scales")


def _scale_attachment_problems(filename: str, attached: list[tuple[str, list[str]]]
                               ) -> list[str]:
    """Each ``(dataset path, dims)``: axis ``i`` attached to exactly the ``dims[i]``
    scale (so that xarray shows named dims); run by :func:`in_child_process`."""
    problems: list[str] = []
    with h5py.File(filename, "r") as handle:
        for where, dims in attached:
            dataset = handle[where]
            for axis, dim in enumerate(dims):
                try:
                    scales = list(dataset.dims[axis].values())
                except _READ_ERRORS as error:
                    problems.append(f"{where} axis {axis}: its dimension scales cannot be "
                                    f"read: {_first_line(error)}")
                    continue
                if len(scales) != 1 or scales[0].name.rsplit("/", 1)[-1] != dim:
                    problems.append(f"{where} axis {axis} is not attached to the {dim!r} scale")
    return problems


def _check_statistics(handle: h5py.File, schema: StoreSchema, problems: list[str]) -> None:
    """``stats/<field>`` for every field, every statistic a finite number."""
    stats = handle["stats"]
    for spec in schema.fields:
        if spec.name not in stats or "std" not in stats[spec.name].attrs:
            problems.append(f"stats/{spec.name} missing")
            continue
        problems += statistics_problems(spec.name, stats[spec.name].attrs)


def in_child_process(function: Any, *args: Any, what: str) -> list[str]:
    """``function(*args)`` (a list of problem lines) in a forked child process, so that a
    damaged file that crashes the HDF5 library there (a flipped byte in a dimension
    list's global-heap reference makes its dimension-scale code dereference garbage)
    gives one problem line instead of killing the caller; the child's standard error is
    discarded, so a C-library abort message does not add a second line. Where
    ``os.fork`` is missing (Windows) it runs in this process."""
    if not hasattr(os, "fork"):
        return function(*args)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # the child: report, never return
        code = 1
        try:
            os.close(read)
            # the crash is reported by the parent in one line: the C library's own abort
            # message ("double free detected") goes nowhere, not to stderr or the terminal
            os.environ["LIBC_FATAL_STDERR_"] = "1"
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 2)
            os.close(quiet)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(json.dumps(function(*args)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return [f"the HDF5 library crashed {what} (signal {os.WTERMSIG(status)}): a damaged "
                f"file"]
    try:
        return [str(line) for line in json.loads(output)]
    except ValueError:
        return [f"{what} failed (exit status {os.WEXITSTATUS(status)})"]


def _netcdf_view_problems(filename: str) -> list[str]:
    problems: list[str] = []
    _check_netcdf_view(filename, problems)
    return problems


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
    description = json.loads(attribute_text(handle.attrs["system_description"]))
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
