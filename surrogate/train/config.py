"""Training hyper-parameters (:class:`TrainConfig`, stored in ``RUN/config.json``) and the
run-directory format version."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from surrogate.losses import (
    LOSS_KINDS,
    SPECTRAL_BIAS_SPACES,
)
from surrogate.models import ARCHS

#: version of the run directory's config.json layout
RUN_FORMAT = 1

#: the energy-budget weight that ``budget_weight=None`` (auto) uses where a budget applies
AUTO_BUDGET_WEIGHT = 1.0
#: ... and with the ensemble discriminator on, whose wider samples need a stronger budget
AUTO_BUDGET_WEIGHT_ENSEMBLE = 3.0
#: the largest ensemble weight that ``ensemble_weight=None`` (auto) uses where the
#: ensemble discriminator applies (a batch of >= 2 per replica, >= 2 training trajectories)
AUTO_ENSEMBLE_WEIGHT = 0.3
#: the default spread target of the ensemble term's strength
DEFAULT_SPREAD_TARGET = 0.9


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (stored in ``RUN/config.json``).

    Attributes:
        steps: total optimisation steps (a resumed run continues up to this number).
        batch_size: global batch (split over DDP replicas).
        lr_generator, lr_discriminator: Adam learning rates.
        lr_decay_fraction: over this final fraction of ``steps`` both learning rates fall
            linearly to 0 (0: constant). GAN weights keep oscillating at a constant
            rate; the decay lets the last checkpoints (and the EMA) settle. The schedule
            follows the total ``steps``: resuming with a larger total raises the rate.
        beta1, beta2: Adam betas (StyleGAN2 uses 0, 0.99).
        loss: ``"hinge"`` or ``"nonsaturating"``.
        r1_gamma: R1 weight gamma (0 disables R1).
        r1_interval: lazy R1 every ``k`` steps (scaled by ``k``).
        spectral_loss_weight: weight of the log power-spectrum loss on G (0 disables).
        spectral_loss_groups: 1 (default) compares the batch-mean spectra of the whole
            fake and real batches; ``G > 1`` sorts each batch by its conditions, cuts it
            into ``G`` groups and compares the groups (:func:`surrogate.losses.spectral_loss`,
            conditional form): the spectrum is then matched where the conditions are
            alike instead of on average over the parameter range. At most the batch
            size per replica.
        mode_seeking_weight: weight of the mode-seeking term on G (0 disables); it
            counters a generator that ignores its latent (mode collapse).
        template_weight: weight of the shared-pattern penalty on G (0 disables;
            :func:`surrogate.losses.template_penalty`): the mean cosine similarity of
            pairs of generated fields at one condition from independent latents, centred
            along the declared shift axes (:func:`surrogate.data.zero_mean_axes`), whose
            expectation is zero for a generator whose ensemble has the declared
            symmetry and positive when every latent is drawn around one fixed pattern
            (too little within-condition spread). Uses the pairs at one condition of the
            mode-seeking term (made for it when that term is off). An explicit weight
            > 0 for a system that declares neither a shift nor a sign symmetry is an
            error. Runs written before the option existed resume without it.
        spectral_scatter_weight: weight of the spectral scatter loss on G (0 disables;
            :func:`surrogate.losses.spectral_scatter_loss`): how much one generated
            sample's log shell power fluctuates at a condition (pairs from independent
            latents) against the simulator's within-condition scatter, estimated once
            from nearest neighbours of the training split
            (:class:`surrogate.train.scatter.ScatterTarget`). The adversarial and
            spectral losses fix the mean spectrum; a generator whose samples carry a
            random spectral slope or amplitude passes them and teaches a parameter
            regressor too little. Uses the mode-seeking pairs (made for it when mode
            seeking is off). Runs written before the option existed resume without it.
        spectral_bias_weight: weight of the spectral bias loss on G (0 disables;
            :func:`surrogate.losses.spectral_bias_loss`): the product of two generated
            samples' deviations of log shell power, at one condition from independent
            latents, from the simulator's mean at that condition (the mean over the
            ``K = 8`` nearest training trajectories,
            :class:`surrogate.train.spectrum_target.SpectrumTarget`), whose expectation
            is the squared bias of the conditional spectrum at every condition: the
            pooled and grouped spectral losses let a spectrum too steep at one end of the
            parameter range and too flat at the other cancel. Uses the mode-seeking pairs
            (made for it when mode seeking is off). 1 by default: on the fidelity plans
            of the four systems (three training seeds each, 2 CPU cores; README,
            Benchmarks) every seed passes with it and every field's held-out spectrum
            error is at most 0.10 (Gray-Scott u 0.063-0.094 where one seed without it
            failed at 0.47, Navier-Stokes velocity 0.045-0.071 against 0.043-0.107,
            Ising 0.043-0.099 against 0.107-0.131); it lowers the Navier-Stokes
            within-condition spread (velocity 0.63-0.69 against 0.68-0.73). Runs written
            before the option existed resume without it; runs written while it was off by
            default keep their recorded 0.
        spectral_bias_space: what the spectral bias loss matches at each condition:
            ``"log"`` the mean log shell power (the default), ``"power"`` the mean shell
            power, which the report's spectra compare (``space`` of
            :func:`surrogate.losses.spectral_bias_loss`). They differ where the generated
            per-sample scatter of a shell's power differs from the simulator's. Runs
            written before the option existed resume with ``"log"``.
        temporal_weight: weight of the temporal discriminator's loss on G (0 disables;
            active only for files with >= 2 snapshot times; a step then costs one more
            generator pass of ``batch_size`` snapshots and a discriminator pass of
            ``batch_size / 2`` pairs). A second discriminator
            judges pairs of consecutive snapshots ``(x(t_i), x(t_i+1))`` of one
            trajectory against pairs ``(G(z, c, t_i), G(z, c, t_i+1))`` generated from one
            latent, so that a generated trajectory evolves like a simulated one instead
            of being a string of independent snapshots (tempoGAN, Xie et al. 2018).
        sign_equivariant: for systems that declare the ``negate`` symmetry (Ising in zero
            field), build it into the networks (``ModelConfig.negate``): both global signs
            are generated with probability 1/2 by construction, however training goes.
            Runs written before the option existed resume without it.
        shift_equivariant: for systems that declare periodic shifts (``shift``,
            ``shift_x``, ``shift_y``), build them into the generator
            (``ModelConfig.shift_x`` / ``shift_y``): every output is rolled by a uniform
            whole-cell shift read off its latent, so the generated law is exactly
            shift-invariant and no pattern stays at one place for every latent of a
            condition. Runs written before the option existed resume without it.
        neighbour_batches: draw each real batch as groups of snapshots at one time from
            trajectories of neighbouring conditions
            (:func:`surrogate.data.neighbour_groups`), laid out so that every group is
            one group of the discriminator's minibatch standard deviation
            (:func:`surrogate.models.mbstd_group`); the fakes are generated at those
            conditions from independent latents. The minibatch-stddev feature then
            compares the within-condition diversity of real and generated fields
            instead of their diversity across random conditions, where a pattern that
            every latent of one condition shares is hidden by the differences between
            conditions. Off by default; runs written before the option existed resume
            without it.
        ensemble_weight: the largest weight of the ensemble discriminator's loss on G
            (0 disables; ``None``, the default: 0.3 where it applies, a batch of >= 2
            per replica and >= 2 training trajectories, 0 elsewhere).
            A third discriminator judges two samples at one condition stacked on
            channels: two training trajectories of neighbouring conditions
            (:func:`surrogate.data.neighbour_groups`, each one's nearest) at one
            snapshot time, each with its own symmetry element, against two generated
            fields at one condition from independent latents (the mode-seeking pairs).
            The joint law of two independent samples is what a single-sample
            discriminator cannot see: a pattern that every latent of one condition
            shares makes the two correlated, which this one can read (the conditional
            form of packing, PacGAN, Lin et al. 2018). A step costs one discriminator
            pass of ``batch_size / 2`` pairs more. Runs written before the option
            existed resume without it.
        ensemble_spread_target: ``rho > 0`` (default 0.9) scales ``ensemble_weight`` by a
            strength in [0, 1] that rises while the training batches' generated spread
            at one condition is below ``rho`` times the simulated one and falls while it
            is above (:mod:`surrogate.train.spread_control`): the term acts where a
            generator's samples vary too little and fades where they vary enough. 0
            applies ``ensemble_weight`` at every step. Without the ensemble term it has
            no effect. Runs written before the option existed resume without it.
        ema_decay: EMA decay of the generator weights: the largest ``beta`` of
            ``theta_ema <- beta theta_ema + (1 - beta) theta``.
        ema_half_life_fraction: 0 (default) ramps ``beta = min(ema_decay, (1 + step) /
            (10 + step))``, whose half-life is about 7.7 % of the steps taken below
            ~9,000 steps; ``f > 0`` sets the half-life to the fraction ``f`` of the steps
            (images) seen so far, ``beta = min(ema_decay, 0.5 ** (1 / (f step)))``
            (StyleGAN2-ADA's ramp, ``f = 0.05`` there).
        consistency_weight: weight ``lambda`` of balanced consistency regularisation on
            every discriminator (0 disables): ``lambda E[(D(x) - D(T x))^2]`` for real and
            generated fields, ``T`` a random element of the system's declared symmetry
            group (:func:`surrogate.losses.consistency_penalty`); costs two more
            discriminator passes per update. Systems without symmetries ignore it.
        budget_weight: weight of the energy-budget penalty on G (0 disables;
            :mod:`surrogate.budget`): ``mean(r^2)`` of the trapezoid-rule residual of
            ``dE/dt = P - 2 nu Z`` between the temporal discriminator's generated pairs
            ``(G(z, c, t_i), G(z, c, t_i+1))``, relative to ``2 nu Z + |P|``. ``None``
            (default, auto) applies it where it can: :data:`AUTO_BUDGET_WEIGHT` (with
            the ensemble discriminator on :data:`AUTO_BUDGET_WEIGHT_ENSEMBLE`) for a
            system that declares ``energy_budget`` trained with temporal pairs
            (``temporal_weight > 0``, >= 2 snapshot times), 0 elsewhere; the run's
            ``config.json`` records the number used. An explicit weight > 0 where it
            cannot apply is an error.
        straight_through: generated discrete fields (``discrete_values``, Ising spins)
            reach the discriminators and the generator's losses snapped to their allowed
            values, with the gradient of the ``tanh`` relaxation
            (:meth:`surrogate.constraints.OutputHeads.straight_through`); off, they see
            the relaxation in ``(low, high)``, which a discriminator tells from real
            spins by ``|s| < 1``. Other fields are unaffected. On by default: on the
            Ising fidelity plan (3 training seeds) it passed 2 of 3 where the
            relaxation passed none, with lower spectrum errors for the two seeds that
            train well. Runs written before the option existed resume without it.
        augment: symmetry augmentation of the real batch (only the system's symmetries).
        width: base channel width of G and D (``ModelConfig.for_resolution``).
        arch: generator architecture, ``"default"`` or ``"lean"`` (``ModelConfig.arch``,
            :class:`surrogate.models.Generator`; D is the same for both). The lean
            generator gets full-resolution noise on its raw channels
            (``ModelConfig.output_noise``; lean runs written before it resume without).
            Runs written before the option existed resume with ``"default"``.
        spectral_envelope: the generator ends in a conditional isotropic filter, one
            gain per raw channel and wavenumber shell computed from the condition alone
            (``ModelConfig.spectral_envelope``, :class:`surrogate.models.SpectralEnvelope`):
            the part of the spectrum that the condition fixes (a viscous cut-off that
            moves with ``nu`` and time, a spectral index) need not be built by the
            convolutions. On by default: over three training seeds it brought the held-out
            spectrum errors to the simulator's own noise floor for Gaussian random fields
            and Navier–Stokes and narrowed their spread over seeds (README, Benchmarks).
            Runs written before the option existed resume without it.
        envelope_lr_multiplier: the spectral envelope's parameters train at this multiple
            of ``lr_generator`` (their own Adam parameter group; 1: one group as before).
            Adam moves each weight by at most about the learning rate per step, and the
            envelope's log-gains are a linear map of a ``width``-dimensional embedding
            that starts at zero, so at 2e-4 a log-gain can change by at most about
            ``width * 2e-4`` per step: a spectral slope that varies by ``log k ~ 3``
            across the parameter range takes ~1,000 steps to appear. Measured on the CPU
            quickstart (600 steps, 3 training seeds): 10 did not make the envelope
            useful (2 of 3 pass, worst quarter of the range up to 1.95; the spectral bias
            loss is what the quickstart uses). Ignored without ``spectral_envelope``.
        low_modes: ``K``, the lowest ``K`` wavenumber shells of the generator's raw
            channels made Gaussian by construction (``ModelConfig.low_modes``,
            :class:`surrogate.models.GaussianLowModes`): the network's content there is
            replaced by latent coordinates times a conditional amplitude, so the few
            modes a sample of the largest scales scatter as a Gaussian field's do. It
            reads ``2 x modes`` latent coordinates, one draw shared by the raw channels
            (8 for ``K = 1``, 20 for 2), which ``noise_dim`` must hold beside the first
            3; training starts at the data's power in each of those shells as a
            function of the condition (:mod:`surrogate.train.low_modes`). 0 (default):
            off. Runs written before the option existed resume without it.
        noise_dim: latent size.
        spectral_branch: D's log-spectrum branch.
        amp: bf16 autocast on CUDA (ignored on CPU).
        tf32: TF32 matmuls and convolutions on CUDA.
        compile: ``torch.compile`` G and D.
        log_every, sample_every, checkpoint_every, validate_every: intervals in steps.
        keep_validated: also keep the EMA generator of every validation as
            ``checkpoints/ema_step_NNNNNN.pt`` (the layout of ``best.pt``, a few MB at
            width 16), so that any validated step can be generated from (``surrogate
            generate --checkpoint ema_step_000750.pt``) or compared afterwards.
        average_checkpoints: ``K >= 2``: from the K-th validation on, the mean weights of
            the last K validated EMA generators (:func:`surrogate.checkpoint.
            average_generator_states`) are scored on the validation split too (logged as
            ``valid/average_score``), and become ``best.pt`` (with their
            ``averaged_steps``) when they score better than every checkpoint so far. A
            training that oscillates around a good generator instead of settling then
            keeps the average, one that settles keeps its best checkpoint; the held-out
            score decides, per run. 0 or 1: off. Costs one more scoring per validation.
            4 by default: on the fidelity plans (15 trainings of four systems, three
            seeds each) it kept the mean for the one Ising seed that failed (held-out
            spectrum 0.277 -> 0.106) and the best single checkpoint everywhere else.
            Runs written before the option existed resume without it.
        score_range_thirds: the validation score's spectrum term is half the pooled
            spectrum error and half its mean over the thirds of every swept range
            (:func:`surrogate.train.scoring.physics_score`), so that a checkpoint wrong
            at one end of the range is not chosen for being right where most of the
            power is. On by default: rescoring the kept generators of 15 fidelity
            trainings (four systems, three seeds; README, Benchmarks) it chose another
            checkpoint in 6: better by the held-out test in 2 (the one Navier-Stokes
            seed that failed its energy budget passes; an Ising seed's ordered third
            0.78 -> 0.10), worse in 1, a trade between fields or thirds in 3. Runs
            written before the option existed resume without it.
        validation_samples: held-out snapshots scored per validation.
        seed: seed of weights, data order, noise and augmentation.
    """

    steps: int = 2000
    batch_size: int = 32
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    lr_decay_fraction: float = 0.0
    beta1: float = 0.0
    beta2: float = 0.99
    loss: str = "hinge"
    r1_gamma: float = 0.1
    r1_interval: int = 16
    spectral_loss_weight: float = 0.1
    spectral_loss_groups: int = 1
    mode_seeking_weight: float = 0.3
    template_weight: float = 0.0
    spectral_scatter_weight: float = 0.0
    spectral_bias_weight: float = 1.0
    spectral_bias_space: str = "log"
    temporal_weight: float = 1.0
    sign_equivariant: bool = True
    shift_equivariant: bool = False
    neighbour_batches: bool = False
    ensemble_weight: float | None = None
    ensemble_spread_target: float = DEFAULT_SPREAD_TARGET
    ema_decay: float = 0.999
    ema_half_life_fraction: float = 0.0
    consistency_weight: float = 0.0
    budget_weight: float | None = None
    straight_through: bool = True
    augment: bool = True
    width: int = 32
    arch: str = "default"
    spectral_envelope: bool = True
    envelope_lr_multiplier: float = 1.0
    low_modes: int = 0
    noise_dim: int = 64
    spectral_branch: bool = True
    amp: bool = True
    tf32: bool = True
    compile: bool = False
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    validate_every: int = 500
    keep_validated: bool = False
    average_checkpoints: int = 4
    score_range_thirds: bool = True
    validation_samples: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "r1_interval", "width", "noise_dim", "log_every",
                    "spectral_loss_groups",
                    "sample_every", "checkpoint_every", "validate_every", "validation_samples")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr_generator", "lr_discriminator", "envelope_lr_multiplier"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("r1_gamma", "spectral_loss_weight", "mode_seeking_weight",
                     "template_weight", "spectral_scatter_weight", "spectral_bias_weight",
                     "temporal_weight", "ensemble_weight", "ensemble_spread_target",
                     "consistency_weight", "budget_weight"):
            value = getattr(self, name)
            if name in ("budget_weight", "ensemble_weight") and value is None:   # auto
                continue
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("beta1", "beta2", "ema_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not (isinstance(self.ema_half_life_fraction, int | float)
                and 0 <= self.ema_half_life_fraction <= 1):
            raise ValueError(f"ema_half_life_fraction must be in [0, 1], got "
                             f"{self.ema_half_life_fraction!r}")
        if not (isinstance(self.lr_decay_fraction, int | float)
                and 0 <= self.lr_decay_fraction <= 1):
            raise ValueError(f"lr_decay_fraction must be in [0, 1], got "
                             f"{self.lr_decay_fraction!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r} (choose from {', '.join(ARCHS)})")
        if self.spectral_bias_space not in SPECTRAL_BIAS_SPACES:
            raise ValueError(f"unknown spectral_bias_space {self.spectral_bias_space!r} "
                             f"(choose from {', '.join(SPECTRAL_BIAS_SPACES)})")
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"unknown loss {self.loss!r} (choose from {', '.join(LOSS_KINDS)})")
        if isinstance(self.average_checkpoints, bool) or not isinstance(
                self.average_checkpoints, int) or self.average_checkpoints < 0:
            raise ValueError(f"average_checkpoints must be an integer >= 0, got "
                             f"{self.average_checkpoints!r}")
        if isinstance(self.low_modes, bool) or not isinstance(
                self.low_modes, int) or self.low_modes < 0:
            raise ValueError(f"low_modes must be an integer >= 0, got {self.low_modes!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**dict(data))
