"""The loss composition of one training step: what each network pays, with the maths.

The losses themselves (adversarial, R1, consistency, spectral, mode seeking) live in
:mod:`surrogate.losses` and the energy budget in :mod:`surrogate.budget`; this module
composes them the way :class:`surrogate.train.Trainer` applies them (the optimiser
steps, gradient averaging over replicas, the NaN guard and the EMA are the trainer's).
Notation: ``x`` real normalised fields at conditions ``c``; ``G(z, c)`` generated fields
(generator, physics heads, normaliser); ``D`` the discriminator, ``D_t`` the temporal
one reading consecutive snapshots stacked on channels, ``D_e`` the ensemble one
reading two samples at one condition stacked on channels (real: two trajectories of
neighbouring conditions at one time); ``T`` a random declared symmetry; ``k`` the
lazy-R1 interval.

Discriminator phase (each of ``D``, for files with >= 2 times ``D_t``, and with
``ensemble_weight > 0`` ``D_e``)::

    L_D = loss_D(D(x, c), D(G(z, c'), c'))                        (hinge / non-saturating)
        + lambda_cr [ (D(x) - D(T x))^2 + (D(G) - D(T G))^2 ]     (consistency_weight > 0)
        + (gamma / 2) k |grad_x D(x, c)|^2          on steps with step % k == 0 (lazy R1)

Generator phase::

    L_G = loss_G(D(G(z, c'), c'))
        + w_t loss_G(D_t([G(z, c_i), G(z, c_i+1)], c_i))          (temporal_weight)
        + w_e s loss_G(D_e([G(z_2i, c'_2i), G(z_2i+1, c'_2i)], c'_2i))  (ensemble_weight)
        + w_b mean r^2, the energy-budget residual of those pairs (budget_weight)
        + w_ms MS(G(z_2i, c'_2i), G(z_2i+1, c'_2i))               (mode_seeking_weight)
        + w_tm cos(P G(z_2i, c'_2i), P G(z_2i+1, c'_2i))           (template_weight)
        + w_sc S(G(z_2i, c'_2i), G(z_2i+1, c'_2i); v(c'_2i))   (spectral_scatter_weight)
        + w_bi B(G(z_2i, c'_2i), G(z_2i+1, c'_2i); m(c'_2i))   (spectral_bias_weight)
        + w_spec L_spec(G, x; groups)                               (spectral_loss_weight)

with ``s = 1``, or with ``ensemble_spread_target`` the strength of
:mod:`surrogate.train.spread_control`; ``c' = c`` except that, with mode seeking, the
template penalty, the ensemble discriminator, the scatter or the bias loss on, fakes
come in pairs at one condition: ``c'_2i+1 = c_2i``; ``P`` centres a field along the
declared shift axes
(:func:`surrogate.data.zero_mean_axes`); ``S`` is the spectral scatter loss against the
simulator's within-condition log-power variance ``v``
(:func:`surrogate.losses.spectral_scatter_loss`,
:class:`surrogate.train.scatter.ScatterTarget`); ``B`` the spectral bias loss against
the simulator's mean log power ``m`` at the condition
(:func:`surrogate.losses.spectral_bias_loss`,
:class:`surrogate.train.spectrum_target.SpectrumTarget`). For a shift-equivariant
generator the paired terms read each ``G`` rolled back by its latent's shift
(``unshift``). The terms are added in this order (the order fixes the float round-off,
hence bit-identical resumes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from surrogate.budget import EnergyBudget
from surrogate.data import FieldNormalizer, SymmetryAugmentation
from surrogate.losses import (
    consistency_penalty,
    discriminator_loss,
    generator_loss,
    mode_seeking_loss,
    r1_penalty,
    spectral_bias_loss,
    spectral_loss,
    spectral_scatter_loss,
    template_penalty,
)
from surrogate.train.config import TrainConfig
from surrogate.train.scatter import ScatterTarget
from surrogate.train.spectrum_target import SpectrumTarget

__all__ = ["GANObjective", "GeneratedPairs", "ensemble_pairs"]

Metrics = dict[str, float]


@dataclass
class GeneratedPairs:
    """The temporal phase's batch: ``b`` real pairs of consecutive snapshots and the
    generated pairs of one latent at the same two times.

    Attributes:
        real: (b, 2C, N, N) normalised real pairs ``[x(t_i), x(t_i+1)]`` (augmented).
        fake: (b, 2C, N, N) normalised generated pairs ``[G(z, c_i), G(z, c_i+1)]``.
        physical: (2b, C, N, N) the generated pairs in physical units, the ``t_i``
            halves first (what the energy budget reads).
        condition_a, condition_b: (b, P + 1) conditions at ``t_i`` and ``t_i+1``.
    """

    real: torch.Tensor
    fake: torch.Tensor
    physical: torch.Tensor
    condition_a: torch.Tensor
    condition_b: torch.Tensor


def ensemble_pairs(fake: torch.Tensor, fake_condition: torch.Tensor, pairs: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``pairs`` fakes (pairs at one condition from independent latents,
    :meth:`GANObjective.fake_conditions`) stacked two by two on channels:
    ``((pairs / 2, 2C, N, N), (pairs / 2, P + 1))``, what the ensemble discriminator
    judges."""
    return (torch.cat([fake[0:pairs:2], fake[1:pairs:2]], dim=1),
            fake_condition[0:pairs:2])


