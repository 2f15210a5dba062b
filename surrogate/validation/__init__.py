"""Physics validation: compare generated fields with reference fields.

Every function works on plain numpy arrays whose last two axes are ``(x, y)`` on a
periodic square of side ``box_size``; the docstrings state what is averaged over what.
"""

from surrogate.validation.conservation import (
    check_invariants,
    check_invariants_streaming,
    curl_violation,
    divergence_violation,
    energy_budget_residual,
    energy_enstrophy,
)
from surrogate.validation.morphology import gaussian_expectations, minkowski_functionals
from surrogate.validation.spectra import (
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
    "frechet_distance",
    "gaussian_expectations",
    "ks_pvalue",
    "minkowski_functionals",
    "moments",
    "nrmse",
    "pdf",
    "power_spectrum",
    "rmse",
    "spectrum_relative_error",
    "spread_ratio",
    "structure_function",
    "vrmse",
    "wasserstein1_over_std",
]
