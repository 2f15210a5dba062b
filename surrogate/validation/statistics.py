"""Field-error metrics, one-point and two-point statistics, spread and Fréchet distance.

Array conventions (as in :mod:`simulators.grid`): fields are real arrays
``field[..., ix, iy]`` on the periodic square ``[0, L)^2`` with ``N`` points per side,
``dx = L / N``. The last two axes are space; leading axes are samples / time / batch.

Reduction conventions, stated once and repeated in each docstring:

* Paired errors (:func:`rmse`, :func:`nrmse`, :func:`vrmse`) reduce the two spatial axes
  of each field and return one value per leading index (shape ``field.shape[:-2]``; a
  0-d array for a single field). The caller decides how to average over samples.
* One-point statistics (:func:`moments`, :func:`pdf`, :func:`wasserstein1_over_std`,
  :func:`ks_pvalue`) pool *all* values of the input array regardless of shape.
* Two-point functions (:func:`correlation_function`, :func:`structure_function`) are
  computed per field (leading axes kept) and averaged over space and over the
  displacements in each radial bin.
* :func:`spread_ratio` takes (S, ...) samples at one condition: std over axis 0, mean
  over the remaining axes (:class:`EnsembleSpread`, the streaming form that the
  validation report uses too).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.stats

from surrogate.validation.spectra import _check_box_size

__all__ = [
    "MAX_POOLED_VALUES",
    "AlignedEnsembleSpread",
    "EnsembleSpread",
    "correlation_function",
    "ensemble_spread",
    "frechet_distance",
    "ks_pvalue",
    "moments",
    "nrmse",
    "pdf",
    "rmse",
    "spread_ratio",
    "structure_function",
    "vrmse",
    "wasserstein1_over_std",
]

#: The Well's regulariser added to the normalising mean square / variance.
WELL_EPS = 1e-7

#: Default cap on the number of pooled values used by W1 and KS (see ``_pooled``).
MAX_POOLED_VALUES = 1_000_000


# --------------------------------------------------------------------------- helpers
def _finite_float(array: np.ndarray, name: str, min_ndim: int = 0) -> np.ndarray:
    values = np.asarray(array)
    if np.iscomplexobj(values):
        raise ValueError(f"{name} must be real, got dtype {values.dtype}")
    values = values.astype(np.float64, copy=False)
    if values.ndim < min_ndim:
        raise ValueError(f"{name} needs at least {min_ndim} dimensions, got {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or Inf values")
    return values


def _paired(generated: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gen = _finite_float(generated, "generated", min_ndim=2)
    ref = _finite_float(reference, "reference", min_ndim=2)
    if gen.shape != ref.shape:
        raise ValueError(f"generated and reference must have the same shape, got "
                         f"{gen.shape} and {ref.shape}")
    return gen, ref


def _pooled(values: np.ndarray, max_values: int) -> np.ndarray:
    """All values flattened in C order, thinned deterministically to ``<= max_values``.

    Rule: if ``size > max_values`` keep every ``s``-th value, ``s = ceil(size /
    max_values)``, starting with the first (``flat[::s]``). No random numbers are used,
    so results are reproducible; with 1000 fields of 128^2 (16.4 M values) ``s = 17``.
    """
    if max_values < 1:
        raise ValueError(f"max_values must be >= 1, got {max_values}")
    flat = values.ravel()
    if flat.size > max_values:
        flat = flat[:: math.ceil(flat.size / max_values)]
    return flat


def _fields(field: np.ndarray, name: str = "field") -> np.ndarray:
    array = _finite_float(field, name, min_ndim=2)
    n_x, n_y = array.shape[-2:]
    if n_x != n_y or n_x < 4:
        raise ValueError(f"{name} must be (..., N, N) with N >= 4, got {array.shape}")
    return array


# --------------------------------------------------------------------- paired errors
def rmse(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Root-mean-square error per field.

    ``RMSE = sqrt( mean_x (g - r)^2 )`` with the mean over the last two (spatial) axes.

    Args:
        generated, reference: arrays of equal shape (..., Nx, Ny) [f].
    Returns:
        Array of shape ``generated.shape[:-2]`` [f] (0-d for a single field); nothing is
        averaged over leading axes.
    """
    gen, ref = _paired(generated, reference)
    return np.sqrt(np.mean((gen - ref) ** 2, axis=(-2, -1)))


