"""A run directory's files besides the checkpoints: what ``config.json`` holds, the
``metrics.jsonl`` log (reading it, and cutting it back to a checkpoint on resume), and
the check that a directory is a run this version can resume.

Layout of a run directory ``RUN/``: ``config.json`` (:func:`run_config`),
``metrics.jsonl`` (one JSON object per logged step), ``checkpoints/last.pt`` and
``best.pt`` (:mod:`surrogate.checkpoint`), ``samples/step_NNNNNN.png``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simulators.store import FieldStore
from surrogate.checkpoint import CheckpointError
from surrogate.data import TrainingData
from surrogate.models import ModelConfig
from surrogate.train.config import RUN_FORMAT, TrainConfig

__all__ = ["check_run_format", "read_metrics", "run_config", "truncate_metrics"]


def run_config(data: TrainingData, config: TrainConfig, model_config: ModelConfig
               ) -> dict[str, Any]:
    """The contents of ``RUN/config.json``: format version, system, the training file's
    parameter ranges, fields, path and schema, the training and model options, and the
    normaliser and condition encoder (everything generation needs besides weights)."""
    with FieldStore(data.path) as store:
        ranges = {name: [float(values.min()), float(values.max())]
                  for name, values in store.parameters().items()}
    return {"format": RUN_FORMAT, "system": data.schema.system,
            "data_parameter_ranges": ranges,
            "fields": [spec.name for spec in data.schema.fields],
            "data": str(data.path), "schema": data.schema.to_dict(),
            "train": config.to_dict(), "model": model_config.to_dict(),
            "normalizer": data.normalizer.to_dict(),
            "condition_encoder": data.encoder.to_dict()}


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (one JSON object per line; a line that
    does not parse, e.g. cut short by a killed run, is skipped; no file: no records)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: Path, step: int) -> None:
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


def check_run_format(config: Mapping[str, Any], run_dir: Path) -> None:
    """Raise :class:`CheckpointError` unless ``config`` (a run's ``config.json``) has this
    version's format and every key a resume needs."""
    if config.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{run_dir}: run format {config.get('format')!r} is not "
                              f"{RUN_FORMAT}")
    missing = [key for key in ("system", "train", "model", "normalizer", "condition_encoder",
                               "schema") if key not in config]
    if missing:
        raise CheckpointError(f"{run_dir}/config.json: missing {', '.join(missing)}")
