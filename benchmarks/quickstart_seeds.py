"""The default CPU quickstart over training seeds, judged on the whole parameter range.

Run: ``python -m benchmarks.quickstart_seeds [--seeds 0 1 2] [--train NAME=VALUE ...]
[--runs DIR] [--conditions M] [--per-condition K] [--smoke] [--output FILE.json]``.

Per training seed (the data stay the same, :func:`surrogate.quickstart.default_plan`):

1. :func:`surrogate.quickstart.quickstart` in ``RUNS/seed<S>`` (finished stages of a kept
   directory are reused): its report, pass or fail, and per field the held-out spectrum
   error of the report (40 test conditions, one simulation each on the CPU plan);
2. the same best generator judged against many fresh simulations: ``M`` conditions drawn
   uniformly over the swept range (seed ``RANGE_SEED``; the same for every training
   seed), ``K`` new simulations and ``K`` generated samples at each, at the first
   snapshot time; per field the spectrum error of the pooled sample-mean spectra (median
   over the resolved shells of ``|P_gen / P_ref - 1|``, the report's estimator) over all
   ``M K`` samples, and in each
   quarter of the first swept parameter's range. A generator whose spectrum is right on
   average over the range but too steep at one end and too flat at the other passes the
   pooled number and fails a quarter; the quarters show it, and ``M K = 1,024`` fresh
   simulations make them far less noisy than the report's 40 conditions.

Writes ``benchmarks/results/quickstart-seeds-<machine>.json`` and the ``.md`` table.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.output import RESULTS, write_results
from benchmarks.suite import _fmt, _train_overrides, machine_info, machine_line, machine_name
from simulators import get as get_simulator
from surrogate.data import to_store_layout
from surrogate.generate import load_surrogate
from surrogate.quickstart import QuickstartPlan, default_plan, quickstart
from surrogate.validation.report import spectrum_summary
from surrogate.validation.spectra import field_power_spectrum

#: seed of the fresh conditions and simulations (none of them in the quickstart's data)
RANGE_SEED = 123
#: bins of the first swept parameter
QUARTERS = 4


def _spectrum_error(generated: np.ndarray, reference: np.ndarray, box_size: float,
                    vector: bool) -> float:
    """The report's spectrum error (:func:`surrogate.validation.report.spectrum_summary`:
    median over the resolved shells of ``|P_gen / P_ref - 1|``) of the sample-mean
    spectra of ``(S, N, N[, 2])`` arrays."""
    k, p_gen = field_power_spectrum(generated.astype(np.float64), box_size, vector=vector)
    _, p_ref = field_power_spectrum(reference.astype(np.float64), box_size, vector=vector)
    return float(spectrum_summary(k, p_ref.mean(axis=0), p_gen.mean(axis=0))
                 ["rel_error_median"])


def range_errors(run_dir: Path, plan: QuickstartPlan, conditions: int, per_condition: int
                 ) -> dict[str, Any]:
    """Step 2 of the module docstring for the best generator of ``run_dir``."""
    model = load_surrogate(run_dir, "best", device="cpu")
    simulator = get_simulator(plan.system)
    rng = np.random.default_rng(RANGE_SEED)
    swept = sorted(plan.sweep)
    draws = {name: rng.uniform(*plan.sweep[name], conditions) for name in swept}
    count = conditions * per_condition
    # every parameter the simulator takes: the swept ones drawn, the others as the plan
    # fixes them or at their defaults (range-checked by the simulator)
    base = simulator.resolve_parameters({**plan.fixed, **{n: draws[n][0] for n in swept}})
    parameters = {name: np.full(count, float(value)) for name, value in base.items()}
    parameters.update({name: np.repeat(draws[name], per_condition) for name in swept})
    # the first snapshot time only (the quickstart's fields are static)
    times = np.asarray(model.schema.times[:1], dtype=np.float64)
    grid = simulator.make_grid(model.schema.resolution, model.schema.box_size)
    reference = simulator.simulate(parameters, grid, times,
                                   list(range(10**6, 10**6 + count)))
    condition = model.encoder.encode(parameters, np.full(count, times[0]))
    noise = torch.randn(count, model.model_config.noise_dim,
                        generator=torch.Generator().manual_seed(RANGE_SEED))
    generated = to_store_layout(model.sample(condition, noise), model.schema.fields)
    edges = np.linspace(*plan.sweep[swept[0]], QUARTERS + 1)
    quarter = np.clip(np.digitize(parameters[swept[0]], edges[1:-1]), 0, QUARTERS - 1)
    fields: dict[str, Any] = {}
    for spec in model.schema.fields:
        ref, gen, vector = reference[spec.name][:, 0], generated[spec.name], bool(spec.rank)
        fields[spec.name] = {
            "spectrum_rel_error_median": _spectrum_error(gen, ref, grid.box_size, vector),
            "quarters": [_spectrum_error(gen[quarter == q], ref[quarter == q], grid.box_size,
                                         vector) for q in range(QUARTERS)]}
    return {"parameter": swept[0], "edges": edges.tolist(), "conditions": conditions,
            "per_condition": per_condition, "step": model.step, "fields": fields}


def markdown(result: dict[str, Any]) -> str:
    lines = [machine_line(result["machine"]), "",
             "| seed | passed | field | report spectrum err | report spread | fresh: pooled "
             "| fresh: quarters of the range | worst quarter | best step | quickstart s |",
             "|---:|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for seed, entry in result["seeds"].items():
        for i, (name, values) in enumerate(entry["range"]["fields"].items()):
            report = entry["report"][name]
            quarters = " / ".join(_fmt(v) for v in values["quarters"])
            # files written before the spread and wall-time columns lack the seconds
            seconds = entry.get("quickstart_seconds")
            lines.append(f"| {seed if i == 0 else ''} | "
                         f"{('yes' if entry['passed'] else 'no') if i == 0 else ''} | {name} | "
                         f"{_fmt(report['spectrum_rel_error_median'])} | "
                         f"{_fmt(report.get('spread_ratio'), '.2f')} | "
                         f"{_fmt(values['spectrum_rel_error_median'])} | "
                         f"{quarters} | {_fmt(max(values['quarters']))} | "
                         f"{entry['range']['step'] if i == 0 else ''} | "
                         f"{_fmt(seconds, '.0f') if i == 0 and seconds is not None else ''} |")
    budget = result["budget"]
    lines += ["", f"(fresh: {budget['conditions']} conditions drawn uniformly over the range x "
              f"{budget['per_condition']} new simulations and generated samples each; "
              f"quarters of {next(iter(result['seeds'].values()))['range']['parameter']}; "
              f"training overrides {budget['train_overrides'] or 'none'})"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quickstart_seeds",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (0 1 2)")
    parser.add_argument("--train", nargs="+", default=[], metavar="NAME=VALUE",
                        help="override training options of the plan (TrainConfig fields)")
    parser.add_argument("--runs", metavar="DIR", default=None,
                        help="keep the quickstart directories in DIR/seed<S> (reused)")
    parser.add_argument("--conditions", type=int, default=256,
                        help="fresh conditions over the range (256)")
    parser.add_argument("--per-condition", type=int, default=4,
                        help="fresh simulations and generated samples per condition (4)")
    parser.add_argument("--smoke", action="store_true",
                        help="20 training steps and 16 conditions: checks the wiring only")
    parser.add_argument("--output", metavar="FILE.json", default=None,
                        help="results file (default benchmarks/results/quickstart-seeds-"
                             "<machine>.json)")
    args = parser.parse_args(argv)
    overrides = _train_overrides(parser, args.train)
    if args.conditions < QUARTERS or args.per_condition < 1:
        parser.error(f"--conditions must be >= {QUARTERS} and --per-condition >= 1")
    if args.smoke:
        overrides = {"steps": 20, "validate_every": 10, "checkpoint_every": 10,
                     "sample_every": 20, **overrides}
        args.conditions = 16
    device = torch.device("cpu")
    result: dict[str, Any] = {
        "machine": machine_info(device),
        "budget": {"conditions": args.conditions, "per_condition": args.per_condition,
                   "train_overrides": overrides, "smoke": args.smoke,
                   "threads": torch.get_num_threads()},
        "seeds": {}}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.runs) if args.runs else Path(scratch)
        for seed in args.seeds:
            plan = default_plan("cpu", seed=seed)
            plan = dataclasses.replace(plan, train={**plan.train, **overrides})
            print(f"seed {seed} ...", flush=True)
            directory = root / f"seed{seed}"
            summary = quickstart(directory, device="cpu", plan=plan, progress=False)
            result["seeds"][str(seed)] = {
                "passed": summary["passed"], "failures": summary["failures"],
                "report": summary["fields"],
                "train_seconds": summary["stages"]["train"]["seconds"],
                # the whole quickstart (simulate, train, generate, validate), this process
                "quickstart_seconds": sum(stage.get("seconds") or 0.0
                                          for stage in summary["stages"].values()),
                "range": range_errors(directory / "run", plan, args.conditions,
                                      args.per_condition),
                "plan": plan.to_dict()}
    output = Path(args.output) if args.output else \
        RESULTS / f"quickstart-seeds-{machine_name(device)}.json"
    write_results(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