def nrmse(generated: np.ndarray, reference: np.ndarray, *, eps: float = WELL_EPS
          ) -> np.ndarray:
    """RMSE normalised by the reference's RMS norm, per field (The Well's ``NRMSE``).

    ``NRMSE = sqrt( mean_x (g - r)^2 / (mean_x r^2 + eps) )``, means over the last two
    axes, ``eps = 1e-7`` as in The Well (``the_well/benchmark/metrics/spatial.py``,
    ``NMSE`` with ``norm_mode="norm"``); note ``eps`` is added to the mean square, in
    units of [f^2].

    Args:
        generated, reference: arrays of equal shape (..., Nx, Ny) [f].
        eps: regulariser [f^2].
    Returns:
        Dimensionless array of shape ``generated.shape[:-2]`` (per field, not averaged).
    """
    gen, ref = _paired(generated, reference)
    mse = np.mean((gen - ref) ** 2, axis=(-2, -1))
    return np.sqrt(mse / (np.mean(ref**2, axis=(-2, -1)) + eps))


def vrmse(generated: np.ndarray, reference: np.ndarray, *, eps: float = WELL_EPS,
          ddof: int = 1) -> np.ndarray:
    """Variance-scaled RMSE per field (The Well's ``VRMSE``).

    ``VRMSE = sqrt( mean_x (g - r)^2 / (std_x(r)^2 + eps) )`` with ``std_x`` the standard
    deviation of the reference over the two spatial axes of each field. Following The
    Well's code (``VRMSE -> NRMSE(norm_mode="std")``, ``torch.std`` default) the variance
    is Bessel-corrected, ``ddof = 1`` (the paper writes the population variance; the
    difference is a factor ``1 - 1/(Nx Ny)``), and ``eps = 1e-7`` [f^2]. A constant
    prediction equal to the reference mean scores ``~1``.

    Args:
        generated, reference: arrays of equal shape (..., Nx, Ny) [f].
        eps: regulariser added to the variance [f^2].
        ddof: delta degrees of freedom of the reference variance.
    Returns:
        Dimensionless array of shape ``generated.shape[:-2]`` (per field, not averaged).
    """
    gen, ref = _paired(generated, reference)
    mse = np.mean((gen - ref) ** 2, axis=(-2, -1))
    n_space = ref.shape[-2] * ref.shape[-1]
    if n_space - ddof <= 0:
        raise ValueError(f"need more than ddof={ddof} spatial points, got {n_space}")
    variance = np.var(ref, axis=(-2, -1), ddof=ddof)
    return np.sqrt(mse / (variance + eps))


# ------------------------------------------------------------- one-point statistics
def moments(samples: np.ndarray) -> dict[str, float]:
    """First four moments of all values pooled (any shape).

    ``mean = <x>``, ``std = sqrt(<(x - mean)^2>)`` (population, ddof = 0),
    ``skewness = <(x - mean)^3> / std^3``, ``kurtosis = <(x - mean)^4> / std^4 - 3``
    (excess; 0 for a Gaussian). For constant data skewness and kurtosis are NaN.

    Returns:
        ``{"mean", "std", "skewness", "kurtosis"}`` as Python floats.
    """
    values = _finite_float(samples, "samples").ravel()
    mean = float(np.mean(values))
    centred = values - mean
    m2 = float(np.mean(centred**2))
    if m2 == 0.0:
        return {"mean": mean, "std": 0.0, "skewness": math.nan, "kurtosis": math.nan}
    m3 = float(np.mean(centred**3))
    m4 = float(np.mean(centred**4))
    return {"mean": mean, "std": math.sqrt(m2), "skewness": m3 / m2**1.5,
            "kurtosis": m4 / m2**2 - 3.0}


