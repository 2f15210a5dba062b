"""Compare a generated field-store file with a reference one; decide whether it passes.

:func:`validate_files` streams both files once per pass, one trajectory in memory at a
time, and fills the report whose keys README.md's Validation section lists
(:func:`write_report` writes it as ``report.json`` + ``report.md`` + PNG figures).
What is compared, per field (a vector field's one-point statistics pool its two
components; its spectrum is the sum of the component spectra, i.e. twice the
kinetic-energy spectrum; its morphology uses ``|u|``):

* **spectrum**: mean power spectrum over all matched snapshots of each file, relative
  error per shell ``(P_gen - P_ref) / P_ref`` over the *resolved* shells (those whose
  reference power exceeds ``RESOLVED_POWER_FLOOR`` times the largest shell power:
  dealiased or round-off-level shells carry no physics), its median and max, and the
  low/mid/high band summary of :func:`surrogate.validation.band_summary`;
* **pdf**: histograms on common edges, W1 over the reference std and the two-sample KS
  p-value on at most ``MAX_POOLED_VALUES`` values per file (a fixed stride through
  the stream);
* **moments**: mean, std, skewness, excess kurtosis of all values (exact running sums
  in float64 around the reference mean);
* **correlation**: the isotropic auto-covariance ``xi(r)`` averaged over snapshots;
* **minkowski**: mean area fraction, boundary length and Euler characteristic densities
  at the reference mean and mean +- one std;
* **spread_ratio**: ensemble spread ``mean over pixels and times of std over samples``
  of generated over reference, per condition (groups with >= 2 trajectories in both
  files), summarised by the median over groups. A Sobol sweep holds one reference
  trajectory per condition; when the generated file holds >= 2 samples per condition the
  reference's spread at a condition is then estimated from its nearest other reference
  condition (``|x_b - x_b'| / sqrt(2)``: the ensemble std if the two conditions were the
  same, and larger by the difference that the parameter change makes, so collapse is
  judged conservatively), each side's mean-of-std corrected by ``c4(n)`` for its number
  of samples; the median normalised distance of those pairs is reported. When neither
  applies the spread is taken across all matched trajectories at each time. The report
  says which in ``spread_basis`` (``per_condition``, ``nearest_reference_neighbour``,
  ``across_conditions``);
* **temporal_change_ratio** (files with >= 2 snapshot times): ``mean |f(t_i+1) - f(t_i)|``
  over consecutive snapshots of each generated trajectory (one latent) over the same
  for the reference trajectories. A generator that draws each time independently of
  the others changes too much between snapshots (> 1; with snapshots far apart
  compared with the decorrelation time the reference changes as much); one that
  ignores time, or keeps one frozen field, too little (< 1). Conservation budgets over
  time (energy) fail for the same reason; this ratio names the cause for every field.

Files are compared *per condition* (:mod:`surrogate.validation.conditions`): every
metric above is also computed for each reference condition with its matched generated
trajectories (``per_condition``), and the overall numbers pool the matched trajectories
only. **conservation** runs :func:`surrogate.validation.check_invariants_streaming` on
both files' matched trajectories; **conservation_series** holds the per-time invariant
series of :func:`surrogate.validation.observables.invariant_series`; **observables**
compares system observables (energy, enstrophy, ...); **frechet_physics_distance** is
:func:`surrogate.validation.features.frechet_physics_distance` on per-snapshot physics
features, next to the same distance between two halves of the reference.

``passed`` is true when every gated check in ``checks`` passes (a check whose value is
undefined, e.g. a spread with a single sample, is listed in ``not_evaluated``); the thresholds
(:data:`DEFAULT_THRESHOLDS`, documented in :data:`THRESHOLD_DOCS`) are overridable from
a TOML file of the same flat keys (``inf`` or ``0`` disables a maximum / minimum).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import gammaln

from simulators.store import FieldStore, FieldStoreError, require_complete
from surrogate.validation.conditions import (
    DEFAULT_MATCH_DISTANCE,
    ConditionGroups,
    group_conditions,
)
from surrogate.validation.conservation import SKIPPED, check_invariants_streaming
from surrogate.validation.features import (
    THRESHOLD_OFFSETS,
    feature_names,
    frechet_physics_distance,
    physics_features,
    scalar_view,
)
from surrogate.validation.observables import (
    condition_observables,
    invariant_series,
    system_modes,
    system_observables,
)
from surrogate.validation.spectra import (
    band_summary,
    field_power_spectrum,
    power_spectrum,
    spectrum_relative_error,
)
from surrogate.validation.statistics import (
    MAX_POOLED_VALUES,
    correlation_function,
    ks_pvalue,
    wasserstein1_over_std,
)

__all__ = ["DEFAULT_THRESHOLDS", "REPORT_VERSION", "THRESHOLD_DOCS", "ValidationResult",
           "attach_floor", "json_safe", "load_thresholds", "noise_floor", "resolve_thresholds",
           "spectrum_summary", "validate_files", "write_report"]

REPORT_VERSION = 1

#: shells with reference power below this fraction of the largest shell are not compared
RESOLVED_POWER_FLOOR = 1e-10
#: pooled values kept per field and condition for the per-condition W1
GROUP_POOLED_VALUES = 4096
#: snapshots per file whose physics features enter the Fréchet distance
MAX_FEATURE_SNAPSHOTS = 512
#: histogram bins of the PDFs
PDF_BINS = 64
#: sample fields shown side by side in the report
N_SAMPLE_CONDITIONS = 3

DEFAULT_THRESHOLDS: dict[str, float] = {
    "spectrum_rel_error_median": 0.25,
    "pdf_w1_over_std": 0.15,
    "pdf_ks_pvalue_min": 0.0,
    "spread_ratio_min": 0.5,
    "spread_ratio_max": 2.0,
    "temporal_change_ratio_min": 0.5,
    "temporal_change_ratio_max": 2.0,
    "conservation_absolute": 0.01,
    "conservation_factor": 2.0,
    "per_condition_spectrum_rel_error_median": 0.5,
    "frechet_physics_distance_max": math.inf,
    "mode_coverage_min": 0.5,
}

THRESHOLD_DOCS: dict[str, str] = {
    "spectrum_rel_error_median": "max of the median |P_gen/P_ref - 1| over resolved shells, "
                                 "per field",
    "pdf_w1_over_std": "max of W1(gen, ref) / std(ref) of the pooled values, per field",
    "pdf_ks_pvalue_min": "min KS p-value, per field (0: not gated; pixels are correlated, "
                         "so p-values are optimistic)",
    "spread_ratio_min": "min ensemble spread ratio gen/ref (0 is mode collapse)",
    "spread_ratio_max": "max ensemble spread ratio gen/ref",
    "temporal_change_ratio_min": "min ratio gen/ref of the mean change between consecutive "
                                 "snapshots of a trajectory (small: frozen in time)",
    "temporal_change_ratio_max": "max of that ratio (large: snapshots independent of one "
                                 "another in time)",
    "conservation_absolute": "a conservation check passes when the generated violation is "
                             "<= max(conservation_absolute, conservation_factor * reference)",
    "conservation_factor": "see conservation_absolute",
    "per_condition_spectrum_rel_error_median": "max over fields of the median over conditions "
                                               "of each condition's spectrum median error",
    "mode_coverage_min": "min over the reference's ordered states (Ising: m >= 0.5 and "
                         "m <= -0.5) of generated fraction / reference fraction (0: a state "
                         "is never generated)",
    "frechet_physics_distance_max": "max Fréchet physics distance (inf: not gated; its scale "
                                    "depends on sample size, compare it with "
                                    "frechet_reference_split)",
}


# ------------------------------------------------------------------ thresholds
def resolve_thresholds(overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """:data:`DEFAULT_THRESHOLDS` updated with ``overrides`` (unknown keys are errors)."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    for key, value in (overrides or {}).items():
        if key not in thresholds:
            raise ValueError(f"unknown threshold {key!r} (known: "
                             f"{', '.join(sorted(thresholds))})")
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"threshold {key!r} must be a number, got {value!r}")
        thresholds[key] = float(value)
    return thresholds


