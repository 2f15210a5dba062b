"""The benchmark suite: speed, training, validation and fidelity, one results file per machine.

Run: ``python -m benchmarks [--parts speed training validation fidelity] [--device auto]
[--systems ...] [--fidelity-systems ...]``.

Parts (each measured in this one run, so ratios compare like with like):

* **speed**: per registered system and resolution, the simulator's seconds to produce one
  snapshot at the system's default ``t_end`` from scratch (``navier_stokes2d``:
  ``t_end = 10``) against the generator's seconds per field (untrained weights of the
  size used for training, batches of 64, all of the system's fields), and their ratio;
* **training**: images per second of a training step at 32^2, batch 32, fp32 (and bf16
  autocast on CUDA);
* **validation**: ``validate_files`` wall time and peak memory, n vs n fields;
* **fidelity**: per system, a short training run on a Sobol sweep (the plans in
  :func:`fidelity_plans`, run through :func:`surrogate.quickstart.quickstart`), generation
  at the held-out *test* conditions and the validation report's numbers: spectrum
  relative error (median and max per k band), W1/std, spread ratio, conservation
  violations, Fréchet physics distance next to the reference-halves distance, pass/fail,
  and each system's observables (e.g. magnetisation sign coverage for Ising).
* **lean**: the lean generator against the default one (FLOPs and seconds per field,
  per-core speedup against the Navier–Stokes simulator at N = 64, 128, 256 and t_end = 1,
  10, 100, execution options, end-to-end generation; :mod:`benchmarks.lean_generator`).

Writes ``benchmarks/results/<machine>.json`` (``<machine>`` = ``cpu-<cores>core`` or
``cuda-<gpu name>``) with the machine, the budget (steps, sizes) and every number, and
``benchmarks/results/<machine>.md`` with the tables (also printed). On a shared CPU only
the ratios are meaningful; absolute times are quoted from GPUs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

import simulators
from benchmarks import gan_throughput, lean_generator, validation_throughput
from benchmarks.output import RESULTS, write_results
from simulators.store import SPLIT_LAYOUTS
from surrogate.checkpoint import read_run_config
from surrogate.quickstart import QuickstartPlan, default_plan, quickstart
from surrogate.train import read_metrics, resolve_device, score_noise_summary
from surrogate.validation.report import RANGE_THIRDS, end_over_middle, range_third

PARTS = ("speed", "training", "validation", "fidelity", "lean")

#: (system, resolution) pairs of the speed table; all registered systems at 64^2, NS at 128^2
SPEED_CASES = (("diffusion", 64), ("gaussian_random_field", 64), ("gray_scott", 64),
               ("ising", 64), ("navier_stokes2d", 64), ("navier_stokes2d", 128))


#: simulations per held-out condition in the fidelity part's reference ensembles
REFERENCE_PER_CONDITION = 4


def fidelity_plans(device_type: str) -> dict[str, QuickstartPlan]:
    """Per-system training plans of the fidelity part.

    CPU: 32², GRF 2,000 steps of the quickstart's sweep, Gray–Scott 2,000 and
    Navier–Stokes and Ising 1,000 steps of batch 16 at width 16 (minutes each on 2 idle
    cores; the README's fidelity table). GPU: 64², 4,000 steps of batch 64 at width 32.
    Every plan's report judges the generated fields against
    :data:`REFERENCE_PER_CONDITION` new simulations at each held-out condition
    (``QuickstartPlan.reference_per_condition``)."""
    gpu = device_type == "cuda"
    quick = default_plan(device_type)
    # the quickstart's sweep trained to convergence at the library's default options
    # (CPU: 600 -> 2,000 steps, without the quickstart's short-budget tuning: envelope on,
    # mode seeking 0.3, pooled spectral loss)
    tuning = ("mode_seeking_weight", "spectral_loss_groups", "spectral_envelope")
    plans = {"gaussian_random_field": quick if gpu else dataclasses.replace(quick, train={
        **{key: value for key, value in quick.train.items() if key not in tuning},
        "steps": 2000, "validate_every": 250, "checkpoint_every": 250})}
    train = ({"steps": 4000, "batch_size": 64, "width": 32, "validate_every": 500,
              "checkpoint_every": 500, "sample_every": 1000} if gpu else
             {"steps": 1000, "batch_size": 16, "width": 16, "validate_every": 250,
              "checkpoint_every": 250, "sample_every": 1000})
    resolution = 64 if gpu else 32
    plans["navier_stokes2d"] = QuickstartPlan(
        system="navier_stokes2d", n_trajectories=400 if gpu else 160, resolution=resolution,
        sweep={"nu": (1e-3, 1e-2)}, fixed={"forcing_amplitude": 0.1, "forcing_wavenumber": 4},
        t_end=10.0, n_snapshots=6, train=train)
    available = set(simulators.available())
    if "gray_scott" in available:
        plans["gray_scott"] = QuickstartPlan(
            system="gray_scott", n_trajectories=400 if gpu else 160, resolution=resolution,
            sweep={"feed": (0.03, 0.05)}, fixed={"kill": 0.062}, n_snapshots=3,
            # CPU: 2,000 steps (its validation score still fell at 1,000; over three
            # training seeds 2,000 steps gave u 0.063-0.134 against 0.125-0.224)
            train=train if gpu else {**train, "steps": 2000})
    if "ising" in available:
        plans["ising"] = QuickstartPlan(
            system="ising", n_trajectories=800 if gpu else 240, resolution=resolution,
            sweep={"temperature": (1.5, 3.5)}, n_snapshots=2, train=train)
    # every report judges against 4 new simulations per held-out condition instead of the
    # test split's one: the floors of W1/std (Ising: 0.128 -> 0.023) and of the
    # per-condition spectra then sit below a third of their thresholds
    return {name: dataclasses.replace(plan, reference_per_condition=REFERENCE_PER_CONDITION)
            for name, plan in plans.items() if plan.system in available}



def machine_name(device: torch.device) -> str:
    """``cpu-2core`` or ``cuda-nvidia-h100-80gb-hbm3``: the results file's name."""
    if device.type == "cuda":
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()
                                ).strip("-")
    return f"cpu-{os.cpu_count()}core"


