"""Physics validation: compare generated fields with reference fields.

Every metric works on plain numpy arrays whose last two axes are ``(x, y)`` on a
periodic square of side ``box_size``; the docstrings state what is averaged over what.
:func:`validate_files` runs all of them on two field-store files, per condition, and
:func:`write_report` writes ``report.json``, ``report.md`` and the figures
(``surrogate validate``).
"""

from surrogate.validation.conditions import group_conditions
from surrogate.validation.conservation import (
    check_invariants,
    check_invariants_streaming,
    curl_violation,
    divergence_violation,
    energy_budget_residual,
    energy_enstrophy,
)
from surrogate.validation.features import (
    feature_names,
    frechet_physics_distance,
    physics_features,
)
from surrogate.validation.morphology import gaussian_expectations, minkowski_functionals
from surrogate.validation.report import (
    DEFAULT_THRESHOLDS,
    ValidationResult,
    load_thresholds,
    validate_files,
    write_report,
)
from surrogate.validation.spectra import (
    band_masks,
    band_summary,
    binned_spectral_mse,
    cross_spectrum,
    power_spectrum,
    spectrum_relative_error,
)
from surrogate.validation.statistics import (
    correlation_function,
    frechet_distance,
    ks_pvalue,
    moments,
    nrmse,
    pdf,
    rmse,
    spread_ratio,
    structure_function,
    vrmse,
    wasserstein1_over_std,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ValidationResult",
    "band_masks",
    "band_summary",
    "binned_spectral_mse",
    "check_invariants",
    "check_invariants_streaming",
    "correlation_function",
    "cross_spectrum",
    "curl_violation",
    "divergence_violation",
    "energy_budget_residual",
    "energy_enstrophy",
    "feature_names",
    "frechet_distance",
    "frechet_physics_distance",
    "gaussian_expectations",
    "group_conditions",
    "ks_pvalue",
    "load_thresholds",
    "minkowski_functionals",
    "moments",
    "nrmse",
    "pdf",
    "physics_features",
    "power_spectrum",
    "rmse",
    "spectrum_relative_error",
    "spread_ratio",
    "structure_function",
    "validate_files",
    "vrmse",
    "wasserstein1_over_std",
    "write_report",
]
