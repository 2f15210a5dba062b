"""From accumulated sums to report entries: one function per entry of ``report.json``.

Each function reads the two sides' accumulators (:mod:`.accumulators`) or the two
files' conservation results and returns the JSON-able entry the package docstring
describes (numbers, arrays; NaN where a metric is undefined). Whether a number passes
is decided elsewhere (:mod:`.gates`), from these entries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import simulators
from simulators.store import FieldStore
from surrogate.validation.conditions import ConditionGroups
from surrogate.validation.conservation import SKIPPED, check_invariants_streaming
from surrogate.validation.features import THRESHOLD_OFFSETS, frechet_physics_distance
from surrogate.validation.observables import condition_observables, system_modes
from surrogate.validation.report.accumulators import (
    ConditionSide,
    FieldAccumulator,
    NeighbourSpread,
    SideAccumulator,
)
from surrogate.validation.spectra import band_masks, band_summary, spectrum_relative_error
from surrogate.validation.statistics import ks_pvalue, wasserstein1_over_std

__all__ = ["PDF_BINS", "RANGE_THIRDS", "RESOLVED_POWER_FLOOR", "condition_entry",
           "condition_observables_entry", "condition_weighted_spectra",
           "conservation_comparison", "end_over_middle", "field_aligned_spread",
           "field_spread", "field_summary", "frechet_pair", "median_over_conditions",
           "minkowski_summary", "mode_coverage", "observable_summary",
           "one_point_values", "one_point_w1", "range_summary", "range_third",
           "resolved_shells", "scatter_summary", "series_summary", "sign_balance",
           "sign_symmetric", "spectrum_summary", "violation_number", "w1_over_std_or_nan",
           "worst_third"]

#: shells with reference power below this fraction of the largest shell are not compared
RESOLVED_POWER_FLOOR = 1e-10
#: histogram bins of the PDFs
PDF_BINS = 64
#: the thirds of a swept range (:func:`range_third`)
RANGE_THIRDS = ("low end", "middle", "high end")
#: a position this close below a third's border (in units of the range) counts as on it
RANGE_BORDER_TOLERANCE = 1e-9


def resolved_shells(reference: np.ndarray) -> np.ndarray:
    """Mask of the shells whose mean reference power exceeds ``RESOLVED_POWER_FLOOR``
    times the largest shell's (the shells the spectrum metrics compare)."""
    return reference > RESOLVED_POWER_FLOOR * reference.max()


def spectrum_summary(k: np.ndarray, reference: np.ndarray, generated: np.ndarray
                     ) -> dict[str, Any]:
    """Relative spectrum error over the resolved shells (see the package docstring).

    Args:
        k: (n_shells,) wavenumbers; reference, generated: (n_shells,) mean spectra.
    Returns:
        ``{"k", "reference", "generated", "rel_error_median", "rel_error_max",
        "n_shells_compared", "k_resolved_max", "bands"}``.
    """
    resolved = resolved_shells(reference) if reference.size else []
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


def scatter_summary(k: np.ndarray, reference_spectrum: np.ndarray,
                    reference: FieldAccumulator, generated: FieldAccumulator
                    ) -> dict[str, Any]:
    """The ``spectrum.scatter`` entry: within-condition std of the per-snapshot log shell
    power (:class:`.accumulators.LogPowerScatter`), generated over reference.

    ``ratio(t, k) = sqrt(var_gen(t, k) / var_ref(t, k))`` over the resolved shells of
    ``reference_spectrum`` (as :func:`spectrum_summary`); ``ratio`` is its median over
    times and shells, ``bands`` the medians in the low / mid / high thirds of log k
    (:func:`surrogate.validation.band_summary`'s bands), ``reference_std`` and
    ``generated_std`` the per-shell std (median over times). Ideal 1; > 1: each
    generated sample's spectrum fluctuates more around the ensemble's than a simulated
    one's. NaN where a side has no condition with >= 2 trajectories (``dof`` 0).
    """
    ref_var, gen_var = reference.scatter.variance(), generated.scatter.variance()
    entry: dict[str, Any] = {"ratio": math.nan, "dof": {"reference": reference.scatter.dof,
                                                       "generated": generated.scatter.dof}}
    if ref_var is None or gen_var is None:
        return entry
    resolved = resolved_shells(reference_spectrum)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(gen_var / ref_var)[:, resolved]
    finite = np.isfinite(ratio)
    if not finite.any():
        return entry
    bands = {}
    for band, mask in band_masks(k[resolved]).items():
        values = ratio[:, mask][finite[:, mask]]
        bands[band] = float(np.median(values)) if values.size else math.nan
    entry.update({"ratio": float(np.median(ratio[finite])), "bands": bands,
                  "reference_std": np.sqrt(np.median(ref_var, axis=0)),
                  "generated_std": np.sqrt(np.median(gen_var, axis=0))})
    return entry