def load_thresholds(path: str | os.PathLike) -> dict[str, float]:
    """Read threshold overrides from a TOML file of flat ``key = number`` lines.

    The keys are those of :data:`DEFAULT_THRESHOLDS`; keys not given keep their default.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ValueError(f"{path}: thresholds file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a valid TOML file: {error}") from None
    try:
        return resolve_thresholds(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


# ------------------------------------------------------------------ accumulators
class _Thinner:
    """Keep every ``stride``-th value of a stream of arrays (deterministic, bounded)."""

    def __init__(self, total: int, capacity: int) -> None:
        self.stride = max(1, math.ceil(total / capacity))
        self.consumed = 0
        self.parts: list[np.ndarray] = []

    def add(self, values: np.ndarray) -> None:
        flat = values.reshape(-1)
        offset = (-self.consumed) % self.stride
        self.parts.append(np.array(flat[offset::self.stride], dtype=np.float64))
        self.consumed += flat.size

    def values(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0)


class _PixelSpread:
    """Pixelwise sum and sum of squares over samples of ``x - x_first``."""

    def __init__(self) -> None:
        self.count = 0
        self.first: np.ndarray | None = None
        self.total: np.ndarray | None = None
        self.total_sq: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if self.first is None:
            self.first = values.copy()
            self.total = np.zeros_like(values)
            self.total_sq = np.zeros_like(values)
        deviation = values - self.first
        self.total += deviation
        self.total_sq += deviation * deviation
        self.count += 1

    def spread(self) -> float:
        """Mean over pixels (and times, components) of the sample std (ddof = 1)."""
        if self.count < 2:
            return math.nan
        variance = (self.total_sq - self.total**2 / self.count) / (self.count - 1)
        return float(np.mean(np.sqrt(np.maximum(variance, 0.0))))


@dataclass
class _FieldStats:
    """Everything one side (reference or generated) accumulates for one field."""

    rank: int
    spectrum: np.ndarray
    correlation: np.ndarray
    shift: float
    samples: _Thinner
    snapshots: int = 0
    power_sums: np.ndarray = field(default_factory=lambda: np.zeros(5))
    low: float = math.inf
    high: float = -math.inf
    spread_all: _PixelSpread = field(default_factory=_PixelSpread)
    change_sum: float = 0.0
    change_count: int = 0

    def add(self, values: np.ndarray, spectra: np.ndarray, correlation: np.ndarray) -> None:
        """Accumulate one trajectory ``values`` (T, N, N[, 2]) and its per-snapshot
        spectra (T, shells) and correlations (T, r)."""
        if values.shape[0] >= 2:
            change = np.abs(np.diff(np.asarray(values, dtype=np.float64), axis=0))
            self.change_sum += float(change.sum())
            self.change_count += change.size
        self.spectrum += spectra.sum(axis=0)
        self.correlation += correlation.sum(axis=0)
        self.snapshots += spectra.shape[0]
        deviation = np.asarray(values, dtype=np.float64) - self.shift
        flat = deviation.reshape(-1)
        squared = flat * flat                    # products, not **: float pow is slow
        self.power_sums += [flat.size, flat.sum(), squared.sum(), (squared * flat).sum(),
                            (squared * squared).sum()]
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        self.samples.add(values)
        self.spread_all.add(values)

    def mean_change(self) -> float:
        """``mean |f(t_i+1) - f(t_i)|`` over consecutive snapshots (NaN for one time)."""
        return self.change_sum / self.change_count if self.change_count else math.nan

    def moments(self) -> dict[str, float]:
        count, s1, s2, s3, s4 = self.power_sums
        mean = s1 / count
        m2 = s2 / count - mean**2
        m3 = s3 / count - 3 * mean * s2 / count + 2 * mean**3
        m4 = s4 / count - 4 * mean * s3 / count + 6 * mean**2 * s2 / count - 3 * mean**4
        if m2 <= 0:
            return {"mean": mean + self.shift, "std": 0.0, "skewness": math.nan,
                    "kurtosis": math.nan}
        return {"mean": mean + self.shift, "std": math.sqrt(m2), "skewness": m3 / m2**1.5,
                "kurtosis": m4 / m2**2 - 3.0}


@dataclass
class _GroupStats:
    """Per-condition accumulators for one side and one field."""

    spectrum: np.ndarray
    samples: _Thinner
    spread: _PixelSpread = field(default_factory=_PixelSpread)
    snapshots: int = 0


# ------------------------------------------------------------------ helpers
def _open(path: str | os.PathLike, role: str) -> FieldStore:
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


def _check_compatible(reference: FieldStore, generated: FieldStore) -> None:
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


def _read_trajectory(store: FieldStore, b: int) -> dict[str, np.ndarray]:
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


def _spectra(values: np.ndarray, rank: int, box_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-snapshot power spectra and correlation functions, summed over components."""
    _, power = field_power_spectrum(values, box_size, vector=bool(rank))
    if rank:
        _, xi = correlation_function(np.moveaxis(values, -1, -3), box_size)   # (T, 2, r)
        return power, xi.sum(axis=-2)
    _, xi = correlation_function(values, box_size)
    return power, xi


