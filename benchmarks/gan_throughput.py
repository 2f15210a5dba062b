"""Generator throughput vs the simulator, and training throughput, measured in one run.

Run: ``python -m benchmarks.gan_throughput [--resolutions 64 128] [--device auto]``.

* Simulator: ``navier_stokes2d`` from a random initial state to ``t_end = 10`` (default
  ``nu``, forcing on), one trajectory per call: the cost of producing a snapshot at
  ``t = 10`` is the whole integration.
* Surrogate: the generator of ``ModelConfig.for_resolution`` (default width 32) plus the
  physics heads, batches of 64 conditions, after a warm-up call; weights are untrained
  (speed does not depend on their values).
* Training: images per second of ``Trainer.train_step`` on the committed sample file
  (32^2; default width) with and without bf16 autocast where CUDA is present.

The speedup ``simulator seconds per snapshot / generator seconds per field`` is measured
in the same process; on a shared CPU only ratios are meaningful. Writes
``benchmarks/results/gan_throughput_<device>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import simulators
from benchmarks.output import RESULTS
from simulators.store import StoreSchema
from surrogate.constraints import OutputHeads
from surrogate.data import ConditionEncoder, FieldNormalizer, n_channels
from surrogate.models import Generator, ModelConfig
from surrogate.train import TrainConfig, Trainer, resolve_device


def simulator_seconds(resolution: int, t_end: float | None = None, repeats: int = 2, *,
                      system: str = "navier_stokes2d",
                      parameters: dict[str, float] | None = None) -> float:
    """Best-of-``repeats`` seconds to produce one snapshot at ``t_end`` from scratch.

    One trajectory from its random initial state to ``t_end`` (the system's default when
    ``None``; static systems draw one field); parameters are the declared defaults unless
    given (``navier_stokes2d``: ``nu = 1e-3``, forcing 0.1 at wavenumber 4).
    """
    simulator = simulators.get(system)
    grid = simulator.make_grid(resolution)
    end = simulator.default_t_end if t_end is None else t_end
    times = np.zeros(1) if simulator.static else np.array([0.0, end])
    if parameters is None and system == "navier_stokes2d":
        parameters = {"nu": 1e-3, "forcing_amplitude": 0.1, "forcing_wavenumber": 4.0}
    values = simulator.resolve_parameters(parameters)
    batch = {name: np.array([value]) for name, value in values.items()}
    best = np.inf
    for seed in range(repeats):
        start = time.perf_counter()
        simulator.simulate(batch, grid, times, [seed])
        best = min(best, time.perf_counter() - start)
    return float(best)


def _unit_normalizer(schema: StoreSchema) -> FieldNormalizer:
    stats = {spec.name: ({"mean": 0.0, "std": 1.0, "rms": 1.0, "min": -1.0, "max": 1.0,
                          "log_mean": 0.0, "log_std": 1.0}
                         if spec.rank == 0 else
                         {"mean": np.zeros(2), "std": np.ones(2), "rms": 1.0, "min": -1.0,
                          "max": 1.0}) for spec in schema.fields}
    return FieldNormalizer.from_statistics(schema.fields, schema.invariants, stats)


def generator_seconds_per_field(resolution: int, device: torch.device, width: int,
                                batch: int = 64, repeats: int = 5, amp: bool = False, *,
                                system: str = "navier_stokes2d") -> float:
    """Best-of-``repeats`` seconds per field of the generator + physics heads of ``system``.

    Untrained weights (the cost does not depend on their values); batches of ``batch``
    conditions after a warm-up call; every field of the system is produced.
    """
    simulator = simulators.get(system)
    times = np.zeros(1) if simulator.static else np.array([0.0, simulator.default_t_end])
    schema = StoreSchema.from_simulator(simulator, simulator.make_grid(resolution), times)
    heads = OutputHeads.from_schema(schema, _unit_normalizer(schema)).to(device)
    encoder = ConditionEncoder.from_schema(schema)
    config = ModelConfig.for_resolution(resolution, heads.raw_channels,
                                        n_channels(schema.fields), encoder.dim, width=width)
    generator = Generator(config).to(device).eval()
    condition = torch.zeros(batch, encoder.dim, device=device)
    noise = torch.randn(batch, config.noise_dim, device=device)
    context = (torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda"
               else torch.autocast("cpu", enabled=False))

    def call() -> None:
        with torch.no_grad(), context:
            heads(generator(noise, condition), condition)
        if device.type == "cuda":
            torch.cuda.synchronize()
    call()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return float(best / batch)


def training_images_per_second(device: torch.device, amp: bool, width: int,
                               steps: int = 10, temporal_weight: float = 1.0) -> float:
    """Training steps on the Navier–Stokes sample (32^2, batch 32): images (snapshots of
    the batch) per second; ``temporal_weight`` 0 leaves out the temporal discriminator."""
    with tempfile.TemporaryDirectory() as directory:
        config = TrainConfig(steps=10**6, batch_size=32, width=width, amp=amp,
                             validate_every=10**6, sample_every=10**6,
                             checkpoint_every=10**6, temporal_weight=temporal_weight)
        trainer = Trainer("data/sample_navier_stokes2d.h5", Path(directory) / "run", config,
                          device=str(device), progress=False)
        trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return steps * config.batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--t-end", type=float, default=10.0)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    rows = []
    for resolution in args.resolutions:
        simulated = simulator_seconds(resolution, args.t_end)
        generated = generator_seconds_per_field(resolution, device, args.width)
        row = {"resolution": resolution, "simulator_seconds_per_snapshot": simulated,
               "generator_seconds_per_field": generated,
               "generator_fields_per_second": 1.0 / generated,
               "speedup": simulated / generated}
        if device.type == "cuda":
            amp = generator_seconds_per_field(resolution, device, args.width, amp=True)
            row.update({"generator_seconds_per_field_bf16": amp, "speedup_bf16": simulated / amp})
        rows.append(row)
    training = {"fp32": training_images_per_second(device, False, args.width)}
    if device.type == "cuda":
        training["bf16"] = training_images_per_second(device, True, args.width)
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "processor": platform.processor(), "device": str(device),
                          "gpu": torch.cuda.get_device_name(0) if device.type == "cuda"
                          else None, "torch": torch.__version__},
              "simulator": f"navier_stokes2d, nu = 1e-3, forcing 0.1, t_end = {args.t_end}",
              "generator_width": args.width, "rows": rows,
              "training_images_per_second_32x32_batch32": training}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"gan_throughput_{device.type}.json").write_text(json.dumps(result, indent=2)
                                                                 + "\n")
    print(f"| N | simulator s/snapshot (t_end={args.t_end:g}) | generator fields/s | "
          f"speedup | device |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['resolution']} | {row['simulator_seconds_per_snapshot']:.3g} | "
              f"{row['generator_fields_per_second']:.1f} | {row['speedup']:.0f}x | {device} |")
    print("training images/s (32^2, batch 32): "
          + ", ".join(f"{k} {v:.1f}" for k, v in training.items()))
    return result


if __name__ == "__main__":
    main()
