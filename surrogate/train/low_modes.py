"""Start the Gaussian low modes at the training data's power (``TrainConfig.low_modes``).

The amplitude ``sigma`` of :class:`surrogate.models.GaussianLowModes` is a linear map of
the condition embedding trained by Adam, which moves a weight by about the learning
rate per step: from its generic start (``1 / N``) to the amplitude of a red spectrum's
lowest shells (``~0.2`` for the normalised GRF fields, an 8-fold larger amplitude) takes
more steps than a training has, and a GRF training left the lowest shell at 0.1 of the
simulator's power while the network moved the missing power to shell 3 (5x too much).
So before the first step the trainer scales the amplitude's bias by the one factor ``f``
that makes the generated fields' power in shells ``1 .. K`` -- summed over shells and
channels, in the normalised units the discriminator sees -- equal to the training
split's (:func:`calibrate_low_modes`); the training then adjusts the amplitude per
condition and shell from there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from surrogate.losses import radial_power_spectrum, radial_shell_counts
from surrogate.models import Generator

#: calibration: real snapshots (spread evenly over the training split) and scale factors
#: tried, 2^(i/8) for i in -16 .. 48 (1/4 .. 64 times the initial amplitude)
CALIBRATION_SAMPLES = 64
CALIBRATION_FACTORS = tuple(2.0 ** (i / 8) for i in range(-16, 49))


def low_shell_power(fields: Tensor, shells: int) -> float:
    """Mean over samples of ``sum_c sum_{i=1..K} n_i P_i`` of fields (B, C, N, N): their
    mean square carried by shells 1 .. K (:func:`surrogate.losses.radial_power_spectrum`
    times the shells' mode counts, so a shell of more modes weighs more)."""
    weights = radial_shell_counts(fields.shape[-1])[:shells].to(fields.device)
    spectrum = radial_power_spectrum(fields.float())[..., :shells]
    return float((spectrum * weights).sum(dim=(-2, -1)).mean())


@torch.no_grad()
def calibrate_low_modes(generator: Generator,
                        normalised_fields: Callable[[Tensor, Tensor], Tensor],
                        real: Tensor, condition: Tensor, seed: int) -> dict[str, float]:
    """Scale the low-mode amplitude's bias so that the generated power in shells 1 .. K
    matches ``real``'s.

    Args:
        generator: a generator with ``low_modes`` (changed in place: its amplitude bias
            is multiplied by the chosen factor; the weights of the map stay zero).
        normalised_fields: raw (B, R, N, N) and conditions -> the normalised fields the
            discriminator reads (the output heads and the normaliser).
        real: (B, C, N, N) normalised training snapshots; ``condition`` (B, D) theirs.
        seed: seed of the latents drawn for the calibration (a generator of its own:
            the training's random streams are not touched; pixel noise off).
    Returns:
        ``{"factor", "real_power", "generated_power_before", "generated_power_after"}``.
    """
    module = generator.low_modes
    if module is None:
        raise ValueError("calibrate_low_modes needs a generator with low_modes")
    draw = torch.Generator().manual_seed(seed)
    noise = torch.randn(real.shape[0], generator.config.noise_dim, generator=draw
                        ).to(real.device)
    target = low_shell_power(real, module.shells)
    start = module.amplitude.bias.detach().clone()

    def power(factor: float) -> float:
        module.amplitude.bias.copy_(start * factor)
        raw = generator(noise, condition, pixel_noise=False)
        return low_shell_power(normalised_fields(raw, condition), module.shells)

    powers = {factor: power(factor) for factor in CALIBRATION_FACTORS}   # 1.0 among them
    factor = min(powers, key=lambda f: abs(np.log(max(powers[f], 1e-30) / target)))
    module.amplitude.bias.copy_(start * factor)
    return {"factor": factor, "real_power": target, "generated_power_before": powers[1.0],
            "generated_power_after": powers[factor]}