def sign_symmetric(system: str) -> bool:
    """Whether ``system`` declares a global sign symmetry (``negate`` in its
    :attr:`simulators.base.Simulator.symmetries`, e.g. Ising in zero field); ``False`` for
    a system this installation does not know."""
    try:
        return "negate" in simulators.get(system).symmetries
    except ValueError:
        return False


def one_point_values(values: np.ndarray, symmetric: bool) -> np.ndarray:
    """The values whose law a one-point comparison compares: ``values``, or under a
    declared global sign symmetry their magnitudes ``|x|``.

    Under an exact ``f -> -f`` symmetry the law of one value is symmetric, and the only
    asymmetry a finite ensemble shows is which signs its samples happened to draw: for
    Ising spins (+-1) the plain W1 is ``|m_gen - m_ref|`` over the reference std, the
    difference of the two ensembles' net magnetisations, i.e. sign-sampling noise (its
    std is about 0.07 for two ensembles of 192 snapshots over T in [1.5, 3.5], several
    times that at one condition). The comparison is then of the symmetrised laws
    ``(law(x) + law(-x)) / 2``, which are fixed by the law of ``|x|``: between
    symmetrised laws W1 equals W1 between the laws of ``|x|`` and the KS distance is half
    theirs, so both are computed on ``|x|`` (for +-1 spins nothing is left to compare).
    The balance of the signs is judged by :func:`sign_balance` and the mode coverage.
    """
    return np.abs(values) if symmetric else values


def one_point_w1(generated: np.ndarray, reference: np.ndarray, symmetric: bool) -> float:
    """W1 over the reference std of the pooled values (:func:`w1_over_std_or_nan`); with
    ``symmetric``, of the symmetrised laws: W1 of ``|x|`` over the std of the symmetrised
    reference, ``sqrt(mean r^2)`` (NaN where undefined)."""
    if not symmetric:
        return w1_over_std_or_nan(generated, reference)
    scale = (float(np.sqrt(np.mean(np.square(reference, dtype=np.float64))))
             if reference.size else 0.0)
    if reference.size < 2 or generated.size < 1 or scale == 0:
        return math.nan
    return wasserstein1_over_std(np.abs(generated), np.abs(reference), scale=scale)


def sign_balance(reference: Sequence[np.ndarray], generated: Sequence[np.ndarray]
                 ) -> dict[str, float]:
    """Net sign of two ensembles of a sign-symmetric field and whether they differ by more
    than the drawn signs explain.

    With ``m_bt`` the spatial mean of trajectory ``b``'s snapshot ``t`` and ``n`` the
    number of snapshots of a side, its net mean is ``M = sum_bt m_bt / n``; under the
    symmetry (each trajectory's signs, or each snapshot's, drawn fairly and
    independently) ``E M = 0`` and ``Var M = sum_b (sum_t m_bt)^2 / n^2``, which the
    observed values estimate without bias, so::

        z = (M_gen - M_ref) / sqrt(Var M_gen + Var M_ref)

    is about standard normal for a generator with the symmetry and large for one that
    prefers a sign (for one that always draws the same sign ``|z|`` grows as ``sqrt(n)``).

    Args:
        reference, generated: per trajectory its snapshots' spatial means ``(T,)``.
    Returns:
        ``{"reference", "generated"}`` (the net means ``M``) and ``"z"`` (NaN when both
        variances are 0 or a side is empty).
    """
    out: dict[str, float] = {}
    variance = 0.0
    for side, means in (("reference", reference), ("generated", generated)):
        count = sum(int(m.size) for m in means)
        if not count:
            return {"reference": math.nan, "generated": math.nan, "z": math.nan}
        out[side] = sum(float(m.sum()) for m in means) / count
        variance += sum(float(m.sum()) ** 2 for m in means) / count**2
    out["z"] = ((out["generated"] - out["reference"]) / math.sqrt(variance)
                if variance > 0 else math.nan)
    return out


