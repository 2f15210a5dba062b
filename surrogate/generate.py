"""Checkpoint -> new field-store file at requested conditions (same schema as simulators).

``generate(run_dir, output, ...)`` rebuilds the generator from ``RUN/config.json`` and a
checkpoint's EMA weights (``best.pt`` by default), and writes trajectories in the
simulators' HDF5 layout, so ``surrogate check`` and ``surrogate validate`` read them like
simulator output. Conditions come either from ``parameters`` (one condition, ``n``
trajectories; parameters not given take the values the training data held fixed, or
the declared default) or from ``like`` (the parameters and times of every trajectory of
another file, ``n`` trajectories per condition).

A generated *trajectory* is one latent vector ``z`` decoded at every snapshot time of
the schema (condition = parameters + time), so its snapshots vary smoothly with time the
way the generator learned; per-pixel noise is fresh per snapshot. Latents are drawn in
trajectory order from ``torch.Generator().manual_seed(seed)``; the generator's per-pixel
noise comes from torch's global stream, reseeded before each generator call from
``(seed, index of the call's first trajectory)``. So the same seed, ``-n``, batch size
and device give the same bytes (a trajectory's pixel noise depends on the call it was
generated in), and any call can be redone alone: the root attribute ``seed`` records the
master seed and ``trajectory_seed`` each trajectory's index in the latent stream.

Trajectories are written as they are produced (memory does not depend on ``n``) into
``OUTPUT.partial``, renamed when complete. A killed job leaves only the partial file;
``resume=True`` (``surrogate generate ... --resume``) reopens it when it was written by
the same job (same run, checkpoint weights, conditions, ``n``, seed, batch size and
device: the ``resume_key`` attribute), skips the trajectories already written (drawing
their latents to keep the stream aligned, without running the generator) and gives the
same bytes as an uninterrupted run.

A sign-equivariant generator (a system declaring ``negate``, e.g. Ising) gets its global
signs from :func:`balanced_signs` instead of a coin per output: trajectories of one
condition, then the odd ones out of neighbouring conditions, are paired and a fair coin
gives the first of a pair +-1 and the second the opposite sign (per snapshot time for
``negate_each_snapshot``, per trajectory otherwise). Each output's sign is still +-1
with probability 1/2, and the two signs are exactly balanced over the job, over each
condition with an even number of trajectories and, to within two, over any range of
whole conditions (e.g. the ordered ones below a critical temperature), where
independent coins leave an imbalance of order sqrt(n). When the unsigned generator
orders its fields one way (a trained Ising generator's magnetisation has one sign
before ``s``), the generated ordered states are then as balanced as the simulator's
law, which the declared symmetry makes exactly balanced. The signs come from their own
stream of ``seed``, so they do not depend on the batch size.

Fields declared ``discrete_values`` (Ising spins) are snapped to their nearest allowed
value (:meth:`surrogate.constraints.OutputHeads.snap_discrete`): the generator trains on
a continuous relaxation, the files hold valid configurations.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simulators.messages import first_line
from simulators.store import (
    FieldStore,
    FieldStoreError,
    FieldStoreWriter,
    Provenance,
    StoreSchema,
    require_complete,
)
from surrogate.checkpoint import (
    CheckpointError,
    average_generator_states,
    load_checkpoint,
    read_run_config,
)
from surrogate.constraints import OutputHeads
from surrogate.data import ConditionEncoder, FieldNormalizer, to_store_layout
from surrogate.devices import check_threads, cpu_threads, full_precision, resolve_device
from surrogate.models import Generator, ModelConfig, same_model

__all__ = ["PRECISIONS", "SurrogateModel", "balanced_signs", "generate", "load_surrogate"]

#: arithmetic of the generator's forward at generation: float32, or bf16 autocast
PRECISIONS = ("fp32", "bf16")


class SurrogateModel:
    """A trained generator with its heads, normaliser and condition encoder.

    Attributes:
        schema: layout of the training data (system, fields, parameters, grid, times).
        run_id: first 12 hex digits of the SHA-256 of the run's config.json.
        step: training step of the loaded weights; checkpoint: its file name.
        precision: ``"fp32"`` or ``"bf16"``: the generator's forward under bf16 autocast
            (its normalisations, spectra and envelope stay float32, as in training; the
            output heads run in float32 after it). Faster on CPUs with native bf16 and
            on GPUs; what it costs in fidelity is measured in the README.
    """

    def __init__(self, run_dir: str | os.PathLike, checkpoint: str = "best",
                 device: str = "auto", precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {precision!r}")
        self.precision = precision
        run_dir = Path(run_dir)
        config = read_run_config(run_dir)
        try:
            self.schema = StoreSchema.from_dict(config["schema"])
            self.normalizer = FieldNormalizer.from_dict(config["normalizer"])
            self.encoder = ConditionEncoder.from_dict(config["condition_encoder"])
            self.model_config = ModelConfig.from_dict(config["model"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{run_dir}/config.json: incomplete or invalid run "
                                  f"configuration ({error})") from None
        self.system = config.get("system")
        self.data_ranges: dict[str, list[float]] = config.get("data_parameter_ranges", {})
        self.device = resolve_device(device)
        name = {"best": "best.pt", "last": "last.pt"}.get(checkpoint, checkpoint)
        path: Path | str = run_dir / "checkpoints" / name
        if name.startswith("average:"):
            state = _average_of_validated(run_dir, name, self.device)
            # errors name the averaged files, not a file called average:K
            path = f"{run_dir / 'checkpoints' / 'ema_step_*.pt'} ({name})"
        else:
            state = load_checkpoint(path, map_location=self.device)
        if state.get("system") != self.system:
            raise CheckpointError(f"{path}: checkpoint of system {state.get('system')!r}, "
                                  f"but the run is {self.system!r}")
        if not same_model(state.get("model"), self.model_config):
            raise CheckpointError(f"{path}: checkpoint's model differs from the run's "
                                  f"config.json (a checkpoint of another run?)")
        self.generator = Generator(self.model_config).to(self.device).eval()
        try:
            self.generator.load_state_dict(state["generator_ema"])
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"{path}: generator weights do not fit "
                                  f"({first_line(error, 'no generator weights', None)})"
                                  ) from None
        self.generator.requires_grad_(False)
        self.heads = OutputHeads.from_schema(self.schema, self.normalizer).to(self.device)
        self.step = int(state.get("step", -1))
        self.checkpoint = name
        self.run_id = hashlib.sha256((run_dir / "config.json").read_bytes()).hexdigest()[:12]

    @torch.no_grad()
    def sample(self, condition: np.ndarray, noise: torch.Tensor,
               sign: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        """Physical fields ``(B, C, N, N)`` float32 for conditions ``(B, P+1)``, latents (B, Z).

        ``sign``: (B,) of +-1, the global signs of a sign-equivariant generator
        (:func:`balanced_signs`); ``None`` draws one per output.
        """
        condition = torch.as_tensor(condition, device=self.device)
        if sign is not None:
            sign = torch.as_tensor(sign, device=self.device)
        with full_precision(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                              enabled=self.precision == "bf16"):
            # full precision: fields independent of TF32 flags; G returns float32
            raw = self.generator(noise.to(self.device), condition, sign=sign)
        return self.heads.snap_discrete(self.heads(raw, condition)).float().cpu().numpy()


def _average_of_validated(run_dir: Path, spec: str, device: torch.device) -> dict[str, Any]:
    """``average:K``: the mean weights of the last K validated EMA generators of a run
    trained with ``--keep-validated`` (``RUN/checkpoints/ema_step_*.pt``)."""
    text = spec.removeprefix("average:")
    count = int(text) if text.isdigit() else 0
    if count < 2:
        raise CheckpointError(f"--checkpoint {spec}: expected average:K with an integer "
                              f"K >= 2 (the last K validated generators)")
    # in step order (numerically: the 6-digit names stop sorting as text past 999,999)
    steps = {path: path.stem.removeprefix("ema_step_")
             for path in (run_dir / "checkpoints").glob("ema_step_*.pt")}
    kept = sorted((path for path, step in steps.items() if step.isdigit()),
                  key=lambda path: int(steps[path]))
    if len(kept) < count:
        raise CheckpointError(f"--checkpoint {spec}: {run_dir} keeps {len(kept)} validated "
                              f"generators (ema_step_*.pt); average:K needs K of them "
                              f"(train with --keep-validated)")
    return average_generator_states([load_checkpoint(path, map_location=device)
                                     for path in kept[-count:]])


def load_surrogate(run_dir: str | os.PathLike, checkpoint: str = "best",
                   device: str = "auto", precision: str = "fp32") -> SurrogateModel:
    """Load a trained surrogate from a run directory (see :class:`SurrogateModel`)."""
    return SurrogateModel(run_dir, checkpoint, device, precision)


def _conditions_from_settings(model: SurrogateModel, settings: Mapping[str, float], n: int
                              ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    names = [p.name for p in model.schema.parameters]
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for "
                         f"{model.system} (parameters: {', '.join(names)})")
    values = {}
    for parameter in model.schema.parameters:
        if parameter.name in settings:
            value = parameter.check(settings[parameter.name])
        else:
            low, high = model.data_ranges.get(parameter.name, (parameter.default,) * 2)
            value = low if low == high else parameter.default
        values[parameter.name] = np.full(n, float(value))
    return values, np.asarray(model.schema.times, dtype=np.float64)


def _conditions_like(model: SurrogateModel, like: str | os.PathLike, n: int,
                     split: str | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    with FieldStore(like) as store:
        require_complete(store, like)
        if store.system != model.system:
            raise FieldStoreError(f"{like}: system {store.system!r} differs from the "
                                  f"surrogate's {model.system!r}")
        if store.field_names != [spec.name for spec in model.schema.fields]:
            raise FieldStoreError(f"{like}: fields {store.field_names} differ from the "
                                  f"surrogate's {[s.name for s in model.schema.fields]}")
        if store.resolution != model.schema.resolution:
            raise FieldStoreError(f"{like}: resolution {store.resolution} differs from the "
                                  f"surrogate's {model.schema.resolution}")
        parameters = store.parameters()
        times = np.asarray(store.times, dtype=np.float64)
        selected = np.arange(store.n_trajectories)
        if split is not None:
            codes = {"train": 0, "valid": 1, "test": 2}
            if split not in codes:
                raise ValueError(f"unknown split {split!r} (train, valid or test)")
            selected = np.flatnonzero(store.split == codes[split])
            if selected.size == 0:
                raise FieldStoreError(f"{like}: no trajectory in the {split} split")
    return ({name: np.repeat(values[selected], n) for name, values in parameters.items()},
            times)


def _warn_extrapolation(model: SurrogateModel, parameters: Mapping[str, np.ndarray]) -> None:
    for name, values in parameters.items():
        low, high = model.data_ranges.get(name, (-math.inf, math.inf))
        slack = 1e-9 * max(abs(low), abs(high), 1e-300)
        outside = (values < low - slack) | (values > high + slack)
        if np.any(outside):
            print(f"surrogate: warning: {name} = {values[outside][0]:g} lies outside the "
                  f"training data's range [{low:g}, {high:g}] (extrapolation)", file=sys.stderr)


def generate(run_dir: str | os.PathLike, output: str | os.PathLike, *,
             parameters: Mapping[str, float] | None = None, like: str | os.PathLike | None = None,
             n: int | None = None, seed: int = 0, checkpoint: str = "best",
             device: str = "auto", batch_size: int = 64, split: str | None = None,
             overwrite: bool = False, resume: bool = False, progress: bool = False,
             threads: int | None = None, precision: str = "fp32") -> Path:
    """Generate a field-store file from a trained run (see the module docstring).

    Args:
        run_dir: training run directory.
        output: new ``.h5`` file.
        parameters: ``{name: value}`` for one condition (with ``n`` trajectories,
            default 16); mutually exclusive with ``like``.
        like: a field-store file whose trajectories' parameters and times are reused
            (``n`` trajectories per condition, default 1; ``split`` restricts to
            ``"train"``, ``"valid"`` or ``"test"`` trajectories).
        seed: master seed of the latents and pixel noise.
        checkpoint: ``"best"``, ``"last"``, a file name in ``RUN/checkpoints`` or
            ``"average:K"``: the weights of the last K validated EMA generators averaged
            (a run trained with ``keep_validated``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        batch_size: snapshots per generator call.
        overwrite: replace an existing ``output``.
        resume: continue ``OUTPUT.partial`` left by a killed run of the same job (without
            it, a partial file is replaced); the result has the same bytes as an
            uninterrupted run.
        progress: tqdm progress bar.
        threads: torch CPU threads of the generator calls (``None``: torch's default, one
            per core; on shared or busy cores one is often faster); the caller's count is
            restored afterwards. The fields do not depend on it beyond float round-off.
        precision: ``"fp32"`` (default) or ``"bf16"`` (:class:`SurrogateModel`); recorded
            in the file's ``generator_precision`` attribute.
    Returns:
        The written path.
    Raises:
        ValueError: bad options, unknown parameters or values outside the declared
            ranges, a ``like`` file of another system/fields/grid, an unusable run or
            checkpoint (:class:`surrogate.checkpoint.CheckpointError`), a partial file of
            another job with ``resume``.
    """
    if like is not None and parameters:
        raise ValueError("give either --set parameters or --like FILE, not both")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"-n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    check_threads(threads)
    model = load_surrogate(run_dir, checkpoint, device, precision)
    if like is not None:
        values, times = _conditions_like(model, like, n or 1, split)
    else:
        values, times = _conditions_from_settings(model, parameters or {}, n or 16)
    count = len(next(iter(values.values())))
    n_times = times.size
    # every condition and time is checked before the output file is created
    table = np.stack([values[p.name] for p in model.schema.parameters], axis=1)   # (count, P)
    rows = np.unique(table, axis=0)
    try:
        model.encoder.encode({p.name: np.repeat(rows[:, i], n_times)
                              for i, p in enumerate(model.schema.parameters)},
                             np.tile(times, rows.shape[0]))
    except ValueError as error:
        if like is None:
            raise
        raise ValueError(f"{like}: {error}") from None
    _warn_extrapolation(model, values)     # only once the conditions are accepted
    schema = StoreSchema(system=model.schema.system, parameters=model.schema.parameters,
                         fields=model.schema.fields, invariants=model.schema.invariants,
                         times=times, resolution=model.schema.resolution,
                         box_size=model.schema.box_size, time_units=model.schema.time_units,
                         length_units=model.schema.length_units,
                         dataset_name=f"{model.schema.dataset_name}_surrogate")
    extra = {"generator_run_id": model.run_id, "generator_checkpoint": model.checkpoint,
             "generator_step": model.step, "generator_system": model.system,
             "generator_precision": model.precision}
    per_call = max(1, batch_size // n_times)
    key = _resume_key(model, values, times, count, seed, per_call)
    latents = torch.Generator().manual_seed(seed)
    signs = None
    if model.model_config.negate:
        signs = balanced_signs(table, n_times if model.model_config.negate_each_snapshot
                               else 1, seed)
        signs = np.broadcast_to(signs, (count, n_times))
    bar = None
    devices = [model.device] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), cpu_threads(threads), FieldStoreWriter(
                output, schema, count, Provenance("surrogate.generate", seed=seed),
                overwrite=overwrite, resume=resume, resume_key=key,
                extra_attrs=extra) as writer:
            if progress:
                from tqdm.auto import tqdm
                bar = tqdm(total=count, initial=count - len(writer.pending), unit="traj",
                           desc="generate", dynamic_ncols=True)
            for start in range(0, count, per_call):
                stop = min(start + per_call, count)
                # drawn even for a call already written: the stream stays aligned
                noise = torch.randn(stop - start, model.model_config.noise_dim,
                                    generator=latents)
                if writer.completed[start:stop].all():
                    continue
                torch.manual_seed(_call_seed(seed, start))
                chunk = {name: np.repeat(v[start:stop], n_times) for name, v in values.items()}
                condition = model.encoder.encode(chunk, np.tile(times, stop - start))
                sign = None if signs is None else np.array(signs[start:stop]).reshape(-1)
                fields = model.sample(condition, noise.repeat_interleave(n_times, dim=0), sign)
                fields = fields.reshape(stop - start, n_times, *fields.shape[1:])
                for offset in range(stop - start):
                    index = start + offset
                    if writer.completed[index]:
                        continue
                    writer.write(index, {name: float(v[index]) for name, v in values.items()},
                                 to_store_layout(fields[offset], schema.fields), seed=index)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return Path(output)


def balanced_signs(conditions: np.ndarray, columns: int, seed: int) -> np.ndarray:
    """Global signs of a sign-equivariant generator, balanced over a generation job.

    The trajectories are grouped by condition and the conditions ordered
    lexicographically over the parameters. Within a condition consecutive trajectories
    are paired; the one left over by each condition with an odd count is paired with the
    next such one in condition order. For each pair and column a fair coin gives the
    first trajectory ``s = +-1`` and the second ``-s`` (a last unpaired one keeps its
    coin). Every entry is +-1 with probability 1/2; every column sums to 0 (+-1 for an
    odd count), so does every condition with an even number of trajectories, and every
    range of whole conditions to within +-2 (+-1 for a range from the lowest condition).

    Args:
        conditions: (n, P) parameter values of each trajectory (P may be 0).
        columns: signs per trajectory (snapshot times for ``negate_each_snapshot``, else 1).
        seed: the job's master seed (the signs have their own stream of it).
    Returns:
        (n, columns) float32 of +-1.
    """
    conditions = np.asarray(conditions, dtype=np.float64).reshape(len(conditions), -1)
    count = conditions.shape[0]
    order = (np.lexsort(conditions.T[::-1]) if conditions.shape[1] else np.arange(count))
    ranked = conditions[order]
    first = np.ones(count, dtype=bool)               # first trajectory of its condition
    first[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, count))
    rank = np.arange(count) - starts[group]
    leftover = (sizes[group] % 2 == 1) & (rank == sizes[group] - 1)
    # pairs within conditions first (never straddling one), then the leftovers'
    inner = np.cumsum(~leftover) - 1
    outer = np.cumsum(leftover) - 1
    n_inner = int(np.count_nonzero(~leftover)) // 2
    pair = np.where(leftover, n_inner + outer // 2, inner // 2)
    second = np.where(leftover, outer % 2, inner % 2) == 1
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5167]))
    coins = rng.integers(0, 2, size=(n_inner + (int(leftover.sum()) + 1) // 2, columns)) * 2 - 1
    signs = np.empty((count, columns), dtype=np.float32)
    signs[order] = coins[pair] * np.where(second, -1, 1)[:, None]
    return signs


def _call_seed(seed: int, start: int) -> int:
    """Seed of the pixel noise of the generator call whose first trajectory is ``start``."""
    state = np.random.SeedSequence([seed, 0x6E4E, start]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def _resume_key(model: SurrogateModel, values: Mapping[str, np.ndarray], times: np.ndarray,
                count: int, seed: int, per_call: int) -> str:
    """JSON identity of a generation job: a partial file is resumed only by the same job."""
    weights = hashlib.sha256()
    for name, tensor in sorted(model.generator.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    conditions = hashlib.sha256(np.asarray(times, dtype=np.float64).tobytes())
    for name in sorted(values):
        conditions.update(name.encode())
        conditions.update(np.asarray(values[name], dtype=np.float64).tobytes())
    return json.dumps({"job": "surrogate.generate", "run_id": model.run_id,
                       "checkpoint": model.checkpoint, "step": model.step,
                       "weights": weights.hexdigest(), "conditions": conditions.hexdigest(),
                       "n": count, "seed": seed, "trajectories_per_call": per_call,
                       "device": model.device.type,
                       **({"precision": "bf16"} if model.precision == "bf16" else {}),
                       **({"signs": "balanced"} if model.model_config.negate else {})},
                      sort_keys=True)
