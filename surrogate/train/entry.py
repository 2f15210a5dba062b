"""Entry points: :func:`train` (one run, new or resumed) and :func:`train_restarts`
(K seeds on the same split, keep the best-scored)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from surrogate.checkpoint import (
    CheckpointError,
    read_run_config,
    write_run_config,
)
from surrogate.train.config import TrainConfig
from surrogate.train.trainer import Trainer


def _integer_in(value: Any, low: int, high: float = math.inf) -> bool:
    """``value`` is an ``int`` (not a ``bool``) with ``low <= value <= high``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def train(data_path: str | os.PathLike, run_dir: str | os.PathLike,
          config: TrainConfig | None = None, *, device: str = "auto", resume: bool = False,
          overwrite: bool = False, progress: bool = True, steps: int | None = None,
          stop_at: int | None = None) -> dict[str, Any]:
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
        stop_at: stop at this step and save ``last.pt`` (the run keeps its total
            ``steps``, so that ``resume`` continues it exactly as if it had not stopped).
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
            # runs written before an option existed trained without it
            config = TrainConfig.from_dict({"temporal_weight": 0.0, "sign_equivariant": False,
                                            "shift_equivariant": False,
                                            "neighbour_batches": False,
                                            "ensemble_weight": 0.0,
                                            "ensemble_spread_target": 0.0,
                                            "spectral_envelope": False, "budget_weight": 0.0,
                                            "straight_through": False,
                                            "average_checkpoints": 0,
                                            "score_range_thirds": False,
                                            "template_weight": 0.0,
                                            "spectral_scatter_weight": 0.0,
                                            "spectral_bias_weight": 0.0,
                                            "spectral_bias_space": "log",
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
    if stop_at is not None and not _integer_in(stop_at, 1):
        raise ValueError(f"stop_at must be a positive integer, got {stop_at!r}")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir}: exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(data_path, run_dir, config, device=device, resume=resume,
                      progress=progress)
    if resume and trainer.step > config.steps:
        raise ValueError(f"{run_dir}: the run is already at step {trainer.step}; --steps "
                         f"{config.steps} would go back")
    if stop_at is not None and trainer.step >= stop_at:
        raise ValueError(f"{run_dir}: the run is already at step {trainer.step}; stopping at "
                         f"step {stop_at} would train nothing")
    if not resume and overwrite and existing:     # stale files go once the new run started
        if trainer.ddp.main:
            for name in ("metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
                (run_dir / name).unlink(missing_ok=True)
            for picture in (run_dir / "samples").glob("step_*.png"):
                picture.unlink()
            for kept in (run_dir / "checkpoints").glob("ema_step_*.pt"):
                kept.unlink()
    if resume and steps is not None:
        if trainer.ddp.main:
            saved = read_run_config(run_dir)
            saved["train"] = config.to_dict()
            write_run_config(run_dir, saved)
    return trainer.run(stop_at=stop_at)


def train_restarts(data_path: str | os.PathLike, run_dir: str | os.PathLike,
                   config: TrainConfig | None = None, restarts: int = 2, *,
                   device: str = "auto", overwrite: bool = False, progress: bool = True,
                   screen_steps: int | None = None) -> dict[str, Any]:
    """Train ``restarts`` runs that differ only in their seed; keep the best-scored one.

    Run ``k`` trains with seed ``config.seed + k`` on the same file and the same split
    into ``RUN/restarts/seed_<seed>/``; the kept run is the one with the lowest best
    validation score (the held-out ``valid`` split, :func:`physics_score`), and ``RUN``
    itself becomes a copy of it (``config.json``, ``metrics.jsonl``, ``checkpoints/``,
    ``samples/``), so ``surrogate generate RUN`` uses it as any run.
    ``RUN/restarts.json`` lists every seed's best score and step and the kept seed. One
    GAN training is one draw from a wide distribution; ``K`` restarts cost ``K`` trainings
    and keep the best draw as the validation split sees it.

    With ``screen_steps = S`` every seed trains only its first ``S`` steps (the learning
    rate schedule of the full run, :meth:`Trainer.run` ``stop_at``); the seed with the
    best validation score so far is resumed to ``config.steps`` and kept, the others stay
    at step ``S`` (resumable). The cost falls from ``K`` trainings to ``K S / steps + 1 -
    S / steps`` of one (3 seeds screened at a quarter: 1.5); the kept run equals that
    seed trained straight. A training that goes wrong early (a generator that collapsed
    to one pattern scored 2-5x worse than the other seeds from its first validation on)
    is dropped for the price of its first ``S`` steps; differences that appear later are
    not seen.

    Raises:
        ValueError: ``restarts`` is not a positive integer, ``screen_steps`` is not
            between ``config.validate_every`` and ``config.steps - 1``, or ``RUN`` holds a
            run and ``overwrite`` is off (plus everything :func:`train` raises).
    """
    import shutil
    if not _integer_in(restarts, 1):
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists() and not overwrite:
        raise ValueError(f"{run_dir}: a training run already exists (use --overwrite to "
                         f"replace it)")
    config = config or TrainConfig()
    if screen_steps is not None and not _integer_in(screen_steps, config.validate_every,
                                                      config.steps - 1):
        raise ValueError(f"screen_steps must be an integer from validate_every "
                         f"({config.validate_every}) to steps - 1 ({config.steps - 1}), so "
                         f"that every seed is validated before the choice; got "
                         f"{screen_steps!r}")
    runs = []
    for k in range(restarts):
        seed = config.seed + k
        summary = train(data_path, run_dir / "restarts" / f"seed_{seed}",
                        dataclasses.replace(config, seed=seed), device=device,
                        overwrite=True, progress=progress, stop_at=screen_steps)
        runs.append({"seed": seed, "best_score": summary["best_score"],
                     "best_step": summary["best_step"], "seconds": summary["seconds"],
                     "score_noise_median": summary["score_noise_median"],
                     "steps": summary["steps"], "summary": summary})

    def sort_key(entry: dict[str, Any]) -> float:
        score = entry["best_score"]
        return math.inf if score is None or not math.isfinite(score) else score

    kept = min(runs, key=sort_key)
    if screen_steps is not None:
        for entry in runs:
            entry["screen_score"], entry["screen_step"] = entry["best_score"], entry["best_step"]
        summary = train(data_path, run_dir / "restarts" / f"seed_{kept['seed']}",
                        resume=True, device=device, progress=progress)
        seconds = kept["seconds"] + summary["seconds"]
        summary = {**summary, "seconds": seconds, "steps_this_run": summary["steps"],
                   "images_per_second": (summary["steps"] * config.batch_size / seconds
                                         if seconds else 0.0)}
        kept.update({"best_score": summary["best_score"], "best_step": summary["best_step"],
                     "seconds": seconds, "score_noise_median": summary["score_noise_median"],
                     "steps": summary["steps"], "summary": summary})
    fields = ("seed", "steps", "best_score", "best_step", "seconds", "score_noise_median")
    records = [{key: entry[key] for key in fields
                + (("screen_score", "screen_step") if screen_steps is not None else ())}
               for entry in runs]
    total_seconds = sum(entry["seconds"] for entry in runs)
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
        from surrogate.jsonable import json_safe
        listing = {"kept_seed": kept["seed"], "screen_steps": screen_steps,
                   "seconds": total_seconds, "restarts": records}
        (run_dir / "restarts.json").write_text(json.dumps(json_safe(listing), indent=1) + "\n")
    return {**kept["summary"], "run_dir": str(run_dir), "kept_seed": kept["seed"],
            "screen_steps": screen_steps, "restarts": records,
            "restarts_seconds": total_seconds}
