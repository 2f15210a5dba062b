"""Scoring a training run's EMA generator on held-out conditions (the validation split).

:class:`HeldOutScorer` draws, with its own seeded random streams (the training streams are
untouched), generated snapshots at the conditions of evenly spaced validation snapshots
and scores them with :func:`surrogate.train.scoring.physics_score`; the trainer keeps the
best-scored checkpoint. Fields are compared in physical units (the normaliser decoded,
discrete fields snapped to their allowed values as ``surrogate generate`` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree

from surrogate.constraints import OutputHeads
from surrogate.data import TrainingData, to_store_layout
from surrogate.train.config import TrainConfig
from surrogate.train.scoring import (
    MIN_SNAPSHOTS_PER_THIRD,
    physics_score,
    range_thirds,
    two_draw_score,
    unscored_thirds,
)
from surrogate.validation.report.summaries import sign_symmetric

__all__ = ["HeldOutScorer"]


class HeldOutScorer:
    """The validation score of a generator (see :meth:`score`).

    Args:
        data: the training data (splits, normaliser, schema).
        heads: the physics output heads.
        generator: the generator scored (the trainer's EMA generator, read at call time).
        config: training options (``noise_dim``, ``seed``, ``validation_samples``).
        device: where the generator runs.
        autocast: no-argument context factory of the generator's forward.
        temporal: also score the change between consecutive snapshot times.
    """

    def __init__(self, data: TrainingData, heads: OutputHeads, generator: torch.nn.Module,
                 config: TrainConfig, device: torch.device, autocast: Callable,
                 temporal: bool) -> None:
        self.data = data
        self.heads = heads
        self.generator_ema = generator
        self.config = config
        self.device = device
        self.autocast = autocast
        self.temporal = temporal
        #: the generator draws the sign of the system's declared global sign symmetry:
        #: W1 compares the symmetrised laws (without it the sign balance is the
        #: generator's to learn, and the plain W1 watches it)
        self.sign_symmetric = (sign_symmetric(data.schema.system)
                               and bool(config.sign_equivariant))

    def unscored_ranges(self) -> list[str]:
        """One line for each third of a swept training range in which the score sees
        fewer than :data:`MIN_SNAPSHOTS_PER_THIRD` validation snapshots
        (:func:`surrogate.train.scoring.unscored_thirds`): the best checkpoint is chosen
        blind to that end of the range. Empty without a training or validation split,
        or with fewer than ``3 *`` :data:`MIN_SNAPSHOTS_PER_THIRD` validation snapshots
        (no split could cover each third: the score judges the range as a whole)."""
        train, valid = self.data.splits.get("train"), self.data.splits.get("valid")
        if train is None or valid is None or len(train) == 0:
            return []
        indices = self.validation_indices(valid, self.config.validation_samples)
        if len(indices) < 3 * MIN_SNAPSHOTS_PER_THIRD:
            return []    # too few for any split to cover each third: the range as a whole
        encoder = self.data.encoder
        blind = unscored_thirds(train.conditions.numpy()[:, :-1],
                                valid.conditions.numpy()[indices, :-1])
        lines = []
        for column, third, count, low, high in blind:
            bounds = np.zeros((2, encoder.dim))
            bounds[:, column] = (low, high)
            physical = encoder.decode(bounds)[0][encoder.names[column]]
            units = "" if encoder.units[column] in ("", "1") else " " + encoder.units[column]
            lines.append(
                f"validation split: the {('low end', 'middle', 'high end')[third]} of "
                f"{encoder.names[column]}'s training range ({physical[0]:.4g} to "
                f"{physical[1]:.4g}{units}) holds {count} of the "
                f"score's {len(indices)} validation snapshots (fewer than "
                f"{MIN_SNAPSHOTS_PER_THIRD}): the best checkpoint is chosen blind to it; "
                f"a sweep simulated with --split-layout stratified validates every third")
        return lines

    @staticmethod
    def validation_indices(dataset, count: int) -> np.ndarray:
        """``count`` snapshot indices of ``dataset`` spread evenly over it (all if fewer)."""
        return np.unique(np.linspace(0, len(dataset) - 1, min(count, len(dataset)))
                         .round().astype(int))

    def physical(self, real: torch.Tensor) -> dict[str, np.ndarray]:
        """Normalised channels ``(S, C, N, N)`` -> physical ``{name: (S, N, N[, 2])}``."""
        return to_store_layout(self.data.normalizer.decode(real.double()).numpy(),
                               self.data.schema.fields)

    @torch.no_grad()
    def generate(self, condition: torch.Tensor, seed: int, pixel_seed: int | None = None
                 ) -> dict[str, np.ndarray]:
        """EMA-generator snapshots (discrete fields snapped) at ``condition`` ``(S, P+1)``,
        physical ``{name: (S, N, N[, 2])}``; latents from ``seed``, the per-pixel noise
        from ``pixel_seed`` (default ``seed``), both in their own seeded streams (the
        training stream is untouched)."""
        outputs = []
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed if pixel_seed is None else pixel_seed)
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
        real, condition = dataset.get_batch(self.validation_indices(dataset, count))
        return self.physical(real), self.generate(condition, seed)

    def neighbour_snapshots(self, dataset, indices: np.ndarray
                            ) -> dict[str, np.ndarray] | None:
        """For snapshots ``indices`` of ``dataset``: the training snapshot at the same time
        whose parameters are nearest (encoded space), physical ``{name: (S, N, N[, 2])}``;
        ``None`` without a training split of >= 1 trajectory."""
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
        return self.physical(real)

    def score(self) -> dict[str, float] | None:
        """Score the EMA generator on (up to ``validation_samples``) snapshots of the
        validation split, twice with independent latents (:func:`two_draw_score`): the
        physics score of each draw against the reference snapshots, with the other draw
        and each snapshot's nearest training neighbour for the within-condition spread,
        and the change between consecutive times when the temporal pairs are trained.
        ``{"score": inf}`` when a generated value is not finite; ``None`` without a
        validation split."""
        dataset = self.data.splits.get("valid")
        if dataset is None:
            return None
        indices = self.validation_indices(dataset, self.config.validation_samples)
        real, condition = dataset.get_batch(indices)
        reference = self.physical(real)
        generated = self.generate(condition, self.config.seed + 7)
        # a second latent at every condition, and each reference snapshot's nearest
        # training neighbour at the same time: the within-condition spread
        second = self.generate(condition, self.config.seed + 8)
        neighbours = self.neighbour_snapshots(dataset, indices)
        increments = (self.increments(dataset, indices, reference, condition)
                      if self.temporal else None)
        ranks = {spec.name: spec.rank for spec in self.data.schema.fields}
        thirds = (range_thirds(condition.numpy()[:, :-1])
                  if self.config.score_range_thirds else None)
        sampled = [*generated.values(), *second.values(),
                   *(increments["generated"].values() if increments is not None else ())]
        if not all(np.all(np.isfinite(values)) for values in sampled):
            return {"score": math.inf}
        draws = []
        for first, other in ((generated, second), (second, generated)):
            pairs = None if neighbours is None else {"generated": other,
                                                     "reference": neighbours}
            draws.append(physics_score(reference, first, ranks, self.data.schema.box_size,
                                       pairs=pairs, increments=increments,
                                       sign_symmetric=self.sign_symmetric,
                                       thirds=thirds))
        return two_draw_score(*draws)

    def increments(self, dataset, indices: np.ndarray, reference: dict[str, np.ndarray],
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
        reference_b = self.physical(real_b)
        # one latent at t_i and t_i+1, fresh pixel noise per snapshot: a trajectory as
        # the training pairs and ``surrogate generate`` make it (the same pixel noise at
        # both times would understate the change the report measures)
        seed = self.config.seed + 9
        generated_a = self.generate(condition_a, seed)
        generated_b = self.generate(condition_b, seed, pixel_seed=seed + 1)
        for name in reference_a:
            sides["reference"][name] = reference_b[name] - reference_a[name]
            sides["generated"][name] = (generated_b[name].astype(np.float64)
                                        - generated_a[name])
        return sides
