"""The pass thresholds of a validation report: defaults, their meaning, overrides.

:data:`DEFAULT_THRESHOLDS` holds one number per gated check, :data:`THRESHOLD_DOCS` says
what each one bounds; a TOML file of the same flat keys overrides them
(:func:`load_thresholds`; ``inf`` or ``0`` disables a maximum / minimum). The checks
that read them are in :mod:`surrogate.validation.report.gates`.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_THRESHOLDS", "THRESHOLD_DOCS", "load_thresholds", "resolve_thresholds"]

DEFAULT_THRESHOLDS: dict[str, float] = {
    "spectrum_rel_error_median": 0.25,
    "pdf_w1_over_std": 0.15,
    "pdf_ks_pvalue_min": 0.0,
    "spread_ratio_min": 0.5,
    "spread_ratio_max": 2.0,
    "spectrum_scatter_ratio_min": 0.0,
    "spectrum_scatter_ratio_max": math.inf,
    "temporal_change_ratio_min": 0.5,
    "temporal_change_ratio_max": 2.0,
    "conservation_absolute": 0.01,
    "conservation_factor": 2.0,
    "per_condition_spectrum_rel_error_median": 0.5,
    "frechet_physics_distance_max": math.inf,
    "mode_coverage_min": 0.5,
    "sign_balance_z_max": 4.0,
}

THRESHOLD_DOCS: dict[str, str] = {
    "spectrum_rel_error_median": "max of the median |P_gen/P_ref - 1| over resolved shells, "
                                 "per field",
    "pdf_w1_over_std": "max of W1(gen, ref) / std(ref) of the pooled values, per field "
                       "(of the laws symmetrised over the sign for a system that declares "
                       "negate)",
    "sign_balance_z_max": "max |z| of the difference of the two ensembles' net means over "
                          "the noise of fairly drawn signs, per scalar field of a system "
                          "that declares negate (about standard normal for a generator "
                          "with the symmetry)",
    "pdf_ks_pvalue_min": "min KS p-value, per field (0: not gated; pixels are correlated, "
                         "so p-values are optimistic)",
    "spread_ratio_min": "min ensemble spread ratio gen/ref (0 is mode collapse)",
    "spread_ratio_max": "max ensemble spread ratio gen/ref",
    "spectrum_scatter_ratio_min": "min ratio gen/ref of the within-condition std of one "
                                  "snapshot's log shell power (0: not gated; its thresholds "
                                  "are not yet calibrated on trained surrogates)",
    "spectrum_scatter_ratio_max": "max of that ratio (inf: not gated; > 1: each sample's "
                                  "spectrum fluctuates more than a simulated one's)",
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
                         "is never generated; under a declared sign symmetry the reference's "
                         "two fractions are replaced by their mean)",
    "frechet_physics_distance_max": "max Fréchet physics distance (inf: not gated; its scale "
                                    "depends on sample size, compare it with "
                                    "frechet_reference_split)",
}


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
