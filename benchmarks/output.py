"""Where benchmark results go and how a results file is written."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "write_results"]

#: the folder of the committed results files
RESULTS = Path(__file__).resolve().parent / "results"


def write_results(output: Path, result: dict[str, Any], table: str,
                  json_default: Callable[[Any], Any] | None = None) -> None:
    """Write ``result`` to ``output`` (JSON, through a temporary file and a rename, so a
    killed run leaves the previous file whole) and ``table`` beside it (``.md``), then
    print the table and where both went. ``json_default`` as in :func:`json.dumps`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=1, allow_nan=False, default=json_default)
                         + "\n")
    os.replace(temporary, output)
    output.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {output} and {output.with_suffix('.md')}")