def json_safe(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become ``None``."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def spectrum_summary(k: np.ndarray, reference: np.ndarray, generated: np.ndarray
                     ) -> dict[str, Any]:
    """Relative spectrum error over the resolved shells (see the module docstring).

    Args:
        k: (n_shells,) wavenumbers; reference, generated: (n_shells,) mean spectra.
    Returns:
        ``{"k", "reference", "generated", "rel_error_median", "rel_error_max",
        "n_shells_compared", "k_resolved_max", "bands"}``.
    """
    resolved = reference > RESOLVED_POWER_FLOOR * reference.max() if reference.size else []
    rel = spectrum_relative_error(generated[resolved], reference[resolved])
    absolute = np.abs(rel)
    summary = {"k": k, "reference": reference, "generated": generated,
               "rel_error_median": float(np.median(absolute)) if absolute.size else math.nan,
               "rel_error_max": float(np.max(absolute)) if absolute.size else math.nan,
               "n_shells_compared": int(np.sum(resolved)),
               "k_resolved_max": float(k[resolved].max()) if absolute.size else math.nan}
    if absolute.size:
        summary["bands"] = band_summary(k[resolved], rel)
    return summary


def _w1(generated: np.ndarray, reference: np.ndarray) -> float:
    if reference.size < 2 or generated.size < 1 or np.std(reference) == 0:
        return math.nan
    return wasserstein1_over_std(generated, reference)


def _moment_shift(store: FieldStore, trajectories: Sequence[int]) -> tuple[
        dict[str, float], dict[str, tuple[float, float]]]:
    """Reference mean of each field's values and (mean, std) of its scalar view."""
    sums = {name: np.zeros(3) for name in store.field_names}
    view_sums = {name: np.zeros(3) for name in store.field_names}
    ranks = {spec.name: spec.rank for spec in store.schema.fields}
    for b in trajectories:
        for name, values in _read_trajectory(store, b).items():
            values = values.astype(np.float64)
            sums[name] += [values.size, values.sum(), (values**2).sum()]
            view = scalar_view(values, ranks[name])
            view_sums[name] += [view.size, view.sum(), (view**2).sum()]
    shift = {name: s[1] / s[0] for name, s in sums.items()}
    levels = {}
    for name, (count, total, total_sq) in view_sums.items():
        mean = total / count
        levels[name] = (mean, math.sqrt(max(total_sq / count - mean**2, 0.0)))
    return shift, levels


def _series_summary(series: list[dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    if not series:
        return {}
    summary = {}
    for label in series[0]:
        stack = np.stack([s[label] for s in series])             # (B, T)
        summary[label] = {"mean": stack.mean(axis=0), "std": stack.std(axis=0),
                          "min": stack.min(axis=0), "max": stack.max(axis=0)}
    return summary


def _sample_groups(groups: ConditionGroups, matched: Sequence[int]) -> list[int]:
    """Up to N_SAMPLE_CONDITIONS matched groups spread along the most varying parameter."""
    if not matched:
        return []
    centres = groups.centres[list(matched)]
    if centres.shape[1]:
        axis = int(np.argmax(centres.max(axis=0) - centres.min(axis=0)))
        order = [matched[i] for i in np.argsort(centres[:, axis], kind="stable")]
    else:
        order = list(matched)
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, N_SAMPLE_CONDITIONS)))
    return [order[int(i)] for i in picks]


# ------------------------------------------------------------------ the result
@dataclass
class ValidationResult:
    """What :func:`validate_files` found.

    Attributes:
        report: the JSON-able report (stable keys; README.md, section Validation).
        samples: ``{field: (reference, generated)}`` arrays ``(S, N, N[, 2])`` of the
            snapshots shown side by side (same condition and time in each pair).
        sample_labels: one caption per shown pair.
    """

    report: dict[str, Any]
    samples: dict[str, tuple[np.ndarray, np.ndarray]]
    sample_labels: list[str]

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])


# ------------------------------------------------------------------ the engine
def validate_files(reference: str | os.PathLike, generated: str | os.PathLike, *,
                   thresholds: Mapping[str, Any] | None = None,
                   max_match_distance: float = DEFAULT_MATCH_DISTANCE,
                   progress: Callable[[str], None] | None = None,
                   floor: str | os.PathLike | None = None,
                   reference_halves: bool = True) -> ValidationResult:
    """Compare two field-store files of one system; see the module docstring.

    Args:
        reference: path of the reference (simulator) file.
        generated: path of the file to judge (surrogate output or another run).
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS`.
        max_match_distance: matching radius in normalised parameter space
            (:func:`surrogate.validation.conditions.group_conditions`).
        progress: optional callback receiving a short message per stage.
        floor: a second simulation of the reference's conditions (other seeds): every
            gated metric is also computed between it and the reference, the *noise
            floor* a perfect surrogate would score (see :func:`noise_floor`).
        reference_halves: without ``floor``, take the floor from two halves of the
            reference when it holds >= 2 trajectories at the compared conditions.
    Returns:
        :class:`ValidationResult`.
    Raises:
        ValueError (:class:`simulators.store.FieldStoreError`): missing / corrupt /
            empty / unfinished files, different systems, fields, resolutions, box
            sizes, parameters or times, NaN/Inf values (with trajectory and time index),
            no generated trajectory near any reference condition, unknown thresholds,
            a floor file of another system, grid or field set, or one that misses
            conditions the generated file is compared at.
    """
    limits = resolve_thresholds(thresholds)
    say = progress or (lambda message: None)
    with contextlib.ExitStack() as stack:
        ref_store = stack.enter_context(_open(reference, "reference"))
        gen_store = stack.enter_context(_open(generated, "generated"))
        _check_compatible(ref_store, gen_store)
        floor_store = None
        if floor is not None:
            floor_store = stack.enter_context(_open(floor, "floor"))
            _check_compatible(ref_store, floor_store)
        result = _validate(ref_store, gen_store, limits, max_match_distance, say)
        if floor_store is not None or reference_halves:
            say("noise floor")
            attach_floor(result.report, noise_floor(ref_store, gen_store, floor_store,
                                                    limits, max_match_distance))
        return result


