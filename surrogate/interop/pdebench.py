"""Reading PDEBench's two 2-D layouts.

- Per-seed files (diffusion-reaction, shallow water), layout ``pdebench_seeds``: one
  group per simulation, named ``"0000"``, ``"0001"``, ..., each holding ``data``
  ``(T, Nx, Ny, C)`` (C channels: 1 is the water depth ``h``, 2 are the diffusion-reaction
  species ``u``, ``v``) and the grid ``grid/x`` ``(Nx,)``, ``grid/y`` ``(Ny,)``,
  ``grid/t`` ``(T,)``. Numeric attributes found on every group become per-trajectory
  parameters, text ones metadata.
- Single-array files, layout ``pdebench_arrays``: every trajectory in one array per
  variable, ``(B, T, Nx, Ny)``. Compressible Navier–Stokes stores ``density``, ``Vx``,
  ``Vy`` and ``pressure`` (``Vx``, ``Vy`` are read as the vector ``velocity``); Darcy
  flow stores the solution as ``tensor`` ``(B, 1, Nx, Ny)`` and the coefficient ``nu``
  ``(B, Nx, Ny)``. Coordinates: ``x-coordinate`` ``(Nx,)``, ``y-coordinate`` ``(Ny,)``
  and, optionally, ``t-coordinate`` ``(T,)`` or ``(T + 1,)`` (then also the end of the
  last interval). A ``(B,)`` array is a parameter; an array of any other shape has no
  named axes (role ``extra``).

PDEBench's equations are non-dimensional: every coordinate and field has units ``"1"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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
    _group,
    _H5Array,
    _lazy,
    _member,
    _trajectory_coordinate,
    _whole,
    attribute_text,
)

#: the compressible Navier–Stokes arrays (a single-array file holds these or ``tensor``)
_ARRAY_FIELDS = ("density", "Vx", "Vy", "pressure")
_PDEBENCH_COORDINATES = ("x-coordinate", "y-coordinate", "z-coordinate", "t-coordinate")
#: what is known about PDEBench variables; its equations are non-dimensional (units "1")
_PDEBENCH_NAMES = {
    "density": "mass density", "pressure": "pressure", "velocity": "velocity (Vx, Vy)",
    "tensor": "solution", "nu": "coefficient field (Darcy flow: permeability a(x))",
    "h": "water depth", "u": "activator", "v": "inhibitor",
}


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


# ------------------------------------------------------------ per-seed files
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
    coords["trajectory"] = _trajectory_coordinate(len(names))
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
            out[key] = xr.Variable(("trajectory",), [attribute_text(v) for v in values],
                                   {"role": "metadata", "source_attribute": key})
    return out


# ------------------------------------------------- single-array files (CFD, Darcy)
def _read_arrays(handle: h5py.File, path: Path) -> xr.Dataset:
    if "z-coordinate" in handle:
        raise LayoutError(f"{path}: 3-D data (z-coordinate); only 2-D files are read")
    if "y-coordinate" not in handle:
        raise LayoutError(f"{path}: no y-coordinate (1-D data?); only 2-D files are read")
    x = _whole(_dataset(handle, "x-coordinate", path), path)
    y = _whole(_dataset(handle, "y-coordinate", path), path)
    main_name = "tensor" if "tensor" in handle else next(
        n for n in _ARRAY_FIELDS if n in handle)
    main = _dataset(handle, main_name, path)
    if main.ndim != 4 or main.shape[2:] != (x.size, y.size):
        raise LayoutError(f"{path}: {main_name} has shape {main.shape}; expected (B, T, "
                          f"{x.size}, {y.size}) from the coordinates")
    n, n_times = _count(main.shape[0], "number of trajectories", path), main.shape[1]
    t = _whole(_dataset(handle, "t-coordinate", path), path) \
        if "t-coordinate" in handle else None
    coords, data_vars = _time_coordinate(t, n_times, "t-coordinate", path)
    coords.update(_space_coords(x, y))
    coords["trajectory"] = _trajectory_coordinate(n)
    field_shape = (n, n_times, x.size, y.size)
    datasets = {name: _dataset(handle, name, path) for name in handle
                if name not in _PDEBENCH_COORDINATES}
    known = {name: index for index, name in enumerate((*_ARRAY_FIELDS, "tensor"))}
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
