"""A small periodic CNN that infers the swept parameters of one snapshot, with an uncertainty.

:class:`ParameterRegressor` maps a normalised snapshot ``x`` (``(C, N, N)``) and its
encoded time ``c_t`` to a Gaussian over the ``P`` encoded parameters: a mean ``mu`` and
a log-variance ``s = log sigma^2`` per parameter. :func:`train_regressor` fits it by the
Gaussian negative log-likelihood (``torch.nn.GaussianNLLLoss``, per parameter and
snapshot, averaged over both)::

    L = mean_{b, p} [ (log sigma_bp^2 + (mu_bp - y_bp)^2 / sigma_bp^2) / 2 ]

so that ``sigma`` is a calibrated error bar when the fit generalises (checked by the
coverage of :func:`surrogate.validation.utility.scores.regression_scores`).

Architecture (circular padding everywhere: the domain is periodic, so every layer
commutes with whole-cell shifts up to the pooling grid): a 3x3 stem to ``width``
channels, GELU and 2x2 average pooling, then ``K = min(4, log2(N) - 3)`` stages of a 3x3
convolution (doubling the channels up to ``4 width``), GELU and 2x2 average pooling, so
the last feature map is at least 4x4; a global average over positions; the time code
appended; a two-layer MLP to ``2 P`` outputs. The log-variance is clamped to
:data:`LOG_VARIANCE_RANGE`.

Training: AdamW, a linear warm-up over the first 5 % of the steps and a cosine decay
to 0, gradient norm clipped at 1, batches drawn with replacement, each example moved by
a random element of the system's declared symmetry group
(:class:`surrogate.data.SymmetryAugmentation`: the parameters are invariant under it).
Inputs are normalised per field by :class:`surrogate.data.FieldNormalizer`, the GAN's
transform without its log kind, with statistics of the training set itself (so a
regressor trained on generated fields never sees the simulations' statistics). No log:
a field declared ``>= 0`` takes the log where every training value is positive, which
one training set can be (generated Gray-Scott ``v``, strictly positive through the
GAN's head) and a test set not (the simulator's ``v`` reaches -1e-16 by round-off), and
the log of such a test snapshot is NaN. One ``seed`` fixes the
initial weights, the batches and the augmentation: on one machine and one device type
the same seed gives the same numbers (the CPU kernels are deterministic for a fixed
thread count; CUDA convolutions need not be).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from simulators.store import StoreSchema
from simulators.store.statistics import field_statistics
from surrogate.data import FieldNormalizer, SymmetryAugmentation, to_store_layout
from surrogate.devices import check_threads, cpu_threads, resolve_device
from surrogate.validation.utility.snapshots import Snapshots

__all__ = ["LOG_VARIANCE_RANGE", "FittedRegressor", "ParameterRegressor", "RegressorConfig",
           "cpu_threads", "train_regressor"]

#: clamp of the predicted log-variance (encoded units: the targets lie in [-1, 1])
LOG_VARIANCE_RANGE = (-12.0, 2.0)
#: snapshots per forward pass when predicting
PREDICT_BATCH = 256


@dataclass(frozen=True)
class RegressorConfig:
    """The training budget and size of one regressor (the same for every training set).

    Attributes:
        steps: optimisation steps.
        batch_size: snapshots per step.
        width: channels of the first stage (the last has ``4 width``).
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        augment: random symmetry-group elements on training batches.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        threads: torch CPU threads during training and prediction (``None``: torch's
            setting; restored afterwards). On a busy machine 1 can be many times
            faster than several (small convolutions on oversubscribed cores), and the
            numbers depend on it (the CPU kernels' reduction order).
    """

    steps: int = 600
    batch_size: int = 32
    width: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    augment: bool = True
    device: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"regressor {name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"regressor {name} must be a finite number >= 0, got "
                                 f"{value!r}")
        check_threads(self.threads, "regressor threads")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _circular_conv(inputs: int, outputs: int) -> nn.Conv2d:
    return nn.Conv2d(inputs, outputs, 3, padding=1, padding_mode="circular")


class ParameterRegressor(nn.Module):
    """Snapshot ``(B, C, N, N)`` + time code ``(B,)`` -> mean and log-variance ``(B, P)``.

    See the module docstring for the layers.
    """

    def __init__(self, channels: int, resolution: int, n_parameters: int, width: int
                 ) -> None:
        super().__init__()
        # the stem sees every scale at full resolution; pooling right after it keeps the
        # wider layers at N/2 and below (4x fewer operations than a full-size stage)
        stages = max(0, min(4, int(math.log2(max(resolution, 1))) - 3))
        layers: list[nn.Module] = [_circular_conv(channels, width), nn.GELU()]
        if resolution >= 8:
            layers.append(nn.AvgPool2d(2))
        current = width
        for _ in range(stages):
            following = min(2 * current, 4 * width)
            layers += [_circular_conv(current, following), nn.GELU(), nn.AvgPool2d(2)]
            current = following
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(current + 1, 4 * width), nn.GELU(),
                                  nn.Linear(4 * width, 2 * n_parameters))
        self.n_parameters = n_parameters

    def forward(self, fields: torch.Tensor, time: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.features(fields).mean(dim=(-2, -1))
        out = self.head(torch.cat([pooled, time.view(-1, 1).to(pooled.dtype)], dim=1))
        mean, log_variance = out.split(self.n_parameters, dim=1)
        return mean, log_variance.clamp(*LOG_VARIANCE_RANGE)


def _normalizer(snapshots: Snapshots, schema: StoreSchema) -> FieldNormalizer:
    """The GAN's per-field normalisation with the statistics of ``snapshots``, never of
    the log kind (see the module docstring): defined for every finite input."""
    arrays = to_store_layout(snapshots.fields, schema.fields)
    statistics = {}
    for spec in schema.fields:
        stats = field_statistics(iter([arrays[spec.name]]), spec.rank)
        statistics[spec.name] = {key: value for key, value in stats.items()
                                 if not key.startswith("log_")}
    return FieldNormalizer.from_statistics(schema.fields, schema.invariants, statistics,
                                           source="regressor training set")


@dataclass
class FittedRegressor:
    """A trained :class:`ParameterRegressor` with the input normalisation it was fitted on."""

    model: ParameterRegressor
    normalizer: FieldNormalizer
    device: torch.device
    names: tuple[str, ...]
    threads: int | None = None

    def predict(self, snapshots: Snapshots) -> tuple[np.ndarray, np.ndarray]:
        """Predicted mean and standard deviation ``sigma = exp(s / 2)``, both ``(S, P)``
        float64 in encoded units."""
        if snapshots.names != self.names:
            raise ValueError(f"snapshots infer {snapshots.names}, the regressor "
                             f"{self.names}")
        with cpu_threads(self.threads), torch.no_grad():
            return self._predict(snapshots)

    def _predict(self, snapshots: Snapshots) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        means, stds = [], []
        for start in range(0, snapshots.size, PREDICT_BATCH):
            part = slice(start, start + PREDICT_BATCH)
            fields = self.normalizer.encode(torch.from_numpy(snapshots.fields[part]))
            mean, log_variance = self.model(fields.to(self.device),
                                            torch.from_numpy(snapshots.time[part])
                                            .to(self.device))
            means.append(mean.double().cpu().numpy())
            stds.append(torch.exp(0.5 * log_variance.double()).cpu().numpy())
        if not means:
            empty = np.zeros((0, len(self.names)))
            return empty, empty.copy()
        return np.concatenate(means), np.concatenate(stds)


def _learning_rate_factor(step: int, steps: int) -> float:
    """Linear warm-up over 5 % of the steps, then a cosine decay to 0."""
    warmup = max(1, steps // 20)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_regressor(snapshots: Snapshots, schema: StoreSchema, config: RegressorConfig,
                    seed: int, progress: Callable[[int, float], None] | None = None
                    ) -> FittedRegressor:
    """Fit a :class:`ParameterRegressor` to ``snapshots`` (see the module docstring).

    Args:
        snapshots: the training set (at least one snapshot).
        schema: the fields' declarations (normalisation kinds, channel layout,
            declared symmetries of ``schema.system``).
        config: the budget.
        seed: initial weights, batches and augmentation.
        progress: called as ``progress(step, loss)`` every 100 steps.
    Returns:
        The fitted regressor (its last weights).
    Raises:
        ValueError: an empty training set, or a loss that is not finite.
    """
    if snapshots.size == 0:
        raise ValueError("the regressor's training set holds no snapshot")
    with cpu_threads(config.threads):
        return _train(snapshots, schema, config, seed, progress)


def _train(snapshots: Snapshots, schema: StoreSchema, config: RegressorConfig, seed: int,
           progress: Callable[[int, float], None] | None) -> FittedRegressor:
    device = resolve_device(config.device)
    normalizer = _normalizer(snapshots, schema)
    fields = normalizer.encode(torch.from_numpy(snapshots.fields))
    times = torch.from_numpy(snapshots.time)
    targets = torch.from_numpy(snapshots.targets)
    augmentation = SymmetryAugmentation.from_schema(schema)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ParameterRegressor(fields.shape[1], fields.shape[-1], len(snapshots.names),
                                   config.width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _learning_rate_factor(step, config.steps))
    loss_function = nn.GaussianNLLLoss()
    model.train()
    for step in range(config.steps):
        index = torch.randint(snapshots.size, (config.batch_size,), generator=generator)
        batch = fields[index]
        if config.augment and augmentation.enabled:
            batch = augmentation(batch, generator)
        mean, log_variance = model(batch.to(device), times[index].to(device))
        loss = loss_function(mean, targets[index].to(device), torch.exp(log_variance))
        if not torch.isfinite(loss):
            raise ValueError(f"the regressor's loss is {loss.item()} at step {step} "
                             f"(non-finite input values?)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None and (step + 1) % 100 == 0:
            progress(step + 1, float(loss))
    return FittedRegressor(model=model, normalizer=normalizer, device=device,
                           names=snapshots.names, threads=config.threads)
