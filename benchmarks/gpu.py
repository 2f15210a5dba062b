"""``python -m benchmarks.gpu``: everything a GPU machine should measure, in one command.

GPU time is short and rare, so one prepared command does it all (at most ``--budget``
seconds, default 450, on one H100/H200). Stages, in order of value; each stage's result
is written to the results files the moment it is known, so a run cut short keeps what
it measured, and a stage that fails is recorded and the next one runs:

1. ``environment``: GPU, memory, torch and CUDA versions; the bf16 matrix-product rate
   and the device-to-device copy bandwidth (the two ceilings every other number sits
   under).
2. ``cuda_tests``: ``pytest -m cuda`` (bf16 autocast and TF32 training steps,
   checkpoints moving between CUDA and the CPU, CUDA generation against CPU generation,
   ``torch.compile``, NCCL data parallelism on >= 2 GPUs, the simulators' torch backend
   on CUDA against numpy).
3. ``generation``: generator + physics heads, fields per second at 64^2, 128^2 and
   256^2 (widths 16 and 32; fp32 and bf16 autocast) at the largest batch that fits
   (doubling from 64 while the throughput grows, halving after an out-of-memory error).
4. ``simulators``: the spectral simulators on the GPU (torch backend, one batch of
   trajectories) and, on this machine's CPU, the numpy path; then the speedups of the
   generator over the simulator for Navier–Stokes at ``t = 10``: against the 2-core CPU
   simulator (``results/cpu-2core.json``, measured by ``python -m benchmarks``) and
   against the same simulator batched on this GPU.
5. ``training``: images per second of a training step (Navier–Stokes files, batch 64,
   width 32, temporal discriminator on) at 64^2 and 128^2, fp32 against bf16 autocast,
   eager against ``torch.compile``.
6. ``fidelity``: a Navier–Stokes training at 64^2 on a sweep simulated on the GPU
   (steps sized to the time left), generation at the held-out test conditions and the
   validation report (``report.md`` / ``report.json`` copied beside the results).

Writes ``benchmarks/results/gpu-<device name>.json`` and ``.md`` (``--output DIR`` to
write elsewhere). Without CUDA it says so in one line and exits 0; ``--device cpu
--smoke`` runs every stage tiny on the CPU (the default test suite checks the format
that way; the ``cuda_tests`` stage is then not run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.output import RESULTS

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("environment", "cuda_tests", "generation", "simulators", "training", "fidelity")
#: the 2-core CPU results file whose simulator timings the speedups are quoted against
CPU_REFERENCE = RESULTS / "cpu-2core.json"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What each stage measures: the full GPU sizes or the tiny ``--smoke`` ones."""

    generation_resolutions: tuple[int, ...] = (64, 128, 256)
    generation_widths: tuple[int, ...] = (16, 32)
    first_batch: int = 64
    max_batch: int = 16384
    #: (system, resolution, t_end or None for the default, trajectories per batch)
    simulator_cases: tuple[tuple[str, int, float | None, int], ...] = (
        ("navier_stokes2d", 128, 10.0, 256), ("navier_stokes2d", 256, 10.0, 64),
        ("gray_scott", 256, None, 64), ("diffusion", 256, None, 256),
        ("gaussian_random_field", 256, None, 1024))
    #: numpy on this machine's CPU, one trajectory (system, resolution, t_end)
    cpu_cases: tuple[tuple[str, int, float | None], ...] = (
        ("navier_stokes2d", 128, 10.0), ("navier_stokes2d", 256, 10.0))
    training_resolutions: tuple[int, ...] = (64, 128)
    training_batch: int = 64
    training_width: int = 32
    training_steps: int = 20
    compile: bool = True
    fidelity_resolution: int = 64
    fidelity_trajectories: int = 400
    fidelity_t_end: float = 10.0
    fidelity_snapshots: int = 6
    fidelity_max_steps: int = 4000
    fidelity_width: int = 32
    fidelity_batch: int = 64
    pytest_timeout: float = 240.0


