"""Generation of large virtual datasets: peak memory and throughput vs the number of fields.

Run: ``python -m benchmarks.generation_memory [--sizes 1000 10000 100000] [--resolution 32]``.

A generator is trained for a few steps on a small Gaussian-random-field sweep (its
quality does not matter here: the cost of a generator call does not depend on its
weights), then ``surrogate.generate.generate`` writes ``n`` fields (static system: one
snapshot per trajectory, two field variables) at one condition, each ``n`` in a fresh
subprocess. Recorded per ``n``: wall time, fields per second, bytes written, and the
child's peak resident memory, next to the peak of a child that only loads the model (the
baseline: interpreter, torch, weights). Memory that stays flat while ``n`` grows by 100x
shows that generation streams to disk (one generator call of ``batch_size`` fields in
memory at a time, plus per-trajectory bookkeeping of a few bytes).
Writes ``benchmarks/results/generation_memory.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from benchmarks.output import RESULTS
from benchmarks.peak_memory import run_child
from simulators.sweep import SweepSpec, run_sweep
from surrogate.train import TrainConfig, train

_BASELINE = """
import json, sys
from benchmarks.peak_memory import peak_megabytes
from surrogate.generate import load_surrogate
load_surrogate(sys.argv[1], "last", "cpu")
print(json.dumps({"peak_rss_megabytes": peak_megabytes()}))
"""

_CHILD = """
import json, os, sys, time
from benchmarks.peak_memory import peak_megabytes
from surrogate.generate import generate
run, output, n, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
generate(run, output, parameters={"spectral_index": 2.5}, n=n, checkpoint="last",
         device="cpu", batch_size=batch, seed=1)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_megabytes": peak_megabytes(),
                  "file_megabytes": os.path.getsize(output) / 1e6}))
"""


def make_run(directory: Path, resolution: int, width: int) -> Path:
    """A briefly trained run directory (weights of the right size, quality irrelevant)."""
    spec = SweepSpec("gaussian_random_field", 32, resolution=resolution, seed=0,
                     ranges={"spectral_index": (2.0, 3.0)})
    data = run_sweep(spec, directory / "train.h5", progress=False)
    run = directory / "run"
    train(data, run, TrainConfig(steps=2, batch_size=8, width=width, validate_every=1000,
                                 sample_every=1000, checkpoint_every=2, log_every=1),
          device="cpu", progress=False)
    return run


def measure(run: Path, directory: Path, n: int, batch_size: int) -> dict:
    output = directory / f"generated_{n}.h5"
    row = run_child(_CHILD, str(run), str(output), str(n), str(batch_size))
    output.unlink()
    row.update({"n_fields": n, "fields_per_second": n / row["seconds"]})
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        run = make_run(directory, args.resolution, args.width)
        baseline = run_child(_BASELINE, str(run))["peak_rss_megabytes"]
        rows = [measure(run, directory, n, args.batch_size) for n in args.sizes]
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "processor": platform.processor()},
              "system": "gaussian_random_field (fields delta and density, one snapshot)",
              "resolution": args.resolution, "width": args.width,
              "batch_size": args.batch_size, "baseline_peak_rss_megabytes": baseline,
              "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "generation_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"model loaded, nothing generated: peak RSS {baseline:.0f} MB")
    print("| fields | grid | file MB | seconds | fields/s | peak RSS MB |")
    print("|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['n_fields']} | {args.resolution}^2 | {row['file_megabytes']:.0f} | "
              f"{row['seconds']:.1f} | {row['fields_per_second']:.0f} | "
              f"{row['peak_rss_megabytes']:.0f} |")
    return result


if __name__ == "__main__":
    main()
