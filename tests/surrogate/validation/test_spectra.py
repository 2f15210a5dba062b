"""Properties of the power-spectrum estimators, checked against independent truth.

Truth comes from analytic single-mode fields, Parseval's theorem, brute-force sums over
the full (not half) Fourier plane, sampling statistics of Gaussian random fields, the
independent implementation in ``powerbox`` and The Well's published band definition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surrogate.validation.spectra import (
    band_summary,
    binned_spectral_mse,
    cross_spectrum,
    mode_power,
    power_spectrum,
    spectrum_relative_error,
)

powerbox = pytest.importorskip("powerbox")  # the second opinion (the [test] extra)

# ------------------------------------------------------------------ test utilities


def _full_plane_m(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers (m_x, m_y) of np.fft.fft2 output, each (n, n)."""
    m = np.rint(np.fft.fftfreq(n) * n)
    return np.meshgrid(m, m, indexing="ij")


def _brute_force_spectrum(field: np.ndarray, box: float, n_shells: int):
    """Shell means of |dx^2 fft2|^2 / L^2 over the full plane with explicit loops."""
    n = field.shape[-1]
    mx, my = _full_plane_m(n)
    modulus = np.hypot(mx, my)
    power = np.abs((box / n) ** 2 * np.fft.fft2(field)) ** 2 / box**2
    k, p, counts = [], [], []
    for i in range(1, n_shells + 1):
        mask = (modulus >= i - 0.5) & (modulus < i + 0.5)
        k.append(2 * np.pi / box * modulus[mask].mean())
        p.append(power[mask].mean())
        counts.append(mask.sum())
    return np.array(k), np.array(p), np.array(counts)


def _cosine(n: int, box: float, m: tuple[int, int], amplitude: float,
            phase: float = 0.0) -> np.ndarray:
    x = np.arange(n) * box / n
    xx, yy = np.meshgrid(x, x, indexing="ij")
    k = 2 * np.pi / box * np.asarray(m, dtype=float)
    return amplitude * np.cos(k[0] * xx + k[1] * yy + phase)


# ---------------------------------------------------------------- single Fourier mode


@pytest.mark.parametrize("mode", [(5, 0), (0, 7), (3, 4), (-2, 9)])
def test_single_cosine_puts_all_power_in_its_shell_with_analytic_amplitude(mode):
    n, box, amplitude = 32, 3.0, 1.7
    field = _cosine(n, box, mode, amplitude, phase=0.4)
    _, power, counts = power_spectrum(field, box, return_counts=True)
    shell = round(math.hypot(*mode))
    # |dx^2 FFT|^2 = (dx^2 N^2 A / 2)^2 = (A L^2 / 2)^2 at +-m, two modes of the shell,
    # so P = 2 (A L^2 / 2)^2 / L^2 / n_shell = A^2 L^2 / (2 n_shell)
    expected = amplitude**2 * box**2 / (2 * counts[shell - 1])
    assert power[shell - 1] == pytest.approx(expected, rel=1e-12)
    others = np.delete(power, shell - 1)
    assert np.all(np.abs(others) < 1e-12 * expected)
    # Parseval for this field: shell power times modes / L^2 is the variance A^2 / 2
    assert power[shell - 1] * counts[shell - 1] / box**2 == pytest.approx(amplitude**2 / 2)


# -------------------------------------------------------------------------- Parseval


@pytest.mark.parametrize("n", [4, 15, 16, 33])
def test_parseval_shell_sums_equal_variance_and_mean_mode_carries_mean_squared(n):
    rng = np.random.default_rng(n)
    box = 2.7
    fields = rng.standard_normal((3, n, n)) * 1.3 + 0.8        # non-zero mean
    _, power, counts = power_spectrum(fields, box, include_corners=True,
                                      return_counts=True)
    assert counts.sum() == n * n - 1                            # every mode but m = 0
    shell_total = (power * counts).sum(axis=-1) / box**2
    np.testing.assert_allclose(shell_total, fields.var(axis=(-2, -1)), rtol=1e-12)
    # the dropped m = 0 mode: |dx^2 F(0)|^2 / L^2 / L^2 = mean^2
    mean_mode = np.abs((box / n) ** 2 * np.fft.fft2(fields)[:, 0, 0]) ** 2 / box**4
    np.testing.assert_allclose(mean_mode, fields.mean(axis=(-2, -1)) ** 2, rtol=1e-12)
    np.testing.assert_allclose(shell_total + mean_mode, (fields**2).mean(axis=(-2, -1)),
                               rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 20), box=st.floats(0.1, 100.0), offset=st.floats(-5.0, 5.0),
       seed=st.integers(0, 2**32 - 1))
