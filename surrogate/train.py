"""Training loop of the conditional GAN: CPU and CUDA, AMP, EMA, R1, DDP, exact resume.

One step (per replica; batch ``B`` split evenly over ``world_size`` replicas)::

    draw B trajectory/time indices of the training split (torch generator "data")
    real  = augment(normalised fields of those snapshots)     symmetry group of the system
    c     = their conditions (normalised parameters, time)
    fake  = heads(G(z, c))  -> normalised                      z ~ N(0, I) (generator "noise")
    L_D   = loss_D(D(real, c), D(fake.detach(), c))
            [+ (gamma / 2) * k * R1(real) every k-th step, lazy R1, Mescheder et al. 2018]
    L_G   = loss_G(D(fake, c)) + w_spec * spectral_loss(fake, real)
            [+ w_ms * mode_seeking_loss(pairs of fakes at one condition), when w_ms > 0:
             fakes 2i and 2i+1 then share the condition of real 2i, Mao et al. 2019]
            [+ w_t * loss_G(D_t([G(z', c_i), G(z', c_i+1)], c_i)), when w_t > 0 and the
             file has >= 2 times: B/2 pairs of consecutive snapshot times, one latent z'
             per pair; D_t, a second discriminator on the two snapshots stacked along
             channels, is trained like D on real pairs [x(t_i), x(t_i+1)] of one
             trajectory (one symmetry element per pair)]
    Adam steps on D (then D_t) then G; EMA of G's weights:
    theta_ema <- beta theta_ema + (1 - beta) theta with beta = min(ema_decay,
    (1 + step) / (10 + step)).

Fakes share the conditions of the real batch (the projection discriminator compares
like with like). Every random number comes from torch generators whose states go into
the checkpoint, so on the CPU ``N`` steps, a stop and ``--resume`` for ``N`` more give the
same weights as ``2N`` steps straight (tested). Validation every ``validate_every`` steps
generates the held-out (``valid`` split) conditions with the EMA generator and scores
them with the validation library: ``score = mean over fields of (median spectrum
relative error over resolved shells + W1 / std + |ln spread ratio| [+ |ln temporal
change ratio|])`` (the spread of two latents at each condition against each reference
snapshot's nearest training neighbour: a collapsed generator cannot be the best
checkpoint; with D_t, the change between consecutive times of one latent against that
of one simulated trajectory, see :func:`physics_score`), averaged over two latent
draws whose half-difference is logged as the score's own noise (``valid/score_noise``,
:func:`two_draw_score`); the best score's EMA generator is kept as
``checkpoints/best.pt``. A NaN/Inf loss stops the run with a
one-line message naming the last good checkpoint.

On CUDA: bf16 autocast for G and D (``amp``), TF32 matmuls/convolutions (``tf32``),
optional ``torch.compile`` (R1 then runs through the uncompiled discriminator: compiled
graphs do not support double backward). Launched with ``torchrun --nproc_per_node=K -m
surrogate train ...`` the replicas train data-parallel: every replica draws the same
global index/noise stream and keeps its own slice of the batch (sharded reading), and
gradients are averaged with ``all_reduce`` after each backward (the same arithmetic as
``DistributedDataParallel``; NCCL on GPUs, gloo on CPUs); only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from simulators.messages import first_line
from surrogate.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    read_run_config,
    restore_rng_state,
    save_checkpoint,
    write_run_config,
)
from surrogate.constraints import OutputHeads
from surrogate.data import (
    ConditionEncoder,
    EmptySplitWarning,
    FieldNormalizer,
    SymmetryAugmentation,
    TrainingData,
    load_training_data,
    n_channels,
)
from surrogate.devices import autocast_dtype, resolve_device
from surrogate.losses import (
    LOSS_KINDS,
    consistency_penalty,
    discriminator_loss,
    generator_loss,
    mode_seeking_loss,
    r1_penalty,
    spectral_loss,
)
from surrogate.models import Discriminator, Generator, ModelConfig, same_model

__all__ = ["RUN_FORMAT", "TrainConfig", "TrainingDivergedError", "autocast_dtype", "build_models",
           "physics_score", "resolve_device", "score_noise_summary", "train",
           "train_restarts", "two_draw_score"]

#: version of the run directory's config.json layout
RUN_FORMAT = 1


class TrainingDivergedError(RuntimeError):
    """A loss became NaN/Inf; the message names the last good checkpoint."""


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
        mode_seeking_weight: weight of the mode-seeking term on G (0 disables); it
            counters a generator that ignores its latent (mode collapse).
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
        augment: symmetry augmentation of the real batch (only the system's symmetries).
        width: base channel width of G and D (``ModelConfig.for_resolution``).
        noise_dim: latent size.
        spectral_branch: D's log-spectrum branch.
        amp: bf16 autocast on CUDA (ignored on CPU).
        tf32: TF32 matmuls and convolutions on CUDA.
        compile: ``torch.compile`` G and D.
        log_every, sample_every, checkpoint_every, validate_every: intervals in steps.
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
    mode_seeking_weight: float = 0.3
    temporal_weight: float = 1.0
    sign_equivariant: bool = True
    ema_decay: float = 0.999
    ema_half_life_fraction: float = 0.0
    consistency_weight: float = 0.0
    augment: bool = True
    width: int = 32
    noise_dim: int = 64
    spectral_branch: bool = True
    amp: bool = True
    tf32: bool = True
    compile: bool = False
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    validate_every: int = 500
    validation_samples: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "r1_interval", "width", "noise_dim", "log_every",
                    "sample_every", "checkpoint_every", "validate_every", "validation_samples")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr_generator", "lr_discriminator"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("r1_gamma", "spectral_loss_weight", "mode_seeking_weight",
                     "temporal_weight", "consistency_weight"):
            value = getattr(self, name)
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
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"unknown loss {self.loss!r} (choose from {', '.join(LOSS_KINDS)})")
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


# ------------------------------------------------------------------ helpers
def check_sign_equivariance(heads: OutputHeads, normalizer: FieldNormalizer) -> None:
    """Raise ``ValueError`` unless negating raw outputs negates the physical and the
    normalised fields (odd heads, no normalisation offset): what ``ModelConfig.negate``
    needs to make the built-in sign a physical ``f -> -f``."""
    offsets = [name for name in normalizer.field_names if normalizer.transform(name).offset]
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(2, heads.raw_channels, heads.resolution, heads.resolution,
                      generator=generator, dtype=torch.float64)
    condition = torch.rand(2, 1, generator=generator) * 2 - 1     # the heads read time only
    with torch.no_grad():
        odd = torch.allclose(heads.forward(-raw.to(heads.dtype), condition),
                             -heads.forward(raw.to(heads.dtype), condition),
                             rtol=1e-5, atol=1e-6)
    if offsets or not odd:
        where = f"fields {offsets} are normalised with an offset" if offsets else \
            "the output heads are not odd functions"
        raise ValueError(f"the system declares the negate symmetry but {where}: the "
                         f"sign-equivariant networks cannot represent it (train with "
                         f"sign_equivariant off)")


def build_models(model_config: ModelConfig) -> tuple[Generator, Discriminator]:
    """Generator and discriminator of a model config."""
    return Generator(model_config), Discriminator(model_config)


def ema_beta(config: TrainConfig, step: int) -> float:
    """EMA decay ``beta`` after ``step`` optimisation steps (``step >= 1``), see
    :attr:`TrainConfig.ema_half_life_fraction`."""
    if config.ema_half_life_fraction > 0:
        half_life = config.ema_half_life_fraction * step
        return min(config.ema_decay, 0.5 ** (1.0 / half_life)) if half_life > 0 else 0.0
    return min(config.ema_decay, (1.0 + step) / (10.0 + step))


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    with torch.no_grad():
        for target, source in zip(ema.parameters(), model.parameters(), strict=True):
            target.lerp_(source, 1.0 - beta)
        for target, source in zip(ema.buffers(), model.buffers(), strict=True):
            target.copy_(source)


def _all_reduce_gradients(module: torch.nn.Module, world_size: int) -> None:
    """Average gradients over replicas (what DistributedDataParallel does)."""
    if world_size == 1:
        return
    grads = []
    for parameter in module.parameters():
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        grads.append(parameter.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def _spectrum_error(reference: np.ndarray, generated: np.ndarray, rank: int,
                    box_size: float) -> float:
    from surrogate.validation.report import spectrum_summary
    from surrogate.validation.spectra import field_power_spectrum

    k, p_ref = field_power_spectrum(reference, box_size, vector=bool(rank))
    _, p_gen = field_power_spectrum(generated, box_size, vector=bool(rank))
    return float(spectrum_summary(k, p_ref.mean(axis=0), p_gen.mean(axis=0))
                 ["rel_error_median"])


def physics_score(reference: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray],
                  ranks: Mapping[str, int], box_size: float, *,
                  pairs: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                  increments: Mapping[str, Mapping[str, np.ndarray]] | None = None
                  ) -> dict[str, float]:
    """Validation score of generated vs reference snapshots (lower is better).

    Per field: ``spectrum`` = median over resolved shells of ``|P_gen / P_ref - 1|`` of
    the sample-mean spectra (as in the report), ``w1`` = Wasserstein-1 of the pooled
    values over the reference std; with ``pairs``, ``spread`` = the within-condition
    spread ratio ``mean |g - g'| / mean |x - x'|`` (``g, g'``: two latents at one
    condition; ``x, x'``: a reference snapshot and its nearest-parameter neighbour at the
    same time, an upper estimate of the reference's spread, as in the report's
    ``nearest_reference_neighbour`` basis) and the term ``|ln spread|``, which a
    generator that ignores its latent (spread 0) makes large; with ``increments``,
    ``temporal`` = ``mean |g(t_i+1) - g(t_i)| / mean |x(t_i+1) - x(t_i)|`` (one latent /
    one simulated trajectory over consecutive snapshot times) and the term
    ``|ln temporal|``: snapshots generated independently of one another at each time
    change too much between times (ratio > 1), a generator that ignores time too little.
    ``score`` = mean over fields of ``spectrum + w1 [+ |ln spread|] [+ |ln temporal|]``.

    Args:
        reference, generated: ``{field: (S, N, N[, 2])}`` physical snapshots at the same
            conditions.
        ranks: ``{field: 0 or 1}``.
        box_size: side ``L`` of the periodic square.
        pairs: ``{"generated": second generated set at the same conditions,
            "reference": the reference snapshots' neighbours}``, same layout.
        increments: ``{"generated": g(t_i+1) - g(t_i), "reference": x(t_i+1) - x(t_i)}``,
            ``{field: (S', N, N[, 2])}`` (any number ``S'`` of consecutive pairs).
    """
    from surrogate.validation.statistics import wasserstein1_over_std
    out: dict[str, float] = {}
    total = 0.0
    for name, values in reference.items():
        spectrum = _spectrum_error(values, generated[name], ranks[name], box_size)
        w1 = wasserstein1_over_std(generated[name], values) if np.std(values) > 0 else 0.0
        out[f"{name}/spectrum"] = spectrum
        out[f"{name}/w1"] = w1
        total += spectrum + w1
        if pairs is not None:
            ratio = _mean_abs_ratio(generated[name].astype(np.float64) - pairs["generated"][name],
                                    values.astype(np.float64) - pairs["reference"][name])
            if ratio is not None:
                out[f"{name}/spread"] = ratio
                total += _log_ratio_penalty(ratio)
        if increments is not None:
            ratio = _mean_abs_ratio(increments["generated"][name],
                                    increments["reference"][name])
            if ratio is not None:
                out[f"{name}/temporal"] = ratio
                total += _log_ratio_penalty(ratio)
    out["score"] = total / max(len(reference), 1)
    return out


def two_draw_score(first: Mapping[str, float], second: Mapping[str, float]
                   ) -> dict[str, float]:
    """The validation score of one checkpoint from two latent draws, and its noise.

    Every entry is the mean of the two draws' :func:`physics_score` entries (the same
    reference snapshots, two independent latent sets), and ``score_noise`` =
    ``|score_1 - score_2| / 2`` estimates the standard error of that mean: the part of
    the score that the sampling of latents alone moves. Differences between
    checkpoints of the order of ``score_noise`` are not evidence that one is better.
    """
    out = {key: (first[key] + second[key]) / 2 for key in first if key in second}
    out["score_noise"] = abs(first["score"] - second["score"]) / 2
    return out


def score_noise_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Median score noise and median change of the score between consecutive
    validations, from the training log's ``valid/score`` and ``valid/score_noise``
    entries (``None`` when fewer than two validations, or none with a finite score)."""
    scores = [(r["valid/score"], r.get("valid/score_noise")) for r in records
              if "valid/score" in r and r["valid/score"] is not None
              and math.isfinite(r["valid/score"])]
    noise = [n for _, n in scores if n is not None and math.isfinite(n)]
    changes = [abs(b[0] - a[0]) for a, b in itertools.pairwise(scores)]
    return {"score_noise_median": float(np.median(noise)) if noise else None,
            "score_change_median": float(np.median(changes)) if changes else None}


#: score term of a spread or temporal ratio of exactly 0 (|ln 1e-3|: a total collapse,
#: or a field frozen in time)
_ZERO_RATIO_PENALTY = -math.log(1e-3)


def _mean_abs_ratio(generated: np.ndarray, reference: np.ndarray) -> float | None:
    """``mean |generated| / mean |reference|`` (None when the reference is all zero)."""
    scale = float(np.mean(np.abs(reference)))
    return float(np.mean(np.abs(generated))) / scale if scale > 0 else None


def _log_ratio_penalty(ratio: float) -> float:
    """``|ln ratio|``, or :data:`_ZERO_RATIO_PENALTY` for a ratio of 0."""
    return abs(math.log(ratio)) if ratio > 0 else _ZERO_RATIO_PENALTY


# ------------------------------------------------------------------ the trainer
@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _distributed_from_environment(device: str) -> tuple[_Distributed, str]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Distributed(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    elif device == "auto":
        device = "cpu"
    return _Distributed(rank, world_size, local_rank), device


class Trainer:
    """One training run in a run directory (see :func:`train`)."""

    def __init__(self, data_path: str | os.PathLike, run_dir: str | os.PathLike,
                 config: TrainConfig, *, device: str = "auto", resume: bool = False,
                 progress: bool = True, log: Callable[[str], None] | None = None) -> None:
        self.ddp, device = _distributed_from_environment(device)
        self.device = resolve_device(device)
        self.run_dir = Path(run_dir)
        self.progress = progress and self.ddp.main
        self.log = log or (lambda message: None)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        saved = read_run_config(self.run_dir) if resume else None
        normalizer = encoder = None
        if saved is not None:
            _check_run_format(saved, self.run_dir)
            try:
                normalizer = FieldNormalizer.from_dict(saved["normalizer"])
                encoder = ConditionEncoder.from_dict(saved["condition_encoder"])
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(f"{self.run_dir}/config.json: invalid normaliser or "
                                      f"condition encoder ({error})") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptySplitWarning)
            self.data: TrainingData = load_training_data(data_path, normalizer=normalizer,
                                                         encoder=encoder)
        schema = self.data.schema
        if saved is not None and saved["system"] != schema.system:
            raise CheckpointError(f"{data_path}: system {schema.system!r} differs from the "
                                  f"run's {saved['system']!r}")
        if config.batch_size % self.ddp.world_size:
            raise ValueError(f"batch size {config.batch_size} is not divisible by the "
                             f"{self.ddp.world_size} replicas")
        self.config = config
        self.local_batch = config.batch_size // self.ddp.world_size
        self.heads = OutputHeads.from_schema(schema, self.data.normalizer).to(self.device)
        torch.manual_seed(config.seed)
        negate = config.sign_equivariant and "negate" in self.data.augmentation.symmetries
        if negate:
            check_sign_equivariance(self.heads, self.data.normalizer)
        self.model_config = ModelConfig.for_resolution(
            schema.resolution, self.heads.raw_channels, n_channels(schema.fields),
            self.data.encoder.dim, width=config.width, noise_dim=config.noise_dim,
            spectral_branch=config.spectral_branch, negate=negate)
        generator, discriminator = build_models(self.model_config)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        betas = (config.beta1, config.beta2)
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_generator,
                                            betas=betas)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(),
                                            lr=config.lr_discriminator, betas=betas)
        # the temporal discriminator reads two consecutive snapshots stacked on channels
        self.temporal = config.temporal_weight > 0 and self.data.splits["train"].n_times >= 2
        self.temporal_discriminator: Discriminator | None = None
        if self.temporal:
            self.temporal_discriminator = Discriminator(dataclasses.replace(
                self.model_config, in_channels=2 * self.model_config.in_channels)
            ).to(self.device)
            self.optimizer_t = torch.optim.Adam(self.temporal_discriminator.parameters(),
                                                lr=config.lr_discriminator, betas=betas)
            self.pair_augmentation = self.data.augmentation.stacked(2)
        self.data_generator = torch.Generator().manual_seed(config.seed + 1)
        self.noise_generator = torch.Generator().manual_seed(config.seed + 2)
        # per replica: augmentation choices and the generator's pixel noise (global torch
        # stream) differ between replicas; data indices and latents are drawn globally
        rank = self.ddp.rank
        self.augment_generator = torch.Generator().manual_seed(config.seed + 3 + 7919 * rank)
        torch.manual_seed(config.seed + 104729 * (rank + 1))
        self.step = 0
        self.best_score = math.inf
        self.best_step = -1
        self.last_checkpoint_step = -1
        if self.ddp.world_size > 1:
            for module in self._modules():
                for tensor in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(tensor.data, src=0)
        if saved is not None:
            self._restore()
        elif self.ddp.main:
            self._write_config()
        cuda = self.device.type == "cuda"
        if cuda and config.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        dtype = autocast_dtype(self.device, config.amp)
        self.autocast = (lambda: torch.autocast("cuda", dtype=dtype)) \
            if dtype is not None else contextlib.nullcontext
        self.g_forward = torch.compile(self.generator) if config.compile else self.generator
        # a compiled D with spectral norm fails in backward after two forwards (the power
        # iteration updates its buffers in place), so only G is compiled then
        self.d_forward = torch.compile(self.discriminator) \
            if config.compile and not self.model_config.spectral_norm else self.discriminator

    def _modules(self) -> list[torch.nn.Module]:
        """The trained networks (and the EMA generator)."""
        modules = [self.generator, self.discriminator, self.generator_ema]
        return modules + ([self.temporal_discriminator] if self.temporal else [])

    # -------------------------------------------------------------- config and state
    def _write_config(self) -> None:
        from simulators.store import FieldStore
        with FieldStore(self.data.path) as store:
            ranges = {name: [float(values.min()), float(values.max())]
                      for name, values in store.parameters().items()}
        config = {"format": RUN_FORMAT, "system": self.data.schema.system,
                  "data_parameter_ranges": ranges,
                  "fields": [spec.name for spec in self.data.schema.fields],
                  "data": str(self.data.path), "schema": self.data.schema.to_dict(),
                  "train": self.config.to_dict(), "model": self.model_config.to_dict(),
                  "normalizer": self.data.normalizer.to_dict(),
                  "condition_encoder": self.data.encoder.to_dict()}
        write_run_config(self.run_dir, config)

    def _state(self) -> dict[str, Any]:
        state = {"generator": self.generator.state_dict(),
                 "discriminator": self.discriminator.state_dict(),
                 "generator_ema": self.generator_ema.state_dict(),
                 "optimizer_g": self.optimizer_g.state_dict(),
                 "optimizer_d": self.optimizer_d.state_dict(),
                 "step": self.step, "best_score": self.best_score, "best_step": self.best_step,
                 "rng": self._gathered_rng_states(),
                 "system": self.data.schema.system, "model": self.model_config.to_dict()}
        if self.temporal:
            state["temporal_discriminator"] = self.temporal_discriminator.state_dict()
            state["optimizer_t"] = self.optimizer_t.state_dict()
        return state

    def _gathered_rng_states(self) -> list[dict[str, Any]]:
        """Every replica's random state (rank order); all ranks must call this."""
        state = capture_rng_state(self.data_generator, self.noise_generator,
                                  self.augment_generator)
        if self.ddp.world_size == 1:
            return [state]
        states: list[Any] = [None] * self.ddp.world_size
        dist.all_gather_object(states, state)
        return states

    def _restore(self) -> None:
        path = self.checkpoint_dir / "last.pt"
        try:
            self._load_state(path)
        except (KeyError, TypeError, RuntimeError, ValueError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(f"{path}: cannot resume from this checkpoint "
                                  f"({first_line(error, limit=160)})") from None

    def _load_state(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        if not same_model(state.get("model"), self.model_config):
            raise CheckpointError(f"{path}: model configuration differs from the run's "
                                  f"config.json")
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator_ema.load_state_dict(state["generator_ema"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        if self.temporal:
            if "temporal_discriminator" not in state:
                raise CheckpointError(f"{path}: written without the temporal discriminator "
                                      f"(temporal_weight 0); cannot resume with it on")
            self.temporal_discriminator.load_state_dict(state["temporal_discriminator"])
            self.optimizer_t.load_state_dict(state["optimizer_t"])
        self.step = int(state["step"])
        self.best_score = float(state["best_score"])
        self.best_step = int(state["best_step"])
        self.last_checkpoint_step = self.step
        states = state["rng"]
        if len(states) == self.ddp.world_size:
            restore_rng_state(states[self.ddp.rank], self.data_generator, self.noise_generator,
                              self.augment_generator)
        else:                         # other replica count: shared streams from rank 0's
            restore_rng_state(states[0], self.data_generator, self.noise_generator,
                              self.augment_generator)
            self.augment_generator.manual_seed(self.config.seed + 3 + 7919 * self.ddp.rank
                                               + 15485863 * self.step)
            torch.manual_seed(self.config.seed + 104729 * (self.ddp.rank + 1) + self.step)
        if self.ddp.main:
            _truncate_metrics(self.run_dir / "metrics.jsonl", self.step)

    def save(self) -> None:
        state = self._state()                 # collective under DDP: every rank builds it
        if self.ddp.main:
            save_checkpoint(self.checkpoint_dir / "last.pt", state)
        self.last_checkpoint_step = self.step
        if self.ddp.world_size > 1:
            dist.barrier()

    # -------------------------------------------------------------- one step
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        train = self.data.splits["train"]
        size = self.config.batch_size
        indices = torch.randint(len(train), (size,), generator=self.data_generator)
        noise = torch.randn(size, self.config.noise_dim, generator=self.noise_generator)
        rank, world = self.ddp.rank, self.ddp.world_size
        indices, noise = indices[rank::world], noise[rank::world]
        real, condition = train.get_batch(indices.numpy())
        if self.config.augment and self.data.augmentation.enabled:
            real = self.data.augmentation(real, self.augment_generator)
        return (real.to(self.device, non_blocking=True),
                condition.to(self.device, non_blocking=True), noise.to(self.device))

    def _pair_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``batch_size // 2`` pairs of consecutive training snapshots (this replica's
        share): ``(real (b, 2C, N, N), condition at t_i, condition at t_i+1, latents)``,
        one symmetry element per pair."""
        train = self.data.splits["train"]
        times = train.n_times
        count = max(1, self.config.batch_size // 2)
        starts = torch.randint(train.trajectories.size * (times - 1), (count,),
                               generator=self.data_generator)
        first = starts // (times - 1) * times + starts % (times - 1)
        noise = torch.randn(count, self.config.noise_dim, generator=self.noise_generator)
        rank, world = self.ddp.rank, self.ddp.world_size
        first, noise = first[rank::world], noise[rank::world]
        real_a, condition_a = train.get_batch(first.numpy())
        real_b, condition_b = train.get_batch(first.numpy() + 1)
        real = torch.cat([real_a, real_b], dim=1)
        if self.config.augment and self.pair_augmentation.enabled:
            real = self.pair_augmentation(real, self.augment_generator)
        return (real.to(self.device), condition_a.to(self.device),
                condition_b.to(self.device), noise.to(self.device))

    def _update_discriminator(self, module: Discriminator, forward: Callable,
                              optimizer: torch.optim.Optimizer, real: torch.Tensor,
                              condition: torch.Tensor, fake: torch.Tensor,
                              fake_condition: torch.Tensor, suffix: str,
                              augmentation: SymmetryAugmentation) -> dict[str, float]:
        """One Adam step of a discriminator (loss + lazy R1 + consistency with
        ``augmentation``'s symmetries); returns its metrics."""
        config = self.config
        metrics = {}
        module.requires_grad_(True)
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
        if config.r1_gamma > 0 and self.step % config.r1_interval == 0:
            real_input = real.detach().requires_grad_(True)
            penalty = r1_penalty(module(real_input, condition), real_input)
            loss = loss + 0.5 * config.r1_gamma * config.r1_interval * penalty
            metrics[f"r1{suffix}"] = float(penalty.detach())
        self._check_finite(loss, "discriminator" + suffix.replace("_", " "))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _all_reduce_gradients(module, self.ddp.world_size)
        optimizer.step()
        module.requires_grad_(False)
        return metrics

    def learning_rate_factor(self) -> float:
        """Multiplier of both learning rates at the current step (linear decay to 0 over
        the last ``lr_decay_fraction`` of the steps; 1 before it)."""
        decay_steps = self.config.lr_decay_fraction * self.config.steps
        if decay_steps <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.config.steps - self.step) / decay_steps))

    def train_step(self) -> dict[str, float]:
        """One D (and temporal D) and one G update; returns the step's losses."""
        config = self.config
        if config.lr_decay_fraction > 0:
            factor = self.learning_rate_factor()
            optimizers = [(self.optimizer_g, config.lr_generator),
                          (self.optimizer_d, config.lr_discriminator)]
            if self.temporal:
                optimizers.append((self.optimizer_t, config.lr_discriminator))
            for optimizer, rate in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = rate * factor
        real, condition, noise = self._batch()
        fake_condition = condition
        pairs = condition.shape[0] // 2 * 2 if config.mode_seeking_weight > 0 else 0
        if pairs:
            # fakes in pairs at one condition (2i, 2i+1) with distinct latents
            fake_condition = condition.clone()
            fake_condition[1::2] = condition[0:pairs:2]
        with self.autocast():
            fake = self.heads.forward_normalised(self.g_forward(noise, fake_condition),
                                                 fake_condition)
        metrics = self._update_discriminator(self.discriminator, self.d_forward,
                                             self.optimizer_d, real, condition, fake,
                                             fake_condition, "", self.data.augmentation)
        if self.temporal:
            # (G(z, c_i), G(z, c_i+1)): one latent, two consecutive times
            real_pairs, condition_a, condition_b, pair_noise = self._pair_batch()
            with self.autocast():
                both_conditions = torch.cat([condition_a, condition_b])
                both = self.heads.forward_normalised(self.g_forward(
                    torch.cat([pair_noise, pair_noise]), both_conditions), both_conditions)
            fake_pairs = torch.cat(both.chunk(2), dim=1)
            metrics.update(self._update_discriminator(
                self.temporal_discriminator, self.temporal_discriminator, self.optimizer_t,
                real_pairs, condition_a, fake_pairs, condition_a, "_temporal",
                self.pair_augmentation))

        with self.autocast():
            generated_logits = self.d_forward(fake, fake_condition)
        loss_g = generator_loss(generated_logits.float(), config.loss)
        metrics["loss_g"] = float(loss_g.detach())
        if self.temporal:
            with self.autocast():
                pair_logits = self.temporal_discriminator(fake_pairs, condition_a)
            temporal = generator_loss(pair_logits.float(), config.loss)
            loss_g = loss_g + config.temporal_weight * temporal
            metrics["loss_g_temporal"] = float(temporal.detach())
        if pairs:
            seeking = mode_seeking_loss(fake[0:pairs:2], fake[1:pairs:2],
                                        noise[0:pairs:2], noise[1:pairs:2])
            loss_g = loss_g + config.mode_seeking_weight * seeking
            metrics["mode_seeking_loss"] = float(seeking.detach())
        if config.spectral_loss_weight > 0:
            spectral = spectral_loss(fake.float(), real.float())
            loss_g = loss_g + config.spectral_loss_weight * spectral
            metrics["spectral_loss"] = float(spectral.detach())
        self._check_finite(loss_g, "generator")
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_g.backward()
        _all_reduce_gradients(self.generator, self.ddp.world_size)
        self.optimizer_g.step()
        _ema_update(self.generator_ema, self.generator, ema_beta(config, self.step))
        self.step += 1
        return metrics

    def _check_finite(self, loss: torch.Tensor, which: str) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=self.device)
        if self.ddp.world_size > 1:           # every replica stops together
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item() == 0.0:
            return
        last = self.checkpoint_dir / "last.pt"
        where = (f"the last good checkpoint is {last} (step {self.last_checkpoint_step})"
                 if self.last_checkpoint_step >= 0 else "no checkpoint was written yet")
        raise TrainingDivergedError(f"{which} loss became {float(loss.detach())} at step "
                                    f"{self.step}: training stopped; {where}")

    # -------------------------------------------------------------- validation
    @staticmethod
    def _validation_indices(dataset, count: int) -> np.ndarray:
        """``count`` snapshot indices of ``dataset`` spread evenly over it (all if fewer)."""
        return np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset)))
                         .round().astype(int))

    def _physical(self, real: torch.Tensor) -> dict[str, np.ndarray]:
        """Normalised channels ``(S, C, N, N)`` -> physical ``{name: (S, N, N[, 2])}``."""
        from surrogate.data import to_store_layout
        return to_store_layout(self.data.normalizer.decode(real.double()).numpy(),
                               self.data.schema.fields)

    @torch.no_grad()
    def _generate(self, condition: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
        """EMA-generator snapshots (discrete fields snapped) at ``condition`` ``(S, P+1)``,
        physical ``{name: (S, N, N[, 2])}``; its own seeded random stream (the training
        stream is untouched)."""
        from surrogate.data import to_store_layout
        outputs = []
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            noise_stream = torch.Generator().manual_seed(seed)
            for start in range(0, condition.shape[0], 64):
                chunk = condition[start:start + 64].to(self.device)
                noise = torch.randn(chunk.shape[0], self.config.noise_dim,
                                    generator=noise_stream).to(self.device)
                with self.autocast():
                    raw = self.generator_ema(noise, chunk)
                outputs.append(self.heads.snap_discrete(self.heads(raw, chunk)).float().cpu())
        return to_store_layout(torch.cat(outputs).numpy(), self.data.schema.fields)

    def generate_like(self, dataset, count: int, seed: int
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """EMA-generator snapshots at the conditions of ``count`` snapshots of ``dataset``.

        Returns ``(reference, generated)`` physical fields ``{name: (S, N, N[, 2])}``.
        Uses its own seeded random stream (the training stream is untouched).
        """
        real, condition = dataset.get_batch(self._validation_indices(dataset, count))
        return self._physical(real), self._generate(condition, seed)

    def _neighbour_snapshots(self, dataset, indices: np.ndarray
                             ) -> dict[str, np.ndarray] | None:
        """For snapshots ``indices`` of ``dataset``: the training snapshot at the same time
        whose parameters are nearest (encoded space), physical ``{name: (S, N, N[, 2])}``;
        ``None`` without a training split of >= 1 trajectory."""
        from scipy.spatial import cKDTree
        train = self.data.splits.get("train")
        if train is None or len(train) == 0:
            return None
        train_parameters = train.conditions.numpy()[::train.n_times, :-1]
        wanted = dataset.conditions.numpy()[indices, :-1]
        if train_parameters.shape[1] == 0:
            nearest = np.zeros(indices.size, dtype=int)
        else:
            nearest = cKDTree(train_parameters).query(wanted)[1]
        real, _ = train.get_batch(nearest * train.n_times + indices % dataset.n_times)
        return self._physical(real)

    def validate(self) -> dict[str, float] | None:
        dataset = self.data.splits.get("valid")
        if dataset is None:
            return None
        indices = self._validation_indices(dataset, self.config.validation_samples)
        real, condition = dataset.get_batch(indices)
        reference = self._physical(real)
        generated = self._generate(condition, self.config.seed + 7)
        # a second latent at every condition, and each reference snapshot's nearest
        # training neighbour at the same time: the within-condition spread
        second = self._generate(condition, self.config.seed + 8)
        neighbours = self._neighbour_snapshots(dataset, indices)
        increments = (self._increments(dataset, indices, reference, condition)
                      if self.temporal else None)
        ranks = {spec.name: spec.rank for spec in self.data.schema.fields}
        sampled = [*generated.values(), *second.values(),
                   *(increments["generated"].values() if increments is not None else ())]
        if not all(np.all(np.isfinite(values)) for values in sampled):
            return {"score": math.inf}
        draws = []
        for first, other in ((generated, second), (second, generated)):
            pairs = None if neighbours is None else {"generated": other,
                                                     "reference": neighbours}
            draws.append(physics_score(reference, first, ranks, self.data.schema.box_size,
                                       pairs=pairs, increments=increments))
        return two_draw_score(*draws)

    def _increments(self, dataset, indices: np.ndarray, reference: dict[str, np.ndarray],
                    condition: torch.Tensor) -> dict[str, dict[str, np.ndarray]] | None:
        """Changes between consecutive snapshot times, ``x(t_i+1) - x(t_i)`` of the
        reference trajectories at ``indices`` (those before the last time; ``reference``
        and ``condition`` are those snapshots, already read) and ``g(t_i+1) - g(t_i)``
        generated with one latent per pair; ``None`` if none."""
        before_last = indices % dataset.n_times < dataset.n_times - 1
        if not before_last.any():
            return None
        sides: dict[str, dict[str, np.ndarray]] = {"reference": {}, "generated": {}}
        reference_a = {name: values[before_last] for name, values in reference.items()}
        condition_a = condition[torch.from_numpy(before_last)]
        real_b, condition_b = dataset.get_batch(indices[before_last] + 1)
        reference_b = self._physical(real_b)
        seed = self.config.seed + 9                   # same latents at t_i and t_i+1
        generated_a = self._generate(condition_a, seed)
        generated_b = self._generate(condition_b, seed)
        for name in reference_a:
            sides["reference"][name] = reference_b[name] - reference_a[name]
            sides["generated"][name] = (generated_b[name].astype(np.float64)
                                        - generated_a[name])
        return sides

    def _samples_figure(self) -> None:
        from surrogate.validation.plots import save_training_samples
        dataset = self.data.splits.get("valid") or self.data.splits["train"]
        reference, generated = self.generate_like(dataset, 4, self.config.seed + 11)
        save_training_samples(reference, generated, self.data.schema,
                              self.run_dir / "samples" / f"step_{self.step:06d}.png",
                              self.step)

    # -------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        """Train until ``config.steps``; returns a summary."""
        from surrogate.validation.report import json_safe
        config = self.config
        start_step, started = self.step, time.perf_counter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=config.steps, initial=self.step, unit="step", desc="train",
                       dynamic_ncols=True)
        metrics_path = self.run_dir / "metrics.jsonl"
        window_start, window_steps = time.perf_counter(), 0
        try:
            while self.step < config.steps:
                metrics = self.train_step()
                window_steps += 1
                step = self.step
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss_d=f"{metrics['loss_d']:.3f}",
                                    loss_g=f"{metrics['loss_g']:.3f}", refresh=False)
                record: dict[str, Any] | None = None
                if step % config.log_every == 0 or step == config.steps:
                    elapsed = time.perf_counter() - window_start
                    record = {"step": step, **metrics,
                              "images_per_second": window_steps * config.batch_size / elapsed}
                    window_start, window_steps = time.perf_counter(), 0
                if step % config.validate_every == 0 or step == config.steps:
                    scores = self.validate()
                    if scores is not None:
                        record = {**(record or {"step": step}), **{
                            f"valid/{key}": value for key, value in scores.items()}}
                        if scores["score"] < self.best_score:
                            self.best_score, self.best_step = scores["score"], step
                            if self.ddp.main:
                                save_checkpoint(self.checkpoint_dir / "best.pt", {
                                    "generator_ema": self.generator_ema.state_dict(),
                                    "step": step, "score": scores["score"],
                                    "system": self.data.schema.system,
                                    "model": self.model_config.to_dict()})
                if self.ddp.main and step % config.sample_every == 0:
                    self._samples_figure()
                if record is not None and self.ddp.main:
                    with metrics_path.open("a") as handle:
                        handle.write(json.dumps(json_safe(record)) + "\n")
                if step % config.checkpoint_every == 0 or step == config.steps:
                    self.save()
        finally:
            if bar is not None:
                bar.close()
        if self.best_step < 0 and self.ddp.main:     # no validation split: keep the last EMA
            save_checkpoint(self.checkpoint_dir / "best.pt", {
                "generator_ema": self.generator_ema.state_dict(), "step": self.step,
                "score": math.nan, "system": self.data.schema.system,
                "model": self.model_config.to_dict()})
        seconds = time.perf_counter() - started
        steps = self.step - start_step
        records = []
        if metrics_path.exists():
            records = [json.loads(line) for line in metrics_path.read_text().splitlines()
                       if line.strip()]
        return {"run_dir": str(self.run_dir), "steps": self.step, "steps_this_run": steps,
                "seconds": seconds,
                "images_per_second": steps * config.batch_size / seconds if seconds else 0.0,
                "best_score": self.best_score, "best_step": self.best_step,
                **score_noise_summary(records),
                "device": str(self.device), "world_size": self.ddp.world_size}


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(line + "\n" for line in kept))


