"""Field-store files -> normalised torch tensors for the GAN: layout, conditions, splits.

Conventions shared with the model code (``surrogate.models``, ``surrogate.constraints``):

* **Channel layout.** A snapshot is a float32 tensor ``(C, N, N)`` (a batch
  ``(B, C, N, N)``), channels first, spatial axes ``[..., ix, iy]`` as in the store
  (axis -2 is x, axis -1 is y). Fields appear in schema order
  (``store.schema.fields``); a scalar field (rank 0) takes one channel, a vector field
  (rank 1) two, its x then y component. :func:`channel_layout` gives
  ``(name, rank, channel slice)`` per field; :func:`from_store_layout` /
  :func:`to_store_layout` convert between this and the store's ``(..., N, N)`` /
  ``(..., N, N, 2)`` arrays.
* **Condition vector** ``(B, P + 1)`` float32 (:class:`ConditionEncoder`): each declared
  parameter mapped affinely to ``[-1, 1]`` over its declared range (in ``log`` space
  when ``Parameter.log_scale``), then the snapshot time mapped to ``[-1, 1]`` over
  ``[times[0], times[-1]]`` (0 when there is a single time).
* **Normalisation** (:class:`FieldNormalizer`): a per-field transform, from the file's
  training-split statistics, under which the network sees O(1) values.
* **Splits** are by trajectory (the file's ``split`` dataset: 0 train, 1 valid, 2 test),
  so held-out trajectories are held-out parameter values (:func:`split_trajectories`).
* **Symmetry augmentation** (:func:`augment`) applies only the exact symmetries the
  simulator declares (``Simulator.symmetries``, vocabulary
  ``simulators.base.SYMMETRIES``).

Everything that goes into a checkpoint (normaliser, condition encoder) has
``to_dict``/``from_dict`` with plain JSON-able dicts; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from simulators.base import SYMMETRIES, FieldSpec, Invariant, Parameter
from simulators.store import SPLIT_NAMES, FieldStore, StoreSchema, require_complete

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "ChannelLayout",
    "ConditionEncoder",
    "EmptySplitWarning",
    "FieldNormalizer",
    "FieldTransform",
    "SnapshotDataset",
    "SymmetryAugmentation",
    "TrainingData",
    "apply_symmetry",
    "augment",
    "channel_layout",
    "check_compatible",
    "from_store_layout",
    "load_training_data",
    "n_channels",
    "open_fields",
    "open_store",
    "point_group",
    "pseudoscalar_fields",
    "split_trajectories",
    "symmetries_for",
    "to_store_layout",
]

#: in-memory cache limit of :class:`SnapshotDataset`: selections up to this many bytes
#: (float32 normalised fields) are read once and kept in memory
DEFAULT_CACHE_BYTES = 256 * 2**20

#: one entry per field: (name, rank, channel slice)
ChannelLayout = list[tuple[str, int, slice]]


# ------------------------------------------------------------------ channel layout
def channel_layout(fields: Sequence[Any]) -> ChannelLayout:
    """Channels of each field, in the given (schema) order.

    Args:
        fields: objects with ``name`` and ``rank`` (:class:`FieldSpec`,
            :class:`FieldTransform`).
    Returns:
        ``[(name, rank, slice of channels)]``: a scalar field takes 1 channel, a vector
        field 2 (x then y component).
    """
    layout, start = [], 0
    for spec in fields:
        if spec.rank not in (0, 1):
            raise ValueError(f"field {spec.name!r}: rank {spec.rank} is not 0 or 1")
        width = 1 + spec.rank
        layout.append((spec.name, int(spec.rank), slice(start, start + width)))
        start += width
    return layout


def n_channels(fields: Sequence[Any]) -> int:
    """Total channels ``C`` of ``fields`` (1 per scalar, 2 per vector field)."""
    return sum(1 + spec.rank for spec in fields)


def from_store_layout(arrays: Mapping[str, Any], fields: Sequence[Any]) -> np.ndarray:
    """Store arrays -> one channels-first float32 array.

    Args:
        arrays: ``{name: (..., N, N)}`` for scalar and ``(..., N, N, 2)`` for vector
            fields, e.g. ``(B, T, N, N[, 2])`` as read from a store.
        fields: field declarations (schema order fixes the channel order).
    Returns:
        ``(..., C, N, N)`` float32.
    """
    parts = []
    for name, rank, _ in channel_layout(fields):
        if name not in arrays:
            raise ValueError(f"field {name!r} missing (got {', '.join(arrays)})")
        array = np.asarray(arrays[name], dtype=np.float32)
        if rank == 1:
            if array.ndim < 3 or array.shape[-1] != 2:
                raise ValueError(f"vector field {name!r} must have shape (..., N, N, 2), "
                                 f"got {array.shape}")
            parts.append(np.moveaxis(array, -1, -3))
        else:
            parts.append(array[..., None, :, :])
    shapes = {part.shape[:-3] + part.shape[-2:] for part in parts}
    if len(shapes) != 1:
        raise ValueError(f"fields have inconsistent shapes: {sorted(shapes)}")
    return np.concatenate(parts, axis=-3)


def to_store_layout(channels: Any, fields: Sequence[Any]) -> dict[str, np.ndarray]:
    """Inverse of :func:`from_store_layout`: ``(..., C, N, N)`` -> ``{name: array}``.

    Args:
        channels: numpy array or torch tensor ``(..., C, N, N)`` (moved to the CPU).
        fields: field declarations in schema order.
    Returns:
        ``{name: float32 (..., N, N)}`` for scalar, ``(..., N, N, 2)`` for vector fields
        (contiguous, ready for ``FieldStoreWriter.write``).
    """
    if isinstance(channels, torch.Tensor):
        channels = channels.detach().to("cpu", torch.float32).numpy()
    channels = np.asarray(channels, dtype=np.float32)
    expected = n_channels(fields)
    if channels.ndim < 3 or channels.shape[-3] != expected:
        raise ValueError(f"expected (..., {expected}, N, N) channels, got {channels.shape}")
    out = {}
    for name, rank, channel in channel_layout(fields):
        if rank == 1:
            out[name] = np.ascontiguousarray(np.moveaxis(channels[..., channel, :, :], -3, -1))
        else:
            out[name] = np.ascontiguousarray(channels[..., channel.start, :, :])
    return out


# --------------------------------------------------------------- condition vector
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

        A degenerate range decodes to its single value.
        """
        condition = np.asarray(condition.detach().cpu() if isinstance(condition, torch.Tensor)
                               else condition, dtype=np.float64)
        if condition.ndim != 2 or condition.shape[1] != self.dim:
            raise ValueError(f"condition must have shape (B, {self.dim}), "
                             f"got {condition.shape}")
        unit = (np.clip(condition, -1.0, 1.0) + 1.0) / 2.0
        parameters = {}
        for index, name in enumerate(self.names):
            low, high = self.lows[index], self.highs[index]
            if self.log_scales[index]:
                parameters[name] = np.exp(math.log(low) + unit[:, index]
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


# ------------------------------------------------------------------ normalisation
#: kinds of :class:`FieldTransform`
NORMALIZER_KINDS = ("log", "scale", "bounds", "standard")


@dataclass(frozen=True)
class FieldTransform:
    """Normalisation of one field: ``y = (g(f) - offset) / scale``.

    ``g`` is ``log`` for kind ``"log"`` and the identity otherwise. Kinds:

    * ``"log"``: positive field (declared ``bounded`` with ``low = 0``, no ``high``, and
      the statistics have ``log_mean``): ``y = (log f - log_mean) / log_std``.
    * ``"scale"``: scaled only, ``y = f / scale`` (offset 0): every vector field (one
      isotropic scale, the rms of the components, so rotations and reflections commute
      with the normalisation), scalar fields declared ``zero_mean``, and pseudoscalars
      (``curl_of``; their sign flips under reflections, which a shift would not
      commute with). ``scale`` is the field's rms.
    * ``"bounds"``: ``discrete_values`` or ``bounded`` on both sides: ``[low, high]`` is
      mapped affinely onto ``[-1, 1]``: ``offset = (low + high) / 2``,
      ``scale = (high - low) / 2``.
    * ``"standard"``: ``y = (f - mean) / std``.

    A zero or non-finite scale (a constant field) falls back to 1, so the transform
    stays finite and invertible (the field is then only shifted).

    Attributes:
        name, rank: the field.
        kind: one of the kinds above.
        offset, scale: in the field's units (log units for ``"log"``).
    """

    name: str
    rank: int
    kind: str
    offset: float
    scale: float

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZER_KINDS:
            raise ValueError(f"field {self.name!r}: unknown normalisation kind {self.kind!r}")
        if self.rank == 1 and (self.kind != "scale" or self.offset != 0.0):
            raise ValueError(f"vector field {self.name!r} must use kind 'scale' with offset 0")
        if not (math.isfinite(self.offset) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"field {self.name!r}: invalid offset/scale "
                             f"({self.offset}, {self.scale})")


def _positive_scale(value: Any) -> float:
    """``value`` as a float, or 1.0 when it is zero, negative or not finite."""
    try:
        number = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return 1.0
    return number if math.isfinite(number) and number > 0 else 1.0


def _invariants_of(name: str, invariants: Iterable[Invariant]) -> dict[str, Invariant]:
    return {inv.kind: inv for inv in invariants if inv.field == name}


def pseudoscalar_fields(invariants: Iterable[Invariant]) -> frozenset[str]:
    """Names of pseudoscalar fields: those declared ``curl_of`` a vector field.

    A curl ``w = d(u_y)/dx - d(u_x)/dy`` changes sign under a mirror reflection and is
    unchanged by rotations: ``w'(x) = det(M) w(M^-1 x)``.
    """
    return frozenset(inv.field for inv in invariants if inv.kind == "curl_of")


class FieldNormalizer:
    """Per-field transforms physical <-> normalised (see :class:`FieldTransform`).

    ``encode`` and ``decode`` work on channels-first tensors (or numpy arrays)
    ``(..., C, N, N)`` in the layout of :func:`channel_layout`, compute in float32 (or
    float64 for float64 input) and are exact inverses up to round-off.

    Args:
        transforms: one :class:`FieldTransform` per field, in schema order.
    """

    def __init__(self, transforms: Sequence[FieldTransform]) -> None:
        self.transforms = tuple(transforms)
        self.layout = channel_layout(self.transforms)
        self.channels = n_channels(self.transforms)

    # ------------------------------------------------------------ construction
    @classmethod
    def from_statistics(cls, fields: Sequence[FieldSpec], invariants: Sequence[Invariant],
                        statistics: Mapping[str, Mapping[str, Any]], *,
                        source: str = "statistics") -> FieldNormalizer:
        """Choose each field's transform from its invariants and statistics.

        Args:
            fields: declared fields in schema order.
            invariants: declared invariants (choose the kind, see :class:`FieldTransform`).
            statistics: ``{field: {"mean", "std", "rms", "log_mean", "log_std", ...}}``
                as in a store's ``stats/`` group (``FieldStore.statistics()``).
            source: what to name in error messages (e.g. the file path).
        Raises:
            ValueError: a field without statistics, or without the keys its kind needs.
        """
        transforms = []
        for spec in fields:
            stats = statistics.get(spec.name)
            if not stats:
                raise ValueError(f"{source}: no statistics for field {spec.name!r} "
                                 f"(stats/{spec.name} missing)")
            declared = _invariants_of(spec.name, invariants)
            bounded = declared.get("bounded")
            discrete = declared.get("discrete_values")

            def need(key: str, stats: Mapping[str, Any] = stats, name: str = spec.name) -> Any:
                if key not in stats:
                    raise ValueError(f"{source}: stats/{name} lacks {key!r}")
                return stats[key]

            if spec.rank == 1:
                kind, offset, scale = "scale", 0.0, _positive_scale(need("rms"))
            elif discrete is not None and discrete.values:
                low, high = min(discrete.values), max(discrete.values)
                kind, offset, scale = "bounds", (low + high) / 2, _positive_scale((high - low) / 2)
            elif bounded is not None and bounded.low is not None and bounded.high is not None:
                low, high = bounded.low, bounded.high
                kind, offset, scale = "bounds", (low + high) / 2, _positive_scale((high - low) / 2)
            elif bounded is not None and bounded.low == 0 and bounded.high is None \
                    and "log_mean" in stats and "log_std" in stats:
                kind, offset = "log", float(stats["log_mean"])
                scale = _positive_scale(stats["log_std"])
            elif "zero_mean" in declared or "curl_of" in declared:
                kind, offset, scale = "scale", 0.0, _positive_scale(need("rms"))
            else:
                kind, offset = "standard", float(need("mean"))
                scale = _positive_scale(need("std"))
            transforms.append(FieldTransform(spec.name, spec.rank, kind, float(offset),
                                             float(scale)))
        return cls(transforms)

    @classmethod
    def from_store(cls, store: FieldStore) -> FieldNormalizer:
        """Transforms from the file's ``stats/`` (computed on its training split)."""
        return cls.from_statistics(store.schema.fields, store.schema.invariants,
                                   store.statistics(), source=str(store.path))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able description (for checkpoint configs)."""
        return {"fields": [{"name": t.name, "rank": t.rank, "kind": t.kind,
                            "offset": t.offset, "scale": t.scale} for t in self.transforms]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldNormalizer:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls([FieldTransform(str(item["name"]), int(item["rank"]), str(item["kind"]),
                                       float(item["offset"]), float(item["scale"]))
                        for item in data["fields"]])
        except (KeyError, TypeError) as error:
            raise ValueError(f"invalid normaliser description: {error!r}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldNormalizer) and self.transforms == other.transforms

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "FieldNormalizer(" + ", ".join(f"{t.name}: {t.kind}" for t in self.transforms) + ")"

    # ------------------------------------------------------------------ access
    @property
    def field_names(self) -> list[str]:
        return [t.name for t in self.transforms]

    def transform(self, name: str) -> FieldTransform:
        """The :class:`FieldTransform` of field ``name``."""
        for item in self.transforms:
            if item.name == name:
                return item
        raise ValueError(f"no field {name!r} (fields: {', '.join(self.field_names)})")

    # ---------------------------------------------------------------- transforms
    def _apply(self, values: Any, forward: bool) -> Any:
        is_numpy = not isinstance(values, torch.Tensor)
        tensor = torch.as_tensor(np.asarray(values) if is_numpy else values)
        if tensor.ndim < 3 or tensor.shape[-3] != self.channels:
            raise ValueError(f"expected (..., {self.channels}, N, N) channels "
                             f"({', '.join(self.field_names)}), got {tuple(tensor.shape)}")
        dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
        tensor = tensor.to(dtype)
        parts = []
        for item, (_, _, channel) in zip(self.transforms, self.layout, strict=True):
            part = tensor[..., channel, :, :]
            if forward:
                if item.kind == "log":
                    part = torch.log(part)
                parts.append((part - item.offset) / item.scale)
            else:
                part = part * item.scale + item.offset
                parts.append(torch.exp(part) if item.kind == "log" else part)
        out = torch.cat(parts, dim=-3)
        return out.numpy() if is_numpy else out

    def encode(self, physical: Any) -> Any:
        """Physical fields ``(..., C, N, N)`` -> normalised (same container type).

        Fields of kind ``"log"`` must be positive (their log is taken).
        """
        return self._apply(physical, forward=True)

    def decode(self, normalised: Any) -> Any:
        """Normalised ``(..., C, N, N)`` -> physical fields (same container type)."""
        return self._apply(normalised, forward=False)


# ------------------------------------------------------------------ store helpers
class EmptySplitWarning(UserWarning):
    """A split (usually ``valid``) has no trajectory; training runs without it."""


def open_store(path: str | os.PathLike) -> FieldStore:
    """Open a field-store file for training or generation, checking what they need.

    Checks: the file opens as a field store (``simulators.store.FieldStore``), is marked
    complete, every trajectory was written, the ``split`` dataset has shape ``(B,)`` and
    codes 0/1/2, and ``stats/<field>`` exists for every field.

    Returns:
        The open :class:`FieldStore` (close it, or use it in a ``with`` block).
    Raises:
        ValueError: one line naming the file and the problem.
    """
    store = FieldStore(path)
    try:
        handle = store.h5
        require_complete(store)
        if "split" not in handle or handle["split"].shape != (store.n_trajectories,):
            raise ValueError(f"{store.path}: dataset 'split' missing or not of shape "
                             f"({store.n_trajectories},)")
        codes = np.unique(store.split)
        if not np.all(np.isin(codes, np.arange(len(SPLIT_NAMES)))):
            raise ValueError(f"{store.path}: split codes {codes.tolist()} are not all in "
                             f"0 (train), 1 (valid), 2 (test)")
        statistics = store.statistics()
        for name in store.field_names:
            if name not in statistics:
                raise ValueError(f"{store.path}: stats/{name} missing (normalisation "
                                 f"statistics are written when the file is finalised)")
        if store.n_trajectories < 1 or store.times.size < 1:
            raise ValueError(f"{store.path}: holds no snapshot")
    except BaseException:
        store.close()
        raise
    return store


def split_trajectories(store: FieldStore) -> dict[str, np.ndarray]:
    """Trajectory indices of each split, from the file's ``split`` dataset.

    The split is by trajectory (0 train, 1 valid, 2 test; ``simulators.store.assign_split``),
    so the snapshots of one trajectory are all in the same split and held-out
    trajectories are held-out parameter values. Files with fewer than 5 trajectories
    put every trajectory in ``train``: ``valid`` and ``test`` are then empty.

    Returns:
        ``{"train": (n0,), "valid": (n1,), "test": (n2,)}`` sorted int64 indices (possibly
        empty).
    Raises:
        ValueError: a split code other than 0, 1, 2.
    """
    split = np.asarray(store.split)
    bad = ~np.isin(split, np.arange(len(SPLIT_NAMES)))
    if np.any(bad):
        raise ValueError(f"{store.path}: split code {int(split[bad][0])} of trajectory "
                         f"{int(np.flatnonzero(bad)[0])} is not 0, 1 or 2")
    return {name: np.flatnonzero(split == code).astype(np.int64)
            for code, name in enumerate(SPLIT_NAMES)}


def check_compatible(store: FieldStore, normalizer: FieldNormalizer,
                     encoder: ConditionEncoder) -> None:
    """Check that a file matches a normaliser and encoder (e.g. from a checkpoint).

    Raises:
        ValueError: one line naming the file: other fields (names, ranks or order) or
            other parameters than the normaliser / encoder were built for.
    """
    fields = [(spec.name, spec.rank) for spec in store.schema.fields]
    expected = [(t.name, t.rank) for t in normalizer.transforms]
    if fields != expected:
        raise ValueError(f"{store.path}: fields {fields} do not match the model's {expected} "
                         f"(a file of another system?)")
    if tuple(store.parameter_names) != encoder.names:
        raise ValueError(f"{store.path}: parameters {store.parameter_names} do not match "
                         f"the model's {list(encoder.names)}")


# ------------------------------------------------------------------------ dataset
class SnapshotDataset(Dataset):
    """Snapshots ``(trajectory, time index)`` of chosen trajectories, normalised.

    Item ``k`` is snapshot ``(trajectories[k // T], k % T)``; it is returned as
    ``(fields, condition)`` with ``fields`` the normalised float32 tensor ``(C, N, N)``
    (:meth:`FieldNormalizer.encode` of the channels-first physical fields) and
    ``condition`` the float32 tensor ``(P + 1,)`` of :class:`ConditionEncoder`.

    Reading: when the selection (``len * C * N^2 * 4`` bytes) is at most ``cache_bytes``,
    it is read once at construction and kept in memory, already normalised (tiny
    datasets are read every step; use ``num_workers=0`` then). Otherwise each item reads
    its one snapshot (one HDF5 chunk per field), so memory does not depend on the file
    size; the HDF5 file is opened lazily in each process (h5py handles do not pickle
    or survive a fork), so ``torch.utils.data.DataLoader`` workers work with any start
    method.

    Batches: :meth:`get_batch` returns a whole batch at once (one indexing of the
    cache, or sorted snapshot reads plus one batched normalisation); a training loop
    can draw indices itself and call it instead of going through a ``DataLoader``.

    Args:
        path: field-store file.
        trajectories: trajectory indices (e.g. ``split_trajectories(store)["train"]``).
        normalizer: field transforms (usually from the training split's statistics).
        encoder: condition encoder.
        cache_bytes: in-memory cache limit (default :data:`DEFAULT_CACHE_BYTES`);
            0 never caches.
    Raises:
        ValueError: unreadable file, fields/parameters not matching ``normalizer`` /
            ``encoder``, out-of-range parameters, trajectory indices out of range, or
            NaN/Inf in a snapshot (when it is read).
    """

    def __init__(self, path: str | os.PathLike, trajectories: Sequence[int],
                 normalizer: FieldNormalizer, encoder: ConditionEncoder, *,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.path = Path(path)
        self.normalizer = normalizer
        self.encoder = encoder
        self.trajectories = np.asarray(trajectories, dtype=np.int64).reshape(-1)
        with FieldStore(self.path) as store:
            check_compatible(store, normalizer, encoder)
            if self.trajectories.size and (self.trajectories.min() < 0 or
                                           self.trajectories.max() >= store.n_trajectories):
                raise ValueError(f"{self.path}: trajectory indices must be in "
                                 f"[0, {store.n_trajectories})")
            self.schema = store.schema
            self.times = np.asarray(store.times, dtype=np.float64)
            self.resolution = store.resolution
            parameters = {name: values[self.trajectories]
                          for name, values in store.parameters().items()}
        self.layout = channel_layout(self.schema.fields)
        self.n_times = int(self.times.size)
        self.parameters = parameters
        time_of_item = np.tile(self.times, self.trajectories.size)
        try:
            self.conditions = torch.from_numpy(encoder.encode(
                {name: np.repeat(values, self.n_times) for name, values in parameters.items()},
                time_of_item))
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None
        self.nbytes = len(self) * normalizer.channels * self.resolution**2 * 4
        self._handle: h5py.File | None = None
        self._fields: list[h5py.Dataset] | None = None
        self._pid: int | None = None
        self._cache: torch.Tensor | None = None
        if 0 < self.nbytes <= cache_bytes:
            self._cache = self._read_all()

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self.trajectories.size) * self.n_times

    @property
    def cached(self) -> bool:
        """Whether the whole selection is held in memory."""
        return self._cache is not None

    def snapshot(self, index: int) -> tuple[int, int]:
        """``(trajectory, time index)`` of item ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} snapshots")
        index %= len(self)
        return int(self.trajectories[index // self.n_times]), index % self.n_times

    def _datasets(self) -> list[h5py.Dataset]:
        """The field datasets, opened in this process (reopened after a fork)."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = self._fields = None    # a handle inherited through fork is dropped
            try:
                handle = h5py.File(self.path, "r")
                fields = [handle[f"t{rank}_fields/{name}"] for name, rank, _ in self.layout]
            except (OSError, KeyError) as error:
                raise ValueError(f"{self.path}: cannot open the fields for reading "
                                 f"({error})") from None
            self._handle, self._fields, self._pid = handle, fields, os.getpid()
        return self._fields

    def _check_finite(self, array: np.ndarray, name: str, trajectory: int, time: int) -> None:
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{self.path}: field {name!r} has NaN/Inf at trajectory "
                             f"{trajectory}, time index {time}")

    def read_physical(self, trajectory: int, time: int) -> np.ndarray:
        """One snapshot in physical units, channels first: float32 ``(C, N, N)``."""
        out = np.empty((self.normalizer.channels, self.resolution, self.resolution),
                       dtype=np.float32)
        for dataset, (name, rank, channel) in zip(self._datasets(), self.layout, strict=True):
            try:
                array = dataset[trajectory, time]
            except OSError as error:
                raise ValueError(f"{self.path}: field {name!r}, trajectory {trajectory}, "
                                 f"time index {time}: unreadable ({error})") from None
            self._check_finite(array, name, trajectory, time)
            out[channel] = np.moveaxis(array, -1, 0) if rank == 1 else array
        return out

    def _read_all(self) -> torch.Tensor:
        """The whole selection, normalised: float32 ``(len, C, N, N)``."""
        n = self.resolution
        cache = torch.empty((len(self), self.normalizer.channels, n, n), dtype=torch.float32)
        block = np.empty((self.n_times, self.normalizer.channels, n, n), dtype=np.float32)
        datasets = self._datasets()
        for position, trajectory in enumerate(self.trajectories):
            for dataset, (name, rank, channel) in zip(datasets, self.layout, strict=True):
                try:
                    array = dataset[int(trajectory)]             # (T, N, N[, 2])
                except OSError as error:          # e.g. a Fletcher-32 checksum failure
                    raise ValueError(f"{self.path}: field {name!r}, trajectory {trajectory}: "
                                     f"unreadable ({str(error).splitlines()[0]})") from None
                if not np.all(np.isfinite(array)):
                    bad = np.flatnonzero(~np.isfinite(array).reshape(self.n_times, -1)
                                         .all(axis=1))[0]
                    self._check_finite(array[bad], name, int(trajectory), int(bad))
                block[:, channel] = np.moveaxis(array, -1, 1) if rank == 1 else array[:, None]
            start = position * self.n_times
            cache[start:start + self.n_times] = self.normalizer.encode(torch.from_numpy(block))
        self.close()
        return cache

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        trajectory, time = self.snapshot(index)
        index %= len(self)
        if self._cache is not None:
            return self._cache[index], self.conditions[index]
        physical = torch.from_numpy(self.read_physical(trajectory, time))
        return self.normalizer.encode(physical), self.conditions[index]

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``indices`` as one batch: ``(fields (B, C, N, N), condition (B, P+1))``."""
        indices = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))
        if indices.numel() and not (-len(self) <= int(indices.min())
                                    and int(indices.max()) < len(self)):
            raise IndexError(f"batch indices out of range for {len(self)} snapshots")
        indices = indices % max(len(self), 1)
        if self._cache is not None:
            return self._cache[indices], self.conditions[indices]
        order = np.argsort(indices.numpy(), kind="stable")   # read in file order
        physical = np.empty((indices.numel(), self.normalizer.channels, self.resolution,
                             self.resolution), dtype=np.float32)
        for position in order:
            physical[position] = self.read_physical(*self.snapshot(int(indices[position])))
        return self.normalizer.encode(torch.from_numpy(physical)), self.conditions[indices]

    # ---------------------------------------------------------- process safety
    def close(self) -> None:
        """Close this process's HDF5 handle (it is reopened on the next read)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = self._fields = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_handle=None, _fields=None, _pid=None)
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: h5py may already be gone
            pass


# ------------------------------------------------------------------- augmentation
#: matrices ``M`` (x' = M x) of the point-group generators in SYMMETRIES
_GENERATORS = {
    "flip_x": ((-1, 0), (0, 1)),
    "flip_y": ((1, 0), (0, -1)),
    "rotate_90": ((0, -1), (1, 0)),
    "rotate_180": ((-1, 0), (0, -1)),
}
#: spatial axes (0 = x, 1 = y) of the shift names in SYMMETRIES
_SHIFT_AXES = {"shift": (0, 1), "shift_x": (0,), "shift_y": (1,)}

Matrix = tuple[tuple[int, int], tuple[int, int]]


def _multiply(a: Matrix, b: Matrix) -> Matrix:
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2))
                 for i in range(2))  # type: ignore[return-value]


def point_group(symmetries: Collection[str]) -> tuple[list[Matrix], tuple[bool, bool]]:
    """The group generated by named symmetries (vocabulary ``simulators.base.SYMMETRIES``).

    Returns:
        ``(matrices, shift_axes)``: the point-group elements ``M`` (integer 2x2
        orthogonal matrices, identity first, then in sorted order), closed under
        products; and whether whole-cell shifts are allowed along x and along y. The
        shift axes are closed under the point group (e.g. ``shift_x`` with
        ``rotate_90`` allows shifts along y too).
    Raises:
        ValueError: an unknown name.
    """
    unknown = [name for name in symmetries if name not in SYMMETRIES]
    if unknown:
        raise ValueError(f"unknown symmetry name(s) {unknown} (known: {', '.join(SYMMETRIES)})")
    identity: Matrix = ((1, 0), (0, 1))
    generators = [_GENERATORS[name] for name in symmetries if name in _GENERATORS]
    group = {identity}
    frontier = [identity]
    while frontier:
        element = frontier.pop()
        for generator in generators:
            product = _multiply(generator, element)
            if product not in group:
                group.add(product)
                frontier.append(product)
    axes = {axis for name in symmetries for axis in _SHIFT_AXES.get(name, ())}
    for matrix in group:
        for axis in list(axes):
            axes.add(0 if matrix[0][axis] else 1)    # M e_axis is along this axis
    return [identity, *sorted(group - {identity})], (0 in axes, 1 in axes)


def apply_symmetry(batch: torch.Tensor, layout: ChannelLayout, matrices: torch.Tensor,
                   shifts: torch.Tensor, pseudoscalars: Collection[str] = ()) -> torch.Tensor:
    """Apply one grid map per sample: ``g_b: x -> M_b x + s_b``.

    On grid indices ``p = (i, j)``, with ``M^-1 = M^T``:

    * scalar channels: ``f'[p] = f[M^T (p - s) mod N]``;
    * vector fields: ``u'[p] = M u[M^T (p - s) mod N]`` (components rotate / flip);
    * pseudoscalars (``pseudoscalars``, e.g. vorticity): ``w'[p] = det(M) w[...]``.

    Reflections and rotations are about the grid point ``p = 0`` (``i -> -i mod N``),
    which maps the periodic grid onto itself exactly.

    Args:
        batch: ``(B, C, N, N)`` fields (physical or normalised: :class:`FieldNormalizer`
            commutes with these maps).
        layout: :func:`channel_layout` of the fields.
        matrices: ``(B, 2, 2)`` integer matrices ``M`` (orthogonal, entries 0 or +-1).
        shifts: ``(B, 2)`` integer shifts ``s`` in cells.
        pseudoscalars: names of pseudoscalar fields.
    Returns:
        New tensor ``(B, C, N, N)``, same dtype and device.
    """
    size, channels, n, n_y = batch.shape
    if n != n_y:
        raise ValueError(f"symmetry maps need a square grid, got {n} x {n_y}")
    device = batch.device
    matrices = torch.as_tensor(matrices, device=device).to(torch.int64)
    shifts = torch.as_tensor(shifts, device=device).to(torch.int64)
    index = torch.arange(n, device=device)
    di = index.view(1, n, 1) - shifts[:, 0].view(size, 1, 1)         # (B, N, 1)
    dj = index.view(1, 1, n) - shifts[:, 1].view(size, 1, 1)         # (B, 1, N)
    inverse = matrices.transpose(1, 2)
    source_i = (inverse[:, 0, 0].view(size, 1, 1) * di
                + inverse[:, 0, 1].view(size, 1, 1) * dj) % n
    source_j = (inverse[:, 1, 0].view(size, 1, 1) * di
                + inverse[:, 1, 1].view(size, 1, 1) * dj) % n
    flat = (source_i * n + source_j).view(size, 1, n * n).expand(size, channels, n * n)
    moved = batch.reshape(size, channels, n * n).gather(2, flat).view(size, channels, n, n)
    # per-sample entries of M, shaped (B, 1, 1, 1) to broadcast over (B, 1, N, N)
    m_xx, m_xy, m_yx, m_yy = matrices.to(batch.dtype).view(size, 4, 1, 1, 1).unbind(1)
    determinant = m_xx * m_yy - m_xy * m_yx
    parts = []
    for name, rank, channel in layout:
        part = moved[:, channel]
        if rank == 1:
            u_x, u_y = part[:, 0:1], part[:, 1:2]
            parts.append(torch.cat([m_xx * u_x + m_xy * u_y, m_yx * u_x + m_yy * u_y], dim=1))
        elif name in pseudoscalars:
            parts.append(determinant * part)
        else:
            parts.append(part)
    return torch.cat(parts, dim=1)


def augment(batch: torch.Tensor, layout: ChannelLayout, symmetries: Collection[str],
            generator: torch.Generator | None = None, *,
            pseudoscalars: Collection[str] = ()) -> torch.Tensor:
    """Apply a uniformly random element of the declared symmetry group to each sample.

    The group is generated by ``symmetries`` (:func:`point_group`): a point-group element
    is drawn uniformly per sample, and, where shifts are allowed, a uniform whole-cell
    shift ``0 .. N-1`` along each allowed axis. Random numbers come from ``generator``
    (on its device; the choices are then moved to the batch's device), so a seeded
    generator gives reproducible augmentation. With no symmetries the batch is returned
    unchanged. Conditions (parameters, time) are invariant and are not touched.

    Args:
        batch: ``(B, C, N, N)``.
        layout: :func:`channel_layout` of the fields.
        symmetries: names from ``simulators.base.SYMMETRIES`` (e.g.
            ``simulators.get(system).symmetries``, see :func:`symmetries_for`).
        generator: torch random generator (default: torch's global one).
        pseudoscalars: pseudoscalar fields: pass ``pseudoscalar_fields(schema.invariants)``
            (or use :class:`SymmetryAugmentation`, which does), otherwise a vorticity
            keeps its sign under mirrors and stops being the curl of the velocity.
    Returns:
        ``(B, C, N, N)`` transformed batch.
    """
    matrices, (shift_x, shift_y) = point_group(symmetries)
    negate = "negate" in symmetries
    if len(matrices) == 1 and not (shift_x or shift_y or negate):
        return batch
    size, n = batch.shape[0], batch.shape[-1]
    device = generator.device if generator is not None else torch.device("cpu")
    choice = torch.randint(len(matrices), (size,), generator=generator, device=device)
    shifts = torch.randint(n, (size, 2), generator=generator, device=device)
    shifts = shifts * torch.tensor([int(shift_x), int(shift_y)], device=device)
    group = torch.tensor(matrices, dtype=torch.int64, device=device)
    moved = apply_symmetry(batch, layout, group[choice], shifts, pseudoscalars)
    if not negate:
        return moved
    # f -> -f with probability 1/2 per sample; on normalised fields this is the physical
    # sign change when every field's transform is odd (scale-only, or bounds symmetric
    # about 0 such as spins in [-1, 1]), which load_training_data checks
    signs = torch.randint(2, (size,), generator=generator, device=device) * 2 - 1
    return moved * signs.to(moved.device, moved.dtype).view(size, 1, 1, 1)


def symmetries_for(system: str) -> tuple[str, ...]:
    """Declared symmetries of a registered system (``()`` for an unregistered one)."""
    import simulators
    try:
        return tuple(simulators.get(system).symmetries)
    except ValueError:
        return ()


@dataclass(frozen=True)
class SymmetryAugmentation:
    """:func:`augment` bound to one system's layout, symmetries and pseudoscalars.

    Build it with :meth:`from_schema`; call it on a batch ``(B, C, N, N)``.
    """

    layout: ChannelLayout
    symmetries: tuple[str, ...]
    pseudoscalars: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_schema(cls, schema: StoreSchema) -> SymmetryAugmentation:
        """Symmetries of ``schema.system`` (``simulators.get``), none if unregistered."""
        return cls(channel_layout(schema.fields), symmetries_for(schema.system),
                   pseudoscalar_fields(schema.invariants))

    @property
    def group_size(self) -> int:
        """Number of point-group elements (1: only shifts, or nothing)."""
        return len(point_group(self.symmetries)[0])

    @property
    def enabled(self) -> bool:
        matrices, shifts = point_group(self.symmetries)
        return len(matrices) > 1 or any(shifts) or "negate" in self.symmetries

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        return augment(batch, self.layout, self.symmetries, generator,
                       pseudoscalars=self.pseudoscalars)

    def stacked(self, copies: int) -> SymmetryAugmentation:
        """The same augmentation for ``copies`` snapshots stacked along channels.

        A batch ``(B, copies * C, N, N)`` (e.g. consecutive snapshots of one trajectory,
        ``torch.cat([x_t, x_t+1], dim=1)``) then gets one group element per sample, the
        same for every stacked snapshot, so their relation in time is kept.
        """
        channels = sum(part.stop - part.start for _, _, part in self.layout)
        layout = [(name, rank, slice(part.start + copy * channels, part.stop + copy * channels))
                  for copy in range(copies) for name, rank, part in self.layout]
        return dataclasses.replace(self, layout=layout)


# ---------------------------------------------------------------- training bundle
@dataclass
class TrainingData:
    """Everything a training loop reads from one file.

    Attributes:
        path: the file.
        schema: its schema (system, fields, parameters, invariants, grid, times).
        normalizer: field transforms (from the training split's statistics, or given).
        encoder: condition encoder (from the file's parameters and times, or given).
        splits: ``{"train": dataset, "valid": ..., "test": ...}`` for the non-empty
            splits only (``valid`` is absent when the file has no validation
            trajectories).
        augmentation: the system's symmetry augmentation.
    """

    path: Path
    schema: StoreSchema
    normalizer: FieldNormalizer
    encoder: ConditionEncoder
    splits: dict[str, SnapshotDataset]
    augmentation: SymmetryAugmentation

    @property
    def layout(self) -> ChannelLayout:
        return channel_layout(self.schema.fields)


def load_training_data(path: str | os.PathLike, *, normalizer: FieldNormalizer | None = None,
                       encoder: ConditionEncoder | None = None,
                       cache_bytes: int = DEFAULT_CACHE_BYTES) -> TrainingData:
    """Open a file for training: check it, split it, build the datasets.

    Args:
        path: field-store file.
        normalizer, encoder: reuse these (e.g. from a checkpoint when resuming; checked
            against the file); default: built from the file.
        cache_bytes: in-memory cache limit per split (:class:`SnapshotDataset`).
    Returns:
        :class:`TrainingData`.
    Raises:
        ValueError: one line naming the file: unreadable or incomplete file, missing
            statistics, an empty training split, a mismatch with ``normalizer`` /
            ``encoder``.
    Warns:
        EmptySplitWarning: when the validation split is empty (files with fewer than 5
            trajectories put every trajectory in ``train``); training then runs without
            validation and cannot choose a "best" checkpoint by validation score.
    """
    with open_store(path) as store:
        normalizer = FieldNormalizer.from_store(store) if normalizer is None else normalizer
        encoder = ConditionEncoder.from_schema(store.schema) if encoder is None else encoder
        check_compatible(store, normalizer, encoder)
        indices = split_trajectories(store)
        schema, n_trajectories = store.schema, store.n_trajectories
        resolved = store.path
    if indices["train"].size == 0:
        raise ValueError(f"{resolved}: no trajectory in the training split")
    if indices["valid"].size == 0:
        warnings.warn(f"{resolved}: the validation split is empty ({n_trajectories} "
                      f"trajectories; files with fewer than 5 put all in train): training "
                      f"runs without validation", EmptySplitWarning, stacklevel=2)
    splits = {name: SnapshotDataset(resolved, values, normalizer, encoder,
                                    cache_bytes=cache_bytes)
              for name, values in indices.items() if values.size}
    augmentation = SymmetryAugmentation.from_schema(schema)
    if "negate" in augmentation.symmetries:
        uneven = [t.name for t in normalizer.transforms
                  if t.kind == "log" or abs(t.offset) > 1e-6 * abs(t.scale)]
        if uneven:      # -f in physical units is not -y in normalised units for these
            augmentation = dataclasses.replace(augmentation, symmetries=tuple(
                name for name in augmentation.symmetries if name != "negate"))
            warnings.warn(f"{resolved}: sign augmentation off: the normalisation of "
                          f"{', '.join(uneven)} is not odd", stacklevel=2)
    return TrainingData(Path(resolved), schema, normalizer, encoder, splits, augmentation)


from surrogate.interop import open_fields  # noqa: E402  (re-export: other layouts)
