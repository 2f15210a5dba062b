"""Channel layout: the store's per-field arrays <-> one channels-first array ``(..., C, N, N)``.

A snapshot is a float32 tensor ``(C, N, N)`` (a batch ``(B, C, N, N)``), channels first,
spatial axes ``[..., ix, iy]`` as in the store (axis -2 is x, axis -1 is y). Fields
appear in schema order (``store.schema.fields``); a scalar field (rank 0) takes one
channel, a vector field (rank 1) two, its x then y component.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["ChannelLayout", "channel_layout", "from_store_layout", "n_channels",
           "to_store_layout"]

#: one entry per field: (name, rank, channel slice)
ChannelLayout = list[tuple[str, int, slice]]


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
