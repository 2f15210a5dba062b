"""Lean vs default generator: FLOPs and time per field, speedup against the simulator.

Run: ``python -m benchmarks.lean_generator [--resolutions 64 128 256] [--t-ends 1 10 100]``
(also the ``lean`` part of ``python -m benchmarks``).

Measured in one process, so that every ratio compares like with like:

* **FLOPs per field** of each generator (:func:`surrogate.flops.generator_flops`:
  convolutions and matrix products as counted by ``torch.utils.flop_counter``; the
  counter sees no FFT, so the physics heads' FFTs are given apart as the conventional
  ``5 n log2 n`` estimate, :func:`surrogate.flops.heads_fft_flops`).
* **Seconds per field** of generator + physics heads (untrained weights: the cost does
  not depend on their values), Navier–Stokes fields, ``torch.inference_mode``, after a
  warm-up call, best of ``repeats`` calls: the wall time and the process CPU time with
  one torch thread (two threads: in the execution options).
* **Simulator** ``navier_stokes2d`` (``nu = 1e-3``, forcing 0.1 at wavenumber 4): one
  trajectory from its random initial state to each ``t_end``, timed at every ``t_end``
  (its step is CFL-adaptive, ``dt = min(cfl dx / max|u|, dt_max)``, so the number of
  steps is not a fixed multiple of ``t_end`` and nothing is extrapolated). The numpy
  simulator runs on one core, so the headline speedup is the ratio of CPU seconds,
  simulator against the one-thread generator (per core, and robust when the CPU is
  shared); wall-time ratios are given beside it.
* **Execution options** at N = 128: ``no_grad`` vs ``inference_mode``, channels-last
  weights, one vs two threads, batch size, ``torch.compile``; bf16 autocast only on CPUs
  with native bf16 (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``).
* **End to end**: ``surrogate.generate.generate`` writing an HDF5 file (Navier–Stokes,
  128^2, 11 snapshots per trajectory: vorticity + velocity are 192 KiB per snapshot)
  from a one-step run directory of each architecture, against the write-bandwidth bound
  (the same number of bytes written sequentially and fsynced in the same directory).

Writes ``benchmarks/results/lean_generator_<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import simulators
from benchmarks.gan_throughput import _unit_normalizer
from benchmarks.output import RESULTS, write_results
from simulators.store import StoreSchema
from surrogate.constraints import OutputHeads
from surrogate.data import ConditionEncoder, n_channels
from surrogate.flops import generator_flops, heads_fft_flops
from surrogate.models import Generator, ModelConfig

SYSTEM = "navier_stokes2d"
PARAMETERS = {"nu": 1e-3, "forcing_amplitude": 0.1, "forcing_wavenumber": 4.0}
#: (arch, width, batch) of the two generators compared: the default generator at the
#: width of the measured 39x, the lean one at the training default width
GENERATORS = (("default", 16, 16), ("lean", 32, 64))


def native_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def _heads(resolution: int) -> tuple[OutputHeads, StoreSchema, ConditionEncoder]:
    simulator = simulators.get(SYSTEM)
    times = np.array([0.0, 10.0])
    schema = StoreSchema.from_simulator(simulator, simulator.make_grid(resolution), times,
                                        init="random")
    heads = OutputHeads.from_schema(schema, _unit_normalizer(schema))
    return heads, schema, ConditionEncoder.from_schema(schema)


def _config(arch: str, width: int, heads: OutputHeads, schema: StoreSchema,
            encoder: ConditionEncoder) -> ModelConfig:
    return ModelConfig.for_resolution(schema.resolution, heads.raw_channels,
                                      n_channels(schema.fields), encoder.dim, width=width,
                                      arch=arch, output_noise=arch == "lean")


def _best(call: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Best wall and best process-CPU seconds of ``repeats`` calls after a warm-up."""
    call()
    wall = cpu = np.inf
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall = min(wall, time.perf_counter() - start_wall)
        cpu = min(cpu, time.process_time() - start_cpu)
    return float(wall), float(cpu)


