"""A summary of a field-store file for ``surrogate info``: system, grid, times, fields,
parameter ranges, split sizes and provenance (JSON-serialisable)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from simulators.messages import first_line as _first_line
from simulators.store.hdf5 import _READ_ERRORS, FieldStoreError, attribute_text, printable
from simulators.store.reader import FieldStore
from simulators.store.schema import SPLIT_NAMES


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a field-store file for ``surrogate info`` (JSON-serialisable).

    Text from the file (names, units, provenance such as ``command``) is returned through
    :func:`printable`: it is printed, never run or opened.

    Raises:
        FieldStoreError: the file is missing, damaged or not a field-store file.
    """
    with FieldStore(path) as store:
        try:
            return _describe(store)
        except FieldStoreError:
            raise
        except _READ_ERRORS as error:
            raise FieldStoreError(f"{store.path}: unreadable ({_first_line(error)})") from None


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)


def _describe(store: FieldStore) -> dict[str, Any]:
    parameters = store.parameters()
    split = store.split
    specs = {p.name: p for p in store.schema.parameters}
    provenance = {key: printable(value) if isinstance(value, str) else value
                  for key, value in store.provenance().items()}
    return {
        "path": str(store.path),
        "system": printable(store.system),
        "dataset_name": printable(store.dataset_name),
        "format_version": printable(attribute_text(store.h5.attrs.get("format_version", "?"))),
        "n_trajectories": store.n_trajectories,
        "resolution": store.resolution,
        "box_size": store.box_size,
        "times": {"n": int(store.times.size), "first": float(store.times[0]),
                  "last": float(store.times[-1]),
                  "units": printable(store.schema.time_units)},
        "fields": {printable(name): {"shape": list(store.dataset(name).shape),
                                     "units": printable(store.field_spec(name).units),
                                     "long_name": printable(store.field_spec(name).long_name)}
                   for name in store.field_names},
        "parameters": {printable(name): {"min": _finite_range(values)[0],
                                         "max": _finite_range(values)[1],
                                         "units": printable(specs[name].units),
                                         "declared_range": [specs[name].low, specs[name].high]}
                       for name, values in parameters.items()},
        "split": {name: int(np.sum(split == code)) for code, name in enumerate(SPLIT_NAMES)},
        "split_layout": printable(store.split_layout),
        "provenance": provenance,
    }