class GANObjective:
    """Both phases' losses for one training configuration (module docstring).

    Args:
        config: the training options (weights, loss kind, R1 interval).
        normalizer: field normaliser (real pairs back to physical units for the logged
            budget floor).
        budget: the energy budget, or ``None`` (``budget_weight`` 0).
        autocast: a no-argument context factory for the networks' forward passes.
        augment_generator: the random stream of the symmetry transformations ``T`` of
            the consistency term (the trainer's augmentation stream, so that the draws
            are part of the checkpointed state).
        zero_mean_axes: the template penalty's centring axes
            (:func:`surrogate.data.zero_mean_axes`), required with ``template_weight``.
        scatter_target: the simulator's log-power scatter, required with
            ``spectral_scatter_weight``.
        spectrum_target: the simulator's mean log power (or log mean power) per
            condition, required with ``spectral_bias_weight``; the bias loss works in the
            space the table was built in (``SpectrumTarget.space``).
        unshift: for a shift-equivariant generator (``shift_equivariant``), the map
            ``(fakes, latents) -> fakes`` rolled back by the shifts their latents carry
            (:func:`surrogate.models.latent_shift`). The paired terms (mode seeking,
            template, scatter, bias) then compare the two fakes of a pair before their
            shifts: two latents drawing one pattern at two places are the same field to
            them, as they are to the aligned spread of the report. ``None``: as generated.
    """

    def __init__(self, config: TrainConfig, normalizer: FieldNormalizer,
                 budget: EnergyBudget | None, autocast: Callable,
                 augment_generator: torch.Generator,
                 zero_mean_axes: tuple[int, ...] | None = None,
                 scatter_target: ScatterTarget | None = None,
                 spectrum_target: SpectrumTarget | None = None,
                 unshift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                 ) -> None:
        if config.template_weight > 0 and zero_mean_axes is None:
            raise ValueError("template_weight needs a system that declares a shift or a "
                             "sign (negate) symmetry: nothing else fixes the ensemble "
                             "mean the penalty compares against")
        if config.spectral_scatter_weight > 0 and scatter_target is None:
            raise ValueError("spectral_scatter_weight needs the simulator's scatter "
                             "(scatter_target)")
        if config.spectral_bias_weight > 0 and spectrum_target is None:
            raise ValueError("spectral_bias_weight needs the simulator's mean log power "
                             "(spectrum_target)")
        self.zero_mean_axes = zero_mean_axes
        self.scatter_target = scatter_target
        self.spectrum_target = spectrum_target
        self.config = config
        self.normalizer = normalizer
        self.budget = budget
        self.autocast = autocast
        self.augment_generator = augment_generator
        self.unshift = unshift

    def fake_conditions(self, condition: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``(c', pairs)``: the conditions of the fakes, and how many of them (an even
        number, 0 without mode seeking, the template penalty, the ensemble
        discriminator, the scatter and the bias loss) come in pairs at one condition."""
        paired = (self.config.mode_seeking_weight > 0 or self.config.template_weight > 0
                  or self.config.ensemble_weight > 0
                  or self.config.spectral_scatter_weight > 0
                  or self.config.spectral_bias_weight > 0)
        pairs = condition.shape[0] // 2 * 2 if paired else 0
        if not pairs:
            return condition, 0
        fake_condition = condition.clone()
        fake_condition[1::2] = condition[0:pairs:2]
        return fake_condition, pairs

    def discriminator(self, module: torch.nn.Module, forward: Callable, real: torch.Tensor,
                      condition: torch.Tensor, fake: torch.Tensor,
                      fake_condition: torch.Tensor, augmentation: SymmetryAugmentation,
                      step: int, suffix: str = "") -> tuple[torch.Tensor, Metrics]:
        """``L_D`` of one discriminator and its metrics (``loss_d``, ``consistency``,
        ``r1``, each with ``suffix``). ``forward`` is the module's (maybe compiled)
        forward; R1's double backward goes through ``module`` itself."""
        config = self.config
        metrics = {}
        with self.autocast():
            real_logits = forward(real, condition)
            fake_logits = forward(fake.detach(), fake_condition)
        loss = discriminator_loss(real_logits.float(), fake_logits.float(), config.loss)
        metrics[f"loss_d{suffix}"] = float(loss.detach())
        if config.consistency_weight > 0 and augmentation.enabled:
            with self.autocast():
                real_moved = forward(augmentation(real, self.augment_generator), condition)
                fake_moved = forward(augmentation(fake.detach(), self.augment_generator),
                                     fake_condition)
            consistency = (consistency_penalty(real_logits, real_moved)
                           + consistency_penalty(fake_logits, fake_moved))
            loss = loss + config.consistency_weight * consistency
            metrics[f"consistency{suffix}"] = float(consistency.detach())
        if config.r1_gamma > 0 and step % config.r1_interval == 0:
            real_input = real.detach().requires_grad_(True)
            penalty = r1_penalty(module(real_input, condition), real_input)
            loss = loss + 0.5 * config.r1_gamma * config.r1_interval * penalty
            metrics[f"r1{suffix}"] = float(penalty.detach())
        return loss, metrics

    def generator(self, d_forward: Callable, temporal_discriminator: Callable | None,
                  fake: torch.Tensor, fake_condition: torch.Tensor, pairs: int,
                  noise: torch.Tensor, real: torch.Tensor, condition: torch.Tensor,
                  generated_pairs: GeneratedPairs | None,
                  ensemble_discriminator: Callable | None = None,
                  ensemble_scale: float = 1.0) -> tuple[torch.Tensor, Metrics]:
        """``L_G`` and its metrics (``loss_g``, ``loss_g_temporal``, ``loss_g_ensemble``,
        ``energy_budget`` with its real floor ``energy_budget_real``, ``mode_seeking_loss``,
        ``template_penalty``, ``spectral_scatter_loss``, ``spectral_bias_loss``,
        ``spectral_loss``).

        Args:
            d_forward: the discriminator's forward.
            temporal_discriminator: the temporal one, or ``None``.
            fake: (B, C, N, N) normalised fakes at ``fake_condition``; ``pairs`` of them
                in mode-seeking pairs (:meth:`fake_conditions`) from latents ``noise``.
            real, condition: the real batch (the spectral loss's reference).
            generated_pairs: the temporal phase's pairs, or ``None``.
            ensemble_discriminator: the ensemble discriminator's forward, or ``None``;
                it judges the fakes' pairs at one condition (:func:`ensemble_pairs`).
            ensemble_scale: the strength multiplying ``ensemble_weight`` (1, or the
                spread target's :class:`surrogate.train.spread_control.SpreadController`).
        """
        config = self.config
        metrics = {}
        with self.autocast():
            generated_logits = d_forward(fake, fake_condition)
        loss = generator_loss(generated_logits.float(), config.loss)
        metrics["loss_g"] = float(loss.detach())
        if temporal_discriminator is not None and generated_pairs is not None:
            with self.autocast():
                pair_logits = temporal_discriminator(generated_pairs.fake,
                                                     generated_pairs.condition_a)
            temporal = generator_loss(pair_logits.float(), config.loss)
            loss = loss + config.temporal_weight * temporal
            metrics["loss_g_temporal"] = float(temporal.detach())
        if ensemble_discriminator is not None and pairs:
            together, together_condition = ensemble_pairs(fake, fake_condition, pairs)
            with self.autocast():
                ensemble_logits = ensemble_discriminator(together, together_condition)
            ensemble = generator_loss(ensemble_logits.float(), config.loss)
            loss = loss + config.ensemble_weight * ensemble_scale * ensemble
            metrics["loss_g_ensemble"] = float(ensemble.detach())
        if self.budget is not None and generated_pairs is not None:
            # dE/dt = P - 2 nu Z between G(z, c_i) and G(z, c_i+1) (surrogate.budget)
            budget = self.budget.penalty(*generated_pairs.physical.chunk(2),
                                         generated_pairs.condition_a,
                                         generated_pairs.condition_b)
            loss = loss + config.budget_weight * budget
            metrics["energy_budget"] = float(budget.detach())
            with torch.no_grad():
                real_a, real_b = (self.normalizer.decode(part)
                                  for part in generated_pairs.real.float().chunk(2, dim=1))
                metrics["energy_budget_real"] = float(self.budget.penalty(
                    real_a, real_b, generated_pairs.condition_a, generated_pairs.condition_b))
        paired = fake[:pairs]
        if pairs and self.unshift is not None:
            paired = self.unshift(paired, noise[:pairs])
        if pairs and config.mode_seeking_weight > 0:
            seeking = mode_seeking_loss(paired[0::2], paired[1::2],
                                        noise[0:pairs:2], noise[1:pairs:2])
            loss = loss + config.mode_seeking_weight * seeking
            metrics["mode_seeking_loss"] = float(seeking.detach())
        if pairs and config.template_weight > 0:
            template = template_penalty(paired[0::2], paired[1::2],
                                        self.zero_mean_axes)
            loss = loss + config.template_weight * template
            metrics["template_penalty"] = float(template.detach())
        if pairs and config.spectral_scatter_weight > 0:
            scatter = spectral_scatter_loss(paired[0::2], paired[1::2],
                                            self.scatter_target.rows(fake_condition[0:pairs:2]))
            loss = loss + config.spectral_scatter_weight * scatter
            metrics["spectral_scatter_loss"] = float(scatter.detach())
        if pairs and config.spectral_bias_weight > 0:
            bias = spectral_bias_loss(paired[0::2], paired[1::2],
                                      self.spectrum_target.rows(fake_condition[0:pairs:2]),
                                      space=self.spectrum_target.space)
            loss = loss + config.spectral_bias_weight * bias
            metrics["spectral_bias_loss"] = float(bias.detach())
        if config.spectral_loss_weight > 0:
            spectral = spectral_loss(fake.float(), real.float(),
                                     groups=config.spectral_loss_groups,
                                     fake_condition=fake_condition, real_condition=condition)
            loss = loss + config.spectral_loss_weight * spectral
            metrics["spectral_loss"] = float(spectral.detach())
        return loss, metrics
