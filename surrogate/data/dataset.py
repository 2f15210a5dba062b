"""Opening a field-store file for training, its train/valid/test splits by trajectory,
and the snapshot dataset (:class:`SnapshotDataset`: lazy chunked reads or an in-memory
cache, normalised fields and encoded conditions)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from simulators.store import SPLIT_NAMES, FieldStore, require_complete
from surrogate.data.conditioning import ConditionEncoder
from surrogate.data.layout import channel_layout
from surrogate.data.normalization import FieldNormalizer

__all__ = ["DEFAULT_CACHE_BYTES", "EmptySplitWarning", "SnapshotDataset", "check_compatible",
           "open_store", "split_trajectories"]

#: in-memory cache limit of :class:`SnapshotDataset`: selections up to this many bytes
#: (float32 normalised fields) are read once and kept in memory
DEFAULT_CACHE_BYTES = 256 * 2**20


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
