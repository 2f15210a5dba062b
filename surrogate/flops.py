"""FLOPs per generated field, counted by PyTorch's FLOP counter.

:func:`generator_flops` runs one forward pass of a generator (and, optionally, the
physics output heads) on a batch of one under :class:`torch.utils.flop_counter.FlopCounterMode`
and returns what it counted. The counter knows matrix products (``mm``, ``addmm``,
``bmm``) and convolutions, counted as 2 FLOPs per multiply-add; it counts no FFT, no
elementwise operation (normalisations, activations, noise, interpolation, pixel
shuffle) and no reduction, so the heads' spectral derivatives add nothing to the count
(their FFTs are estimated separately by :func:`heads_fft_flops`). The count depends only
on the architecture and the sizes, never on the weights or the inputs, and is exactly
linear in the batch: a deterministic number a test can bound.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from surrogate.constraints import OutputHeads
from surrogate.data import declared_invariants
from surrogate.models import Generator, ModelConfig

__all__ = ["generator_flops", "heads_fft_flops"]


def generator_flops(config: ModelConfig, heads: OutputHeads | None = None, *,
                    by_operator: bool = False) -> int | dict[str, int]:
    """FLOPs of generating one field: ``Generator(config)`` (and ``heads``) on a batch of 1.

    Args:
        config: the generator's configuration (weights are drawn and do not matter).
        heads: the physics output heads applied to the raw channels, or ``None``.
        by_operator: return ``{aten operator: FLOPs}`` instead of the total.
    Returns:
        The total FLOPs per field (int), or the per-operator counts.
    """
    if heads is not None and heads.raw_channels != config.raw_channels:
        raise ValueError(f"the heads read {heads.raw_channels} raw channels, the generator "
                         f"makes {config.raw_channels}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        generator = Generator(config).eval()
        noise = torch.randn(1, config.noise_dim)
        condition = torch.zeros(1, config.condition_dim)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        raw = generator(noise, condition, pixel_noise=False)
        if heads is not None:
            heads(raw, condition)
    if by_operator:
        return {str(op): int(count)
                for op, count in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops())


def heads_fft_flops(heads: OutputHeads) -> int:
    """Conventional FLOP estimate of the FFTs of the output heads for one field.

    A complex FFT of ``n`` points costs about ``5 n log2 n`` FLOPs (Cooley-Tukey radix 2,
    the usual benchmark convention), a real one of ``n = N^2`` points half of that. A
    stream-function head takes one forward and two inverse real FFTs (velocity), a curl
    head one inverse (from the velocity's spectra, reused), and a curl of a velocity
    that is not generated from a stream function two more forward ones.
    """
    n = heads.resolution**2
    transformed = {name for name, kind, _ in heads.raw_layout
                   if kind in ("stream_function", "stream_function_energy")}
    count = 3 * len(transformed)
    for name, kind, _ in heads.raw_layout:
        if kind == "curl":
            source = declared_invariants(name, heads.invariants)["curl_of"].of
            count += 1 if source in transformed else 3
            transformed.add(source)
    return round(count * 2.5 * n * math.log2(n))
