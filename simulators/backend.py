"""The torch backend of the spectral simulators: devices, transfers, the Lawson step.

``diffusion``, ``gaussian_random_field``, ``navier_stokes2d`` and ``gray_scott`` run
either on numpy (``device=None``, the reference path) or, with a torch device string
(``"cpu"``, ``"cuda"``, ``"cuda:1"``), the *same* numerical scheme with ``torch.fft``
on that device, in float64 / complex128, batched over trajectories. Initial
conditions, multipliers and other set-up come from the numpy code (so a seed gives the
same trajectory on both backends, to round-off); only the time loop runs in torch, and
results come back as numpy float64 arrays of the usual shapes. ``ising`` has no torch
backend (see :class:`simulators.ising.Ising`); ``Simulator.torch_backend`` says which
systems have one.

This module imports torch at import time; the rest of the package imports it only on
the torch path, so ``import simulators`` and the numpy path never need torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from simulators.timestepping import ButcherTableau

#: bytes of device work arrays one chunk of trajectories may use (4 GiB): a torch
#: chunk holds ``TORCH_CHUNK_BYTES // (bytes per grid point x N^2)`` trajectories
TORCH_CHUNK_BYTES = 2**32


def resolve_device(device: str | torch.device) -> torch.device:
    """The :class:`torch.device` for ``device``, checked to exist (one rule for the
    simulators' torch backend and the trainer, :func:`surrogate.train.resolve_device`).

    Accepts ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` (or such a ``torch.device``).

    Raises:
        ValueError: one line, for an unknown device string, another device type (e.g.
            ``"mps"``, which has no float64), ``"cuda"`` when no CUDA GPU is available
            or ``"cuda:N"`` with ``N`` at or beyond the number of GPUs.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r} (expected 'cpu', 'cuda' or "
                         "'cuda:N')") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"device {device!r} is not supported (use 'cpu', 'cuda' or "
                         "'cuda:N'; the simulators need float64, the trainer CUDA's bf16)")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA GPU is available (use 'cpu')")
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise ValueError(f"device {device!r}: there is no CUDA device with index "
                         f"{resolved.index} ({count} CUDA GPU(s) available)")
    return resolved


def chunk_size(device: torch.device, bytes_per_point: int, resolution: int,
               numpy_chunk: int) -> int:
    """Trajectories a torch path integrates together on ``device``.

    On a GPU the whole batch at once, capped so the chunk's work arrays stay under
    :data:`TORCH_CHUNK_BYTES` (``bytes_per_point`` per grid point and trajectory); on
    the CPU the numpy path's cache-sized ``numpy_chunk``. Results depend on it only at
    round-off level (~1e-14 relative; torch's kernels may round the last bit differently
    for arrays of different sizes), unlike the numpy path's, which are bit-for-bit
    independent of the chunking.
    """
    if device.type == "cpu":
        return numpy_chunk
    return max(1, TORCH_CHUNK_BYTES // (bytes_per_point * resolution**2))


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy array as a tensor on ``device`` (same dtype; float64/complex128 kept)."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:         # e.g. the grid's cached multipliers
        array = array.copy()
    return torch.from_numpy(array).to(device)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array on the host."""
    return tensor.detach().to("cpu", torch.float64).numpy()


#: ``tendency(state) -> N(state)`` on tensors (may also record side results)
TorchTendency = Callable[[torch.Tensor], torch.Tensor]


def lawson_step(tableau: ButcherTableau, state: torch.Tensor, step: torch.Tensor,
                linear: torch.Tensor, tendency: TorchTendency,
                first_tendency: torch.Tensor | None = None) -> torch.Tensor:
    """One integrating-factor (Lawson) Runge–Kutta step on tensors; returns ``u_{n+1}``.

    The torch twin of :class:`simulators.timestepping.LawsonStepper` (same formulas, read
    from the same tableau; see :mod:`simulators.timestepping`)::

        U_i     = e^{c_i h L} u_n + h sum_j a_ij e^{(c_i - c_j) h L} N(U_j)
        u_{n+1} = e^{h L} u_n     + h sum_j b_j  e^{(1 - c_j) h L} N(U_j)

    Args:
        tableau: the explicit scheme (e.g. ``CLASSIC_RK4``).
        state: complex ``u_n``.
        step: ``h``, float64, broadcasting against ``state`` (e.g. ``(B, 1, 1)``);
            ``h = 0`` returns that trajectory's state exactly.
        linear: real diagonal of ``L``, broadcasting against ``state``.
        tendency: ``N``.
        first_tendency: ``N(u_n)`` if already evaluated.
    """
    c = tableau.c
    exponentials: dict[float, torch.Tensor] = {}

    def exponential(coefficient: float) -> torch.Tensor | None:
        """``exp(d h L)`` (``None`` for ``d = 0``), each distinct ``d`` once per step."""
        if coefficient == 0.0:
            return None
        if coefficient not in exponentials:
            exponentials[coefficient] = torch.exp(linear * (step * coefficient))
        return exponentials[coefficient]

    tendencies = [tendency(state) if first_tendency is None else first_tendency]

    def combine(node: float, weights: tuple[float, ...]) -> torch.Tensor:
        """``e^{node h L} u_n + sum_j w_j h e^{(node - c_j) h L} N_j``."""
        factor = exponential(node)
        out = state.clone() if factor is None else state * factor
        for j, weight in enumerate(weights):
            if weight != 0.0:
                decay = exponential(node - c[j])
                scale = step * weight if decay is None else decay * (step * weight)
                out = out + tendencies[j] * scale
        return out

    for i in range(1, tableau.stages):
        tendencies.append(tendency(combine(c[i], tableau.a[i][:i])))
    return combine(1.0, tableau.b)
