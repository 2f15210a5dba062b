"""What every reader of other people's HDF5 files shares: errors, guarded access, lazy arrays.

- :class:`LayoutError`, and :func:`_unreadable` for the one-line error naming a file
  whose HDF5 structure h5py cannot read (``_H5_ERRORS``: what h5py raises on a damaged
  file; h5py's message quoted by its first line, :func:`simulators.messages.first_line`).
- Attribute values as text (:func:`_texts`; one value: the store's ``attribute_text``), as
  JSON-serialisable objects (:func:`_json_safe`: :func:`surrogate.jsonable.json_safe`
  keeping non-finite numbers as text) and as netCDF-4 attributes (:func:`_attrs`).
- Guarded h5py access: :func:`_member`, :func:`_dataset`, :func:`_group` refuse links
  into other files (HDF5 external links, virtual datasets, external storage) instead of
  following them; :func:`_whole` and :func:`_count` refuse declared sizes too large for
  a coordinate, a parameter or an index array.
- The lazy backend: :class:`_H5Array`, an xarray ``BackendArray`` over one or several
  h5py datasets, so that field values stay on disk until indexed (no dask needed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from simulators.messages import first_line
from simulators.store import MAX_INDEX_ELEMENTS, FieldStoreError, open_hdf5
from simulators.store.hdf5 import attribute_text  # an attribute read as text: the store's rule
from surrogate.jsonable import json_safe

#: what h5py raises on a damaged file structure (turned into one-line LayoutErrors)
_H5_ERRORS = (KeyError, OSError, ValueError, TypeError, RuntimeError)


class LayoutError(FieldStoreError):
    """A file is missing, unreadable, of an unknown layout, or cannot be converted."""


# ------------------------------------------------------------------- helpers
def _unreadable(path: Path, error: BaseException, what: str = "file structure"
                ) -> LayoutError:
    """``<path>: unreadable <what> (<first line of the error, uncut>)``."""
    return LayoutError(f"{path}: unreadable {what} ({first_line(error, limit=None)})")


def _texts(value: Any) -> list[str]:
    """An attribute holding one name or a list of names -> list of str."""
    if isinstance(value, (str, bytes)):
        return [attribute_text(value)]
    return [attribute_text(v) for v in np.atleast_1d(np.asarray(value, dtype=object)).tolist()]


def _flag(attrs: Mapping[str, Any], key: str, default: bool) -> bool:
    return bool(attrs[key]) if key in attrs else default


def _netcdf_attr(value: Any) -> Any:
    """An HDF5 attribute value as a type xarray can write to netCDF-4 with h5netcdf.

    Booleans become ``int8`` 0/1 (netCDF has no boolean attributes), byte strings
    ``str``, string arrays lists of ``str``; numbers and numeric arrays are kept.
    """
    if isinstance(value, bytes):
        return attribute_text(value)
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
            return [attribute_text(v) for v in value.ravel().tolist()]
        if value.dtype.kind in "iufc":
            return value
    if isinstance(value, Mapping):
        return json.dumps(_json_safe(value))
    return str(value)


def _json_safe(value: Any) -> Any:
    """Attribute values -> JSON-serialisable Python objects, kept as written.

    :func:`surrogate.jsonable.json_safe` with ``non_finite="text"``: a NaN or infinite
    attribute becomes ``"nan"``/``"inf"``/``"-inf"`` (not ``null`` as in a report, where
    NaN means "undefined"), bytes are decoded and other objects become text.
    """
    return json_safe(value, non_finite="text")


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


def _trajectory_coordinate(n: int) -> xr.Variable:
    """The ``trajectory`` coordinate 0 .. n-1 every reader gives."""
    return xr.Variable(("trajectory",), np.arange(n, dtype=np.int64),
                       {"long_name": "trajectory index"})


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
