"""Linear diffusion (heat equation) on the periodic square, integrated exactly.

Equation::

    du/dt = D lap(u),    u(x, y, 0) = u0(x, y),   periodic on [0, L)^2

Each Fourier mode decays independently, ``u_hat(k, t) = u_hat(k, 0) exp(-D |k|^2 t)``,
so the solver evaluates this closed form at every snapshot time: no time-stepping
error, and the mean (k = 0 mode, multiplied by exp(0) = 1) is conserved to round-off.

Random initial condition (``init="random"``): a zero-mean Gaussian random field with
power spectrum ``P(k) ∝ exp(-k^2 / (2 k_c^2))`` and ``k_c = 4 (2 pi / L)``, scaled to
unit standard deviation, so the field is smooth and resolved at any resolution >= 16.

Symmetries (``Diffusion.symmetries``): periodic shifts, the mirrors ``x -> -x`` and
``y -> -y`` and the 90-degree rotation (so the whole square-lattice group). The Laplacian
commutes with every isometry of the grid (the multiplier ``exp(-D |k|^2 t)`` depends on
``|k|^2 = k_x^2 + k_y^2`` only, which these maps permute among themselves), and the random
initial field is statistically homogeneous and isotropic: white noise, whose law is
invariant under any permutation of the grid points, coloured by a filter that depends on
``|k|`` only, then divided by its own (permutation-invariant) standard deviation.

Units: ``u`` is dimensionless, length and time are in the box's units;
``diffusivity`` is in length^2 / time.

Backends (``simulate(..., device=...)``): ``device=None`` evaluates the closed form with
numpy/scipy. A torch device (``"cpu"``, ``"cuda"``, ``"cuda:N"``) takes the same numpy
initial fields to the device and evaluates the same closed form there in float64 with
``torch.fft`` (one ``rfft2`` per batch, one ``irfft2`` per batch and snapshot), equal to
the numpy result to round-off. On a GPU a chunk is the whole batch, capped at
``backend.TORCH_CHUNK_BYTES`` (``TORCH_BYTES_PER_POINT`` per grid point and trajectory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from simulators.base import FieldSpec, Invariant, Parameter, Simulator
from simulators.grid import PeriodicGrid, gaussian_random_field

if TYPE_CHECKING:
    import torch

#: cut-off of the random initial spectrum, in units of the fundamental 2 pi / L
INITIAL_CUTOFF_MODE = 4.0
#: device memory per grid point and trajectory of the torch path (bytes, with margin)
TORCH_BYTES_PER_POINT = 64


def random_smooth_field(grid: PeriodicGrid, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance smooth Gaussian field of shape (N, N)."""
    cutoff = INITIAL_CUTOFF_MODE * 2 * np.pi / grid.box_size
    field = gaussian_random_field(grid, lambda k: np.exp(-0.5 * (k / cutoff) ** 2), rng)
    return field / field.std()


class Diffusion(Simulator):
    """Heat equation ``du/dt = D lap(u)``, solved exactly per Fourier mode."""

    name = "diffusion"
    description = "linear diffusion du/dt = D lap u, exact spectral solution"
    parameters = (
        Parameter("diffusivity", 1e-2, 1e-3, 1e-1, "length^2/time",
                  "diffusion coefficient D"),
    )
    fields = (FieldSpec("u", "1", "diffusing scalar concentration"),)
    invariants = (
        Invariant("conserved_mean", "u", doc="the k = 0 mode is not damped"),
    )
    inits = ("random",)
    symmetries = ("shift", "flip_x", "flip_y", "rotate_90")
    torch_backend = True
    default_t_end = 1.0
    default_snapshots = 11

    def simulate(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                 times: np.ndarray, seeds: Sequence[int], init: str = "random",
                 initial_state: Mapping[str, np.ndarray] | None = None,
                 device: str | None = None) -> dict[str, np.ndarray]:
        """Exact solution at ``times`` for each trajectory: returns ``{"u": (B, T, N, N)}``.

        ``device``: ``None`` (numpy) or a torch device (see the module docstring).
        """
        resolved = self.check_device(device)
        diffusivity = np.asarray(parameters["diffusivity"], dtype=np.float64)
        if initial_state is not None:
            initial = np.broadcast_to(initial_state["u"], (len(seeds), *grid.shape))
        else:
            initial = np.stack([random_smooth_field(grid, np.random.default_rng(seed))
                                for seed in seeds])
        if resolved is not None:
            return {"u": self._solve_torch(np.broadcast_to(diffusivity, (len(seeds),)),
                                           initial, grid, times, resolved)}
        initial_hat = grid.fft(initial)                                   # (B, N, N/2+1)
        # decay[b, t, kx, ky] = exp(-D_b |k|^2 t)
        decay = np.exp(-diffusivity[:, None, None, None] * grid.k_squared[None, None]
                       * np.asarray(times)[None, :, None, None])
        return {"u": grid.ifft(initial_hat[:, None] * decay)}

    @staticmethod
    def _solve_torch(diffusivity: np.ndarray, initial: np.ndarray, grid: PeriodicGrid,
                     times: np.ndarray, device: torch.device) -> np.ndarray:
        """The closed form on ``device``: ``(B,)`` and ``(B, N, N)`` in, (B, T, N, N) out."""
        import torch

        from simulators.backend import chunk_size, to_device, to_numpy
        times = np.asarray(times, dtype=np.float64)
        batch, n = initial.shape[0], grid.resolution
        out = np.empty((batch, len(times), n, n))
        k_squared = to_device(grid.k_squared, device)
        size = chunk_size(device, TORCH_BYTES_PER_POINT, n, max(batch, 1))
        for start in range(0, batch, size):
            chunk = slice(start, start + size)
            rate = -to_device(diffusivity[chunk], device)[:, None, None] * k_squared
            initial_hat = torch.fft.rfft2(to_device(initial[chunk], device))
            for index, time in enumerate(times.tolist()):
                out[chunk, index] = to_numpy(torch.fft.irfft2(
                    initial_hat * torch.exp(rate * time), s=(n, n)))
        return out