def field_seconds(generator: Generator, heads: OutputHeads, batch: int, *, threads: int,
                  repeats: int, mode: str = "inference_mode",
                  autocast: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds per field of ``heads(generator(z, c), c)`` on batches of
    ``batch``, with ``threads`` torch threads."""
    config = generator.config
    noise = torch.randn(batch, config.noise_dim)
    condition = torch.zeros(batch, config.condition_dim)
    context = torch.inference_mode if mode == "inference_mode" else torch.no_grad
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def call() -> None:
        with context(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            heads(generator(noise, condition), condition)
    try:
        wall, cpu = _best(call, repeats)
    finally:
        torch.set_num_threads(previous)
    return wall / batch, cpu / batch


def simulator_seconds(resolution: int, t_end: float) -> tuple[float, float]:
    """(wall, CPU) seconds of one trajectory from its random initial state to ``t_end``."""
    simulator = simulators.get(SYSTEM)
    grid = simulator.make_grid(resolution)
    batch = {name: np.array([value])
             for name, value in simulator.resolve_parameters(PARAMETERS).items()}
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    simulator.simulate(batch, grid, np.array([0.0, t_end]), [0])
    return time.perf_counter() - start_wall, time.process_time() - start_cpu


def speed(resolutions: Sequence[int], t_ends: Sequence[float], repeats: int
          ) -> dict[str, Any]:
    """FLOPs and seconds per field of both generators, and the simulator at every t_end."""
    rows = []
    for resolution in resolutions:
        heads, schema, encoder = _heads(resolution)
        row: dict[str, Any] = {"resolution": resolution,
                               "heads_fft_flops_estimate": heads_fft_flops(heads),
                               "generators": {}, "simulator": {}}
        for arch, width, batch in GENERATORS:
            config = _config(arch, width, heads, schema, encoder)
            torch.manual_seed(0)
            generator = Generator(config).eval().requires_grad_(False)
            one_wall, one_cpu = field_seconds(generator, heads, batch, threads=1,
                                              repeats=repeats)
            row["generators"][arch] = {
                "width": width, "batch": batch, "flops": generator_flops(config),
                "parameters": sum(p.numel() for p in generator.parameters()),
                "seconds_per_field_1_thread": one_wall, "cpu_seconds_per_field_1_thread":
                one_cpu}
            print(f"  N={resolution} {arch}: {one_cpu * 1e3:.3f} CPU ms/field", flush=True)
        for t_end in t_ends:
            wall, cpu = simulator_seconds(resolution, t_end)
            entry: dict[str, Any] = {"seconds": wall, "cpu_seconds": cpu, "speedup": {}}
            for arch, numbers in row["generators"].items():
                entry["speedup"][arch] = {
                    "per_core_cpu": cpu / numbers["cpu_seconds_per_field_1_thread"],
                    "wall_1_thread": wall / numbers["seconds_per_field_1_thread"]}
            row["simulator"][f"{t_end:g}"] = entry
            print(f"  N={resolution} t_end={t_end:g}: simulator {cpu:.3g} CPU s; lean "
                  f"{entry['speedup']['lean']['per_core_cpu']:.0f}x, default "
                  f"{entry['speedup']['default']['per_core_cpu']:.0f}x", flush=True)
        rows.append(row)
    return {"rows": rows}


def execution_options(repeats: int, compile_lean: bool) -> list[dict[str, Any]]:
    """Seconds per 128^2 field of both generators under each execution option."""
    heads, schema, encoder = _heads(128)
    rows = []
    for arch, width, batch in GENERATORS:
        config = _config(arch, width, heads, schema, encoder)
        torch.manual_seed(0)
        generator = Generator(config).eval().requires_grad_(False)
        cases: list[tuple[str, Generator, dict[str, Any]]] = [
            ("inference_mode", generator, {}),
            ("no_grad", generator, {"mode": "no_grad"})]
        batches = (4, 16, 64) if arch == "default" else (16, 64, 256)
        cases += [(f"batch {b}", generator, {"batch": b}) for b in batches if b != batch]
        channels_last = Generator(config).eval().requires_grad_(False)
        channels_last.load_state_dict(generator.state_dict())
        cases.append(("channels_last weights",
                      channels_last.to(memory_format=torch.channels_last), {}))
        if native_bf16():
            cases.append(("bf16 autocast", generator, {"autocast": True}))
        for name, model, options in cases:
            size = options.pop("batch", batch)
            for threads in (1, 2):
                wall, cpu = field_seconds(model, heads, size, threads=threads,
                                          repeats=repeats, **options)
                rows.append({"arch": arch, "option": name, "batch": size, "threads": threads,
                             "seconds_per_field": wall, "cpu_seconds_per_field": cpu})
        if arch == "lean" and compile_lean:
            start = time.perf_counter()
            compiled = torch.compile(generator)
            try:
                field_seconds(compiled, heads, batch, threads=1, repeats=1)
            except Exception as error:          # recorded in the results, not fatal
                rows.append({"arch": arch, "option": "torch.compile", "batch": batch,
                             "error": str(error).splitlines()[0][:200]})
                continue
            compile_seconds = time.perf_counter() - start
            for threads in (1, 2):
                wall, cpu = field_seconds(compiled, heads, batch, threads=threads,
                                          repeats=repeats)
                rows.append({"arch": arch, "option": "torch.compile", "batch": batch,
                             "threads": threads, "seconds_per_field": wall,
                             "cpu_seconds_per_field": cpu,
                             "compile_seconds": compile_seconds})
        print(f"  execution options of {arch}: done", flush=True)
    return rows


def _write_bandwidth(directory: Path, size: int) -> float:
    """Bytes per second of writing ``size`` bytes sequentially and fsyncing them."""
    payload = np.random.default_rng(0).bytes(min(size, 1 << 24))
    path = directory / "bandwidth.bin"
    start = time.perf_counter()
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            chunk = payload[:size - written]
            handle.write(chunk)
            written += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - start
    path.unlink()
    return size / seconds


def end_to_end(directory: Path, trajectories: int) -> dict[str, Any]:
    """``generate`` of ``trajectories`` x 11 snapshots at 128^2 per architecture."""
    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.generate import generate
    from surrogate.train import TrainConfig, train
    spec = SweepSpec(SYSTEM, 8, resolution=128, seed=0, t_end=10.0, n_snapshots=11,
                     ranges={"nu": (1e-3, 2e-3)},
                     fixed={"forcing_amplitude": 0.1, "forcing_wavenumber": 4})
    data = run_sweep(spec, directory / "train.h5", progress=False)
    result: dict[str, Any] = {"trajectories": trajectories, "snapshots_per_trajectory": 11}
    for arch, width, batch in GENERATORS:
        run = directory / f"run_{arch}"
        train(data, run, TrainConfig(steps=1, batch_size=2, width=width, arch=arch,
                                     temporal_weight=0.0, validate_every=1000,
                                     sample_every=1000, validation_samples=2),
              progress=False)
        output = directory / f"generated_{arch}.h5"
        start = time.perf_counter()
        generate(run, output, parameters={"nu": 1e-3}, n=trajectories, checkpoint="last",
                 device="cpu", batch_size=max(batch, 11) // 11 * 11, seed=0)
        seconds = time.perf_counter() - start
        size = output.stat().st_size
        bandwidth = _write_bandwidth(directory, size)
        fields = trajectories * 11
        result[arch] = {"seconds": seconds, "file_bytes": size,
                        "seconds_per_field": seconds / fields,
                        "write_bandwidth_bytes_per_second": bandwidth,
                        "fraction_of_write_bound": size / seconds / bandwidth}
        output.unlink()
        print(f"  end to end {arch}: {seconds:.2f} s for {fields} fields", flush=True)
    return result


def machine() -> dict[str, Any]:
    return {"name": f"cpu-{os.cpu_count()}core", "platform": platform.platform(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "native_bf16": native_bf16(),
            "date": time.strftime("%Y-%m-%d"),
            # 1-minute load average when the run started: near 0 on idle cores, about the
            # number of busy processes when other work shares them
            "load_average_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def measure(resolutions: Sequence[int] = (64, 128, 256),
            t_ends: Sequence[float] = (1.0, 10.0, 100.0), repeats: int = 3,
            compile_lean: bool = True, trajectories: int = 16) -> dict[str, Any]:
    """Every part of this benchmark, in one process (see the module docstring)."""
    start = time.perf_counter()
    print("lean generator: speed ...", flush=True)
    result: dict[str, Any] = {"machine": machine(), "speed": speed(resolutions, t_ends,
                                                                   repeats)}
    print("lean generator: execution options ...", flush=True)
    result["execution_options"] = execution_options(repeats, compile_lean)
    print("lean generator: end to end ...", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        result["end_to_end"] = end_to_end(Path(directory), trajectories)
    result["wall_seconds"] = time.perf_counter() - start
    return result


def _crossover(row: dict[str, Any], arch: str) -> str:
    """The simulated time at which the simulator costs what one generated field does."""
    times = sorted(row["simulator"], key=float)
    per_field = row["generators"][arch]["cpu_seconds_per_field_1_thread"]
    t_values = np.array([float(t) for t in times])
    costs = np.array([row["simulator"][t]["cpu_seconds"] for t in times])
    if costs[0] > per_field:
        # below the first t_end: the cost's fixed part (setup) alone exceeds a field
        return f"< {t_values[0]:g}"
    slope = np.polyfit(t_values, costs, 1)
    return f"{(per_field - slope[1]) / slope[0]:.2g}"


def _load(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}"


def markdown(result: dict[str, Any]) -> str:
    """Tables of :func:`measure`'s result."""
    info = result["machine"]
    lines = [f"Machine: {info['name']} ({info['processor'] or info['platform']}), torch "
             f"{info['torch']}, {info['date']}; native bf16: "
             f"{'yes' if info['native_bf16'] else 'no'}; 1-minute load average at the "
             f"start {_load(info.get('load_average_start'))} on {info['cpu_count']} cores "
             f"(near 0: idle; other work on the cores inflates absolute times, not the "
             f"ratios, which are from this one run). Per-core speedups are ratios of process "
             f"CPU seconds (numpy simulator, one core, against the one-thread generator + "
             f"heads).", ""]
    rows = result["speed"]["rows"]
    lines += ["| N | generator | width | MFLOP/field | heads FFT MFLOP (est.) | "
              "CPU ms/field (1 thread) | wall ms/field (1 thread) |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        for arch, numbers in row["generators"].items():
            lines.append(
                f"| {row['resolution']} | {arch} | {numbers['width']} | "
                f"{numbers['flops'] / 1e6:.1f} | {row['heads_fft_flops_estimate'] / 1e6:.1f} |"
                f" {numbers['cpu_seconds_per_field_1_thread'] * 1e3:.3g} | "
                f"{numbers['seconds_per_field_1_thread'] * 1e3:.3g} |")
    lines += ["", "| N | t_end | simulator CPU s | speedup per core: lean | default | "
              "lean / default | wall speedup lean (1 thread) |",
              "|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        for t_end, entry in row["simulator"].items():
            lean, default = entry["speedup"]["lean"], entry["speedup"]["default"]
            lines.append(
                f"| {row['resolution']} | {t_end} | {entry['cpu_seconds']:.3g} | "
                f"{lean['per_core_cpu']:.3g}x | {default['per_core_cpu']:.3g}x | "
                f"{lean['per_core_cpu'] / default['per_core_cpu']:.3g} | "
                f"{lean['wall_1_thread']:.3g}x |")
    lines += ["", "Crossover (simulated time at which one simulated snapshot costs one "
              "generated field, per core, linear fit of the simulator's cost in t_end): "
              + "; ".join(f"N = {row['resolution']}: lean t = {_crossover(row, 'lean')}, "
                          f"default t = {_crossover(row, 'default')}" for row in rows), ""]
    lines += ["| generator (128^2) | option | batch | threads | CPU ms/field | wall ms/field |",
              "|---|---|---:|---:|---:|---:|"]
    for entry in result["execution_options"]:
        if "error" in entry:
            lines.append(f"| {entry['arch']} | {entry['option']}: failed ({entry['error']}) "
                         f"| {entry['batch']} | | | |")
            continue
        extra = (f" (compile {entry['compile_seconds']:.0f} s)"
                 if "compile_seconds" in entry else "")
        lines.append(f"| {entry['arch']} | {entry['option']}{extra} | {entry['batch']} | "
                     f"{entry['threads']} | {entry['cpu_seconds_per_field'] * 1e3:.3g} | "
                     f"{entry['seconds_per_field'] * 1e3:.3g} |")
    e2e = result["end_to_end"]
    lines += ["", f"End to end (`surrogate.generate`, 128^2, {e2e['trajectories']} "
              f"trajectories x {e2e['snapshots_per_trajectory']} snapshots, HDF5 written):",
              "", "| generator | s | ms/field | MB written | write bound MB/s | "
              "fraction of the write bound |", "|---|---:|---:|---:|---:|---:|"]
    for arch, _, _ in GENERATORS:
        entry = e2e[arch]
        lines.append(f"| {arch} | {entry['seconds']:.2f} | "
                     f"{entry['seconds_per_field'] * 1e3:.3g} | {entry['file_bytes'] / 1e6:.1f}"
                     f" | {entry['write_bandwidth_bytes_per_second'] / 1e6:.0f} | "
                     f"{entry['fraction_of_write_bound']:.3g} |")
    lines.append(f"\nWall time of the benchmark: {result['wall_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lean_generator",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--t-ends", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trajectories", type=int, default=16,
                        help="trajectories of the end-to-end generation (16)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--output", metavar="FILE.json", default=None)
    args = parser.parse_args(argv)
    result = measure(args.resolutions, args.t_ends, args.repeats, not args.no_compile,
                     args.trajectories)
    output = (Path(args.output) if args.output else
              RESULTS / f"lean_generator_{result['machine']['name']}.json")
    write_results(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
