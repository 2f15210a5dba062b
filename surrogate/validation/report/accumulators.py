"""What a comparison accumulates while it streams the two files, one trajectory at a time.

One object per side (reference, generated), so the engine holds two of each instead of
a dictionary per quantity and side:

* :class:`SideAccumulator`: everything one side accumulates over all compared
  trajectories: per field a :class:`FieldAccumulator` (spectrum, correlation, power sums
  of the moments, range, thinned values for the PDF, the spread across all trajectories,
  consecutive-snapshot changes), the invariant series, the system observables, the
  physics-feature rows of the Fréchet distance and the snapshots shown in the report;
* :class:`ConditionSide`: the same side at one condition (per field a
  :class:`ConditionFieldAccumulator`: spectrum, thinned values, ensemble spread, each
  trajectory's spectra; and the condition's observables);
* :class:`LogPowerScatter`: per field and side, the within-condition scatter of the
  per-snapshot log shell power pooled over conditions (:func:`add_condition_scatter`
  feeds it once a condition's trajectories are in).

Memory is bounded whatever the file sizes: spectra and correlations are running sums,
pooled values are thinned to a fixed stride (:class:`Thinner`), the spread keeps three
arrays of one trajectory's shape (:class:`surrogate.validation.statistics.EnsembleSpread`),
and at most ``MAX_FEATURE_SNAPSHOTS`` snapshots per side enter the features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import gammaln

from surrogate.validation.features import physics_features
from surrogate.validation.observables import invariant_series
from surrogate.validation.spectra import field_power_spectrum
from surrogate.validation.statistics import (
    MAX_POOLED_VALUES,
    AlignedEnsembleSpread,
    EnsembleSpread,
    correlation_function,
)

__all__ = ["GROUP_POOLED_VALUES", "MAX_FEATURE_SNAPSHOTS", "SCATTER_POWER_FLOOR",
           "ConditionFieldAccumulator", "ConditionSide", "FieldAccumulator", "LogPowerScatter",
           "NeighbourSpread", "SideAccumulator", "Thinner", "add_condition_scatter", "c4",
           "trajectory_spectra"]

#: pooled values kept per field and condition for the per-condition W1
GROUP_POOLED_VALUES = 4096
#: snapshots per file whose physics features enter the Fréchet distance
MAX_FEATURE_SNAPSHOTS = 512
#: the log shell power of :class:`LogPowerScatter` is ``log(P + floor)`` with ``floor``
#: this fraction of the condition's largest mean reference shell power (a snapshot with
#: no power in a shell, e.g. a fully ordered Ising state, stays finite)
SCATTER_POWER_FLOOR = 1e-10

#: ``{field: (per-snapshot spectra (T, shells), per-snapshot correlations (T, r))}``
Spectra = dict[str, tuple[np.ndarray, np.ndarray]]


def trajectory_spectra(fields: Mapping[str, np.ndarray], specs: Sequence[Any], box_size: float
                       ) -> Spectra:
    """Per-snapshot power spectra and correlation functions of one trajectory's fields,
    summed over the components of a vector field (``{field: ((T, N // 2), (T, N // 2 + 1))}``)."""
    out = {}
    for spec in specs:
        values = fields[spec.name]
        _, power = field_power_spectrum(values, box_size, vector=bool(spec.rank))
        if spec.rank:
            _, xi = correlation_function(np.moveaxis(values, -1, -3), box_size)   # (T, 2, r)
            out[spec.name] = (power, xi.sum(axis=-2))
        else:
            out[spec.name] = (power, correlation_function(values, box_size)[1])
    return out


class Thinner:
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


class LogPowerScatter:
    """Within-condition scatter of the per-snapshot log shell power, pooled over conditions.

    At a condition ``c`` with ``S_c >= 2`` trajectories, ``y_s(t, k) = log(P_s(t, k) +
    floor_c)`` for each trajectory ``s``; pooled over the conditions::

        var(t, k) = sum_c sum_s (y_s(t, k) - mean_s y(t, k))^2 / sum_c (S_c - 1)

    the unbiased within-condition variance of the log power of one snapshot at time
    ``t`` in shell ``k``. For a Gaussian random field it is the trigamma function
    ``psi'(m_k)`` of the shell's ``m_k = n_k / 2`` independent complex modes (``n_k``
    the modes of the shell, half of them the conjugates of the others), whatever the
    spectrum: the scatter measures how each sample's power fluctuates around the
    ensemble's, which the mean spectrum cannot show (a generator whose samples carry a
    random spectral slope has the right mean spectrum and too much scatter).
    """

    def __init__(self) -> None:
        self.sum_squares: np.ndarray | None = None
        self.dof = 0

    def add_condition(self, log_power: np.ndarray) -> None:
        """Add one condition's ``(S, T, shells)`` log powers (nothing when ``S < 2``)."""
        if log_power.shape[0] < 2:
            return
        deviation = log_power - log_power.mean(axis=0)
        squares = np.sum(deviation * deviation, axis=0)
        self.sum_squares = squares if self.sum_squares is None else self.sum_squares + squares
        self.dof += log_power.shape[0] - 1

    def variance(self) -> np.ndarray | None:
        """``var(t, k)`` (T, shells), ``None`` before a condition with >= 2 trajectories."""
        return None if self.sum_squares is None else self.sum_squares / self.dof


@dataclass
class FieldAccumulator:
    """Everything one side accumulates for one field over all compared trajectories."""

    rank: int
    spectrum: np.ndarray
    correlation: np.ndarray
    shift: float
    samples: Thinner
    snapshots: int = 0
    power_sums: np.ndarray = field(default_factory=lambda: np.zeros(5))
    low: float = math.inf
    high: float = -math.inf
    spread_all: EnsembleSpread = field(default_factory=EnsembleSpread)
    change_sum: float = 0.0
    change_count: int = 0
    scatter: LogPowerScatter = field(default_factory=LogPowerScatter)

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
        """Mean, std, skewness and excess kurtosis of all values, from the power sums of
        ``x - shift`` (exact in float64 when ``shift`` is near the mean)."""
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
class ConditionFieldAccumulator:
    """What one side accumulates for one field at one condition."""

    spectrum: np.ndarray
    samples: Thinner
    spread: EnsembleSpread = field(default_factory=EnsembleSpread)
    #: the spread with each trajectory moved into register with the first (x, y = axes
    #: 1, 2 of a trajectory (T, N, N[, 2]))
    spread_aligned: AlignedEnsembleSpread = field(
        default_factory=lambda: AlignedEnsembleSpread((1, 2)))
    snapshots: int = 0
    #: each trajectory's per-snapshot spectra (T, shells), for :class:`LogPowerScatter`
    power: list[np.ndarray] = field(default_factory=list)

    def add(self, values: np.ndarray, spectra: np.ndarray) -> None:
        """Accumulate one trajectory ``values`` (T, N, N[, 2]) and its spectra (T, shells)."""
        self.spectrum += spectra.sum(axis=0)
        self.snapshots += spectra.shape[0]
        self.samples.add(values)
        self.spread.add(values)
        self.spread_aligned.add(values)
        self.power.append(np.asarray(spectra, dtype=np.float64))


def _pooled_size(n_trajectories: int, n_times: int, resolution: int, rank: int) -> int:
    """Number of values of ``n_trajectories`` trajectories of one field."""
    return n_trajectories * n_times * resolution * resolution * (2 if rank else 1)


class SideAccumulator:
    """One side's accumulators over all compared trajectories (see the module docstring).

    Args:
        specs: the field specs of the schema.
        n_trajectories: trajectories this side will add (sets the thinning strides).
        n_times: snapshots per trajectory.
        resolution: grid points per side ``N``.
        box_size: side ``L`` of the periodic square.
        shift: ``{field: reference mean}``, subtracted before the moments' power sums.
        levels: ``{field: (mean, std)}`` of the reference's scalar view (the Minkowski
            thresholds of the physics features).
        invariants: the reference's declared invariants (series of both sides).
    """

    def __init__(self, specs: Sequence[Any], n_trajectories: int, n_times: int,
                 resolution: int, box_size: float, shift: Mapping[str, float],
                 levels: Mapping[str, tuple[float, float]], invariants: Sequence[Any]) -> None:
        self.specs = list(specs)
        self.n_times = n_times
        self.box_size = box_size
        self.levels = levels
        self.invariants = invariants
        self.fields = {spec.name: FieldAccumulator(
            rank=spec.rank, spectrum=np.zeros(resolution // 2),
            correlation=np.zeros(resolution // 2 + 1), shift=shift[spec.name],
            samples=Thinner(_pooled_size(n_trajectories, n_times, resolution, spec.rank),
                            MAX_POOLED_VALUES)) for spec in self.specs}
        #: every ``feature_stride``-th snapshot of the stream enters the features
        self.feature_stride = max(1, math.ceil(n_trajectories * n_times
                                               / MAX_FEATURE_SNAPSHOTS))
        self.snapshots_seen = 0
        self.feature_rows: list[np.ndarray] = []
        self.feature_owner: list[int] = []
        #: per scalar field, each trajectory's snapshot means (T,), for the sign balance
        self.snapshot_means: dict[str, list[np.ndarray]] = {
            spec.name: [] for spec in self.specs if not spec.rank}
        self.series: list[dict[str, np.ndarray]] = []
        self.observables: dict[str, list[np.ndarray]] = {}
        self.shown: dict[str, list[np.ndarray]] = {spec.name: [] for spec in self.specs}

    def add(self, b: int, fields: Mapping[str, np.ndarray], spectra: Spectra,
            observables: Mapping[str, np.ndarray]) -> None:
        """Accumulate trajectory ``b``: its fields ``{name: (T, N, N[, 2])}``, their
        :func:`trajectory_spectra` and its system observables ``{label: (T,)}``."""
        for spec in self.specs:
            self.fields[spec.name].add(fields[spec.name], *spectra[spec.name])
        for name, means in self.snapshot_means.items():
            means.append(np.asarray(fields[name], dtype=np.float64).mean(axis=(-2, -1)))
        self.series.append(invariant_series(self.invariants, fields, self.box_size))
        for label, values in observables.items():
            self.observables.setdefault(label, []).append(values)
        chosen = [t for t in range(self.n_times)
                  if (self.snapshots_seen + t) % self.feature_stride == 0]
        self.snapshots_seen += self.n_times
        if chosen:
            self.feature_rows.append(physics_features(
                {name: values[chosen] for name, values in fields.items()}, self.specs,
                self.box_size, self.levels))
            self.feature_owner += [b] * len(chosen)

    def show(self, fields: Mapping[str, np.ndarray]) -> None:
        """Keep the last snapshot of each field to show side by side in the report."""
        for spec in self.specs:
            self.shown[spec.name].append(fields[spec.name][-1])

    def features(self) -> np.ndarray:
        """The physics-feature rows, ``(snapshots, features)``."""
        return np.concatenate(self.feature_rows)


class ConditionSide:
    """One side's accumulators at one condition."""

    def __init__(self, specs: Sequence[Any], n_trajectories: int, n_times: int,
                 resolution: int) -> None:
        self.fields = {spec.name: ConditionFieldAccumulator(
            spectrum=np.zeros(resolution // 2),
            samples=Thinner(_pooled_size(n_trajectories, n_times, resolution, spec.rank),
                            GROUP_POOLED_VALUES)) for spec in specs}
        self.observables: dict[str, list[np.ndarray]] = {}

    def add(self, fields: Mapping[str, np.ndarray], spectra: Spectra,
            observables: Mapping[str, np.ndarray]) -> None:
        """Accumulate one trajectory (as :meth:`SideAccumulator.add`)."""
        for name, accumulator in self.fields.items():
            accumulator.add(fields[name], spectra[name][0])
        for label, values in observables.items():
            self.observables.setdefault(label, []).append(values)


def add_condition_scatter(sides: Mapping[str, SideAccumulator],
                          condition: Mapping[str, ConditionSide]) -> None:
    """Feed each side's :class:`LogPowerScatter` with one condition's trajectories, the
    power floor (``SCATTER_POWER_FLOOR`` times the largest shell of the condition's mean
    reference spectrum) shared by both sides."""
    for name, reference in condition["reference"].fields.items():
        if not reference.snapshots:
            continue
        largest = float(reference.spectrum.max()) / reference.snapshots
        floor = SCATTER_POWER_FLOOR * largest if largest > 0 else np.finfo(np.float64).tiny
        for side, accumulators in condition.items():
            power = accumulators.fields[name].power
            if power:
                sides[side].fields[name].scatter.add_condition(np.log(np.stack(power) + floor))


def c4(n: int) -> float:
    """``E[s] / sigma`` of the sample std ``s`` (ddof = 1) of ``n`` Gaussian samples."""
    return math.sqrt(2.0 / (n - 1)) * math.exp(gammaln(n / 2) - gammaln((n - 1) / 2))


class NeighbourSpread:
    """Generated within-condition spread against nearest-reference-neighbour pairs."""

    def __init__(self) -> None:
        self.generated: list[float] = []
        self.reference: list[float] = []
        self.distance: list[float] = []

    def add(self, generated_spread: float, n_generated: int, pair_spread: float,
            distance: float) -> None:
        self.generated.append(generated_spread / c4(n_generated))
        self.reference.append(pair_spread / c4(2))
        self.distance.append(distance)

    def ratio(self) -> float:
        reference = float(np.mean(self.reference)) if self.reference else math.nan
        return float(np.mean(self.generated)) / reference if reference > 0 else math.nan
