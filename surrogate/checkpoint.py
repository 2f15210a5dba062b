"""Checkpoints and run directories: state dicts + JSON, atomic writes, no pickled code.

A run directory (``surrogate train ... -o RUN``) holds::

    RUN/config.json             everything needed to rebuild the models and read data:
                                system, fields, model/training configs, normaliser,
                                condition encoder (plain JSON, no class paths)
    RUN/checkpoints/last.pt     state to resume from (models, EMA, optimisers, RNG, step)
    RUN/checkpoints/best.pt     EMA generator of the best validation score so far
    RUN/metrics.jsonl           one JSON line per logged step
    RUN/samples/*.png           sample grids and spectra during training

``.pt`` files are written with :func:`torch.save` and read with
``torch.load(weights_only=True)``: they hold only tensors, numbers, strings, lists and
dicts, so loading one can never execute code; a file that needs more (a crafted pickle)
is refused with a one-line error. Every write goes to a temporary file in the same
directory, is flushed to disk and then renamed over the target, so a crash leaves either
the old or the new file, never a torn one.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from simulators.messages import first_line
from simulators.store.writer import fsync_directory

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "atomic_write_bytes", "capture_rng_state",
           "load_checkpoint", "read_run_config", "restore_rng_state", "save_checkpoint",
           "write_run_config"]

#: version of the checkpoint dictionary layout
CHECKPOINT_FORMAT = 1
CONFIG_NAME = "config.json"
_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(ValueError):
    """A checkpoint or run directory that cannot be used (one-line message)."""


def atomic_write_bytes(path: str | os.PathLike, write) -> Path:
    """Write a file atomically: ``write(binary handle)`` into a temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)     # mkstemp creates 0600 files
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically save a dict of state dicts, tensors and plain values.

    Args:
        path: target ``.pt`` file.
        state: e.g. ``{"generator": G.state_dict(), "step": 1000, ...}``; only types that
            ``torch.load(weights_only=True)`` accepts (tensors, numbers, strings, lists,
            tuples, dicts).
    """
    payload = {"format": CHECKPOINT_FORMAT, **state}
    return atomic_write_bytes(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; refuse anything else.

    Raises:
        CheckpointError: missing file, not a torch file, a pickle that needs code
            (refused), or an unknown layout version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():      # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: refused: the file holds objects other than weights "
                              f"(only weights_only checkpoints load; "
                              f"{first_line(error, '', 120)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint "
                              f"({first_line(error, limit=160)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of this package (format "
                              f"{state.get('format') if isinstance(state, dict) else None!r}, "
                              f"expected {CHECKPOINT_FORMAT})")
    return state


def average_generator_states(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The EMA generators of several checkpoints of one run, averaged weight by weight.

    Floating-point tensors of ``generator_ema`` are the arithmetic mean over ``states``
    (computed in float64, stored in each tensor's dtype); integer buffers are the last
    state's. Every other entry (step, model, system) is the last state's; ``score`` is
    NaN (the average was never validated) and ``averaged_steps`` lists the steps.

    Raises:
        CheckpointError: no states, or generators of different shapes or names.
    """
    if not states:
        raise CheckpointError("no checkpoints to average")
    last = states[-1]["generator_ema"]
    if any(set(state["generator_ema"]) != set(last) for state in states):
        raise CheckpointError("checkpoints of different generators (other weight names): "
                              "only checkpoints of one run average")
    averaged = {}
    for name, tensor in last.items():
        tensors = [state["generator_ema"][name] for state in states]
        if any(t.shape != tensor.shape for t in tensors):
            raise CheckpointError(f"checkpoints of different generators ({name!r} differs): "
                                  f"only checkpoints of one run average")
        averaged[name] = (torch.stack([t.double() for t in tensors]).mean(0).to(tensor.dtype)
                          if tensor.is_floating_point() else tensor)
    return {**states[-1], "generator_ema": averaged, "score": float("nan"),
            "averaged_steps": [int(state.get("step", -1)) for state in states]}


def write_run_config(run_dir: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    """Write ``RUN/config.json`` atomically (plain JSON)."""
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_bytes(Path(run_dir) / CONFIG_NAME,
                              lambda handle: handle.write(text.encode()))


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``RUN/config.json``.

    Raises:
        CheckpointError: not a run directory or an unreadable config.
    """
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a training run directory (no {CONFIG_NAME})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return config


# ------------------------------------------------------------------ random state
def capture_rng_state(*generators: torch.Generator) -> dict[str, Any]:
    """Random states of torch's global CPU (and CUDA) generators and of ``generators``.

    Training draws every random number from torch generators (noise, data order,
    augmentation), so these states make a resumed run bit-identical on the CPU. They are
    tensors, so they survive ``weights_only`` loading.
    """
    state = {"torch": torch.get_rng_state(),
             "generators": [generator.get_state() for generator in generators]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any], *generators: torch.Generator) -> None:
    """Inverse of :func:`capture_rng_state` (same generators, same order)."""
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise CheckpointError(f"checkpoint holds {len(saved)} generator states, "
                              f"{len(generators)} expected")
    # states are CPU byte tensors; a checkpoint loaded with map_location="cuda" moved them
    torch.set_rng_state(state["torch"].cpu())
    for generator, generator_state in zip(generators, saved, strict=True):
        generator.set_state(generator_state.cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([value.cpu() for value in state["cuda"]])
