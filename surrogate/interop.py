"""Other people's 2-D HDF5 field files: detect their layout, read them, convert them to ours.

Four layouts are recognised (``data/FORMAT.md``, "Other layouts read by the package"):

``ours``
    files written by :mod:`simulators.store` (root attributes ``format_version`` and
    ``producer``); a special case of ``the_well``.
``the_well``
    The Well's published layout: root attributes ``dataset_name``, ``grid_type``,
    ``n_spatial_dims``, ``n_trajectories``, ``simulation_parameters``; groups
    ``dimensions/``, ``scalars/``, ``boundary_conditions/``, ``t0_fields/``
    ``(B, T, Nx, Ny)``, ``t1_fields/`` ``(B, T, Nx, Ny, 2)``, ``t2_fields/``
    ``(B, T, Nx, Ny, 2, 2)``. A field with ``time_varying=False`` has no ``T`` axis,
    one with ``sample_varying=False`` no ``B`` axis, and a spatial axis whose
    ``dim_varying`` entry is False is either absent or of length 1.
``pdebench_seeds``
    PDEBench's per-seed 2-D files (diffusion-reaction, shallow water): groups ``"0000"``,
    ``"0001"``, ... each with ``data`` ``(T, Nx, Ny, C)`` and ``grid/x`` ``(Nx,)``,
    ``grid/y`` ``(Ny,)``, ``grid/t`` ``(T,)``.
``pdebench_arrays``
    PDEBench's single-array files: compressible Navier–Stokes (``density``, ``Vx``,
    ``Vy``, ``pressure``, each ``(B, T, Nx, Ny)``) or ``tensor`` ``(B, T, Nx, Ny)`` (Darcy
    flow: ``(B, 1, Nx, Ny)`` with the coefficient ``nu`` ``(B, Nx, Ny)``), with
    ``x-coordinate`` ``(Nx,)``, ``y-coordinate`` ``(Ny,)`` and, optionally,
    ``t-coordinate`` ``(T,)`` or ``(T + 1,)``.

:func:`open_fields` turns any of them into one :class:`xarray.Dataset` with the named
dimensions ``trajectory``, ``time``, ``x``, ``y`` (``component`` for vectors,
``component_i``/``component_j`` for rank-2 tensors). Every data variable carries the
attribute ``role``: ``"field"`` (a spatial field), ``"parameter"`` (one number per
trajectory, or one for the file), ``"time_series"`` (a scalar that changes in time),
``"metadata"`` (bookkeeping such as our ``split``) or ``"extra"`` (a dataset whose axes
the layout does not name). Field data stay on disk until indexed (xarray lazy
indexing over h5py, no dask needed): opening a file reads only coordinates,
parameters and attributes. Close the dataset (or use ``with``) to close the file.

:func:`convert` writes any of them in our format through
:class:`simulators.store.FieldStoreWriter` (so ``surrogate check`` passes), one
trajectory in memory at a time, atomically. Links to other files (HDF5 external
links, virtual datasets) are never followed.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from simulators.base import FieldSpec, Parameter
from simulators.store import (
    MAX_INDEX_ELEMENTS,
    FieldStore,
    FieldStoreError,
    FieldStoreWriter,
    Provenance,
    StoreSchema,
    check_output_path,
    open_hdf5,
    partial_path,
)

__all__ = [
    "LAYOUTS",
    "LayoutError",
    "convert",
    "describe_layout",
    "detect_layout",
    "field_names",
    "open_fields",
    "parameter_names",
]

#: layout names returned by :func:`detect_layout`
LAYOUTS = ("ours", "the_well", "pdebench_seeds", "pdebench_arrays")

#: PDEBench compressible Navier–Stokes variables (besides the velocity pair ``Vx``, ``Vy``)
_CFD_SCALARS = ("density", "pressure")
_PDEBENCH_COORDINATES = ("x-coordinate", "y-coordinate", "z-coordinate", "t-coordinate")
#: what is known about PDEBench variables; its equations are non-dimensional (units "1")
_PDEBENCH_NAMES = {
    "density": "mass density", "pressure": "pressure", "velocity": "velocity (Vx, Vy)",
    "tensor": "solution", "nu": "coefficient field (Darcy flow: permeability a(x))",
    "h": "water depth", "u": "activator", "v": "inhibitor",
}
#: what h5py raises on a damaged file structure (turned into one-line LayoutErrors)
_H5_ERRORS = (KeyError, OSError, ValueError, TypeError, RuntimeError)
#: relative tolerance on the spacing of a uniform grid stored in float32
_GRID_RTOL = 1e-5


class LayoutError(FieldStoreError):
    """A file is missing, unreadable, of an unknown layout, or cannot be converted."""


# ------------------------------------------------------------------- helpers
def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _texts(value: Any) -> list[str]:
    """An attribute holding one name or a list of names -> list of str."""
    if isinstance(value, (str, bytes)):
        return [_text(value)]
    return [_text(v) for v in np.atleast_1d(np.asarray(value, dtype=object)).tolist()]


def _flag(attrs: Mapping[str, Any], key: str, default: bool) -> bool:
    return bool(attrs[key]) if key in attrs else default


def _netcdf_attr(value: Any) -> Any:
    """An HDF5 attribute value as a type xarray can write to netCDF-4 with h5netcdf.

    Booleans become ``int8`` 0/1 (netCDF has no boolean attributes), byte strings
    ``str``, string arrays lists of ``str``; numbers and numeric arrays are kept.
    """
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, (bool, np.bool_)):
        return np.int8(bool(value))
    if isinstance(value, (str, int, float, np.number)):
        return value
    if isinstance(value, (list, tuple)):
        value = np.asarray(value, dtype=object if any(isinstance(v, (str, bytes))
                                                      for v in value) else None)
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return value.astype(np.int8)
        if value.dtype.kind in "OSU":
            return [_text(v) for v in value.ravel().tolist()]
        if value.dtype.kind in "iufc":
            return value
    if isinstance(value, Mapping):
        return json.dumps(_json_safe(value))
    return str(value)


def _json_safe(value: Any) -> Any:
    """Attribute values -> JSON-serialisable Python objects."""
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


#: attributes that belong to HDF5 dimension scales / the netCDF-4 library, not to the data
_RESERVED_ATTRS = frozenset({"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME",
                             "_Netcdf4Dimid", "_Netcdf4Coordinates", "_NCProperties",
                             "_FillValue"})


def _attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """netCDF-safe copy of an HDF5 object's attributes (unreadable and reserved ones skipped)."""
    out = {}
    for key in obj.attrs:
        if key in _RESERVED_ATTRS:
            continue
        try:
            out[str(key)] = _netcdf_attr(obj.attrs[key])
        except (OSError, TypeError, ValueError):
            continue
    return out


def _open(path: str | os.PathLike) -> tuple[Path, h5py.File]:
    return Path(path), open_hdf5(path, LayoutError)


