"""Condition vector: physical parameters and snapshot time -> ``[-1, 1]^(P+1)``
(:class:`ConditionEncoder`), and which trajectories are neighbours in it
(:func:`neighbour_groups`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from simulators.base import Parameter
from simulators.store import StoreSchema

__all__ = ["ConditionEncoder", "neighbour_groups"]


class ConditionEncoder:
    """Physical parameters and snapshot time -> condition vector in ``[-1, 1]^(P+1)``.

    For a parameter with declared range ``[low, high]``:
    ``c = 2 (v - low) / (high - low) - 1``, or with ``log_scale``
    ``c = 2 (log v - log low) / (log high - log low) - 1``; a degenerate range
    (``low == high``) gives 0. The last entry is
    ``c_t = 2 (t - t_first) / (t_last - t_first) - 1`` over the file's snapshot times
    (0 when there is a single time). Values outside the declared range (or times outside
    ``[t_first, t_last]``) raise ``ValueError``: the surrogate does not extrapolate.
    A relative slack of 1e-9 of the range absorbs round-off (values are then clipped).

    Args:
        parameters: the declared parameters, in order (the order of the vector).
        time_range: ``(t_first, t_last)``, time units of the store.
    """

    TOLERANCE = 1e-9

    def __init__(self, parameters: Sequence[Parameter], time_range: tuple[float, float]
                 ) -> None:
        self.names = tuple(p.name for p in parameters)
        self.lows = tuple(float(p.low) for p in parameters)
        self.highs = tuple(float(p.high) for p in parameters)
        self.log_scales = tuple(bool(p.log_scale) for p in parameters)
        self.units = tuple(str(p.units) for p in parameters)
        for name, low, high, log in zip(self.names, self.lows, self.highs, self.log_scales,
                                        strict=True):
            if not (math.isfinite(low) and math.isfinite(high)) or high < low:
                raise ValueError(f"parameter {name!r}: invalid range [{low}, {high}]")
            if log and low <= 0:
                raise ValueError(f"parameter {name!r}: log scale needs low > 0, got {low}")
        first, last = (float(t) for t in time_range)
        if not (math.isfinite(first) and math.isfinite(last)) or last < first:
            raise ValueError(f"invalid time range [{first}, {last}]")
        self.time_range = (first, last)

    @classmethod
    def from_schema(cls, schema: StoreSchema) -> ConditionEncoder:
        """Encoder for a file's parameters and snapshot times."""
        times = np.asarray(schema.times, dtype=np.float64)
        return cls(schema.parameters, (float(times[0]), float(times[-1])))

    @property
    def dim(self) -> int:
        """Length ``P + 1`` of the condition vector."""
        return len(self.names) + 1

    @property
    def labels(self) -> tuple[str, ...]:
        """Names of the entries: the parameters, then ``"time"``."""
        return (*self.names, "time")

    @staticmethod
    def _to_unit(values: np.ndarray, low: float, high: float, log: bool) -> np.ndarray:
        if high == low:
            return np.zeros_like(values)
        if log:
            return 2.0 * (np.log(values) - math.log(low)) / (math.log(high) - math.log(low)) - 1
        return 2.0 * (values - low) / (high - low) - 1.0

    def _checked(self, what: str, values: np.ndarray, low: float, high: float) -> np.ndarray:
        slack = self.TOLERANCE * max(high - low, abs(high), abs(low), 1e-300)
        bad = ~np.isfinite(values) | (values < low - slack) | (values > high + slack)
        if np.any(bad):
            value = values[np.flatnonzero(bad)[0]]
            raise ValueError(f"{what} = {value:g} is outside the range [{low:g}, {high:g}] "
                             f"the surrogate was trained on")
        return np.clip(values, low, high)

    def encode(self, parameters: Mapping[str, Any], times: Any) -> np.ndarray:
        """Condition vectors of ``B`` samples.

        Args:
            parameters: ``{name: value or array (B,)}`` for every declared parameter
                (physical units; scalars broadcast).
            times: snapshot time(s), scalar or ``(B,)`` (time units of the store).
        Returns:
            float32 array ``(B, P + 1)``.
        Raises:
            ValueError: a missing or unknown parameter, or a value outside its range.
        """
        unknown = sorted(set(parameters) - set(self.names))
        missing = [name for name in self.names if name not in parameters]
        if unknown or missing:
            raise ValueError(f"condition parameters: unknown {unknown}, missing {missing} "
                             f"(expected {', '.join(self.names) or 'none'})")
        times = np.atleast_1d(np.asarray(times, dtype=np.float64))
        columns = [np.atleast_1d(np.asarray(parameters[name], dtype=np.float64))
                   for name in self.names]
        try:
            size = np.broadcast_shapes(times.shape, *(c.shape for c in columns))
        except ValueError:
            raise ValueError("condition parameters and times have different lengths: "
                             f"{[c.shape for c in (*columns, times)]}") from None
        if len(size) != 1:
            raise ValueError(f"condition values must be scalars or 1-D arrays, got {size}")
        encoded = np.empty((size[0], self.dim), dtype=np.float64)
        for index, (name, column) in enumerate(zip(self.names, columns, strict=True)):
            low, high = self.lows[index], self.highs[index]
            values = self._checked(f"parameter {name!r}", np.broadcast_to(column, size),
                                   low, high)
            encoded[:, index] = self._to_unit(values, low, high, self.log_scales[index])
        first, last = self.time_range
        values = self._checked("time", np.broadcast_to(times, size), first, last)
        encoded[:, -1] = self._to_unit(values, first, last, False)
        return encoded.astype(np.float32)

    def decode(self, condition: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Inverse of :meth:`encode` (float64): ``(B, P+1)`` -> ``({name: (B,)}, times)``.

        A degenerate range decodes to its single value. Arithmetic of
        :meth:`decode_tensor`, in float64 on the CPU.
        """
        condition = torch.as_tensor(np.asarray(
            condition.detach().cpu() if isinstance(condition, torch.Tensor) else condition,
            dtype=np.float64))
        parameters, times = self.decode_tensor(condition)
        return {name: value.numpy() for name, value in parameters.items()}, times.numpy()

    def decode_tensor(self, condition: torch.Tensor
                      ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """:meth:`decode` on a tensor, in its dtype and on its device (no host sync):
        ``(B, P+1)`` -> ``({name: (B,)}, times (B,))``, physical units.

        Entries are clipped to ``[-1, 1]`` first; ``v = low + u (high - low)`` with
        ``u = (c + 1) / 2``, or ``v = exp(log low + u (log high - log low))`` for a
        log-scaled parameter. Not differentiable in any useful sense (the training uses
        it for the physical parameters of a batch).
        """
        if condition.ndim != 2 or condition.shape[1] != self.dim:
            raise ValueError(f"condition must have shape (B, {self.dim}), "
                             f"got {tuple(condition.shape)}")
        unit = (condition.clamp(-1.0, 1.0) + 1.0) / 2.0
        parameters = {}
        for index, name in enumerate(self.names):
            low, high = self.lows[index], self.highs[index]
            if self.log_scales[index]:
                parameters[name] = torch.exp(math.log(low) + unit[:, index]
                                             * (math.log(high) - math.log(low)))
            else:
                parameters[name] = low + unit[:, index] * (high - low)
        first, last = self.time_range
        return parameters, first + unit[:, -1] * (last - first)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able description (for checkpoint configs)."""
        return {"parameters": [{"name": n, "low": lo, "high": hi, "log_scale": lg, "units": u}
                               for n, lo, hi, lg, u in zip(self.names, self.lows, self.highs,
                                                           self.log_scales, self.units,
                                                           strict=True)],
                "time_range": list(self.time_range)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionEncoder:
        """Inverse of :meth:`to_dict`."""
        try:
            parameters = [Parameter(name=item["name"], default=float(item["low"]),
                                    low=float(item["low"]), high=float(item["high"]),
                                    units=item.get("units", "1"), doc="",
                                    log=bool(item["log_scale"]))
                          for item in data["parameters"]]
            first, last = data["time_range"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"invalid condition encoder description: {error!r}") from None
        return cls(parameters, (float(first), float(last)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConditionEncoder) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ConditionEncoder({', '.join(self.labels)})"


def neighbour_groups(points: np.ndarray, size: int) -> np.ndarray:
    """Each point and its ``size - 1`` nearest others: ``(n, size)`` row indices.

    Row ``i`` starts with ``i`` itself, then the ``size - 1`` other points closest to
    ``points[i]`` in Euclidean distance (a k-d tree; ties broken by index), so that a
    row is a group of trajectories whose conditions are as alike as the sweep allows --
    identical where the sweep repeats a condition. In the encoded parameters
    (:class:`ConditionEncoder`, every parameter on ``[-1, 1]``, log-scaled ones in log)
    a unit of distance means the same fraction of every range.

    Args:
        points: ``(n, P)`` encoded parameters of ``n`` trajectories (``P`` may be 0: then
            every trajectory is every other's neighbour).
        size: group size, ``1 <= size <= n``.
    Returns:
        int64 array ``(n, size)``.
    Raises:
        ValueError: ``size`` outside ``[1, n]`` or non-finite points.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must be (n, P), got shape {points.shape}")
    count = points.shape[0]
    if not 1 <= size <= count:
        raise ValueError(f"group size {size} must be in [1, {count}] (the trajectories)")
    if not np.isfinite(points).all():
        raise ValueError("points must be finite")
    if points.shape[1] == 0:
        points = np.zeros((count, 1))
    # rank by (distance, index); where ties at the group's edge may reach past the
    # queried neighbours, rank every point exactly
    queried = min(count, size + 8)
    distances, indices = cKDTree(points).query(points, k=queried)
    distances = np.asarray(distances).reshape(count, queried)
    indices = np.asarray(indices).reshape(count, queried)
    groups = np.empty((count, size), dtype=np.int64)
    for row in range(count):
        gaps, candidates = distances[row], indices[row]
        if queried < count and gaps[-1] <= gaps[size - 1]:
            gaps = np.linalg.norm(points - points[row], axis=1)
            candidates = np.arange(count)
        order = np.lexsort((candidates, gaps))
        others = [int(j) for j in candidates[order] if j != row]
        groups[row] = [row, *others[: size - 1]]
    return groups