SMOKE = Sizes(generation_resolutions=(16,), generation_widths=(8,), first_batch=2,
              max_batch=8, simulator_cases=(("navier_stokes2d", 16, 0.05, 2),
                                            ("gray_scott", 16, 1.0, 2),
                                            ("diffusion", 16, None, 2),
                                            ("gaussian_random_field", 16, None, 2)),
              cpu_cases=(("navier_stokes2d", 16, 0.05),), training_resolutions=(16,),
              training_batch=8, training_width=8, training_steps=2, compile=False,
              fidelity_resolution=16, fidelity_trajectories=24, fidelity_t_end=0.5,
              fidelity_snapshots=3, fidelity_max_steps=4, fidelity_width=8,
              fidelity_batch=8)


def device_slug(device: torch.device) -> str:
    """``nvidia-h200`` for an NVIDIA H200; ``cpu`` on the CPU."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(call: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up (device synchronised)."""
    call()
    _synchronize(device)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return float(best)


# ------------------------------------------------------------------------ stages
def environment(device: torch.device, sizes: Sizes, smoke: bool) -> dict[str, Any]:
    """Machine, versions and two ceilings: bf16 (CPU: fp32) matmul rate, copy bandwidth."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "torch": torch.__version__,
                            "numpy": np.__version__, "device": str(device)}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update({"gpu": properties.name, "gpu_memory_gib": properties.total_memory / 2**30,
                     "multiprocessors": properties.multi_processor_count,
                     "compute_capability": f"{properties.major}.{properties.minor}",
                     "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported(),
                     "gpu_count": torch.cuda.device_count()})
    n = 512 if smoke else 8192
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = _best_seconds(lambda: torch.mm(a, b), device, 5)
    info["matmul_tflops"] = 2 * n**3 / seconds / 1e12
    info["matmul_dtype"] = str(dtype).replace("torch.", "")
    source = torch.randn(2**22 if smoke else 2**30, device=device)        # 4 GiB on a GPU
    target = torch.empty_like(source)
    seconds = _best_seconds(lambda: target.copy_(source), device, 5)
    info["copy_gb_per_s"] = 2 * source.numel() * 4 / seconds / 1e9       # read + write
    return info


def cuda_tests(device: torch.device, sizes: Sizes, smoke: bool) -> dict[str, Any]:
    """``pytest -m cuda``: counts of passed / failed / skipped and the summary lines."""
    if smoke:
        return {"not_run": "--smoke (the CUDA tests need a GPU; the default suite runs the "
                           "rest)"}
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", "-rfEs", "--tb=line"]
    try:
        # wide columns: pytest cuts the summary's error messages at the terminal width
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                timeout=sizes.pytest_timeout, env={**os.environ, "COLUMNS": "400"})
        output, status = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) \
            else (error.stdout or "")
        status = "timeout"
    counts = {key: int(number) for number, key in
              re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", output)}
    # the summary, and --tb=line's "path.py:LINE: message" of each failure
    lines = [line for line in output.splitlines()
             if line.startswith(("FAILED", "ERROR", "SKIPPED", "E   ")) or " passed" in line
             or " failed" in line or re.match(r"^\S+\.py:\d+: ", line)]
    lines = [line.replace(str(ROOT) + os.sep, "") for line in lines]   # repository paths
    return {"exit_status": status, "counts": counts, "summary": lines[-40:]}


def _largest_batch(measure: Callable[[int], float], first: int, largest: int,
                   device: torch.device) -> tuple[int, float]:
    """(batch, seconds per item) at the best throughput, doubling the batch from ``first``.

    Doubles while the throughput grows by > 5 % and one call stays under 2 s; an
    out-of-memory error halves back to the last batch that fitted.
    """
    best_batch, best = 0, np.inf
    batch = first
    while batch <= largest:
        try:
            seconds = measure(batch)
        except torch.cuda.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            break
        if seconds < best:
            gain = best / seconds if np.isfinite(best) else np.inf
            best_batch, best = batch, seconds
            if gain < 1.05:
                break
        else:
            break
        if seconds * batch > 2.0:
            break
        batch *= 2
    if best_batch == 0:
        raise torch.cuda.OutOfMemoryError(f"batch {first} does not fit in device memory")
    return best_batch, best


def generation(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    """Generator fields per second by resolution, width and precision (largest batch)."""
    from benchmarks.gan_throughput import generator_seconds_per_field
    rows = []
    precisions = (False, True) if device.type == "cuda" else (False,)
    for resolution in sizes.generation_resolutions:
        for width in sizes.generation_widths:
            for amp in precisions:
                batch, seconds = _largest_batch(
                    lambda batch, r=resolution, w=width, a=amp: generator_seconds_per_field(
                        r, device, w, batch=batch, repeats=3, amp=a),
                    sizes.first_batch, sizes.max_batch, device)
                rows.append({"resolution": resolution, "width": width,
                             "precision": "bf16" if amp else "fp32", "batch": batch,
                             "seconds_per_field": seconds, "fields_per_second": 1 / seconds})
    return {"system": "navier_stokes2d (vorticity + velocity heads)", "rows": rows}


def _simulate_seconds(system: str, resolution: int, t_end: float | None, batch: int,
                      device: str | None) -> float:
    """Seconds to integrate ``batch`` trajectories from their initial state to ``t_end``."""
    import simulators
    simulator = simulators.get(system)
    grid = simulator.make_grid(resolution)
    end = simulator.default_t_end if t_end is None else t_end
    times = np.zeros(1) if simulator.static else np.array([0.0, end])
    values = {"nu": 1e-3, "forcing_amplitude": 0.1, "forcing_wavenumber": 4.0} \
        if system == "navier_stokes2d" else {}
    parameters = {name: np.full(batch, value)
                  for name, value in simulator.resolve_parameters(values).items()}
    start = time.perf_counter()
    simulator.simulate(parameters, grid, times, list(range(batch)), device=device)
    return time.perf_counter() - start


def simulators_stage(device: torch.device, sizes: Sizes,
                     generation_rows: list[dict] | None) -> dict[str, Any]:
    """Simulator trajectories/s on the device (torch) and the CPU (numpy); speedups."""
    rows = []
    for system, resolution, t_end, batch in sizes.simulator_cases:
        # warm-up: the same shapes, a short time (cuFFT plans, kernels)
        _simulate_seconds(system, resolution, None if t_end is None else t_end / 100,
                          min(batch, 2), str(device))
        seconds = _simulate_seconds(system, resolution, t_end, batch, str(device))
        rows.append({"system": system, "resolution": resolution, "t_end": t_end,
                     "backend": f"torch {device.type}", "batch": batch, "seconds": seconds,
                     "trajectories_per_second": batch / seconds})
    for system, resolution, t_end in sizes.cpu_cases:
        seconds = _simulate_seconds(system, resolution, t_end, 1, None)
        rows.append({"system": system, "resolution": resolution, "t_end": t_end,
                     "backend": f"numpy, this machine's CPU ({os.cpu_count()} cores)",
                     "batch": 1, "seconds": seconds, "trajectories_per_second": 1 / seconds})
    return {"rows": rows, "speedups": speedups(rows, generation_rows or [])}


def _cpu_reference() -> dict[tuple[str, int], float]:
    """2-core CPU simulator seconds per snapshot at the default ``t_end``, by (system, N)."""
    try:
        rows = json.loads(CPU_REFERENCE.read_text())["speed"]
    except (OSError, ValueError, KeyError):
        return {}
    return {(row["system"], row["resolution"]): row["simulator_seconds_per_snapshot"]
            for row in rows}


def speedups(simulator_rows: list[dict], generation_rows: list[dict]) -> list[dict]:
    """Navier–Stokes at t = 10: generator seconds per field against the simulator's
    seconds per trajectory on the 2-core CPU, on this machine's CPU and batched on the
    device, for every resolution both were measured at (best generator precision)."""
    reference = _cpu_reference()
    result = []
    for resolution in sorted({row["resolution"] for row in generation_rows}):
        for width in sorted({row["width"] for row in generation_rows}):
            candidates = [row for row in generation_rows
                          if row["resolution"] == resolution and row["width"] == width]
            fastest = min(candidates, key=lambda row: row["seconds_per_field"])
            entry: dict[str, Any] = {"resolution": resolution, "width": width,
                                     "generator_precision": fastest["precision"],
                                     "generator_seconds_per_field": fastest["seconds_per_field"]}
            simulated = {"cpu_2core": reference.get(("navier_stokes2d", resolution))}
            for row in simulator_rows:
                if row["system"] == "navier_stokes2d" and row["resolution"] == resolution \
                        and row["t_end"] == 10.0:
                    key = "same_device" if row["backend"].startswith("torch") else "this_cpu"
                    simulated[key] = row["seconds"] / row["batch"]
            measured = {key: seconds for key, seconds in simulated.items()
                        if seconds is not None}
            for key, seconds in measured.items():
                entry[f"simulator_seconds_{key}"] = seconds
                entry[f"speedup_vs_{key}"] = seconds / fastest["seconds_per_field"]
            if measured:
                result.append(entry)
    return result


def _navier_stokes_file(path: Path, resolution: int, trajectories: int, device: str) -> Path:
    from simulators.sweep import SweepSpec, run_sweep
    spec = SweepSpec(system="navier_stokes2d", n_trajectories=trajectories,
                     resolution=resolution, t_end=1.0, n_snapshots=3,
                     ranges={"nu": (1e-3, 1e-2)}, fixed={"forcing_amplitude": 0.1}, seed=0)
    return run_sweep(spec, path, progress=False, device=device)


def training(device: torch.device, sizes: Sizes, deadline: float,
             reserve: float) -> dict[str, Any]:
    """Training images/s at each resolution: fp32, bf16, and compiled bf16 if time allows."""
    from surrogate.train import TrainConfig, Trainer
    rows = []
    variants = [(False, False), (True, False)] if device.type == "cuda" else [(False, False)]
    with tempfile.TemporaryDirectory() as scratch:
        for resolution in sizes.training_resolutions:
            data = _navier_stokes_file(Path(scratch) / f"ns{resolution}.h5", resolution,
                                       max(8, sizes.training_batch // 4), str(device))
            # compiling costs a minute or more per model: measured at the largest size only
            compile_here = sizes.compile and resolution == max(sizes.training_resolutions)
            for amp, compiled in variants + ([(device.type == "cuda", True)]
                                             if compile_here else []):
                if compiled and time.monotonic() + 120 > deadline - reserve:
                    rows.append({"resolution": resolution, "compile": True,
                                 "skipped": "not enough time left"})
                    continue
                config = TrainConfig(steps=10**6, batch_size=sizes.training_batch,
                                     width=sizes.training_width, amp=amp, compile=compiled,
                                     validate_every=10**6, sample_every=10**6,
                                     checkpoint_every=10**6)
                trainer = Trainer(data, Path(scratch) / f"run{resolution}{amp}{compiled}",
                                  config, device=str(device), progress=False)
                start = time.perf_counter()
                for _ in range(3 if compiled else 2):               # compile / warm up
                    trainer.train_step()
                _synchronize(device)
                warm_up = time.perf_counter() - start
                start = time.perf_counter()
                for _ in range(sizes.training_steps):
                    trainer.train_step()
                _synchronize(device)
                seconds = time.perf_counter() - start
                rows.append({"resolution": resolution, "batch": sizes.training_batch,
                             "width": sizes.training_width,
                             "precision": "bf16" if amp else "fp32", "compile": compiled,
                             "images_per_second": sizes.training_steps
                             * sizes.training_batch / seconds,
                             "warm_up_seconds": warm_up})
                del trainer
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    for row in rows:
        fp32 = [other for other in rows if other.get("resolution") == row.get("resolution")
                and other.get("precision") == "fp32" and not other.get("compile")]
        if "images_per_second" in row and fp32:
            row["ratio_to_fp32"] = row["images_per_second"] / fp32[0]["images_per_second"]
    return {"system": "navier_stokes2d", "temporal_discriminator": True, "rows": rows}


def fidelity(device: torch.device, sizes: Sizes, smoke: bool, deadline: float,
             images_per_second: float | None, output: Path,
             seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """Navier–Stokes at 64^2: simulate on the device, train once per training seed (the
    same data and held-out conditions; steps sized so that every seed fits in the time
    left), generate at the held-out test conditions, validate.

    Returns the first seed's full report numbers (:func:`benchmarks.suite._fidelity_entry`)
    with ``repeats``, every seed's headline numbers: one GAN training is one draw.
    """
    from benchmarks.suite import _fidelity_entry, _repeat_record
    from surrogate.quickstart import QuickstartPlan, quickstart
    steps = sizes.fidelity_max_steps
    if images_per_second and not smoke:
        # per seed: training with validation runs at about 70 % of the bare step rate;
        # 30 s go to simulating (first seed), generating and validating
        per_seed = (deadline - time.monotonic()) / len(seeds) - 30
        affordable = int(0.7 * per_seed * images_per_second / sizes.fidelity_batch)
        steps = max(250, min(steps, affordable // 250 * 250))
    every = max(1, steps // 5)
    base = QuickstartPlan(
        system="navier_stokes2d", n_trajectories=sizes.fidelity_trajectories,
        resolution=sizes.fidelity_resolution, sweep={"nu": (1e-3, 1e-2)},
        fixed={"forcing_amplitude": 0.1, "forcing_wavenumber": 4},
        t_end=sizes.fidelity_t_end, n_snapshots=sizes.fidelity_snapshots,
        train={"steps": steps, "batch_size": sizes.fidelity_batch,
               "width": sizes.fidelity_width, "validate_every": every,
               "checkpoint_every": every, "sample_every": steps, "log_every": every,
               **({"validation_samples": 16, "noise_dim": 16} if smoke else {})})
    name = f"gpu-{device_slug(device)}-fidelity" if not smoke else "smoke-fidelity"
    entry: dict[str, Any] = {}
    repeats = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            if repeats and time.monotonic() > deadline - 20:
                break
            plan = dataclasses.replace(base, train={**base.train, "seed": seed})
            directory = Path(scratch) / f"seed{seed}"
            if repeats:                   # the same sweep: the first seed's file is reused
                first = Path(scratch) / f"seed{seeds[0]}"
                directory.mkdir()
                for reused in ("data.h5", "quickstart.json"):
                    shutil.copyfile(first / reused, directory / reused)
            summary = quickstart(directory, device=str(device), plan=plan, progress=False)
            report = json.loads((directory / "report.json").read_text())
            result = _fidelity_entry(summary, report)
            repeats.append(_repeat_record(seed, result))
            if not entry:
                entry = result
                for suffix in (".md", ".json"):       # file names relative to the run
                    text = (directory / f"report{suffix}").read_text()
                    (output / f"{name}-report{suffix}").write_text(
                        text.replace(str(Path(scratch)) + os.sep, ""))
    entry["report"] = f"{name}-report.md"
    entry["repeats"] = repeats
    return entry


# ---------------------------------------------------------------------- results
def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables (what the README quotes)."""
    stages = results["stages"]
    lines = [f"# GPU benchmark: {results['machine_name']}", "",
             f"`python -m benchmarks.gpu{' --device cpu --smoke' if results['smoke'] else ''}`"
             f", {results['date']}; budget {results['budget_seconds']:.0f} s.", ""]
    for name in STAGES:
        stage = stages.get(name)
        if stage is None:
            lines += [f"## {name}", "", "not run (the run ended first, or other --stages ran)",
                      ""]
            continue
        lines += [f"## {name} ({stage['status']}, {stage.get('seconds', 0):.1f} s)", ""]
        if stage["status"] != "ok":
            lines += [f"    {stage.get('error', stage.get('reason', ''))}", ""]
            continue
        value = stage["result"]
        if name == "environment":
            lines += [f"- {key}: {item:.4g}" if isinstance(item, float) else f"- {key}: {item}"
                      for key, item in value.items()]
        elif name == "cuda_tests":
            lines += [f"- {key}: {item}" for key, item in value.items() if key != "summary"]
            lines += [f"    {line}" for line in value.get("summary", [])]
        elif name == "generation":
            lines += ["| N | width | precision | batch | fields/s | s/field |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {row['resolution']} | {row['width']} | {row['precision']} | "
                      f"{row['batch']} | {row['fields_per_second']:.4g} | "
                      f"{row['seconds_per_field']:.3g} |" for row in value["rows"]]
        elif name == "simulators":
            lines += ["| system | N | t_end | backend | batch | trajectories/s |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {row['system']} | {row['resolution']} | {row['t_end']} | "
                      f"{row['backend']} | {row['batch']} | "
                      f"{row['trajectories_per_second']:.4g} |" for row in value["rows"]]
            lines += ["", "Navier–Stokes to t = 10: generator against simulator (seconds per "
                      "field or trajectory)", "",
                      "| N | width | generator s | vs 2-core CPU | vs this CPU | vs same GPU |",
                      "|---|---|---|---|---|---|"]
            for row in value["speedups"]:
                cells = [f"{row[key]:.3g}x" if key in row else "-" for key in
                         ("speedup_vs_cpu_2core", "speedup_vs_this_cpu",
                          "speedup_vs_same_device")]
                lines.append(f"| {row['resolution']} | {row['width']} | "
                             f"{row['generator_seconds_per_field']:.3g} | " + " | ".join(cells)
                             + " |")
        elif name == "training":
            lines += ["| N | precision | compile | images/s | vs fp32 | warm-up s |",
                      "|---|---|---|---|---|---|"]
            for row in value["rows"]:
                if "skipped" in row:
                    lines.append(f"| {row['resolution']} | - | yes | skipped: {row['skipped']}"
                                 " | | |")
                    continue
                lines.append(f"| {row['resolution']} | {row['precision']} | "
                             f"{'yes' if row['compile'] else 'no'} | "
                             f"{row['images_per_second']:.4g} | "
                             f"{row.get('ratio_to_fp32', 1.0):.2f} | "
                             f"{row['warm_up_seconds']:.1f} |")
        elif name == "fidelity":
            plan = value["plan"]
            lines += [f"{plan['system']}, {plan['resolution']}^2, {plan['n_trajectories']} "
                      f"trajectories, {plan['train']['steps']} steps of batch "
                      f"{plan['train']['batch_size']}, width {plan['train']['width']}; "
                      f"{value['held_out_conditions']} held-out conditions; passed: "
                      f"{value['passed']}; report: {value['report']}", "",
                      "| field | spectrum error (median) | W1/std | spread ratio | "
                      "change-in-time ratio |", "|---|---|---|---|---|"]
            for field, numbers in value["fields"].items():
                cells = [numbers.get(key) for key in ("spectrum_rel_error_median",
                         "w1_over_std", "spread_ratio", "temporal_change_ratio")]
                lines.append(f"| {field} | " + " | ".join(
                    "-" if cell is None else f"{cell:.3g}" for cell in cells) + " |")
            repeats = value.get("repeats", [])
            if len(repeats) > 1:
                lines += ["", "Every training seed (same data, same held-out conditions):", "",
                          "| seed | passed | field | spectrum error | W1/std | spread ratio | "
                          "change-in-time ratio | train s |", "|---|---|---|---|---|---|---|---|"]
                for repeat in repeats:
                    for field, numbers in repeat["fields"].items():
                        cells = [numbers.get(key) for key in (
                            "spectrum_rel_error_median", "w1_over_std", "spread_ratio",
                            "temporal_change_ratio")]
                        seconds = repeat.get("train_seconds")
                        lines.append(f"| {repeat['training_seed']} | {repeat['passed']} | "
                                     f"{field} | " + " | ".join(
                                         "-" if cell is None else f"{cell:.3g}"
                                         for cell in cells)
                                     + f" | {'-' if seconds is None else f'{seconds:.0f}'} |")
            lines += ["", "failures (first seed): " + ("; ".join(value["failures"]) or "none"),
                      "stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                    value["stage_seconds"].items())]
        lines.append("")
    return "\n".join(lines)


class Results:
    """The results of one run, rewritten (JSON and Markdown, atomically) after each stage."""

    def __init__(self, output: Path, name: str, budget: float, smoke: bool,
                 keep: dict[str, Any] | None = None) -> None:
        self.output = output
        self.name = name
        self.data: dict[str, Any] = {"machine_name": name, "date": time.strftime("%Y-%m-%d"),
                                     "budget_seconds": budget, "smoke": smoke,
                                     "stages": dict(keep or {})}

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.output / f"{self.name}.json", self.output / f"{self.name}.md"

    def record(self, stage: str, entry: dict[str, Any]) -> None:
        self.data["stages"][stage] = entry
        json_path, markdown_path = self.paths
        for path, text in ((json_path, json.dumps(self.data, indent=1, default=float) + "\n"),
                           (markdown_path, markdown(self.data) + "\n")):
            temporary = path.with_suffix(path.suffix + ".tmp")
            temporary.write_text(text)
            os.replace(temporary, path)


def run(device: torch.device, *, smoke: bool, budget: float, output: Path,
        stages: tuple[str, ...] = STAGES, seeds: tuple[int, ...] = (0, 1, 2)
        ) -> dict[str, Any]:
    """Run ``stages`` in order within ``budget`` seconds; returns the results dict.

    With a subset of the stages, the other stages' entries of an existing results file
    are kept (a second call measures what a first one left out).
    """
    sizes = SMOKE if smoke else Sizes()
    output.mkdir(parents=True, exist_ok=True)
    name = f"smoke-{device.type}" if smoke else f"gpu-{device_slug(device)}"
    keep = {}
    if set(stages) != set(STAGES):
        try:
            keep = json.loads((output / f"{name}.json").read_text())["stages"]
        except (OSError, ValueError, KeyError):
            keep = {}
    results = Results(output, name, budget, smoke, keep)
    deadline = time.monotonic() + budget
    #: seconds kept for the fidelity stage (when it runs) when deciding whether optional
    #: work fits
    reserve = 150.0 if "fidelity" in stages and not smoke else 0.0
    measured: dict[str, Any] = {}

    def stage(name: str, work: Callable[[], Any], minimum: float = 0.0) -> None:
        if name not in stages:
            return
        left = deadline - time.monotonic()
        if left < minimum:
            results.record(name, {"status": "skipped", "reason": f"{left:.0f} s left, the "
                                  f"stage needs about {minimum:.0f} s"})
            print(f"[benchmarks.gpu] {name}: skipped ({left:.0f} s left)", flush=True)
            return
        print(f"[benchmarks.gpu] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            value = work()
            entry = {"status": "ok", "result": value}
            measured[name] = value
        except Exception as error:          # one stage's failure must not lose the others
            entry = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000],
                     "traceback": traceback.format_exc()[-4000:]}
        entry["seconds"] = time.perf_counter() - start
        results.record(name, entry)
        print(f"[benchmarks.gpu] {name}: {entry['status']} in {entry['seconds']:.1f} s",
              flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    stage("environment", lambda: environment(device, sizes, smoke))
    stage("cuda_tests", lambda: cuda_tests(device, sizes, smoke))
    stage("generation", lambda: generation(device, sizes))
    stage("simulators", lambda: simulators_stage(
        device, sizes, measured.get("generation", {}).get("rows")))
    stage("training", lambda: training(device, sizes, deadline, reserve))
    training_rows = measured.get("training", keep.get("training", {}).get("result", {}))
    rate = next((row["images_per_second"] for row in training_rows.get("rows", [])
                 if row.get("resolution") == sizes.fidelity_resolution
                 and row.get("precision") == ("bf16" if device.type == "cuda" else "fp32")
                 and not row.get("compile")), None)
    stage("fidelity", lambda: fidelity(device, sizes, smoke, deadline, rate, output, seeds),
          minimum=0.0 if smoke else 90.0)
    return results.data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu "
                        "with --smoke")
    parser.add_argument("--smoke", action="store_true",
                        help="every stage tiny (seconds on a CPU): checks the output format")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for the whole run (450; stages that do not fit are "
                             "skipped and recorded as such)")
    parser.add_argument("--output", default=str(RESULTS), help="results folder")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="run only these stages (the others' results in an existing "
                             "results file are kept)")
    parser.add_argument("--training-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds of the fidelity stage (0 1 2)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks.gpu: no CUDA GPU on this machine, nothing measured (run "
              "`python -m benchmarks.gpu --device cpu --smoke` to check the stages on a CPU)")
        return 0
    from surrogate.train import resolve_device
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        print(f"benchmarks.gpu: error: {error}", file=sys.stderr)
        return 2
    if device.type == "cpu" and not args.smoke:
        print("benchmarks.gpu: error: --device cpu needs --smoke (the full stages are sized "
              "for a GPU)", file=sys.stderr)
        return 2
    results = run(device, smoke=args.smoke, budget=args.budget, output=Path(args.output),
                  stages=tuple(args.stages), seeds=tuple(args.training_seeds))
    json_path = Path(args.output) / f"{results['machine_name']}.json"
    print(markdown(results))
    print(f"[benchmarks.gpu] wrote {json_path} and {json_path.with_suffix('.md')}")
    failed = [name for name, stage in results["stages"].items() if stage["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
