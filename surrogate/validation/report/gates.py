"""The gated checks of a validation report: each number against its threshold.

A check is a dict ``{"check", "field", "value", "threshold", "kind", "gated",
"evaluated", "passed"}`` (:func:`gate`): ``kind`` is ``"max"`` (passes when ``value <=
threshold``) or ``"min"`` (``value >= threshold``); a check whose value is undefined
(NaN, ``None``) is not evaluated and does not fail; a threshold of ``inf`` (max) or
``<= 0`` (min) disables it (evaluated, not gated). The report passes when every gated
check passes (:func:`verdict`). The thresholds are those of :mod:`.thresholds`; the
values are read from the report's entries (:mod:`.summaries`), in the order the report
lists them: per field the spectrum, PDF and temporal checks, then conservation, the
per-condition spectrum, the spread, the spectrum scatter, the Fréchet distance and the
mode coverage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from surrogate.validation.report.summaries import median_over_conditions, violation_number

__all__ = ["RATIO_CHECKS", "check_label", "conservation_checks", "failure_text",
           "field_checks", "gate", "per_condition_checks", "scatter_checks", "spread_checks",
           "verdict"]

#: checks of a ratio whose ideal value is 1 (the others are errors whose ideal is 0)
RATIO_CHECKS = ("spread_ratio_min", "spread_ratio_max", "temporal_change_ratio_min",
                "temporal_change_ratio_max", "mode_coverage_min", "spectrum_scatter_ratio_min",
                "spectrum_scatter_ratio_max")


def gate(check: str, field_name: str | None, value: float, threshold: float, kind: str
         ) -> dict[str, Any]:
    """One gated (or disabled) check: ``value <= threshold`` (max) or ``>=`` (min)."""
    disabled = (kind == "max" and math.isinf(threshold)) or (kind == "min" and threshold <= 0)
    evaluated = not (value is None or (isinstance(value, float) and math.isnan(value)))
    passed = (not evaluated or disabled
              or (value <= threshold if kind == "max" else value >= threshold))
    return {"check": check, "field": field_name, "value": value, "threshold": threshold,
            "kind": kind, "gated": evaluated and not disabled, "evaluated": evaluated,
            "passed": bool(passed)}


def check_label(check: Mapping[str, Any]) -> str:
    """``"name of field"`` (or ``"name"`` for a check of no one field)."""
    return check["check"] + (f" of {check['field']}" if check["field"] else "")


def failure_text(check: Mapping[str, Any]) -> str:
    """``"<label> = <value> > <threshold>"`` (``<`` for a minimum)."""
    relation = ">" if check["kind"] == "max" else "<"
    return f"{check_label(check)} = {check['value']:.4g} {relation} {check['threshold']:.4g}"


def field_checks(fields: Mapping[str, Mapping[str, Any]], limits: Mapping[str, float]
                 ) -> list[dict[str, Any]]:
    """Per field (``report["fields"]``): median spectrum error, W1 / std, KS p-value and,
    with >= 2 times, the temporal change ratio against its two bounds."""
    checks = []
    for name, entry in fields.items():
        checks.append(gate("spectrum_rel_error_median", name,
                           entry["spectrum"]["rel_error_median"],
                           limits["spectrum_rel_error_median"], "max"))
        checks.append(gate("pdf_w1_over_std", name, entry["pdf"]["w1_over_std"],
                           limits["pdf_w1_over_std"], "max"))
        checks.append(gate("pdf_ks_pvalue", name, entry["pdf"]["ks_pvalue"],
                           limits["pdf_ks_pvalue_min"], "min"))
        if "temporal_change_ratio" in entry:
            ratio = entry["temporal_change_ratio"]
            checks.append(gate("temporal_change_ratio_min", name, ratio,
                               limits["temporal_change_ratio_min"], "min"))
            checks.append(gate("temporal_change_ratio_max", name, ratio,
                               limits["temporal_change_ratio_max"], "max"))
    return checks


def conservation_checks(comparison: Mapping[str, Mapping[str, Any]],
                        limits: Mapping[str, float]
                        ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Judge each conservation entry that is not ``skipped``: the generated violation may
    be at most ``allowed = max(conservation_absolute, conservation_factor * reference)``.

    Returns:
        The entries with ``allowed`` and ``passed`` added to the judged ones, and their
        checks (named ``"conservation <key>"``).
    """
    entries, checks = {}, []
    for key, entry in comparison.items():
        if "skipped" in entry:
            entries[key] = dict(entry)
            continue
        reference = violation_number(entry["reference"])
        allowed = max(limits["conservation_absolute"], limits["conservation_factor"] * reference)
        check = gate(f"conservation {key}", None, violation_number(entry["generated"]),
                     allowed, "max")
        entries[key] = {**entry, "allowed": allowed, "passed": check["passed"]}
        checks.append(check)
    return entries, checks


def per_condition_checks(per_condition: Sequence[Mapping[str, Any]], names: Sequence[str],
                         limits: Mapping[str, float]) -> list[dict[str, Any]]:
    """Per field, the median over conditions of each condition's median spectrum error."""
    checks = []
    for name in names:
        value = median_over_conditions(per_condition, name, "spectrum_rel_error_median")
        value = math.nan if value is None else value
        checks.append(gate("per_condition_spectrum_rel_error_median", name, value,
                           limits["per_condition_spectrum_rel_error_median"], "max"))
    return checks


def spread_checks(fields: Mapping[str, Mapping[str, Any]], limits: Mapping[str, float]
                  ) -> list[dict[str, Any]]:
    """Per field, the spread ratio against its two bounds."""
    checks = []
    for name, entry in fields.items():
        ratio = entry["spread_ratio"]
        checks.append(gate("spread_ratio_min", name, ratio, limits["spread_ratio_min"], "min"))
        checks.append(gate("spread_ratio_max", name, ratio, limits["spread_ratio_max"], "max"))
    return checks


def verdict(checks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"failures", "not_evaluated", "passed"}`` of a list of checks."""
    gated = [c for c in checks if c["gated"]]
    return {"failures": [failure_text(c) for c in gated if not c["passed"]],
            "not_evaluated": [check_label(c) for c in checks if not c["evaluated"]],
            "passed": all(c["passed"] for c in gated)}


def scatter_checks(fields: Mapping[str, Mapping[str, Any]], limits: Mapping[str, float]
                   ) -> list[dict[str, Any]]:
    """Per field, the spectrum scatter ratio (``spectrum.scatter.ratio``) against its two
    bounds (by default disabled: evaluated and listed, not gated)."""
    checks = []
    for name, entry in fields.items():
        ratio = entry["spectrum"]["scatter"]["ratio"]
        checks.append(gate("spectrum_scatter_ratio_min", name, ratio,
                           limits["spectrum_scatter_ratio_min"], "min"))
        checks.append(gate("spectrum_scatter_ratio_max", name, ratio,
                           limits["spectrum_scatter_ratio_max"], "max"))
    return checks
