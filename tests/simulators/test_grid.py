"""The periodic grid: wavenumbers, spectral derivatives and dealiasing against exact results."""

import numpy as np
import pytest

from simulators.grid import PeriodicGrid, gaussian_random_field


@pytest.mark.parametrize("box_size", [2 * np.pi, 1.0, 7.5])
def test_spectral_derivatives_of_trigonometric_field_are_exact(box_size):
    grid = PeriodicGrid(32, box_size)
    x, y = grid.mesh()
    kx, ky = 3 * 2 * np.pi / box_size, 5 * 2 * np.pi / box_size
    field = np.sin(kx * x) * np.cos(ky * y)
    gradient = grid.gradient(field)
    np.testing.assert_allclose(gradient[..., 0], kx * np.cos(kx * x) * np.cos(ky * y),
                               atol=1e-11 * kx)
    np.testing.assert_allclose(gradient[..., 1], -ky * np.sin(kx * x) * np.sin(ky * y),
                               atol=1e-11 * ky)
    np.testing.assert_allclose(grid.laplacian(field), -(kx**2 + ky**2) * field,
                               atol=1e-10 * (kx**2 + ky**2))


def test_curl_of_gradient_vanishes_and_divergence_of_curl_velocity_vanishes():
    grid = PeriodicGrid(64)
    field = gaussian_random_field(grid, lambda k: k**-3.0, np.random.default_rng(1))
    assert np.abs(grid.curl(grid.gradient(field))).max() < 1e-12 * np.abs(field).max()
    velocity = grid.velocity_from_vorticity_hat(grid.fft(field))
    scale = np.abs(grid.gradient(velocity[..., 0])).max()
    assert np.abs(grid.divergence(velocity)).max() < 1e-13 * scale
    # the curl of that velocity gives back the vorticity on every mode that has a
    # well-defined odd derivative (the Nyquist row/column are zeroed by convention)
    vorticity = grid.ifft(grid.fft(field) * grid.dealias_mask)
    velocity = grid.velocity_from_vorticity_hat(grid.fft(vorticity))
    np.testing.assert_allclose(grid.curl(velocity), vorticity - vorticity.mean(),
                               atol=1e-12 * scale)


def test_nyquist_mode_has_zero_odd_derivative():
    grid = PeriodicGrid(16)
    x, _ = grid.mesh()
    nyquist = np.cos(8 * x)            # alternating +1/-1 along x: derivative ill-defined
    assert np.abs(grid.gradient(nyquist)).max() < 1e-12


def test_dealias_mask_keeps_two_thirds_of_each_axis():
    grid = PeriodicGrid(48)
    mask = grid.dealias_mask
    assert mask.shape == grid.spectral_shape
    # |m| < 16 retained: m = -15..15 -> 31 rows; m_y = 0..15 -> 16 columns
    assert mask[:, 0].sum() == 31 and mask[0].sum() == 16


def test_quadratic_product_of_dealiased_modes_is_alias_free():
    """With both factors inside the 2/3 band, the product's retained modes are exact."""
    n = 24
    grid = PeriodicGrid(n)
    x, _ = grid.mesh()
    m = 7                                  # < n/3 = 8: retained
    product = np.cos(m * x) ** 2           # = 1/2 + cos(2 m x)/2 ; 2m = 14 aliases to -10
    spectrum = grid.fft(product) * grid.dealias_mask
    expected = grid.fft(np.full(grid.shape, 0.5))
    np.testing.assert_allclose(spectrum, expected * grid.dealias_mask, atol=1e-12 * n * n)


def test_gaussian_random_field_variance_follows_parseval():
    grid = PeriodicGrid(64, 10.0)
    spectrum = lambda k: 2.0 * k**-2.0  # noqa: E731
    # count the rfft half-plane twice except the ky = 0 and Nyquist columns
    k = grid.k_magnitude
    weights = np.full(k.shape, 2.0)
    weights[:, 0] = weights[:, -1] = 1.0
    expected = np.sum(weights * np.where(k > 0, spectrum(np.where(k > 0, k, 1.0)), 0.0)) \
        / grid.box_size**2
    variances = [gaussian_random_field(grid, spectrum, np.random.default_rng(s)).var()
                 for s in range(200)]
    # mean of 200 variances: relative standard error well below 2 %
    assert np.mean(variances) == pytest.approx(expected, rel=0.03)