def w1_over_std_or_nan(generated: np.ndarray, reference: np.ndarray) -> float:
    """:func:`surrogate.validation.wasserstein1_over_std`, NaN where it is undefined
    (fewer than 2 reference values, no generated value, a constant reference)."""
    if reference.size < 2 or generated.size < 1 or np.std(reference) == 0:
        return math.nan
    return wasserstein1_over_std(generated, reference)


def field_summary(reference: FieldAccumulator, generated: FieldAccumulator, spec: Any,
                  k: np.ndarray, r: np.ndarray, spectra: Mapping[str, np.ndarray],
                  symmetric: bool = False) -> dict[str, Any]:
    """One field's ``spectrum`` (with its ``scatter``), ``pdf``, ``moments``,
    ``correlation`` entries, and its ``temporal_change`` and ``temporal_change_ratio``
    when there are >= 2 times. ``spectra``: the two sides' mean spectra
    (``{"reference", "generated"}``, :func:`condition_weighted_spectra`, which weights
    each condition as the reference does). ``symmetric``: the system declares a
    global sign symmetry, and the PDF, W1 and KS compare the symmetrised laws
    (:func:`one_point_values`, :func:`one_point_w1`; ``pdf.sign_symmetrised``); the
    moments stay as the values are."""
    ref, gen = reference, generated
    spectrum = spectrum_summary(k, spectra["reference"], spectra["generated"])
    spectrum["scatter"] = scatter_summary(k, ref.spectrum / ref.snapshots, ref, gen)
    ref_values, gen_values = ref.samples.values(), gen.samples.values()
    low, high = min(ref.low, gen.low), max(ref.high, gen.high)
    ref_shown, gen_shown = ref_values, gen_values
    if symmetric:           # the histograms show the symmetrised laws
        high = max(abs(low), abs(high))
        low = -high
        ref_shown = np.concatenate([ref_values, -ref_values])
        gen_shown = np.concatenate([gen_values, -gen_values])
    if not high > low:
        high = low + 1.0
    edges = np.linspace(low, high, PDF_BINS + 1)
    ref_density = np.histogram(ref_shown, bins=edges, density=True)[0]
    gen_density = np.histogram(gen_shown, bins=edges, density=True)[0]
    w1 = one_point_w1(gen_values, ref_values, symmetric)
    ks = (ks_pvalue(one_point_values(gen_values, symmetric),
                    one_point_values(ref_values, symmetric))
          if ref_values.size and gen_values.size else math.nan)
    ref_corr = ref.correlation / ref.snapshots
    gen_corr = gen.correlation / gen.snapshots
    variance = ref_corr[0] if ref_corr[0] > 0 else 1.0
    entry = {
        "rank": spec.rank,
        "units": spec.units,
        "spectrum": spectrum,
        "pdf": {"edges": edges, "reference": ref_density, "generated": gen_density,
                "w1_over_std": w1, "ks_pvalue": ks, "sign_symmetrised": symmetric,
                "pooled_values": {"reference": int(ref_values.size),
                                  "generated": int(gen_values.size)}},
        "moments": {"reference": ref.moments(), "generated": gen.moments()},
        "correlation": {"r": r, "reference": ref_corr, "generated": gen_corr,
                        "max_abs_difference_over_variance":
                            float(np.max(np.abs(gen_corr - ref_corr)) / variance)},
    }
    if ref.change_count:
        reference_change = ref.mean_change()
        ratio = gen.mean_change() / reference_change if reference_change > 0 else math.nan
        entry["temporal_change"] = {"reference": reference_change,
                                    "generated": gen.mean_change()}
        entry["temporal_change_ratio"] = ratio
    return entry


