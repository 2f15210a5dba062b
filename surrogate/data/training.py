"""The training bundle: one file opened, checked and split into datasets, with its
normaliser, condition encoder and symmetry augmentation (:func:`load_training_data`)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from simulators.store import StoreSchema
from surrogate.data.conditioning import ConditionEncoder
from surrogate.data.dataset import (
    DEFAULT_CACHE_BYTES,
    EmptySplitWarning,
    SnapshotDataset,
    check_compatible,
    open_store,
    split_trajectories,
)
from surrogate.data.layout import ChannelLayout, channel_layout
from surrogate.data.normalization import FieldNormalizer
from surrogate.data.symmetry import SymmetryAugmentation

__all__ = ["TrainingData", "load_training_data"]


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
