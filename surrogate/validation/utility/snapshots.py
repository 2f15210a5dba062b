"""The regressor's examples: one snapshot, its time and its swept parameters (:class:`Snapshots`).

Targets are the swept parameters encoded by :class:`surrogate.data.ConditionEncoder`, the
GAN's own condition encoding, so the regressor's units are the surrogate's::

    y_p = 2 (v_p - low_p) / (high_p - low_p) - 1          (linear parameter)
    y_p = 2 (log v_p - log low_p) / (log high_p - log low_p) - 1    (log-scaled)

with ``[low_p, high_p]`` the *declared* range of parameter ``p`` (so a parameter swept
over its whole declared range spans ``[-1, 1]``). The snapshot time enters as the
encoder's last entry, ``c_t = 2 (t - t_first) / (t_last - t_first) - 1`` over the
training file's snapshot times (0 for a single time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulators.base import FieldSpec
from simulators.store import FieldStore, FieldStoreError
from surrogate.data import ConditionEncoder, from_store_layout

__all__ = ["Snapshots", "read_snapshots"]


@dataclass(frozen=True)
class Snapshots:
    """Examples of the parameter regressor, one per snapshot.

    Attributes:
        fields: ``(S, C, N, N)`` float32 physical fields, channels first in the layout of
            :func:`surrogate.data.channel_layout` (a vector field takes two channels).
        time: ``(S,)`` float32 encoded snapshot time in ``[-1, 1]``.
        targets: ``(S, P)`` float32 encoded swept parameters in ``[-1, 1]``.
        trajectory: ``(S,)`` int64 trajectory index in the source file (snapshots of
            one trajectory share it; subsets are taken by trajectory).
        names: the ``P`` swept parameters, the order of ``targets``' columns.
    """

    fields: np.ndarray
    time: np.ndarray
    targets: np.ndarray
    trajectory: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        size = self.fields.shape[0]
        if self.fields.ndim != 4 or self.fields.shape[-1] != self.fields.shape[-2]:
            raise ValueError(f"fields must have shape (S, C, N, N), got {self.fields.shape}")
        if self.time.shape != (size,) or self.trajectory.shape != (size,):
            raise ValueError(f"time and trajectory must have shape ({size},), got "
                             f"{self.time.shape} and {self.trajectory.shape}")
        if self.targets.shape != (size, len(self.names)):
            raise ValueError(f"targets must have shape ({size}, {len(self.names)}), got "
                             f"{self.targets.shape}")

    @classmethod
    def from_arrays(cls, fields: Mapping[str, Any], parameters: Mapping[str, Any], times: Any,
                    *, specs: Sequence[FieldSpec], encoder: ConditionEncoder,
                    names: Sequence[str], trajectory: Any = None) -> Snapshots:
        """Examples from physical arrays (the Python API on arrays).

        Args:
            fields: ``{name: (S, N, N)}`` per scalar field, ``(S, N, N, 2)`` per vector
                field (the store's layout), physical units, finite.
            parameters: ``{name: (S,)}`` physical value of every parameter of
                ``encoder`` (all of them: out-of-range values are refused).
            times: ``(S,)`` snapshot times (or a scalar), time units of the store.
            specs: the field declarations, in order (channel order).
            encoder: the condition encoding (declared ranges, time range).
            names: the swept parameters to infer.
            trajectory: ``(S,)`` trajectory labels (default: one per snapshot).
        Raises:
            ValueError: a missing field or parameter, NaN/Inf fields, out-of-range
                values, or inconsistent shapes.
        """
        unknown = [name for name in names if name not in encoder.names]
        if unknown or not names:
            raise ValueError(f"swept parameters {list(names)}: need at least one of "
                             f"{list(encoder.names)}")
        channels = from_store_layout(fields, specs)
        finite = np.isfinite(channels.reshape(channels.shape[0], -1)).all(axis=1)
        if not finite.all():
            raise ValueError(f"fields have NaN/Inf values at snapshot "
                             f"{int(np.flatnonzero(~finite)[0])}")
        condition = encoder.encode(parameters, times)
        columns = [encoder.names.index(name) for name in names]
        size = channels.shape[0]
        if condition.shape[0] != size:
            raise ValueError(f"{size} snapshots but {condition.shape[0]} conditions")
        labels = np.arange(size) if trajectory is None else np.asarray(trajectory)
        return cls(fields=channels, time=condition[:, -1].copy(),
                   targets=np.ascontiguousarray(condition[:, columns]),
                   trajectory=labels.astype(np.int64), names=tuple(names))

    @property
    def size(self) -> int:
        """Number of snapshots ``S``."""
        return int(self.fields.shape[0])

    @property
    def n_trajectories(self) -> int:
        return int(np.unique(self.trajectory).size)

    def select(self, trajectories: Any) -> Snapshots:
        """The snapshots of the given trajectories (labels of :attr:`trajectory`), in
        their order here."""
        keep = np.isin(self.trajectory, np.asarray(trajectories))
        return Snapshots(self.fields[keep], self.time[keep], self.targets[keep],
                         self.trajectory[keep], self.names)

    def relabelled(self, targets: np.ndarray) -> Snapshots:
        """The same fields with other targets ``(S, P)`` (negative controls)."""
        return Snapshots(self.fields, self.time, np.asarray(targets, dtype=np.float32),
                         self.trajectory, self.names)

    @staticmethod
    def concatenate(parts: Sequence[Snapshots]) -> Snapshots:
        """All snapshots of ``parts``; trajectory labels are made distinct by offsetting
        each part's labels past the previous parts'."""
        if not parts or any(part.names != parts[0].names for part in parts):
            raise ValueError("concatenate needs snapshots of the same swept parameters")
        labels, offset = [], 0
        for part in parts:
            labels.append(part.trajectory - (part.trajectory.min() if part.size else 0)
                          + offset)
            offset = int(labels[-1].max()) + 1 if part.size else offset
        return Snapshots(np.concatenate([p.fields for p in parts]),
                         np.concatenate([p.time for p in parts]),
                         np.concatenate([p.targets for p in parts]),
                         np.concatenate(labels), parts[0].names)


def read_snapshots(store: FieldStore, encoder: ConditionEncoder, names: Sequence[str],
                   trajectories: Sequence[int] | None = None) -> Snapshots:
    """Every snapshot of the selected trajectories of an open field store.

    Args:
        store: an open :class:`simulators.store.FieldStore`.
        encoder: the condition encoding of the *training* file (its declared ranges
            and time range), so every file is encoded alike.
        names: the swept parameters to infer.
        trajectories: trajectory indices (default: all), ascending.
    Returns:
        :class:`Snapshots` with ``S = len(trajectories) * T``, trajectory-major.
    Raises:
        FieldStoreError: NaN/Inf values (naming the file, field, trajectory and time) or
            a parameter or time outside the training file's ranges.
    """
    indices = np.arange(store.n_trajectories) if trajectories is None \
        else np.asarray(trajectories, dtype=np.int64)
    count, times = indices.size, store.times
    arrays = {}
    for name in store.field_names:
        values = store.read(name, indices) if count else np.zeros(
            (0, times.size, store.resolution, store.resolution)
            + ((2,) if store.field_spec(name).rank else ()), dtype=np.float32)
        finite = np.isfinite(values.reshape(count, times.size, -1)).all(axis=2)
        if not finite.all():
            b, t = (int(i[0]) for i in np.nonzero(~finite))
            raise FieldStoreError(f"{store.path}: field {name!r} has NaN/Inf values at "
                                  f"trajectory {int(indices[b])}, time index {t} "
                                  f"(t = {times[t]:g})")
        arrays[name] = values.reshape((count * times.size, *values.shape[2:]))
    parameters = {name: np.repeat(values[indices], times.size)
                  for name, values in store.parameters().items()}
    try:
        return Snapshots.from_arrays(arrays, parameters, np.tile(times, count),
                                     specs=store.schema.fields, encoder=encoder, names=names,
                                     trajectory=np.repeat(indices, times.size))
    except ValueError as error:
        raise FieldStoreError(f"{store.path}: {error}") from None