def _member(group: h5py.Group, name: str, path: Path, *, required: bool = True
            ) -> h5py.Group | h5py.Dataset | None:
    """``group[name]``, refusing links into other files (never followed)."""
    link = group.get(name, getlink=True)
    if link is None:
        if required:
            raise LayoutError(f"{path}: {group.name.rstrip('/')}/{name} missing")
        return None
    if isinstance(link, h5py.ExternalLink):
        raise LayoutError(f"{path}: {group.name.rstrip('/')}/{name} is a link to another "
                          f"file; links to other files are not followed")
    obj = group[name]
    if isinstance(obj, h5py.Dataset) and obj.is_virtual:
        raise LayoutError(f"{path}: {obj.name} is a virtual dataset mapping other files; "
                          f"it is not followed")
    return obj


def _dataset(group: h5py.Group, name: str, path: Path) -> h5py.Dataset:
    obj = _member(group, name, path)
    if not isinstance(obj, h5py.Dataset):
        raise LayoutError(f"{path}: {obj.name} is not a dataset")
    if obj.external:
        raise LayoutError(f"{path}: {obj.name} keeps its data in external files; they are "
                          f"not read")
    return obj


def _count(n: Any, what: str, path: Path) -> int:
    """A declared count (trajectories, snapshots) that is allocated as an index array."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) \
            or not 0 <= n <= MAX_INDEX_ELEMENTS:
        raise LayoutError(f"{path}: {what} = {n!r} is not a count in [0, "
                          f"{MAX_INDEX_ELEMENTS}]")
    return int(n)


def _whole(dataset: h5py.Dataset, path: Path) -> np.ndarray:
    """All of a coordinate / parameter / metadata dataset (refusing huge declared sizes)."""
    if dataset.size > MAX_INDEX_ELEMENTS:
        raise LayoutError(f"{path}: {dataset.name} declares {dataset.size} elements, too "
                          f"many for a coordinate or parameter (at most {MAX_INDEX_ELEMENTS})")
    return np.asarray(dataset[()])


def _group(group: h5py.Group, name: str, path: Path, *, required: bool = True
           ) -> h5py.Group | None:
    obj = _member(group, name, path, required=required)
    if obj is not None and not isinstance(obj, h5py.Group):
        raise LayoutError(f"{path}: {obj.name} is not a group")
    return obj


# -------------------------------------------------------------- lazy arrays
class _H5Array(BackendArray):
    """Lazy, read-only view of one or several same-shape h5py datasets.

    ``stack="first"`` stacks the datasets on a new leading axis (PDEBench seeds ->
    trajectories), ``stack="last"`` on a new trailing axis (``Vx``, ``Vy`` -> vector
    components); ``fixed`` maps source axes to the index they are read at (the axis
    disappears: a length-1 axis of The Well, a PDEBench channel). Reads go straight to
    h5py with basic (int/slice) selections; xarray applies any fancier indexing on top.
    """

    def __init__(self, datasets: Sequence[h5py.Dataset], *, stack: str | None = None,
                 fixed: Mapping[int, int] | None = None) -> None:
        self.datasets = list(datasets)
        self.stack = stack
        self.fixed = dict(fixed or {})
        source = self.datasets[0].shape
        kept = tuple(n for axis, n in enumerate(source) if axis not in self.fixed)
        if stack == "first":
            kept = (len(self.datasets), *kept)
        elif stack == "last":
            kept = (*kept, len(self.datasets))
        self.shape = kept
        self.dtype = self.datasets[0].dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape,
                                                  indexing.IndexingSupport.BASIC, self._raw)

    def _source_key(self, key: Sequence[Any]) -> tuple[Any, ...]:
        remaining = iter(key)
        return tuple(self.fixed[axis] if axis in self.fixed else next(remaining)
                     for axis in range(self.datasets[0].ndim))

    def _raw(self, key: tuple[Any, ...]) -> np.ndarray:
        if self.stack is None:
            return np.asarray(self.datasets[0][self._source_key(key)])
        select, rest = (key[0], key[1:]) if self.stack == "first" else (key[-1], key[:-1])
        source_key = self._source_key(rest)
        if isinstance(select, (int, np.integer)):
            return np.asarray(self.datasets[int(select)][source_key])
        indices = range(len(self.datasets))[select]
        parts = [np.asarray(self.datasets[i][source_key]) for i in indices]
        if not parts:
            part = np.asarray(self.datasets[0][source_key])
            parts_shape = (0, *part.shape) if self.stack == "first" else (*part.shape, 0)
            return np.empty(parts_shape, dtype=self.dtype)
        return np.stack(parts, axis=0 if self.stack == "first" else -1)


def _lazy(dims: Sequence[str], array: _H5Array, attrs: Mapping[str, Any]) -> xr.Variable:
    return xr.Variable(tuple(dims), indexing.LazilyIndexedArray(array), dict(attrs))


# ------------------------------------------------------------------ detection
def _detect(handle: h5py.File, path: Path) -> str:
    try:
        keys = list(handle.keys())
    except (OSError, RuntimeError, KeyError) as error:
        raise LayoutError(f"{path}: unreadable HDF5 structure ({_one_line(error)})") from None
    if not keys:
        raise LayoutError(f"{path}: unknown layout: the HDF5 file holds no groups or "
                          f"datasets")
    if "dimensions" in keys and any(f"t{rank}_fields" in keys for rank in range(3)):
        attrs = handle.attrs
        return "ours" if "format_version" in attrs and "producer" in attrs else "the_well"
    if all(re.fullmatch(r"\d+", key) for key in keys):
        first = _member(handle, keys[0], path)
        if isinstance(first, h5py.Group) and "data" in first:
            return "pdebench_seeds"
    if "x-coordinate" in keys and ("tensor" in keys or any(
            name in keys for name in ("density", "Vx", "Vy", "pressure"))):
        return "pdebench_arrays"
    shown = ", ".join(sorted(keys)[:8]) + (", ..." if len(keys) > 8 else "")
    raise LayoutError(f"{path}: unknown layout (top level holds {shown}); readable "
                      f"layouts: {', '.join(LAYOUTS)} (data/FORMAT.md)")


def detect_layout(path: str | os.PathLike) -> str:
    """Name of the layout of the HDF5 file at ``path``, one of :data:`LAYOUTS`.

    Only the file's structure (group names, root attributes) is looked at.

    Raises:
        LayoutError: one line naming the file: missing, a directory, empty, not HDF5
            (truncated or another format), or of no known layout.
    """
    path, handle = _open(path)
    try:
        return _detect(handle, path)
    except LayoutError:
        raise
    except _H5_ERRORS as error:
        raise LayoutError(f"{path}: unreadable file structure ({_one_line(error)})") from None
    finally:
        handle.close()


# ----------------------------------------------------------- The Well / ours
def _coordinate(group: h5py.Group, name: str, path: Path) -> tuple[np.ndarray, dict]:
    dataset = _dataset(group, name, path)
    values = _whole(dataset, path)
    return values, _attrs(dataset)


def _field_dims(dataset: h5py.Dataset, rank: int, spatial: Sequence[str],
                sizes: Mapping[str, int], path: Path) -> tuple[list[str], dict[int, int]]:
    """Dimension names of a Well field and the length-1 axes to drop (see module doc)."""
    attrs = dataset.attrs
    dims = (["trajectory"] if _flag(attrs, "sample_varying", True) else []) + \
        (["time"] if _flag(attrs, "time_varying", True) else [])
    varying = [bool(v) for v in np.atleast_1d(attrs.get("dim_varying", [True] * len(spatial)))]
    if len(varying) != len(spatial):
        raise LayoutError(f"{path}: {dataset.name}: dim_varying has {len(varying)} entries "
                          f"for {len(spatial)} spatial dims")
    components = {0: [], 1: ["component"], 2: ["component_i", "component_j"]}[rank]
    stored = dataset.ndim - len(dims) - rank
    fixed: dict[int, int] = {}
    if stored == len(spatial):
        for axis, (name, varies) in enumerate(zip(spatial, varying, strict=True)):
            if varies:
                dims.append(name)
            elif dataset.shape[len(dims) + len(fixed)] == 1:
                fixed[len(dims) + len(fixed)] = 0
            else:
                raise LayoutError(f"{path}: {dataset.name}: axis {axis} ({name}) does not "
                                  f"vary (dim_varying) but has length "
                                  f"{dataset.shape[len(dims) + len(fixed)]}")
    elif stored == sum(varying):
        dims += [name for name, varies in zip(spatial, varying, strict=True) if varies]
    else:
        raise LayoutError(f"{path}: {dataset.name} has shape {dataset.shape}, which does not "
                          f"match its attributes (dims {dims + list(spatial)}, rank {rank})")
    dims += components
    shape = tuple(n for axis, n in enumerate(dataset.shape) if axis not in fixed)
    expected = tuple(sizes[d] for d in dims)
    if shape != expected:
        raise LayoutError(f"{path}: {dataset.name} has shape {dataset.shape}, expected "
                          f"{expected} for dims {tuple(dims)}")
    return dims, fixed


def _well_time(group: h5py.Group, n_trajectories: int, path: Path
               ) -> tuple[dict[str, Any], int]:
    """The ``time`` coordinate (and a per-trajectory one if trajectories differ)."""
    values, attrs = _coordinate(group, "time", path)
    coords: dict[str, Any] = {}
    if values.ndim == 2:
        if values.shape[0] != n_trajectories:
            raise LayoutError(f"{path}: dimensions/time has shape {values.shape}, expected "
                              f"({n_trajectories}, T)")
        if np.all(values == values[:1]):
            values = values[0]
        else:
            coords["trajectory_time"] = xr.Variable(("trajectory", "time"), values, attrs)
            return coords, values.shape[1]
    if values.ndim != 1:
        raise LayoutError(f"{path}: dimensions/time has shape {values.shape}, expected (T,)")
    coords["time"] = xr.Variable(("time",), values, attrs)
    return coords, values.size


def _boundary_conditions(handle: h5py.File, path: Path) -> dict[str, Any]:
    group = _group(handle, "boundary_conditions", path, required=False)
    out: dict[str, Any] = {}
    for name in ([] if group is None else list(group.keys())):
        item = _member(group, name, path)
        entry = {key: _json_safe(item.attrs[key]) for key in item.attrs}
        if isinstance(item, h5py.Group) and "mask" in item:
            mask = _whole(_dataset(item, "mask", path), path)
            if mask.ndim == 1:
                entry["mask_true_indices"] = np.flatnonzero(mask).tolist()
        out[name] = entry
    return out


def _read_well(handle: h5py.File, path: Path, layout: str) -> xr.Dataset:
    attrs = handle.attrs
    dims_group = _group(handle, "dimensions", path)
    spatial = _texts(dims_group.attrs.get("spatial_dims", ["x", "y"]))
    n_dims = int(attrs.get("n_spatial_dims", len(spatial)))
    if n_dims != 2 or len(spatial) != 2:
        raise LayoutError(f"{path}: {n_dims}-D data (spatial dims {spatial}); only 2-D "
                          f"files are read")
    if "n_trajectories" not in attrs:
        raise LayoutError(f"{path}: root attribute 'n_trajectories' missing")
    value = attrs["n_trajectories"]
    n = _count(value.item() if isinstance(value, np.generic) else value, "n_trajectories",
               path)
    coords, n_times = _well_time(dims_group, n, path)
    sizes = {"trajectory": n, "time": n_times, "component": 2, "component_i": 2,
             "component_j": 2}
    for name in spatial:
        values, coord_attrs = _coordinate(dims_group, name, path)
        if values.ndim != 1:
            raise LayoutError(f"{path}: dimensions/{name} has shape {values.shape}; "
                              f"sample- or time-varying grids are not supported")
        coords[name] = xr.Variable((name,), values, coord_attrs)
        sizes[name] = values.size
    coords["trajectory"] = xr.Variable(("trajectory",), np.arange(n, dtype=np.int64),
                                       {"long_name": "trajectory index"})

    data_vars: dict[str, xr.Variable] = {}
    for rank in range(3):
        group = _group(handle, f"t{rank}_fields", path, required=False)
        if group is None:
            continue
        names = _texts(group.attrs["field_names"]) if "field_names" in group.attrs \
            else list(group.keys())
        for name in names:
            if name in data_vars:
                raise LayoutError(f"{path}: field name {name!r} appears twice")
            dataset = _dataset(group, name, path)
            dims, fixed = _field_dims(dataset, rank, spatial, sizes, path)
            var_attrs = {**_attrs(dataset), "role": "field", "rank": rank,
                         "source_dataset": dataset.name.lstrip("/")}
            data_vars[name] = _lazy(dims, _H5Array([dataset], fixed=fixed), var_attrs)
            for dim in dims[-rank:] if rank else ():
                coords.setdefault(dim, xr.Variable((dim,), list(spatial)))
    if not data_vars:
        raise LayoutError(f"{path}: no fields in t0_fields/, t1_fields/ or t2_fields/")

    scalars = _group(handle, "scalars", path, required=False)
    if scalars is not None:
        names = _texts(scalars.attrs["field_names"]) if "field_names" in scalars.attrs \
            else list(scalars.keys())
        for name in names:
            dataset = _dataset(scalars, name, path)
            sample, timed = (_flag(dataset.attrs, "sample_varying", dataset.ndim > 0),
                             _flag(dataset.attrs, "time_varying", False))
            dims = (["trajectory"] if sample else []) + (["time"] if timed else [])
            values = _whole(dataset, path)
            if values.shape != tuple(sizes[d] for d in dims):
                raise LayoutError(f"{path}: scalars/{name} has shape {values.shape}, "
                                  f"expected {tuple(sizes[d] for d in dims)}")
            if name in data_vars:
                raise LayoutError(f"{path}: scalars/{name} has the name of a field")
            data_vars[name] = xr.Variable(dims, values, {
                **_attrs(dataset), "role": "time_series" if timed else "parameter"})

    root_attrs = _attrs(handle)
    bcs = _boundary_conditions(handle, path)
    if bcs:
        root_attrs["boundary_conditions"] = json.dumps(bcs)
    if layout == "ours":
        data_vars = _schema_order(data_vars, root_attrs.get("system_description", ""))
        for name in ("split", "trajectory_seed", "completed"):
            dataset = _member(handle, name, path, required=False)
            if isinstance(dataset, h5py.Dataset) and dataset.shape == (n,):
                data_vars[name] = xr.Variable(("trajectory",), _whole(dataset, path),
                                              {**_attrs(dataset), "role": "metadata"})
        stats = _group(handle, "stats", path, required=False)
        if stats is not None:
            root_attrs["stats"] = json.dumps({key: {k: _json_safe(v) for k, v in
                                                    stats[key].attrs.items()}
                                              for key in stats})
    return xr.Dataset(data_vars, coords=coords, attrs=root_attrs)


def _schema_order(data_vars: dict[str, xr.Variable], description: str
                  ) -> dict[str, xr.Variable]:
    """Our fields in the order of ``system_description`` (the GAN's channel order)."""
    try:
        order = [item["name"] for item in json.loads(description)["fields"]]
    except (ValueError, KeyError, TypeError):
        return data_vars
    rank = {name: index for index, name in enumerate(order)}
    return dict(sorted(data_vars.items(), key=lambda item: rank.get(item[0], len(rank))))


# ------------------------------------------------------------------ PDEBench
def _time_coordinate(values: np.ndarray | None, n_times: int, name: str, path: Path
                     ) -> tuple[dict[str, xr.Variable], dict[str, xr.Variable]]:
    """Snapshot times from a PDEBench time coordinate of T or T + 1 entries.

    With T + 1 entries (the coordinate also holds the end of the last interval), the
    snapshot times are the first T entries; the full coordinate is kept as the
    variable ``t_coordinate_source`` (dim ``time_edge``). Without a coordinate, times are
    the snapshot indices 0, 1, ...
    """
    attrs = {"units": "1", "long_name": "time"}
    extra: dict[str, xr.Variable] = {}
    if values is None:
        times = np.arange(_count(n_times, "number of snapshots", path), dtype=np.float64)
        attrs["comment"] = "no time coordinate in the source file: snapshot index"
    else:
        values = np.asarray(values).ravel()
        if values.size == n_times:
            times = values
        elif values.size == n_times + 1:
            times = values[:n_times]
            attrs["comment"] = (f"source {name} has T + 1 = {values.size} entries; "
                                f"snapshot times are its first T")
            extra["t_coordinate_source"] = xr.Variable(
                ("time_edge",), values, {"role": "metadata", "source_dataset": name,
                                         "long_name": "source time coordinate (T + 1)"})
        else:
            raise LayoutError(f"{path}: {name} has {values.size} entries for {n_times} "
                              f"snapshots (expected {n_times} or {n_times + 1})")
    return {"time": xr.Variable(("time",), times, attrs)}, extra


def _space_coords(x: np.ndarray, y: np.ndarray) -> dict[str, xr.Variable]:
    return {"x": xr.Variable(("x",), np.asarray(x), {"units": "1", "long_name": "x"}),
            "y": xr.Variable(("y",), np.asarray(y), {"units": "1", "long_name": "y"})}


def _pdebench_field_attrs(name: str, **extra: Any) -> dict[str, Any]:
    attrs = {"units": "1", "role": "field"}
    if name in _PDEBENCH_NAMES:
        attrs["long_name"] = _PDEBENCH_NAMES[name]
    return {**attrs, **extra}


def _read_seeds(handle: h5py.File, path: Path) -> xr.Dataset:
    names = sorted(handle.keys(), key=int)
    groups = [_group(handle, name, path) for name in names]
    datasets = [_dataset(group, "data", path) for group in groups]
    first = datasets[0]
    if first.ndim != 4:
        raise LayoutError(f"{path}: {first.name} has shape {first.shape}; 2-D PDEBench "
                          f"seeds hold (T, Nx, Ny, C)")
    for dataset in datasets[1:]:
        if dataset.shape != first.shape or dataset.dtype != first.dtype:
            raise LayoutError(f"{path}: {dataset.name} has shape {dataset.shape} "
                              f"({dataset.dtype}), unlike {first.name} {first.shape} "
                              f"({first.dtype})")
    n_times, nx, ny, n_channels = first.shape
    grid = _group(groups[0], "grid", path)
    x, y = (_whole(_dataset(grid, axis, path), path) for axis in ("x", "y"))
    t = _whole(_dataset(grid, "t", path), path) if "t" in grid else None
    if x.shape != (nx,) or y.shape != (ny,):
        raise LayoutError(f"{path}: {grid.name}/x, y have shapes {x.shape}, {y.shape}; "
                          f"data has Nx, Ny = {nx}, {ny}")
    for group in groups[1:]:
        other = _member(group, "grid", path, required=False)
        if isinstance(other, h5py.Group):
            for axis, values in (("x", x), ("y", y), ("t", t)):
                if axis in other and values is not None and not np.array_equal(
                        _whole(_dataset(other, axis, path), path), values):
                    raise LayoutError(f"{path}: {group.name}/grid/{axis} differs from "
                                      f"{groups[0].name}'s; one grid per file is read")
    coords, extra = _time_coordinate(t, n_times, f"{groups[0].name}/grid/t", path)
    coords.update(_space_coords(x, y))
    coords["trajectory"] = xr.Variable(("trajectory",), np.arange(len(names), dtype=np.int64),
                                       {"long_name": "trajectory index"})
    coords["source_group"] = xr.Variable(("trajectory",), list(names),
                                         {"long_name": "group of the trajectory in the "
                                                       "source file (PDEBench seed)"})
    channels = {1: ["h"], 2: ["u", "v"]}.get(n_channels,
                                              [f"channel_{c}" for c in range(n_channels)])
    data_vars: dict[str, xr.Variable] = dict(extra)
    for index, name in enumerate(channels):
        data_vars[name] = _lazy(("trajectory", "time", "x", "y"),
                                _H5Array(datasets, stack="first", fixed={3: index}),
                                _pdebench_field_attrs(name, rank=0, source_dataset="data",
                                                      source_channel=index))
    data_vars.update(_seed_attributes(groups, data_vars))
    root = {**_attrs(handle), "channel_names_inferred": json.dumps(
        f"from the channel count C = {n_channels}: C = 1 -> h (shallow water), "
        f"C = 2 -> u, v (diffusion-reaction), else channel_<c>")}
    return xr.Dataset(data_vars, coords=coords, attrs=root)


def _seed_attributes(groups: Sequence[h5py.Group], taken: Iterable[str]
                     ) -> dict[str, xr.Variable]:
    """Attributes present on every seed group: numbers become per-trajectory parameters."""
    out: dict[str, xr.Variable] = {}
    common = set.intersection(*(set(group.attrs) for group in groups))
    for key in sorted(common - set(taken)):
        values = [group.attrs[key] for group in groups]
        if all(np.ndim(v) == 0 and isinstance(np.asarray(v).item(), (int, float))
               and not isinstance(np.asarray(v).item(), bool) for v in values):
            out[key] = xr.Variable(("trajectory",), np.asarray(values, dtype=np.float64),
                                   {"role": "parameter", "source_attribute": key})
        elif all(isinstance(v, (str, bytes)) for v in values):
            out[key] = xr.Variable(("trajectory",), [_text(v) for v in values],
                                   {"role": "metadata", "source_attribute": key})
    return out


def _read_arrays(handle: h5py.File, path: Path) -> xr.Dataset:
    if "z-coordinate" in handle:
        raise LayoutError(f"{path}: 3-D data (z-coordinate); only 2-D files are read")
    if "y-coordinate" not in handle:
        raise LayoutError(f"{path}: no y-coordinate (1-D data?); only 2-D files are read")
    x = _whole(_dataset(handle, "x-coordinate", path), path)
    y = _whole(_dataset(handle, "y-coordinate", path), path)
    main_name = "tensor" if "tensor" in handle else next(
        n for n in ("density", "Vx", "Vy", "pressure") if n in handle)
    main = _dataset(handle, main_name, path)
    if main.ndim != 4 or main.shape[2:] != (x.size, y.size):
        raise LayoutError(f"{path}: {main_name} has shape {main.shape}; expected (B, T, "
                          f"{x.size}, {y.size}) from the coordinates")
    n, n_times = _count(main.shape[0], "number of trajectories", path), main.shape[1]
    t = _whole(_dataset(handle, "t-coordinate", path), path) \
        if "t-coordinate" in handle else None
    coords, data_vars = _time_coordinate(t, n_times, "t-coordinate", path)
    coords.update(_space_coords(x, y))
    coords["trajectory"] = xr.Variable(("trajectory",), np.arange(n, dtype=np.int64),
                                       {"long_name": "trajectory index"})
    field_shape = (n, n_times, x.size, y.size)
    datasets = {name: _dataset(handle, name, path) for name in handle
                if name not in _PDEBENCH_COORDINATES}
    known = {"density": 0, "Vx": 1, "Vy": 2, "pressure": 3, "tensor": 4}
    order = sorted(datasets, key=lambda k: (known.get(k, len(known)), k))
    velocity = all(name in datasets and datasets[name].shape == field_shape
                   for name in ("Vx", "Vy"))
    for name in order:
        dataset = datasets[name]
        if velocity and name in ("Vx", "Vy"):
            if name == "Vx":
                if "velocity" in datasets:
                    raise LayoutError(f"{path}: both Vx/Vy and velocity present")
                coords["component"] = xr.Variable(("component",), ["x", "y"])
                data_vars["velocity"] = _lazy(
                    ("trajectory", "time", "x", "y", "component"),
                    _H5Array([datasets["Vx"], datasets["Vy"]], stack="last"),
                    _pdebench_field_attrs("velocity", rank=1, source_dataset="Vx Vy"))
            continue
        attrs = _attrs(dataset)
        if dataset.shape == field_shape:
            dims, role = ("trajectory", "time", "x", "y"), "field"
        elif dataset.shape == (n, x.size, y.size):
            dims, role = ("trajectory", "x", "y"), "field"
        elif dataset.shape == (n,):
            dims, role = ("trajectory",), "parameter"
        else:
            dims = tuple("trajectory" if axis == 0 and size == n else f"{name}_dim{axis}"
                         for axis, size in enumerate(dataset.shape))
            role = "extra"
        if role == "field":
            attrs = {**attrs, **_pdebench_field_attrs(name, rank=0, source_dataset=name)}
            data_vars[name] = _lazy(dims, _H5Array([dataset]), attrs)
        elif role == "parameter":
            data_vars[name] = xr.Variable(dims, _whole(dataset, path),
                                          {**attrs, "role": role})
        else:
            data_vars[name] = _lazy(dims, _H5Array([dataset]), {**attrs, "role": role,
                                                               "source_dataset": name})
    return xr.Dataset(data_vars, coords=coords, attrs=_attrs(handle))


# ----------------------------------------------------------------- public API
_READERS = {"ours": lambda h, p: _read_well(h, p, "ours"),
            "the_well": lambda h, p: _read_well(h, p, "the_well"),
            "pdebench_seeds": _read_seeds, "pdebench_arrays": _read_arrays}


def open_fields(path: str | os.PathLike) -> xr.Dataset:
    """Open a 2-D field file of any supported layout as one :class:`xarray.Dataset`.

    Dimensions: ``trajectory`` (B), ``time`` (T), ``x`` (Nx), ``y`` (Ny) (The Well may
    name its spatial dims otherwise; ``dimensions/@spatial_dims`` is followed), plus
    ``component`` (2, labels ``"x"``, ``"y"``) for vector fields and ``component_i``,
    ``component_j`` for rank-2 tensor fields. A field that does not change in time
    (or across trajectories, or along an axis) simply lacks that dimension.

    Coordinates: ``trajectory`` (0 .. B-1), ``time``, ``x``, ``y`` in the file's units
    (``units`` attribute where the file says, ``"1"`` for PDEBench, whose equations
    are non-dimensional), with the file's dtype.

    Data variables: each with ``role`` (``field``, ``parameter``, ``time_series``,
    ``metadata``, ``extra``); fields carry ``units``/``long_name`` where known, ``rank``
    and ``source_dataset``; parameters are ``(trajectory,)`` (or 0-d when the file
    has one value for all trajectories).

    Root attributes: ``layout``, ``source`` (the file name) and the file's own root
    attributes (booleans as int8, so that ``ds.to_netcdf(..., engine="h5netcdf")`` writes
    them; the file's own ``layout``/``source``, if any, renamed ``file_layout``/
    ``file_source``); The Well's boundary conditions as JSON in ``boundary_conditions``.

    Field order: the file's (``t0_fields``, then ``t1_fields``, then ``t2_fields``); for
    ``ours``, the schema's order (``system_description``), which is the GAN's channel order.

    Memory: fields are read lazily (only the selection indexed, straight from HDF5);
    coordinates, parameters and attributes are read at open. The file stays open until
    ``ds.close()`` (or the end of a ``with open_fields(path) as ds:`` block).

    Raises:
        LayoutError: one line naming the file: missing, empty, not HDF5 (truncated or
            another format), unknown layout, or a structure its layout does not allow.
    """
    path, handle = _open(path)
    try:
        layout = _detect(handle, path)
        ds = _READERS[layout](handle, path)
    except LayoutError:
        handle.close()
        raise
    except _H5_ERRORS as error:
        handle.close()
        raise LayoutError(f"{path}: unreadable file structure ({_one_line(error)})") from None
    except BaseException:
        handle.close()
        raise
    own = {f"file_{key}": ds.attrs[key] for key in ("layout", "source") if key in ds.attrs}
    ds.attrs = {**ds.attrs, **own, "layout": layout, "source": path.name}
    ds.set_close(handle.close)
    return ds


def field_names(ds: xr.Dataset) -> list[str]:
    """Names of the spatial fields of a Dataset from :func:`open_fields`, in file order."""
    return [str(name) for name, var in ds.data_vars.items() if var.attrs.get("role") == "field"]


def parameter_names(ds: xr.Dataset) -> list[str]:
    """Names of the parameters (per trajectory, or per file) of an :func:`open_fields` Dataset."""
    return [str(name) for name, var in ds.data_vars.items()
            if var.attrs.get("role") == "parameter"]


def _short(value: Any, limit: int = 200) -> Any:
    value = _json_safe(value)
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value


def describe_layout(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a file of any supported layout, for ``surrogate info`` (JSON-serialisable).

    Returns:
        ``{"path", "layout", "dataset_name", "n_trajectories", "resolution": [Nx, Ny],
        "grid": {axis: {"n", "first", "last", "spacing", "units"}}, "times": {"n",
        "first", "last", "units"}, "fields": {name: {"dims", "shape", "dtype", "units",
        "long_name"}}, "parameters": {name: {"min", "max", "units", "shape"}},
        "attributes": {root attribute: value (long text cut at 200 characters)}}``.
        Field values are not read.
    """
    with open_fields(path) as ds:
        grid = {}
        for axis in [d for d in ("x", "y") if d in ds.coords]:
            values = np.asarray(ds[axis].values, dtype=np.float64)
            grid[axis] = {"n": int(values.size), "first": float(values[0]),
                          "last": float(values[-1]),
                          "spacing": float((values[-1] - values[0]) / (values.size - 1))
                          if values.size > 1 else None,
                          "units": _text(ds[axis].attrs.get("units", ""))}
        times = np.asarray(ds["time"].values if "time" in ds.coords else [], dtype=np.float64)
        fields = {name: {"dims": list(ds[name].dims), "shape": list(ds[name].shape),
                         "dtype": str(ds[name].dtype),
                         "units": _text(ds[name].attrs.get("units", "")),
                         "long_name": _text(ds[name].attrs.get("long_name", ""))}
                  for name in field_names(ds)}
        parameters = {}
        for name in parameter_names(ds):
            values = np.asarray(ds[name].values, dtype=np.float64)
            finite = values[np.isfinite(values)]
            parameters[name] = {"min": float(finite.min()) if finite.size else None,
                                "max": float(finite.max()) if finite.size else None,
                                "units": _text(ds[name].attrs.get("units", "")),
                                "shape": list(values.shape)}
        return {
            "path": str(path), "layout": ds.attrs["layout"],
            "dataset_name": _text(ds.attrs.get("dataset_name", Path(path).stem)),
            "n_trajectories": int(ds.sizes.get("trajectory", 1)),
            "resolution": [int(ds.sizes[axis]) for axis in grid],
            "grid": grid,
            "times": {"n": int(times.size),
                      "first": float(times[0]) if times.size else None,
                      "last": float(times[-1]) if times.size else None,
                      "units": _text(ds["time"].attrs.get("units", ""))
                      if "time" in ds.coords else ""},
            "fields": fields, "parameters": parameters,
            "attributes": {key: _short(value) for key, value in ds.attrs.items()},
        }


# ------------------------------------------------------------------ conversion
@dataclass
class _Plan:
    """What :func:`convert` writes: schema, where each field comes from, parameters."""

    schema: StoreSchema
    sources: dict[str, tuple[str, int | None]]       # our field -> (variable, t2 row)
    parameters: dict[str, np.ndarray]                # name -> (B,) float64
    seeds: np.ndarray                                # (B,) uint64
    seed: int
    extra_attrs: dict[str, Any] = field(default_factory=dict)


def _uniform_axis(values: np.ndarray, axis: str, path: Path) -> float:
    """Spacing of a uniform grid axis (the store's grids are uniform and periodic)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        raise LayoutError(f"{path}: coordinate {axis} has {values.size} point(s); need 2 or "
                          f"more")
    spacing = (values[-1] - values[0]) / (values.size - 1)
    steps = np.diff(values)
    if not spacing > 0 or np.max(np.abs(steps - spacing)) > _GRID_RTOL * spacing:
        raise LayoutError(f"{path}: coordinate {axis} is not a uniform increasing grid; our "
                          f"format (data/FORMAT.md) holds uniform periodic grids only")
    return float(spacing)


def _field_sources(ds: xr.Dataset, path: Path) -> list[tuple[FieldSpec, str, int | None]]:
    """Our fields: rank 0 and 1 as they are, rank 2 split into its rows ``<name>_<i>``."""
    out = []
    for name in field_names(ds):
        var = ds[name]
        attrs = var.attrs
        units = _text(attrs.get("units", ""))
        long_name = _text(attrs.get("long_name", name))
        if "component_i" in var.dims:
            for row, label in enumerate(np.asarray(ds["component_i"].values).tolist()):
                out.append((FieldSpec(f"{name}_{label}", units,
                                      f"{long_name} (row {label} of the rank-2 tensor)", 1),
                            name, row))
        else:
            out.append((FieldSpec(name, units, long_name, 1 if "component" in var.dims
                                  else 0), name, None))
    names = [spec.name for spec, _, _ in out]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise LayoutError(f"{path}: splitting rank-2 fields gives duplicate names "
                          f"{duplicated}")
    return out


def _generic_parameters(ds: xr.Dataset, n: int, path: Path
                        ) -> tuple[tuple[Parameter, ...], dict[str, np.ndarray]]:
    """Parameters declared from the file: range = the values' [min, max]."""
    declared, values = [], {}
    for name in parameter_names(ds):
        array = np.asarray(ds[name].values)
        if array.dtype.kind not in "iuf":
            raise LayoutError(f"{path}: parameter {name!r} is not numeric ({array.dtype})")
        array = np.broadcast_to(array.astype(np.float64), (n,)) if array.ndim == 0 \
            else array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            raise LayoutError(f"{path}: parameter {name!r} is NaN/Inf in trajectory {bad}")
        low, high = float(array.min()), float(array.max())
        attrs = ds[name].attrs
        declared.append(Parameter(
            name=name, default=low, low=low, high=high,
            units=_text(attrs.get("units", "")),
            doc=_text(attrs.get("long_name", f"{name} (from the source file)")),
            integer=array.dtype.kind in "iu" or ds[name].dtype.kind in "iu"))
        values[name] = np.ascontiguousarray(array)
    return tuple(declared), values


def _check_time_series(ds: xr.Dataset, path: Path) -> None:
    for name, var in ds.data_vars.items():
        role = var.attrs.get("role")
        if role == "time_series":
            raise LayoutError(f"{path}: scalar {name!r} changes in time; our format holds "
                              f"one value per trajectory (scalars/), so it cannot be "
                              f"converted without loss")
        if role == "extra":
            raise LayoutError(f"{path}: dataset {name!r} of shape {var.shape} has no place "
                              f"in our format; it cannot be converted without loss")


def _periodicity(ds: xr.Dataset, layout: str, allow_nonperiodic: bool, path: Path) -> str:
    text = ds.attrs.get("boundary_conditions")
    if text is None:
        return "not recorded in the source file" if layout.startswith("pdebench") else "{}"
    bcs = json.loads(text)
    other = sorted({_text(entry.get("bc_type", "?")) for entry in bcs.values()
                    if _text(entry.get("bc_type", "?")).upper() != "PERIODIC"})
    if other and not allow_nonperiodic:
        raise LayoutError(f"{path}: boundary conditions {', '.join(other)} are not periodic; "
                          f"our format declares periodic boundaries (pass "
                          f"allow_nonperiodic=True / --allow-nonperiodic to convert anyway, "
                          f"keeping the source's in source_boundary_conditions)")
    return text


def _plan(ds: xr.Dataset, path: Path, system: str | None, allow_nonperiodic: bool,
          allow_rounding: bool) -> _Plan:
    layout = ds.attrs["layout"]
    _check_time_series(ds, path)
    if "time" not in ds.coords:
        raise LayoutError(f"{path}: trajectories have different time grids; our format "
                          f"holds one time grid per file")
    if ds.attrs.get("grid_type", "cartesian") != "cartesian" or not {"x", "y"} <= set(ds.dims):
        raise LayoutError(f"{path}: grid {ds.attrs.get('grid_type')!r} with dims "
                          f"{list(ds.dims)}; our format holds cartesian x, y grids")
    n, nx, ny = ds.sizes.get("trajectory", 1), ds.sizes["x"], ds.sizes["y"]
    if nx != ny:
        raise LayoutError(f"{path}: grid is {nx} x {ny}; our format holds square N x N grids")
    times = np.asarray(ds["time"].values, dtype=np.float64)
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise LayoutError(f"{path}: snapshot times are not finite and strictly increasing")
    sources = _field_sources(ds, path)
    extra: dict[str, Any] = {
        "source_file": path.name, "source_layout": layout,
        "source_attrs": json.dumps(_json_safe({k: v for k, v in ds.attrs.items()
                                               if k not in ("layout", "source")})),
        "source_boundary_conditions": _periodicity(ds, layout, allow_nonperiodic, path),
        "source_fields": json.dumps({spec.name: {
            "variable": name, "row": row, "dims": list(ds[name].dims),
            "dtype": str(ds[name].dtype),
            "source_dataset": _text(ds[name].attrs.get("source_dataset", name))}
            for spec, name, row in sources}),
    }
    kept = {"split", "trajectory_seed", "completed", "t_coordinate_source"}
    metadata = {name: _json_safe(np.asarray(var.values)) for name, var in ds.data_vars.items()
                if var.attrs.get("role") == "metadata" and name not in kept}
    if metadata:
        extra["source_metadata"] = json.dumps(metadata)
    cast = [spec.name for spec, name, _ in sources if ds[name].dtype != np.float32]
    if cast:
        extra["cast_to_float32"] = json.dumps({"fields": cast,
                                               "rounding_allowed": bool(allow_rounding)})
    if "t_coordinate_source" in ds:
        extra["source_time"] = np.asarray(ds["t_coordinate_source"].values, dtype=np.float64)

    if layout == "ours" and system is None:
        with FieldStore(path) as store:
            if not bool(store.h5.attrs.get("complete", False)):
                raise LayoutError(f"{path}: file is not marked complete (an interrupted "
                                  f"write?); nothing to convert")
            schema = store.schema
            seeds = np.asarray(store.seeds, dtype=np.uint64)
            seed = int(store.h5.attrs.get("seed", 0))
            parameters = {k: np.asarray(v, dtype=np.float64)
                          for k, v in store.parameters().items()}
            for parameter in schema.parameters:
                values = parameters[parameter.name]
                outside = ~((values >= parameter.low) & (values <= parameter.high))
                if np.any(outside):
                    index = int(np.flatnonzero(outside)[0])
                    raise LayoutError(f"{path}: scalars/{parameter.name} = "
                                      f"{values[index]:g} at trajectory {index} is outside "
                                      f"the declared range {parameter.range_text}")
        return _Plan(schema, {spec.name: (name, row) for spec, name, row in sources},
                     parameters, seeds, seed, extra)

    spacing = _uniform_axis(ds["x"].values, "x", path)
    if abs(_uniform_axis(ds["y"].values, "y", path) - spacing) > _GRID_RTOL * spacing:
        raise LayoutError(f"{path}: x and y spacings differ; our format holds square cells")
    box_size = spacing * nx
    if layout != "ours":
        extra["source_x"] = np.asarray(ds["x"].values, dtype=np.float64)
        extra["source_y"] = np.asarray(ds["y"].values, dtype=np.float64)
    declared, parameters = _generic_parameters(ds, n, path)
    specs = tuple(spec for spec, _, _ in sources)
    dataset_name = _text(ds.attrs.get("dataset_name", path.stem))
    name = system or (dataset_name if layout in ("ours", "the_well") else
                      "pdebench_2d_" + "_".join(spec.name for spec in specs))
    time_units = _text(ds["time"].attrs.get("units", ""))
    length_units = _text(ds["x"].attrs.get("units", ""))
    import simulators
    if name in simulators.available():
        # our own files record the initial condition ("random" when they record none,
        # as for `surrogate simulate --like`); other sources' is unknown
        init = _text(ds.attrs.get("init") or "random") if layout == "ours" else None
        schema = _registered_schema(name, specs, parameters, times, nx, box_size, path, init)
        parameters = {p.name: parameters[p.name] for p in schema.parameters}
    elif system is not None:
        raise LayoutError(f"{path}: unknown system {system!r} (available: "
                          f"{', '.join(simulators.available())}); leave it out to convert "
                          f"with the fields and parameters the file declares")
    else:
        schema = StoreSchema(system=name, parameters=declared, fields=specs, invariants=(),
                             times=times, resolution=nx, box_size=box_size,
                             time_units=time_units, length_units=length_units,
                             dataset_name=dataset_name)
    if "trajectory_seed" in ds:
        seeds = np.asarray(ds["trajectory_seed"].values, dtype=np.uint64)
    elif "source_group" in ds.coords:
        seeds = np.asarray([int(v) for v in ds["source_group"].values], dtype=np.uint64)
    else:
        seeds = np.zeros(n, dtype=np.uint64)
    seed = int(ds.attrs.get("seed", 0)) if layout == "ours" else 0
    return _Plan(schema, {spec.name: (var, row) for spec, var, row in sources}, parameters,
                 seeds, seed, extra)


def _registered_schema(system: str, specs: Sequence[FieldSpec],
                       parameters: Mapping[str, np.ndarray], times: np.ndarray,
                       resolution: int, box_size: float, path: Path,
                       init: str | None = None) -> StoreSchema:
    """The registered system's schema, if the file's fields and parameters match it."""
    import simulators
    from simulators.grid import PeriodicGrid
    simulator = simulators.get(system)
    declared = [(f.name, f.rank) for f in simulator.fields]
    found = [(f.name, f.rank) for f in specs]
    if sorted(declared) != sorted(found):
        raise LayoutError(f"{path}: fields {found} do not match system {system!r}'s "
                          f"{declared} (name, rank)")
    names = [p.name for p in simulator.parameters]
    missing = [p for p in names if p not in parameters]
    unused = [p for p in parameters if p not in names]
    if missing or unused:
        raise LayoutError(f"{path}: parameters {sorted(parameters)} do not match system "
                          f"{system!r}'s {names}" + (f" (missing {missing})" if missing else "")
                          + (f" (not declared: {unused})" if unused else ""))
    for parameter in simulator.parameters:
        for index, value in enumerate(parameters[parameter.name]):
            try:
                parameter.check(value)
            except ValueError as error:
                raise LayoutError(f"{path}: trajectory {index}: {error}") from None
    # init-specific invariants (e.g. a fixed initial energy) only for a known init
    return StoreSchema.from_simulator(simulator, PeriodicGrid(resolution, box_size), times,
                                      init=init)


def _trajectory_values(ds: xr.Dataset, name: str, row: int | None, rank: int, index: int,
                       allow_rounding: bool, path: Path) -> np.ndarray:
    """One trajectory of one of our fields, ``(T, N, N[, 2])`` float32, broadcast as needed."""
    var = ds[name]
    if "trajectory" in var.dims:
        var = var.isel(trajectory=index)
    if row is not None:
        var = var.isel(component_i=row).rename(component_j="component")
    target = ("time", "x", "y") + (("component",) if rank else ())
    try:
        values = np.asarray(var.values)
    except OSError as error:
        raise LayoutError(f"{path}: field {name!r}, trajectory {index}: unreadable "
                          f"({_one_line(error)})") from None
    view = xr.Variable(var.dims, values)
    missing = {d: ds.sizes[d] for d in target if d not in view.dims}
    if missing:
        view = view.set_dims({**missing, **dict(view.sizes)})
    values = view.transpose(*target).values
    if values.dtype != np.float32:
        with np.errstate(all="ignore"):
            converted = values.astype(np.float32)
            exact = np.array_equal(converted.astype(values.dtype), values, equal_nan=True)
        if not exact and not allow_rounding:
            raise LayoutError(f"{path}: field {name!r} is {values.dtype} and its values do not "
                              f"fit float32 exactly (trajectory {index}); pass "
                              f"allow_rounding=True / --allow-rounding to round them to the "
                              f"nearest float32")
        values = converted
    finite = np.isfinite(values).reshape(values.shape[0], -1).all(axis=1)
    if not finite.all():
        raise LayoutError(f"{path}: field {name!r} has NaN/Inf in trajectory {index} at time "
                          f"index {int(np.flatnonzero(~finite)[0])}; our format holds finite "
                          f"values only")
    return np.ascontiguousarray(values)


def convert(source: str | os.PathLike, output: str | os.PathLike, *, system: str | None = None,
            overwrite: bool = False, allow_rounding: bool = False,
            allow_nonperiodic: bool = False) -> Path:
    """Convert a 2-D field file of any supported layout to our format (data/FORMAT.md).

    Field values are copied bit for bit when they are float32 (and when they are float64,
    float16 or integers whose every value is exactly a float32); other float64 values
    are refused unless ``allow_rounding`` (then rounded to the nearest float32). Every
    field cast from another dtype is listed in the root attribute ``cast_to_float32``
    (JSON: ``{"fields": [...], "rounding_allowed": bool}``). Fields that do not vary
    in time, across trajectories or along an axis are repeated along it; rank-2 fields
    ``(…, 2, 2)`` become two vector fields ``<name>_<row label>``; PDEBench ``Vx``, ``Vy``
    become the vector ``velocity``. Non-square, non-uniform or non-cartesian grids,
    time-varying scalars, NaN/Inf values and datasets without a place in our format are
    refused (nothing is dropped silently).

    The schema: the file's own for ``ours``; with ``system`` (a registered simulator)
    that system's parameters, fields, ranges and invariants, which the file must match;
    otherwise one built from the file (its fields, its per-trajectory parameters with
    the values' [min, max] as declared range, no invariants, system name = The Well's
    ``dataset_name`` or ``pdebench_2d_<fields>``). The grid becomes ``x_i = i L / N`` with
    ``L = N dx``; the source coordinates are kept in ``source_x``, ``source_y`` (and a
    T + 1 PDEBench time coordinate in ``source_time``).

    Provenance: ``producer = "converted:<layout>"``, ``source_file`` (the source's name),
    ``source_layout``, ``source_attrs`` (JSON), ``source_fields`` (JSON: where each field
    came from), ``source_boundary_conditions``, ``source_metadata`` (JSON: per-trajectory
    metadata variables such as PDEBench seed-group text attributes). Paths stored inside
    the source are never followed.

    Memory: one trajectory of one field at a time (plus the writer's per-trajectory copy).
    Atomic: written to ``<output>.partial`` and renamed; on any error the partial file is
    removed and an existing ``output`` is left untouched.

    Args:
        source: file to read (any layout of :data:`LAYOUTS`).
        output: file to write.
        system: registered simulator name to convert as (its schema), or None.
        overwrite: replace an existing ``output``.
        allow_rounding: round float64 fields that do not fit float32 exactly.
        allow_nonperiodic: convert a Well file whose boundary conditions are not periodic
            (our format declares periodic boundaries).
    Returns:
        The path of the written file.
    Raises:
        LayoutError: one line naming the file and what is wrong.
    """
    source = Path(source)
    output = check_output_path(output, overwrite)
    if source.exists() and output.exists() and os.path.samefile(source, output):
        raise LayoutError(f"{output}: is the source file; write to another name")
    with open_fields(source) as ds:
        try:
            return _convert(ds, source, output, system, overwrite, allow_rounding,
                            allow_nonperiodic)
        except FieldStoreError:
            raise
        except _H5_ERRORS as error:        # h5py on a damaged file, past open_fields's checks
            raise LayoutError(f"{source}: unreadable file structure "
                              f"({_one_line(error)})") from None


def _convert(ds: xr.Dataset, source: Path, output: Path, system: str | None, overwrite: bool,
             allow_rounding: bool, allow_nonperiodic: bool) -> Path:
    """:func:`convert` once the source is open (errors name ``source``)."""
    plan = _plan(ds, source, system, allow_nonperiodic, allow_rounding)
    schema = plan.schema
    n = int(ds.sizes.get("trajectory", 1))
    ranks = {spec.name: spec.rank for spec in schema.fields}
    provenance = Provenance(producer=f"converted:{ds.attrs['layout']}", seed=plan.seed)
    writer = FieldStoreWriter(output, schema, n, provenance, overwrite=overwrite,
                              extra_attrs=plan.extra_attrs)
    try:
        for index in range(n):
            arrays = {name: _trajectory_values(ds, var, row, ranks[name], index,
                                               allow_rounding, source)
                      for name, (var, row) in plan.sources.items()}
            writer.write(index, {k: float(v[index]) for k, v in plan.parameters.items()},
                         arrays, seed=int(plan.seeds[index]))
        return writer.finalize()
    except BaseException:
        writer.close()
        partial_path(output).unlink(missing_ok=True)
        raise
