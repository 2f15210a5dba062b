"""Properties of the error metrics and one/two-point statistics, against independent truth.

Truth comes from hand-computable cases, The Well's formulas written out, scipy's
independent implementations, analytic single-mode fields and brute-force sums.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from surrogate.validation.statistics import (
    EnsembleSpread,
    correlation_function,
    ensemble_spread,
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


def _checkerboard(n: int, value: float) -> np.ndarray:
    i, j = np.indices((n, n))
    return np.where((i + j) % 2 == 0, value, -value)


def _cosine_x(n: int, box: float, m: int, amplitude: float) -> np.ndarray:
    x = np.arange(n) * box / n
    return amplitude * np.cos(2 * np.pi * m / box * x)[:, None] * np.ones((1, n))


# ------------------------------------------------------------------ paired errors


def test_rmse_of_a_constant_offset_is_the_offset():
    reference = np.random.default_rng(0).standard_normal((4, 8, 8))
    np.testing.assert_allclose(rmse(reference + 3.0, reference), np.full(4, 3.0), rtol=1e-14)


def test_nrmse_of_a_zero_prediction_is_one_up_to_epsilon():
    reference = _checkerboard(8, 2.0)                      # mean square 4
    assert nrmse(np.zeros((8, 8)), reference) == pytest.approx(math.sqrt(4 / (4 + 1e-7)),
                                                               rel=1e-14)
    assert rmse(np.zeros((8, 8)), reference) == pytest.approx(2.0, rel=1e-14)


def test_vrmse_uses_the_bessel_corrected_spatial_variance_plus_epsilon():
    n = 8
    reference = _checkerboard(n, 2.0) + 5.0               # variance (ddof 0) = 4
    prediction = np.full((n, n), 5.0)                      # the reference mean: MSE = 4
    variance_ddof1 = 4.0 * n * n / (n * n - 1)
    expected = math.sqrt(4.0 / (variance_ddof1 + 1e-7))
    assert vrmse(prediction, reference) == pytest.approx(expected, rel=1e-14)
    assert vrmse(prediction, reference, ddof=0) == pytest.approx(math.sqrt(4 / (4 + 1e-7)),
                                                                 rel=1e-14)
    # nRMSE normalises by the RMS norm instead: sqrt(4 / (25 + 4 + eps))
    assert nrmse(prediction, reference) == pytest.approx(math.sqrt(4 / (29 + 1e-7)),
                                                         rel=1e-14)


def test_paired_errors_reduce_space_per_sample_and_keep_leading_axes():
    rng = np.random.default_rng(1)
    generated, reference = rng.standard_normal((2, 5, 3, 6, 7))     # non-square is fine
    for metric in (rmse, nrmse, vrmse):
        values = metric(generated, reference)
        assert values.shape == (5, 3)
        assert values[2, 1] == pytest.approx(float(metric(generated[2, 1], reference[2, 1])))
    difference = generated - reference
    np.testing.assert_allclose(
        vrmse(generated, reference),
        np.sqrt(np.mean(difference**2, axis=(-2, -1))
                / (np.var(reference, axis=(-2, -1), ddof=1) + 1e-7)), rtol=1e-14)


def test_paired_errors_reject_mismatched_or_non_finite_input():
    with pytest.raises(ValueError):
        rmse(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError):
        vrmse(np.full((4, 4), np.nan), np.zeros((4, 4)))


# ------------------------------------------------------------ one-point statistics


def test_moments_match_scipy_on_pooled_values():
    samples = np.random.default_rng(2).gamma(2.0, size=(10, 16, 16))
    result = moments(samples)
    flat = samples.ravel()
    assert result["mean"] == pytest.approx(flat.mean(), rel=1e-12)
    assert result["std"] == pytest.approx(flat.std(), rel=1e-12)
    assert result["skewness"] == pytest.approx(scipy.stats.skew(flat), rel=1e-10)
    assert result["kurtosis"] == pytest.approx(scipy.stats.kurtosis(flat), rel=1e-10)


def test_moments_of_a_gaussian_sample_have_zero_skewness_and_excess_kurtosis():
    samples = np.random.default_rng(3).normal(1.5, 2.0, size=200_000)
    result = moments(samples)
    # standard errors: std/sqrt(n), ~sqrt(6/n) = 0.0055, ~sqrt(24/n) = 0.011
    assert result["mean"] == pytest.approx(1.5, abs=5 * 2.0 / math.sqrt(2e5))
    assert result["std"] == pytest.approx(2.0, rel=0.01)
    assert abs(result["skewness"]) < 5 * math.sqrt(6 / 2e5)
    assert abs(result["kurtosis"]) < 5 * math.sqrt(24 / 2e5)


def test_moments_of_constant_data_have_undefined_shape_moments():
    result = moments(np.full((4, 4), 3.0))
    assert result["std"] == 0.0 and math.isnan(result["skewness"])


def test_pdf_is_normalised_and_matches_a_gaussian_density():
    samples = np.random.default_rng(4).standard_normal(400_000)
    edges, density = pdf(samples, bins=np.linspace(-4, 4, 41))
    widths = np.diff(edges)
    assert np.sum(density * widths) == pytest.approx(1.0, abs=1e-3)   # tails beyond 4
    centres = 0.5 * (edges[1:] + edges[:-1])
    expected = np.array([scipy.stats.norm.cdf(b) - scipy.stats.norm.cdf(a)
                         for a, b in itertools.pairwise(edges)]) / widths
    np.testing.assert_allclose(density[np.abs(centres) < 2], expected[np.abs(centres) < 2],
                               rtol=0.03)


def test_w1_over_std_of_a_shifted_sample_is_shift_over_std():
    reference = np.random.default_rng(5).normal(0.0, 2.0, size=(50, 32, 32))
    shift = 0.7
    assert wasserstein1_over_std(reference + shift, reference) == pytest.approx(
        shift / reference.std(), rel=1e-12)
    independent = np.random.default_rng(6).normal(shift, 2.0, size=(50, 32, 32))
    # W1 between two independent samples of 51200 values fluctuates by ~0.01 sigma
    assert wasserstein1_over_std(independent, reference) == pytest.approx(shift / 2.0,
                                                                          abs=0.03)


def test_pooled_subsampling_is_a_deterministic_stride():
    rng = np.random.default_rng(7)
    generated, reference = rng.standard_normal((2, 20, 16, 16))        # 5120 values each
    stride = math.ceil(5120 / 1000)
    expected = scipy.stats.wasserstein_distance(generated.ravel()[::stride],
                                                reference.ravel()[::stride])
    assert wasserstein1_over_std(generated, reference, max_values=1000) == pytest.approx(
        expected / reference.std(), rel=1e-12)
    expected_p = scipy.stats.ks_2samp(generated.ravel()[::stride],
                                      reference.ravel()[::stride]).pvalue
    assert ks_pvalue(generated, reference, max_values=1000) == pytest.approx(expected_p)


def test_ks_pvalue_is_small_for_different_distributions_and_not_for_equal_ones():
    rng = np.random.default_rng(8)
    reference = rng.standard_normal(20_000)
    assert ks_pvalue(rng.standard_normal(20_000) + 0.2, reference) < 1e-10
    assert ks_pvalue(rng.standard_t(3, size=20_000), reference) < 1e-4
    assert ks_pvalue(rng.standard_normal(20_000), reference) > 1e-3


def test_w1_rejects_a_constant_reference_and_a_scale_that_is_not_positive():
    with pytest.raises(ValueError, match="zero standard deviation"):
        wasserstein1_over_std(np.zeros(10), np.ones(10))
    # a given scale replaces the reference's std, so a constant reference is fine then
    assert wasserstein1_over_std(np.zeros(10), np.ones(10), scale=2.0) == 0.5
    for scale in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale must be positive"):
            wasserstein1_over_std(np.zeros(10), np.arange(10.0), scale=scale)


# ------------------------------------------------------------ two-point statistics


def test_correlation_function_of_a_cosine_is_half_amplitude_squared_cosine_shell_averaged():
    n, box, m, amplitude = 32, 2.0, 3, 1.5
    field = _cosine_x(n, box, m, amplitude)
    r, xi = correlation_function(field, box)
    dx = box / n
    d = np.rint(np.fft.fftfreq(n) * n)
    expected, radii = [], []
    for i in range(n // 2 + 1):
        values, lengths = [], []
        for dx_i in d:
            for dy_i in d:
                length = math.hypot(dx_i, dy_i)
                if i - 0.5 <= length < i + 0.5:
                    values.append(amplitude**2 / 2 * math.cos(2 * np.pi * m / box * dx_i * dx))
                    lengths.append(length * dx)
        expected.append(np.mean(values))
        radii.append(np.mean(lengths))
    np.testing.assert_allclose(xi, expected, atol=1e-13)
    np.testing.assert_allclose(r, radii, rtol=1e-13)
    assert xi[0] == pytest.approx(amplitude**2 / 2)


def test_correlation_function_matches_a_direct_sum_over_displacements():
    n, box = 8, 1.0
    rng = np.random.default_rng(9)
    fields = rng.standard_normal((2, n, n)) + 1.0
    _, xi = correlation_function(fields, box)
    assert xi.shape == (2, n // 2 + 1)
    g = fields - fields.mean(axis=(-2, -1), keepdims=True)
    d = np.rint(np.fft.fftfreq(n) * n).astype(int)
    for sample in range(2):
        sums, counts = np.zeros(n // 2 + 1), np.zeros(n // 2 + 1)
        for a in d:
            for b in d:
                shell = math.floor(math.hypot(a, b) + 0.5)
                if shell <= n // 2:
                    shifted = np.roll(g[sample], (-a, -b), axis=(0, 1))    # g(x + d)
                    sums[shell] += np.mean(g[sample] * shifted)
                    counts[shell] += 1
        np.testing.assert_allclose(xi[sample], sums / counts, atol=1e-13)
    assert xi[0, 0] == pytest.approx(fields[0].var())


def test_structure_functions_of_a_cosine_match_the_analytic_increments():
    n, box, m, amplitude = 32, 2.0, 3, 1.5
    field = _cosine_x(n, box, m, amplitude)
    k0 = 2 * np.pi * m / box
    r, s2 = structure_function(field, box, order=2)
    np.testing.assert_allclose(r, np.arange(1, n // 2 + 1) * box / n)
    # x increments -2A sin(k0 x + k0 r/2) sin(k0 r/2), y increments 0, averaged over axes
    np.testing.assert_allclose(s2, amplitude**2 * (1 - np.cos(k0 * r)) / 2, atol=1e-13)
    _, s4 = structure_function(field, box, order=4)
    np.testing.assert_allclose(s4, 3 * amplitude**4 * np.sin(k0 * r / 2) ** 4, atol=1e-12)


def test_second_order_structure_function_fast_path_matches_direct_increments():
    rng = np.random.default_rng(10)
    fields = rng.standard_normal((3, 12, 12)) + 4.0
    _, s2 = structure_function(fields, 1.0, order=2)
    direct = np.stack([
        0.5 * (np.mean((np.roll(fields, -lag, axis=-2) - fields) ** 2, axis=(-2, -1))
               + np.mean((np.roll(fields, -lag, axis=-1) - fields) ** 2, axis=(-2, -1)))
        for lag in range(1, 7)], axis=-1)
    np.testing.assert_allclose(s2, direct, rtol=1e-12)
    _, s_near_2 = structure_function(fields, 1.0, order=2.0 + 1e-9)     # generic path
    np.testing.assert_allclose(s_near_2, direct, rtol=1e-7)


# ------------------------------------------------------------------------ diversity


def test_spread_ratio_of_a_repeated_sample_is_zero():
    reference = np.random.default_rng(11).standard_normal((10, 8, 8))
    collapsed = np.repeat(reference[:1], 10, axis=0)
    assert spread_ratio(collapsed, reference) == 0.0
    assert spread_ratio(reference, reference) == pytest.approx(1.0)
    centred = reference - reference.mean(axis=0)
    assert spread_ratio(2.5 * centred + 1.0, reference) == pytest.approx(2.5, rel=1e-12)


def test_spread_ratio_rejects_a_zero_reference_spread():
    with pytest.raises(ValueError):
        spread_ratio(np.zeros((3, 4, 4)), np.ones((3, 4, 4)))


def test_streamed_ensemble_spread_equals_the_two_pass_std_despite_a_large_mean():
    """mean over pixels of std over samples (ddof 1 and 0), computed by numpy's two-pass
    std, against the one-sample-at-a-time sums; a mean 1e6 times the spread would cost
    a naive E[x^2] - E[x]^2 all its digits."""
    samples = 1e6 + np.random.default_rng(13).standard_normal((7, 3, 8, 8))
    for ddof in (0, 1):
        expected = float(np.mean(np.std(samples, axis=0, ddof=ddof)))
        assert ensemble_spread(samples, ddof=ddof) == pytest.approx(expected, rel=1e-9)


def test_ensemble_spread_of_two_samples_is_mean_absolute_difference_over_sqrt2():
    a, b = np.random.default_rng(14).standard_normal((2, 16, 16))
    spread = EnsembleSpread()
    assert math.isnan(spread.spread())                       # no sample: undefined
    spread.add(a)
    assert math.isnan(spread.spread())                       # one sample: undefined
    spread.add(b)
    assert spread.spread() == pytest.approx(float(np.mean(np.abs(a - b))) / math.sqrt(2),
                                            rel=1e-12)


def test_ensemble_spread_ratio_is_nan_against_a_reference_without_spread():
    generated, reference = EnsembleSpread(), EnsembleSpread()
    for value in (1.0, 2.0):
        generated.add(np.full((4, 4), value))
        reference.add(np.ones((4, 4)))
    assert generated.spread() == pytest.approx(1 / math.sqrt(2))
    assert reference.spread() == 0.0
    assert math.isnan(generated.ratio_to(reference))
    assert reference.ratio_to(generated) == 0.0


def test_ensemble_spread_refuses_samples_of_another_shape():
    spread = EnsembleSpread()
    spread.add(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="shape"):
        spread.add(np.zeros((4, 5)))


# -------------------------------------------------------------------------- Fréchet


def test_frechet_distance_of_identical_gaussian_samples_is_zero():
    features = np.random.default_rng(12).standard_normal((500, 6)) @ np.diag(
        [1, 2, 3, 0.5, 0.1, 4.0])
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_of_shifted_means_is_the_squared_mean_difference():
    features = np.random.default_rng(13).standard_normal((400, 5))
    shift = np.array([0.5, -1.0, 2.0, 0.0, 0.3])
    assert frechet_distance(features, features + shift) == pytest.approx(
        float(shift @ shift), rel=1e-9)


def test_frechet_distance_in_one_dimension_is_mean_and_std_differences_squared():
    rng = np.random.default_rng(14)
    a, b = rng.normal(1.0, 2.0, 300), rng.normal(-0.5, 0.7, 200)
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_an_eigenvalue_formula_even_for_singular_covariances():
    rng = np.random.default_rng(15)
    for rows in (200, 4):                                 # 4 rows, 7 columns: rank 3
        a, b = rng.standard_normal((rows, 7)), 1.3 * rng.standard_normal((rows, 7)) + 0.2
        cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        w, v = np.linalg.eigh(cov_a)
        root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a),
                                            0, None)))
        expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                    - 2 * trace_root)
        assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-5)


def test_frechet_distance_stays_real_for_many_features_and_few_samples():
    """38 features from 40 samples (singular covariance, scales 1e-6..1e3): no complex sqrtm."""
    rng = np.random.default_rng(3)
    scales = np.logspace(-6, 3, 38)
    a = rng.standard_normal((40, 38)) * scales
    b = rng.standard_normal((160, 38)) * scales * 1.1
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0
    # symmetric in its arguments (the eigenvalue form is exact, up to round-off)
    assert frechet_distance(b, a) == pytest.approx(value, rel=1e-6)


def test_aligned_spread_is_zero_for_one_field_at_random_shifts_and_plain_for_noise():
    from surrogate.validation.statistics import AlignedEnsembleSpread, EnsembleSpread
    rng = np.random.default_rng(0)
    pattern = rng.normal(size=(3, 16, 16, 2))          # (times, x, y, components)
    aligned, plain = AlignedEnsembleSpread((1, 2)), EnsembleSpread()
    for _ in range(6):
        moved = np.roll(pattern, tuple(rng.integers(16, size=2)), axis=(1, 2))
        aligned.add(moved)
        plain.add(moved)
    assert aligned.spread() == 0.0
    assert plain.spread() > 0.8                         # white noise of unit variance
    # independent white noise: aligning to the best of 256 shifts changes little
    aligned, plain = AlignedEnsembleSpread((1, 2)), EnsembleSpread()
    for _ in range(6):
        sample = rng.normal(size=(3, 16, 16, 2))
        aligned.add(sample)
        plain.add(sample)
    assert aligned.spread() == pytest.approx(plain.spread(), rel=0.05)
    assert aligned.spread() < plain.spread()


def test_aligned_spread_moves_times_and_components_of_a_sample_together():
    """The best shift is one for the whole sample: a sample whose two snapshots are
    rolled by different amounts cannot be aligned to 0."""
    from surrogate.validation.statistics import AlignedEnsembleSpread
    rng = np.random.default_rng(1)
    first = rng.normal(size=(2, 16, 16))
    together = np.roll(first, (3, 5), axis=(1, 2))
    apart = np.stack([np.roll(first[0], 3, axis=0), np.roll(first[1], 7, axis=1)])
    same, different = AlignedEnsembleSpread((1, 2)), AlignedEnsembleSpread((1, 2))
    for accumulator, second in ((same, together), (different, apart)):
        accumulator.add(first)
        accumulator.add(second)
    assert same.spread() == 0.0
    assert different.spread() > 0.3