def pdf(samples: np.ndarray, bins: int | np.ndarray = 64,
        value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram estimate of the one-point PDF of all values pooled.

    ``density_j = count_j / (n_total * width_j)``, so ``sum density * width = 1`` over
    values inside the edges (values outside explicit edges are not counted). Pass the
    same ``bins`` edges for generated and reference fields to compare them.

    Args:
        samples: any shape [f].
        bins: number of equal-width bins, or the (n_bins + 1,) edges [f].
        value_range: (min, max) for integer ``bins``; default the data range.
    Returns:
        ``(edges, density)`` of shapes (n_bins + 1,) [f] and (n_bins,) [1/f].
    """
    values = _finite_float(samples, "samples").ravel()
    density, edges = np.histogram(values, bins=bins, range=value_range, density=True)
    return edges, density


def wasserstein1_over_std(generated: np.ndarray, reference: np.ndarray, *,
                          max_values: int = MAX_POOLED_VALUES,
                          scale: float | None = None) -> float:
    """Wasserstein-1 distance between pooled value distributions, over the reference std.

    ``W1(g, r) / std(r)`` with ``W1 = int |F_g(x) - F_r(x)| dx`` between the empirical
    CDFs of all values of each array (``scipy.stats.wasserstein_distance``). Each array
    is pooled and thinned to at most ``max_values`` values by the deterministic stride
    rule of ``_pooled`` (keep ``flat[::ceil(size / max_values)]``); ``std(r)`` is the
    population std of all (unthinned) reference values. Dimensionless; a shift of a
    Gaussian by ``delta`` gives ``|delta| / sigma``.

    ``scale`` replaces ``std(r)`` as the normalisation when given (e.g. the std of a
    distribution of which ``r`` is a function).

    Raises:
        ValueError: non-finite input, a constant reference (without ``scale``) or a
        ``scale`` that is not positive.
    """
    gen = _finite_float(generated, "generated")
    ref = _finite_float(reference, "reference")
    problem = ("reference has zero standard deviation" if scale is None
               else f"scale must be positive, got {scale}")
    scale = float(np.std(ref)) if scale is None else float(scale)
    if not scale > 0.0:
        raise ValueError(problem)
    distance = scipy.stats.wasserstein_distance(_pooled(gen, max_values),
                                                _pooled(ref, max_values))
    return float(distance) / scale


def ks_pvalue(generated: np.ndarray, reference: np.ndarray, *,
              max_values: int = MAX_POOLED_VALUES) -> float:
    """Two-sample Kolmogorov–Smirnov p-value of the pooled value distributions.

    ``scipy.stats.ks_2samp`` on all values of each array, thinned by the same
    deterministic stride rule as :func:`wasserstein1_over_std`. The test assumes
    independent draws, but pixels of one field are spatially correlated, so the
    effective sample size is far smaller than the number of values and the p-values are
    optimistic (too small: differences look more significant than they are). Use it to
    rank or flag, not as a calibrated significance level.
    """
    gen = _finite_float(generated, "generated")
    ref = _finite_float(reference, "reference")
    gen, ref = _pooled(gen, max_values), _pooled(ref, max_values)
    # the exact distribution costs ~0.5 s at 10^6 values and equals the asymptotic one
    # to far better than the p-value's meaning here; scipy's "auto" uses it below 10^4
    method = "asymp" if min(gen.size, ref.size) > 10_000 else "auto"
    result = scipy.stats.ks_2samp(gen, ref, method=method)
    return float(result.pvalue)


# ------------------------------------------------------------- two-point statistics
def _displacement_shells(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shell index ``round(|d|)`` of every periodic displacement ``d`` (minimum image),
    the number of displacements and mean ``|d|`` per shell ``0 .. n // 2``."""
    d = np.rint(np.fft.fftfreq(n) * n)
    d2 = d[:, None] ** 2 + d[None, :] ** 2
    shell = np.floor(np.sqrt(d2) + 0.5).astype(np.int64)    # |d|^2 integer: no ties
    n_shells = n // 2 + 1
    keep = shell < n_shells
    counts = np.bincount(shell[keep], minlength=n_shells).astype(np.float64)
    mean_d = np.bincount(shell[keep], weights=np.sqrt(d2)[keep], minlength=n_shells) / counts
    return np.where(keep, shell, n_shells), counts, mean_d


def correlation_function(field: np.ndarray, box_size: float, *, subtract_mean: bool = True
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic two-point (auto-covariance) function per field via Wiener–Khinchin.

    For each field, with ``g = f - mean_x f`` (or ``g = f`` if ``subtract_mean`` is
    False) and periodic displacements ``d`` (integer vectors, minimum image)::

        C(d) = (1 / N^2) sum_x g(x) g(x + d dx) = IFFT2(|FFT2(g)|^2)(d) / N^2
        xi(r_i) = mean of C(d) over the displacements with |d| in [i - 1/2, i + 1/2)

    for ``i = 0 .. N // 2`` (shell 0 is ``d = 0``, so ``xi(0)`` is the spatial variance);
    displacements with ``|d| >= N // 2 + 1/2`` (corners) are dropped. ``r_i`` is the mean
    ``|d| dx`` of the displacements in shell ``i`` [length]. A single mode
    ``A cos(k0 x)`` gives ``C(d) = (A^2 / 2) cos(k0 d_x dx)``, i.e. ``xi`` is that cosine
    averaged over each shell.

    Args:
        field: real array (..., N, N), ``N >= 4`` [f].
        box_size: side length ``L`` [length].
        subtract_mean: remove each field's spatial mean first (covariance) or not.
    Returns:
        ``(r, xi)``: r (N // 2 + 1,) [length]; xi (..., N // 2 + 1) [f^2], per field.
    """
    fields = _fields(field)
    box = _check_box_size(box_size)
    n = fields.shape[-1]
    if subtract_mean:
        fields = fields - fields.mean(axis=(-2, -1), keepdims=True)
    spectrum = scipy.fft.rfft2(fields, axes=(-2, -1))
    covariance = scipy.fft.irfft2(spectrum.real**2 + spectrum.imag**2, s=(n, n),
                                  axes=(-2, -1)) / n**2
    shell, counts, mean_d = _displacement_shells(n)
    flat = covariance.reshape(-1, n * n)
    sums = np.stack([np.bincount(shell.ravel(), weights=row, minlength=counts.size + 1)
                     for row in flat])[:, : counts.size]
    xi = (sums / counts).reshape(*fields.shape[:-2], counts.size)
    return mean_d * (box / n), xi


def structure_function(field: np.ndarray, box_size: float, order: float = 2
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Structure function of grid-axis increments, per field.

    ``S_p(r_n) = (1/2) [ <|f(x + n dx e_x) - f(x)|^p>_x + <|f(x + n dx e_y) - f(x)|^p>_x ]``
    for ``n = 1 .. N // 2``, ``r_n = n dx`` (periodic increments along the two grid axes,
    averaged over all positions and over both axes). For ``order == 2`` it is computed
    with 1-D FFTs as ``2 (<g^2> - C_axis(n))``, ``g = f - mean f`` (exact up to
    round-off relative to the variance); other orders loop over ``n`` (cost
    ``O(N^3)`` per field). A single mode ``A cos(k0 x)`` gives
    ``S_2 = A^2 (1 - cos k0 r) / 2`` (the y increments vanish).

    Args:
        field: real array (..., N, N), ``N >= 4`` [f].
        box_size: side length ``L`` [length].
        order: ``p > 0``.
    Returns:
        ``(r, S)``: r (N // 2,) [length]; S (..., N // 2) [f^p], per field.
    """
    fields = _fields(field)
    box = _check_box_size(box_size)
    if not (math.isfinite(order) and order > 0):
        raise ValueError(f"order must be positive and finite, got {order!r}")
    n = fields.shape[-1]
    lags = np.arange(1, n // 2 + 1)
    if order == 2:
        g = fields - fields.mean(axis=(-2, -1), keepdims=True)
        mean_square = np.mean(g**2, axis=(-2, -1))[..., None]
        result = np.zeros((*fields.shape[:-2], lags.size))
        for axis in (-2, -1):
            spec = scipy.fft.rfft(g, axis=axis)
            auto = scipy.fft.irfft(spec.real**2 + spec.imag**2, n=n, axis=axis) / n
            other = -1 if axis == -2 else -2
            auto = auto.mean(axis=other)[..., lags]        # lag axis is now last
            result += (mean_square - auto)                # 2 (<g^2> - C) / 2 axes
        return lags * (box / n), result
    result = np.empty((*fields.shape[:-2], lags.size))
    for i, lag in enumerate(lags):
        total = 0.0
        for axis in (-2, -1):
            increment = np.roll(fields, -lag, axis=axis) - fields
            total = total + np.mean(np.abs(increment) ** order, axis=(-2, -1))
        result[..., i] = total / 2.0
    return lags * (box / n), result


# ------------------------------------------------------------------------ diversity
class EnsembleSpread:
    """Streaming ensemble spread: mean over pixels of the std over samples.

    For samples ``x_1 .. x_S`` of one shape (pixels ``p``, and any times or components)::

        spread = mean_p sqrt( sum_s (d_sp - dbar_p)^2 / (S - ddof) ),   d_s = x_s - x_1

    i.e. the per-pixel sample standard deviation (Bessel's ``ddof = 1`` by default),
    averaged over pixels. It is accumulated one sample at a time from the pixelwise sums
    of ``d`` and ``d^2`` in float64, as ``(sum d^2 - (sum d)^2 / S) / (S - ddof)``;
    the shift by the first sample leaves the std unchanged, makes identical samples give
    exactly 0 and keeps the two sums of the order of the spread (no cancellation
    against a large mean). Memory: three arrays of one sample's shape.

    This is the one definition of the spread in the package: :func:`spread_ratio` and
    the validation report (per condition, and across conditions) use it. For two
    samples it is ``mean_p |x_1p - x_2p| / sqrt 2``.
    """

    def __init__(self) -> None:
        self.count = 0
        self.first: np.ndarray | None = None
        self.total: np.ndarray | None = None
        self.total_sq: np.ndarray | None = None

    def add(self, sample: np.ndarray) -> None:
        """Accumulate one sample (any shape, the same for every sample) [f]."""
        values = np.asarray(sample, dtype=np.float64)
        if self.first is None:
            self.first = values.copy()
            self.total = np.zeros_like(values)
            self.total_sq = np.zeros_like(values)
        elif values.shape != self.first.shape:
            raise ValueError(f"sample shape {values.shape} differs from the first "
                             f"sample's {self.first.shape}")
        deviation = values - self.first
        self.total += deviation
        self.total_sq += deviation * deviation
        self.count += 1

    def spread(self, ddof: int = 1) -> float:
        """The spread [f]; NaN with ``ddof`` or fewer samples."""
        if self.count <= ddof:
            return math.nan
        variance = (self.total_sq - self.total**2 / self.count) / (self.count - ddof)
        return float(np.mean(np.sqrt(np.maximum(variance, 0.0))))

    def ratio_to(self, reference: EnsembleSpread) -> float:
        """``spread(self) / spread(reference)``: NaN when the reference's spread is 0 or
        undefined (the report's convention: not evaluated, rather than an error)."""
        reference_spread = reference.spread()
        return self.spread() / reference_spread if reference_spread > 0 else math.nan


class AlignedEnsembleSpread(EnsembleSpread):
    """:class:`EnsembleSpread` of samples first moved into register with the first one.

    Each sample after the first is rolled on the periodic grid by the whole-cell shift
    ``s`` that maximises its cross-correlation with the first sample,
    ``C(s) = sum_p sum_rest x_1(p) x(p + s)`` (one FFT pair; ``rest`` = every axis but
    the two spatial ones, so the times and components of one sample move together),
    and then accumulated as by :class:`EnsembleSpread`.

    The plain spread counts a pattern repeated at different places in different samples
    as spread; this one does not: samples that are one field at random shifts give
    exactly 0. Applied alike to generated and simulated ensembles, the ratio of the two
    is a mode-collapse diagnostic that a shift-equivariant generator (which places
    whatever it draws at a uniformly random shift) cannot pass by its shifts alone.
    Independent samples also align a little by chance, so an aligned spread is below
    the plain one for simulations too; only ratios of aligned spreads are meaningful.

    Args:
        spatial_axes: the two axes (x, y) of one sample, e.g. ``(1, 2)`` for a
            trajectory ``(T, N, N)`` or ``(T, N, N, 2)``.
    """

    def __init__(self, spatial_axes: tuple[int, int] = (-2, -1)) -> None:
        super().__init__()
        self.spatial_axes = tuple(spatial_axes)

    def add(self, sample: np.ndarray) -> None:
        """Accumulate one sample (any shape with the two spatial axes), aligned [f]."""
        values = np.asarray(sample, dtype=np.float64)
        if self.first is not None and values.shape == self.first.shape:
            axes = tuple(axis % values.ndim for axis in self.spatial_axes)
            rest = tuple(axis for axis in range(values.ndim) if axis not in axes)
            first_hat = scipy.fft.rfftn(self.first, axes=axes)
            values_hat = scipy.fft.rfftn(values, axes=axes)
            shape = tuple(values.shape[axis] for axis in axes)
            correlation = scipy.fft.irfftn(np.conj(first_hat) * values_hat, s=shape,
                                           axes=axes).sum(axis=rest)
            shift = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
            values = np.roll(values, tuple(-int(cell) for cell in shift), axis=axes)
        super().add(values)


def ensemble_spread(samples: np.ndarray, *, ddof: int = 1) -> float:
    """:class:`EnsembleSpread` of the samples along axis 0 of ``samples`` (S, ...) [f]."""
    accumulator = EnsembleSpread()
    for sample in samples:
        accumulator.add(sample)
    return accumulator.spread(ddof)


def spread_ratio(generated: np.ndarray, reference: np.ndarray, *, ddof: int = 1) -> float:
    """Ensemble-spread ratio at one condition.

    ``spread(X) = mean over pixels of std over samples (axis 0, Bessel ddof = 1)``
    (:class:`EnsembleSpread`); returns ``spread(generated) / spread(reference)``: 1 for
    matching diversity, 0 for a generator that repeats one sample (mode collapse), > 1
    for too much spread.

    Args:
        generated: (S_g, ...) samples at one condition, ``S_g >= 2`` [f].
        reference: (S_r, ...) samples with the same trailing shape, ``S_r >= 2`` [f].
    Returns:
        Dimensionless float.
    Raises:
        ValueError: fewer than ``ddof + 1`` samples, mismatched shapes, zero reference
            spread.
    """
    gen = _finite_float(generated, "generated", min_ndim=1)
    ref = _finite_float(reference, "reference", min_ndim=1)
    if gen.shape[1:] != ref.shape[1:]:
        raise ValueError(f"sample shapes differ: {gen.shape[1:]} and {ref.shape[1:]}")
    if min(gen.shape[0], ref.shape[0]) <= ddof:
        raise ValueError(f"need more than {ddof} samples along axis 0, got "
                         f"{gen.shape[0]} and {ref.shape[0]}")
    reference_spread = ensemble_spread(ref, ddof=ddof)
    if reference_spread == 0.0:
        raise ValueError("reference samples have zero spread")
    return ensemble_spread(gen, ddof=ddof) / reference_spread


# --------------------------------------------------------------------------- Fréchet
def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """``Tr (C_a C_b)^(1/2)`` for symmetric positive semi-definite ``C_a``, ``C_b``.

    ``C_a C_b`` is similar to the symmetric PSD matrix ``M = C_a^(1/2) C_b C_a^(1/2)``, so
    its eigenvalues are real and non-negative and the trace of its square root is
    ``sum_i sqrt(lambda_i(M))``. Computing it from ``numpy.linalg.eigh`` (negative
    round-off eigenvalues clipped to 0) stays real and finite for singular and badly
    conditioned covariances, where ``scipy.linalg.sqrtm`` of the non-symmetric product
    can return large spurious imaginary parts.
    """
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    middle = 0.5 * (middle + middle.T)
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0.0, None))))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID formula).

    ``d^2 = |mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2))`` with sample means and
    covariances (``ddof = 1``) over the rows. ``Tr (C_a C_b)^(1/2)`` is computed as
    ``sum sqrt(eig(C_a^(1/2) C_b C_a^(1/2)))`` with symmetric eigendecompositions, which
    is exact in exact arithmetic and stays real for singular or ill-conditioned
    covariances (many features, few samples). The result is clipped at 0 (round-off can
    make it ``-1e-15``).

    Args:
        features_a: (n_a, d) feature matrix, ``n_a >= 2`` (a 1-D array is (n_a, 1)).
        features_b: (n_b, d) feature matrix, ``n_b >= 2``.
    Returns:
        ``d^2`` as a float, in squared feature units (not its square root, as for FID).
    """
    a = _finite_float(features_a, "features_a")
    b = _finite_float(features_b, "features_b")
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (n, d) with equal d, got {a.shape} and {b.shape}")
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError("need at least 2 rows in each feature matrix")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                  - 2.0 * _trace_sqrt_product(cov_a, cov_b))
    return max(value, 0.0)
