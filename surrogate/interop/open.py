"""One :class:`xarray.Dataset` for a file of any layout: :func:`open_fields`, and what is
read from it (:func:`field_names`, :func:`parameter_names`, :func:`describe_layout`).

:func:`open_fields` detects the layout (:mod:`surrogate.interop.detect`) and hands the
open file to that layout's reader (:mod:`surrogate.interop.ours`,
:mod:`surrogate.interop.the_well`, :mod:`surrogate.interop.pdebench`); the Dataset owns
the file from then on and closes it when it is closed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from surrogate.interop.backend import (
    _H5_ERRORS,
    LayoutError,
    _json_safe,
    _open,
    _unreadable,
    attribute_text,
)
from surrogate.interop.detect import _detect
from surrogate.interop.ours import _read_ours
from surrogate.interop.pdebench import _read_arrays, _read_seeds
from surrogate.interop.the_well import _read_the_well

_READERS = {"ours": _read_ours, "the_well": _read_the_well,
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
        raise _unreadable(path, error) from None
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
                          "units": attribute_text(ds[axis].attrs.get("units", ""))}
        times = np.asarray(ds["time"].values if "time" in ds.coords else [], dtype=np.float64)
        fields = {name: {"dims": list(ds[name].dims), "shape": list(ds[name].shape),
                         "dtype": str(ds[name].dtype),
                         "units": attribute_text(ds[name].attrs.get("units", "")),
                         "long_name": attribute_text(ds[name].attrs.get("long_name", ""))}
                  for name in field_names(ds)}
        parameters = {}
        for name in parameter_names(ds):
            values = np.asarray(ds[name].values, dtype=np.float64)
            finite = values[np.isfinite(values)]
            parameters[name] = {"min": float(finite.min()) if finite.size else None,
                                "max": float(finite.max()) if finite.size else None,
                                "units": attribute_text(ds[name].attrs.get("units", "")),
                                "shape": list(values.shape)}
        return {
            "path": str(path), "layout": ds.attrs["layout"],
            "dataset_name": attribute_text(ds.attrs.get("dataset_name", Path(path).stem)),
            "n_trajectories": int(ds.sizes.get("trajectory", 1)),
            "resolution": [int(ds.sizes[axis]) for axis in grid],
            "grid": grid,
            "times": {"n": int(times.size),
                      "first": float(times[0]) if times.size else None,
                      "last": float(times[-1]) if times.size else None,
                      "units": attribute_text(ds["time"].attrs.get("units", ""))
                      if "time" in ds.coords else ""},
            "fields": fields, "parameters": parameters,
            "attributes": {key: _short(value) for key, value in ds.attrs.items()},
        }