class _TrajectorySubset:
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


def noise_floor(ref_store: FieldStore, gen_store: FieldStore, floor_store: FieldStore | None,
                limits: Mapping[str, float],
                max_match_distance: float = DEFAULT_MATCH_DISTANCE) -> dict[str, Any] | None:
    """Every gated metric between two independent simulator ensembles: the noise floor.

    What a perfect surrogate would score against this reference at these conditions
    (the conditions the generated file is compared at), with sampling noise only:

    * ``floor_store`` given (``--floor REF2``, a second simulation of the reference's
      conditions with other seeds): the reference against REF2, restricted to the
      compared conditions; REF2 must hold a trajectory at each of them.
    * otherwise, at the compared conditions holding >= 2 reference trajectories, one
      half of them (every other trajectory of each condition) against the other half.
      Each side then has half the reference's samples, so for metrics limited by
      sampling noise this floor is about ``sqrt(2)`` times the one of a full-size
      comparison (conservative); ``counts`` says how many trajectories each side had.

    Returns:
        ``{"source", "counts", "report"}`` (``report``: the full report of that
        comparison) or ``None`` when no floor can be formed (a Sobol sweep holds one
        trajectory per condition: give a second simulation).
    Raises:
        FieldStoreError: ``floor_store`` misses conditions the generated file is
            compared at.
    """
    groups = group_conditions(ref_store.schema.parameters, ref_store.parameters(),
                              gen_store.parameters(), max_distance=max_match_distance)
    matched = [g for g in range(groups.n_groups) if groups.members(g)[1].size]
    quiet = lambda message: None        # noqa: E731
    if floor_store is not None:
        floor_groups = group_conditions(ref_store.schema.parameters, ref_store.parameters(),
                                        floor_store.parameters(),
                                        max_distance=max_match_distance)
        missing = [g for g in matched if floor_groups.members(g)[1].size == 0]
        if missing:
            raise FieldStoreError(
                f"{floor_store.path}: the floor file holds no trajectory at {len(missing)} of "
                f"the {len(matched)} conditions the generated file is compared at (expected "
                f"a second simulation of the reference's conditions, e.g. `surrogate "
                f"simulate --like REFERENCE --seed S`)")
        chosen = np.concatenate([floor_groups.members(g)[1] for g in matched])
        second = _TrajectorySubset(floor_store, chosen, "floor")
        result = _validate(ref_store, second, limits, max_match_distance, quiet)
        source = "file"
    else:
        halves: tuple[list[int], list[int]] = ([], [])
        for g in matched:
            members = np.sort(groups.members(g)[0])
            if members.size >= 2:
                halves[0].extend(members[0::2].tolist())
                halves[1].extend(members[1::2].tolist())
        if not halves[0]:
            return None
        first = _TrajectorySubset(ref_store, np.array(halves[0]), "reference half 1")
        second = _TrajectorySubset(ref_store, np.array(halves[1]), "reference half 2")
        result = _validate(first, second, limits, max_match_distance, quiet)
        source = "reference_halves"
    counts = result.report["counts"]
    return {"source": source, "path": str(getattr(second, "path", "")),
            "counts": {"trajectories": [counts["matched_reference_trajectories"],
                                        counts["matched_generated_trajectories"]],
                       "conditions": counts["matched_conditions"]},
            "report": result.report}


#: checks of a ratio whose ideal value is 1 (the others are errors whose ideal is 0)
RATIO_CHECKS = ("spread_ratio_min", "spread_ratio_max", "temporal_change_ratio_min",
                "temporal_change_ratio_max", "mode_coverage_min")


def _floor_too_noisy(check: Mapping[str, Any], floor: float) -> bool:
    """Whether a check's floor exceeds a third of its threshold's distance from ideal.

    Errors (ideal 0): ``floor > threshold / 3``. Ratios (ideal 1): ``|ln floor| >
    |ln threshold| / 3`` (a floor of 0 is infinitely far).
    """
    if check["check"] in RATIO_CHECKS:
        if floor <= 0:
            return True
        return abs(math.log(floor)) > abs(math.log(check["threshold"])) / 3
    if check["kind"] != "max":
        return False
    return floor > check["threshold"] / 3


def attach_floor(report: dict[str, Any], floor: dict[str, Any] | None) -> None:
    """Write each gated metric's floor next to it in ``report`` (in place).

    ``checks[i]["floor"]``, ``fields.NAME.spectrum.floor`` (median spectrum error),
    ``fields.NAME.pdf.floor`` (W1/std), ``fields.NAME.spread_ratio_floor``,
    ``fields.NAME.temporal_change_ratio_floor``, ``conservation.KEY.floor``,
    ``mode_coverage.floor``, ``frechet_physics_distance_floor``; ``report["floor"]``
    says where the floor came from (or why there is none) and lists the checks whose
    floor exceeds a third of their threshold (for ratios, a third of the threshold's
    distance from 1 on a log scale): ``too_noisy``, where the reference is too small to
    tell a good surrogate from a perfect one.
    """
    if floor is None:
        report["floor"] = {"source": None, "reason": "the reference holds one trajectory per "
                           "compared condition; give a second simulation of its conditions "
                           "(surrogate validate ... --floor REF2)"}
        return
    other = floor["report"]
    values = {(c["check"], c["field"]): c["value"] for c in other["checks"]}
    too_noisy = []
    for check in report["checks"]:
        value = values.get((check["check"], check["field"]))
        check["floor"] = value
        if check["gated"] and value is not None and _floor_too_noisy(check, value):
            too_noisy.append(_check_label(check))
    for name, entry in report["fields"].items():
        theirs = other["fields"].get(name, {})
        entry["spectrum"]["floor"] = theirs.get("spectrum", {}).get("rel_error_median")
        entry["pdf"]["floor"] = theirs.get("pdf", {}).get("w1_over_std")
        entry["spread_ratio_floor"] = theirs.get("spread_ratio")
        if "temporal_change_ratio" in entry:
            entry["temporal_change_ratio_floor"] = theirs.get("temporal_change_ratio")
    for key, entry in report["conservation"].items():
        entry["floor"] = values.get((f"conservation {key}", None))
    if report.get("mode_coverage") and other.get("mode_coverage"):
        report["mode_coverage"]["floor"] = other["mode_coverage"]["coverage"]
    report["frechet_physics_distance_floor"] = other["frechet_physics_distance"]
    report["floor"] = {"source": floor["source"], "path": floor["path"],
                       "counts": floor["counts"], "too_noisy": too_noisy,
                       "passed": other["passed"], "failures": other["failures"]}


