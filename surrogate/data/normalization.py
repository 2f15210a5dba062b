"""Normalisation: per-field transforms physical <-> normalised, chosen from the declared
invariants and the training split's statistics (:class:`FieldNormalizer`), so the network
sees O(1) values.

Also the one rule for reading a field's declarations, :func:`declared_invariants` (first
declaration of a kind wins), which the output heads (:mod:`surrogate.constraints`) use
too, and the one implementation of a field's decode (:meth:`FieldTransform.decode`),
which the heads call with their ``log`` clamp.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from simulators.base import FieldSpec, Invariant
from simulators.store import FieldStore
from surrogate.data.layout import channel_layout, n_channels

__all__ = ["NORMALIZER_KINDS", "FieldNormalizer", "FieldTransform", "declared_invariants",
           "pseudoscalar_fields"]

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

    :meth:`encode` and :meth:`decode` apply the transform to this field's channels (torch,
    in the tensor's dtype); :class:`FieldNormalizer` and the output heads both go through
    them.

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

    def encode(self, physical: torch.Tensor) -> torch.Tensor:
        """This field's channels, physical -> normalised: ``(g(f) - offset) / scale``.

        Computes in the tensor's dtype; fields of kind ``"log"`` must be positive.
        """
        if self.kind == "log":
            physical = torch.log(physical)
        return (physical - self.offset) / self.scale

    def decode(self, normalised: torch.Tensor, log_clamp: float | None = None
               ) -> torch.Tensor:
        """This field's channels, normalised -> physical: ``g^-1(y scale + offset)``.

        Computes in the tensor's dtype (gradients flow). For kind ``"log"``, ``log_clamp``
        (when given) clamps the exponent ``y scale + offset`` to
        ``[-log_clamp, log_clamp]`` before ``exp``, so that the result stays finite and
        strictly positive (the output heads' ``"positive"`` head,
        ``surrogate.constraints.LOG_CLAMP``); other kinds ignore it.
        """
        physical = normalised * self.scale + self.offset
        if self.kind != "log":
            return physical
        if log_clamp is not None:
            physical = torch.clamp(physical, min=-log_clamp, max=log_clamp)
        return torch.exp(physical)


def _positive_scale(value: Any) -> float:
    """``value`` as a float, or 1.0 when it is zero, negative or not finite."""
    try:
        number = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return 1.0
    return number if math.isfinite(number) and number > 0 else 1.0


def declared_invariants(name: str, invariants: Iterable[Invariant]) -> dict[str, Invariant]:
    """The invariants declared for field ``name``, one per kind: ``{kind: Invariant}``.

    When a field declares one kind more than once, the *first* declaration wins. This is
    the one reading of the declarations that chooses a field's treatment: the
    normaliser's transform kind (:meth:`FieldNormalizer.from_statistics`) and the output
    heads (:class:`surrogate.constraints.OutputHeads`) both use it, so they see the same
    bounds.
    """
    declared: dict[str, Invariant] = {}
    for invariant in invariants:
        if invariant.field == name:
            declared.setdefault(invariant.kind, invariant)
    return declared


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
            declared = declared_invariants(spec.name, invariants)
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
            parts.append(item.encode(part) if forward else item.decode(part))
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

    def decode_field(self, name: str, normalised: torch.Tensor, *,
                     log_clamp: float | None = None) -> torch.Tensor:
        """One field's channels ``(..., 1 + rank, N, N)``, normalised -> physical.

        :meth:`FieldTransform.decode` of field ``name`` (the same arithmetic as
        :meth:`decode`, in the tensor's own dtype, differentiable); ``log_clamp`` clamps
        the exponent of a ``"log"`` field (see there).
        """
        return self.transform(name).decode(normalised, log_clamp)
