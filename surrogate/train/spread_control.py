"""The ensemble discriminator's weight set by the measured within-condition spread.

The ensemble discriminator (``ensemble_weight``) widens a generator whose samples at one
condition vary too little, and costs spectrum accuracy where they already vary enough.
With ``ensemble_spread_target = rho > 0`` the weight the generator pays is
``w_e(t) = ensemble_weight * s(t)``, where the strength ``s`` in [0, 1] follows the
spread of the training batches, the way StyleGAN2-ADA sets its augmentation
probability from a measured overfitting heuristic (Karras et al. 2020):

* every step, the ensemble pairs give two mean squared differences in normalised
  units, ``d_fake = <|G(z_1, c) - G(z_2, c)|^2>`` (two latents at one condition) and
  ``d_real = <|x_a - x_b|^2>`` (two training trajectories of neighbouring conditions at
  one time, before their symmetry elements), each pair aligned over the declared
  periodic shifts first (:func:`pair_mean_square_difference`): a generator that draws
  one pattern at a different place for every latent has a large plain difference and
  no aligned one;
* every ``interval`` steps, ``r = sqrt(sum d_fake / sum d_real)`` over those steps (an
  estimate of the report's spread ratio, the ratio of generated to simulated standard
  deviations at one condition: ``E|x_1 - x_2|^2 = 2 Var x`` for independent samples),
  and ``s <- clip(s + sign(rho - r) * interval / (ramp * steps), 0, 1)``: the strength
  rises while the generated spread is short of the target and falls while it exceeds it,
  from 0 to 1 in at least ``ramp`` of the run.

The discriminator ``D_e`` trains at every step whatever ``s`` is, so it is ready when
the generator's spread falls. The state (strength and the open interval's sums) is
part of the checkpoint: a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["SpreadController", "pair_mean_square_difference"]

#: steps between two adjustments of the strength (StyleGAN2-ADA adjusts every 4)
ADJUST_INTERVAL = 4
#: the shortest fraction of the run in which the strength can go from 0 to 1
RAMP_FRACTION = 0.1


def pair_mean_square_difference(together: torch.Tensor, shift_x: bool = False,
                                shift_y: bool = False) -> torch.Tensor:
    """``<|a - b|^2>`` over every pixel, channel and pair of ``together`` (B, 2C, N, N),
    two fields stacked on channels (``a`` the first C, ``b`` the last C); a 0-d float
    tensor. With declared periodic shifts along x (axis -2) and / or y (axis -1) each
    pair is first aligned: ``min_s |a - T_s b|^2 = |a|^2 + |b|^2 - 2 max_s <a, T_s b>``,
    the circular cross-correlation ``<a, T_s b>`` from one real FFT per field, so that
    one pattern drawn at two places reads as no difference at all (as the report's
    aligned spread reads it)."""
    first, second = together.float().chunk(2, dim=1)
    if not (shift_x or shift_y):
        return (first - second).square().mean()
    n_x, n_y = first.shape[-2:]
    # <a, T_s b> = sum_x a(x) b(x - s) = irfft2(fft a * conj(fft b))(s), summed over channels
    correlation = torch.fft.irfft2(torch.fft.rfft2(first) * torch.fft.rfft2(second).conj(),
                                   s=(n_x, n_y)).sum(dim=1)               # (B, N, N)
    if not shift_y:
        correlation = correlation[:, :, :1]
    if not shift_x:
        correlation = correlation[:, :1, :]
    best = correlation.flatten(1).max(dim=1).values
    energy = first.square().sum(dim=(1, 2, 3)) + second.square().sum(dim=(1, 2, 3))
    return ((energy - 2 * best).clamp_min(0) / first[0].numel()).mean()


class SpreadController:
    """The strength ``s`` of the ensemble discriminator's term (module docstring).

    Args:
        target: the spread ratio ``rho`` aimed at (> 0).
        steps: the run's total steps (sets the largest change per adjustment).
        interval: steps between adjustments.
        ramp: the shortest fraction of ``steps`` in which ``s`` goes from 0 to 1.
    """

    def __init__(self, target: float, steps: int, interval: int = ADJUST_INTERVAL,
                 ramp: float = RAMP_FRACTION) -> None:
        if not (math.isfinite(target) and target > 0):
            raise ValueError(f"the spread target must be a number > 0, got {target!r}")
        self.target = float(target)
        self.interval = int(interval)
        self.change = min(1.0, self.interval / max(1.0, ramp * steps))
        self.strength = 0.0
        self.ratio = math.nan                 # the last adjustment's measured r
        self.fake_sum = 0.0
        self.real_sum = 0.0
        self.observed = 0

    def observe(self, fake_square_difference: float, real_square_difference: float) -> None:
        """Add one step's ``d_fake`` and ``d_real`` (replica means, already averaged over
        replicas when there are several)."""
        self.fake_sum += float(fake_square_difference)
        self.real_sum += float(real_square_difference)
        self.observed += 1

    def adjust(self) -> bool:
        """After ``interval`` observations: move ``s`` one step towards the target and
        start a new interval; returns whether it adjusted."""
        if self.observed < self.interval:
            return False
        if self.real_sum > 0:
            self.ratio = math.sqrt(self.fake_sum / self.real_sum)
            direction = (self.ratio < self.target) - (self.ratio > self.target)
            self.strength = min(1.0, max(0.0, self.strength + direction * self.change))
        self.fake_sum = self.real_sum = 0.0
        self.observed = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"strength": self.strength, "ratio": self.ratio, "fake_sum": self.fake_sum,
                "real_sum": self.real_sum, "observed": self.observed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strength = float(state["strength"])
        self.ratio = float(state["ratio"])
        self.fake_sum = float(state["fake_sum"])
        self.real_sum = float(state["real_sum"])
        self.observed = int(state["observed"])