def _validate(ref_store: FieldStore, gen_store: FieldStore, limits: dict[str, float],
              max_match_distance: float, say: Callable[[str], None]) -> ValidationResult:
    schema = ref_store.schema
    specs = list(schema.fields)
    box = ref_store.box_size
    n_times = ref_store.times.size
    groups = group_conditions(schema.parameters, ref_store.parameters(),
                              gen_store.parameters(), max_distance=max_match_distance)
    matched = [g for g in range(groups.n_groups) if groups.members(g)[1].size]
    if not matched:
        raise FieldStoreError(
            f"{gen_store.path}: no generated trajectory lies within {max_match_distance:g} "
            f"(normalised parameter distance) of a reference condition; nearest at "
            f"{float(np.min(groups.distance)):.3g}")
    ref_indices = np.concatenate([groups.members(g)[0] for g in matched])
    gen_indices = np.concatenate([groups.members(g)[1] for g in matched])

    say("reference levels")
    shift, levels = _moment_shift(ref_store, ref_indices)
    n = ref_store.resolution
    n_shells = n // 2
    n_r = n // 2 + 1
    k = power_spectrum(np.zeros((n, n)), box)[0]            # shell wavenumbers, once
    r = correlation_function(np.zeros((n, n)), box)[0]      # shell separations, once

    def side_stats(count: int) -> dict[str, _FieldStats]:
        return {spec.name: _FieldStats(
            rank=spec.rank, spectrum=np.zeros(n_shells), correlation=np.zeros(n_r),
            shift=shift[spec.name],
            samples=_Thinner(count * n_times * n * n * (2 if spec.rank else 1),
                             MAX_POOLED_VALUES)) for spec in specs}

    sides = {"reference": side_stats(ref_indices.size), "generated": side_stats(gen_indices.size)}
    stores = {"reference": ref_store, "generated": gen_store}
    feature_stride = {side: max(1, math.ceil(count * n_times / MAX_FEATURE_SNAPSHOTS))
                      for side, count in (("reference", ref_indices.size),
                                          ("generated", gen_indices.size))}
    feature_rows: dict[str, list[np.ndarray]] = {"reference": [], "generated": []}
    feature_owner: dict[str, list[int]] = {"reference": [], "generated": []}
    series: dict[str, list[dict[str, np.ndarray]]] = {"reference": [], "generated": []}
    observables: dict[str, dict[str, list[np.ndarray]]] = {"reference": {}, "generated": {}}
    snapshot_counter = {"reference": 0, "generated": 0}
    sample_groups = _sample_groups(groups, matched)
    samples: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {
        spec.name: ([], []) for spec in specs}
    sample_labels: list[str] = []
    per_condition = []
    neighbours = _neighbour_pairs(groups, matched)
    neighbour_spread = {spec.name: _NeighbourSpread() for spec in specs}

    say(f"streaming {ref_indices.size} reference and {gen_indices.size} generated "
        f"trajectories in {len(matched)} conditions")
    for g in matched:
        members = dict(zip(("reference", "generated"), groups.members(g), strict=True))
        group_stats = {side: {spec.name: _GroupStats(
            spectrum=np.zeros(n_shells),
            samples=_Thinner(members[side].size * n_times * n * n * (2 if spec.rank else 1),
                             GROUP_POOLED_VALUES)) for spec in specs} for side in sides}
        condition_series: dict[str, dict[str, list[np.ndarray]]] = {side: {} for side in sides}
        reference_fields = None      # the (single) reference trajectory of a neighbour pair
        for side, indices in members.items():
            store = stores[side]
            for b in indices:
                fields = _read_trajectory(store, int(b))
                if side == "reference":
                    reference_fields = fields
                for spec in specs:
                    values = fields[spec.name]
                    power, xi = _spectra(values, spec.rank, box)
                    sides[side][spec.name].add(values, power, xi)
                    stats = group_stats[side][spec.name]
                    stats.spectrum += power.sum(axis=0)
                    stats.snapshots += power.shape[0]
                    stats.samples.add(values)
                    stats.spread.add(values)
                series[side].append(invariant_series(schema.invariants, fields, box))
                for label, values in system_observables(schema.system, fields, box).items():
                    observables[side].setdefault(label, []).append(values)
                    condition_series[side].setdefault(label, []).append(values)
                stride = feature_stride[side]
                start = snapshot_counter[side]
                chosen = [t for t in range(n_times) if (start + t) % stride == 0]
                snapshot_counter[side] += n_times
                if chosen:
                    feature_rows[side].append(physics_features(
                        {name: values[chosen] for name, values in fields.items()}, specs,
                        box, levels))
                    feature_owner[side] += [int(b)] * len(chosen)
                if g in sample_groups and b == indices[0]:
                    for spec in specs:
                        samples[spec.name][0 if side == "reference" else 1].append(
                            fields[spec.name][-1])
        if g in sample_groups:
            label = ", ".join(f"{name}={values[g]:.4g}" for name, values in groups.values.items())
            sample_labels.append(f"{label}, t={ref_store.times[-1]:.4g}")
        if g in neighbours:
            other, distance = neighbours[g]
            second = _read_trajectory(ref_store, int(groups.members(other)[0][0]))
            for spec in specs:
                pair = float(np.mean(np.abs(reference_fields[spec.name].astype(np.float64)
                                            - second[spec.name]))) / math.sqrt(2.0)
                neighbour_spread[spec.name].add(
                    group_stats["generated"][spec.name].spread.spread(),
                    int(members["generated"].size), pair, distance)
        entry = _condition_entry(groups, g, members, group_stats, specs, k)
        if any(condition_series[side] for side in sides):
            entry["observables"] = _condition_observables(
                schema.system, condition_series, entry["parameters"], n)
        per_condition.append(entry)

    say("conservation checks")
    conservation = _conservation(ref_store, gen_store, ref_indices, gen_indices, limits)

    say("summaries")
    fields_report, checks = _field_reports(sides, specs, k, r, limits)
    checks += [entry["check"] for entry in conservation.values() if "check" in entry]
    conservation = {key: {k: v for k, v in entry.items() if k != "check"}
                    for key, entry in conservation.items()}
    checks += _per_condition_checks(per_condition, specs, limits)
    for spec in specs:
        ratio, basis = _spread_ratio(sides, per_condition, spec, neighbour_spread)
        fields_report[spec.name]["spread_ratio"] = ratio
        fields_report[spec.name]["spread_basis"] = basis
        if basis == "nearest_reference_neighbour":
            fields_report[spec.name]["spread_neighbour_distance_median"] = float(
                np.median(neighbour_spread[spec.name].distance))
        checks.append(_gate("spread_ratio_min", spec.name, ratio, limits["spread_ratio_min"],
                            "min"))
        checks.append(_gate("spread_ratio_max", spec.name, ratio, limits["spread_ratio_max"],
                            "max"))

    reference_features = np.concatenate(feature_rows["reference"])
    generated_features = np.concatenate(feature_rows["generated"])
    names = feature_names(specs, n)
    frechet, frechet_split = _frechet(reference_features, generated_features,
                                      np.array(feature_owner["reference"]), names)
    checks.append(_gate("frechet_physics_distance", None, frechet,
                        limits["frechet_physics_distance_max"], "max"))
    minkowski = _minkowski_summary(reference_features, generated_features, names, specs,
                                   levels)
    for spec in specs:
        fields_report[spec.name]["minkowski"] = minkowski[spec.name]

    observables_report = {label: _observable_summary(
        np.concatenate(parts), np.concatenate(observables["generated"].get(label, [np.zeros(0)])))
        for label, parts in observables["reference"].items()}
    mode_coverage = _mode_coverage(schema.system, observables)
    if mode_coverage is not None:
        checks.append(_gate("mode_coverage_min", None, mode_coverage["coverage"],
                            limits["mode_coverage_min"], "min"))

    gated = [c for c in checks if c["gated"]]
    report = {
        "format": "surrogate-validation-report",
        "version": REPORT_VERSION,
        "reference": str(ref_store.path),
        "generated": str(gen_store.path),
        "system": schema.system,
        "resolution": n,
        "box_size": box,
        "times": ref_store.times,
        "parameters": [p.name for p in schema.parameters],
        "counts": {
            "reference_trajectories": int(ref_store.n_trajectories),
            "generated_trajectories": int(gen_store.n_trajectories),
            "matched_reference_trajectories": int(ref_indices.size),
            "matched_generated_trajectories": int(gen_indices.size),
            "conditions": groups.n_groups,
            "matched_conditions": len(matched),
            "unmatched_generated_trajectories": groups.unmatched,
            "max_match_distance": max_match_distance,
            "largest_match_distance": float(np.max(groups.distance[groups.generated >= 0])),
            "feature_snapshots": {"reference": int(reference_features.shape[0]),
                                  "generated": int(generated_features.shape[0])},
        },
        "fields": fields_report,
        "conservation": conservation,
        "conservation_series": {
            "time": ref_store.times,
            "reference": _series_summary(series["reference"]),
            "generated": _series_summary(series["generated"])},
        "observables": observables_report,
        "mode_coverage": mode_coverage,
        "per_condition": per_condition,
        "frechet_physics_distance": frechet,
        "frechet_reference_split": frechet_split,
        "frechet_features": names,
        "checks": checks,
        "failures": [_failure_text(c) for c in gated if not c["passed"]],
        "not_evaluated": [_check_label(c) for c in checks if not c["evaluated"]],
        "passed": all(c["passed"] for c in gated),
        "thresholds": limits,
    }
    shown = {name: (np.stack(pair[0]), np.stack(pair[1])) for name, pair in samples.items()
             if pair[0] and pair[1]}
    return ValidationResult(report=json_safe(report), samples=shown,
                            sample_labels=sample_labels)


