"""Sweep throughput: trajectories per second with 1 and 2 workers, and MB/s written.

Run: ``python -m benchmarks.sweep_throughput [--system navier_stokes2d] [-n 16]``.
Writes ``benchmarks/results/sweep_throughput.json`` and prints a Markdown table. Both
worker counts run in the same process on the same machine, so their ratio is
meaningful even on a shared CPU; absolute numbers are for orientation only.
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

from benchmarks.output import RESULTS
from simulators.store import FieldStore
from simulators.sweep import SweepSpec, run_sweep


def measure(spec: SweepSpec, workers: int, directory: Path) -> dict:
    path = directory / f"sweep_{workers}.h5"
    start = time.perf_counter()
    run_sweep(spec, path, workers=workers, progress=False, overwrite=True)
    seconds = time.perf_counter() - start
    with FieldStore(path) as store:
        field_bytes = sum(int(np.prod(store.dataset(n).shape)) * 4 for n in store.field_names)
    return {"workers": workers, "seconds": seconds,
            "trajectories_per_second": spec.n_trajectories / seconds,
            "field_megabytes": field_bytes / 1e6, "file_megabytes": path.stat().st_size / 1e6,
            "megabytes_per_second": field_bytes / 1e6 / seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="navier_stokes2d")
    parser.add_argument("-n", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--t-end", type=float, default=10.0)
    parser.add_argument("--snapshots", type=int, default=11)
    args = parser.parse_args(argv)
    spec = SweepSpec(args.system, args.n, resolution=args.resolution, t_end=args.t_end,
                     n_snapshots=args.snapshots, seed=0)
    with tempfile.TemporaryDirectory() as directory:
        rows = [measure(spec, workers, Path(directory)) for workers in (1, 2)]
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "processor": platform.processor()},
              "spec": json.loads(spec.key()), "rows": rows,
              "speedup_2_vs_1_workers": rows[0]["seconds"] / rows[1]["seconds"]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"| workers | trajectories/s | MB/s written | seconds |  ({args.system}, "
          f"{args.n} x {args.snapshots} snapshots at {args.resolution}^2)")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['workers']} | {row['trajectories_per_second']:.2f} | "
              f"{row['megabytes_per_second']:.1f} | {row['seconds']:.2f} |")
    print(f"speedup 2 vs 1 workers: {result['speedup_2_vs_1_workers']:.2f}x")
    return result


if __name__ == "__main__":
    main()
