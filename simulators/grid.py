"""Periodic 2-D grid: coordinates, angular wavenumbers, spectral derivatives, dealiasing.

The domain is the square ``[0, L)^2`` with ``N`` points per side, ``dx = L / N`` and
grid points ``x_i = i dx``. Arrays are indexed ``field[..., ix, iy]`` (axis -2 is x,
axis -1 is y) and transformed with the real FFT over the last two axes, so a
spectral array has shape ``(..., N, N // 2 + 1)``.

Fourier convention (numpy/scipy): ``f_hat[k] = sum_j f[j] exp(-i k x_j)`` (no
normalisation forward), inverse divided by ``N^2``. Angular wavenumbers are
``k = 2 pi m / L`` with integer ``m`` in ``[-N/2, N/2)``. A derivative is the
multiplication ``d/dx <-> i k_x``; the Nyquist mode ``m = -N/2`` of an odd derivative
is set to zero so that real fields have real derivatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.fft


@dataclass(frozen=True)
class PeriodicGrid:
    """Uniform periodic grid of ``resolution x resolution`` points on ``[0, box_size)^2``.

    Attributes:
        resolution: points per side ``N``.
        box_size: side length ``L`` (length units of the simulator).
    """

    resolution: int
    box_size: float = 2.0 * math.pi
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # ---------------------------------------------------------------- real space
    @property
    def shape(self) -> tuple[int, int]:
        """Real-space array shape ``(N, N)``."""
        return (self.resolution, self.resolution)

    @property
    def spectral_shape(self) -> tuple[int, int]:
        """Shape of an ``rfft2`` array, ``(N, N // 2 + 1)``."""
        return (self.resolution, self.resolution // 2 + 1)

    @property
    def dx(self) -> float:
        """Grid spacing ``L / N``."""
        return self.box_size / self.resolution

    @property
    def x(self) -> np.ndarray:
        """Coordinates ``x_i = i dx``, shape (N,)."""
        return np.arange(self.resolution) * self.dx

    @property
    def y(self) -> np.ndarray:
        """Coordinates ``y_j = j dx``, shape (N,)."""
        return self.x

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Coordinate arrays ``(X, Y)`` of shape (N, N) with ``X[i, j] = x_i``."""
        return np.meshgrid(self.x, self.y, indexing="ij")

    # ------------------------------------------------------------ Fourier space
    def _cached(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._cache:
            value = make()
            value.setflags(write=False)
            self._cache[key] = value
        return self._cache[key]

    @property
    def kx(self) -> np.ndarray:
        """Angular wavenumbers along x, shape (N, 1) (broadcasts over rfft2 arrays)."""
        return self._cached("kx", lambda: (2 * np.pi / self.box_size) * (
            np.fft.fftfreq(self.resolution) * self.resolution)[:, None])

    @property
    def ky(self) -> np.ndarray:
        """Angular wavenumbers along y (non-negative half), shape (1, N // 2 + 1)."""
        return self._cached("ky", lambda: (2 * np.pi / self.box_size) * (
            np.fft.rfftfreq(self.resolution) * self.resolution)[None, :])

    @property
    def k_squared(self) -> np.ndarray:
        """``|k|^2 = kx^2 + ky^2``, shape (N, N // 2 + 1)."""
        return self._cached("k2", lambda: self.kx**2 + self.ky**2)

    @property
    def k_magnitude(self) -> np.ndarray:
        """``|k|``, shape (N, N // 2 + 1)."""
        return self._cached("k", lambda: np.sqrt(self.k_squared))

    @property
    def inverse_k_squared(self) -> np.ndarray:
        """``1 / |k|^2`` with the mean mode (k = 0) set to 0, shape (N, N // 2 + 1)."""
        def make() -> np.ndarray:
            k2 = self.k_squared.copy()
            k2[0, 0] = 1.0
            inverse = 1.0 / k2
            inverse[0, 0] = 0.0
            return inverse
        return self._cached("invk2", make)

    @property
    def dealias_mask(self) -> np.ndarray:
        """Orszag's 2/3 rule: True where ``|m_x| < N/3`` and ``|m_y| < N/3``.

        Quadratic products of fields restricted to these modes have no aliasing
        errors on the retained modes (Orszag 1971, J. Atmos. Sci. 28, 1074).
        Shape (N, N // 2 + 1), boolean.
        """
        def make() -> np.ndarray:
            n = self.resolution
            mx = np.abs(np.fft.fftfreq(n) * n)[:, None]
            my = np.abs(np.fft.rfftfreq(n) * n)[None, :]
            return (mx < n / 3.0) & (my < n / 3.0)
        return self._cached("dealias", make)

    def _odd_derivative_factor(self, axis: str) -> np.ndarray:
        def make() -> np.ndarray:
            n = self.resolution
            if axis == "x":
                factor = 1j * self.kx * np.ones(self.spectral_shape)
                factor[n // 2, :] = 0.0          # Nyquist row
            else:
                factor = 1j * self.ky * np.ones(self.spectral_shape)
                factor[:, n // 2] = 0.0          # Nyquist column
            return factor
        return self._cached("d" + axis, make)

    @property
    def ikx(self) -> np.ndarray:
        """``i k_x`` with the Nyquist mode zeroed, shape (N, N // 2 + 1)."""
        return self._odd_derivative_factor("x")

    @property
    def iky(self) -> np.ndarray:
        """``i k_y`` with the Nyquist mode zeroed, shape (N, N // 2 + 1)."""
        return self._odd_derivative_factor("y")

    # --------------------------------------------------------------- transforms
    def fft(self, field: np.ndarray) -> np.ndarray:
        """Real FFT over the last two axes: (..., N, N) -> (..., N, N // 2 + 1)."""
        return scipy.fft.rfft2(field, axes=(-2, -1))

    def ifft(self, spectrum: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`fft`: (..., N, N // 2 + 1) -> real (..., N, N)."""
        return scipy.fft.irfft2(spectrum, s=self.shape, axes=(-2, -1))

    # -------------------------------------------------------------- derivatives
    def gradient(self, field: np.ndarray) -> np.ndarray:
        """Spectral gradient of a scalar field: (..., N, N) -> (..., N, N, 2)."""
        spectrum = self.fft(field)
        return np.stack([self.ifft(self.ikx * spectrum), self.ifft(self.iky * spectrum)],
                        axis=-1)

    def divergence(self, vector: np.ndarray) -> np.ndarray:
        """Spectral divergence ``du_x/dx + du_y/dy``: (..., N, N, 2) -> (..., N, N)."""
        return self.ifft(self.ikx * self.fft(vector[..., 0]) + self.iky * self.fft(vector[..., 1]))

    def curl(self, vector: np.ndarray) -> np.ndarray:
        """Spectral curl ``du_y/dx - du_x/dy``: (..., N, N, 2) -> (..., N, N)."""
        return self.ifft(self.ikx * self.fft(vector[..., 1]) - self.iky * self.fft(vector[..., 0]))

    def laplacian(self, field: np.ndarray) -> np.ndarray:
        """Spectral Laplacian ``-|k|^2 f_hat``: (..., N, N) -> (..., N, N)."""
        return self.ifft(-self.k_squared * self.fft(field))

    def velocity_from_vorticity_hat(self, vorticity_hat: np.ndarray) -> np.ndarray:
        """Divergence-free velocity whose curl is the given vorticity (mean flow zero).

        With stream function ``psi_hat = omega_hat / |k|^2`` (``-lap psi = omega``),
        ``u = d psi / dy`` and ``v = -d psi / dx``.

        Args:
            vorticity_hat: rfft2 of the vorticity, shape (..., N, N // 2 + 1).
        Returns:
            Velocity ``(u, v)`` in real space, shape (..., N, N, 2).
        """
        psi_hat = vorticity_hat * self.inverse_k_squared
        return np.stack([self.ifft(self.iky * psi_hat), self.ifft(-self.ikx * psi_hat)], axis=-1)


def gaussian_random_field(grid: PeriodicGrid, power_spectrum: Callable[[np.ndarray], np.ndarray],
                          rng: np.random.Generator) -> np.ndarray:
    """Draw a zero-mean real Gaussian random field with a given isotropic power spectrum.

    Normalisation (powerbox's default, a = b = 1): the estimator
    ``P_hat(k) = |dx^2 FFT(f)(k)|^2 / L^2`` has expectation ``P(|k|)`` at every
    mode ``k != 0``; hence ``Var f = sum_{k != 0} P(|k|) / L^2``.

    Method: unit white noise ``w`` (``E|FFT(w)|^2 = N^2``) is coloured by
    ``sqrt(P(|k|)) N / L`` in Fourier space, which gives
    ``E|FFT(f)|^2 = P N^4 / L^2 = P L^2 / dx^4``.

    Args:
        grid: the periodic grid.
        power_spectrum: ``P(k)`` for angular wavenumber magnitudes ``k > 0`` (array in,
            array out, units of field^2 * length^2).
        rng: random generator (the only source of randomness).
    Returns:
        Real field of shape (N, N), float64; its k = 0 mode is exactly zero.
    """
    noise = rng.standard_normal(grid.shape)
    return grid.ifft(grid.fft(noise) * colouring_filter(grid, power_spectrum))


def colouring_filter(grid: PeriodicGrid, power_spectrum: Callable[[np.ndarray], np.ndarray]
                     ) -> np.ndarray:
    """The Fourier multiplier ``sqrt(P(|k|)) N / L`` (0 at ``k = 0``) that
    :func:`gaussian_random_field` applies to the FFT of unit white noise.

    Returns:
        Real array of shape (N, N // 2 + 1), float64.
    """
    k = grid.k_magnitude
    amplitude = np.zeros_like(k)
    nonzero = k > 0
    amplitude[nonzero] = np.sqrt(power_spectrum(k[nonzero])) * grid.resolution / grid.box_size
    return amplitude