def _gate(check: str, field_name: str | None, value: float, threshold: float, kind: str
          ) -> dict[str, Any]:
    """One gated (or disabled) check: ``value <= threshold`` (max) or ``>=`` (min)."""
    disabled = (kind == "max" and math.isinf(threshold)) or (kind == "min" and threshold <= 0)
    evaluated = not (value is None or (isinstance(value, float) and math.isnan(value)))
    passed = (not evaluated or disabled
              or (value <= threshold if kind == "max" else value >= threshold))
    return {"check": check, "field": field_name, "value": value, "threshold": threshold,
            "kind": kind, "gated": evaluated and not disabled, "evaluated": evaluated,
            "passed": bool(passed)}


def _check_label(check: Mapping[str, Any]) -> str:
    """``"name of field"`` (or ``"name"`` for a check of no one field)."""
    return check["check"] + (f" of {check['field']}" if check["field"] else "")


def _failure_text(check: Mapping[str, Any]) -> str:
    relation = ">" if check["kind"] == "max" else "<"
    return f"{_check_label(check)} = {check['value']:.4g} {relation} {check['threshold']:.4g}"


def _field_reports(sides: Mapping[str, Mapping[str, _FieldStats]], specs, k: np.ndarray,
                   r: np.ndarray, limits: Mapping[str, float]
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report, checks = {}, []
    for spec in specs:
        ref, gen = sides["reference"][spec.name], sides["generated"][spec.name]
        spectrum = spectrum_summary(k, ref.spectrum / ref.snapshots,
                                     gen.spectrum / gen.snapshots)
        ref_values, gen_values = ref.samples.values(), gen.samples.values()
        low, high = min(ref.low, gen.low), max(ref.high, gen.high)
        if not high > low:
            high = low + 1.0
        edges = np.linspace(low, high, PDF_BINS + 1)
        ref_density = np.histogram(ref_values, bins=edges, density=True)[0]
        gen_density = np.histogram(gen_values, bins=edges, density=True)[0]
        w1 = _w1(gen_values, ref_values)
        ks = ks_pvalue(gen_values, ref_values) if ref_values.size and gen_values.size \
            else math.nan
        ref_corr = ref.correlation / ref.snapshots
        gen_corr = gen.correlation / gen.snapshots
        variance = ref_corr[0] if ref_corr[0] > 0 else 1.0
        report[spec.name] = {
            "rank": spec.rank,
            "units": spec.units,
            "spectrum": spectrum,
            "pdf": {"edges": edges, "reference": ref_density, "generated": gen_density,
                    "w1_over_std": w1, "ks_pvalue": ks,
                    "pooled_values": {"reference": int(ref_values.size),
                                      "generated": int(gen_values.size)}},
            "moments": {"reference": ref.moments(), "generated": gen.moments()},
            "correlation": {"r": r, "reference": ref_corr, "generated": gen_corr,
                            "max_abs_difference_over_variance":
                                float(np.max(np.abs(gen_corr - ref_corr)) / variance)},
        }
        checks.append(_gate("spectrum_rel_error_median", spec.name,
                            spectrum["rel_error_median"], limits["spectrum_rel_error_median"],
                            "max"))
        checks.append(_gate("pdf_w1_over_std", spec.name, w1, limits["pdf_w1_over_std"], "max"))
        checks.append(_gate("pdf_ks_pvalue", spec.name, ks, limits["pdf_ks_pvalue_min"], "min"))
        if ref.change_count:
            reference_change = ref.mean_change()
            ratio = gen.mean_change() / reference_change if reference_change > 0 else math.nan
            report[spec.name]["temporal_change"] = {
                "reference": reference_change, "generated": gen.mean_change()}
            report[spec.name]["temporal_change_ratio"] = ratio
            checks.append(_gate("temporal_change_ratio_min", spec.name, ratio,
                                limits["temporal_change_ratio_min"], "min"))
            checks.append(_gate("temporal_change_ratio_max", spec.name, ratio,
                                limits["temporal_change_ratio_max"], "max"))
    return report, checks


def _condition_entry(groups: ConditionGroups, g: int, members: Mapping[str, np.ndarray],
                     group_stats, specs, k: np.ndarray) -> dict[str, Any]:
    entry = {"parameters": {name: float(values[g]) for name, values in groups.values.items()},
             "n_reference": int(members["reference"].size),
             "n_generated": int(members["generated"].size), "fields": {}}
    for spec in specs:
        ref, gen = group_stats["reference"][spec.name], group_stats["generated"][spec.name]
        spectrum = spectrum_summary(k, ref.spectrum / ref.snapshots,
                                     gen.spectrum / gen.snapshots)
        ref_spread, gen_spread = ref.spread.spread(), gen.spread.spread()
        ratio = gen_spread / ref_spread if ref_spread > 0 else math.nan
        entry["fields"][spec.name] = {
            "spectrum_rel_error_median": spectrum["rel_error_median"],
            "spectrum_rel_error_max": spectrum["rel_error_max"],
            "w1_over_std": _w1(gen.samples.values(), ref.samples.values()),
            "spread_ratio": ratio,
            "spread": {"reference": ref_spread, "generated": gen_spread}}
    return entry


def _observable_summary(reference: np.ndarray, generated: np.ndarray, bins: int = 40
                        ) -> dict[str, Any]:
    """Mean, std, W1/std and a shared-bin density histogram of one observable.

    Non-finite values (e.g. the wavelength of a homogeneous snapshot) are left out and
    counted in ``n_undefined``.
    """
    out: dict[str, Any] = {}
    finite = {"reference": reference[np.isfinite(reference)],
              "generated": generated[np.isfinite(generated)]}
    for side, values in finite.items():
        raw = reference if side == "reference" else generated
        out[side] = {"mean": float(values.mean()) if values.size else math.nan,
                     "std": float(values.std()) if values.size else math.nan,
                     "n": int(raw.size), "n_undefined": int(raw.size - values.size)}
    out["w1_over_std"] = (_w1(finite["generated"], finite["reference"])
                          if finite["generated"].size and finite["reference"].size else math.nan)
    pooled = np.concatenate(list(finite.values()))
    if pooled.size:
        low, high = float(pooled.min()), float(pooled.max())
        if high <= low:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, bins + 1)
        out["histogram"] = {"edges": edges, **{
            side: (np.histogram(values, edges, density=True)[0] if values.size
                   else np.zeros(bins)) for side, values in finite.items()}}
    return out


