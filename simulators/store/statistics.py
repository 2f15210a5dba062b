"""Normalisation statistics of a file's training split, and the streaming moments they use.

:class:`RunningMoments` accumulates count, mean, variance, minimum and maximum of a
stream of arrays, one chunk at a time, with the pairwise update of Chan, Golub & LeVeque
(1979), which stays accurate when the mean is large compared with the spread (where
``E[x^2] - E[x]^2`` loses all its digits). :func:`write_statistics` applies it to the
fields of a file, one snapshot in memory at a time, and stores the results as the
attributes of ``stats/<field>`` (see ``data/FORMAT.md``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from simulators.store.schema import StoreSchema


class RunningMoments:
    """Count, mean, second central moment, min and max of a stream of values (float64).

    :meth:`add` folds in a chunk of ``n_b`` values with mean ``m_b`` and
    ``M2_b = sum (x - m_b)^2`` (Chan, Golub & LeVeque 1979)::

        n = n_a + n_b,   delta = m_b - m_a,
        mean = m_a + delta n_b / n,   M2 = M2_a + M2_b + delta^2 n_a n_b / n

    so the variance ``M2 / n`` never comes from a difference of two large sums.
    Values keep their units; ``variance`` is in units squared.

    Attributes:
        count: number of values added.
        mean: their mean (0 before any value).
        m2: sum of squared deviations from the mean.
        min, max: smallest and largest value (``inf`` and ``-inf`` before any value).
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, values: Any) -> None:
        """Fold in the values of an array of any shape (converted to float64)."""
        values = np.asarray(values).astype(np.float64, copy=False)
        count = values.size
        if count == 0:
            return
        mean = float(np.mean(values))
        m2 = float(np.sum((values - mean) ** 2))
        total = self.count + count
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * count / total
        self.mean += delta * count / total
        self.count = total
        self.min = min(self.min, float(np.min(values)))
        self.max = max(self.max, float(np.max(values)))

    @property
    def variance(self) -> float:
        """Population variance ``M2 / n`` (0 before any value)."""
        return self.m2 / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        """Population standard deviation ``sqrt(M2 / n)`` (0 before any value)."""
        return math.sqrt(self.variance)

    @property
    def mean_square(self) -> float:
        """``E[x^2] = M2 / n + mean^2`` (a sum of two non-negative terms: no cancellation)."""
        return self.variance + self.mean**2

    @property
    def rms(self) -> float:
        """Root mean square ``sqrt(E[x^2])``."""
        return math.sqrt(self.mean_square)

    @property
    def max_abs(self) -> float:
        """Largest ``|x|`` (0 before any value)."""
        return max(abs(self.min), abs(self.max)) if self.count else 0.0


def field_statistics(chunks: Iterator[np.ndarray], rank: int) -> dict[str, Any]:
    """Streaming statistics of one field over chunks of its values: mean, std, rms, min,
    max (per component for a vector field, ``rank == 1``, chunks ``(..., 2)``) and the
    log-moments when every value is positive; the ``stats/`` entries of data/FORMAT.md
    and what the normaliser is built from."""
    if rank == 1:
        components = (RunningMoments(), RunningMoments())
        for chunk in chunks:
            flat = np.asarray(chunk, dtype=np.float64).reshape(-1, 2)
            for axis, moments in enumerate(components):
                moments.add(flat[:, axis])
        count = components[0].count
        if count == 0:
            return {}
        return {"mean": np.array([m.mean for m in components]),
                "std": np.array([m.std for m in components]),
                "rms": math.sqrt(sum(m.mean_square for m in components)),
                "min": min(m.min for m in components), "max": max(m.max for m in components),
                "count": count}
    values, logs = RunningMoments(), RunningMoments()
    positive = True
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float64)
        values.add(chunk)
        if positive and chunk.min() > 0:
            logs.add(np.log(chunk))
        else:
            positive = False
    if values.count == 0:
        return {}
    stats = {"mean": values.mean, "std": values.std, "rms": values.rms, "min": values.min,
             "max": values.max, "count": values.count}
    if positive:
        stats["log_mean"] = logs.mean
        stats["log_std"] = logs.std
    return stats


def write_statistics(handle: h5py.File, schema: StoreSchema) -> None:
    """Write ``stats/<field>`` attrs over the training split, reading one snapshot at a time.

    For scalar fields: ``mean``, ``std``, ``rms``, ``min``, ``max``, ``count`` pooled over
    all training trajectories, times and grid points (and ``log_mean``, ``log_std``
    when every value is positive). Vector fields: per-component ``mean``/``std``
    (shape (2,)), ``rms`` of the components. If the training split is empty, all
    trajectories are used (attr ``split`` says which).
    """
    split = handle["split"][...]
    train = np.flatnonzero(split == 0)
    used = "train"
    if train.size == 0:
        train, used = np.arange(split.size), "all"
    if "stats" in handle:
        del handle["stats"]
    group = handle.create_group("stats")
    group.attrs["split"] = used
    group.attrs["n_trajectories"] = int(train.size)
    for spec in schema.fields:
        dataset = handle[f"t{spec.rank}_fields/{spec.name}"]
        chunks = (dataset[int(b), t] for b in train for t in range(dataset.shape[1]))
        stats = field_statistics(chunks, spec.rank)
        sub = group.create_group(spec.name)
        for key, value in stats.items():
            sub.attrs[key] = value
