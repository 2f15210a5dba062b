"""Figures and the Markdown page of a validation report (matplotlib, Agg backend).

Every figure is drawn from the JSON report (plus the sample fields kept in memory), so a
script can redraw them from ``report.json`` alone except the sample panels:

* ``spectra.png``: reference and generated power spectra on log-log axes, their ratio
  below (the shaded band is the spectrum threshold; unresolved shells are greyed out)
  and, where both files hold >= 2 trajectories per condition, the within-condition std
  of one snapshot's log shell power of each (the spectrum scatter);
* ``pdfs.png``: one-point PDFs (log density);
* ``samples.png``: reference and generated snapshots side by side at the same
  condition and time, one colour scale per field (vector fields shown as ``|u|``);
* ``conservation.png``: invariant series over time (mean over trajectories with the
  min-max envelope), divergence on a log axis;
* ``two_point.png``: correlation functions and Minkowski functionals over thresholds;
* ``per_condition.png``: spectrum error (with its floor dashed where the report has one),
  W1/std and spread ratio against the parameter
  that varies most across conditions;
* ``range.png``: the spectrum ratio ``P_gen / P_ref`` in each third of every swept
  parameter's range (the report's ``range`` entry), one row per parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["render_markdown", "save_figures"]

REFERENCE_STYLE = {"color": "black", "label": "reference"}
GENERATED_STYLE = {"color": "tab:red", "label": "generated", "linestyle": "--"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _array(values: Any) -> np.ndarray:
    """JSON list (``None`` for NaN) -> float array."""
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _save(fig, directory: Path, name: str) -> str:
    fig.savefig(directory / name, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return name


def _spectra_figure(report: Mapping[str, Any], directory: Path) -> str:
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    fields = report["fields"]
    threshold = report["thresholds"].get("spectrum_rel_error_median") or math.inf
    has_scatter = any("reference_std" in entry["spectrum"].get("scatter", {})
                      for entry in fields.values())
    heights = [3, 1.4, 1.4] if has_scatter else [3, 1.4]
    fig, axes = plt.subplots(len(heights), len(fields),
                             figsize=(4.2 * len(fields), 0.4 + 2.6 * len(heights)),
                             squeeze=False, sharex="col", gridspec_kw={"height_ratios": heights})
    for column, (name, entry) in enumerate(fields.items()):
        spectrum = entry["spectrum"]
        k = _array(spectrum["k"])
        ref, gen = _array(spectrum["reference"]), _array(spectrum["generated"])
        k_max = spectrum.get("k_resolved_max") or k.max()
        top, bottom = axes[0, column], axes[1, column]
        top.loglog(k, ref, **REFERENCE_STYLE)
        top.loglog(k, gen, **GENERATED_STYLE)
        top.axvspan(k_max * 1.0001, k.max() * 1.05, color="0.9", zorder=0)
        median = spectrum.get("rel_error_median")
        top.set_title(f"{name}: median |rel err| = "
                      + ("n/a" if median is None else f"{median:.3f}"))
        top.set_ylabel("P(k)")
        top.legend(frameon=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = gen / ref
        bottom.semilogx(k, ratio, color="tab:red")
        bottom.axhline(1.0, color="black", linewidth=0.8)
        if math.isfinite(threshold):
            bottom.axhspan(1 - threshold, 1 + threshold, color="tab:green", alpha=0.15)
        bottom.axvspan(k_max * 1.0001, k.max() * 1.05, color="0.9", zorder=0)
        finite = ratio[np.isfinite(ratio) & (k <= k_max)]
        top_limit = max(2.0, float(np.max(finite)) * 1.1) if finite.size else 2.0
        bottom.set_ylim(0, min(top_limit, 5.0))
        bottom.xaxis.set_minor_formatter(NullFormatter())
        top.xaxis.set_minor_formatter(NullFormatter())
        bottom.set_ylabel("P_gen / P_ref")
        scatter = entry["spectrum"].get("scatter", {})
        if has_scatter:
            lowest = axes[2, column]
            if "reference_std" in scatter:
                lowest.semilogx(k, _array(scatter["reference_std"]), **REFERENCE_STYLE)
                lowest.semilogx(k, _array(scatter["generated_std"]), **GENERATED_STYLE)
                ratio = scatter.get("ratio")
                lowest.set_title("scatter ratio " + ("n/a" if ratio is None else f"{ratio:.2f}"),
                                 fontsize=8)
            lowest.axvspan(k_max * 1.0001, k.max() * 1.05, color="0.9", zorder=0)
            lowest.set_ylabel("std of log P (one sample)")
            lowest.xaxis.set_minor_formatter(NullFormatter())
            bottom = lowest
        bottom.set_xlabel("k [1/length]")
    fig.tight_layout()
    return _save(fig, directory, "spectra.png")


def _pdf_figure(report: Mapping[str, Any], directory: Path) -> str:
    plt = _pyplot()
    fields = report["fields"]
    fig, axes = plt.subplots(1, len(fields), figsize=(4.2 * len(fields), 3.4), squeeze=False)
    for ax, (name, entry) in zip(axes[0], fields.items(), strict=True):
        pdf = entry["pdf"]
        edges = _array(pdf["edges"])
        centres = 0.5 * (edges[1:] + edges[:-1])
        for key, style in (("reference", REFERENCE_STYLE), ("generated", GENERATED_STYLE)):
            density = _array(pdf[key])
            ax.semilogy(centres, np.where(density > 0, density, np.nan), **style)
        w1 = pdf.get("w1_over_std")
        ax.set_title(f"{name}: W1/std = " + ("n/a" if w1 is None else f"{w1:.3f}")
                     + (" (symmetrised over the sign)" if pdf.get("sign_symmetrised") else ""),
                     fontsize=10 if pdf.get("sign_symmetrised") else None)
        ax.set_xlabel(f"{name}" + (" components" if entry["rank"] else "")
                      + f" [{entry['units']}]")
        ax.set_ylabel("PDF")
        ax.legend(frameon=False)
    fig.tight_layout()
    return _save(fig, directory, "pdfs.png")


def _samples_figure(samples: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    labels: Sequence[str], directory: Path) -> str | None:
    from surrogate.validation.features import scalar_view

    if not samples:
        return None
    plt = _pyplot()
    names = list(samples)
    rows = min(len(labels), *(pair[0].shape[0] for pair in samples.values()))
    if rows == 0:
        return None
    fig, axes = plt.subplots(rows, 2 * len(names), figsize=(2.6 * 2 * len(names), 2.7 * rows),
                             squeeze=False)
    for column, name in enumerate(names):
        reference, generated = samples[name]
        if reference.ndim == 4:                                  # vector: show |u|
            reference, generated = scalar_view(reference, 1), scalar_view(generated, 1)
            title = f"|{name}|"
        else:
            title = name
        low, high = float(np.min(reference[:rows])), float(np.max(reference[:rows]))
        symmetric = low < 0 < high
        if symmetric:
            high = max(abs(low), abs(high))
            low = -high
        colour_map = "RdBu_r" if symmetric else "viridis"
        for row in range(rows):
            for offset, (data, kind) in enumerate(((reference, "reference"),
                                                   (generated, "generated"))):
                ax = axes[row, 2 * column + offset]
                image = ax.imshow(np.asarray(data[row]).T, origin="lower", cmap=colour_map,
                                  vmin=low, vmax=high)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"{title}: {kind}", fontsize=9)
                if offset == 0 and column == 0:
                    ax.set_ylabel(labels[row].replace(", ", "\n"), fontsize=7)
            fig.colorbar(image, ax=axes[row, 2 * column:2 * column + 2], shrink=0.8)
    return _save(fig, directory, "samples.png")


def _overview_figure(report: Mapping[str, Any],
                     samples: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     labels: Sequence[str], directory: Path) -> str | None:
    """One glance: a reference and a generated snapshot of the first field at the same
    condition (one colour scale) and both pooled spectra of that field."""
    from surrogate.validation.features import scalar_view

    if not samples or not labels:
        return None
    name = next(iter(samples))
    reference, generated = samples[name]
    title = name
    if reference.ndim == 4:
        reference, generated = scalar_view(reference, 1), scalar_view(generated, 1)
        title = f"|{name}|"
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.8),
                             gridspec_kw={"width_ratios": [1, 1, 1.35]})
    low, high = float(np.min(reference[0])), float(np.max(reference[0]))
    colour_map = "viridis"
    if low < 0 < high:
        high = max(abs(low), abs(high))
        low, colour_map = -high, "RdBu_r"
    for ax, data, kind in ((axes[0], reference[0], "simulator"),
                           (axes[1], generated[0], "surrogate")):
        ax.imshow(np.asarray(data).T, origin="lower", cmap=colour_map, vmin=low, vmax=high)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title}, {kind}", fontsize=10)
    axes[0].set_ylabel(labels[0].replace(", ", "\n"), fontsize=8)
    spectrum = report["fields"][name]["spectrum"]
    k = _array(spectrum["k"])
    axes[2].loglog(k, _array(spectrum["reference"]), **REFERENCE_STYLE)
    axes[2].loglog(k, _array(spectrum["generated"]), **GENERATED_STYLE)
    median = spectrum.get("rel_error_median")
    axes[2].set_title(f"{name} power spectrum (held-out conditions), median |rel err| "
                      + ("n/a" if median is None else f"{median:.2f}"), fontsize=9)
    from matplotlib.ticker import NullFormatter
    axes[2].xaxis.set_minor_formatter(NullFormatter())
    axes[2].set_xlabel("k [1/length]")
    axes[2].set_ylabel("P(k)")
    axes[2].legend(["simulator", "surrogate"], frameon=False)
    fig.tight_layout()
    return _save(fig, directory, "overview.png")


def _conservation_figure(report: Mapping[str, Any], directory: Path) -> str | None:
    series = report["conservation_series"]
    labels = list(series["reference"])
    if not labels or len(series["time"]) < 1:
        return None
    plt = _pyplot()
    time = _array(series["time"])
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        for side, style in (("reference", REFERENCE_STYLE), ("generated", GENERATED_STYLE)):
            entry = series[side].get(label)
            if entry is None:
                continue
            mean, low, high = (_array(entry[key]) for key in ("mean", "min", "max"))
            if label.startswith("divergence"):
                ax.semilogy(time, np.maximum(high, 1e-17), **{**style, "label":
                                                               style["label"] + " (max)"})
            else:
                ax.plot(time, mean, marker="o", markersize=3, **style)
                ax.fill_between(time, low, high, color=style["color"], alpha=0.12)
        ax.set_title(label)
        ax.set_xlabel("time")
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return _save(fig, directory, "conservation.png")


def _two_point_figure(report: Mapping[str, Any], directory: Path) -> str:
    plt = _pyplot()
    fields = report["fields"]
    fig, axes = plt.subplots(2, len(fields), figsize=(4.2 * len(fields), 6.4), squeeze=False)
    for column, (name, entry) in enumerate(fields.items()):
        correlation = entry["correlation"]
        ax = axes[0, column]
        r = _array(correlation["r"])
        for key, style in (("reference", REFERENCE_STYLE), ("generated", GENERATED_STYLE)):
            ax.plot(r, _array(correlation[key]), **style)
        ax.set_title(f"{name}: correlation function")
        ax.set_xlabel("r [length]")
        ax.legend(frameon=False)
        ax = axes[1, column]
        minkowski = entry["minkowski"]
        offsets = minkowski["offsets_in_std"]
        positions = np.arange(len(offsets))
        width = 0.13
        for index, functional in enumerate(("area_fraction", "boundary_length",
                                            "euler_characteristic")):
            ref = _array(minkowski[functional]["reference"])
            gen = _array(minkowski[functional]["generated"])
            scale = max(float(np.max(np.abs(ref))), 1e-300)
            ax.bar(positions + (2 * index - 2.5) * width, ref / scale, width, color="0.3")
            ax.bar(positions + (2 * index - 1.5) * width, gen / scale, width, color="tab:red")
        ax.set_xticks(positions, [f"mu{q:+g}sigma" for q in offsets])
        ax.set_title(f"Minkowski V0, V1, V2 of {minkowski['of']}\n"
                     "(grey ref, red gen; each scaled by max |ref|)", fontsize=9)
        ax.axhline(0, color="black", linewidth=0.6)
    fig.tight_layout()
    return _save(fig, directory, "two_point.png")


def _per_condition_figure(report: Mapping[str, Any], directory: Path) -> str | None:
    conditions = report["per_condition"]
    if len(conditions) < 2:
        return None
    plt = _pyplot()
    x, axis_name = _condition_axis(report, conditions)
    order = np.argsort(x, kind="stable")
    from matplotlib.ticker import NullFormatter
    threshold_keys = {"spectrum_rel_error_median": "per_condition_spectrum_rel_error_median",
                      "w1_over_std": "pdf_w1_over_std"}
    metrics = (("spectrum_rel_error_median", "spectrum median |rel err|"),
               ("w1_over_std", "W1 / std"), ("spread_ratio", "spread ratio"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], metrics, strict=True):
        for name in report["fields"]:
            y = _array([c["fields"][name][key] for c in conditions])
            line, = ax.plot(x[order], y[order], marker="o", markersize=3, label=name)
            if key != "spectrum_rel_error_median":
                continue
            floor = [c["fields"][name].get(f"{key}_floor") for c in conditions]
            if None not in floor:
                # the simulator run again at each condition: what a perfect surrogate reads
                ax.plot(x[order], _array(floor)[order], linestyle="--", linewidth=0.9,
                        color=line.get_color(), label=f"{name} floor")
        if axis_name and np.all(x > 0) and x.max() / x.min() > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        if key == "spread_ratio":
            ax.axhline(1.0, color="black", linewidth=0.8)
            if all(c["fields"][n][key] is None for c in conditions for n in report["fields"]):
                ax.text(0.5, 0.5, "n/a: fewer than 2 samples per condition", ha="center",
                        transform=ax.transAxes)
        limit = report["thresholds"].get(threshold_keys.get(key, ""))
        if limit is not None and math.isfinite(limit):
            ax.axhline(limit, color="tab:green", linestyle=":", label="threshold")
        ax.set_title(title)
        ax.set_xlabel(axis_name or "condition")
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return _save(fig, directory, "per_condition.png")


def _range_figure(report: Mapping[str, Any], directory: Path) -> str | None:
    """Spectrum ratio per third of each swept range: a row per parameter, a column per
    field."""
    ranges = report.get("range") or {}
    if not ranges:
        return None
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter
    fields = list(report["fields"])
    threshold = report["thresholds"].get("spectrum_rel_error_median") or math.inf
    colours = {"low end": "tab:blue", "middle": "black", "high end": "tab:orange"}
    fig, axes = plt.subplots(len(ranges), len(fields), squeeze=False,
                             figsize=(4.4 * len(fields), 3.2 * len(ranges)))
    for row, (parameter, entry) in enumerate(ranges.items()):
        for column, name in enumerate(fields):
            ax = axes[row, column]
            k = _array(report["fields"][name]["spectrum"]["k"])
            highest = 1.0
            for label, third in entry["thirds"].items():
                numbers = third["fields"][name]
                ratio = _array(numbers["ratio"])
                if third["values"] is None or not np.isfinite(ratio).any():
                    continue
                low, high = third["values"]
                error = numbers["spectrum_rel_error_median"]
                ax.semilogx(k, ratio, color=colours.get(label, "tab:grey"),
                            label=f"{label} ({parameter} {low:.3g}-{high:.3g}): "
                                  + ("n/a" if error is None else f"{error:.3f}"))
                highest = max(highest, float(np.nanmax(ratio)))
            ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
            if math.isfinite(threshold):
                ax.axhspan(1 - threshold, 1 + threshold, color="tab:green", alpha=0.15)
            ax.set_ylim(0, min(max(2.0, 1.1 * highest), 5.0))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{name} across {parameter}"
                         + (f" (ratio up to {highest:.3g}, clipped at 5)" if highest > 5
                            else ""), fontsize=9)
            ax.set_xlabel("k [1/length]")
            ax.set_ylabel("P_gen / P_ref")
            ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return _save(fig, directory, "range.png")


def _observables_figure(report: Mapping[str, Any], directory: Path) -> str | None:
    """Histograms of each system observable, reference against generated."""
    entries = [(label, entry) for label, entry in report.get("observables", {}).items()
               if entry.get("histogram")]
    if not entries:
        return None
    plt = _pyplot()
    columns = min(3, len(entries))
    rows = math.ceil(len(entries) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (label, entry) in zip(axes.flat, entries, strict=False):
        histogram = entry["histogram"]
        edges = _array(histogram["edges"])
        for side, style in (("reference", {"color": "black"}),
                            ("generated", {"color": "tab:red", "linestyle": "--"})):
            ax.stairs(_array(histogram[side]), edges, label=side, **style)
        ax.set_title(f"{label} (W1/std {_number(entry.get('w1_over_std'), 3)})", fontsize=9)
        ax.set_ylabel("density")
    for ax in list(axes.flat)[len(entries):]:
        ax.set_axis_off()
    axes.flat[0].legend(frameon=False, fontsize=8)
    coverage = report.get("mode_coverage")
    if coverage:
        text = ", ".join(f"{mode}: ref {coverage['fraction']['reference'][mode]:.2f} / gen "
                         f"{coverage['fraction']['generated'][mode]:.2f}"
                         for mode in coverage["modes"])
        fig.suptitle(f"ordered-state fractions {text}", fontsize=9)
    fig.tight_layout()
    return _save(fig, directory, "observables.png")


def _condition_observables_figure(report: Mapping[str, Any], directory: Path) -> str | None:
    """Ensemble observables (Ising: susceptibility, specific heat) and observable means
    per condition against the most varying parameter."""
    conditions = [c for c in report["per_condition"] if c.get("observables")]
    if len(conditions) < 2:
        return None
    labels = list(conditions[0]["observables"])
    ensemble = [label for label in labels if not label.startswith("mean ")]
    means = [label for label in labels if label.startswith("mean ")]
    if any(label.endswith("(sign)") for label in means):
        means = [label for label in means if (label.endswith("(sign)") and "|" not in label)
                 or label.startswith("mean |")]
    chosen = (ensemble + means)[:4]
    x, axis_name = _condition_axis(report, conditions)
    order = np.argsort(x, kind="stable")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), 3.3), squeeze=False)
    for ax, label in zip(axes[0], chosen, strict=True):
        for side, style in (("reference", {"color": "black", "marker": "o"}),
                            ("generated", {"color": "tab:red", "marker": "^",
                                           "linestyle": "--"})):
            y = _array([c["observables"][label].get(side) for c in conditions])
            ax.plot(x[order], y[order], markersize=3, label=side, **style)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(axis_name or "condition")
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return _save(fig, directory, "condition_observables.png")


def _condition_axis(report: Mapping[str, Any], conditions: list[Mapping[str, Any]]
                    ) -> tuple[np.ndarray, str | None]:
    """Values of the parameter that varies most across conditions (log span for positive)."""
    names = list(report["parameters"])
    values = {name: np.array([c["parameters"][name] for c in conditions]) for name in names}
    spans = {name: (np.ptp(np.log(v)) if np.all(v > 0) else np.ptp(v)) for name, v in
             values.items()}
    if not spans or max(spans.values()) <= 0:
        return np.arange(len(conditions), dtype=float), None
    name = max(spans, key=spans.get)
    return values[name], name


def save_figures(result, directory: str | Path) -> dict[str, str]:
    """Draw every figure of ``result`` (a ``ValidationResult``) into ``directory``.

    Returns:
        ``{figure key: file name}`` for the figures that apply to this report.
    """
    directory = Path(directory)
    report = result.report
    figures = {"overview": _overview_figure(report, result.samples, result.sample_labels,
                                            directory),
               "spectra": _spectra_figure(report, directory),
               "pdfs": _pdf_figure(report, directory),
               "samples": _samples_figure(result.samples, result.sample_labels, directory),
               "conservation": _conservation_figure(report, directory),
               "two_point": _two_point_figure(report, directory),
               "per_condition": _per_condition_figure(report, directory),
               "range": _range_figure(report, directory),
               "observables": _observables_figure(report, directory),
               "condition_observables": _condition_observables_figure(report, directory)}
    return {key: name for key, name in figures.items() if name}


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _floor_lines(report: Mapping[str, Any]) -> list[str]:
    """The gated checks with the noise floor beside each value (report.md section)."""
    floor = report.get("floor")
    lines = ["## Checks and the noise floor", ""]
    if not floor or floor.get("source") is None:
        reason = (floor or {}).get("reason", "not computed")
        lines += [f"No noise floor: {reason}.", ""]
        floor = {}
    else:
        sides = floor["counts"]["trajectories"]
        source = ("two halves of the reference (every other trajectory of each condition; "
                  "half the samples per side, so about sqrt(2) above a full-size floor)"
                  if floor["source"] == "reference_halves" else
                  f"the reference against a second simulation of its conditions "
                  f"(`{floor['path']}`)")
        lines += [f"Floor: each metric between two independent simulator ensembles, what a "
                  f"perfect surrogate would score: {source}; {sides[0]} against {sides[1]} "
                  f"trajectories in {floor['counts']['conditions']} conditions.", ""]
    lines += ["| check | field | value | floor | threshold | passed |",
              "|---|---|---|---|---|---|"]
    for check in report["checks"]:
        if not check["gated"]:
            continue
        relation = "<=" if check["kind"] == "max" else ">="
        lines.append(f"| {check['check']} | {check['field'] or ''} | "
                     f"{_number(check['value'], 3)} | {_number(check.get('floor'), 3)} | "
                     f"{relation} {_number(check['threshold'], 3)} | "
                     f"{_number(check['passed'])} |")
    if floor.get("too_noisy"):
        lines += ["", "The floor exceeds a third of the threshold for: "
                  + ", ".join(floor["too_noisy"]) + ". At this reference size these checks "
                  "cannot tell a good surrogate from a perfect one; use a larger reference."]
    return [*lines, ""]


def _range_lines(report: Mapping[str, Any]) -> list[str]:
    """The spectrum error in each third of every swept range (report.md section)."""
    ranges = report.get("range") or {}
    if not ranges:
        return []
    names = list(report["fields"])
    lines = ["## Across the swept range", "",
             "Pooled spectrum error (median |rel err| over resolved shells) of the conditions "
             "in each third of a swept parameter's range (of its log for a log-scaled one), "
             "floor in brackets; a surrogate right on average and wrong at the ends shows "
             "here, not in the pooled number. Reported, not gated.", "",
             "| parameter | third | values | conditions | "
             + " | ".join(f"{name} spectrum err (floor)" for name in names) + " |",
             "|" + "---|" * (4 + len(names))]
    for parameter, entry in ranges.items():
        for label, third in entry["thirds"].items():
            values = third["values"]
            span = "–" if values is None else f"{values[0]:.4g} – {values[1]:.4g}"
            cells = [f"{_number(third['fields'][name]['spectrum_rel_error_median'], 3)} "
                     f"({_number(third['fields'][name].get('floor'), 3)})" for name in names]
            lines.append(f"| {parameter} | {label} | {span} | {third['conditions']} | "
                         + " | ".join(cells) + " |")
        ratios = entry["end_over_middle"]
        floors = entry.get("end_over_middle_floor") or {}
        lines.append(f"| {parameter} | end / middle | | | "
                     + " | ".join(f"{_number(ratios.get(name), 3)} "
                                  f"({_number(floors.get(name), 3)})" for name in names)
                     + " |")
    return [*lines, ""]


def render_markdown(report: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """The ``report.md`` page: verdict, failed checks, headline tables and figures."""
    counts = report["counts"]
    lines = [f"# Validation report: {report['system']}", "",
             f"**{'PASSED' if report['passed'] else 'FAILED'}**: generated `"
             f"{report['generated']}` against reference `{report['reference']}` "
             f"({counts['matched_generated_trajectories']} generated and "
             f"{counts['matched_reference_trajectories']} reference trajectories in "
             f"{counts['matched_conditions']} matched conditions, {report['resolution']}^2 grid, "
             f"{len(report['times'])} times).", ""]
    if report["failures"]:
        lines += ["Failed checks:", ""] + [f"- {text}" for text in report["failures"]] + [""]
    if report.get("not_evaluated"):
        lines += ["Not evaluated (undefined for these data): "
                  + ", ".join(report["not_evaluated"]), ""]
    if counts["unmatched_generated_trajectories"]:
        lines += [f"{counts['unmatched_generated_trajectories']} generated trajectories lie "
                  f"farther than {counts['max_match_distance']} from every reference condition "
                  "and are not compared.", ""]
    lines += _floor_lines(report)
    lines += ["## Fields", "",
              "| field | spectrum median / max rel err | W1/std | KS p | spread ratio | "
              "aligned spread ratio (floor) | spectrum scatter ratio (floor) | "
              "mean ref / gen | std ref / gen |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in report["fields"].items():
        spectrum, pdf, moments = entry["spectrum"], entry["pdf"], entry["moments"]
        scatter = spectrum.get("scatter", {})
        lines.append(
            f"| {name} | {_number(spectrum['rel_error_median'], 3)} / "
            f"{_number(spectrum['rel_error_max'], 3)} | {_number(pdf['w1_over_std'], 3)} | "
            f"{_number(pdf['ks_pvalue'], 2)} | {_number(entry['spread_ratio'], 3)} "
            f"({entry['spread_basis'].replace('_', ' ')}) | "
            f"{_number(entry.get('spread_aligned_ratio'), 3)} "
            f"({_number(entry.get('spread_aligned_ratio_floor'), 3)}) | "
            f"{_number(scatter.get('ratio'), 3)} ({_number(scatter.get('floor'), 3)}) | "
            f"{_number(moments['reference']['mean'])} / {_number(moments['generated']['mean'])} | "
            f"{_number(moments['reference']['std'])} / {_number(moments['generated']['std'])} |")
    for name, entry in report["fields"].items():
        balance = entry["pdf"].get("sign_balance")
        if entry["pdf"].get("sign_symmetrised"):
            lines += ["", f"{name}: the system declares a global sign symmetry, so its PDF and "
                      "W1/std compare the laws symmetrised over the sign (an ensemble's net "
                      "sign is sampling noise); the net sign is judged here"
                      + (f": mean {_number(balance['reference'], 3)} (reference) against "
                         f"{_number(balance['generated'], 3)} (generated), z = "
                         f"{_number(balance['z'], 3)} against the noise of fairly drawn "
                         f"signs (floor {_number(balance.get('floor'), 3)})."
                         if balance else ".")]
    lines += ["", "Spectrum scatter ratio: the within-condition std of one snapshot's log "
              "shell power, generated over reference (median over resolved shells and times; "
              "1 is right, > 1: each generated sample's spectrum fluctuates more around the "
              "ensemble's than a simulated one's, which a right mean spectrum hides; "
              "undefined with one trajectory per condition). Reported, not gated."]
    changes = {name: entry for name, entry in report["fields"].items()
               if "temporal_change_ratio" in entry}
    if changes:
        lines += ["", "Change between consecutive snapshots of a trajectory, mean |f(t_i+1) - "
                  "f(t_i)| (ratio near 1: generated trajectories evolve like simulated ones; "
                  "> 1: snapshots independent in time; < 1: frozen): "
                  + "; ".join(f"{name} {_number(entry['temporal_change']['reference'])} / "
                              f"{_number(entry['temporal_change']['generated'])}, ratio "
                              f"{_number(entry['temporal_change_ratio'], 3)}"
                              for name, entry in changes.items()) + "."]
    lines += ["", "## Conservation (relative violation; 0 is exact)", "",
              "| check | reference | generated | allowed | passed |", "|---|---|---|---|---|"]
    for key, entry in report["conservation"].items():
        if "skipped" in entry:
            lines.append(f"| {key} | | | | skipped: {entry['skipped']} |")
            continue

        def show(value: Any) -> str:
            if isinstance(value, Mapping):
                return (f"max excursion {_number(value.get('max_excursion'), 3)}, "
                        f"fraction outside {_number(value.get('fraction_outside'), 3)}")
            return _number(value, 3)

        lines.append(f"| {key} | {show(entry['reference'])} | {show(entry['generated'])} | "
                     f"{_number(entry['allowed'], 3)} | {_number(entry['passed'])} |")
    if report["observables"]:
        lines += ["", "## Observables", "", "| observable | mean ref / gen | std ref / gen | "
                  "W1/std |", "|---|---|---|---|"]
        for key, entry in report["observables"].items():
            lines.append(f"| {key} | {_number(entry['reference']['mean'])} / "
                         f"{_number(entry['generated']['mean'])} | "
                         f"{_number(entry['reference']['std'])} / "
                         f"{_number(entry['generated']['std'])} | "
                         f"{_number(entry['w1_over_std'], 3)} |")
    coverage = report.get("mode_coverage")
    if coverage:
        lines += ["", "Ordered states (mode coverage; a generator that produces one state only "
                  f"fails): coverage {_number(coverage['coverage'], 3)} (threshold "
                  f"{_number(report['thresholds'].get('mode_coverage_min'), 3)}); "
                  + "; ".join(f"{mode}: reference {coverage['fraction']['reference'][mode]:.3f}, "
                              f"generated {coverage['fraction']['generated'][mode]:.3f}"
                              for mode in coverage["modes"]) + "."
                  + (" The system declares the sign symmetry: each state is expected at "
                     "the mean of the reference's two fractions."
                     if coverage.get("reference_symmetrised") else "")]
        switching = coverage.get("switching") or {}
        if switching.get("reference") is not None or switching.get("generated") is not None:
            floor = switching.get("floor")
            lines += ["", "State changes between consecutive snapshots of a trajectory, both "
                      f"ordered: reference {_number(switching.get('reference'), 3)} "
                      f"({switching.get('reference_pairs', 0)} pairs), generated "
                      f"{_number(switching.get('generated'), 3)} "
                      f"({switching.get('generated_pairs', 0)} pairs)"
                      + (f", floor {_number(floor, 3)}" if floor is not None else "")
                      + " (not gated)."]
    lines += ["", f"Fréchet physics distance: {_number(report['frechet_physics_distance'])} "
              f"(between two halves of the reference: "
              f"{_number(report['frechet_reference_split'])}; "
              f"{len(report['frechet_features'])} features, see report.json "
              "`frechet_features`).", ""]
    captions = {"overview": "At a glance: simulator and surrogate at one condition, and "
                            "their spectra",
                "spectra": "Power spectra (top) and their ratio (bottom)",
                "pdfs": "One-point PDFs",
                "samples": "Reference and generated snapshots at the same condition and time",
                "conservation": "Invariants over time",
                "two_point": "Correlation functions and Minkowski functionals",
                "per_condition": "Metrics per condition",
                "range": "Spectrum ratio in each third of the swept range",
                "observables": "System observables",
                "condition_observables": "Observables per condition"}
    for key, caption in captions.items():
        if key in figures:
            lines += [f"## {caption}", "", f"![{caption}]({figures[key]})", ""]
    lines += _range_lines(report)
    conditions = report["per_condition"]
    if conditions:
        names = list(report["fields"])
        lines += ["## Per condition", "",
                  "| " + " | ".join(report["parameters"]) + " | n ref / gen | "
                  + " | ".join(f"{n}: spectrum err, W1/std, spread" for n in names) + " |",
                  "|" + "---|" * (len(report["parameters"]) + 1 + len(names))]
        for condition in conditions[:30]:
            cells = [_number(condition["parameters"][p]) for p in report["parameters"]]
            cells.append(f"{condition['n_reference']} / {condition['n_generated']}")
            for name in names:
                entry = condition["fields"][name]
                cells.append(f"{_number(entry['spectrum_rel_error_median'], 3)}, "
                             f"{_number(entry['w1_over_std'], 3)}, "
                             f"{_number(entry['spread_ratio'], 3)}")
            lines.append("| " + " | ".join(cells) + " |")
        if len(conditions) > 30:
            lines.append(f"\n({len(conditions) - 30} more conditions in report.json)")
        lines.append("")
    lines += ["## Thresholds", "", "| key | value |", "|---|---|"]
    lines += [f"| {key} | {_number(value) if value is not None else 'disabled'} |"
              for key, value in report["thresholds"].items()]
    return "\n".join(lines) + "\n"


def save_training_samples(reference: Mapping[str, np.ndarray],
                          generated: Mapping[str, np.ndarray], schema, path: str | Path,
                          step: int) -> Path:
    """Sample grid written during training: reference vs generated at the same conditions.

    One row per field (vector fields as ``|u|``): the first four reference snapshots, the
    four generated ones on the same colour scale, and both mean power spectra.

    Args:
        reference, generated: ``{field: (S, N, N[, 2])}`` physical snapshots.
        schema: the data's :class:`simulators.store.StoreSchema` (fields, box size).
        path: PNG to write (parent directories are created).
        step: training step (title).
    """
    from surrogate.validation.features import scalar_view
    from surrogate.validation.spectra import field_power_spectrum

    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    specs = list(schema.fields)
    count = min(4, *(values.shape[0] for values in reference.values()))
    fig, axes = plt.subplots(len(specs), 2 * count + 1, squeeze=False,
                             figsize=(1.9 * (2 * count + 1) + 1.5, 2.0 * len(specs)))
    for row, spec in enumerate(specs):
        ref = np.asarray(reference[spec.name], dtype=np.float64)
        gen = np.asarray(generated[spec.name], dtype=np.float64)
        ref_view, gen_view = scalar_view(ref, spec.rank), scalar_view(gen, spec.rank)
        low, high = float(ref_view[:count].min()), float(ref_view[:count].max())
        for column in range(count):
            for offset, (data, label) in enumerate(((ref_view, "ref"), (gen_view, "gen"))):
                ax = axes[row, 2 * column + offset]
                ax.imshow(data[column].T, origin="lower", vmin=low, vmax=high)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"{label} {column}", fontsize=8)
            if column == 0:
                axes[row, 0].set_ylabel(("|" + spec.name + "|") if spec.rank else spec.name)
        ax = axes[row, -1]
        for data, style in zip((ref, gen), (REFERENCE_STYLE, GENERATED_STYLE), strict=True):
            k, power = field_power_spectrum(data, schema.box_size, vector=bool(spec.rank))
            mean = power.mean(axis=0)
            ax.loglog(k, np.where(mean > 0, mean, np.nan), **style)
        ax.set_title("spectrum", fontsize=8)
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle(f"step {step}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
