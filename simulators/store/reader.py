"""Reading a field-store file: :class:`FieldStore`, a lazy read-only view.

Opening a file checks what reading needs (the shared rules of
:mod:`simulators.store.rules`, the same functions the checker applies), so that a
damaged or crafted file gives one :class:`FieldStoreError` naming it rather than a crash
or a huge allocation later; fields are then read one chunk at a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from simulators.base import FieldSpec
from simulators.messages import first_line as _first_line
from simulators.store.hdf5 import (
    _READ_ERRORS,
    FieldStoreError,
    attribute_text,
    foreign_links,
    open_hdf5,
    printable,
)
from simulators.store.rules import (
    INDEX_DATASETS,
    box_size_problem,
    dataset_problem,
    field_shape,
    field_shape_problem,
    is_group,
    root_int_problem,
    statistics_problems,
    times_problem,
)
from simulators.store.schema import StoreSchema


def _selection_text(selection: Any) -> str:
    if isinstance(selection, slice) and selection == slice(None):
        return "all"
    return printable(repr(selection))[:60]


def _root_text(attrs: Any, key: str) -> str:
    value = attrs[key]
    if not isinstance(value, (str, bytes)):
        raise FieldStoreError(f"root attribute {key!r} should be text, got "
                              f"{type(value).__name__}")
    return attribute_text(value)


def _require(problem: str | None) -> None:
    """Raise a rule's problem (see :mod:`simulators.store.rules`) as a FieldStoreError."""
    if problem is not None:
        raise FieldStoreError(problem)


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
    of shape ``(B,)`` and ``split``, ``trajectory_seed``, ``completed`` of shape ``(B,)``
    with integer dtypes, and no member pointing into other files. The rules it shares
    with ``surrogate check`` are the functions of :mod:`simulators.store.rules`.
    Completion, statistics and value ranges are left to the callers
    (:func:`simulators.store.require_complete`; ``surrogate check`` checks everything).

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

    def _small(self, name: str, shape: tuple[int, ...] | None = None,
               ndim: int | None = None, integers: bool = False) -> np.ndarray:
        """Read a whole (small) numeric dataset after checking its shape and size."""
        dataset = self._member(name)
        _require(dataset_problem(self._file, name, shape, ndim, integers))
        return dataset[()]

    def _load_metadata(self) -> None:
        handle = self._file
        for group in ("dimensions", "scalars", "t0_fields", "t1_fields"):
            if not is_group(handle, group):
                raise FieldStoreError(f"{self.path}: missing group {group!r} (not a field-store "
                                      f"file, see data/FORMAT.md)")
        foreign = foreign_links(handle, datasets=False)
        if foreign:
            raise FieldStoreError(f"{foreign[0]}; links out of the file are never followed")
        attrs = handle.attrs
        self.system = _root_text(attrs, "system")
        self.dataset_name = _root_text(attrs, "dataset_name")
        for key in ("n_trajectories", "resolution"):
            _require(root_int_problem(key, attrs[key]))
        self.n_trajectories = n = int(attrs["n_trajectories"])
        self.resolution = size = int(attrs["resolution"])
        _require(box_size_problem(attrs["box_size"]))
        self.box_size = float(attrs["box_size"])
        time = self._member("dimensions/time")
        self.times = np.asarray(self._small("dimensions/time", ndim=1), dtype=np.float64)
        _require(times_problem(self.times))
        self.x = self._small("dimensions/x", (size,))
        self.y = self._small("dimensions/y", (size,))
        if not (np.all(np.isfinite(self.x)) and np.all(np.isfinite(self.y))):
            raise FieldStoreError("dimensions/x or dimensions/y has NaN/Inf values")
        try:
            self.schema = StoreSchema.from_description(
                _root_text(attrs, "system_description"), times=self.times,
                resolution=self.resolution, box_size=self.box_size,
                time_units=attribute_text(time.attrs.get("units", "1")),
                length_units=attribute_text(self._member("dimensions/x").attrs.get("units", "1")),
                dataset_name=self.dataset_name)
        except ValueError as error:      # JSONDecodeError included
            raise FieldStoreError(f"system_description is not valid: "
                                  f"{_first_line(error)}") from None
        for spec in self.schema.fields:
            where = f"t{spec.rank}_fields/{spec.name}"
            dataset = self._member(where)
            expected = field_shape(n, self.times.size, size, spec.rank)
            _require(field_shape_problem(dataset, where, expected))
            # reading needs floats and chunks of at most one snapshot (the checker asks
            # for exactly float32 and one snapshot per chunk)
            if dataset.dtype.kind != "f":
                raise FieldStoreError(f"{where} has dtype {dataset.dtype}, expected float32")
            chunk = dataset.chunks
            if chunk is not None and math.prod(chunk) > math.prod(expected[2:]):
                raise FieldStoreError(f"{where} has chunks {chunk}, larger than one snapshot "
                                      f"(data/FORMAT.md: one snapshot per chunk)")
        for parameter in self.schema.parameters:
            key = f"scalars/{parameter.name}"
            self._member(key)
            _require(dataset_problem(handle, key, (n,)))
        for name in INDEX_DATASETS:
            self._member(name)
            _require(dataset_problem(handle, name, (n,), integers=True))

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
    def split_layout(self) -> str:
        """How the split was laid out: ``"random"`` or ``"stratified"`` (the ``split``
        dataset's ``layout`` attribute; files written before it: ``"random"``)."""
        return attribute_text(self._file["split"].attrs.get("layout", "random"))

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
            problems = statistics_problems(name, stats)
            if problems:
                raise FieldStoreError(f"{self.path}: {problems[0]}")
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
                out[key] = attribute_text(value)
            elif isinstance(value, np.ndarray):
                out[key] = [attribute_text(v) if isinstance(v, bytes) else v
                            for v in value.tolist()]
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
