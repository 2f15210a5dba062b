"""Helpers shared by the tests: comparing field-store files, broken copies of them, ageing a
run directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import torch

from surrogate.checkpoint import load_checkpoint

#: root attributes that record when and by which command a file was written
RUN_ATTRS = ("created", "command")


def file_contents(path: Path) -> dict[str, object]:
    """What "the same bytes" means for two field-store files.

    Every dataset (fields, parameters, seeds, split, completion flags, coordinates) as
    dtype, shape and raw bytes, and every attribute of every object, except the root's
    :data:`RUN_ATTRS` (the time and command line of the run) and the dimension-scale
    bookkeeping (``DIMENSION_LIST``, ``REFERENCE_LIST``: object references, checked by
    ``surrogate check``). Chunk placement inside the file may differ.
    """
    out: dict[str, object] = {}

    def attrs(name: str, obj) -> None:
        for key in obj.attrs:
            if key in ("DIMENSION_LIST", "REFERENCE_LIST") or (name == "/" and key in RUN_ATTRS):
                continue
            value = obj.attrs[key]
            out[f"{name}@{key}"] = repr(value.tolist() if isinstance(value, np.ndarray)
                                        else value)

    def visit(name: str, obj) -> None:
        attrs(name, obj)
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            out[name] = (str(obj.dtype), obj.shape, np.asarray(data).tobytes())

    with h5py.File(path, "r") as handle:
        attrs("/", handle)
        handle.visititems(visit)
    return out


def forget_option(run: Path, name: str) -> None:
    """Make ``run`` look written before the option ``name`` existed: drop it from the
    ``train`` settings of ``config.json`` where it is one and, for a model option, from
    its ``model`` settings and the ``model`` dict of both checkpoints."""
    import json

    from surrogate.checkpoint import load_checkpoint, save_checkpoint
    saved = json.loads((run / "config.json").read_text())
    saved["train"].pop(name, None)
    model_option = name in saved["model"]
    saved["model"].pop(name, None)
    (run / "config.json").write_text(json.dumps(saved))
    for checkpoint in ("last.pt", "best.pt") if model_option else ():
        state = load_checkpoint(run / "checkpoints" / checkpoint)
        del state["model"][name]
        save_checkpoint(run / "checkpoints" / checkpoint, state)


def modified_copy(source: Path, target: Path, transform) -> Path:
    """Copy the field-store file ``source`` to ``target`` and replace every field by
    ``transform(name, array (B, T, N, N[, 2]))`` (same dtype); returns ``target``."""
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as handle:
        for group in ("t0_fields", "t1_fields"):
            for name, dataset in handle[group].items():
                dataset[...] = transform(name, dataset[...]).astype(dataset.dtype)
    return target


def last_checkpoints_agree(run_a: Path, run_b: Path,
                           keys: tuple[str, ...] = ("generator", "discriminator",
                                                    "generator_ema")) -> tuple[dict, dict]:
    """Both runs' ``last.pt``, after asserting that their ``keys`` state dicts hold the same
    names and bit-identical tensors (e.g. a run trained straight and one resumed)."""
    a = load_checkpoint(run_a / "checkpoints" / "last.pt")
    b = load_checkpoint(run_b / "checkpoints" / "last.pt")
    for key in keys:
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    return a, b
