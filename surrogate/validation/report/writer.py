"""Writing a report: ``report.json``, ``report.md`` and the PNG figures, all or nothing
(and, when a utility result is given, its page in ``utility/``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from surrogate.jsonable import json_safe
from surrogate.staging import staged_directory

if TYPE_CHECKING:
    from surrogate.validation.report.engine import ValidationResult
    from surrogate.validation.utility import UtilityResult

__all__ = ["utility_section", "write_report"]

#: the utility page's folder inside a report directory
UTILITY_FOLDER = "utility"


def utility_section(utility: UtilityResult) -> dict[str, Any]:
    """The ``utility`` entry of ``report.json``: per swept parameter the utility scores
    (``rmse_real``, ``rmse_generated``, ``ratio``, coverages, ``prior_std``), the
    augmentation points, the counts and warnings, and where the full page is."""
    report = utility.report
    return json_safe({"parameters": report["parameters"],
                      "augmentation": report["augmentation"],
                      "counts": report["counts"], "warnings": report["warnings"],
                      "floor": report.get("floor"),
                      "page": f"{UTILITY_FOLDER}/utility.md"})


def _utility_markdown(section: dict[str, Any]) -> str:
    lines = ["", "## Utility: train on synthetic, test on real", "",
             "A regressor of the swept parameters trained on the reference (real) or on the "
             "generated fields, tested on held-out simulations (ratio = RMSE generated / "
             "RMSE real; 1 means the generated fields teach what the simulations do). "
             f"Details and figures: [{section['page']}]({section['page']}).", "",
             "| parameter | RMSE real | RMSE generated | ratio (floor) | 95 % coverage real / "
             "generated | prior std |", "|---|---:|---:|---:|---|---:|"]
    def number(value: Any) -> str:
        return "n/a" if value is None else format(value, ".3g")
    for name, scores in section["parameters"].items():
        # the floor: a regressor trained on a second simulation (--floor REF2), else n/a
        lines.append(f"| {name} | {number(scores['rmse_real'])} | "
                     f"{number(scores['rmse_generated'])} | {number(scores['ratio'])} "
                     f"({number(scores.get('ratio_floor'))}) | "
                     f"{number(scores['coverage95_real'])} / "
                     f"{number(scores['coverage95_generated'])} | "
                     f"{number(scores['prior_std'])} |")
    return "\n".join(lines) + "\n"


def write_report(result: ValidationResult, directory: str | os.PathLike,
                 utility: UtilityResult | None = None, *, figures: bool = True) -> Path:
    """Write ``report.json``, ``report.md`` and the PNG figures into ``directory``.

    With ``figures=False`` no PNG is drawn and ``report.md`` links none; ``report.json``
    is the same either way (drawing is most of a small validation's time).

    With ``utility`` (:func:`surrogate.validation.utility.utility_files` of the same
    reference and generated files and a held-out test file), ``report.json`` also holds
    a ``utility`` entry (:func:`utility_section`), ``report.md`` a utility table, and
    ``directory/utility/`` the utility page (``utility.json``, ``utility.md``, figures).

    Everything is first written into a temporary directory beside ``directory`` and
    then moved in entry by entry, so a failure while plotting leaves the previous report
    (if any) untouched and no partial report behind.

    Returns:
        The path of ``report.md``.
    """
    from surrogate.validation.plots import render_markdown, save_figures  # matplotlib: lazily

    report = result.report
    if utility is not None:
        report = {**report, "utility": utility_section(utility)}
    with staged_directory(directory) as staging:          # all or nothing
        drawn = save_figures(result, staging) if figures else {}
        (staging / "report.json").write_text(json.dumps(report, indent=1,
                                                        allow_nan=False) + "\n")
        markdown = render_markdown(result.report, drawn)
        if utility is not None:
            from surrogate.validation.utility import write_utility
            write_utility(utility, staging / UTILITY_FOLDER, figures=figures)
            markdown += _utility_markdown(report["utility"])
        (staging / "report.md").write_text(markdown)
    return Path(directory) / "report.md"
