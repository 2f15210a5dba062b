"""Writing a report: ``report.json``, ``report.md`` and the PNG figures, all or nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from surrogate.staging import staged_directory

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

    with staged_directory(directory) as staging:          # all or nothing
        figures = save_figures(result, staging)
        (staging / "report.json").write_text(json.dumps(result.report, indent=1,
                                                        allow_nan=False) + "\n")
        (staging / "report.md").write_text(render_markdown(result.report, figures))
    return Path(directory) / "report.md"
