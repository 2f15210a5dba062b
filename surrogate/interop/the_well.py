"""Reading The Well's layout (2-D files only).

A Well file describes itself: root attributes ``dataset_name``, ``grid_type``,
``n_spatial_dims``, ``n_trajectories`` and ``simulation_parameters``; a group
``dimensions/`` with the ``time`` coordinate and one coordinate per spatial axis (named
by its attribute ``spatial_dims``); ``scalars/`` with one dataset per parameter;
``boundary_conditions/`` with one entry per boundary (``bc_type``, optionally a
``mask``); and the fields grouped by tensor rank: ``t0_fields/`` ``(B, T, Nx, Ny)``,
``t1_fields/`` ``(B, T, Nx, Ny, 2)``, ``t2_fields/`` ``(B, T, Nx, Ny, 2, 2)``. Each field
says what it varies along: with ``time_varying=False`` it has no ``T`` axis, with
``sample_varying=False`` no ``B`` axis, and a spatial axis whose ``dim_varying`` entry is
False is either absent or of length 1. The time coordinate may be ``(T,)`` or, per
trajectory, ``(B, T)``.

:func:`_well_parts` reads all of this into the variables of one Dataset (fields lazy);
our own files are Well files with a few more things (:mod:`surrogate.interop.ours`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from surrogate.interop.backend import (
    LayoutError,
    _attrs,
    _count,
    _dataset,
    _flag,
    _group,
    _H5Array,
    _json_safe,
    _lazy,
    _member,
    _texts,
    _trajectory_coordinate,
    _whole,
)


def _coordinate(group: h5py.Group, name: str, path: Path) -> tuple[np.ndarray, dict]:
    dataset = _dataset(group, name, path)
    values = _whole(dataset, path)
    return values, _attrs(dataset)


def _names(group: h5py.Group) -> list[str]:
    """The group's ``field_names`` attribute, or else its members' names."""
    return _texts(group.attrs["field_names"]) if "field_names" in group.attrs \
        else list(group.keys())


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


def _well_parts(handle: h5py.File, path: Path
                ) -> tuple[dict[str, xr.Variable], dict[str, Any], dict[str, Any], int]:
    """A Well file's data variables, coordinates, root attributes and trajectory count."""
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
    coords["trajectory"] = _trajectory_coordinate(n)

    data_vars: dict[str, xr.Variable] = {}
    for rank in range(3):
        group = _group(handle, f"t{rank}_fields", path, required=False)
        if group is None:
            continue
        for name in _names(group):
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
        for name in _names(scalars):
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
    return data_vars, coords, root_attrs, n


def _read_the_well(handle: h5py.File, path: Path) -> xr.Dataset:
    data_vars, coords, root_attrs, _ = _well_parts(handle, path)
    return xr.Dataset(data_vars, coords=coords, attrs=root_attrs)
