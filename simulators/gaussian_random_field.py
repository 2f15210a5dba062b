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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from simulators.base import FieldSpec, Invariant, Parameter, Simulator
from simulators.grid import PeriodicGrid, gaussian_random_field


def power_law(amplitude: float, spectral_index: float):
    """``P(k) = amplitude * k**(-spectral_index)`` as a callable on arrays of ``k > 0``."""
    return lambda k: amplitude * k ** (-spectral_index)


def expected_variance(grid: PeriodicGrid, amplitude: float, spectral_index: float) -> float:
    """``sum_{k != 0} P(|k|) / L^2`` over all modes of the grid (the field's variance)."""
    k = np.fft.fftfreq(grid.resolution) * grid.resolution * 2 * np.pi / grid.box_size
    k_magnitude = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
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
    default_snapshots = 1

    def simulate(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                 times: np.ndarray, seeds: Sequence[int], init: str = "random",
                 initial_state: Mapping[str, np.ndarray] | None = None
                 ) -> dict[str, np.ndarray]:
        """Draw one realisation per seed: ``{"delta", "density"}`` of shape (B, 1, N, N)."""
        if initial_state is not None:
            raise ValueError(f"{self.name} is static and takes no initial_state")
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