def condition_entry(groups: ConditionGroups, g: int, members: Mapping[str, np.ndarray],
                    sides: Mapping[str, ConditionSide], specs: Sequence[Any], k: np.ndarray,
                    symmetric: bool = False) -> dict[str, Any]:
    """One ``per_condition`` entry: the condition's parameters, counts, and per field the
    spectrum errors, W1 / std (:func:`one_point_w1`) and ensemble spreads of its
    trajectories."""
    entry = {"parameters": {name: float(values[g]) for name, values in groups.values.items()},
             "n_reference": int(members["reference"].size),
             "n_generated": int(members["generated"].size), "fields": {}}
    for spec in specs:
        ref = sides["reference"].fields[spec.name]
        gen = sides["generated"].fields[spec.name]
        spectrum = spectrum_summary(k, ref.spectrum / ref.snapshots,
                                    gen.spectrum / gen.snapshots)
        entry["fields"][spec.name] = {
            "spectrum_rel_error_median": spectrum["rel_error_median"],
            "spectrum_rel_error_max": spectrum["rel_error_max"],
            "w1_over_std": one_point_w1(gen.samples.values(), ref.samples.values(), symmetric),
            "spread_ratio": gen.spread.ratio_to(ref.spread),
            "spread": {"reference": ref.spread.spread(), "generated": gen.spread.spread()},
            "spread_aligned_ratio": gen.spread_aligned.ratio_to(ref.spread_aligned)}
    return entry


def range_third(value: float, low: float, high: float, log_scale: bool = False) -> int:
    """Which third of the range ``[low, high]`` holds ``value``: 0 (low end), 1 (middle)
    or 2 (high end), by the position ``u = (p - low) / (high - low)`` (of ``ln p`` when
    ``log_scale``): ``u < 1/3``, ``1/3 <= u < 2/3``, ``u >= 2/3``, a value within 1e-9
    (relative to the range) below a border counting as on it, so that evenly spaced
    values are split evenly whatever the rounding of ``u``; values outside the range
    count as its nearest end.

    Raises:
        ZeroDivisionError: ``high == low``; ValueError: ``log_scale`` with a value or
        bound <= 0.
    """
    scale = math.log if log_scale else float
    position = (scale(value) - scale(low)) / (scale(high) - scale(low))
    return min(max(math.floor(3 * position + RANGE_BORDER_TOLERANCE), 0), 2)


def end_over_middle(errors: Mapping[str, float | None]) -> float | None:
    """The larger of the two ends' errors over the middle's, ``{label: error}`` with the
    labels of :data:`RANGE_THIRDS`; ``None`` where it is undefined (no end, a middle that
    is missing, NaN or 0)."""
    def defined(value: float | None) -> bool:
        return value is not None and not math.isnan(value)

    middle = errors.get(RANGE_THIRDS[1])
    ends = [errors.get(label) for label in (RANGE_THIRDS[0], RANGE_THIRDS[2])]
    ends = [end for end in ends if defined(end)]
    if not ends or not defined(middle) or middle <= 0:
        return None
    return max(ends) / middle


def condition_weighted_spectra(conditions: Sequence[Mapping[str, Any]], name: str
                               ) -> dict[str, np.ndarray]:
    """Both sides' mean spectra of field ``name`` over ``conditions``, each condition
    weighted by its reference snapshots (see :func:`range_summary` for the layout)::

        w_c = n_ref(c) / sum_c' n_ref(c'),    P_side(k) = sum_c w_c S_side(c, k) / n_side(c)

    For the reference this is the plain mean over its snapshots; the generated side
    integrates the generator's mean spectrum at each condition against the reference's
    distribution of conditions, so more generated samples at some conditions than at
    others do not read as a spectrum error. Returns ``{"reference", "generated"}``,
    (n_shells,) each.
    """
    counts = np.array([c["spectra"][name]["reference"][1] for c in conditions],
                      dtype=np.float64)
    weights = counts / counts.sum()
    return {side: sum(w * c["spectra"][name][side][0] / c["spectra"][name][side][1]
                      for w, c in zip(weights, conditions, strict=True))
            for side in ("reference", "generated")}


