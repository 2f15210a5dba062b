"""Gray–Scott: our pseudo-spectral ETDRK4 solver against py-pde at matched accuracy.

Run: ``python -m benchmarks.gray_scott_vs_pypde [--t-end 200] [--repeats 3]``.
Writes ``benchmarks/results/gray_scott_vs_pypde.json`` and prints Markdown tables.

Problem (the one of ``tests/simulators/test_gray_scott.py``): the default box
``L = 0.5`` and parameters (``F = 0.037, k = 0.06, D_u = 2e-5, D_v = 1e-5``), the smooth
initial state ``u = 1 - b/2, v = b/4``, ``b = (1 + cos(2 pi x/L))(1 + cos(2 pi y/L))/4``,
integrated to ``t_end`` (default 200: the bump sharpens into a spot ring and splits).

Reference: our solver at ``N = 128`` with ``dt_max = 1/8``; its difference from
``N = 256, dt_max = 1/16`` is recorded (``reference_self_difference``, ~1e-8), far below
every error measured here. The error of a candidate is the max-norm difference over
both fields at ``t_end`` on the candidate's own grid points, where the reference is
evaluated by its (exact) Fourier interpolant.

Candidates, all run here in the same process, one trajectory each:

* ours: ``GrayScott(dt_max).simulate`` at ``N`` in {32, 64, 128} and ``dt_max`` in
  {0.5, ..., 8}, timed end to end (initial transforms, ETDRK4 coefficients,
  stepping, output), numpy FFTs, one thread.
* py-pde: ``PDE`` with the equations as expression strings on a periodic
  ``CartesianGrid`` (second-order finite differences), numba backend (py-pde's
  default) on one thread like ours (``backend.numba.multithreading = "never"``: with
  py-pde's default, grids of 256^2 points or more run multithreaded, and on the
  2-core machine of the recorded run a 256^2 Euler step then took 32 ms instead of
  0.23 ms), with its explicit
  ``EulerSolver`` and ``RungeKuttaSolver`` (order 5(4)) at fixed steps: the largest
  ``dt`` that divides ``t_end`` and is at most 0.9 (Euler) or 1.0 (Runge–Kutta) times
  the stability limit ``dx^2 / (4 D_u)`` of explicit Euler (larger Euler steps blow up;
  the time error is then below the spatial one), ``N`` in {64, 128, 256, 512}
  (Runge–Kutta up to 256). Timed: the compiled stepper
  (``solver.make_stepper``) from ``t = 0`` to ``t_end``, after a warm-up call that
  compiles it; the build + compile time (numba, 20–50 s per solver and grid, most of
  the benchmark's ~6 minutes) is recorded separately (``setup_seconds``).

Matched accuracy: for each error target, the fastest candidate of each code whose
error is at most the target, and the ratio of their times (``speedup`` = py-pde time /
our time). Timings are medians of ``--repeats`` runs (a single run for py-pde runs
longer than 2 s), taken in one process; on a shared CPU they are for ratios, absolute
numbers are for orientation only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.output import RESULTS
from simulators.gray_scott import GrayScott

PARAMETERS = {"feed": 0.037, "kill": 0.06, "diffusivity_u": 2e-5, "diffusivity_v": 1e-5}
BOX = GrayScott.default_box_size
OUR_RESOLUTIONS = (32, 64, 128)
OUR_STEPS = (8.0, 4.0, 2.0, 1.0, 0.5)
PYPDE_RESOLUTIONS = {"euler": (64, 128, 256, 512), "runge-kutta": (128, 256)}
#: fixed py-pde step as a fraction of the explicit stability limit dx^2 / (4 D_u)
PYPDE_STEP_FRACTION = {"euler": 0.9, "runge-kutta": 1.0}
ERROR_TARGETS = (2e-2, 1e-2, 5e-3, 2e-3, 1e-3, 5e-4)


def smooth_bump(resolution: int) -> dict[str, np.ndarray]:
    """The initial state on an ``N x N`` grid, points ``x_i = i L / N``."""
    x = np.arange(resolution) * BOX / resolution
    bump = np.outer(1 + np.cos(2 * np.pi * x / BOX), 1 + np.cos(2 * np.pi * x / BOX)) / 4
    return {"u": 1.0 - 0.5 * bump, "v": 0.25 * bump}


def run_ours(resolution: int, dt_max: float, t_end: float) -> tuple[np.ndarray, float]:
    """Our solution ``(2, N, N)`` (u, v) at ``t_end`` and the seconds it took."""
    simulator = GrayScott(dt_max=dt_max)
    grid = simulator.make_grid(resolution)
    batch = {name: np.array([value]) for name, value in PARAMETERS.items()}
    start = time.perf_counter()
    out = simulator.simulate(batch, grid, np.array([t_end]), [0],
                             initial_state=smooth_bump(resolution))
    seconds = time.perf_counter() - start
    return np.stack([out["u"][0, -1], out["v"][0, -1]]), seconds


def fourier_resample(fields: np.ndarray, resolution: int) -> np.ndarray:
    """Values of the trigonometric interpolant of ``fields`` (..., M, M) on an N x N grid.

    ``N <= M``: every ``M / N``-th point. ``N > M``: zero-padding of the spectrum (the
    reference is resolved to ~1e-8, so its Nyquist modes are negligible).
    """
    m = fields.shape[-1]
    if resolution <= m:
        step = m // resolution
        return fields[..., ::step, ::step]
    spectrum = np.fft.fft2(fields)
    padded = np.zeros((*fields.shape[:-2], resolution, resolution), dtype=complex)
    half = m // 2
    for rows_from, rows_to in ((slice(0, half), slice(0, half)),
                               (slice(m - half, m), slice(resolution - half, resolution))):
        for cols_from, cols_to in ((slice(0, half), slice(0, half)),
                                   (slice(m - half, m), slice(resolution - half, resolution))):
            padded[..., rows_to, cols_to] = spectrum[..., rows_from, cols_from]
    return np.fft.ifft2(padded).real * (resolution / m) ** 2


def pypde_problem(resolution: int):
    """The reference problem stated in py-pde: ``(initial FieldCollection, PDE)``.

    The same equations as expression strings with :data:`PARAMETERS`, a periodic
    ``CartesianGrid`` of side :data:`BOX` and the :func:`smooth_bump` arrays. py-pde puts
    its cells at ``(i + 1/2) dx``, ours at ``i dx``; the problem is translation invariant,
    so the same arrays give the same arrays.
    """
    import pde
    grid = pde.CartesianGrid([[0.0, BOX], [0.0, BOX]], [resolution, resolution],
                             periodic=True)
    start_state = smooth_bump(resolution)
    state = pde.FieldCollection([pde.ScalarField(grid, start_state["u"], label="u"),
                                 pde.ScalarField(grid, start_state["v"], label="v")])
    equations = pde.PDE({"u": "Du * laplace(u) - u * v**2 + F * (1 - u)",
                         "v": "Dv * laplace(v) + u * v**2 - (F + k) * v"},
                        consts={"Du": PARAMETERS["diffusivity_u"],
                                "Dv": PARAMETERS["diffusivity_v"],
                                "F": PARAMETERS["feed"], "k": PARAMETERS["kill"]})
    return state, equations


def py_pde_candidate(solver_name: str, resolution: int, t_end: float, repeats: int) -> dict:
    """One py-pde run: its solution (2, N, N) at ``t_end``, timings and step count."""
    import pde
    from pde.solvers import EulerSolver, RungeKuttaSolver

    pde.config["backend.numba.multithreading"] = "never"
    state, equations = pypde_problem(resolution)
    limit = (BOX / resolution) ** 2 / (4 * PARAMETERS["diffusivity_u"])
    steps = int(np.ceil(t_end / (PYPDE_STEP_FRACTION[solver_name] * limit)))
    dt = t_end / steps                       # py-pde takes round(t_end / dt) fixed steps
    solver = {"euler": EulerSolver, "runge-kutta": RungeKuttaSolver}[solver_name](equations)
    start = time.perf_counter()
    stepper = solver.make_stepper(state, dt)
    stepper(state.copy(), 0.0, dt)                       # compiles the stepping loop
    setup = time.perf_counter() - start
    samples: list[float] = []
    while len(samples) < repeats and (not samples or samples[0] < 2.0):
        evolving = state.copy()
        start = time.perf_counter()
        stepper(evolving, 0.0, t_end)
        samples.append(time.perf_counter() - start)
    solution = np.stack([evolving[0].data, evolving[1].data])
    return {"code": "py-pde", "solver": solver_name, "resolution": resolution, "dt": dt,
            "steps": steps, "seconds": statistics.median(samples),
            "setup_seconds": setup, "solution": solution}


def matched(rows: list[dict]) -> list[dict]:
    """For each error target, the fastest candidate of each code within it."""
    table = []
    for target in ERROR_TARGETS:
        best = {}
        for code in ("ours", "py-pde"):
            within = [r for r in rows if r["code"] == code and r["error"] <= target]
            best[code] = min(within, key=lambda r: r["seconds"]) if within else None
        entry = {"error_target": target}
        for code, row in best.items():
            entry[code] = None if row is None else {k: row[k] for k in row if k != "solution"}
        if best["ours"] and best["py-pde"]:
            entry["speedup"] = best["py-pde"]["seconds"] / best["ours"]["seconds"]
        table.append(entry)
    return table


def machine_info() -> dict:
    """Platform, CPU count and library versions of this run."""
    import numba
    import pde
    import scipy
    return {"platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "py-pde": pde.__version__,
            "numba": numba.__version__,
            "py-pde_multithreading": pde.config["backend.numba.multithreading"]}


def _fmt_row(row: dict | None) -> str:
    if row is None:
        return "– | – | –"
    if row["code"] == "ours":
        config = f"N={row['resolution']}, dt={row['dt']:g}"
    else:
        config = f"{row['solver']}, N={row['resolution']}, dt={row['dt']:.3g}"
    return f"{config} | {row['error']:.2e} | {1e3 * row['seconds']:.1f}"


def markdown(result: dict) -> str:
    """Matched-accuracy table and the full candidate list."""
    lines = ["| error target | ours (config) | ours error | ours (ms) | py-pde (config) "
             "| py-pde error | py-pde (ms) | speedup |",
             "|---:|---|---:|---:|---|---:|---:|---:|"]
    for entry in result["matched_accuracy"]:
        speedup = f"{entry['speedup']:.1f}x" if "speedup" in entry else "–"
        lines.append(f"| {entry['error_target']:.0e} | {_fmt_row(entry['ours'])} "
                     f"| {_fmt_row(entry['py-pde'])} | {speedup} |")
    lines += ["", "| code | solver | N | dt | steps | error | seconds |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for row in result["candidates"]:
        lines.append(f"| {row['code']} | {row['solver']} | {row['resolution']} "
                     f"| {row['dt']:.3g} | {row['steps']} | {row['error']:.2e} "
                     f"| {row['seconds']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, write the JSON file, print the tables; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t-end", type=float, default=200.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "gray_scott_vs_pypde.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)

    reference, _ = run_ours(128, 1 / 8, args.t_end)
    finer, _ = run_ours(256, 1 / 16, args.t_end)
    self_difference = float(np.abs(finer[:, ::2, ::2] - reference).max())

    rows = []
    for resolution in OUR_RESOLUTIONS:
        for dt_max in OUR_STEPS:
            run_ours(resolution, dt_max, args.t_end)                      # warm caches
            samples = []
            for _ in range(args.repeats):
                solution, seconds = run_ours(resolution, dt_max, args.t_end)
                samples.append(seconds)
            rows.append({"code": "ours", "solver": "etdrk4", "resolution": resolution,
                         "dt": dt_max, "steps": int(np.ceil(args.t_end / dt_max)),
                         "seconds": statistics.median(samples), "solution": solution})
    for solver_name, resolutions in PYPDE_RESOLUTIONS.items():
        for resolution in resolutions:
            rows.append(py_pde_candidate(solver_name, resolution, args.t_end, args.repeats))
            print(f"py-pde {solver_name} N={resolution}: {rows[-1]['seconds']:.3f} s "
                  f"(setup {rows[-1]['setup_seconds']:.0f} s)", file=sys.stderr, flush=True)
    for row in rows:
        exact = fourier_resample(reference, row["resolution"])
        row["error"] = float(np.abs(row["solution"] - exact).max())

    result = {"benchmark": "gray_scott_vs_pypde", "machine": machine_info(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "problem": {"parameters": PARAMETERS, "box_size": BOX, "t_end": args.t_end,
                          "initial_state": "u = 1 - b/2, v = b/4, "
                                           "b = (1 + cos 2pi x/L)(1 + cos 2pi y/L)/4",
                          "error": "max |candidate - reference| over u and v at t_end"},
              "reference": {"resolution": 128, "dt_max": 1 / 8,
                            "reference_self_difference": self_difference},
              "repeats": args.repeats,
              "candidates": [{k: v for k, v in row.items() if k != "solution"}
                             for row in rows],
              "matched_accuracy": matched(rows)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(args.output)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
