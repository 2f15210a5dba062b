"""Isotropic power spectra, spectral errors and The Well's binned spectral MSE.

Conventions (the same as :mod:`simulators.grid`): a field is a real array indexed
``field[..., ix, iy]`` on the periodic square ``[0, L)^2`` with ``N`` points per side,
``dx = L / N``; the last two axes are space, every leading axis is a batch axis. The
discrete Fourier transform is numpy's unnormalised forward FFT
``F(m) = sum_j f(x_j) exp(-i k_m . x_j)`` and wavenumbers are angular,
``k_m = 2 pi m / L`` with integer ``m = (m_x, m_y)``, ``m_x, m_y in [-N/2, N/2)``.

Power spectrum normalisation (cosmology / powerbox default, ``a = b = 1``)::

    P_hat(k_m) = |dx^2 F(m)|^2 / L^2                     [field^2 * length^2]

``dx^2 F`` approximates the continuous transform ``int f exp(-i k.x) d^2x``. With this
choice a stationary Gaussian field with spectrum ``P0(k)`` has
``E[P_hat(k_m)] = P0(|k_m|)`` at every mode ``m != 0`` and, by Parseval,
``sum_{all m} P_hat(k_m) / L^2 = mean_x f^2``; the ``m = 0`` term equals
``(mean_x f)^2`` so ``sum_{m != 0} P_hat / L^2 = Var_x f`` (population variance).

Shells: shell ``i = 1 .. N // 2`` holds the modes with ``|m|`` in ``[i - 1/2, i + 1/2)``
(width ``2 pi / L`` in ``k``). ``m = 0`` is never in a shell. By default the "corner"
modes with ``|m| >= N // 2 + 1/2`` (only partly sampled annuli) are dropped; with
``include_corners=True`` they form further shells ``i = N // 2 + 1 .. round(N / sqrt 2)``
(empty shells are dropped), so that every non-zero mode belongs to exactly one shell
and Parseval holds for the shell sums.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft
import scipy.sparse

__all__ = [
    "band_masks",
    "band_summary",
    "binned_spectral_mse",
    "cross_spectrum",
    "field_power_spectrum",
    "mode_power",
    "power_spectrum",
    "spectrum_relative_error",
]

_CHUNK = 256  # fields transformed at a time (bounds the complex work array)


# --------------------------------------------------------------------------- helpers
def _as_fields(field: np.ndarray, name: str = "field") -> np.ndarray:
    """Validate a (..., N, N) real array of finite values; return it as float64."""
    array = np.asarray(field)
    if array.ndim < 2:
        raise ValueError(f"{name} must have shape (..., N, N), got shape {array.shape}")
    n_x, n_y = array.shape[-2:]
    if n_x != n_y:
        raise ValueError(f"{name} must be square in its last two axes, got {n_x} x {n_y}")
    if n_x < 4:
        raise ValueError(f"{name} needs N >= 4 points per side, got N = {n_x}")
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or Inf values")
    return array


def _as_field_pair(field_a: np.ndarray, field_b: np.ndarray, name_a: str, name_b: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_as_fields` of two arrays that must have the same shape."""
    a, b = _as_fields(field_a, name_a), _as_fields(field_b, name_b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} "
                         f"and {b.shape}")
    return a, b


def _power_scale(n: int, box: float) -> float:
    """``dx^4 / L^2``: ``|dx^2 F|^2 / L^2 = scale * |F|^2`` (the module's normalisation)."""
    return (box / n) ** 4 / box**2


def _check_box_size(box_size: float) -> float:
    box = float(box_size)
    if not (math.isfinite(box) and box > 0):
        raise ValueError(f"box_size must be a positive finite number, got {box_size!r}")
    return box


