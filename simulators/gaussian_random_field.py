"""Gaussian random fields with a power-law spectrum, and their lognormal transform.

Fields (static: one snapshot at t = 0 per trajectory):

* ``delta``: zero-mean Gaussian random field on the periodic square ``[0, L)^2`` with
  isotropic power spectrum ``P(k) = amplitude * k^(-spectral_index)`` for angular
  wavenumbers ``k = |k| > 0`` (``P(0) = 0``), in the cosmology normalisation of
  powerbox (a = b = 1)::

      P_hat(k) = |dx^2 FFT(delta)(k)|^2 / L^2,      E[P_hat(k)] = P(|k|)

  so that ``Var(delta) = sum_{k != 0} P(|k|) / L^2`` (Parseval).
* ``density``: the lognormal transform ``density = exp(delta - sigma^2 / 2)`` with
  ``sigma^2 = sum_{k != 0} P(|k|) / L^2`` the *expected* variance of ``delta`` on this
  grid, so that ``E[density] = 1`` and ``density > 0`` everywhere
  (Coles & Jones 1991, MNRAS 248, 1).

The declared ranges keep ``sigma^2`` below ~15 up to 4096^2 (largest for
``amplitude = 1``, ``spectral_index = 1.5``), so ``density`` stays positive and finite in
float32.

Symmetries (``GaussianRandomField.symmetries``): periodic shifts, the mirrors
``x -> -x`` and ``y -> -y`` and the 90-degree rotation. ``delta`` is white noise (whose
law is invariant under any permutation of the grid points) filtered by
``sqrt(P(|k|))``, which depends on ``|k|^2 = k_x^2 + k_y^2`` only and so commutes with
these maps; ``density`` is a pointwise function of ``delta``. Hence the law of the pair
is invariant under the whole square-lattice group.

Units: ``delta`` and ``density`` are dimensionless; ``amplitude`` has units of
length^2 (2-D power spectrum of a dimensionless field), wavenumbers 1/length.

Backends (``simulate(..., device=...)``): ``device=None`` is numpy/scipy throughout. A
torch device (``"cpu"``, ``"cuda"``, ``"cuda:N"``) keeps the random draws on numpy (each
seed's ``default_rng(seed).standard_normal((N, N))``, so a seed gives the same field)
and the colouring filters and variances too (numpy, per trajectory), and moves the
spectral colouring (``rfft2``, multiply, ``irfft2``) and the lognormal transform to the
device, in float64, for the whole batch at once: equal to numpy to round-off. The
draws then dominate the cost (a few ms per 512^2 field on one core), so a GPU gains
less here than for the time-dependent systems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from simulators.base import FieldSpec, Invariant, Parameter, Simulator
from simulators.grid import PeriodicGrid, colouring_filter, gaussian_random_field

if TYPE_CHECKING:
    import torch

#: device memory per grid point and trajectory of the torch path (bytes, with margin)
TORCH_BYTES_PER_POINT = 64


def power_law(amplitude: float, spectral_index: float):
    """``P(k) = amplitude * k**(-spectral_index)`` as a callable on arrays of ``k > 0``."""
    return lambda k: amplitude * k ** (-spectral_index)


def expected_variance(grid: PeriodicGrid, amplitude: float, spectral_index: float) -> float:
    """``sum_{k != 0} P(|k|) / L^2`` over all modes of the grid (the field's variance).

    The sum runs over the full Fourier plane, ``|k|`` built from the grid's angular
    wavenumbers along one axis (:attr:`PeriodicGrid.kx`, all ``N`` of them).
    """
    k = grid.kx                                          # (N, 1)
    k_magnitude = np.sqrt(k**2 + k.T**2)                 # (N, N), the full plane
    k_magnitude = k_magnitude[k_magnitude > 0]
    return float(np.sum(amplitude * k_magnitude ** (-spectral_index)) / grid.box_size**2)


class GaussianRandomField(Simulator):
    """Static Gaussian random field ``delta`` with ``P(k) = A k^-n`` and lognormal ``density``."""

    name = "gaussian_random_field"
    description = "Gaussian random field with P(k) = amplitude k^-spectral_index (+ lognormal)"
    parameters = (
        Parameter("amplitude", 0.1, 0.01, 1.0, "length^2",
                  "power spectrum amplitude A in P(k) = A k^-n"),
        Parameter("spectral_index", 2.5, 1.5, 4.0, "1",
                  "power-law index n in P(k) = A k^-n"),
    )
    fields = (
        FieldSpec("delta", "1", "Gaussian random field (zero mean)"),
        FieldSpec("density", "1", "lognormal density exp(delta - sigma^2/2)"),
    )
    invariants = (
        Invariant("zero_mean", "delta", doc="the k = 0 mode is set to zero"),
        Invariant("bounded", "density", low=0.0, doc="lognormal density is positive"),
    )
    inits = ("random",)
    symmetries = ("shift", "flip_x", "flip_y", "rotate_90")
    static = True
    torch_backend = True
    default_snapshots = 1

    def simulate(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                 times: np.ndarray, seeds: Sequence[int], init: str = "random",
                 initial_state: Mapping[str, np.ndarray] | None = None,
                 device: str | None = None) -> dict[str, np.ndarray]:
        """Draw one realisation per seed: ``{"delta", "density"}`` of shape (B, 1, N, N).

        ``device``: ``None`` (numpy) or a torch device (see the module docstring).
        """
        if initial_state is not None:
            raise ValueError(f"{self.name} is static and takes no initial_state")
        resolved = self.check_device(device)
        if resolved is not None:
            return self._simulate_torch(parameters, grid, seeds, resolved)
        deltas, densities = [], []
        for index, seed in enumerate(seeds):
            amplitude = float(parameters["amplitude"][index])
            spectral_index = float(parameters["spectral_index"][index])
            delta = gaussian_random_field(grid, power_law(amplitude, spectral_index),
                                          np.random.default_rng(seed))
            variance = expected_variance(grid, amplitude, spectral_index)
            deltas.append(delta)
            densities.append(np.exp(delta - 0.5 * variance))
        return {"delta": np.stack(deltas)[:, None], "density": np.stack(densities)[:, None]}

    @property
    def initial_fields(self) -> tuple[str, ...]:
        return ()

    @staticmethod
    def _simulate_torch(parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                        seeds: Sequence[int], device: torch.device) -> dict[str, np.ndarray]:
        """:meth:`simulate` with the colouring on ``device`` (see the module docstring)."""
        import torch

        from simulators.backend import chunk_size, to_device, to_numpy
        seeds = list(seeds)
        batch, n = len(seeds), grid.resolution
        delta, density = np.empty((batch, 1, n, n)), np.empty((batch, 1, n, n))
        size = chunk_size(device, TORCH_BYTES_PER_POINT, n, max(batch, 1))
        for start in range(0, batch, size):
            indices = range(start, min(start + size, batch))
            noise = np.stack([np.random.default_rng(seeds[i]).standard_normal(grid.shape)
                              for i in indices])
            spectra = [power_law(float(parameters["amplitude"][i]),
                                 float(parameters["spectral_index"][i])) for i in indices]
            filters = np.stack([colouring_filter(grid, spectrum) for spectrum in spectra])
            variance = np.array([expected_variance(grid, float(parameters["amplitude"][i]),
                                                   float(parameters["spectral_index"][i]))
                                 for i in indices])
            field = torch.fft.irfft2(torch.fft.rfft2(to_device(noise, device))
                                     * to_device(filters, device), s=(n, n))
            chunk = slice(start, indices[-1] + 1)
            delta[chunk, 0] = to_numpy(field)
            density[chunk, 0] = to_numpy(torch.exp(
                field - 0.5 * to_device(variance, device)[:, None, None]))
        return {"delta": delta, "density": density}
