"""The training loop: :class:`Trainer` (models, optimisers, run-directory state, batches,
the discriminator and generator steps, validation, checkpoints) and its helpers."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from simulators.messages import first_line
from surrogate.budget import EnergyBudget, energy_budget_unavailable
from surrogate.checkpoint import (
    CheckpointError,
    average_generator_states,
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
    neighbour_groups,
    point_group,
    zero_mean_axes,
)
from surrogate.devices import autocast_dtype, resolve_device
from surrogate.models import (
    Discriminator,
    EnsembleDiscriminator,
    Generator,
    ModelConfig,
    latent_shift,
    mbstd_group,
    periodic_shift,
    same_model,
)
from surrogate.train.config import (
    AUTO_BUDGET_WEIGHT,
    AUTO_BUDGET_WEIGHT_ENSEMBLE,
    AUTO_ENSEMBLE_WEIGHT,
    TrainConfig,
)
from surrogate.train.distributed import (
    _all_reduce_gradients,
    _distributed_from_environment,
)
from surrogate.train.heldout import HeldOutScorer
from surrogate.train.low_modes import (
    CALIBRATION_SAMPLES,
    CONDITION_SAMPLES,
    calibrate_low_modes,
    fit_low_modes_to_conditions,
)
from surrogate.train.objective import GANObjective, GeneratedPairs, ensemble_pairs
from surrogate.train.scatter import ScatterTarget
from surrogate.train.scoring import score_noise_summary
from surrogate.train.spectrum_target import SpectrumTarget
from surrogate.train.spread_control import SpreadController, pair_mean_square_difference
from surrogate.train.state import check_run_format, read_metrics, run_config, truncate_metrics


class TrainingDivergedError(RuntimeError):
    """A loss became NaN/Inf; the message names the last good checkpoint."""


class UnscoredRangeWarning(UserWarning):
    """A third of a swept training range holds too few validation snapshots for the
    checkpoint score to judge it (:meth:`HeldOutScorer.unscored_ranges`)."""


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


def generator_parameter_groups(generator: torch.nn.Module, config: TrainConfig
                               ) -> list[dict[str, Any]]:
    """Adam parameter groups of G: one group, or with a spectral envelope and
    ``config.envelope_lr_multiplier != 1`` a second group holding the envelope's weights
    at ``lr_generator * envelope_lr_multiplier`` (its ``lr_multiplier`` key is kept so
    that the learning-rate decay scales both groups alike)."""
    envelope = getattr(generator, "envelope", None)
    if envelope is None or config.envelope_lr_multiplier == 1:
        return [{"params": list(generator.parameters())}]
    own = {id(parameter) for parameter in envelope.parameters()}
    rest = [parameter for parameter in generator.parameters() if id(parameter) not in own]
    return [{"params": rest},
            {"params": list(envelope.parameters()),
             "lr": config.lr_generator * config.envelope_lr_multiplier,
             "lr_multiplier": config.envelope_lr_multiplier}]


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
            check_run_format(saved, self.run_dir)
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
        if config.spectral_loss_groups > self.local_batch:
            raise ValueError(f"spectral_loss_groups {config.spectral_loss_groups} exceeds the "
                             f"batch of {self.local_batch} per replica")
        self.heads = OutputHeads.from_schema(schema, self.data.normalizer).to(self.device)
        torch.manual_seed(config.seed)
        symmetries = self.data.augmentation.symmetries
        negate = config.sign_equivariant and "negate" in symmetries
        if negate:
            check_sign_equivariance(self.heads, self.data.normalizer)
        each_snapshot = negate and "negate_each_snapshot" in symmetries
        shift_x = shift_y = False
        if config.shift_equivariant:
            _, (shift_x, shift_y) = point_group(symmetries)
        # the lean generator's feature maps stop at N / 4: its fine scales get noise
        output_noise = config.arch == "lean"
        if saved is not None:      # a run resumes as it was built (older runs: one sign)
            each_snapshot = negate and bool(saved.get("model", {}).get(
                "negate_each_snapshot", False))
            output_noise = bool(saved.get("model", {}).get("output_noise", False))
        self.model_config = ModelConfig.for_resolution(
            schema.resolution, self.heads.raw_channels, n_channels(schema.fields),
            self.data.encoder.dim, width=config.width, noise_dim=config.noise_dim,
            spectral_branch=config.spectral_branch, negate=negate, arch=config.arch,
            spectral_envelope=config.spectral_envelope,
            negate_each_snapshot=each_snapshot, output_noise=output_noise,
            shift_x=shift_x, shift_y=shift_y, low_modes=config.low_modes)
        generator, discriminator = build_models(self.model_config)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.low_mode_calibration: dict[str, float] | None = None
        if config.low_modes and saved is None:
            # start the Gaussian low modes at the training split's power (low_modes.py)
            train_split = self.data.splits["train"]
            real, real_condition = train_split.get_batch(
                HeldOutScorer.validation_indices(train_split, CALIBRATION_SAMPLES))
            self.low_mode_calibration = calibrate_low_modes(
                self.generator, self.heads.forward_normalised, real.to(self.device),
                real_condition.to(self.device), seed=config.seed)
            # then the map's weights, so that the power follows the condition
            real, real_condition = train_split.get_batch(
                HeldOutScorer.validation_indices(train_split, CONDITION_SAMPLES))
            self.low_mode_calibration.update(fit_low_modes_to_conditions(
                self.generator, self.heads.forward_normalised, real.to(self.device),
                real_condition.to(self.device), seed=config.seed))
            self.log("low modes: amplitude x {factor:.3g} at the start (power in the "
                     "lowest shells {generated_power_before:.3g} -> "
                     "{generated_power_after:.3g}; training data {real_power:.3g}), then "
                     "fitted per condition (largest factor off {mismatch_before:.3g} -> "
                     "{mismatch_after:.3g})".format(**self.low_mode_calibration))
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        betas = (config.beta1, config.beta2)
        self.optimizer_g = torch.optim.Adam(generator_parameter_groups(self.generator, config),
                                            lr=config.lr_generator, betas=betas)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(),
                                            lr=config.lr_discriminator, betas=betas)
        def stacked_discriminator(kind: type[Discriminator] = Discriminator
                                  ) -> tuple[Discriminator, torch.optim.Optimizer]:
            """A discriminator of two snapshots stacked on channels, and its Adam."""
            module = kind(dataclasses.replace(
                self.model_config, in_channels=2 * self.model_config.in_channels)
            ).to(self.device)
            return module, torch.optim.Adam(module.parameters(), lr=config.lr_discriminator,
                                            betas=betas)

        # one symmetry element per stacked pair (what consistency regularisation moves)
        self.pair_augmentation = self.data.augmentation.stacked(2)
        # the temporal discriminator reads two consecutive snapshots stacked on channels
        self.temporal = config.temporal_weight > 0 and self.data.splits["train"].n_times >= 2
        self.temporal_discriminator: Discriminator | None = None
        if self.temporal:
            self.temporal_discriminator, self.optimizer_t = stacked_discriminator()
        # the ensemble discriminator reads two samples at one condition stacked on channels
        ensemble_blocker = self._ensemble_unavailable()
        if config.ensemble_weight is None:
            # auto: on where it applies (pairs in a replica's batch, >= 2 trajectories)
            config = dataclasses.replace(config, ensemble_weight=(
                AUTO_ENSEMBLE_WEIGHT if ensemble_blocker is None else 0.0))
            self.config = config
        elif config.ensemble_weight > 0 and ensemble_blocker is not None:
            raise ValueError(f"ensemble_weight needs {ensemble_blocker}")
        self.ensemble = config.ensemble_weight > 0
        self.ensemble_discriminator: Discriminator | None = None
        if self.ensemble:
            self.ensemble_discriminator, self.optimizer_e = stacked_discriminator(
                EnsembleDiscriminator)
        # with a spread target, the ensemble term's strength follows the measured spread
        self.spread_control: SpreadController | None = None
        self.spread_shifts = (False, False)     # the pairs are aligned along these axes
        if self.ensemble and config.ensemble_spread_target > 0:
            self.spread_control = SpreadController(config.ensemble_spread_target,
                                                   config.steps)
            self.spread_shifts = point_group(self.data.augmentation.symmetries)[1]
        if config.budget_weight is None:
            # auto: on where it applies (a declared energy budget and generated pairs)
            applies = self.temporal and energy_budget_unavailable(
                schema, self.data.encoder) is None
            weight = AUTO_BUDGET_WEIGHT_ENSEMBLE if self.ensemble else AUTO_BUDGET_WEIGHT
            config = dataclasses.replace(config, budget_weight=weight if applies else 0.0)
            self.config = config
        self.budget: EnergyBudget | None = None
        if config.budget_weight > 0:
            self.budget = EnergyBudget.from_schema(schema, self.heads, self.data.encoder)
            if not self.temporal:
                raise ValueError("budget_weight needs generated pairs of consecutive "
                                 "snapshots: temporal_weight > 0 and a file with >= 2 "
                                 "snapshot times")
        self.data_generator = torch.Generator().manual_seed(config.seed + 1)
        self.noise_generator = torch.Generator().manual_seed(config.seed + 2)
        self.neighbours: torch.Tensor | None = None
        if config.neighbour_batches:
            group = mbstd_group(self.local_batch, self.model_config.mbstd_group_size)
            if group < 2:
                raise ValueError(f"neighbour_batches needs minibatch-stddev groups of >= 2 "
                                 f"samples; a batch of {self.local_batch} per replica has "
                                 f"groups of {group}")
            self.neighbours = self._neighbour_table(group, "neighbour_batches")
        # each training trajectory's nearest other: the real partner of an ensemble pair
        self.partners: torch.Tensor | None = None
        if self.ensemble:
            self.partners = self._neighbour_table(2, "ensemble_weight")[:, 1]
        # per replica: augmentation choices and the generator's pixel noise (global torch
        # stream) differ between replicas; data indices and latents are drawn globally
        rank = self.ddp.rank
        self.augment_generator = torch.Generator().manual_seed(config.seed + 3 + 7919 * rank)
        torch.manual_seed(config.seed + 104729 * (rank + 1))
        self.step = 0
        self.best_score = math.inf
        self.best_step = -1
        self.last_checkpoint_step = -1
        # the last ``average_checkpoints`` validated EMA generators ({"generator_ema",
        # "step"}, CPU copies), whose mean is scored as a candidate for best.pt
        self.validated_ema: list[dict[str, Any]] = []
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
        scatter_target = None
        if config.spectral_scatter_weight > 0:
            scatter_target = ScatterTarget.from_dataset(self.data.splits["train"]).to(self.device)
        spectrum_target = None
        if config.spectral_bias_weight > 0:
            spectrum_target = SpectrumTarget.from_dataset(
                self.data.splits["train"], space=config.spectral_bias_space).to(self.device)
        self.objective = GANObjective(config, self.data.normalizer, self.budget,
                                      self.autocast, self.augment_generator,
                                      zero_mean_axes(self.data.augmentation.symmetries),
                                      scatter_target, spectrum_target,
                                      self._unshift if (self.model_config.shift_x
                                                        or self.model_config.shift_y) else None)
        self.scorer = HeldOutScorer(self.data, self.heads, self.generator_ema, config,
                                    self.device, self.autocast, self.temporal)
        if self.ddp.main:
            for line in self.scorer.unscored_ranges():
                warnings.warn(line, UnscoredRangeWarning, stacklevel=2)
                self.log(line)
        self.g_forward = torch.compile(self.generator) if config.compile else self.generator
        # a compiled D with spectral norm fails in backward after two forwards (the power
        # iteration updates its buffers in place), so only G is compiled then
        self.d_forward = torch.compile(self.discriminator) \
            if config.compile and not self.model_config.spectral_norm else self.discriminator

    def _unshift(self, fake: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Fakes (B, C, N, N) rolled back by the shifts their latents (B, Z) carry."""
        return periodic_shift(fake, -latent_shift(noise, self.model_config)[1])

    def _modules(self) -> list[torch.nn.Module]:
        """The trained networks (and the EMA generator)."""
        modules = [self.generator, self.discriminator, self.generator_ema]
        return (modules + ([self.temporal_discriminator] if self.temporal else [])
                + ([self.ensemble_discriminator] if self.ensemble else []))

    # -------------------------------------------------------------- config and state
    def _write_config(self) -> None:
        config = run_config(self.data, self.config, self.model_config)
        if self.low_mode_calibration is not None:     # the start it was given (low_modes.py)
            config["low_mode_calibration"] = self.low_mode_calibration
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
        if self.ensemble:
            state["ensemble_discriminator"] = self.ensemble_discriminator.state_dict()
            state["optimizer_e"] = self.optimizer_e.state_dict()
        if self.spread_control is not None:
            state["spread_control"] = self.spread_control.state_dict()
        if self.config.average_checkpoints >= 2:
            state["validated_ema"] = self.validated_ema
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
        for which, on, optimizer in (("temporal", self.temporal, "optimizer_t"),
                                     ("ensemble", self.ensemble, "optimizer_e")):
            if not on:
                continue
            if f"{which}_discriminator" not in state:
                raise CheckpointError(f"{path}: written without the {which} discriminator "
                                      f"({which}_weight 0); cannot resume with it on")
            getattr(self, f"{which}_discriminator").load_state_dict(
                state[f"{which}_discriminator"])
            getattr(self, optimizer).load_state_dict(state[optimizer])
        if self.spread_control is not None:
            if "spread_control" not in state:
                raise CheckpointError(f"{path}: written without a spread target "
                                      f"(ensemble_spread_target 0); cannot resume with one")
            self.spread_control.load_state_dict(state["spread_control"])
        self.step = int(state["step"])
        self.best_score = float(state["best_score"])
        self.best_step = int(state["best_step"])
        # runs written without the option (or before it existed) start averaging afresh
        self.validated_ema = list(state.get("validated_ema", []))
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
            truncate_metrics(self.run_dir / "metrics.jsonl", self.step)

    def save(self) -> None:
        state = self._state()                 # collective under DDP: every rank builds it
        if self.ddp.main:
            save_checkpoint(self.checkpoint_dir / "last.pt", state)
        self.last_checkpoint_step = self.step
        if self.ddp.world_size > 1:
            dist.barrier()

    # -------------------------------------------------------------- what can run here
    def _ensemble_unavailable(self) -> str | None:
        """Why the ensemble term cannot run here (what it needs, with what this training
        has), or None: it pairs two samples of one condition inside a replica's batch
        (``B_r >= 2``) and a training trajectory with its nearest other (>= 2 training
        trajectories). The auto weight and an explicit weight read the same rule."""
        n_train = self.data.splits["train"].trajectories.size
        if self.local_batch < 2:
            return f"a batch of >= 2 per replica, got {self.local_batch}"
        if n_train < 2:
            return f">= 2 training trajectories, the training split has {n_train}"
        return None

    # -------------------------------------------------------------- one step
    def _neighbour_table(self, group: int, option: str) -> torch.Tensor:
        """``(n_train, group)``: each training trajectory and its ``group - 1`` nearest
        in the encoded parameters (:func:`surrogate.data.neighbour_groups`): the
        minibatch-stddev groups of ``neighbour_batches`` or the ensemble pairs
        (``group = 2``); ``option`` names the setting in the error."""
        train = self.data.splits["train"]
        if train.trajectories.size < group:
            raise ValueError(f"{option} needs >= {group} training trajectories, "
                             f"the training split has {train.trajectories.size}")
        conditions = train.conditions.numpy().reshape(train.trajectories.size,
                                                      train.n_times, -1)
        return torch.from_numpy(neighbour_groups(conditions[:, 0, :-1], group))

    def _neighbour_indices(self) -> torch.Tensor:
        """Global batch indices of ``neighbour_batches``: per replica, ``B_r / g`` groups
        (a random anchor trajectory, its ``g - 1`` neighbours, one random snapshot time
        for the group), member ``j`` of group ``i`` at local position ``j (B_r / g) + i``
        (the minibatch-stddev grouping); replica ``r``'s position ``k`` at global
        ``k W + r``, so that the ``rank::world`` slice hands each replica its groups."""
        train = self.data.splits["train"]
        world, group = self.ddp.world_size, self.neighbours.shape[1]
        n_groups = self.local_batch // group
        anchors = torch.randint(train.trajectories.size, (world * n_groups,),
                                generator=self.data_generator)
        times = torch.randint(train.n_times, (world * n_groups, 1), generator=self.data_generator)
        items = self.neighbours[anchors] * train.n_times + times       # (W n_groups, g)
        local = items.reshape(world, n_groups, group).transpose(1, 2).reshape(world, -1)
        return local.T.reshape(-1)

    def _ensemble_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This replica's ``B_r / 2`` real ensemble pairs: a random training snapshot
        and the snapshot at the same time of its trajectory's nearest neighbour
        (:attr:`partners`), stacked on channels ``(b, 2C, N, N)``, each half with its
        own symmetry element (two independent samples); with the first's condition and
        the pairs' mean square difference before the symmetry elements, aligned along
        :attr:`spread_shifts` (0-d, :func:`pair_mean_square_difference`)."""
        train = self.data.splits["train"]
        world = self.ddp.world_size
        first = torch.randint(len(train), (self.local_batch // 2 * world,),
                              generator=self.data_generator)[self.ddp.rank::world]
        partner = self.partners[first // train.n_times] * train.n_times \
            + first % train.n_times
        real_a, condition = train.get_batch(first.numpy())
        real_b, _ = train.get_batch(partner.numpy())
        difference = pair_mean_square_difference(torch.cat([real_a, real_b], dim=1),
                                                 *self.spread_shifts)
        if self.config.augment and self.data.augmentation.enabled:
            real_a = self.data.augmentation(real_a, self.augment_generator)
            real_b = self.data.augmentation(real_b, self.augment_generator)
        return (torch.cat([real_a, real_b], dim=1).to(self.device),
                condition.to(self.device), difference)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        train = self.data.splits["train"]
        size = self.config.batch_size
        if self.neighbours is None:
            indices = torch.randint(len(train), (size,), generator=self.data_generator)
        else:
            indices = self._neighbour_indices()
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
        """One Adam step of a discriminator on :meth:`GANObjective.discriminator`'s loss;
        returns its metrics."""
        module.requires_grad_(True)
        loss, metrics = self.objective.discriminator(module, forward, real, condition, fake,
                                                     fake_condition, augmentation, self.step,
                                                     suffix)
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
            if self.ensemble:
                optimizers.append((self.optimizer_e, config.lr_discriminator))
            for optimizer, rate in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = rate * group.get("lr_multiplier", 1.0) * factor
        real, condition, noise = self._batch()
        fake_condition, pairs = self.objective.fake_conditions(condition)
        with self.autocast():
            fake = self.heads.forward_normalised(self.g_forward(noise, fake_condition),
                                                 fake_condition,
                                                 straight_through=config.straight_through)
        metrics = self._update_discriminator(self.discriminator, self.d_forward,
                                             self.optimizer_d, real, condition, fake,
                                             fake_condition, "", self.data.augmentation)
        generated_pairs = None
        if self.temporal:
            # (G(z, c_i), G(z, c_i+1)): one latent, two consecutive times
            real_pairs, condition_a, condition_b, pair_noise = self._pair_batch()
            with self.autocast():
                both_conditions = torch.cat([condition_a, condition_b])
                both_physical = self.heads(self.g_forward(
                    torch.cat([pair_noise, pair_noise]), both_conditions), both_conditions)
                if config.straight_through:
                    both_physical = self.heads.straight_through(both_physical)
                both = self.data.normalizer.encode(both_physical)
            generated_pairs = GeneratedPairs(real_pairs, torch.cat(both.chunk(2), dim=1),
                                             both_physical, condition_a, condition_b)
            metrics.update(self._update_discriminator(
                self.temporal_discriminator, self.temporal_discriminator, self.optimizer_t,
                real_pairs, condition_a, generated_pairs.fake, condition_a, "_temporal",
                self.pair_augmentation))
        ensemble_scale = 1.0
        if self.ensemble:
            real_together, condition_together, real_difference = self._ensemble_batch()
            fake_together, fake_condition_together = ensemble_pairs(fake, fake_condition,
                                                                    pairs)
            metrics.update(self._update_discriminator(
                self.ensemble_discriminator, self.ensemble_discriminator, self.optimizer_e,
                real_together, condition_together, fake_together, fake_condition_together,
                "_ensemble", self.pair_augmentation))
            if self.spread_control is not None:
                ensemble_scale = self._control_spread(fake_together, real_difference)
                metrics["ensemble_strength"] = ensemble_scale
                metrics["ensemble_spread_ratio"] = self.spread_control.ratio
        loss_g, generator_metrics = self.objective.generator(
            self.d_forward, self.temporal_discriminator if self.temporal else None, fake,
            fake_condition, pairs, noise, real, condition, generated_pairs,
            self.ensemble_discriminator if self.ensemble and ensemble_scale > 0 else None,
            ensemble_scale)
        metrics.update(generator_metrics)
        self._check_finite(loss_g, "generator")
        self.optimizer_g.zero_grad(set_to_none=True)
        loss_g.backward()
        _all_reduce_gradients(self.generator, self.ddp.world_size)
        self.optimizer_g.step()
        _ema_update(self.generator_ema, self.generator, ema_beta(config, self.step))
        self.step += 1
        return metrics

    def _control_spread(self, fake_together: torch.Tensor, real_difference: torch.Tensor
                        ) -> float:
        """Feed this step's generated and real pair differences (averaged over replicas)
        to :attr:`spread_control`, let it adjust, and return the strength for this
        step's generator update."""
        with torch.no_grad():
            differences = torch.stack([pair_mean_square_difference(fake_together,
                                                                   *self.spread_shifts),
                                       real_difference.to(self.device)])
        if self.ddp.world_size > 1:
            dist.all_reduce(differences)
            differences /= self.ddp.world_size
        fake_difference, real_difference = differences.tolist()
        self.spread_control.observe(fake_difference, real_difference)
        self.spread_control.adjust()
        return self.spread_control.strength

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
    def validate(self) -> dict[str, float] | None:
        """The EMA generator's score on the validation split
        (:meth:`HeldOutScorer.score`); ``None`` without one."""
        return self.scorer.score()

    def generate_like(self, dataset, count: int, seed: int
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """:meth:`HeldOutScorer.generate_like`."""
        return self.scorer.generate_like(dataset, count, seed)

    def _samples_figure(self) -> None:
        from surrogate.validation.plots import save_training_samples
        dataset = self.data.splits.get("valid") or self.data.splits["train"]
        reference, generated = self.generate_like(dataset, 4, self.config.seed + 11)
        save_training_samples(reference, generated, self.data.schema,
                              self.run_dir / "samples" / f"step_{self.step:06d}.png",
                              self.step)

    def _keep_if_best(self, score: float, step: int, checkpoint: dict[str, Any]) -> None:
        """``checkpoint`` becomes ``best.pt`` when ``score`` beats every candidate so far."""
        if score < self.best_score:
            self.best_score, self.best_step = score, step
            if self.ddp.main:
                save_checkpoint(self.checkpoint_dir / "best.pt", checkpoint)

    def _score_average(self, validated: dict[str, Any]) -> dict[str, Any] | None:
        """With ``average_checkpoints = K >= 2``: remember the EMA generator just validated
        and, once K are remembered, score the mean of the last K on the validation split.
        Returns the averaged checkpoint (``score`` set, ``averaged_steps``) or ``None``.
        The EMA generator is left as it was."""
        k = self.config.average_checkpoints
        if k < 2:
            return None
        self.validated_ema.append({"generator_ema": {
            name: tensor.detach().to("cpu", copy=True)
            for name, tensor in validated["generator_ema"].items()},
            "step": validated["step"]})
        self.validated_ema = self.validated_ema[-k:]
        if len(self.validated_ema) < k:
            return None
        averaged = {**validated, **average_generator_states(self.validated_ema)}
        current = {name: tensor.detach().clone()
                   for name, tensor in self.generator_ema.state_dict().items()}
        try:
            self.generator_ema.load_state_dict(averaged["generator_ema"])
            scores = self.validate()
        finally:
            self.generator_ema.load_state_dict(current)
        averaged["score"] = scores["score"] if scores is not None else math.nan
        return averaged

    # -------------------------------------------------------------- the loop
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train until ``config.steps`` (or stop early at step ``stop_at``, saving
        ``last.pt`` there so that the run resumes exactly); returns a summary.

        Stopping early leaves everything that depends on the total (the learning-rate
        decay) as the full run has it: a run stopped at ``stop_at`` and resumed equals
        one trained straight."""
        from surrogate.jsonable import json_safe
        config = self.config
        end = config.steps if stop_at is None else min(config.steps, stop_at)
        start_step, started = self.step, time.perf_counter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=config.steps, initial=self.step, unit="step", desc="train",
                       dynamic_ncols=True)
        metrics_path = self.run_dir / "metrics.jsonl"
        window_start, window_steps = time.perf_counter(), 0
        try:
            while self.step < end:
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
                        validated = {"generator_ema": self.generator_ema.state_dict(),
                                     "step": step, "score": scores["score"],
                                     "system": self.data.schema.system,
                                     "model": self.model_config.to_dict()}
                        if config.keep_validated and self.ddp.main:
                            save_checkpoint(self.checkpoint_dir / f"ema_step_{step:06d}.pt",
                                            validated)
                        self._keep_if_best(scores["score"], step, validated)
                        averaged = self._score_average(validated)
                        if averaged is not None:
                            record["valid/average_score"] = averaged["score"]
                            self._keep_if_best(averaged["score"], step, averaged)
                if self.ddp.main and step % config.sample_every == 0:
                    self._samples_figure()
                if record is not None and self.ddp.main:
                    with metrics_path.open("a") as handle:
                        handle.write(json.dumps(json_safe(record)) + "\n")
                if step % config.checkpoint_every == 0 or step in (config.steps, end):
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
        return {"run_dir": str(self.run_dir), "steps": self.step, "steps_this_run": steps,
                "seconds": seconds,
                "images_per_second": steps * config.batch_size / seconds if seconds else 0.0,
                "best_score": self.best_score, "best_step": self.best_step,
                **score_noise_summary(read_metrics(metrics_path)),
                "device": str(self.device), "world_size": self.ddp.world_size}
