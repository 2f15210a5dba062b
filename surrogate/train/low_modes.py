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
split's (:func:`calibrate_low_modes`). One factor is not enough where the lowest shells'
power changes differently across the parameter range: over a GRF's spectral-index range
the data's ``|k| = 2`` power falls 2.8-fold and its ``|k| = 1`` power by 0.88, and the
one-factor start held ``|k| = 2`` at 1.6--4.7 times the data's power and ``|k| = 1`` at
0.56--0.65 of it (K = 2, per third of the range). So the trainer then fits the whole map,
weights included, to the training split's power per condition and shell
(:func:`fit_low_modes_to_conditions`; 0.96--1.04 in every third and shell); the training
adjusts it from there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from surrogate.losses import radial_power_spectrum, radial_shell_counts
from surrogate.models import GaussianLowModes, Generator

#: calibration: real snapshots (spread evenly over the training split) and scale factors
#: tried, 2^(i/8) for i in -16 .. 48 (1/4 .. 64 times the initial amplitude)
CALIBRATION_SAMPLES = 64
CALIBRATION_FACTORS = tuple(2.0 ** (i / 8) for i in range(-16, 49))
#: fit per condition: snapshots (spread evenly over the training split; all of a smaller
#: split) and passes of measure-and-refit (one is exact for heads linear in the raw
#: channels)
CONDITION_SAMPLES = 1024
CONDITION_PASSES = 2


def shell_powers(fields: Tensor, shells: int) -> Tensor:
    """``sum_c n_i P_i`` per sample and shell ``i = 1 .. K`` of fields (B, C, N, N), shape
    (B, K): the mean square each of the lowest shells carries, summed over channels
    (:func:`surrogate.losses.radial_power_spectrum` times the shells' mode counts)."""
    weights = radial_shell_counts(fields.shape[-1])[:shells].to(fields.device)
    return (radial_power_spectrum(fields.float())[..., :shells] * weights).sum(dim=-2)


def _low_modes_and_latents(generator: Generator, real: Tensor, seed: int, caller: str
                           ) -> tuple[GaussianLowModes, Tensor]:
    """The generator's low-mode module and ``len(real)`` latents drawn from a generator of
    their own seeded ``seed`` (the training's random streams are not touched), on
    ``real``'s device; ``ValueError`` naming ``caller`` for a generator without them."""
    module = generator.low_modes
    if module is None:
        raise ValueError(f"{caller} needs a generator with low_modes")
    draw = torch.Generator().manual_seed(seed)
    noise = torch.randn(real.shape[0], generator.config.noise_dim, generator=draw
                        ).to(real.device)
    return module, noise


def low_shell_power(fields: Tensor, shells: int) -> float:
    """Mean over samples of ``sum_c sum_{i=1..K} n_i P_i`` of fields (B, C, N, N): their
    mean square carried by shells 1 .. K (:func:`shell_powers` summed over shells)."""
    return float(shell_powers(fields, shells).sum(dim=-1).mean())


def condition_features(condition: Tensor) -> np.ndarray:
    """Regression features ``[1, c_j, c_j^2]`` (B, 1 + 2D) of conditions (B, D), float64."""
    values = condition.detach().double().cpu().numpy()
    return np.concatenate([np.ones((len(values), 1)), values, values ** 2], axis=1)


def smooth_log_power(powers: Tensor, features: np.ndarray, iterations: int = 20
                     ) -> np.ndarray:
    """``log E[powers | c]`` (B, K) fitted by a quadratic in the condition (``features``
    from :func:`condition_features`), evaluated at the samples.

    One sample's power in a shell of ``M`` modes scatters by a chi-square law with
    ``2 M`` degrees of freedom (a relative scatter of 0.5 at ``|k| = 1`` of a Gaussian
    field), so the fit pools the samples of neighbouring conditions. It fits the log of
    the mean, not the mean of the log (which is low by ``psi(M) - log M``, 13 % in power
    at ``|k| = 1``): a log-link regression of constant relative variance (Gamma
    quasi-likelihood), solved by iteratively reweighted least squares, whose weights are
    all equal for this link, started from the least-squares fit of the log."""
    values = np.maximum(powers.detach().double().cpu().numpy(), 1e-30)
    coefficients, *_ = np.linalg.lstsq(features, np.log(values), rcond=None)
    for _ in range(iterations):
        log_mean = features @ coefficients
        working = log_mean + values / np.exp(log_mean) - 1.0
        coefficients, *_ = np.linalg.lstsq(features, working, rcond=None)
    return features @ coefficients


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
    module, noise = _low_modes_and_latents(generator, real, seed, "calibrate_low_modes")
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