def _mode_coverage(system: str, observables: Mapping[str, Mapping[str, list[np.ndarray]]]
                   ) -> dict[str, Any] | None:
    """Fractions of snapshots in each ordered state (e.g. Ising "+" / "-"), both sides.

    ``coverage`` is the smallest ``generated fraction / reference fraction`` over the modes
    that hold at least 5% of the reference snapshots: 0 when the generator never visits
    a state the reference visits, about 1 when it visits them as often.
    """
    labels = {}
    for side in ("reference", "generated"):
        series = {key: np.concatenate(parts) for key, parts in observables[side].items()}
        if not series:
            return None
        modes = system_modes(system, series)
        if modes is None:
            return None
        labels[side] = modes
    names = sorted({str(m) for m in labels["reference"] if m})
    fractions = {side: {name: float(np.mean(values == name)) if values.size else 0.0
                        for name in names} for side, values in labels.items()}
    ratios = [fractions["generated"][name] / fractions["reference"][name] for name in names
              if fractions["reference"][name] >= 0.05]
    return {"modes": names, "fraction": fractions,
            "coverage": float(min(ratios)) if ratios else math.nan}


def _condition_observables(system: str, series: Mapping[str, Mapping[str, list[np.ndarray]]],
                           parameters: Mapping[str, float], resolution: int
                           ) -> dict[str, dict[str, float]]:
    """Per condition: mean of each observable and the system's ensemble observables."""
    out: dict[str, dict[str, float]] = {}
    for side, by_label in series.items():
        pooled = {label: np.concatenate(parts) for label, parts in by_label.items()}
        for label, values in pooled.items():
            finite = values[np.isfinite(values)]
            out.setdefault(f"mean {label}", {})[side] = (float(finite.mean()) if finite.size
                                                         else math.nan)
        if pooled:
            for label, value in condition_observables(system, pooled, parameters,
                                                      resolution).items():
                out.setdefault(label, {})[side] = value
    return out


def _per_condition_checks(per_condition: list[dict[str, Any]], specs,
                          limits: Mapping[str, float]) -> list[dict[str, Any]]:
    checks = []
    for spec in specs:
        errors = [c["fields"][spec.name]["spectrum_rel_error_median"] for c in per_condition]
        errors = [e for e in errors if e is not None and not math.isnan(e)]
        value = float(np.median(errors)) if errors else math.nan
        checks.append(_gate("per_condition_spectrum_rel_error_median", spec.name, value,
                            limits["per_condition_spectrum_rel_error_median"], "max"))
    return checks


