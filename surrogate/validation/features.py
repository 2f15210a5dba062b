"""A fixed vector of physics features per snapshot: the input of the Fréchet physics distance.

The Fréchet Inception Distance compares Gaussians fitted to features of a pretrained
image classifier; here the features are physical statistics of each snapshot, so the
distance is interpretable and needs no network. For every field of a snapshot (a
vector field contributes through its magnitude ``|u|`` for the one-point and
morphology features and through the sum of its component spectra for the band powers):

1. ``<field>:log10_band_power[j]``, ``j = 0 .. n_bands - 1``: ``log10`` of the mean
   power (powerbox normalisation, :func:`surrogate.validation.power_spectrum`) of the
   Fourier modes in band ``j``. Bands group the integer shells ``m = 1 .. N/2`` at edges
   ``round(geomspace(1, N/2 + 1, 7))`` (duplicates merged): six logarithmic bands for
   ``N >= 32``, fewer for smaller grids.
2. ``<field>:mean``, ``:std``, ``:skewness``, ``:kurtosis`` of the snapshot's values
   (:func:`surrogate.validation.moments` conventions; NaN for a constant snapshot is
   replaced by 0).
3. ``<field>:area_fraction@<q>``, ``:boundary_length@<q>``, ``:euler_characteristic@<q>``
   for ``q`` in ``(-1, 0, +1)``: Minkowski functional densities
   (:func:`surrogate.validation.minkowski_functionals`) of the excursion set above the
   threshold ``mu + q sigma``, with ``mu``, ``sigma`` the mean and std of the
   *reference* values (the same thresholds for reference and generated snapshots).

:func:`frechet_physics_distance` z-scores every feature with the reference features'
mean and std (:func:`feature_scales`: a field's mean in units of at least 1e-3 of its
std, so that round-off in an exactly constrained mean does not count; features with zero
reference spread are divided by 1), then applies the
Fréchet (FID) formula of :func:`surrogate.validation.frechet_distance`. The result is
in units of reference standard deviations squared; it is 0 for identical feature
distributions and grows with both mean and covariance differences. Its size depends on
the number of features and on sample size (a finite-sample bias of order
``n_features / n_samples``), so compare it with the distance between two halves of the
reference (reported next to it), not with a universal scale.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from simulators.base import FieldSpec
from surrogate.validation.morphology import minkowski_functionals
from surrogate.validation.spectra import field_power_spectrum
from surrogate.validation.statistics import frechet_distance

__all__ = ["MEAN_SCALE_FLOOR", "THRESHOLD_OFFSETS", "band_edges", "feature_names",
           "feature_scales", "frechet_physics_distance", "physics_features", "scalar_view"]

#: Minkowski thresholds in units of the reference std around the reference mean
THRESHOLD_OFFSETS = (-1.0, 0.0, 1.0)

_MOMENTS = ("mean", "std", "skewness", "kurtosis")
_MINKOWSKI = ("area_fraction", "boundary_length", "euler_characteristic")


def band_edges(resolution: int) -> np.ndarray:
    """Integer shell edges ``[m_0, m_1, ...]`` of the band powers (band j: m_j <= m < m_j+1)."""
    return np.unique(np.round(np.geomspace(1, resolution // 2 + 1, 7)).astype(int))


def feature_names(fields: Sequence[FieldSpec], resolution: int) -> list[str]:
    """Names of the feature columns, in the order :func:`physics_features` returns them."""
    names = []
    n_bands = band_edges(resolution).size - 1
    for spec in fields:
        names += [f"{spec.name}:log10_band_power[{j}]" for j in range(n_bands)]
        names += [f"{spec.name}:{moment}" for moment in _MOMENTS]
        names += [f"{spec.name}:{functional}@{offset:+g}" for offset in THRESHOLD_OFFSETS
                  for functional in _MINKOWSKI]
    return names


def scalar_view(values: np.ndarray, rank: int) -> np.ndarray:
    """The scalar field used for one-point features: the field itself or ``|u|``."""
    values = np.asarray(values, dtype=np.float64)
    return np.sqrt(np.sum(values**2, axis=-1)) if rank else values


def _band_powers(values: np.ndarray, rank: int, box_size: float) -> np.ndarray:
    n = values.shape[-2]
    _, power, counts = field_power_spectrum(values, box_size, vector=bool(rank),
                                            return_counts=True)
    edges = band_edges(n)
    shells = np.arange(1, power.shape[-1] + 1)
    bands = []
    for low, high in itertools.pairwise(edges):
        mask = (shells >= low) & (shells < high)
        weights = counts[mask]
        bands.append((power[..., mask] * weights).sum(axis=-1) / weights.sum())
    bands = np.stack(bands, axis=-1)
    tiny = np.finfo(np.float64).tiny
    return np.log10(np.maximum(bands, tiny))


def _snapshot_moments(view: np.ndarray) -> np.ndarray:
    flat = view.reshape(view.shape[0], -1)
    mean = flat.mean(axis=1)
    centred = flat - mean[:, None]
    squared = centred * centred                  # products, not **: float pow is slow
    m2 = np.mean(squared, axis=1)
    safe = np.where(m2 > 0, m2, 1.0)
    skewness = np.where(m2 > 0, np.mean(squared * centred, axis=1) / safe**1.5, 0.0)
    kurtosis = np.where(m2 > 0, np.mean(squared * squared, axis=1) / safe**2 - 3.0, 0.0)
    return np.stack([mean, np.sqrt(m2), skewness, kurtosis], axis=1)


def physics_features(snapshots: Mapping[str, np.ndarray], fields: Sequence[FieldSpec],
                     box_size: float, reference_levels: Mapping[str, tuple[float, float]]
                     ) -> np.ndarray:
    """Feature matrix of a batch of snapshots (one row per snapshot).

    Args:
        snapshots: ``{name: (S, N, N)}`` for scalar and ``(S, N, N, 2)`` for vector
            fields (the same ``S`` snapshots for every field).
        fields: field declarations, in feature order.
        box_size: side ``L`` of the periodic square [length].
        reference_levels: ``{name: (mu, sigma)}`` of the reference's scalar view of each
            field (sets the Minkowski thresholds ``mu + q sigma``).
    Returns:
        ``(S, n_features)`` float64, columns named by :func:`feature_names`.
    """
    columns = []
    for spec in fields:
        values = np.asarray(snapshots[spec.name], dtype=np.float64)
        columns.append(_band_powers(values, spec.rank, box_size))
        view = scalar_view(values, spec.rank)
        columns.append(_snapshot_moments(view))
        mu, sigma = reference_levels[spec.name]
        sigma = sigma if sigma > 0 else 1.0
        levels = np.array([mu + q * sigma for q in THRESHOLD_OFFSETS])
        functionals = minkowski_functionals(view, levels, box_size)
        columns.append(functionals.reshape(view.shape[0], -1))
    return np.concatenate(columns, axis=1)


#: the mean of a field is compared in units of at least this fraction of the field's std
MEAN_SCALE_FLOOR = 1e-3


def feature_scales(reference: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    """Per-feature z-scoring scale: the reference std, floored for ``<field>:mean``.

    A field whose mean is fixed by a constraint (zero-mean, conserved mean) has a
    reference spread of its mean at float32 round-off (``1e-9`` of its std); dividing a
    generated round-off of ``1e-7`` by it would turn a physically irrelevant difference into
    thousands of std units and dominate the distance. With ``names``, the scale of every
    ``<field>:mean`` feature is therefore at least :data:`MEAN_SCALE_FLOOR` times the
    reference mean of ``<field>:std``; zero scales become 1.
    """
    reference = np.asarray(reference, dtype=np.float64)
    std = reference.std(axis=0)
    if names is not None:
        index = {name: j for j, name in enumerate(names)}
        for name, j in index.items():
            field, _, feature = name.rpartition(":")
            if feature == "mean" and f"{field}:std" in index:
                floor = MEAN_SCALE_FLOOR * abs(reference[:, index[f"{field}:std"]].mean())
                std[j] = max(std[j], floor)
    return np.where(std > 0, std, 1.0)


def frechet_physics_distance(generated: np.ndarray, reference: np.ndarray,
                             names: Sequence[str] | None = None) -> float:
    """Fréchet distance of z-scored physics features (see the module docstring).

    Args:
        generated: ``(n_g, d)`` features of generated snapshots, ``n_g >= 2``.
        reference: ``(n_r, d)`` features of reference snapshots, ``n_r >= 2``; their
            column means and stds (:func:`feature_scales`) define the z-scoring of both.
        names: the feature names (:func:`feature_names`), to floor the scale of mean
            features; without them every feature is scaled by its reference std.
    Returns:
        ``d^2`` in reference-std units squared.
    """
    generated = np.asarray(generated, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    mean = reference.mean(axis=0)
    scale = feature_scales(reference, names)
    return frechet_distance((generated - mean) / scale, (reference - mean) / scale)