def _check_run_format(config: Mapping[str, Any], run_dir: Path) -> None:
    if config.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{run_dir}: run format {config.get('format')!r} is not "
                              f"{RUN_FORMAT}")
    missing = [key for key in ("system", "train", "model", "normalizer", "condition_encoder",
                               "schema") if key not in config]
    if missing:
        raise CheckpointError(f"{run_dir}/config.json: missing {', '.join(missing)}")


# ------------------------------------------------------------------ entry point
def train(data_path: str | os.PathLike, run_dir: str | os.PathLike,
          config: TrainConfig | None = None, *, device: str = "auto", resume: bool = False,
          overwrite: bool = False, progress: bool = True, steps: int | None = None
          ) -> dict[str, Any]:
    """Train (or resume) a conditional GAN on a field-store file.

    Args:
        data_path: training file (simulator output).
        run_dir: run directory (created).
        config: hyper-parameters (ignored when resuming: the run's config.json is used,
            except ``steps``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        resume: continue from ``run_dir/checkpoints/last.pt``.
        overwrite: start afresh in an existing run directory (its checkpoints are
            replaced as training proceeds).
        progress: tqdm progress bar.
        steps: total steps (overrides ``config.steps``; when resuming, the new total).
    Returns:
        Summary dict (steps, seconds, images/s, best score and step, device).
    Raises:
        ValueError: bad file, options, device, or an existing run without ``resume`` /
            ``overwrite``; :class:`surrogate.checkpoint.CheckpointError` for an unusable
            run directory; :class:`TrainingDivergedError` on NaN/Inf losses.
    """
    run_dir = Path(run_dir)
    existing = (run_dir / "config.json").exists()
    if resume:
        if not (run_dir / "checkpoints" / "last.pt").exists():
            raise CheckpointError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
        saved = read_run_config(run_dir)
        try:
            # runs written before the temporal discriminator existed trained without it
            config = TrainConfig.from_dict({"temporal_weight": 0.0, "sign_equivariant": False,
                                            **saved["train"]})
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{run_dir}/config.json: no valid training settings "
                                  f"({error})") from None
    elif existing and not overwrite:
        raise ValueError(f"{run_dir}: a training run already exists (use --resume to continue "
                         f"it or --overwrite to start afresh)")
    config = config or TrainConfig()
    if steps is not None:
        config = dataclasses.replace(config, steps=steps)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(data_path, run_dir, config, device=device, resume=resume,
                      progress=progress)
    if resume and trainer.step > config.steps:
        raise ValueError(f"{run_dir}: the run is already at step {trainer.step}; --steps "
                         f"{config.steps} would go back")
    if not resume and overwrite and existing:     # stale files go once the new run started
        if trainer.ddp.main:
            for name in ("metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
                (run_dir / name).unlink(missing_ok=True)
            for picture in (run_dir / "samples").glob("step_*.png"):
                picture.unlink()
    if resume and steps is not None:
        if trainer.ddp.main:
            saved = read_run_config(run_dir)
            saved["train"] = config.to_dict()
            write_run_config(run_dir, saved)
    return trainer.run()


def train_restarts(data_path: str | os.PathLike, run_dir: str | os.PathLike,
                   config: TrainConfig | None = None, restarts: int = 2, *,
                   device: str = "auto", overwrite: bool = False, progress: bool = True
                   ) -> dict[str, Any]:
    """Train ``restarts`` runs that differ only in their seed; keep the best-scored one.

    Run ``k`` trains with seed ``config.seed + k`` on the same file and the same split
    into ``RUN/restarts/seed_<seed>/``; the kept run is the one with the lowest best
    validation score (the held-out ``valid`` split, :func:`physics_score`), and ``RUN``
    itself becomes a copy of it (``config.json``, ``metrics.jsonl``, ``checkpoints/``,
    ``samples/``), so ``surrogate generate RUN`` uses it as any run.
    ``RUN/restarts.json`` lists every seed's best score and step and the kept seed. One
    GAN training is one draw from a wide distribution; ``K`` restarts cost ``K`` trainings
    and keep the best draw as the validation split sees it.

    Raises:
        ValueError: ``restarts`` is not a positive integer, or ``RUN`` holds a run and
            ``overwrite`` is off (plus everything :func:`train` raises).
    """
    import shutil
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists() and not overwrite:
        raise ValueError(f"{run_dir}: a training run already exists (use --overwrite to "
                         f"replace it)")
    config = config or TrainConfig()
    runs = []
    for k in range(restarts):
        seed = config.seed + k
        summary = train(data_path, run_dir / "restarts" / f"seed_{seed}",
                        dataclasses.replace(config, seed=seed), device=device,
                        overwrite=True, progress=progress)
        runs.append({"seed": seed, "best_score": summary["best_score"],
                     "best_step": summary["best_step"], "seconds": summary["seconds"],
                     "score_noise_median": summary["score_noise_median"],
                     "summary": summary})

    def sort_key(entry: dict[str, Any]) -> float:
        score = entry["best_score"]
        return math.inf if score is None or not math.isfinite(score) else score

    kept = min(runs, key=sort_key)
    records = [{key: entry[key] for key in ("seed", "best_score", "best_step", "seconds",
                                            "score_noise_median")}
               for entry in runs]
    if int(os.environ.get("RANK", "0")) == 0:
        source = run_dir / "restarts" / f"seed_{kept['seed']}"
        for name in ("config.json", "metrics.jsonl"):
            if (source / name).exists():
                shutil.copyfile(source / name, run_dir / name)
        for folder in ("checkpoints", "samples"):
            if (run_dir / folder).exists():
                shutil.rmtree(run_dir / folder)
            if (source / folder).exists():
                shutil.copytree(source / folder, run_dir / folder)
        from surrogate.validation.report import json_safe
        listing = {"kept_seed": kept["seed"], "restarts": records}
        (run_dir / "restarts.json").write_text(json.dumps(json_safe(listing), indent=1) + "\n")
    return {**kept["summary"], "run_dir": str(run_dir), "kept_seed": kept["seed"],
            "restarts": records}