def _c4(n: int) -> float:
    """``E[s] / sigma`` of the sample std ``s`` (ddof = 1) of ``n`` Gaussian samples."""
    return math.sqrt(2.0 / (n - 1)) * math.exp(gammaln(n / 2) - gammaln((n - 1) / 2))


class _NeighbourSpread:
    """Generated within-condition spread against nearest-reference-neighbour pairs."""

    def __init__(self) -> None:
        self.generated: list[float] = []
        self.reference: list[float] = []
        self.distance: list[float] = []

    def add(self, generated_spread: float, n_generated: int, pair_spread: float,
            distance: float) -> None:
        self.generated.append(generated_spread / _c4(n_generated))
        self.reference.append(pair_spread / _c4(2))
        self.distance.append(distance)

    def ratio(self) -> float:
        reference = float(np.mean(self.reference)) if self.reference else math.nan
        return float(np.mean(self.generated)) / reference if reference > 0 else math.nan


def _neighbour_pairs(groups: ConditionGroups, matched: Sequence[int]
                     ) -> dict[int, tuple[int, float]]:
    """``{g: (nearest other reference group, normalised distance)}`` for matched groups
    with one reference and >= 2 generated trajectories (needs >= 2 reference groups)."""
    wanted = [g for g in matched
              if groups.members(g)[0].size == 1 and groups.members(g)[1].size >= 2]
    if not wanted or groups.n_groups < 2:
        return {}
    tree = cKDTree(groups.centres)
    distance, index = tree.query(groups.centres[wanted], k=2)
    return {g: (int(index[i, 1]), float(distance[i, 1])) for i, g in enumerate(wanted)}


def _spread_ratio(sides, per_condition, spec, neighbours: Mapping[str, _NeighbourSpread]
                  ) -> tuple[float, str]:
    ratios = [c["fields"][spec.name]["spread_ratio"] for c in per_condition]
    ratios = [r for r in ratios if r is not None and not math.isnan(r)]
    if ratios:
        return float(np.median(ratios)), "per_condition"
    neighbour = neighbours.get(spec.name)
    if neighbour is not None and neighbour.generated:
        return neighbour.ratio(), "nearest_reference_neighbour"
    ref = sides["reference"][spec.name].spread_all.spread()
    gen = sides["generated"][spec.name].spread_all.spread()
    return (gen / ref if ref > 0 else math.nan), "across_conditions"


def _conservation(ref_store: FieldStore, gen_store: FieldStore, ref_indices: np.ndarray,
                  gen_indices: np.ndarray, limits: Mapping[str, float]) -> dict[str, Any]:
    reference = check_invariants_streaming(ref_store, ref_indices.tolist())
    # the generated file is held to the reference's physics, whatever its own schema says
    generated = check_invariants_streaming(gen_store, gen_indices.tolist(),
                                           invariants=ref_store.schema.invariants)
    out = {}
    for key, ref_value in reference.items():
        gen_value = generated.get(key)
        entry: dict[str, Any] = {"reference": ref_value, "generated": gen_value}
        ref_number = _violation_number(ref_value)
        gen_number = _violation_number(gen_value)
        if ref_number is None or gen_number is None:
            reason = (ref_value if ref_number is None else gen_value) or {}
            entry["skipped"] = reason.get(SKIPPED, "not computed") if isinstance(
                reason, Mapping) else "not computed"
            out[key] = entry
            continue
        allowed = max(limits["conservation_absolute"], limits["conservation_factor"] * ref_number)
        entry["allowed"] = allowed
        entry["check"] = _gate(f"conservation {key}", None, gen_number, allowed, "max")
        entry["passed"] = entry["check"]["passed"]
        out[key] = entry
    return out


def _violation_number(value: Any) -> float | None:
    """The scalar a conservation entry is judged by (bounded: its max excursion)."""
    if isinstance(value, Mapping):
        if SKIPPED in value:
            return None
        return float(value.get("max_excursion", math.nan))
    return None if value is None else float(value)


def _frechet(reference: np.ndarray, generated: np.ndarray, owners: np.ndarray,
             names: Sequence[str]) -> tuple[float, float]:
    """Fréchet physics distance, and the same between two halves of the reference.

    The halves split the reference by trajectory (alternating in index order) so that
    correlated snapshots of one trajectory stay together.
    """
    distance = math.nan
    if min(reference.shape[0], generated.shape[0]) >= 2:
        distance = frechet_physics_distance(generated, reference, names)
    unique = np.unique(owners)
    first = np.isin(owners, unique[0::2])
    split = math.nan
    if min(first.sum(), (~first).sum()) >= 2:
        split = frechet_physics_distance(reference[first], reference[~first], names)
    return distance, split


def _minkowski_summary(reference: np.ndarray, generated: np.ndarray, names: list[str], specs,
                       levels) -> dict[str, Any]:
    summary = {}
    for spec in specs:
        mu, sigma = levels[spec.name]
        entry = {"thresholds": [mu + q * (sigma if sigma > 0 else 1.0)
                                for q in THRESHOLD_OFFSETS],
                 "offsets_in_std": list(THRESHOLD_OFFSETS),
                 "of": "|" + spec.name + "|" if spec.rank else spec.name}
        for functional in ("area_fraction", "boundary_length", "euler_characteristic"):
            columns = [names.index(f"{spec.name}:{functional}@{q:+g}") for q in THRESHOLD_OFFSETS]
            entry[functional] = {"reference": reference[:, columns].mean(axis=0),
                                 "generated": generated[:, columns].mean(axis=0)}
        summary[spec.name] = entry
    return summary


# ------------------------------------------------------------------ writing
def write_report(result: ValidationResult, directory: str | os.PathLike) -> Path:
    """Write ``report.json``, ``report.md`` and the PNG figures into ``directory``.

    Everything is first written into a temporary directory beside ``directory`` and
    then moved in file by file, so a failure while plotting leaves the previous report
    (if any) untouched and no partial report behind.

    Returns:
        The path of ``report.md``.
    """
    import json

    from surrogate.validation.plots import render_markdown, save_figures

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory}: exists and is not a directory")
    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        figures = save_figures(result, staging)
        (staging / "report.json").write_text(json.dumps(result.report, indent=1,
                                                        allow_nan=False) + "\n")
        (staging / "report.md").write_text(render_markdown(result.report, figures))
        directory.mkdir(exist_ok=True)
        for item in sorted(staging.iterdir()):
            os.replace(item, directory / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory / "report.md"
