"""The comparison itself: stream two field-store files condition by condition into a report.

:func:`validate_files` opens and checks the files (:mod:`.inputs`), runs
:func:`compare_stores` and, when it can, :func:`noise_floor` (the same comparison
between two simulator ensembles), whose numbers :func:`.floor.attach_floor` writes
beside the report's. :func:`compare_stores` makes one pass over the reference to fix
its levels, then one pass over the matched trajectories of both files, feeding one
:class:`.accumulators.SideAccumulator` per side and one
:class:`.accumulators.ConditionSide` per side and condition; the entries are then
formed from the accumulators (:mod:`.summaries`) and judged (:mod:`.gates`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from simulators.store import FieldStore, FieldStoreError
from surrogate.jsonable import json_safe
from surrogate.validation.conditions import (
    DEFAULT_MATCH_DISTANCE,
    ConditionGroups,
    group_conditions,
)
from surrogate.validation.features import feature_names, scalar_view
from surrogate.validation.observables import system_observables
from surrogate.validation.report.accumulators import (
    ConditionSide,
    NeighbourSpread,
    SideAccumulator,
    add_condition_scatter,
    trajectory_spectra,
)
from surrogate.validation.report.floor import attach_floor
from surrogate.validation.report.gates import (
    conservation_checks,
    field_checks,
    gate,
    per_condition_checks,
    scatter_checks,
    spread_checks,
    verdict,
)
from surrogate.validation.report.inputs import (
    TrajectorySubset,
    check_compatible,
    open_store,
    read_trajectory,
)
from surrogate.validation.report.summaries import (
    condition_entry,
    condition_observables_entry,
    condition_weighted_spectra,
    conservation_comparison,
    field_aligned_spread,
    field_spread,
    field_summary,
    frechet_pair,
    minkowski_summary,
    mode_coverage,
    observable_summary,
    range_summary,
    series_summary,
    sign_balance,
    sign_symmetric,
)
from surrogate.validation.report.thresholds import resolve_thresholds
from surrogate.validation.spectra import power_spectrum
from surrogate.validation.statistics import correlation_function

__all__ = ["N_SAMPLE_CONDITIONS", "REPORT_VERSION", "ValidationResult", "compare_stores",
           "noise_floor", "validate_files"]

REPORT_VERSION = 1

#: sample fields shown side by side in the report
N_SAMPLE_CONDITIONS = 3

SIDES = ("reference", "generated")


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


def validate_files(reference: str | os.PathLike, generated: str | os.PathLike, *,
                   thresholds: Mapping[str, Any] | None = None,
                   max_match_distance: float = DEFAULT_MATCH_DISTANCE,
                   progress: Callable[[str], None] | None = None,
                   floor: str | os.PathLike | None = None,
                   reference_halves: bool = True) -> ValidationResult:
    """Compare two field-store files of one system; see :mod:`surrogate.validation.report`.

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
        ref_store = stack.enter_context(open_store(reference, "reference"))
        gen_store = stack.enter_context(open_store(generated, "generated"))
        check_compatible(ref_store, gen_store)
        floor_store = None
        if floor is not None:
            floor_store = stack.enter_context(open_store(floor, "floor"))
            check_compatible(ref_store, floor_store)
        result = compare_stores(ref_store, gen_store, limits, max_match_distance, say)
        if floor_store is not None or reference_halves:
            say("noise floor")
            attach_floor(result.report, noise_floor(ref_store, gen_store, floor_store,
                                                    limits, max_match_distance))
        return result


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
        second = TrajectorySubset(floor_store, chosen, "floor")
        result = compare_stores(ref_store, second, limits, max_match_distance, quiet)
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
        first = TrajectorySubset(ref_store, np.array(halves[0]), "reference half 1")
        second = TrajectorySubset(ref_store, np.array(halves[1]), "reference half 2")
        result = compare_stores(first, second, limits, max_match_distance, quiet)
        source = "reference_halves"
    counts = result.report["counts"]
    return {"source": source, "path": str(getattr(second, "path", "")),
            "counts": {"trajectories": [counts["matched_reference_trajectories"],
                                        counts["matched_generated_trajectories"]],
                       "conditions": counts["matched_conditions"]},
            "report": result.report}