def worst_third(ranges: Mapping[str, Any], field: str) -> float | None:
    """The largest spectrum error of ``field`` over every third of every swept range in a
    report's ``range`` entry (``None`` when there is none or every third is undefined)."""
    errors = [third["fields"][field]["spectrum_rel_error_median"]
              for entry in ranges.values() for third in entry["thirds"].values()
              if field in third["fields"]]
    errors = [e for e in errors if e is not None and not math.isnan(e)]
    return max(errors) if errors else None


def range_summary(conditions: Sequence[Mapping[str, Any]], declared: Sequence[Any],
                  k: np.ndarray) -> dict[str, Any]:
    """The ``range`` entry: the spectrum error in each third of every swept range.

    A pooled spectrum over all conditions hides a generator that is right on average and
    wrong at each end (too much power at one end, too little at the other). For each
    declared parameter that takes >= 3 distinct values over the compared conditions, the
    conditions are split into thirds of ``[low, high]`` = their smallest and largest value
    (:func:`range_third`; in ``ln p`` for a log-scaled parameter with ``low > 0``), and
    in each third the two sides' mean spectra are compared as the pooled spectrum is
    (:func:`spectrum_summary`), both weighting a condition ``c`` of the third by its
    reference snapshots (:func:`condition_weighted_spectra`), so that a generated file
    with more samples at some conditions than at others is not read as a spectrum error::

        w_c = n_ref(c) / sum_{c' in third} n_ref(c')
        P_side(third, k) = sum_{c in third} w_c S_side(c, k) / n_side(c)

    (``S``: the sum of a condition's snapshot spectra, ``n``: its snapshot count).

    Args:
        conditions: per compared condition ``{"parameters": {name: value}, "spectra":
            {field: {"reference": (S (n_shells,), n), "generated": (S, n)}}}``, ``n >= 1``
            on both sides.
        declared: the schema's :class:`simulators.base.Parameter` s (names, ``log_scale``).
        k: (n_shells,) shell wavenumbers.
    Returns:
        ``{name: {"low", "high", "log_scale", "thirds": {label: {"conditions", "values"
        ([smallest, largest] or None), "fields": {field: {"spectrum_rel_error_median",
        "ratio" (P_gen / P_ref per shell, NaN where unresolved)}}}}, "end_over_middle":
        {field: :func:`end_over_middle` of the thirds' errors}}}`` (labels
        :data:`RANGE_THIRDS`; an empty third has NaN errors and ratios).
    """
    result: dict[str, Any] = {}
    fields = list(conditions[0]["spectra"]) if conditions else []
    for parameter in declared:
        values = np.array([c["parameters"].get(parameter.name, math.nan) for c in conditions],
                          dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.unique(values).size < 3:
            continue
        low, high = float(values.min()), float(values.max())
        log = bool(parameter.log_scale) and low > 0
        third = np.array([range_third(v, low, high, log) for v in values])
        thirds: dict[str, Any] = {}
        for index, label in enumerate(RANGE_THIRDS):
            members = [c for c, t in zip(conditions, third, strict=True) if t == index]
            entry: dict[str, Any] = {
                "conditions": len(members),
                "values": ([float(values[third == index].min()),
                            float(values[third == index].max())] if members else None),
                "fields": {}}
            for name in fields:
                if not members:
                    entry["fields"][name] = {"spectrum_rel_error_median": math.nan,
                                             "ratio": np.full(k.size, math.nan)}
                    continue
                mean = condition_weighted_spectra(members, name)
                summary = spectrum_summary(k, mean["reference"], mean["generated"])
                resolved = resolved_shells(mean["reference"])
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(resolved, mean["generated"] / mean["reference"], math.nan)
                entry["fields"][name] = {"spectrum_rel_error_median":
                                         summary["rel_error_median"], "ratio": ratio}
            thirds[label] = entry
        ratios = {name: end_over_middle({label: thirds[label]["fields"][name]
                                         ["spectrum_rel_error_median"] for label in thirds})
                  for name in fields}
        result[parameter.name] = {"low": low, "high": high, "log_scale": log,
                                  "thirds": thirds, "end_over_middle": ratios}
    return result


def field_aligned_spread(per_condition: Sequence[Mapping[str, Any]], name: str
                         ) -> float | None:
    """A field's ``spread_aligned_ratio``: the median over the compared conditions of
    the per-condition ratios of aligned spreads
    (:class:`surrogate.validation.statistics.AlignedEnsembleSpread`); ``None`` where no
    condition holds >= 2 trajectories on both sides."""
    return median_over_conditions(per_condition, name, "spread_aligned_ratio")


def median_over_conditions(per_condition: Sequence[Mapping[str, Any]], name: str,
                            key: str) -> float | None:
    """Median of ``fields.NAME.KEY`` over the per-condition entries that define it
    (not ``None``, not NaN); ``None`` where none does."""
    values = [c["fields"][name][key] for c in per_condition]
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.median(values)) if values else None


