"""Validation throughput and memory: ``validate_files`` on n vs n fields of 128^2.

Run: ``python -m benchmarks.validation_throughput [--sizes 250 1000] [--resolution 128]``.

For each size ``n`` it writes a reference file of ``n`` Gaussian random fields (one
snapshot each, a Sobol sweep of ``spectral_index``, so every field is its own condition:
the per-condition machinery is fully exercised) and a second file with the same
parameters and new seeds, then validates one against the other in a fresh subprocess
and records the wall time of the comparison, of writing the report (figures included),
and the subprocess's peak resident memory. Memory that stays flat while ``n`` grows shows
that the comparison streams (one trajectory in memory at a time, bounded samples).
Writes ``benchmarks/results/validation_throughput.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np

import simulators
from benchmarks.output import RESULTS
from benchmarks.peak_memory import run_child
from simulators.store import FieldStore
from simulators.sweep import SweepSpec, run_sweep

_CHILD = """
import json, sys, time
from benchmarks.peak_memory import peak_megabytes
from surrogate.validation.report import validate_files, write_report

reference, generated, out = sys.argv[1:4]
start = time.perf_counter()
result = validate_files(reference, generated)
compared = time.perf_counter() - start
start = time.perf_counter()
write_report(result, out)
written = time.perf_counter() - start
print(json.dumps({"validate_seconds": compared, "report_seconds": written,
                  "peak_rss_megabytes": peak_megabytes(),
                  "passed": result.passed}))
"""


def make_pair(directory: Path, n: int, resolution: int) -> tuple[Path, Path]:
    """Reference file and a re-seeded copy with the same parameters."""
    spec = SweepSpec("gaussian_random_field", n, resolution=resolution, seed=0,
                     ranges={"spectral_index": (2.0, 3.5)}, fixed={"amplitude": 0.2})
    reference = run_sweep(spec, directory / f"reference_{n}.h5", progress=False,
                          overwrite=True)
    generated = directory / f"generated_{n}.h5"
    shutil.copyfile(reference, generated)
    simulator = simulators.get("gaussian_random_field")
    with FieldStore(reference) as store:
        parameters, grid, times = store.parameters(), store.schema.grid, store.times
    with h5py.File(generated, "r+") as handle:
        for start in range(0, n, 100):
            stop = min(start + 100, n)
            chunk = {name: values[start:stop] for name, values in parameters.items()}
            fields = simulator.simulate(chunk, grid, times, list(range(10**6 + start,
                                                                       10**6 + stop)))
            for name, values in fields.items():
                handle[f"t0_fields/{name}"][start:stop] = values.astype(np.float32)
    return reference, generated


def measure(directory: Path, n: int, resolution: int) -> dict:
    reference, generated = make_pair(directory, n, resolution)
    row = run_child(_CHILD, str(reference), str(generated), str(directory / f"report_{n}"))
    field_bytes = 2 * n * resolution * resolution * 4 * 2          # two files, two fields
    row.update({"fields_per_file": n, "resolution": resolution,
                "field_megabytes_both_files": field_bytes / 1e6,
                "fields_per_second": 2 * n / row["validate_seconds"]})
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        rows = [measure(Path(directory), n, args.resolution) for n in args.sizes]
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "processor": platform.processor()},
              "system": "gaussian_random_field (fields delta and density)", "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "validation_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| fields per file | grid | validate s | report s | fields/s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['fields_per_file']} | {row['resolution']}^2 | "
              f"{row['validate_seconds']:.1f} | {row['report_seconds']:.1f} | "
              f"{row['fields_per_second']:.0f} | {row['peak_rss_megabytes']:.0f} |")
    return result


if __name__ == "__main__":
    main()
