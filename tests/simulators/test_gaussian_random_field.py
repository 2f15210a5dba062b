"""Gaussian random fields: the estimated spectrum is the input A k^-n within sampling error.

The estimator here is powerbox's ``get_power`` (an independent implementation of the
same a = b = 1 convention), so these tests do not lean on our own validation code.
"""

import numpy as np
import pytest

import simulators
from simulators.gaussian_random_field import expected_variance, power_law
from simulators.grid import PeriodicGrid, colouring_filter

powerbox = pytest.importorskip("powerbox")  # the second opinion (the [test] extra)


def _shell_expectation(n, box_size, amplitude, index):
    """Mean of A |k|^-n over the modes of each shell round(|m|) = i, i = 1..n/2 - 1."""
    m = np.fft.fftfreq(n) * n
    m_abs = np.sqrt(m[:, None] ** 2 + m[None, :] ** 2)
    k = 2 * np.pi / box_size * m_abs
    shells = np.arange(1, n // 2)
    expected, counts = [], []
    for shell in shells:
        inside = (m_abs >= shell - 0.5) & (m_abs < shell + 0.5)
        expected.append(np.mean(amplitude * k[inside] ** -index))
        counts.append(inside.sum())
    return shells, np.array(expected), np.array(counts)


@pytest.mark.parametrize(("amplitude", "index", "box_size"), [(0.1, 2.5, 2 * np.pi),
                                                                (1.0, 1.5, 2 * np.pi),
                                                                (0.03, 4.0, 5.0)])
def test_estimated_spectrum_matches_input_within_sampling_error(amplitude, index, box_size):
    n, realisations = 64, 40
    sim = simulators.get("gaussian_random_field")
    edges = (np.arange(0, n // 2) + 0.5) * 2 * np.pi / box_size
    estimates = []
    for seed in range(realisations):
        delta = sim.run({"amplitude": amplitude, "spectral_index": index}, resolution=n,
                        seed=seed, box_size=box_size)["delta"].values[0].astype(np.float64)
        spectrum = powerbox.get_power(delta, boxlength=box_size, bins=edges,
                                      dimensionless=False, ignore_zero_mode=True)
        estimates.append(spectrum.power)
    estimate = np.mean(estimates, axis=0)
    _, expected, counts = _shell_expectation(n, box_size, amplitude, index)
    # each independent mode's power is exponential (std = mean); a shell holds
    # counts/2 independent modes (Hermitian pairs), so the relative std of the
    # averaged estimate is sqrt(2 / (counts * realisations))
    z = (estimate - expected) / (expected * np.sqrt(2.0 / (counts * realisations)))
    assert np.abs(z).max() < 4.5, z
    # and as a whole: sum z^2 follows chi^2 with len(z) degrees of freedom
    assert np.sum(z**2) < len(z) + 5 * np.sqrt(2 * len(z))


def test_wrong_spectral_index_is_detected_by_the_same_test():
    """The test above can fail: a field with n = 2.5 is not consistent with n = 2.0."""
    n, realisations = 64, 40
    sim = simulators.get("gaussian_random_field")
    edges = (np.arange(0, n // 2) + 0.5)
    estimate = np.mean([powerbox.get_power(
        sim.run({"spectral_index": 2.5}, resolution=n, seed=s)["delta"].values[0],
        boxlength=2 * np.pi, bins=edges, dimensionless=False, ignore_zero_mode=True).power
        for s in range(realisations)], axis=0)
    _, expected, counts = _shell_expectation(n, 2 * np.pi, 0.1, 2.0)
    z = (estimate - expected) / (expected * np.sqrt(2.0 / (counts * realisations)))
    assert np.abs(z).max() > 10


def test_variance_and_lognormal_mean():
    sim = simulators.get("gaussian_random_field")
    grid = PeriodicGrid(64)
    runs = [sim.run({"amplitude": 0.5, "spectral_index": 2.0}, resolution=64, seed=s)
            for s in range(100)]
    variance = np.mean([ds["delta"].values.astype(np.float64).var() for ds in runs])
    density_mean = np.mean([ds["density"].values.astype(np.float64).mean() for ds in runs])
    assert variance == pytest.approx(expected_variance(grid, 0.5, 2.0), rel=0.1)
    assert density_mean == pytest.approx(1.0, abs=0.05)
    assert all(ds["density"].values.min() > 0 for ds in runs)
    # density is exactly exp(delta - sigma^2 / 2)
    sigma2 = expected_variance(grid, 0.5, 2.0)
    np.testing.assert_allclose(runs[0]["density"].values,
                               np.exp(runs[0]["delta"].values.astype(np.float64) - sigma2 / 2),
                               rtol=1e-6)


def test_expected_variance_is_the_variance_the_colouring_filter_draws():
    """Unit white noise coloured by c(k) has E[Var_x f] = sum_{m != 0} c(k_m)^2 / N^2 over
    the full plane (E|FFT w|^2 = N^2, Parseval); the sum here runs over the rfft2 half
    plane with each column counted as the modes it stands for, an independent path."""
    for n, box in ((16, 2 * np.pi), (17, 2.5), (64, 10.0)):
        grid = PeriodicGrid(n, box)
        filter_ = colouring_filter(grid, power_law(0.3, 2.7))          # (n, n // 2 + 1)
        columns = np.full(n // 2 + 1, 2.0)
        columns[0] = 1.0
        if n % 2 == 0:
            columns[-1] = 1.0
        drawn = float(np.sum(columns * filter_**2) / n**2)
        assert expected_variance(grid, 0.3, 2.7) == pytest.approx(drawn, rel=1e-12)


def test_delta_has_zero_mean_to_round_off():
    delta = simulators.get("gaussian_random_field").run(resolution=128, seed=2)["delta"].values
    assert abs(float(delta.astype(np.float64).mean())) < 1e-6 * float(delta.std())


def test_static_system_rejects_several_snapshots_and_initial_state():
    sim = simulators.get("gaussian_random_field")
    with pytest.raises(ValueError, match="static"):
        sim.run(resolution=32, n_snapshots=3)
    with pytest.raises(ValueError, match="does not take"):
        sim.run(resolution=32, initial_state={"delta": np.zeros((32, 32))})
    with pytest.raises(ValueError, match="spectral_index"):
        sim.run({"spectral_index": 0.5}, resolution=32)
