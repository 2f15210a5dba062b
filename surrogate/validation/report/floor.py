"""The noise floor beside every gated number of a report, and which floors are too noisy.

The floor is the same report computed between two simulator ensembles
(:func:`surrogate.validation.report.engine.noise_floor`): what a perfect surrogate would
score with sampling noise only. :func:`attach_floor` writes each of its numbers next to
the corresponding number of the report, and lists the checks whose floor is so large
that the reference cannot tell a good surrogate from a perfect one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from surrogate.validation.report.gates import RATIO_CHECKS, check_label

__all__ = ["NOISE_SCALED_CHECKS", "attach_floor", "floor_too_noisy"]

#: checks whose value is a z-score (a difference over its own sampling noise): their
#: floor is one draw of about a standard normal, never "too noisy"
NOISE_SCALED_CHECKS = ("sign_balance_z_max",)


def floor_too_noisy(check: Mapping[str, Any], floor: float) -> bool:
    """Whether a check's floor exceeds a third of its threshold's distance from ideal.

    Errors (ideal 0): ``floor > threshold / 3``. Ratios (ideal 1): ``|ln floor| >
    |ln threshold| / 3`` (a floor of 0 is infinitely far).
    """
    if check["check"] in NOISE_SCALED_CHECKS:      # already in units of their own noise
        return False
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
    ``fields.NAME.spectrum.scatter.floor`` (spectrum scatter ratio),
    ``fields.NAME.pdf.floor`` (W1/std), ``fields.NAME.pdf.sign_balance.floor`` (its z),
    ``fields.NAME.spread_ratio_floor``, ``fields.NAME.spread_aligned_ratio_floor``,
    ``fields.NAME.temporal_change_ratio_floor``, ``conservation.KEY.floor``,
    ``mode_coverage.floor``, ``frechet_physics_distance_floor``,
    ``range.NAME.thirds.LABEL.fields.FIELD.floor`` and ``range.NAME.end_over_middle_floor``
    (``None`` unless the floor's thirds hold the same conditions),
    ``per_condition[i].fields.NAME.spectrum_rel_error_median_floor`` (the floor's error at
    the same parameter values; ``None`` where the floor did not compare that condition);
    ``report["floor"]``
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
        if check["gated"] and value is not None and floor_too_noisy(check, value):
            too_noisy.append(check_label(check))
    for name, entry in report["fields"].items():
        theirs = other["fields"].get(name, {})
        entry["spectrum"]["floor"] = theirs.get("spectrum", {}).get("rel_error_median")
        entry["spectrum"]["scatter"]["floor"] = (
            theirs.get("spectrum", {}).get("scatter", {}).get("ratio"))
        entry["pdf"]["floor"] = theirs.get("pdf", {}).get("w1_over_std")
        if "sign_balance" in entry["pdf"]:
            entry["pdf"]["sign_balance"]["floor"] = (
                theirs.get("pdf", {}).get("sign_balance", {}).get("z"))
        entry["spread_ratio_floor"] = theirs.get("spread_ratio")
        entry["spread_aligned_ratio_floor"] = theirs.get("spread_aligned_ratio")
        if "temporal_change_ratio" in entry:
            entry["temporal_change_ratio_floor"] = theirs.get("temporal_change_ratio")
    for key, entry in report["conservation"].items():
        entry["floor"] = values.get((f"conservation {key}", None))
    if report.get("mode_coverage") and other.get("mode_coverage"):
        report["mode_coverage"]["floor"] = other["mode_coverage"]["coverage"]
        report["mode_coverage"].setdefault("switching", {})["floor"] = (
            other["mode_coverage"].get("switching", {}).get("generated"))
    report["frechet_physics_distance_floor"] = other["frechet_physics_distance"]
    floor_conditions = {_condition_key(entry["parameters"]): entry
                        for entry in other.get("per_condition", [])}
    for entry in report.get("per_condition", []):
        theirs = floor_conditions.get(_condition_key(entry["parameters"]))
        for name, numbers in entry["fields"].items():
            numbers["spectrum_rel_error_median_floor"] = (
                None if theirs is None else
                theirs["fields"].get(name, {}).get("spectrum_rel_error_median"))
    for name, entry in report.get("range", {}).items():
        theirs = other.get("range", {}).get(name)
        if theirs is None:
            continue
        # the floor's thirds are the report's when they hold the same conditions
        same = all(theirs["thirds"].get(label, {}).get("values") == third["values"]
                   and theirs["thirds"][label]["conditions"] == third["conditions"]
                   for label, third in entry["thirds"].items())
        for label, third in entry["thirds"].items():
            for field, numbers in third["fields"].items():
                numbers["floor"] = (theirs["thirds"][label]["fields"].get(field, {})
                                    .get("spectrum_rel_error_median") if same else None)
        entry["end_over_middle_floor"] = (theirs["end_over_middle"] if same
                                          else dict.fromkeys(entry["end_over_middle"]))
    report["floor"] = {"source": floor["source"], "path": floor["path"],
                       "counts": floor["counts"], "too_noisy": too_noisy,
                       "passed": other["passed"], "failures": other["failures"]}


def _condition_key(parameters: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """A per-condition entry's parameter values as a dictionary key (both reports group
    the same reference file, so equal conditions carry equal floats)."""
    return tuple(sorted((name, float(value)) for name, value in parameters.items()))
