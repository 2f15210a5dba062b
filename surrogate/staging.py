"""All-or-nothing output directories: write into a staging directory, then move in.

A report (``surrogate validate``) or a utility page (``surrogate utility``) is several
files (JSON, Markdown, figures). :func:`staged_directory` yields a temporary directory
beside the destination; when the block finishes, every entry in it is moved into the
destination (``os.replace``, atomic per entry on one file system; a sub-folder replaces
the destination's folder of that name) and the staging directory is removed. When the
block raises, the staging directory is removed and the destination is left as it was: a
failure while plotting leaves no partial output and does not touch a previous one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["staged_directory"]


@contextmanager
def staged_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Context manager: a staging directory whose files end up in ``directory``.

    Raises:
        ValueError: ``directory`` exists and is not a directory (before anything is
            written).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory}: exists and is not a directory")
    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        yield staging
        directory.mkdir(exist_ok=True)
        for item in sorted(staging.iterdir()):
            target = directory / item.name
            if item.is_dir() and target.is_dir():    # a folder of the output is replaced
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