@torch.no_grad()
def fit_low_modes_to_conditions(generator: Generator,
                                normalised_fields: Callable[[Tensor, Tensor], Tensor],
                                real: Tensor, condition: Tensor, seed: int,
                                passes: int = CONDITION_PASSES) -> dict[str, float]:
    """Fit the low-mode amplitude map ``sigma(e) = A e + b``, weights and bias, so that the
    generated power in each shell ``s = 1 .. K`` follows ``real``'s across conditions.

    Per pass: ``L_real(c, s)`` and ``L_gen(c, s)``, the log shell powers (summed over
    channels) of ``real`` and of generated fields at the same conditions (the latter
    divided by the drawn modes' mean square ``sum_j |xi_j|^2 / 2 M_s``, which takes their
    chi-square scatter out for heads linear in the raw channels), each fitted by a
    quadratic in the condition (:func:`smooth_log_power`); the wanted amplitude of
    every raw channel ``r`` at sample ``i`` is ``sigma_{r,s}(e_i) exp((L_real - L_gen) /
    2)`` (power goes as ``sigma^2``); ``A`` and ``b`` are its least-squares fit over the
    samples' embeddings ``e_i = embed(c_i)`` (minimum-norm ``A`` where the samples leave it
    underdetermined, e.g. fewer distinct conditions than embedding dimensions). The
    channels keep their relative amplitudes. Start from :func:`calibrate_low_modes`,
    whose single factor sets the overall level.

    Args:
        generator: a generator with ``low_modes`` (its amplitude map changed in place).
        normalised_fields, real, condition, seed: as for :func:`calibrate_low_modes`.
        passes: measure-and-refit passes (a head that is not linear in the raw channels
            is matched by the second).
    Returns:
        ``{"mismatch_before", "mismatch_after"}``: the largest factor, over the samples
        and shells, between the fitted generated and real power before and after.
    """
    module, noise = _low_modes_and_latents(generator, real, seed,
                                           "fit_low_modes_to_conditions")
    features = condition_features(condition)
    target = smooth_log_power(shell_powers(real, module.shells), features)
    embedding = generator.embedding(condition)                              # (B, E)
    embedding_values = embedding.double().cpu().numpy()
    centred = embedding_values - embedding_values.mean(axis=0)

    # the drawn modes' own chi-square scatter, divided out of the generated powers:
    # sum_j (xi_j0^2 + xi_j1^2) / (2 M_s) per sample and shell (exact for linear heads)
    xi_square = noise[:, -module.latent_dim:].reshape(len(noise), -1, 2).square().sum(-1)
    drawn = torch.zeros(len(noise), module.shells, device=noise.device).index_add_(
        1, module.mode_shells.to(noise.device), xi_square)
    drawn = drawn / (2 * torch.bincount(module.mode_shells, minlength=module.shells).to(drawn))

    def log_mismatch() -> np.ndarray:
        raw = generator(noise, condition, pixel_noise=False)
        generated = shell_powers(normalised_fields(raw, condition), module.shells) / drawn
        return target - smooth_log_power(generated, features)              # (B, K)

    mismatch = log_mismatch()
    before = float(np.exp(np.abs(mismatch).max()))
    for _ in range(passes):
        sigma = module.amplitudes(embedding).double().cpu().numpy()
        wanted = (sigma * np.exp(mismatch / 2)[:, None, :]).reshape(len(sigma), -1)
        mean = wanted.mean(axis=0)
        weight, *_ = np.linalg.lstsq(centred, wanted - mean, rcond=1e-6)     # (E, R K)
        bias = mean - embedding_values.mean(axis=0) @ weight
        parameter = module.amplitude.weight
        parameter.copy_(torch.from_numpy(weight.T).to(parameter))
        module.amplitude.bias.copy_(torch.from_numpy(bias).to(parameter))
        mismatch = log_mismatch()
    return {"mismatch_before": before, "mismatch_after": float(np.exp(np.abs(mismatch).max()))}
