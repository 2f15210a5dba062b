"""The two files of a comparison: opened, checked against each other, read trajectory by trajectory.

Every refusal is a one-line :class:`simulators.store.FieldStoreError` naming the file and
its role (reference, generated, floor): a missing, empty or unfinished file
(:func:`open_store`), files of different systems, fields, grids, parameters or times
(:func:`check_compatible`), NaN or Inf values with their trajectory and time
(:func:`read_trajectory`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from simulators.store import FieldStore, FieldStoreError, require_complete

__all__ = ["TrajectorySubset", "check_compatible", "open_store", "read_trajectory"]


def open_store(path: str | os.PathLike, role: str) -> FieldStore:
    """Open a finished, non-empty field-store file; ``role`` names it in errors."""
    path = Path(path)
    if not path.exists():
        raise FieldStoreError(f"{path}: {role} file not found")
    store = FieldStore(path)
    if store.n_trajectories == 0:
        store.close()
        raise FieldStoreError(f"{path}: {role} file holds no trajectories")
    try:
        require_complete(store, f"{path} ({role} file)")
    except FieldStoreError:
        store.close()
        raise
    return store


def check_compatible(reference: FieldStore, generated: FieldStore) -> None:
    """Refuse ``generated`` unless its system, fields, grid, parameters and times are the
    reference's (times to a relative 1e-6)."""
    ref, gen = reference.path, generated.path
    if reference.system != generated.system:
        raise FieldStoreError(f"{gen}: system {generated.system!r} differs from the "
                              f"reference's {reference.system!r} ({ref})")
    ref_fields = [(s.name, s.rank) for s in reference.schema.fields]
    gen_fields = [(s.name, s.rank) for s in generated.schema.fields]
    if ref_fields != gen_fields:
        raise FieldStoreError(f"{gen}: fields {[n for n, _ in gen_fields]} differ from the "
                              f"reference's {[n for n, _ in ref_fields]}")
    if reference.resolution != generated.resolution:
        raise FieldStoreError(f"{gen}: resolution {generated.resolution} differs from the "
                              f"reference's {reference.resolution}")
    if not math.isclose(reference.box_size, generated.box_size, rel_tol=1e-9):
        raise FieldStoreError(f"{gen}: box_size {generated.box_size:g} differs from the "
                              f"reference's {reference.box_size:g}")
    if reference.parameter_names != generated.parameter_names:
        raise FieldStoreError(f"{gen}: parameters {generated.parameter_names} differ from "
                              f"the reference's {reference.parameter_names}")
    if (reference.times.shape != generated.times.shape
            or not np.allclose(reference.times, generated.times, rtol=1e-6, atol=1e-12)):
        raise FieldStoreError(f"{gen}: snapshot times {np.round(generated.times, 6).tolist()} "
                              f"differ from the reference's "
                              f"{np.round(reference.times, 6).tolist()}")


def read_trajectory(store: FieldStore, b: int) -> dict[str, np.ndarray]:
    """All fields of trajectory ``b``, ``(T, N, N[, 2])`` float32; NaN/Inf is an error."""
    fields = {}
    for name in store.field_names:
        values = store.read(name, b)
        finite = np.isfinite(values)
        if not finite.all():
            bad = np.flatnonzero(~finite.reshape(values.shape[0], -1).all(axis=1))[0]
            raise FieldStoreError(f"{store.path}: field {name!r} has NaN/Inf values at "
                                  f"trajectory {b}, time index {bad} "
                                  f"(t = {store.times[bad]:g})")
        fields[name] = values
    return fields


class TrajectorySubset:
    """Read-only view of some trajectories (ascending indices) of an open field store."""

    def __init__(self, store: FieldStore, indices: np.ndarray, label: str) -> None:
        self._store = store
        self.indices = np.sort(np.asarray(indices, dtype=np.intp))
        self.label = label

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def n_trajectories(self) -> int:
        return int(self.indices.size)

    @property
    def path(self) -> str:
        return f"{self._store.path} ({self.label})"

    def parameters(self) -> dict[str, np.ndarray]:
        return {name: values[self.indices] for name, values in self._store.parameters().items()}

    def read(self, name: str, trajectories: Any = slice(None), times: Any = slice(None)
             ) -> np.ndarray:
        return self._store.read(name, self.indices[trajectories], times)