def field_spread(sides: Mapping[str, SideAccumulator], per_condition: Sequence[Mapping[str, Any]],
                 name: str, neighbours: Mapping[str, NeighbourSpread]) -> tuple[float, str]:
    """A field's ``spread_ratio`` and ``spread_basis`` (the package docstring's three bases,
    tried in this order)."""
    ratio = median_over_conditions(per_condition, name, "spread_ratio")
    if ratio is not None:
        return ratio, "per_condition"
    neighbour = neighbours.get(name)
    if neighbour is not None and neighbour.generated:
        return neighbour.ratio(), "nearest_reference_neighbour"
    return (sides["generated"].fields[name].spread_all.ratio_to(
        sides["reference"].fields[name].spread_all), "across_conditions")


def observable_summary(reference: np.ndarray, generated: np.ndarray, bins: int = 40
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
    out["w1_over_std"] = (w1_over_std_or_nan(finite["generated"], finite["reference"])
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


def mode_coverage(system: str, observables: Mapping[str, Mapping[str, list[np.ndarray]]]
                  ) -> dict[str, Any] | None:
    """Fractions of snapshots in each ordered state (e.g. Ising "+" / "-"), both sides.

    ``coverage`` is the smallest ``generated fraction / reference fraction`` over the modes
    that hold at least 5% of the reference snapshots: 0 when the generator never visits
    a state the reference visits, about 1 when it visits them as often.

    For a system declaring a global sign symmetry (:func:`sign_symmetric`) whose modes
    are the two signs, the reference fraction of each sign is the mean of the two
    (``reference_symmetrised``; ``fraction.reference`` keeps the counted ones): the
    simulator's law gives both signs the same probability, and a finite reference's
    imbalance is noise (about ``1 / sqrt(n)`` of ``n`` ordered snapshots: 110 ordered
    snapshots read 63 / 47 in the Ising fidelity benchmark, which capped an exactly
    balanced generator at 0.87). A generator that misses a sign still scores 0.

    ``switching``: per side, the fraction of consecutive snapshot pairs of one trajectory,
    both in an ordered state, whose states differ (Ising: the magnetisation changed
    sign), and the number of such pairs (``None`` with none, e.g. one snapshot per
    trajectory). Not gated; it shows whether the states persist or change in time as the
    simulator's do (under Swendsen-Wang an ordered trajectory changes sign between two
    snapshots half the time; a generator that keeps one sign per latent reads 0).
    """
    labels = {}
    switching: dict[str, Any] = {}
    for side in ("reference", "generated"):
        series = {key: np.concatenate(parts) for key, parts in observables[side].items()}
        if not series:
            return None
        modes = system_modes(system, series)
        if modes is None:
            return None
        labels[side] = modes
        changed = pairs = 0
        lengths = [len(part) for part in next(iter(observables[side].values()))]
        for trajectory in np.split(modes, np.cumsum(lengths)[:-1]):
            ordered = (trajectory[1:] != "") & (trajectory[:-1] != "")
            pairs += int(ordered.sum())
            changed += int((trajectory[1:] != trajectory[:-1])[ordered].sum())
        switching[side] = changed / pairs if pairs else None
        switching[f"{side}_pairs"] = pairs
    names = sorted({str(m) for m in labels["reference"] if m})
    symmetrised = sign_symmetric(system) and bool(names) and set(names) <= {"+", "-"}
    if symmetrised:
        names = ["+", "-"]          # a reference holding one sign still expects both
    fractions = {side: {name: float(np.mean(values == name)) if values.size else 0.0
                        for name in names} for side, values in labels.items()}
    expected = fractions["reference"]
    gated = [name for name in names if expected[name] >= 0.05]
    if symmetrised:
        half = (expected["+"] + expected["-"]) / 2
        expected = {"+": half, "-": half}
        gated = names if gated else []        # both signs wherever either is gated
    ratios = [fractions["generated"][name] / expected[name] for name in gated]
    return {"modes": names, "fraction": fractions, "reference_symmetrised": symmetrised,
            "coverage": float(min(ratios)) if ratios else math.nan, "switching": switching}


def condition_observables_entry(system: str,
                                series: Mapping[str, Mapping[str, list[np.ndarray]]],
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


def series_summary(series: list[dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Per label, mean / std / min / max over trajectories of the (T,) invariant series."""
    if not series:
        return {}
    summary = {}
    for label in series[0]:
        stack = np.stack([s[label] for s in series])             # (B, T)
        summary[label] = {"mean": stack.mean(axis=0), "std": stack.std(axis=0),
                          "min": stack.min(axis=0), "max": stack.max(axis=0)}
    return summary


def conservation_comparison(ref_store: FieldStore, gen_store: FieldStore,
                            ref_indices: np.ndarray, gen_indices: np.ndarray
                            ) -> dict[str, dict[str, Any]]:
    """``{check: {"reference", "generated"[, "skipped"]}}``: the invariant checks of both
    files' compared trajectories, the generated file held to the reference's invariants.

    ``skipped`` (the reason) marks a check with no number on one side; the others are
    judged by :func:`surrogate.validation.report.gates.conservation_checks`.
    """
    reference = check_invariants_streaming(ref_store, ref_indices.tolist())
    # the generated file is held to the reference's physics, whatever its own schema says
    generated = check_invariants_streaming(gen_store, gen_indices.tolist(),
                                           invariants=ref_store.schema.invariants)
    out = {}
    for key, ref_value in reference.items():
        gen_value = generated.get(key)
        entry: dict[str, Any] = {"reference": ref_value, "generated": gen_value}
        if violation_number(ref_value) is None or violation_number(gen_value) is None:
            reason = (ref_value if violation_number(ref_value) is None else gen_value) or {}
            entry["skipped"] = reason.get(SKIPPED, "not computed") if isinstance(
                reason, Mapping) else "not computed"
        out[key] = entry
    return out


def violation_number(value: Any) -> float | None:
    """The scalar a conservation entry is judged by (bounded: its max excursion)."""
    if isinstance(value, Mapping):
        if SKIPPED in value:
            return None
        return float(value.get("max_excursion", math.nan))
    return None if value is None else float(value)


def frechet_pair(reference: np.ndarray, generated: np.ndarray, owners: np.ndarray,
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


def minkowski_summary(reference: np.ndarray, generated: np.ndarray, names: list[str],
                      specs: Sequence[Any], levels: Mapping[str, tuple[float, float]]
                      ) -> dict[str, Any]:
    """Per field, the mean Minkowski functionals of both sides at the feature thresholds
    (columns of the physics-feature rows)."""
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
