"""Writing a report: ``report.json``, ``report.md`` and the PNG figures, all or nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from surrogate.validation.report.engine import ValidationResult

__all__ = ["write_report"]


def write_report(result: ValidationResult, directory: str | os.PathLike) -> Path:
    """Write ``report.json``, ``report.md`` and the PNG figures into ``directory``.

    Everything is first written into a temporary directory beside ``directory`` and
    then moved in file by file, so a failure while plotting leaves the previous report
    (if any) untouched and no partial report behind.

    Returns:
        The path of ``report.md``.
    """
    from surrogate.validation.plots import render_markdown, save_figures  # matplotlib: lazily

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory}: exists and is not a directory")
    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        figures = save_figures(result, staging)
        (staging / "report.json").write_text(json.dumps(result.report, indent=1,
                                                        allow_nan=False) + "\n")
        (staging / "report.md").write_text(render_markdown(result.report, figures))
        directory.mkdir(exist_ok=True)
        for item in sorted(staging.iterdir()):
            os.replace(item, directory / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory / "report.md"
