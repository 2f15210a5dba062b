"""Ising sampler: Swendsen–Wang speed, autocorrelation vs Metropolis, equilibration.

Run: ``python -m benchmarks.ising_sampler [--sizes 32 64 128] [--quick]``.
Writes ``benchmarks/results/ising_sampler.json`` and prints Markdown tables.

What is measured (all at ``T = T_c`` unless stated, ``J = k_B = 1``, periodic ``N x N``):

* ``throughput``: sweeps per second of :func:`simulators.ising.swendsen_wang_sweep`
  with its random numbers (``Generator.random((3, N, N))`` per trajectory, as in
  ``Ising.simulate``), for one trajectory and for a batch of ``Ising.chunk_size``
  trajectories in one graph (``time.perf_counter``, median of repeats, after
  equilibration). Also at ``T = 1.5`` and ``T = 3.5``, where clusters are fewer or
  smaller. A checkerboard single-spin Metropolis sweep (vectorised numpy, the same
  random-number budget per site) is timed alongside.
* ``autocorrelation``: integrated autocorrelation times ``tau_int`` (in sweeps) of
  ``|m|`` and of ``e`` in equilibrium, Swendsen–Wang vs checkerboard Metropolis, from
  ``R`` independent chains each ``L`` sweeps long (after a long burn-in);
  ``tau_int = 1/2 + sum_{t=1}^{W} rho(t)`` with Sokal's automatic window (smallest
  ``W >= 6 tau_int(W)``), ``rho`` the normalised autocovariance averaged over chains.
  The cost of one independent sample is ``2 tau_int`` sweeps; ``seconds per
  independent sample`` multiplies that by the measured sweep time.
* ``equilibration``: from the hot (``"random"``) and the cold (``"ordered"``) start,
  the mean over ``R`` chains of ``e(t)`` and ``|m|(t)`` after ``t`` sweeps, minus its
  equilibrium value (``e``: Kaufman's exact finite-lattice energy; ``|m|``: the mean
  over the second half of the chains), with its standard error. ``settled`` is the
  first ``t`` after which the deviation stays within 4 standard errors; ``tau_fit`` is
  the decay time of ``|deviation|`` fitted (least squares on its logarithm) over the
  points still above 5 standard errors and below half the initial deviation (see
  :func:`decay_time`; rough for ``|m|`` with few chains). Compared with
  ``default_burn_in(N)``.

Timings on a shared CPU are for orientation; the autocorrelation and equilibration
numbers do not depend on the machine.
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

from benchmarks.output import RESULTS
from simulators.grid import PeriodicGrid
from simulators.ising import (
    CRITICAL_TEMPERATURE,
    Ising,
    default_burn_in,
    energy_per_spin,
    finite_lattice_energy,
    swendsen_wang_sweep,
)


# ------------------------------------------------------------------------ samplers
def _start_spins(rngs: list[np.random.Generator], n: int, start: str) -> np.ndarray:
    """int8 spins ``(len(rngs), n, n)``: all +1 (``"ordered"``) or +-1 with probability 1/2."""
    if start == "ordered":
        return np.ones((len(rngs), n, n), dtype=np.int8)
    return np.stack([np.where(r.random((n, n)) < 0.5, 1, -1).astype(np.int8) for r in rngs])


class SwendsenWang:
    """Batch of ``B`` Swendsen–Wang chains, one ``default_rng`` stream each."""

    name = "swendsen_wang"

    def __init__(self, n: int, batch: int, temperature: float, seed: int,
                 start: str = "random") -> None:
        self.rngs = [np.random.default_rng([seed, b]) for b in range(batch)]
        self.n = n
        self.probability = np.full(batch, -np.expm1(-2.0 / temperature))
        self.spins = _start_spins(self.rngs, n, start)

    def sweep(self) -> None:
        uniforms = np.stack([r.random((3, self.n, self.n)) for r in self.rngs])
        self.spins = swendsen_wang_sweep(self.spins, self.probability, uniforms)


class CheckerboardMetropolis:
    """Batch of single-spin Metropolis chains, updated one sublattice at a time.

    A sweep visits the two checkerboard sublattices in turn; on each, every spin is
    flipped with probability ``min(1, exp(-dE / T))``, ``dE = 2 s_i sum_nn s_j``
    (N. Metropolis et al., J. Chem. Phys. 21, 1087 (1953)). Spins of one sublattice do
    not interact, so updating them together is exactly sequential Metropolis.
    """

    name = "metropolis"

    def __init__(self, n: int, batch: int, temperature: float, seed: int,
                 start: str = "random") -> None:
        self.rngs = [np.random.default_rng([seed, b]) for b in range(batch)]
        self.n = n
        i, j = np.indices((n, n))
        self.sublattices = [((i + j) % 2) == parity for parity in (0, 1)]
        # acceptance for dE = 2 s h, h in {-4, -2, 0, 2, 4}: index (s h + 4) / 2
        self.acceptance = np.minimum(1.0, np.exp(-2.0 * np.arange(-4, 5, 2) / temperature))
        self.spins = _start_spins(self.rngs, n, start)

    def sweep(self) -> None:
        uniforms = np.stack([r.random((2, self.n, self.n)) for r in self.rngs])
        s = self.spins
        for parity, mask in enumerate(self.sublattices):
            field = (np.roll(s, 1, 1) + np.roll(s, -1, 1) + np.roll(s, 1, 2)
                     + np.roll(s, -1, 2))
            accept = uniforms[:, parity] < self.acceptance[(s * field + 4) // 2]
            s = np.where(accept & mask, -s, s).astype(np.int8)
        self.spins = s


SAMPLERS = {cls.name: cls for cls in (SwendsenWang, CheckerboardMetropolis)}


# ---------------------------------------------------------------------- statistics
def integrated_autocorrelation_time(series: np.ndarray, window_factor: float = 6.0
                                    ) -> tuple[float, int]:
    """``tau_int`` (sweeps) of ``series`` ``(R, L)`` (R chains) and the window used.

    Autocovariance by FFT per chain about the overall mean, averaged over chains and
    normalised by its lag-0 value; Sokal's window: the smallest ``W`` with
    ``W >= window_factor * tau_int(W)``.
    """
    x = series - series.mean()
    length = x.shape[1]
    spectrum = np.fft.rfft(x, n=2 * length, axis=1)
    covariance = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :length].mean(axis=0)
    covariance /= length - np.arange(length)
    rho = covariance / covariance[0]
    tau = 0.5 + np.cumsum(rho[1:])
    for window in range(1, length - 1):
        if window >= window_factor * tau[window - 1]:
            return float(tau[window - 1]), window
    return float(tau[-1]), length - 1


def _time_sweeps(sampler, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sampler.sweep()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(n: int, temperature: float, repeats: int) -> list[dict]:
    """Sweep times for one trajectory and for one chunk of trajectories (both samplers)."""
    rows = []
    chunk = Ising.chunk_size(PeriodicGrid(n, float(n)))
    for batch in sorted({1, chunk}):
        for cls in (SwendsenWang, CheckerboardMetropolis):
            sampler = cls(n, batch, temperature, seed=1)
            for _ in range(20):
                sampler.sweep()
            seconds = _time_sweeps(sampler, repeats)
            rows.append({"sampler": cls.name, "resolution": n, "batch": batch,
                         "temperature": temperature, "seconds_per_sweep": seconds,
                         "sweeps_per_second_per_trajectory": batch / seconds,
                         "nanoseconds_per_site": 1e9 * seconds / (batch * n * n)})
    return rows


def autocorrelation(n: int, sampler_name: str, chains: int, length: int, burn_in: int,
                    seconds_per_sweep: float) -> dict:
    """``tau_int`` of ``|m|`` and ``e`` at ``T_c`` from ``chains`` chains of ``length``."""
    sampler = SAMPLERS[sampler_name](n, chains, CRITICAL_TEMPERATURE, seed=2)
    for _ in range(burn_in):
        sampler.sweep()
    absolute_m = np.empty((chains, length))
    energy = np.empty((chains, length))
    for t in range(length):
        sampler.sweep()
        absolute_m[:, t] = np.abs(sampler.spins.mean(axis=(1, 2), dtype=np.float64))
        energy[:, t] = energy_per_spin(sampler.spins)
    tau_m, window_m = integrated_autocorrelation_time(absolute_m)
    tau_e, window_e = integrated_autocorrelation_time(energy)
    return {"sampler": sampler_name, "resolution": n, "chains": chains, "length": length,
            "burn_in": burn_in, "tau_int_abs_m": tau_m, "window_abs_m": window_m,
            "tau_int_energy": tau_e, "window_energy": window_e,
            "length_over_tau": length / max(tau_m, tau_e),
            "seconds_per_sweep": seconds_per_sweep,
            "seconds_per_independent_abs_m": 2 * tau_m * seconds_per_sweep}


def equilibration(n: int, start: str, chains: int, length: int) -> dict:
    """Approach to equilibrium of ``<e>`` and ``<|m|>`` at ``T_c`` from ``start``."""
    sampler = SwendsenWang(n, chains, CRITICAL_TEMPERATURE, seed=3, start=start)
    absolute_m = np.empty((chains, length + 1))
    energy = np.empty((chains, length + 1))
    for t in range(length + 1):
        if t:
            sampler.sweep()
        absolute_m[:, t] = np.abs(sampler.spins.mean(axis=(1, 2), dtype=np.float64))
        energy[:, t] = energy_per_spin(sampler.spins)
    result = {"resolution": n, "start": start, "chains": chains, "length": length,
              "default_burn_in": default_burn_in(n)}
    references = {"energy": float(finite_lattice_energy(CRITICAL_TEMPERATURE, n)),
                  "abs_m": float(absolute_m[:, length // 2:].mean())}
    for name, values in (("energy", energy), ("abs_m", absolute_m)):
        deviation = values.mean(axis=0) - references[name]
        error = values.std(axis=0, ddof=1) / np.sqrt(chains)
        error = np.maximum(error, values[:, length // 2:].std() / np.sqrt(chains))
        outside = np.flatnonzero(np.abs(deviation) > 4 * error)
        settled = int(outside[-1] + 1) if outside.size else 0
        result[name] = {"reference": references[name],
                        "deviation": deviation.round(6).tolist(),
                        "standard_error": error.round(6).tolist(),
                        "settled_after_sweeps": settled,
                        "tau_fit": decay_time(deviation, error, settled)}
    return result


def decay_time(deviation: np.ndarray, error: np.ndarray, settled: int) -> float | None:
    """Exponential decay time (sweeps) of a mean deviation from equilibrium, or None.

    Least-squares slope of ``ln|deviation(t)|`` over the times ``t <= settled`` where the
    deviation is still above 5 standard errors but already below half its initial
    value (past the hot start's lag and the first fast transients); None with fewer
    than 3 such points.
    """
    deviation, error = np.asarray(deviation), np.asarray(error)
    times = np.arange(deviation.size)
    chosen = times[(np.abs(deviation) > 5 * error)
                   & (np.abs(deviation) < 0.5 * abs(deviation[0])) & (times <= settled)]
    if chosen.size < 3:
        return None
    slope = np.polyfit(chosen, np.log(np.abs(deviation[chosen])), 1)[0]
    return float(-1.0 / slope) if slope < 0 else None


# --------------------------------------------------------------------------- output
def machine_info() -> dict:
    """Platform, CPU count and library versions of this run."""
    return {"platform": platform.platform(), "processor": platform.processor(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__}


def tables(result: dict) -> str:
    lines = ["| sampler | N | B | T | ms / sweep | sweeps/s per trajectory | ns / site |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in result["throughput"]:
        lines.append(f"| {row['sampler']} | {row['resolution']} | {row['batch']} "
                     f"| {row['temperature']:.3f} | {1e3 * row['seconds_per_sweep']:.3f} "
                     f"| {row['sweeps_per_second_per_trajectory']:.0f} "
                     f"| {row['nanoseconds_per_site']:.0f} |")
    lines += ["", "| sampler | N | chains x length | tau_int(|m|) | tau_int(e) "
              "| ms per independent |m| |", "|---|---:|---:|---:|---:|---:|"]
    for row in result["autocorrelation"]:
        lines.append(f"| {row['sampler']} | {row['resolution']} | {row['chains']} x "
                     f"{row['length']} | {row['tau_int_abs_m']:.2f} "
                     f"| {row['tau_int_energy']:.2f} "
                     f"| {1e3 * row['seconds_per_independent_abs_m']:.2f} |")
    lines += ["", "| N | start | chains | default burn-in | e settled after | e tau_fit "
              "| |m| settled after | |m| tau_fit |", "|---:|---|---:|---:|---:|---:|---:|---:|"]

    def fit(value):
        return "-" if value is None else f"{value:.2f}"
    for row in result["equilibration"]:
        lines.append(f"| {row['resolution']} | {row['start']} | {row['chains']} "
                     f"| {row['default_burn_in']} | {row['energy']['settled_after_sweeps']} "
                     f"| {fit(row['energy']['tau_fit'])} "
                     f"| {row['abs_m']['settled_after_sweeps']} "
                     f"| {fit(row['abs_m']['tau_fit'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, write the JSON file, print the tables; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--autocorrelation-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--equilibration-sizes", type=int, nargs="+",
                        default=[16, 64, 256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true",
                        help="short chains (a smoke test; numbers are rough)")
    parser.add_argument("--output", type=Path, default=RESULTS / "ising_sampler.json")
    args = parser.parse_args(argv)
    scale = 0.1 if args.quick else 1.0

    rows = []
    for n in args.sizes:
        rows += throughput(n, CRITICAL_TEMPERATURE, args.repeats)
    for temperature in (1.5, 3.5):
        rows += [row for row in throughput(64, temperature, args.repeats)
                 if row["batch"] == 1]
    sweep_time = {(row["sampler"], row["resolution"]): row["seconds_per_sweep"]
                  for row in rows if row["batch"] == 1
                  and row["temperature"] == CRITICAL_TEMPERATURE}

    correlations = []
    for n in args.autocorrelation_sizes:
        if any((name, n) not in sweep_time for name in SAMPLERS):
            sweep_time.update({(row["sampler"], n): row["seconds_per_sweep"] for row in
                               throughput(n, CRITICAL_TEMPERATURE, 5) if row["batch"] == 1})
        seconds = {name: sweep_time[(name, n)] for name in SAMPLERS}
        correlations.append(autocorrelation(n, "swendsen_wang", 64, int(2000 * scale),
                                            200, seconds["swendsen_wang"]))
        # Metropolis: tau_int(|m|) ~ 0.04 N^2.05 sweeps at T_c (10 at N = 16, 44 at 32);
        # chains ~100 tau long after a 20 tau burn-in
        tau_guess = 0.04 * n**2.05
        length = int(max(2000, 100 * tau_guess) * scale)
        correlations.append(autocorrelation(n, "metropolis", 64, length,
                                            int(20 * tau_guess), seconds["metropolis"]))

    equilibrations = []
    for n in args.equilibration_sizes:
        # ~1e-3 standard error of <e> per time: 2000 chains up to N = 64, fewer above
        chains = int(2000 * scale) if n <= 64 else max(16, int(scale * 2000 * (64 / n) ** 2))
        length = 60 if n <= 256 else 100        # |m| reference: mean over the second half
        for start in ("random", "ordered"):
            equilibrations.append(equilibration(n, start, chains, length))

    result = {"benchmark": "ising_sampler", "machine": machine_info(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "critical_temperature":
              CRITICAL_TEMPERATURE, "throughput": rows, "autocorrelation": correlations,
              "equilibration": equilibrations}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(args.output)
    print(tables(result))
    return result


if __name__ == "__main__":
    main()