def compare_stores(ref_store: FieldStore, gen_store: FieldStore, limits: Mapping[str, float],
                   max_match_distance: float, say: Callable[[str], None]) -> ValidationResult:
    """The report of ``gen_store`` against ``ref_store`` (open, compatible stores or
    :class:`.inputs.TrajectorySubset` views), without a noise floor."""
    schema = ref_store.schema
    specs = list(schema.fields)
    box = ref_store.box_size
    n = ref_store.resolution
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
    shift, levels = _reference_levels(ref_store, ref_indices)
    k = power_spectrum(np.zeros((n, n)), box)[0]            # shell wavenumbers, once
    r = correlation_function(np.zeros((n, n)), box)[0]      # shell separations, once
    stores = {"reference": ref_store, "generated": gen_store}
    sides = {side: SideAccumulator(specs, indices.size, n_times, n, box, shift, levels,
                                   schema.invariants)
             for side, indices in zip(SIDES, (ref_indices, gen_indices), strict=True)}
    sample_groups = _sample_groups(groups, matched)
    sample_labels: list[str] = []
    symmetric = sign_symmetric(schema.system)   # one-point PDFs over the declared sign
    per_condition = []
    range_conditions = []        # each condition's summed spectra (pooled and ``range``)
    neighbours = _neighbour_pairs(groups, matched)
    neighbour_spread = {spec.name: NeighbourSpread() for spec in specs}

    say(f"streaming {ref_indices.size} reference and {gen_indices.size} generated "
        f"trajectories in {len(matched)} conditions")
    for g in matched:
        members = dict(zip(SIDES, groups.members(g), strict=True))
        condition = {side: ConditionSide(specs, members[side].size, n_times, n)
                     for side in SIDES}
        reference_fields = None      # the (single) reference trajectory of a neighbour pair
        for side, indices in members.items():
            for b in indices:
                fields = read_trajectory(stores[side], int(b))
                if side == "reference":
                    reference_fields = fields
                spectra = trajectory_spectra(fields, specs, box)
                observables = system_observables(schema.system, fields, box)
                sides[side].add(int(b), fields, spectra, observables)
                condition[side].add(fields, spectra, observables)
                if g in sample_groups and b == indices[0]:
                    sides[side].show(fields)
        if g in sample_groups:
            label = ", ".join(f"{name}={values[g]:.4g}" for name, values in groups.values.items())
            sample_labels.append(f"{label}, t={ref_store.times[-1]:.4g}")
        if g in neighbours:
            other, distance = neighbours[g]
            second = read_trajectory(ref_store, int(groups.members(other)[0][0]))
            for spec in specs:
                # the spread of the two reference samples, mean |x - x'| / sqrt 2
                pair = float(np.mean(np.abs(reference_fields[spec.name].astype(np.float64)
                                            - second[spec.name]))) / math.sqrt(2.0)
                neighbour_spread[spec.name].add(
                    condition["generated"].fields[spec.name].spread.spread(),
                    int(members["generated"].size), pair, distance)
        add_condition_scatter(sides, condition)
        entry = condition_entry(groups, g, members, condition, specs, k, symmetric)
        if any(condition[side].observables for side in SIDES):
            entry["observables"] = condition_observables_entry(
                schema.system, {side: condition[side].observables for side in SIDES},
                entry["parameters"], n)
        per_condition.append(entry)
        range_conditions.append({"parameters": entry["parameters"], "spectra": {
            spec.name: {side: (condition[side].fields[spec.name].spectrum,
                               condition[side].fields[spec.name].snapshots) for side in SIDES}
            for spec in specs}})

    say("conservation checks")
    conservation = conservation_comparison(ref_store, gen_store, ref_indices, gen_indices)

    say("summaries")
    fields_report = {spec.name: field_summary(
        sides["reference"].fields[spec.name], sides["generated"].fields[spec.name], spec, k, r,
        condition_weighted_spectra(range_conditions, spec.name), symmetric=symmetric)
        for spec in specs}
    checks = field_checks(fields_report, limits)
    if symmetric:            # the net sign against the noise of the drawn signs
        for name, means in sides["reference"].snapshot_means.items():
            balance = sign_balance(means, sides["generated"].snapshot_means[name])
            fields_report[name]["pdf"]["sign_balance"] = balance
            checks.append(gate("sign_balance_z_max", name, abs(balance["z"]),
                               limits["sign_balance_z_max"], "max"))
    conservation, checked = conservation_checks(conservation, limits)
    checks += checked
    checks += per_condition_checks(per_condition, [spec.name for spec in specs], limits)
    for spec in specs:
        ratio, basis = field_spread(sides, per_condition, spec.name, neighbour_spread)
        fields_report[spec.name]["spread_ratio"] = ratio
        fields_report[spec.name]["spread_basis"] = basis
        fields_report[spec.name]["spread_aligned_ratio"] = field_aligned_spread(
            per_condition, spec.name)
        if basis == "nearest_reference_neighbour":
            fields_report[spec.name]["spread_neighbour_distance_median"] = float(
                np.median(neighbour_spread[spec.name].distance))
    checks += spread_checks(fields_report, limits)
    checks += scatter_checks(fields_report, limits)

    reference_features = sides["reference"].features()
    generated_features = sides["generated"].features()
    names = feature_names(specs, n)
    frechet, frechet_split = frechet_pair(reference_features, generated_features,
                                          np.array(sides["reference"].feature_owner), names)
    checks.append(gate("frechet_physics_distance", None, frechet,
                       limits["frechet_physics_distance_max"], "max"))
    minkowski = minkowski_summary(reference_features, generated_features, names, specs,
                                  levels)
    for spec in specs:
        fields_report[spec.name]["minkowski"] = minkowski[spec.name]

    observables = {side: sides[side].observables for side in SIDES}
    observables_report = {label: observable_summary(
        np.concatenate(parts), np.concatenate(observables["generated"].get(label, [np.zeros(0)])))
        for label, parts in observables["reference"].items()}
    coverage = mode_coverage(schema.system, observables)
    if coverage is not None:
        checks.append(gate("mode_coverage_min", None, coverage["coverage"],
                           limits["mode_coverage_min"], "min"))

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
            "reference": series_summary(sides["reference"].series),
            "generated": series_summary(sides["generated"].series)},
        "observables": observables_report,
        "mode_coverage": coverage,
        "per_condition": per_condition,
        "range": range_summary(range_conditions, schema.parameters, k),
        "frechet_physics_distance": frechet,
        "frechet_reference_split": frechet_split,
        "frechet_features": names,
        "checks": checks,
        **verdict(checks),
        "thresholds": limits,
    }
    shown = {name: (np.stack(sides["reference"].shown[name]),
                    np.stack(sides["generated"].shown[name]))
             for name in sides["reference"].shown
             if sides["reference"].shown[name] and sides["generated"].shown[name]}
    return ValidationResult(report=json_safe(report), samples=shown,
                            sample_labels=sample_labels)


def _reference_levels(store: FieldStore, trajectories: Sequence[int]) -> tuple[
        dict[str, float], dict[str, tuple[float, float]]]:
    """Reference mean of each field's values and (mean, std) of its scalar view."""
    sums = {name: np.zeros(3) for name in store.field_names}
    view_sums = {name: np.zeros(3) for name in store.field_names}
    ranks = {spec.name: spec.rank for spec in store.schema.fields}
    for b in trajectories:
        for name, values in read_trajectory(store, b).items():
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