def test_parseval_holds_for_arbitrary_fields(n, box, offset, seed):
    field = np.random.default_rng(seed).standard_normal((n, n)) + offset
    _, power, counts = power_spectrum(field, box, include_corners=True, return_counts=True)
    assert (power * counts).sum() / box**2 == pytest.approx(field.var(), rel=1e-10,
                                                             abs=1e-12)


# ------------------------------------------- shells and weights vs a brute-force sum


@pytest.mark.parametrize("n", [4, 9, 16, 21])
def test_rfft_weighting_matches_full_plane_brute_force(n):
    rng = np.random.default_rng(100 + n)
    box = 1.9
    field = rng.standard_normal((n, n))
    k, power, counts = power_spectrum(field, box, return_counts=True)
    assert k.shape == power.shape == (n // 2,)
    k_ref, p_ref, c_ref = _brute_force_spectrum(field, box, n // 2)
    np.testing.assert_array_equal(counts, c_ref)
    np.testing.assert_allclose(k, k_ref, rtol=1e-13)
    np.testing.assert_allclose(power, p_ref, rtol=1e-12)


def test_default_shells_drop_only_the_corner_modes():
    n = 16
    _, _, counts = power_spectrum(np.zeros((n, n)), 1.0, return_counts=True)
    mx, my = _full_plane_m(n)
    modulus = np.hypot(mx, my)
    assert counts.sum() == np.count_nonzero((modulus > 0) & (modulus < n // 2 + 0.5))


def test_batched_input_equals_field_by_field():
    rng = np.random.default_rng(7)
    fields = rng.standard_normal((2, 3, 12, 12))
    _, power = power_spectrum(fields, 5.0)
    assert power.shape == (2, 3, 6)
    for index in np.ndindex(2, 3):
        np.testing.assert_allclose(power[index], power_spectrum(fields[index], 5.0)[1],
                                   rtol=1e-13)


def test_float32_input_is_computed_in_float64():
    field = np.random.default_rng(3).standard_normal((16, 16)).astype(np.float32)
    k, power = power_spectrum(field, 1.0)
    assert power.dtype == np.float64 and k.dtype == np.float64
    np.testing.assert_array_equal(power, power_spectrum(field.astype(np.float64), 1.0)[1])


# ---------------------------------------------------------------------- invariances


def test_periodic_shift_leaves_spectrum_unchanged():
    field = np.random.default_rng(11).standard_normal((24, 24))
    _, power = power_spectrum(field, 2.0)
    shifted = np.roll(field, (5, -9), axis=(-2, -1))
    np.testing.assert_allclose(power_spectrum(shifted, 2.0)[1], power, rtol=1e-11)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 16), shift_x=st.integers(-20, 20), shift_y=st.integers(-20, 20),
       seed=st.integers(0, 2**32 - 1))
def test_periodic_shift_invariance_property(n, shift_x, shift_y, seed):
    field = np.random.default_rng(seed).standard_normal((n, n))
    _, power = power_spectrum(field, 1.0, include_corners=True)
    _, shifted = power_spectrum(np.roll(field, (shift_x, shift_y), axis=(0, 1)), 1.0,
                                include_corners=True)
    np.testing.assert_allclose(shifted, power, rtol=1e-9, atol=1e-14 * power.max())


def test_amplitude_scaling_is_quadratic():
    field = np.random.default_rng(5).standard_normal((16, 16))
    _, power = power_spectrum(field, 3.0)
    np.testing.assert_allclose(power_spectrum(-2.5 * field, 3.0)[1], 6.25 * power,
                               rtol=1e-13)


def test_box_size_scaling_law_k_over_c_and_power_times_c_squared():
    # same samples on a box c times larger: k -> k / c, P = L^2 |F|^2 / N^4 -> c^2 P
    field = np.random.default_rng(6).standard_normal((16, 16))
    k, power = power_spectrum(field, 1.5)
    c = 3.7
    k_c, power_c = power_spectrum(field, c * 1.5)
    np.testing.assert_allclose(k_c, k / c, rtol=1e-13)
    np.testing.assert_allclose(power_c, c**2 * power, rtol=1e-13)


# ---------------------------------------------------------- Gaussian random fields


def test_gaussian_random_field_estimate_matches_input_spectrum_within_sampling_error():
    """E[P_hat_i] = mean of P0 over shell i; Var = (2 / n_i^2) sum_j P0_j^2 / R.

    Each conjugate pair (m, -m) carries |F|^2 = P0 * Exp(1) (chi^2 with 2 dof / 2), and
    the shell mean counts both members, hence the factor 2; with R independent
    realisations the relative standard deviation is ~ sqrt(2 / (n_i R)).
    """
    n, box, realisations = 32, 2.5, 40
    amplitude, slope = 2.0, 3.0
    rng = np.random.default_rng(2024)
    mx, my = _full_plane_m(n)
    k_full = 2 * np.pi / box * np.hypot(mx, my)
    p0 = np.zeros_like(k_full)
    p0[k_full > 0] = amplitude * k_full[k_full > 0] ** -slope
    noise = np.fft.fft2(rng.standard_normal((realisations, n, n)))    # E|W|^2 = N^2
    fields = np.fft.ifft2(noise * np.sqrt(p0) * n / box).real          # E|F|^2 = P0 N^4/L^2
    _, power = power_spectrum(fields, box)
    estimate = power.mean(axis=0)
    modulus = np.hypot(mx, my)
    z = []
    for i in range(1, n // 2 + 1):
        shell = (modulus >= i - 0.5) & (modulus < i + 0.5)
        expected = p0[shell].mean()
        std = math.sqrt(2.0 * np.sum(p0[shell] ** 2) / shell.sum() ** 2 / realisations)
        z.append((estimate[i - 1] - expected) / std)
    z = np.array(z)
    assert np.max(np.abs(z)) < 4.0, z
    assert 0.3 < np.mean(z**2) < 2.0, z                 # chi^2 / dof near 1 (16 dof)


# ------------------------------------------------------------------- vs powerbox


@pytest.mark.parametrize("n", [32, 17])
def test_matches_powerbox_get_power_default_convention(n):
    rng = np.random.default_rng(n)
    box = 3.7
    field = rng.standard_normal((n, n)) + 0.5
    k, power, counts = power_spectrum(field, box, return_counts=True)
    edges = (np.arange(n // 2 + 1) + 0.5) * 2 * np.pi / box       # the same shells
    reference = powerbox.get_power(field, box, bins=edges, dimensionless=False, nthreads=1)
    np.testing.assert_allclose(power, reference.power, rtol=1e-12)
    np.testing.assert_allclose(k, reference.bin_avg, rtol=1e-12)
    np.testing.assert_array_equal(counts, reference.nsamples)

    other = rng.standard_normal((n, n))
    _, cross = cross_spectrum(field, other, box)
    reference = powerbox.get_power(field, box, deltax2=other, bins=edges,
                                   dimensionless=False, nthreads=1)
    np.testing.assert_allclose(cross, reference.power, rtol=1e-10,
                               atol=1e-12 * np.abs(reference.power).max())


# ----------------------------------------------------------- per-mode power (no shells)


@pytest.mark.parametrize("n", [8, 9, 16])
def test_mode_power_sums_over_the_full_plane_like_a_brute_force_fft2(n):
    """Half-plane modes weighted by their multiplicity give the full-plane sums of
    |dx^2 fft2|^2 / L^2 (Parseval: mean f^2; and the power-weighted sum of |k|)."""
    box = 1.7
    field = np.random.default_rng(15).standard_normal((n, n)) + 0.3
    k, multiplicity, power = mode_power(field, box)
    mx, my = _full_plane_m(n)
    full = np.abs((box / n) ** 2 * np.fft.fft2(field)) ** 2 / box**2
    assert (multiplicity * power).sum() / box**2 == pytest.approx(np.mean(field**2),
                                                                   rel=1e-12)
    assert (multiplicity * k * power).sum() == pytest.approx(
        (2 * np.pi / box * np.hypot(mx, my) * full).sum(), rel=1e-12)
    assert multiplicity.sum() == n * n


def test_power_spectrum_is_the_shell_mean_of_mode_power():
    field = np.random.default_rng(16).standard_normal((3, 16, 16))
    k, multiplicity, power = mode_power(field, 2.0)
    shell = np.floor(k * 2.0 / (2 * np.pi) + 0.5).astype(int)
    _, spectrum, counts = power_spectrum(field, 2.0, include_corners=True, return_counts=True)
    for i in range(1, spectrum.shape[-1] + 1):
        inside = shell == i
        np.testing.assert_allclose((multiplicity * power)[..., inside].sum(axis=-1)
                                   / counts[i - 1], spectrum[..., i - 1], rtol=1e-12)


# ------------------------------------------------------------------- cross spectrum


def test_cross_spectrum_of_a_field_with_itself_is_its_power_spectrum():
    field = np.random.default_rng(8).standard_normal((2, 16, 16))
    np.testing.assert_allclose(cross_spectrum(field, field, 2.0)[1],
                               power_spectrum(field, 2.0)[1], rtol=1e-13)
    np.testing.assert_allclose(cross_spectrum(field, -field, 2.0)[1],
                               -power_spectrum(field, 2.0)[1], rtol=1e-13)


def test_cross_spectrum_shell_sum_is_spatial_covariance():
    rng = np.random.default_rng(9)
    a = rng.standard_normal((16, 16))
    b = 0.5 * a + rng.standard_normal((16, 16)) + 2.0
    _, cross = cross_spectrum(a, b, 1.3, include_corners=True)
    _, _, counts = power_spectrum(a, 1.3, include_corners=True, return_counts=True)
    covariance = np.mean((a - a.mean()) * (b - b.mean()))
    assert (cross * counts).sum() / 1.3**2 == pytest.approx(covariance, rel=1e-12)
    np.testing.assert_allclose(cross_spectrum(b, a, 1.3, include_corners=True)[1], cross,
                               rtol=1e-12)


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize("bad", [np.zeros((8, 9)), np.zeros((3, 3)), np.zeros(8),
                                 np.full((8, 8), np.nan), np.full((8, 8), np.inf),
                                 np.zeros((8, 8), dtype=complex)])
def test_invalid_fields_raise_value_error(bad):
    with pytest.raises(ValueError):
        power_spectrum(bad, 1.0)
    with pytest.raises(ValueError):
        binned_spectral_mse(bad, bad)


@pytest.mark.parametrize("box", [0.0, -1.0, np.inf, np.nan])
def test_invalid_box_size_raises_value_error(box):
    with pytest.raises(ValueError):
        power_spectrum(np.zeros((8, 8)), box)


def test_mismatched_shapes_raise_value_error():
    with pytest.raises(ValueError):
        cross_spectrum(np.zeros((8, 8)), np.zeros((2, 8, 8)), 1.0)
    with pytest.raises(ValueError):
        binned_spectral_mse(np.zeros((8, 8)), np.zeros((2, 8, 8)))


# -------------------------------------------------------- The Well's binned spectral MSE


def _well_bands_brute_force(difference: np.ndarray) -> np.ndarray:
    """The Well's definition written out: grid units, edges logspace(2pi/N, pi sqrt2 + 1e-6)
    with the first edge set to 0, bins [e_b, e_b+1), MSE_b = sum |fftn|^2 / N^4."""
    n = difference.shape[-1]
    edges = np.logspace(np.log10(2 * np.pi / n), np.log10(np.pi * np.sqrt(2) + 1e-6), 4)
    edges[0] = 0.0
    mx, my = _full_plane_m(n)
    k_grid = 2 * np.pi / n * np.hypot(mx, my)           # sample spacing 1
    index = np.digitize(k_grid, edges) - 1               # edges[i] <= k < edges[i + 1]
    power = np.abs(np.fft.fft2(difference)) ** 2
    return np.array([power[..., index == b].sum(axis=-1) for b in range(3)]).T / n**4


def test_binned_spectral_mse_bands_add_up_to_the_mse():
    rng = np.random.default_rng(12)
    generated = rng.standard_normal((4, 2, 32, 32)) + 0.3
    reference = rng.standard_normal((4, 2, 32, 32))
    _, per_field = binned_spectral_mse(generated, reference, reduce=False)
    assert per_field.shape == (4, 2, 3)
    mse = np.mean((generated - reference) ** 2, axis=(-2, -1))
    np.testing.assert_allclose(per_field.sum(axis=-1), mse, rtol=1e-12)
    _, pooled = binned_spectral_mse(generated, reference)
    assert pooled.shape == (3,)
    assert pooled.sum() == pytest.approx(np.mean((generated - reference) ** 2), rel=1e-12)
    np.testing.assert_allclose(pooled, per_field.reshape(-1, 3).mean(axis=0), rtol=1e-13)


@pytest.mark.parametrize("n", [16, 30, 64])
def test_binned_spectral_mse_follows_the_well_definition(n):
    rng = np.random.default_rng(n)
    generated, reference = rng.standard_normal((2, 3, n, n))
    box = 4.0
    edges, values = binned_spectral_mse(generated, reference, box_size=box, reduce=False)
    np.testing.assert_allclose(values, _well_bands_brute_force(generated - reference),
                               rtol=1e-12)
    well_edges = np.logspace(np.log10(2 * np.pi / n), np.log10(np.pi * np.sqrt(2)), 4)
    well_edges[0] = 0.0
    np.testing.assert_allclose(edges, well_edges * n / box, rtol=1e-12)  # grid -> angular


def test_binned_spectral_mse_band_edge_ties_go_to_the_upper_band():
    # N = 32: the first edge is |m| = (32 / sqrt 2)^(1/3) = sqrt 8 exactly, so the mode
    # m = (2, 2) sits on it; bins are [lo, hi) as in The Well, so it is a mid-band mode.
    n = 32
    difference = _cosine(n, 1.0, (2, 2), 1.0)
    _, values = binned_spectral_mse(difference, np.zeros((n, n)), box_size=1.0)
    np.testing.assert_allclose(values, [0.0, 0.5, 0.0], atol=1e-14)


def test_binned_spectral_mse_of_a_low_mode_error_is_all_in_the_low_band():
    n = 64
    difference = _cosine(n, 2.0, (1, 1), 3.0)      # |m| = 1.41 < (64 / sqrt 2)^(1/3) = 3.56
    _, values = binned_spectral_mse(difference, np.zeros((n, n)), box_size=2.0)
    np.testing.assert_allclose(values, [4.5, 0.0, 0.0], atol=1e-12)


# ---------------------------------------------------------- relative errors by band


def test_spectrum_relative_error_is_signed_and_handles_zero_reference():
    rel = spectrum_relative_error(np.array([1.1, 0.5, 0.0, 2.0]),
                                  np.array([1.0, 1.0, 0.0, 0.0]))
    np.testing.assert_allclose(rel[:3], [0.1, -0.5, 0.0], rtol=1e-12)
    assert rel[3] == np.inf


def test_band_summary_splits_log_k_into_thirds():
    k, _ = power_spectrum(np.zeros((128, 128)), 2 * np.pi)
    rel = np.arange(1, 65) / 100.0 * np.where(np.arange(64) % 2, -1, 1)
    summary = band_summary(k, rel)
    assert [summary[b]["n_shells"] for b in ("low", "mid", "high")] == [4, 12, 48]
    # low holds shells 1..4: |rel| = 0.01..0.04
    assert summary["low"]["max"] == pytest.approx(0.04)
    assert summary["low"]["median"] == pytest.approx(0.025)
    assert summary["high"]["max"] == pytest.approx(0.64)
    ratio = k.max() / k.min()
    assert summary["mid"]["k_min"] >= k.min() * ratio ** (1 / 3)
    assert summary["mid"]["k_max"] < k.min() * ratio ** (2 / 3)


def test_band_summary_reports_nan_for_an_empty_band():
    summary = band_summary(np.array([1.0, 2.0]), np.array([0.1, 0.2]))
    assert summary["low"]["max"] == pytest.approx(0.1)
    assert math.isnan(summary["mid"]["median"])
    assert summary["high"]["max"] == pytest.approx(0.2)
