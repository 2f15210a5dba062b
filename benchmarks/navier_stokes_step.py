"""Navier–Stokes step time next to the time of the FFTs that one step needs.

Run: ``python -m benchmarks.navier_stokes_step [--sizes 64 128 256] [--batch 16]``.
Writes ``benchmarks/results/navier_stokes_step.json`` and prints a Markdown table.

What is timed (``time.perf_counter``, median over repeats, all in one process):

* ``step``: one call of :meth:`VorticityIntegrator.step` (one classic-RK4 Lawson step
  with the CFL speed, 4 stages) for ``B`` trajectories on an ``N x N`` grid; for a
  batch, either all ``B`` in one integrator (one FFT call per stage for all of them,
  ``chunk = B``) or split into chunks of ``NavierStokes2D.chunk_size`` trajectories
  as ``simulate`` does (one call per stage per chunk).
* ``fft``: exactly the transforms that step makes, on the solver's own buffers: per
  stage one inverse real 2-D transform of the 2 velocity components (shape
  ``(B, 2, N, N//2+1) -> (B, 2, N, N)``) and one forward real 2-D transform of the 2
  quadratic products (``(B, 2, N, N) -> (B, 2, N, N//2+1)``), i.e. 4 real 2-D
  transforms of ``N x N`` per stage and trajectory, 16 per step. They are ``numpy.fft``
  1-D passes writing into preallocated arrays, with the x pass pruned to the
  2/3-rule columns (see ``_VorticitySolver.inverse/forward``).
* ``fft_scipy``: the textbook equivalent, ``scipy.fft.irfft2`` + ``scipy.fft.rfft2``
  of the same shapes (full, allocating), 4 pairs per step, for reference.

The ratio ``step / fft`` is the overhead of everything that is not a transform
(spectral multiplies, products, integrating factors, CFL reduction); 1.0 is the floor.
The three timings are interleaved round by round (each action run twice per round,
the second, warm-cache run kept), so machine load affects them alike. Timings on a
shared CPU are for ratios; absolute numbers are for orientation only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.fft

from benchmarks.output import RESULTS
from simulators.grid import PeriodicGrid
from simulators.navier_stokes2d import NavierStokes2D

STAGES = 4
TRANSFORMS_PER_STAGE = 4    # real 2-D N x N transforms per trajectory: 2 inverse + 2 forward


def measure(resolution: int, batch: int, repeats: int, *, chunked: bool) -> dict:
    """Step and FFT times (seconds) for ``batch`` trajectories at ``resolution``^2.

    ``chunked``: split the batch into chunks of ``NavierStokes2D.chunk_size`` as
    ``simulate`` does (one FFT call per stage per chunk); otherwise all trajectories
    go through one FFT call per stage.
    """
    simulator = NavierStokes2D()
    grid = simulator.make_grid(resolution)
    size = simulator.chunk_size(grid) if chunked else batch
    integrators = []
    for start in range(0, batch, size):
        count = min(size, batch - start)
        parameters = {"nu": np.full(count, 1e-3), "forcing_amplitude": np.full(count, 0.5),
                      "forcing_wavenumber": np.full(count, 4)}
        integrators.append(simulator.integrator(parameters, grid,
                                                list(range(start, start + count))))

    def step_all() -> float:
        start = time.perf_counter()
        for integrator in integrators:
            integrator.step()
        return time.perf_counter() - start

    def step_transforms() -> float:
        """Seconds spent in the transforms of one step (inputs refilled untimed)."""
        total = 0.0
        for integrator in integrators:
            solver, state = integrator.solver, integrator.vorticity_hat
            for _ in range(STAGES):
                solver.velocity_hat(state, solver.retained)
                start = time.perf_counter()
                solver.inverse(solver.retained, solver.padded, solver.physical)
                solver.forward(solver.products, solver.padded_forward, solver.retained)
                total += time.perf_counter() - start
        return total

    spectral = [np.array(integrator.solver.padded) for integrator in integrators]
    products = [np.array(integrator.solver.products) for integrator in integrators]

    def scipy_transforms() -> float:
        start = time.perf_counter()
        for spectrum, product in zip(spectral, products, strict=True):
            for _ in range(STAGES):
                scipy.fft.irfft2(spectrum, s=grid.shape, axes=(-2, -1))
                scipy.fft.rfft2(product, axes=(-2, -1))
        return time.perf_counter() - start

    # Interleaved, so that load from other processes hits all three alike; each
    # action runs twice per round and the second run is kept (warm caches, as in a
    # real run, where a step follows a step).
    samples: dict[str, list[float]] = {"step": [], "fft": [], "scipy": []}
    for _ in range(repeats):
        for name, action in (("step", step_all), ("fft", step_transforms),
                             ("scipy", scipy_transforms)):
            action()
            samples[name].append(action())
    step_seconds, fft_seconds, scipy_seconds = (statistics.median(samples[name])
                                                for name in ("step", "fft", "scipy"))
    return {"resolution": resolution, "batch": batch, "chunk": size,
            "repeats": repeats, "step_seconds": step_seconds,
            "step_seconds_per_trajectory": step_seconds / batch,
            "fft_seconds": fft_seconds, "fft_scipy_seconds": scipy_seconds,
            "step_over_fft": step_seconds / fft_seconds,
            "step_over_fft_scipy": step_seconds / scipy_seconds,
            "transforms_per_step": STAGES * TRANSFORMS_PER_STAGE * batch}


def machine_info() -> dict:
    """Platform, CPU count and library versions of this run."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__}


def markdown_table(rows: list[dict]) -> str:
    """The results as a Markdown table (times in milliseconds)."""
    lines = ["| N | B | chunk | step (ms) | step per trajectory (ms) | FFTs of the step (ms) "
             "| step / FFT | scipy rfft2+irfft2 (ms) | step / scipy FFT |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['resolution']} | {row['batch']} | {row['chunk']} "
                     f"| {1e3 * row['step_seconds']:.3f} "
                     f"| {1e3 * row['step_seconds_per_trajectory']:.3f} "
                     f"| {1e3 * row['fft_seconds']:.3f} | {row['step_over_fft']:.2f} "
                     f"| {1e3 * row['fft_scipy_seconds']:.3f} "
                     f"| {row['step_over_fft_scipy']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, write the JSON file, print the table; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batch", type=int, default=16, help="batched trajectory count")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--output", type=Path, default=RESULTS / "navier_stokes_step.json")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        rows.append(measure(size, 1, args.repeats, chunked=False))
        rows.append(measure(size, args.batch, args.repeats, chunked=False))
        if NavierStokes2D.chunk_size(PeriodicGrid(size)) < args.batch:
            rows.append(measure(size, args.batch, args.repeats, chunked=True))
    result = {"benchmark": "navier_stokes_step", "machine": machine_info(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(args.output)
    print(markdown_table(rows))
    return result


if __name__ == "__main__":
    main()