def _integer_wavenumbers_squared(n: int) -> np.ndarray:
    """``|m|^2`` (exact integers, as int64) on the rfft2 half plane, shape (n, n // 2 + 1)."""
    m_x = np.rint(np.fft.fftfreq(n) * n).astype(np.int64)[:, None]
    m_y = np.arange(n // 2 + 1, dtype=np.int64)[None, :]
    return m_x**2 + m_y**2


def _half_plane_weights(n: int) -> np.ndarray:
    """Multiplicity of each rfft2 column in the full plane, shape (1, n // 2 + 1).

    Column ``m_y = 0`` and, for even ``n``, the Nyquist column ``m_y = n / 2`` hold modes
    that are their own mirror images' columns, so they are counted once; every other
    column stands for itself and its conjugate ``-m`` and is counted twice.
    """
    weights = np.full(n // 2 + 1, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return weights[None, :]


@functools.lru_cache(maxsize=32)
def _shell_table(n: int, include_corners: bool) -> tuple[scipy.sparse.csr_matrix, np.ndarray,
                                                         np.ndarray]:
    """Sparse shell-summation matrix, full-plane mode counts, mean ``|m|`` per shell.

    Returns:
        matrix: (n * (n // 2 + 1), n_shells) sparse; entry = full-plane multiplicity of
            the rfft2 mode if it lies in the shell, so ``flat_power @ matrix`` sums the
            power of all full-plane modes of each shell.
        counts: (n_shells,) number of full-plane modes per shell (float).
        mean_m: (n_shells,) mean ``|m|`` over the full-plane modes of each shell.
    """
    m2 = _integer_wavenumbers_squared(n)
    # |m|^2 is an integer and (i +- 1/2)^2 is not, so rounding |m| has no ties.
    shell = np.floor(np.sqrt(m2) + 0.5).astype(np.int64)
    weights = np.broadcast_to(_half_plane_weights(n), m2.shape)
    max_shell = int(shell.max()) if include_corners else n // 2
    keep = (shell >= 1) & (shell <= max_shell)
    rows = np.flatnonzero(keep.ravel())
    cols = shell.ravel()[rows] - 1
    matrix = scipy.sparse.csr_matrix((weights.ravel()[rows], (rows, cols)),
                                     shape=(m2.size, max_shell))
    counts = np.bincount(cols, weights=weights.ravel()[rows], minlength=max_shell)
    m_sum = np.bincount(cols, weights=(weights * np.sqrt(m2)).ravel()[rows],
                        minlength=max_shell)
    nonempty = counts > 0
    matrix = matrix[:, np.flatnonzero(nonempty)].tocsr()
    counts = counts[nonempty]
    mean_m = m_sum[nonempty] / counts
    for array in (counts, mean_m):
        array.setflags(write=False)
    return matrix, counts, mean_m


def _shell_average(power_half_plane_fn, fields_a: np.ndarray, n: int,
                   include_corners: bool) -> np.ndarray:
    """Shell means of a per-mode quantity computed chunk by chunk over the batch."""
    matrix, counts, _ = _shell_table(n, include_corners)
    lead = fields_a.shape[:-2]
    flat_count = int(np.prod(lead, dtype=np.int64))
    out = np.empty((flat_count, counts.size))
    for start in range(0, flat_count, _CHUNK):
        stop = min(start + _CHUNK, flat_count)
        modes = power_half_plane_fn(start, stop)               # (chunk, n, n//2+1) real
        out[start:stop] = (matrix.T @ modes.reshape(stop - start, -1).T).T
    return (out / counts).reshape(*lead, counts.size)


# --------------------------------------------------------------------- power spectra
def _mode_power(fields: np.ndarray, box: float) -> np.ndarray:
    """``|dx^2 rfft2(f)|^2 / L^2`` of validated float64 fields (..., N, N), per mode."""
    spectrum = scipy.fft.rfft2(fields, axes=(-2, -1))
    return _power_scale(fields.shape[-1], box) * (spectrum.real**2 + spectrum.imag**2)


def mode_power(field: np.ndarray, box_size: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The power of every Fourier mode, before any shell averaging.

    ``P_hat(k_m) = |dx^2 FFT(f)(m)|^2 / L^2`` (the module's normalisation) on the
    ``rfft2`` half plane, with each mode's ``|k_m|`` and the number of full-plane modes
    it stands for (1 for the ``m_y = 0`` and, for even ``N``, ``m_y = N / 2`` columns; 2
    for the others, which stand for ``m`` and ``-m``). A sum over the full plane is
    ``sum(multiplicity * g(k) * P)``; e.g. ``sum(multiplicity * P) / L^2 = mean_x f^2``
    (Parseval) and, for a field of zero mean, the power-weighted mean wavenumber is
    ``sum(multiplicity * k * P) / sum(multiplicity * P)``. :func:`power_spectrum` is
    the shell average of this estimator.

    Args:
        field: real array (..., N, N), ``N >= 4`` [f].
        box_size: side length ``L`` [length].
    Returns:
        ``(k, multiplicity, P)``: ``k`` (N, N // 2 + 1) ``|k_m|`` [1/length];
        ``multiplicity`` (N, N // 2 + 1) float; ``P`` (..., N, N // 2 + 1)
        [f^2 length^2], one array per leading index.
    """
    fields = _as_fields(field)
    box = _check_box_size(box_size)
    n = fields.shape[-1]
    k = (2.0 * np.pi / box) * np.sqrt(_integer_wavenumbers_squared(n).astype(np.float64))
    multiplicity = np.broadcast_to(_half_plane_weights(n), k.shape).copy()
    return k, multiplicity, _mode_power(fields, box)


def power_spectrum(field: np.ndarray, box_size: float, *, include_corners: bool = False,
                   return_counts: bool = False
                   ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Isotropic (shell-averaged) power spectrum, powerbox's default normalisation.

    Equation: for each shell ``S_i`` (modes with ``|m|`` in ``[i - 1/2, i + 1/2)``)::

        P(k_i) = (1 / n_i) sum_{m in S_i} |dx^2 FFT(f)(m)|^2 / L^2

    where the sum runs over the *full* Fourier plane (``m`` and ``-m`` both counted;
    computed from ``rfft2`` with the ``m_y = 0`` and ``m_y = N/2`` columns weighted once
    and the other columns twice) and ``n_i`` is the number of such modes. Then
    ``E[P(k_i)] = mean of P0(|k_m|) over m in S_i`` for a Gaussian field with spectrum
    ``P0``, and ``sum_i n_i P(k_i) / L^2 = Var_x f`` (population variance, the ``m = 0``
    mode carrying ``(mean f)^2`` is excluded) when ``include_corners=True``.

    Each leading index is a separate field: nothing is averaged over the batch.

    Args:
        field: real array of shape (..., N, N), ``N >= 4``; float32 is accepted and the
            computation is done in float64. Units: [f].
        box_size: side length ``L`` of the periodic domain [length].
        include_corners: if False (default) shells stop at ``i = N // 2`` and the corner
            modes ``|m| >= N // 2 + 1/2`` are dropped; if True they form further
            (partial-annulus) shells up to ``round(N / sqrt 2)``.
        return_counts: also return ``n_i``.
    Returns:
        ``(k, P)`` or ``(k, P, n_modes)``: ``k`` of shape (n_shells,) is the mean ``|k|``
        of the full-plane modes in each shell [1 / length] (not the shell centre);
        ``P`` has shape (..., n_shells) [f^2 length^2]; ``n_modes`` (n_shells,) float.
    Raises:
        ValueError: non-square or too small last axes, NaN/Inf, bad ``box_size``.
    """
    fields = _as_fields(field)
    box = _check_box_size(box_size)
    n = fields.shape[-1]
    flat = fields.reshape(-1, n, n)

    def modes(start: int, stop: int) -> np.ndarray:
        return _mode_power(flat[start:stop], box)

    power = _shell_average(modes, fields, n, include_corners)
    _, counts, mean_m = _shell_table(n, include_corners)
    k = (2.0 * np.pi / box) * mean_m
    if return_counts:
        return k, power, counts.copy()
    return k, power


def field_power_spectrum(field: np.ndarray, box_size: float, *, vector: bool = False,
                         return_counts: bool = False
                         ) -> tuple[np.ndarray, ...]:
    """:func:`power_spectrum` of a scalar field, or the sum over components of a vector field.

    For a vector field ``u`` of shape (..., N, N, 2) the result is
    ``P_ux(k) + P_uy(k)`` (twice the kinetic-energy spectrum per unit density); a scalar
    field (..., N, N) gives :func:`power_spectrum` itself.

    Returns:
        ``(k, P)`` or ``(k, P, n_modes)`` with ``P`` of shape (..., n_shells).
    """
    if not vector:
        return power_spectrum(field, box_size, return_counts=return_counts)
    result = power_spectrum(np.moveaxis(np.asarray(field), -1, -3), box_size,
                            return_counts=return_counts)
    return (result[0], result[1].sum(axis=-2), *result[2:])


def cross_spectrum(field_a: np.ndarray, field_b: np.ndarray, box_size: float, *,
                   include_corners: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Shell-averaged real cross power ``Re <dx^2 F_a conj(dx^2 F_b)> / L^2``.

    Same shells, weights and normalisation as :func:`power_spectrum`, so
    ``cross_spectrum(f, f, L) == power_spectrum(f, L)`` and
    ``sum_i n_i P_ab(k_i) / L^2`` equals the spatial covariance of ``a`` and ``b``
    (``include_corners=True``). The imaginary part cancels between ``m`` and ``-m`` in
    the full plane and is not returned.

    Args:
        field_a, field_b: real arrays of the same shape (..., N, N) [f_a], [f_b].
        box_size: side length ``L`` [length].
        include_corners: as in :func:`power_spectrum`.
    Returns:
        ``(k, P_ab)``: ``k`` (n_shells,) mean ``|k|`` per shell [1/length], ``P_ab``
        (..., n_shells) [f_a f_b length^2], one spectrum per leading index.
    """
    a, b = _as_field_pair(field_a, field_b, "field_a", "field_b")
    box = _check_box_size(box_size)
    n = a.shape[-1]
    flat_a, flat_b = a.reshape(-1, n, n), b.reshape(-1, n, n)
    scale = _power_scale(n, box)

    def modes(start: int, stop: int) -> np.ndarray:
        spec_a = scipy.fft.rfft2(flat_a[start:stop], axes=(-2, -1))
        spec_b = scipy.fft.rfft2(flat_b[start:stop], axes=(-2, -1))
        return scale * (spec_a.real * spec_b.real + spec_a.imag * spec_b.imag)

    power = _shell_average(modes, a, n, include_corners)
    _, _, mean_m = _shell_table(n, include_corners)
    return (2.0 * np.pi / box) * mean_m, power


# ------------------------------------------------------------ The Well's binned MSE
def _well_band_edges_m(n: int) -> np.ndarray:
    """Band edges in units of ``|m|``: ``[0, r^(1/3), r^(2/3), r]`` with ``r = N/sqrt 2``."""
    ratio = n / math.sqrt(2.0)
    return np.array([0.0, ratio ** (1.0 / 3.0), ratio ** (2.0 / 3.0), ratio])


def binned_spectral_mse(generated: np.ndarray, reference: np.ndarray, *,
                        box_size: float = 2.0 * np.pi, reduce: bool = True
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The Well's binned spectral MSE: the MSE of ``d = generated - reference`` per band.

    Definition (The Well, ``the_well/benchmark/metrics/spectral.py``,
    ``binned_spectral_mse``): three bands of ``|k|`` with edges logarithmically spaced
    between the fundamental ``2 pi / L`` and the largest ``|k|`` on the grid (the corner,
    ``sqrt(2) pi N / L``), the first edge then replaced by 0::

        e_j = (2 pi / L) (N / sqrt 2)^(j / 3),  j = 1, 2;   e_0 = 0,  e_3 = sqrt(2) pi N / L
        MSE_b = (1 / N^4) sum_{m : e_b <= |k_m| < e_{b+1}} |FFT(d)(m)|^2      (full plane)

    Band ``b`` is half-open ``[e_b, e_{b+1})`` (ties go up) except that the last band
    includes ``e_3``. The ``k = 0`` mode is in the low band, so by Parseval
    ``MSE_0 + MSE_1 + MSE_2 = mean_x d^2`` exactly (per sample). The Well works in grid
    units (sample spacing 1); its edges times ``N / L`` are the edges here, so the band
    membership of every mode is identical. The values do not depend on ``box_size``.

    Reduction: the band MSEs are computed per field (per leading index); with
    ``reduce=True`` they are then averaged over all leading axes. Because every field has
    the same number of pixels this equals the pooled band MSE over the whole batch.

    Args:
        generated, reference: real arrays of the same shape (..., N, N) [f].
        box_size: side length ``L`` [length]; only used for the returned edges.
        reduce: average over the leading axes (default) or return per-field values.
    Returns:
        ``(edges, values)``: edges (4,) in angular wavenumber [1/length]; values (3,)
        [f^2] if ``reduce`` else (..., 3).
    """
    gen, ref = _as_field_pair(generated, reference, "generated", "reference")
    box = _check_box_size(box_size)
    n = gen.shape[-1]
    edges_m = _well_band_edges_m(n)
    m2 = _integer_wavenumbers_squared(n).astype(np.float64)
    tolerance = 1.0 - 1e-12                      # |m|^2 equal to an edge^2 goes up
    band = ((m2 >= tolerance * edges_m[1] ** 2).astype(np.int64)
            + (m2 >= tolerance * edges_m[2] ** 2))
    weights = np.broadcast_to(_half_plane_weights(n), m2.shape)
    rows = np.arange(m2.size)
    matrix = scipy.sparse.csr_matrix((weights.ravel(), (rows, band.ravel())),
                                     shape=(m2.size, 3))
    difference = (gen - ref).reshape(-1, n, n)
    values = np.empty((difference.shape[0], 3))
    for start in range(0, difference.shape[0], _CHUNK):
        stop = min(start + _CHUNK, difference.shape[0])
        spectrum = scipy.fft.rfft2(difference[start:stop], axes=(-2, -1))
        power = (spectrum.real**2 + spectrum.imag**2).reshape(stop - start, -1)
        values[start:stop] = (matrix.T @ power.T).T / float(n) ** 4
    values = values.reshape(*gen.shape[:-2], 3)
    if reduce:
        values = values.reshape(-1, 3).mean(axis=0)
    return (2.0 * np.pi / box) * edges_m, values


# --------------------------------------------------------- spectrum error summaries
def spectrum_relative_error(P_generated: np.ndarray, P_reference: np.ndarray) -> np.ndarray:
    """Signed relative error per shell, ``(P_gen - P_ref) / P_ref``.

    Where ``P_ref == 0`` the result is 0 if ``P_gen == 0`` too and ``+inf`` otherwise
    (no warnings are raised). Shapes broadcast; typically both are (n_shells,) spectra
    already averaged over samples by the caller.

    Args:
        P_generated, P_reference: spectra on the same shells [f^2 length^2], finite.
    Returns:
        Array of the broadcast shape, dimensionless.
    """
    gen = np.asarray(P_generated, dtype=np.float64)
    ref = np.asarray(P_reference, dtype=np.float64)
    if not (np.all(np.isfinite(gen)) and np.all(np.isfinite(ref))):
        raise ValueError("spectra contain NaN or Inf values")
    gen, ref = np.broadcast_arrays(gen, ref)
    zero = ref == 0
    out = np.divide(gen - ref, ref, out=np.zeros(gen.shape), where=~zero)
    out[zero & (gen != 0)] = np.inf
    return out


def band_masks(k: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the low, mid and high thirds of log k (:func:`band_summary`).

    Args:
        k: (n_shells,) finite positive wavenumbers [1/length], at least one.
    Returns:
        ``{"low", "mid", "high"}`` masks of shape (n_shells,); a single distinct
        wavenumber is all "low".
    """
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 1 or k.size == 0 or np.any(~np.isfinite(k)) or np.any(k <= 0):
        raise ValueError("k must be a non-empty 1-D array of finite positive wavenumbers")
    log_k = np.log(k)
    lo, hi = log_k.min(), log_k.max()
    if hi == lo:                                 # a single shell: call it "low"
        return {"low": np.ones_like(k, bool), "mid": np.zeros_like(k, bool),
                "high": np.zeros_like(k, bool)}
    cut_1, cut_2 = lo + (hi - lo) / 3.0, lo + 2.0 * (hi - lo) / 3.0
    return {"low": log_k < cut_1, "mid": (log_k >= cut_1) & (log_k < cut_2),
            "high": log_k >= cut_2}


def band_summary(k: np.ndarray, rel_error: np.ndarray) -> dict[str, dict[str, float]]:
    """Median and maximum of ``|rel_error|`` in the low, mid and high thirds of log k.

    Bands split ``[log k_min, log k_max]`` (over the given positive ``k``) into three
    equal parts: low ``k < k_min q``, mid ``k_min q <= k < k_min q^2``, high the rest,
    with ``q = (k_max / k_min)^(1/3)``. For the 64 shells of ``N = 128`` this gives
    shells 1-4 / 5-16 / 17-64 (cf. The Well's three log bands). A band holding no
    shell reports NaN.

    Args:
        k: (n_shells,) positive wavenumbers [1/length].
        rel_error: (n_shells,) relative errors, e.g. from :func:`spectrum_relative_error`.
    Returns:
        ``{"low": {"median", "max", "k_min", "k_max", "n_shells"}, "mid": ..., "high": ...}``
        with Python floats; ``median``/``max`` are of the absolute relative error.
    """
    k = np.asarray(k, dtype=np.float64)
    rel = np.abs(np.asarray(rel_error, dtype=np.float64))
    if k.ndim != 1 or rel.shape != k.shape:
        raise ValueError(f"k and rel_error must be 1-D of equal length, got {k.shape} "
                         f"and {rel.shape}")
    masks = band_masks(k)                        # checks k: non-empty, finite, positive
    summary: dict[str, dict[str, float]] = {}
    for name, mask in masks.items():
        if mask.any():
            summary[name] = {"median": float(np.median(rel[mask])),
                             "max": float(np.max(rel[mask])),
                             "k_min": float(k[mask].min()), "k_max": float(k[mask].max()),
                             "n_shells": float(mask.sum())}
        else:
            summary[name] = {"median": math.nan, "max": math.nan, "k_min": math.nan,
                             "k_max": math.nan, "n_shells": 0.0}
    return summary