def machine_info(device: torch.device) -> dict[str, Any]:
    return {"name": machine_name(device), "platform": platform.platform(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "device": str(device), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "date": time.strftime("%Y-%m-%d")}


def speed(device: torch.device, systems: Sequence[str], widths: Sequence[int]) -> list[dict]:
    """Simulator seconds per snapshot vs generator seconds per field, same process."""
    rows = []
    for system, resolution in SPEED_CASES:
        if system not in systems or system not in simulators.available():
            continue
        simulator = simulators.get(system)
        simulated = gan_throughput.simulator_seconds(resolution, system=system)
        row: dict[str, Any] = {"system": system, "resolution": resolution,
                               "t_end": None if simulator.static else simulator.default_t_end,
                               "simulator_seconds_per_snapshot": simulated, "generator": {}}
        for width in widths:
            generated = gan_throughput.generator_seconds_per_field(resolution, device, width,
                                                                   system=system)
            entry = {"seconds_per_field": generated, "speedup": simulated / generated}
            if device.type == "cuda":
                bf16 = gan_throughput.generator_seconds_per_field(
                    resolution, device, width, amp=True, system=system)
                entry.update({"seconds_per_field_bf16": bf16, "speedup_bf16": simulated / bf16})
            row["generator"][f"width_{width}"] = entry
        rows.append(row)
    return rows


def training(device: torch.device, width: int) -> dict[str, float]:
    result = {}
    for amp in ((False, True) if device.type == "cuda" else (False,)):
        precision = "bf16" if amp else "fp32"
        result[precision] = gan_throughput.training_images_per_second(device, amp, width)
        result[f"{precision} without the temporal discriminator"] = \
            gan_throughput.training_images_per_second(device, amp, width, temporal_weight=0.0)
    return result


def validation(sizes: Sequence[int], resolution: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as directory:
        return [validation_throughput.measure(Path(directory), n, resolution) for n in sizes]


def _fidelity_entry(summary: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    fields = {}
    for name, entry in report["fields"].items():
        spectrum = entry["spectrum"]
        fields[name] = {
            "spectrum_rel_error_median": spectrum["rel_error_median"],
            "spectrum_rel_error_max": spectrum["rel_error_max"],
            "bands": {band: {"median": values["median"], "max": values["max"]}
                      for band, values in spectrum.get("bands", {}).items()},
            "w1_over_std": entry["pdf"]["w1_over_std"],
            "sign_balance_z": (entry["pdf"].get("sign_balance") or {}).get("z"),
            "spread_ratio": entry["spread_ratio"], "spread_basis": entry.get("spread_basis"),
            "temporal_change_ratio": entry.get("temporal_change_ratio"),
            "spectrum_scatter_ratio": spectrum.get("scatter", {}).get("ratio"),
            # the noise floor: the simulator at the same conditions, judged the same way
            "spectrum_rel_error_floor": spectrum.get("floor"),
            "w1_over_std_floor": entry["pdf"].get("floor"),
            "spread_ratio_floor": entry.get("spread_ratio_floor"),
            "spread_aligned_ratio": entry.get("spread_aligned_ratio"),
            "spread_aligned_ratio_floor": entry.get("spread_aligned_ratio_floor"),
            "temporal_change_ratio_floor": entry.get("temporal_change_ratio_floor"),
            "spectrum_scatter_ratio_floor": spectrum.get("scatter", {}).get("floor")}
    conservation = {name: {"reference": value.get("reference"),
                           "generated": value.get("generated"),
                           "floor": value.get("floor"),
                           "passed": value.get("passed")}
                    for name, value in report["conservation"].items()}
    floor = report.get("floor") or {}
    return {"passed": report["passed"], "failures": report["failures"], "fields": fields,
            "validation_score": _validation_score(Path(summary["directory"]) / "run"),
            "low_mode_calibration": read_run_config(Path(summary["directory"]) / "run").get(
                "low_mode_calibration"),
            "floor_source": floor.get("source"), "floor_too_noisy": floor.get("too_noisy", []),
            "mode_coverage": (report.get("mode_coverage") or {}).get("coverage"),
            "mode_coverage_floor": (report.get("mode_coverage") or {}).get("floor"),
            "conservation": conservation, "observables": report.get("observables", {}),
            "frechet_physics_distance": report["frechet_physics_distance"],
            "frechet_reference_split": report.get("frechet_reference_split"),
            "held_out_conditions": report["counts"]["matched_conditions"],
            "reference_trajectories": report["counts"]["matched_reference_trajectories"],
            "range_positions": range_positions(report, summary["plan"].get("sweep", {})),
            "range_pooled": pooled_range(report),
            "stage_seconds": {k: v["seconds"] for k, v in summary["stages"].items()},
            "plan": summary["plan"]}


#: positions of a held-out condition in a swept range, by thirds of the range (in log
#: space for a log-scaled parameter): the report's own thirds
RANGE_POSITIONS = RANGE_THIRDS


def range_positions(report: dict[str, Any], sweep: dict[str, Sequence[float]]
                    ) -> dict[str, dict[str, Any]]:
    """Held-out spectrum errors by where the condition sits in each swept range.

    For every swept parameter ``p`` in ``[low, high]``, each held-out condition (the
    report's ``per_condition`` entries) gets the position ``u = (p - low) / (high - low)``
    (of ``log p`` for a log-scaled parameter) and falls into the low end (``u < 1/3``),
    the middle or the high end (``u >= 2/3``); per third: the number of conditions, the
    parameter values they span, and per field the median over those conditions of the
    per-condition spectrum error median. ``end_over_middle`` per field is the larger end's
    value over the middle's (the issue's bound: <= 1.5). Where the report carries the noise
    floor at every condition (``spectrum_rel_error_median_floor``, the simulator run again
    and judged the same way), each third has the same median of the floors (``floor``) and
    ``end_over_middle_floor`` is what a perfect surrogate would read; otherwise ``None``.
    ``conditions`` lists every held-out value with its per-field spectrum error.
    """
    if not report.get("per_condition"):
        return {}
    declared = {p.name: p for p in simulators.get(report["system"]).parameters}
    result = {}
    for name, (low, high) in sweep.items():
        if high <= low:
            continue
        log = bool(declared[name].log_scale) if name in declared else False
        scale = (lambda v: float(np.log(v))) if log else float
        rows = []
        for entry in report["per_condition"]:
            value = float(entry["parameters"][name])
            position = (scale(value) - scale(low)) / (scale(high) - scale(low))
            rows.append({"value": value, "position": position,
                         "spectrum_rel_error_median": {
                             field: numbers["spectrum_rel_error_median"]
                             for field, numbers in entry["fields"].items()},
                         "floor": {field: numbers.get("spectrum_rel_error_median_floor")
                                   for field, numbers in entry["fields"].items()}})
        rows.sort(key=lambda row: row["value"])
        thirds = {}
        for index, label in enumerate(RANGE_POSITIONS):
            members = [row for row in rows
                       if range_third(row["value"], low, high, log) == index]
            errors, floors = {}, {}
            for field in (members[0]["spectrum_rel_error_median"] if members else {}):
                values = [row["spectrum_rel_error_median"][field] for row in members
                          if row["spectrum_rel_error_median"][field] is not None]
                errors[field] = statistics.median(values) if values else None
                floor = [row["floor"][field] for row in members]
                floors[field] = (statistics.median(floor) if floor and None not in floor
                                 else None)
            thirds[label] = {"conditions": len(members),
                             "values": ([members[0]["value"], members[-1]["value"]]
                                        if members else None),
                             "spectrum_rel_error_median": errors, "floor": floors}
        fields = rows[0]["spectrum_rel_error_median"]
        ratio = {field: end_over_middle({label: third["spectrum_rel_error_median"].get(field)
                                         for label, third in thirds.items()})
                 for field in fields}
        floor_ratio = {field: end_over_middle({label: third["floor"].get(field)
                                               for label, third in thirds.items()})
                       for field in fields}
        result[name] = {"thirds": thirds, "end_over_middle": ratio,
                        "end_over_middle_floor": floor_ratio, "conditions": rows}
    return result


def pooled_range(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The report's own ``range`` entry without its per-shell ratios: per swept parameter
    and third, the conditions, values and per field the pooled spectrum error with its
    floor; ``end_over_middle`` and its floor."""
    return {name: {"thirds": {label: {"conditions": third["conditions"],
                                      "values": third["values"],
                                      "fields": {field: {
                                          "spectrum_rel_error_median":
                                              numbers["spectrum_rel_error_median"],
                                          "floor": numbers.get("floor")}
                                          for field, numbers in third["fields"].items()}}
                              for label, third in entry["thirds"].items()},
                   "end_over_middle": entry["end_over_middle"],
                   "end_over_middle_floor": entry.get("end_over_middle_floor")}
            for name, entry in (report.get("range") or {}).items()}


def _validation_score(run: Path) -> dict[str, Any]:
    """The training's validation scores: best and its step (``best_averaged``: the kept
    generator is the mean of the last validated ones up to that step,
    ``TrainConfig.average_checkpoints``), the median noise of a score (two latent draws)
    and the median change between consecutive validations."""
    records = read_metrics(run / "metrics.jsonl")
    scored = [(r["step"], r["valid/score"]) for r in records if "valid/score" in r]
    averaged = [(r["step"], r["valid/average_score"]) for r in records
                if "valid/average_score" in r]
    best = min(scored, key=lambda item: item[1], default=(None, None))
    best_average = min(averaged, key=lambda item: item[1], default=(None, None))
    use_average = best_average[1] is not None and (best[1] is None
                                                   or best_average[1] < best[1])
    if use_average:
        best = best_average
    return {"best": best[1], "best_step": best[0], "best_averaged": use_average,
            "scores": [score for _, score in scored],
            "average_scores": [score for _, score in averaged],
            **score_noise_summary(records)}


def _repeat_record(seed: int, entry: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one training seed's fidelity entry."""
    keys = ("spectrum_rel_error_median", "w1_over_std", "spread_ratio", "temporal_change_ratio",
            "spectrum_rel_error_floor", "w1_over_std_floor", "spread_ratio_floor",
            "spectrum_scatter_ratio", "spectrum_scatter_ratio_floor", "sign_balance_z",
            "spread_aligned_ratio", "spread_aligned_ratio_floor")
    return {"training_seed": seed, "passed": entry["passed"], "failures": entry["failures"],
            "range_positions": {name: {"thirds": value["thirds"],
                                       "end_over_middle": value["end_over_middle"],
                                       "end_over_middle_floor":
                                           value.get("end_over_middle_floor", {})}
                                for name, value in entry.get("range_positions", {}).items()},
            "range_pooled": entry.get("range_pooled", {}),
            "mode_coverage": entry.get("mode_coverage"),
            "fields": {name: {key: field.get(key) for key in keys}
                       for name, field in entry["fields"].items()},
            "conservation": {key: {"generated": value["generated"], "floor": value["floor"],
                                   "passed": value["passed"]}
                             for key, value in entry["conservation"].items()},
            "validation_score": entry.get("validation_score"),
            "low_mode_calibration": entry.get("low_mode_calibration"),
            "train_seconds": entry["stage_seconds"].get("train")}


def _fidelity_run(system: str, plan: QuickstartPlan, directory: Path | None, device: str,
                  label: str) -> dict[str, Any]:
    """One fidelity training of ``plan`` (quickstart flow) -> its fidelity entry."""
    with tempfile.TemporaryDirectory() as scratch:
        summary = quickstart((directory or Path(scratch)) / label, device=device,
                             plan=plan, progress=False,
                             log=lambda line: print(f"  [{label}] {line}", flush=True))
        report = json.loads(Path(summary["report_json"]).read_text())
        return _fidelity_entry(summary, report)


def share_data(tasks: Sequence[tuple[str, QuickstartPlan, Path, str, str]], root: Path
               ) -> dict[str, Path]:
    """Simulate each system's training data once for all of its fidelity runs (training
    seeds share the data, only the GAN's seed changes): the first run directory that
    already holds it, else a new simulation in its directory, is hard-linked into the
    others (:func:`surrogate.quickstart.adopt_data`). Returns ``{label: data file}`` of
    the runs that were given shared data; a system with one run is left to quickstart."""
    from surrogate.quickstart import adopt_data, finished_data, simulate_plan
    shared: dict[str, Path] = {}
    for system in dict.fromkeys(task[0] for task in tasks):
        mine = [task for task in tasks if task[0] == system]
        keys = {plan.stage_key("simulate") for _, plan, *_ in mine}
        if len(mine) < 2 or len(keys) > 1:
            continue
        found = (finished_data(root / label, plan) for _, plan, _, _, label in mine)
        source = next((path for path in found if path is not None), None)
        first_plan, first_label = mine[0][1], mine[0][4]
        if source is None:
            print(f"  [{system}] simulating the shared training data once for "
                  f"{len(mine)} runs", flush=True)
            start = time.perf_counter()
            (root / first_label).mkdir(parents=True, exist_ok=True)
            source = simulate_plan(first_plan, root / first_label / "data.h5")
            print(f"  [{system}] simulated in {time.perf_counter() - start:.1f} s", flush=True)
        for _, plan, _, _, label in mine:
            adopt_data(root / label, plan, source)
            shared[label] = source
    return shared


def threads_per_job(cores: int | None, jobs: int) -> int:
    """Threads of each of ``jobs`` trainings run at once on ``cores`` cores (at least 1)."""
    return max(1, (cores or 1) // jobs)


def _set_threads(threads: int, parent: int | None = None) -> None:
    """Worker initialiser: ``threads`` intra-op threads per training, and (Linux) the
    worker ends when the benchmark process does, so that a killed benchmark leaves no
    training running on in the background."""
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if parent is not None and os.getppid() != parent:   # it died before the call
            os._exit(1)


def _executor(jobs: int, threads: int) -> Executor:
    """``jobs`` worker processes (spawned: no forked OpenMP pools), each with ``threads``
    threads."""
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_set_threads, initargs=(threads, os.getpid()))


def fidelity(device: torch.device, systems: Sequence[str], directory: Path | None,
             steps: int | None, seeds: Sequence[int] | None = None,
             train_options: dict[str, Any] | None = None,
             jobs: int = 1, split_layout: str | None = None) -> dict[str, dict]:
    """Train, generate at held-out conditions and validate each system (quickstart flow).

    With several training ``seeds`` (same data, same held-out conditions, the training
    run's seed changed), each system's entry holds the first seed's full numbers and a
    ``repeats`` list with every seed's headline numbers: one GAN training is one draw.
    ``jobs > 1`` runs that many trainings at once in worker processes, each with
    ``cpu_count // jobs`` threads (on a CPU, seeds in parallel use the cores better than
    one training's threads do; the numbers are those of that thread count, and floating-
    point sums in another order give another draw of the same distribution).
    ``split_layout``: the split layout of every plan's training data (``None``: the
    plans' own, ``"random"``; ``"stratified"``: :class:`simulators.sweep.SweepSpec`).
    """
    plans = fidelity_plans(device.type)
    tasks = []
    for system in systems:
        if system not in plans:
            continue
        base = plans[system]
        if steps is not None:
            base = dataclasses.replace(base, train={**base.train, "steps": steps})
        if train_options:
            base = dataclasses.replace(base, train={**base.train, **train_options})
        if split_layout is not None:
            base = dataclasses.replace(base, split_layout=split_layout)
        for seed in seeds or [None]:
            plan = base if seed is None else dataclasses.replace(
                base, train={**base.train, "seed": seed})
            label = system if seed is None else f"{system}_seed{seed}"
            tasks.append((system, plan, label))
    with tempfile.TemporaryDirectory() as scratch:
        root = directory or Path(scratch)
        tasks = [(system, plan, root, str(device), label) for system, plan, label in tasks]
        share_data(tasks, root)
        if jobs > 1 and len(tasks) > 1:
            with _executor(min(jobs, len(tasks)),
                           threads_per_job(os.cpu_count(), jobs)) as pool:
                entries = list(pool.map(_fidelity_run, *zip(*tasks, strict=True)))
        else:
            entries = [_fidelity_run(*task) for task in tasks]
    results: dict[str, dict] = {}
    for system in dict.fromkeys(task[0] for task in tasks):
        mine = [entry for task, entry in zip(tasks, entries, strict=True) if task[0] == system]
        results[system] = mine[0]
        if seeds is not None and len(seeds) > 1:
            results[system]["repeats"] = [_repeat_record(seed, entry)
                                          for seed, entry in zip(seeds, mine, strict=True)]
    return results


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


def machine_line(machine: dict[str, Any]) -> str:
    """``Machine: NAME (device, N CPU cores, torch X[, GPU]), DATE.``: a results table's
    first line."""
    gpu = machine.get("gpu")
    return (f"Machine: {machine['name']} ({machine['device']}, {machine['cpu_count']} CPU "
            f"cores, torch {machine['torch']}{', ' + gpu if gpu else ''}), {machine['date']}.")


def markdown(result: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    lines = [machine_line(result["machine"])]
    if result.get("measured"):
        lines.append("Parts measured on: " + ", ".join(
            f"{part} {entry['date']}" for part, entry in result["measured"].items()) + ".")
    lines.append("")
    if result.get("speed"):
        widths = sorted({w for row in result["speed"] for w in row["generator"]})
        lines += ["| system | N | t_end | simulator s/snapshot | "
                  + " | ".join(f"generator s/field ({w.replace('_', ' ')}) | speedup"
                               for w in widths) + " |",
                  "|---|---:|---:|---:|" + "---:|---:|" * len(widths)]
        for row in result["speed"]:
            cells = []
            for w in widths:
                entry = row["generator"][w]
                cells += [_fmt(entry["seconds_per_field"]), f"{entry['speedup']:.3g}x"]
            lines.append(f"| {row['system']} | {row['resolution']} | {_fmt(row['t_end'], 'g')} "
                         f"| {_fmt(row['simulator_seconds_per_snapshot'])} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    if result.get("training"):
        lines += ["Training throughput (32^2, batch 32, width "
                  f"{result['budget']['training_width']}): "
                  + ", ".join(f"{k} {v:.1f} images/s" for k, v in result["training"].items()),
                  ""]
    if result.get("validation"):
        lines += ["| validation: fields per file | grid | validate s | report s | peak RSS MB |",
                  "|---:|---|---:|---:|---:|"]
        for row in result["validation"]:
            lines.append(f"| {row['fields_per_file']} | {row['resolution']}^2 | "
                         f"{row['validate_seconds']:.1f} | {row['report_seconds']:.1f} | "
                         f"{row['peak_rss_megabytes']:.0f} |")
        lines.append("")
    if result.get("fidelity"):
        lines += ["| system (held-out conditions) | field | spectrum err median | max | "
                  "low / mid / high band median | W1/std | spread | aligned spread | "
                  "spectrum scatter | change in time | Fréchet (ref. halves) | passed | "
                  "steps, train s |",
                  "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for system, entry in result["fidelity"].items():
            train_stage = entry["stage_seconds"].get("train")
            for name, field in entry["fields"].items():
                bands = " / ".join(_fmt(field["bands"].get(b, {}).get("median"), ".2f")
                                   for b in ("low", "mid", "high"))
                scatter = _with_floor(field, "spectrum_scatter_ratio",
                                      "spectrum_scatter_ratio_floor")
                lines.append(
                    f"| {system} ({entry['held_out_conditions']}) | {name} | "
                    f"{_with_floor(field, 'spectrum_rel_error_median', 'spectrum_rel_error_floor')}"
                    f" | {_fmt(field['spectrum_rel_error_max'])} | {bands} | "
                    f"{_with_floor(field, 'w1_over_std', 'w1_over_std_floor')} | "
                    f"{_with_floor(field, 'spread_ratio', 'spread_ratio_floor')} | "
                    f"{_with_floor(field, 'spread_aligned_ratio', 'spread_aligned_ratio_floor')}"
                    f" | {scatter} | {_fmt(field.get('temporal_change_ratio'))} | "
                    f"{_fmt(entry['frechet_physics_distance'], '.3g')} "
                    f"({_fmt(entry['frechet_reference_split'], '.3g')}) | "
                    f"{'yes' if entry['passed'] else 'no'} | "
                    f"{entry['plan']['train']['steps']}, {_fmt(train_stage, '.0f')} |")
        lines += ["", "(value (floor): the floor is the same metric for the simulator run "
                  "again at the generated trajectories' conditions, what a perfect surrogate "
                  "would score)", ""]
        jobs = result.get("budget", {}).get("fidelity_jobs") or 1
        if jobs > 1:
            threads = threads_per_job(result["machine"].get("cpu_count"), jobs)
            lines += [f"({jobs} trainings at once, {threads} thread(s) each)", ""]
        for system, entry in result["fidelity"].items():
            noisy = ", ".join(entry.get("floor_too_noisy") or []) or "none"
            lines.append(f"- {system}: reference {_fmt(entry.get('reference_trajectories'))} "
                         f"simulations at {entry['held_out_conditions']} held-out conditions;"
                         f" floors above a third of their threshold: {noisy}")
            for failure in entry["failures"]:
                lines.append(f"- {system}: failed {failure}")
        lines += _repeats_table(result["fidelity"])
        lines += _range_table(result["fidelity"])
    if result.get("lean"):
        lines += ["", "Lean generator:", "", lean_generator.markdown(result["lean"])]
    return "\n".join(lines) + "\n"


def _bracketed(value: float | None, prefix: str = "") -> str:
    """`` (PREFIXvalue)``, or nothing where ``value`` is ``None``."""
    return "" if value is None else f" ({prefix}{_fmt(value)})"


def _with_floor(numbers: dict[str, Any], key: str, floor_key: str) -> str:
    """``value (floor)``, or the value alone where no floor was measured."""
    return _fmt(numbers.get(key)) + _bracketed(numbers.get(floor_key))


def _repeats_table(fidelity_results: dict[str, Any]) -> list[str]:
    """Min / median / max over training seeds, for the systems trained with several."""
    repeated = {system: entry["repeats"] for system, entry in fidelity_results.items()
                if len(entry.get("repeats", [])) > 1}
    if not repeated:
        return []
    lines = ["", "| system | field | training seeds | spectrum err median: min / median / max "
                 "| W1/std max | spread min / max | aligned spread min / max | spectrum "
                 "scatter min / max | passed | validation score noise / change (medians over "
                 "seeds) |",
             "|---|---|---|---|---:|---|---|---|---:|---|"]

    def min_median_max(values: list[float]) -> str:
        return " / ".join(_fmt(v) for v in (min(values), statistics.median(values),
                                            max(values)))

    for system, repeats in repeated.items():
        seeds = ", ".join(str(r["training_seed"]) for r in repeats)
        passed = f"{sum(r['passed'] for r in repeats)} of {len(repeats)}"
        noise = []
        for key in ("score_noise_median", "score_change_median"):
            values = [(r.get("validation_score") or {}).get(key) for r in repeats]
            values = [v for v in values if v is not None]
            noise.append(_fmt(statistics.median(values)) if values else "n/a")
        for name in repeats[0]["fields"]:
            values = [r["fields"][name] for r in repeats]
            spectra = [v["spectrum_rel_error_median"] for v in values]
            spreads = [v["spread_ratio"] for v in values]
            scatters = [v.get("spectrum_scatter_ratio") for v in values]
            scatter = ("n/a" if None in scatters else
                       f"{_fmt(min(scatters))} / {_fmt(max(scatters))}")
            aligned = [v.get("spread_aligned_ratio") for v in values]
            aligned_range = ("n/a" if None in aligned else
                             f"{_fmt(min(aligned))} / {_fmt(max(aligned))}")
            floors = [v.get("spectrum_rel_error_floor") for v in values]
            floor = "" if None in floors else f" (floor {_fmt(statistics.median(floors))})"
            lines.append(f"| {system} | {name} | {seeds} | {min_median_max(spectra)}{floor} | "
                         f"{_fmt(max(v['w1_over_std'] for v in values))} | "
                         f"{_fmt(min(spreads))} / {_fmt(max(spreads))} | {aligned_range} | "
                         f"{scatter} | {passed} | "
                         f"{noise[0]} / {noise[1]} |")
    return lines


def _seed_records(fidelity_results: dict[str, Any], key: str):
    """``(system, training seed, record[key])`` for every training seed of every system
    (a single-seed entry is its own record)."""
    for system, entry in fidelity_results.items():
        records = entry.get("repeats") or [{"training_seed": entry["plan"]["train"].get(
            "seed", 0), key: entry.get(key, {})}]
        for record in records:
            yield system, record["training_seed"], record.get(key) or {}


def _range_table(fidelity_results: dict[str, Any]) -> list[str]:
    """Held-out spectrum errors by position in each swept range, per training seed: the
    medians of per-condition errors (``range_positions``) and the report's pooled thirds
    with their floors (``range_pooled``)."""
    rows, pooled = [], []
    for system, seed, positions in _seed_records(fidelity_results, "range_positions"):
        for parameter, value in positions.items():
            thirds = value["thirds"]
            floors = value.get("end_over_middle_floor") or {}
            for field, ratio in value["end_over_middle"].items():
                cells = [f"{_fmt(thirds[label]['spectrum_rel_error_median'].get(field))}"
                         + _bracketed((thirds[label].get("floor") or {}).get(field), "floor ")
                         + f" ({thirds[label]['conditions']})" for label in RANGE_POSITIONS]
                rows.append(f"| {system} | {parameter} | {field} | {seed} | "
                            + " | ".join(cells) + f" | {_fmt(ratio)}"
                            + _bracketed(floors.get(field), "floor ") + " |")
    for system, seed, ranges in _seed_records(fidelity_results, "range_pooled"):
        for parameter, value in ranges.items():
            thirds = value["thirds"]
            floors = value.get("end_over_middle_floor") or {}
            for field, ratio in value["end_over_middle"].items():
                cells = [f"{_fmt(thirds[label]['fields'][field]['spectrum_rel_error_median'])}"
                         f" ({_fmt(thirds[label]['fields'][field].get('floor'))})"
                         for label in RANGE_POSITIONS]
                pooled.append(f"| {system} | {parameter} | {field} | {seed} | "
                              + " | ".join(cells)
                              + f" | {_fmt(ratio)} ({_fmt(floors.get(field))}) |")
    header = ("| system | parameter | field | training seed | low end | middle | high end "
              "| end / middle |", "|---|---|---|---:|---:|---:|---:|---:|")
    lines = []
    if rows:
        lines += ["", "Held-out spectrum error median by where the condition lies in the "
                      "swept range (thirds of the range, log space for a log-scaled "
                      "parameter; (conditions); (floor F): the same median for the "
                      "simulator run again at those conditions, what a perfect surrogate "
                      "would read); the target is end / middle <= 1.5:", "",
                  *header, *rows]
    if pooled:
        lines += ["", "The report's own thirds (`range`: spectra pooled over the conditions "
                      "of each third of the compared values, floor in brackets):", "",
                  *header, *pooled]
    return lines


def merge_results(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with the parts measured in ``new`` replaced (fidelity: per system).

    A results file collects parts measured in separate runs (the fidelity part alone takes
    tens of minutes on a CPU); ``measured`` records the date of each part's run and
    ``budget`` the settings of the parts that were last measured with them.
    """
    merged = dict(previous)
    parts = new["budget"]["parts"]
    for part in parts:
        if part == "fidelity":
            merged["fidelity"] = {**previous.get("fidelity", {}), **new.get("fidelity", {})}
        elif part in new:
            merged[part] = new[part]
    merged["machine"] = new["machine"]
    budget = dict(previous.get("budget", {}))
    budget.update({key: value for key, value in new["budget"].items() if key != "parts"})
    budget["parts"] = [p for p in PARTS if p in set(budget.get("parts", [])) | set(parts)]
    merged["budget"] = budget
    measured = dict(previous.get("measured", {}))
    if "fidelity" in parts:
        old_fidelity = measured.get("fidelity", {})
        systems = (old_fidelity.get("systems", {}) if isinstance(old_fidelity, dict) else {})
        entry = dict(new["measured"]["fidelity"])
        entry["systems"] = {**systems, **{name: entry["date"]
                                          for name in new.get("fidelity", {})}}
        measured["fidelity"] = entry
    measured.update({part: new["measured"][part] for part in parts if part != "fidelity"})
    merged["measured"] = measured
    return merged


def _train_overrides(parser: argparse.ArgumentParser, items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` items -> ``{name: value}`` of TrainConfig fields (one-line error)."""
    from surrogate.train import TrainConfig
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    options: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in known:
            parser.error(f"--fidelity-train {item!r}: expected NAME=VALUE with NAME a "
                         f"training option")
        try:
            options[name] = json.loads(text)
        except json.JSONDecodeError:
            options[name] = text
    try:
        TrainConfig(**options)
    except (TypeError, ValueError) as error:
        parser.error(f"--fidelity-train: {error}")
    return options


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--systems", nargs="+", default=None,
                        help="systems of the speed table (default: all registered)")
    parser.add_argument("--fidelity-systems", nargs="+", default=None,
                        help="systems of the fidelity part (default: all with a plan)")
    parser.add_argument("--fidelity-steps", type=int, default=None,
                        help="override the training steps of every fidelity plan")
    parser.add_argument("--fidelity-seeds", type=int, nargs="+", default=None,
                        help="train each fidelity plan once per seed (same data and held-out "
                             "conditions) and report the spread over seeds")
    parser.add_argument("--fidelity-jobs", type=int, default=1, metavar="J",
                        help="run J fidelity trainings at once (seeds, systems) in worker "
                             "processes with cpu_count / J threads each (1)")
    parser.add_argument("--fidelity-train", nargs="+", default=[], metavar="NAME=VALUE",
                        help="override training options of every fidelity plan (TrainConfig "
                             "fields, e.g. consistency_weight=10); values are JSON numbers, "
                             "booleans or strings")
    parser.add_argument("--fidelity-split-layout", choices=SPLIT_LAYOUTS, default="stratified",
                        help="split layout of every fidelity plan's training data (stratified)")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32],
                        help="generator widths of the speed table (16 32)")
    parser.add_argument("--validation-sizes", type=int, nargs="+", default=[250])
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="keep the fidelity runs (data, runs, reports) in DIR")
    parser.add_argument("--output", metavar="FILE.json", default=None,
                        help="results file (default benchmarks/results/<machine>.json)")
    parser.add_argument("--replace", action="store_true",
                        help="overwrite the results file instead of merging this run's parts "
                             "into it")
    args = parser.parse_args(argv)
    if args.fidelity_jobs < 1:
        parser.error(f"--fidelity-jobs must be >= 1, got {args.fidelity_jobs}")
    train_options = _train_overrides(parser, args.fidelity_train)
    device = resolve_device(args.device)
    systems = args.systems or simulators.available()
    machine = machine_info(device)
    result: dict[str, Any] = {
        "machine": machine,
        "budget": {"parts": args.parts, "speed_widths": args.widths,
                   "training_width": 32, "validation_sizes": args.validation_sizes,
                   "validation_resolution": 64, "fidelity_steps_override": args.fidelity_steps,
                   "fidelity_train_overrides": train_options,
                   "fidelity_seeds": args.fidelity_seeds,
                   "fidelity_jobs": args.fidelity_jobs,
                   "fidelity_split_layout": args.fidelity_split_layout},
        "measured": {part: {"date": machine["date"], "torch": machine["torch"]}
                     for part in args.parts}}
    if "speed" in args.parts:
        print("speed ...", flush=True)
        result["speed"] = speed(device, systems, args.widths)
    if "training" in args.parts:
        print("training ...", flush=True)
        result["training"] = training(device, 32)
    if "validation" in args.parts:
        print("validation ...", flush=True)
        result["validation"] = validation(args.validation_sizes, 64)
    if "lean" in args.parts:
        print("lean ...", flush=True)
        result["lean"] = lean_generator.measure()
    if "fidelity" in args.parts:
        print("fidelity ...", flush=True)
        keep = Path(args.keep) if args.keep else None
        chosen = args.fidelity_systems or list(fidelity_plans(device.type))
        result["fidelity"] = fidelity(device, chosen, keep, args.fidelity_steps,
                                      args.fidelity_seeds, train_options, args.fidelity_jobs,
                                      split_layout=args.fidelity_split_layout)
    output = Path(args.output) if args.output else RESULTS / f"{machine_name(device)}.json"
    if output.exists() and not args.replace:
        result = merge_results(json.loads(output.read_text()), result)
    write_results(output, result, markdown(result), json_default=float)
    return result
