"""What bf16 generation costs in fidelity, on kept fidelity runs (issue 18).

Run: ``python -m benchmarks.precision --runs DIR [--seed S] [--device cpu]
[--output FILE.json]``, where ``DIR`` is a ``python -m benchmarks --parts fidelity
--keep DIR`` directory: one ``<system>_seed<k>`` folder per training seed holding the
trained ``run/``, the benchmark's ``reference.h5`` (4 simulations per held-out
condition) and ``floor.h5`` (a third simulation of those conditions).

For every such folder the run's best generator writes the reference's conditions twice
with one latent seed (``surrogate generate --like reference.h5 --seed S``): once in
float32 and once under bf16 autocast (``--precision bf16``); each file is validated
against the reference with the floor (``surrogate validate ... --floor floor.h5``).
The two files share every latent and pixel-noise draw, so the difference between
their reports is the arithmetic alone. Writes ``benchmarks/results/precision-
<machine>.json`` and a Markdown table: per seed, precision and field the held-out
spectrum error (floor), W1/std, spread ratio, the worst energy-budget residual where
the system has one, whether the report passed, and the seconds of the generation.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.lean_generator import native_bf16
from benchmarks.output import RESULTS, write_results
from benchmarks.suite import _fmt, machine_info, machine_line, machine_name
from surrogate.generate import PRECISIONS, generate
from surrogate.train import resolve_device
from surrogate.validation.report import validate_files

__all__ = ["kept_seed_dirs", "main", "markdown", "measure"]

_SEED_DIR = re.compile(r"^(?P<system>[a-z0-9_]+)_seed(?P<seed>\d+)$")


def kept_seed_dirs(runs: Path) -> list[tuple[str, int, Path]]:
    """``(system, training seed, folder)`` of every kept fidelity training in ``runs``
    that holds a run and the benchmark's reference and floor, in name order.

    Raises:
        ValueError: ``runs`` holds none.
    """
    found = []
    for folder in sorted(Path(runs).iterdir()) if Path(runs).is_dir() else []:
        match = _SEED_DIR.match(folder.name)
        if match and all((folder / name).exists()
                         for name in ("run/config.json", "reference.h5", "floor.h5")):
            found.append((match["system"], int(match["seed"]), folder))
    if not found:
        raise ValueError(f"{runs}: no kept fidelity trainings (<system>_seed<k> folders with "
                         f"run/, reference.h5 and floor.h5; python -m benchmarks --parts "
                         f"fidelity --keep DIR)")
    return found


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one validation report."""
    fields = {name: {"spectrum_rel_error_median": entry["spectrum"]["rel_error_median"],
                     "spectrum_rel_error_floor": entry["spectrum"].get("floor"),
                     "w1_over_std": entry["pdf"]["w1_over_std"],
                     "spread_ratio": entry["spread_ratio"]}
              for name, entry in report["fields"].items()}
    budget = report["conservation"].get("energy_budget(velocity)", {})
    return {"passed": report["passed"], "failures": report["failures"], "fields": fields,
            "energy_budget": budget.get("generated")}


def measure(folder: Path, seed: int, device: str, scratch: Path) -> dict[str, Any]:
    """Both precisions of one kept training (module docstring)."""
    entry: dict[str, Any] = {}
    for precision in PRECISIONS:
        output = scratch / f"{folder.name}-{precision}.h5"
        start = time.perf_counter()
        generate(folder / "run", output, like=folder / "reference.h5", seed=seed,
                 device=device, threads=1, precision=precision, overwrite=True)
        seconds = time.perf_counter() - start
        report = validate_files(folder / "reference.h5", output,
                                floor=folder / "floor.h5").report
        entry[precision] = {**_summary(report), "generate_seconds": seconds}
        output.unlink()
    return entry


def markdown(result: dict[str, Any]) -> str:
    """The results table."""
    lines = [machine_line(result["machine"]),
             f"Native bf16: {'yes' if result['native_bf16'] else 'no'}; latent seed "
             f"{result['seed']}; kept runs: {result['runs']}.", "",
             "| system | training seed | precision | field | spectrum err median (floor) | "
             "W1/std | spread | energy budget | passed | generate s |",
             "|---|---:|---|---|---:|---:|---:|---:|---|---:|"]
    for row in result["trainings"]:
        for precision, entry in row["precisions"].items():
            for index, (name, field) in enumerate(entry["fields"].items()):
                first = index == 0
                floor = field["spectrum_rel_error_floor"]
                lines.append(
                    f"| {row['system'] if first else ''} | "
                    f"{row['training_seed'] if first else ''} | {precision if first else ''} | "
                    f"{name} | {_fmt(field['spectrum_rel_error_median'])}"
                    f"{'' if floor is None else f' ({_fmt(floor)})'} | "
                    f"{_fmt(field['w1_over_std'])} | {_fmt(field['spread_ratio'])} | "
                    f"{_fmt(entry['energy_budget']) if first else ''} | "
                    f"{('yes' if entry['passed'] else 'no') if first else ''} | "
                    f"{_fmt(entry['generate_seconds'], '.1f') if first else ''} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precision",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runs", metavar="DIR", required=True,
                        help="a python -m benchmarks --parts fidelity --keep DIR directory")
    parser.add_argument("--seed", type=int, default=7, help="latent seed of both files (7)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--output", metavar="FILE.json", default=None,
                        help="results file (default benchmarks/results/precision-MACHINE.json)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    trainings = []
    with tempfile.TemporaryDirectory() as scratch:
        for system, training_seed, folder in kept_seed_dirs(Path(args.runs)):
            trainings.append({"system": system, "training_seed": training_seed,
                              "precisions": measure(folder, args.seed, args.device,
                                                    Path(scratch))})
    result = {"machine": machine_info(device), "native_bf16": native_bf16(),
              "seed": args.seed, "runs": Path(args.runs).name, "trainings": trainings}
    output = Path(args.output) if args.output else (
        RESULTS / f"precision-{machine_name(device)}.json")
    write_results(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
