"""The structural rules of a field-store file that more than one reader enforces.

The reader (:class:`simulators.store.FieldStore`, which checks what reading needs) and
the checker (:func:`simulators.store.check_file`, which checks all of ``data/FORMAT.md``)
apply these same functions, so that the two cannot disagree on them. Each rule returns
the problem as one line of text (``None`` when the rule holds); the reader raises it as a
:class:`FieldStoreError`, the checker lists it.

:func:`require_complete` is the one test of "is this file finished?" (the root attribute
``complete`` and every trajectory's ``completed`` flag).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from simulators.messages import first_line as _first_line
from simulators.store.hdf5 import (
    _READ_ERRORS,
    MAX_INDEX_ELEMENTS,
    MAX_RESOLUTION,
    FieldStoreError,
    _is_number,
    printable,
)

#: root attributes that size the file, and their allowed ranges
ROOT_INT_RANGES = {"n_trajectories": (0, MAX_INDEX_ELEMENTS), "resolution": (1, MAX_RESOLUTION)}
#: per-trajectory datasets at the root: shape (B,), integer codes (int8, uint64, bool)
INDEX_DATASETS = ("split", "trajectory_seed", "completed")
#: the statistics of ``stats/<field>`` (data/FORMAT.md), in the order they are written
STATISTIC_KEYS = ("mean", "std", "rms", "min", "max", "count", "log_mean", "log_std")


def is_group(handle: h5py.Group, name: str) -> bool:
    """``name`` is a group reached by a link inside the file (hard or soft, not external)."""
    link = handle.get(name, getlink=True)
    return isinstance(link, (h5py.HardLink, h5py.SoftLink)) \
        and isinstance(handle.get(name), h5py.Group)


def dataset_problem(handle: h5py.Group, name: str, shape: tuple[int, ...] | None = None,
                    ndim: int | None = None, integers: bool = False) -> str | None:
    """Why ``name`` cannot be read whole (None: it is a small numeric dataset as expected).

    A dataset read whole (coordinates, per-trajectory parameters and codes) must have
    the given ``shape`` (or number of dimensions), at most :data:`MAX_INDEX_ELEMENTS`
    elements, and a numeric dtype (an integer or bool one with ``integers``).
    """
    dataset = handle.get(name)
    if not isinstance(dataset, h5py.Dataset):
        return f"{name} is missing or not a dataset"
    if shape is not None and dataset.shape != shape:
        return f"{name} has shape {dataset.shape}, expected {shape}"
    if ndim is not None and dataset.ndim != ndim:
        return f"{name} has shape {dataset.shape}, expected {ndim} dimension(s)"
    if dataset.size > MAX_INDEX_ELEMENTS:
        return f"{name} declares {dataset.size} elements (more than {MAX_INDEX_ELEMENTS})"
    if dataset.dtype.kind not in ("biu" if integers else "biuf"):
        return f"{name} has dtype {dataset.dtype}, expected {'integers' if integers else 'numbers'}"
    return None


def root_int_problem(key: str, value: Any) -> str | None:
    """Root attribute ``key`` (``n_trajectories`` or ``resolution``) is a whole number
    inside :data:`ROOT_INT_RANGES` (a huge declared size is refused, not allocated)."""
    if not _is_number(value) or not float(value).is_integer():
        return f"root attribute {key!r} should be an integer, got {printable(repr(value))[:80]}"
    low, high = ROOT_INT_RANGES[key]
    if not low <= int(value) <= high:
        return f"root attribute {key!r} = {int(value)} is outside [{low}, {high}]"
    return None


def box_size_problem(value: Any) -> str | None:
    """Root attribute ``box_size`` (the side ``L`` of the periodic square) is a finite
    positive number."""
    if not _is_number(value):
        return (f"root attribute 'box_size' = {printable(repr(value))[:80]} is not a positive "
                f"number")
    if not math.isfinite(value) or value <= 0:
        return f"root attribute 'box_size' = {value} is not positive"
    return None


def times_problem(times: np.ndarray) -> str | None:
    """The snapshot times ``dimensions/time`` are one axis of at least one value, finite
    and strictly increasing."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size < 1 or not np.all(np.isfinite(times)) \
            or np.any(np.diff(times) <= 0):
        return "dimensions/time must be finite and strictly increasing"
    return None


def field_shape(n_trajectories: int, n_times: int, resolution: int, rank: int
                ) -> tuple[int, ...]:
    """Shape of a field dataset: ``(B, T, N, N)``, and ``(B, T, N, N, 2)`` for a vector."""
    return (n_trajectories, n_times, resolution, resolution) + ((2,) if rank else ())


def field_shape_problem(dataset: h5py.Dataset, where: str, expected: tuple[int, ...]
                        ) -> str | None:
    """The field dataset at ``where`` has the shape :func:`field_shape` gives."""
    if dataset.shape != expected:
        return f"{where} has shape {dataset.shape}, expected {expected}"
    return None


def statistic_problem(field: str, key: str, value: Any) -> str | None:
    """Statistic ``key`` of ``stats/<field>`` is a finite number or a pair of them (a
    vector field's per-component values), and ``std`` is not negative."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.size > 2 \
            or not np.all(np.isfinite(array)) or (key == "std" and np.any(array < 0)):
        return f"stats/{field}: {key} = {printable(repr(value))[:60]} is not a finite number"
    return None


def statistics_problems(field: str, attrs: Mapping[str, Any]) -> list[str]:
    """:func:`statistic_problem` of every attribute of ``stats/<field>``: the known
    statistics first, in :data:`STATISTIC_KEYS` order, then any other (``split`` aside)."""
    keys = [key for key in STATISTIC_KEYS if key in attrs]
    keys += [key for key in attrs if key not in STATISTIC_KEYS and key != "split"]
    return [problem for key in keys
            if (problem := statistic_problem(field, key, attrs[key])) is not None]


def _complete_flag_problem(attrs: Mapping[str, Any]) -> str | None:
    """Root attribute ``complete`` is the bool True (set when the file was finalised)."""
    complete = attrs.get("complete", False)
    if not isinstance(complete, (bool, np.bool_)):
        return f"root attribute 'complete' should be bool, got {type(complete).__name__}"
    if not complete:
        return "file is not marked complete (an interrupted write?)"
    return None


def _completed_flags_problem(completed: np.ndarray) -> str | None:
    """Every trajectory's ``completed`` flag is set."""
    if not np.all(completed):
        return "some trajectories were never written (completed is False)"
    return None


def require_complete(source: Any, path: str | os.PathLike | None = None) -> None:
    """Refuse a file that is not finished: its root attribute ``complete`` must be the
    bool True and every entry of its ``completed`` dataset (shape (B,)) true.

    Args:
        source: an open :class:`simulators.store.FieldStore` or :class:`h5py.File`.
        path: the name used in the message (default: the store's path or the file name).
    Raises:
        FieldStoreError: one line, ``"<path>: <problem>"`` (an interrupted write, or a
            ``completed`` dataset that is missing, misshapen, unreadable or not all true).
    """
    handle = getattr(source, "h5", source)
    if path is None:
        path = getattr(source, "path", None) or handle.file.filename
    n = getattr(source, "n_trajectories", None)
    try:
        problem = _complete_flag_problem(handle.attrs) or dataset_problem(
            handle, "completed", None if n is None else (n,), ndim=1, integers=True) \
            or _completed_flags_problem(handle["completed"][()])
    except _READ_ERRORS as error:
        problem = f"completed is unreadable ({_first_line(error)})"
    if problem is not None:
        raise FieldStoreError(f"{path}: {problem}")
