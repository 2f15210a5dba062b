"""Writing the utility report: ``utility.json``, ``utility.md`` and its figures, all or nothing.

Figures (matplotlib, Agg backend):

* ``utility_predictions.png``: predicted against true encoded value per swept parameter
  (one row each), for the regressor trained on simulations, the one trained on
  generated fields and, with a floor, the one trained on the second simulations (first
  seed), with the predicted 95 % interval as error bars and the diagonal;
* ``utility_augmentation.png``: test RMSE against the fraction of real training
  trajectories, alone and with the generated fields added, ``prior_std`` dashed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from surrogate.jsonable import json_safe
from surrogate.staging import staged_directory
from surrogate.validation.utility.scores import Z95, UtilityResult

__all__ = ["render_markdown", "save_figures", "write_utility"]

TRAININGS = (("real", "trained on simulations (TRTR)", "black"),
             ("generated", "trained on generated fields (TSTR)", "tab:red"),
             ("floor", "trained on second simulations (floor)", "tab:blue"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _predictions_figure(result: UtilityResult, directory: Path) -> str:
    plt = _pyplot()
    names = list(result.report["parameters"])
    trainings = [training for training in TRAININGS if training[0] in result.predictions]
    fig, axes = plt.subplots(len(names), len(trainings),
                             figsize=(4.2 * len(trainings), 4.0 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for column, (key, label, colour) in enumerate(trainings):
            axis = axes[row, column]
            targets, mean, std = (array[:, row] for array in result.predictions[key])
            axis.errorbar(targets, mean, yerr=Z95 * std, fmt="o", markersize=3, color=colour,
                          ecolor=colour, alpha=0.6, elinewidth=0.6)
            axis.plot([-1, 1], [-1, 1], color="grey", linewidth=0.8)
            axis.set_xlim(-1.05, 1.05)
            axis.set_xlabel(f"true {name} (encoded)")
            axis.set_ylabel(f"predicted {name} (95 % interval)")
            scores = result.report["parameters"][name]
            axis.set_title(f"{label}\nRMSE {scores['rmse_' + key]:.3g}, "
                           f"95 % coverage {scores['coverage95_' + key]:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(directory / "utility_predictions.png", dpi=110)
    plt.close(fig)
    return "utility_predictions.png"


def _augmentation_figure(report: Mapping[str, Any], directory: Path) -> str | None:
    curves = report["augmentation"]
    if not curves or not next(iter(curves.values())):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.6), squeeze=False)
    for axis, (name, points) in zip(axes[0], curves.items(), strict=True):
        fractions = [point["fraction"] for point in points]
        axis.plot(fractions, [p["rmse_real_only"] for p in points], "o-", color="black",
                  label="simulations only")
        axis.plot(fractions, [p["rmse_with_generated"] for p in points], "s--",
                  color="tab:red", label="simulations + generated")
        axis.axhline(report["parameters"][name]["prior_std"], color="grey", linestyle=":",
                     label="prior std (learned nothing)")
        axis.set_xscale("log")
        axis.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
        axis.set_xlabel("fraction of the real training trajectories")
        axis.set_ylabel(f"test RMSE of {name} (encoded)")
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(directory / "utility_augmentation.png", dpi=110)
    plt.close(fig)
    return "utility_augmentation.png"


def save_figures(result: UtilityResult, directory: str | os.PathLike) -> dict[str, str]:
    """Write the figures into ``directory``; ``{figure: file name}``."""
    directory = Path(directory)
    figures = {"predictions": _predictions_figure(result, directory)}
    augmentation = _augmentation_figure(result.report, directory)
    if augmentation:
        figures["augmentation"] = augmentation
    return figures


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3g}"


def _values(value: Any) -> str:
    """One number, or a list of them joined by " / "."""
    return " / ".join(map(_number, value)) if isinstance(value, list) else _number(value)


def render_markdown(report: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """``utility.md``: the tables of ``report`` and the figures."""
    counts = report["counts"]
    lines = [f"# Utility of {report['generated']}: train on synthetic, test on real", "",
             f"System `{report['system']}`. A CNN regressor infers "
             + ", ".join(f"`{name}`" for name in report["parameters"])
             + " from one snapshot and its time, encoded over the declared range to "
               "[-1, 1] (log space for a log-scaled parameter), with a Gaussian error bar. "
               f"Trained on {counts['real_trajectories']} simulated trajectories "
               f"(`{report['train_real']}`) or {counts['generated_trajectories']} generated "
               f"ones, tested on {counts['test_trajectories']} held-out simulated "
               f"trajectories (`{report['test']}`, {counts['test_snapshots']} snapshots); "
               f"{report['regressor']['steps']} steps each, seeds "
               f"{', '.join(map(str, report['seeds']))} (numbers: means over seeds).", ""]
    for warning in report.get("warnings", []):
        lines += [f"**Warning**: {warning}.", ""]
    floor = report.get("floor") is not None
    bracket, also = (" (floor)", " / floor") if floor else ("", "")
    lines += [f"| parameter | RMSE real | RMSE generated | ratio{bracket} | ratio per seed"
              f"{bracket} | 68 % coverage real / gen{also} | 95 % coverage real / gen{also} "
              f"| prior std |", "|---|---:|---:|---:|---|---|---|---:|"]
    for name, s in report["parameters"].items():
        def cell(key: str, scores: Mapping[str, Any] = s) -> str:
            text = _values(scores[key])
            return f"{text} ({_values(scores[key.replace('ratio', 'ratio_floor', 1)])})" \
                if floor else text
        coverages = [" / ".join(_number(s[f"coverage{level}_{kind}"])
                                for kind in ("real", "generated", "floor")[:2 + floor])
                     for level in (68, 95)]
        lines.append(f"| {name} | {_number(s['rmse_real'])} | {_number(s['rmse_generated'])} "
                     f"| {cell('ratio')} | {cell('ratio_per_seed')} | {coverages[0]} "
                     f"| {coverages[1]} | {_number(s['prior_std'])} |")
    lines += ["", "ratio = RMSE generated / RMSE real: 1 when generated fields teach the "
              "regressor what simulations do; the spread of the ratio per seed is the "
              "regressor's own training noise"
              + ("; the floor (in brackets) is the ratio of a regressor trained on a "
                 f"second simulation of the training conditions (`{report['floor']}`), "
                 "what a perfect surrogate would read" if floor else "")
              + "; prior std is the RMSE of a regressor that learned nothing. Nominal "
              "coverages: 0.68 and 0.95.", ""]
    if "predictions" in figures:
        lines += [f"![predicted against true]({figures['predictions']})", ""]
    if "augmentation" in figures:
        lines += ["## Augmentation", "",
                  "| parameter | fraction | real trajectories | RMSE simulations only "
                  "| RMSE + generated |", "|---|---:|---:|---:|---:|"]
        for name, points in report["augmentation"].items():
            for p in points:
                lines.append(f"| {name} | {p['fraction']:.0%} | {p['real_trajectories']} | "
                             f"{_number(p['rmse_real_only'])} | "
                             f"{_number(p['rmse_with_generated'])} |")
        lines += ["", f"![augmentation curve]({figures['augmentation']})", ""]
    return "\n".join(lines)


def write_utility(result: UtilityResult, directory: str | os.PathLike, *,
                  figures: bool = True) -> Path:
    """Write ``utility.json``, ``utility.md`` and the figures into ``directory``
    (``figures=False``: no PNG, and ``utility.md`` links none).

    Everything is first written into a temporary directory beside ``directory`` and then
    moved in file by file, so a failure while plotting leaves the previous files (if
    any) untouched and nothing partial behind.

    Returns:
        The path of ``utility.md``.
    """
    with staged_directory(directory) as staging:          # all or nothing
        drawn = save_figures(result, staging) if figures else {}
        report = json_safe(result.report)
        (staging / "utility.json").write_text(json.dumps(report, indent=1, allow_nan=False)
                                              + "\n")
        (staging / "utility.md").write_text(render_markdown(report, drawn))
    return Path(directory) / "utility.md"
