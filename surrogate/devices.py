"""Which torch device and which autocast dtype: the package's device rules for the GAN.

:func:`resolve_device` adds ``"auto"`` to the one device rule of the package
(:func:`simulators.backend.resolve_device`, which the simulators' torch backend uses);
:func:`autocast_dtype` is the mixed-precision choice of training, validation and
generation; :func:`cpu_threads` sets the CPU thread count of a block. Nothing here
imports the training loop, so generation and the CLI can use them without it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from simulators.backend import resolve_device as resolve_torch_device

__all__ = ["autocast_dtype", "cpu_threads", "full_precision", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the checked device.

    ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are checked by the one rule the simulators'
    torch backend uses too (:func:`simulators.backend.resolve_device`): a one-line
    ``ValueError`` for an unknown name, a CUDA device on a machine without one, or an
    index beyond the GPUs present.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_torch_device(device)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype of training and validation on ``device``, or ``None`` (fp32).

    bf16 on a CUDA device that supports it (Ampere and newer) when ``amp`` is on; fp32 on
    the CPU (``amp`` is ignored there) and when ``amp`` is off. A CUDA device without bf16
    trains in fp32 with a warning: fp16 autocast would need loss scaling, which the GAN
    losses (R1's double backward in particular) are not written for.
    """
    if not amp or device.type != "cuda":
        return None
    if not torch.cuda.is_bf16_supported():
        warnings.warn(f"{device}: no bf16 support; amp is ignored and training runs in fp32",
                      stacklevel=2)
        return None
    return torch.bfloat16


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Float32 matrix products and convolutions inside the block (TF32 off), whatever the
    process-wide flags say; the flags are restored on exit.

    Training turns TF32 on for speed (``TrainConfig.tf32``); generated fields should not
    depend on that: with TF32 (10-bit mantissa) a CUDA generator's fields differed from
    the CPU's by 2.2 % (relative L2, H200, a briefly trained Navier–Stokes run).
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def check_threads(threads: int | None, what: str = "threads") -> None:
    """A one-line ``ValueError`` unless ``threads`` is ``None`` or a positive integer."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"{what} must be a positive integer or None, got {threads!r}")


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block, the previous count restored
    after it (``None``: unchanged). On shared or busy cores one thread per process is
    often faster than torch's default of one per core."""
    check_threads(threads)
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
