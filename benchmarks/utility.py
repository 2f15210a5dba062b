"""The utility benchmark (issue 19): train on synthetic, test on real, per system.

Run: ``python -m benchmarks.utility [--systems ...] [--device auto] [--runs DIR]
[--gan-steps N] [--regressor-steps N] [--repeats K] [--smoke]``.

Per system, with the fidelity part's plan (:func:`benchmarks.suite.fidelity_plans`, the
same budgets):

1. :func:`surrogate.quickstart.quickstart` in ``RUNS/<system>``: simulate ``data.h5``,
   train the GAN, generate and validate at the held-out conditions. A directory that
   already holds the finished stages is reused, so ``python -m benchmarks --parts
   fidelity --keep RUNS`` followed by ``python -m benchmarks.utility --runs RUNS`` trains
   each GAN once;
2. GEN: one generated trajectory at every condition of ``data.h5`` (``generate --like``:
   the GAN's training, validation and test conditions);
3. TEST: held-out simulations, a new Sobol sweep of the plan's ranges (seed
   ``plan.seed + 1000``, ``max(32, n / 4)`` trajectories), conditions neither the GAN
   nor the regressor saw;
4. the floor (unless ``--no-floor``): ``data.h5``'s conditions simulated again (seed
   ``plan.seed + 2000``, one trajectory per condition like GEN), what a perfect
   surrogate would have generated;
5. ``surrogate utility --train-real data.h5 --generated GEN --test TEST --floor FLOOR``
   (through :func:`surrogate.validation.utility.utility_files` and ``write_utility``)
   with regressor seeds ``0 .. --repeats - 1``, timed: the cost of the command on this
   machine.

Writes ``benchmarks/results/utility-<machine>.json`` (every number of each system's
``utility.json``, the plan, the seconds) merged per system into an existing file, and
the ``.md`` table, whose last column checks the issue's targets: ``ratio <= 1.2``, 95 %
coverage of both trainings in ``[0.9, 0.99]``, and 10 % of the simulations plus the
generated fields beating 10 % alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.output import RESULTS, write_results
from benchmarks.suite import (
    _fmt,
    _train_overrides,
    fidelity_plans,
    machine_info,
    machine_line,
    machine_name,
)
from simulators.store import SPLIT_LAYOUTS
from simulators.sweep import SweepSpec, run_sweep
from surrogate.generate import generate
from surrogate.quickstart import QuickstartPlan, quickstart, recorded_key
from surrogate.train import resolve_device
from surrogate.validation.utility import RegressorConfig, utility_files, write_utility

#: the issue's targets
RATIO_MAX = 1.2
COVERAGE95_RANGE = (0.9, 0.99)
#: seed offset of the held-out TEST sweep
TEST_SEED_OFFSET = 1000
#: seed offset of the floor: the training data's conditions simulated again
FLOOR_SEED_OFFSET = 2000


def smoke_plan(plan: QuickstartPlan) -> QuickstartPlan:
    """A plan small enough to check the wiring in about a minute: 48 trajectories of
    16^2, 20 GAN steps (the numbers mean nothing)."""
    train = {**plan.train, "steps": 20, "batch_size": 8, "width": 8, "validate_every": 20,
             "checkpoint_every": 20, "sample_every": 20, "log_every": 10}
    return dataclasses.replace(plan, n_trajectories=48, resolution=16, train=train,
                               samples_per_condition=1)


def meets_targets(entry: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's targets for one system's scores (``None``: not measured)."""
    parameters = entry["parameters"].values()
    low, high = COVERAGE95_RANGE
    augmentation = [points[0] for points in entry["augmentation"].values() if points]
    return {
        "ratio": all(p["ratio"] is not None and p["ratio"] <= RATIO_MAX for p in parameters),
        "coverage95": all(low <= p[key] <= high for p in parameters
                          for key in ("coverage95_real", "coverage95_generated")),
        "augmentation": (all(point["rmse_with_generated"] < point["rmse_real_only"]
                             for point in augmentation) if augmentation else None)}


def kept_run_mismatch(plan: QuickstartPlan, directory: Path) -> str | None:
    """Why the GAN run kept in ``directory`` is not ``plan``'s (``None``: it is, or there
    is none). ``quickstart`` retrains a stage whose settings differ, which would silently
    replace a kept training with another; the benchmark asks first."""
    kept = recorded_key(directory, "train")
    wanted = plan.stage_key("train")
    if kept is None or kept == wanted:
        return None
    kept_settings, wanted_settings = json.loads(kept), json.loads(wanted)
    groups = [("", kept_settings, wanted_settings),
              ("train.", kept_settings.pop("train", {}), wanted_settings.pop("train", {}))]

    def value(settings: dict[str, Any], name: str) -> str:
        return repr(settings[name]) if name in settings else "the default"

    differ = [f"{prefix}{name}={value(theirs, name)} (asked {value(ours, name)})"
              for prefix, theirs, ours in groups
              for name in sorted(set(theirs) | set(ours)) if theirs.get(name) != ours.get(name)]
    return (f"{directory} holds a GAN run trained with other settings: {'; '.join(differ)}; "
            "pass the run's options with --fidelity-train, or --retrain to replace it")


def measure(system: str, plan: QuickstartPlan, directory: Path, device: str,
            config: RegressorConfig, seeds: Sequence[int], *, floor: bool = True
            ) -> dict[str, Any]:
    """Steps 1-5 of the module docstring for one system; the entry of the results file."""
    log = lambda line: print(f"  {line}", flush=True)  # noqa: E731
    summary = quickstart(directory, device=device, plan=plan, progress=False, log=log)
    data, run = directory / "data.h5", directory / "run"
    gen, test = directory / "utility_generated.h5", directory / "utility_test.h5"
    start = time.perf_counter()
    generate(run, gen, like=data, n=1, seed=plan.seed, device=device, overwrite=True)
    generate_seconds = time.perf_counter() - start
    n_test = max(32, plan.n_trajectories // 4)
    run_sweep(SweepSpec(system=plan.system, n_trajectories=n_test, resolution=plan.resolution,
                        t_end=plan.t_end, n_snapshots=plan.n_snapshots,
                        ranges=dict(plan.sweep), fixed=dict(plan.fixed),
                        seed=plan.seed + TEST_SEED_OFFSET), test, overwrite=True,
              progress=False)
    floor_path = directory / "utility_floor.h5" if floor else None
    if floor_path is not None:
        run_sweep(SweepSpec.like(data, plan.seed + FLOOR_SEED_OFFSET), floor_path,
                  overwrite=True, progress=False)
    start = time.perf_counter()
    result = utility_files(data, gen, test, config=config, seeds=seeds, progress=log,
                           floor=floor_path)
    write_utility(result, directory / "utility")
    seconds = time.perf_counter() - start
    report = result.report
    entry = {key: report[key] for key in ("parameters", "augmentation", "counts", "seeds",
                                          "regressor", "warnings", "swept")}
    entry.update({"utility_seconds": seconds, "generate_seconds": generate_seconds,
                  "gan_train_seconds": summary["stages"]["train"]["seconds"],
                  "gan_train_reused": summary["stages"]["train"]["reused"],
                  "plan": plan.to_dict()})
    entry["meets_targets"] = meets_targets(entry)
    return entry


def markdown(result: dict[str, Any]) -> str:
    """The results as one Markdown table (one row per system and parameter)."""
    lines = [machine_line(result["machine"]), "",
             "| system | parameter | RMSE real | RMSE generated | ratio (floor) | ratio per "
             "regressor seed (floor) | 95 % coverage real / generated | prior std | 10 % "
             "alone / + generated | GAN steps | utility s | targets met |",
             "|---|---|---:|---:|---:|---|---|---:|---|---:|---:|---|"]
    for system, entry in result["systems"].items():
        met = entry["meets_targets"]
        targets = ", ".join(f"{key} {'yes' if value else 'no'}" for key, value in met.items()
                            if value is not None)
        for name, s in entry["parameters"].items():
            first = (entry["augmentation"].get(name) or [None])[0]
            augmentation = "n/a" if first is None else \
                f"{_fmt(first['rmse_real_only'])} / {_fmt(first['rmse_with_generated'])}"
            per_seed = " / ".join(_fmt(r) for r in s.get("ratio_per_seed", []))
            if "ratio_floor" in s:
                per_seed += " (" + " / ".join(_fmt(r) for r in s["ratio_floor_per_seed"]) + ")"
            lines.append(
                f"| {system} | {name} | {_fmt(s['rmse_real'])} | {_fmt(s['rmse_generated'])} | "
                f"{_fmt(s['ratio'])} ({_fmt(s.get('ratio_floor'))}) | {per_seed} | "
                f"{_fmt(s['coverage95_real'], '.2f')} / "
                f"{_fmt(s['coverage95_generated'], '.2f')} | {_fmt(s['prior_std'])} | "
                f"{augmentation} | {entry['plan']['train'].get('steps')} | "
                f"{_fmt(entry['utility_seconds'], '.0f')} | {targets} |")
    lines += ["", "(floor: the ratio of a regressor trained on the training conditions "
              "simulated again, what a perfect surrogate would read; the spread per "
              "regressor seed is the regressor's own noise)",
              "", f"(RMSE in encoded units: the declared range spans 2; targets: ratio <= "
              f"{RATIO_MAX}, 95 % coverage in [{COVERAGE95_RANGE[0]}, {COVERAGE95_RANGE[1]}] "
              f"for both trainings, 10 % + generated below 10 % alone; utility s: wall time "
              f"of `surrogate utility`: "
              + "; ".join(f"{system} {entry['counts']['trainings']} trainings of "
                          f"{entry['regressor']['steps']} steps"
                          for system, entry in result["systems"].items()) + ")"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.utility",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=None,
                        help="systems (default: all with a fidelity plan)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--runs", metavar="DIR", default=None,
                        help="quickstart directories RUNS/<system> to reuse or keep "
                             "(default: a temporary directory)")
    parser.add_argument("--gan-steps", type=int, default=None,
                        help="override the GAN training steps of every plan")
    parser.add_argument("--regressor-steps", type=int, default=600,
                        help="regressor steps of every training (600)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads of the regressor (default: torch's)")
    parser.add_argument("--repeats", type=int, default=1, help="regressor seeds 0..K-1 (1)")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor (the training conditions simulated again and "
                             "one more regressor training per seed)")
    parser.add_argument("--fidelity-train", nargs="+", default=[], metavar="NAME=VALUE",
                        help="override training options of every plan, as python -m "
                             "benchmarks --fidelity-train does (so that the GAN runs it "
                             "kept with --keep are reused)")
    parser.add_argument("--fidelity-split-layout", choices=SPLIT_LAYOUTS, default="stratified",
                        help="split layout of every plan's training data, as python -m "
                             "benchmarks --fidelity-split-layout (stratified)")
    parser.add_argument("--retrain", action="store_true",
                        help="retrain a GAN kept in --runs whose settings differ from the "
                             "plan's (default: refuse, naming the differences)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny plans and 30 regressor steps: checks the wiring only")
    parser.add_argument("--output", metavar="FILE.json", default=None,
                        help="results file (default benchmarks/results/utility-<machine>"
                             ".json)")
    parser.add_argument("--replace", action="store_true",
                        help="overwrite the results file instead of merging systems into it")
    args = parser.parse_args(argv)
    train_options = _train_overrides(parser, args.fidelity_train)
    device = resolve_device(args.device)
    plans = fidelity_plans(device.type)
    systems = args.systems or list(plans)
    unknown = [system for system in systems if system not in plans]
    if unknown:
        parser.error(f"no fidelity plan for {', '.join(unknown)} (plans: {', '.join(plans)})")
    config = RegressorConfig(steps=30 if args.smoke else args.regressor_steps,
                             device=str(device), threads=args.threads)
    seeds = list(range(args.repeats))
    result: dict[str, Any] = {
        "machine": machine_info(device),
        "budget": {"regressor": config.to_dict(), "seeds": seeds, "smoke": args.smoke,
                   "floor": not args.no_floor,
                   "gan_steps_override": args.gan_steps, "gan_train_overrides": train_options,
                   "split_layout": args.fidelity_split_layout},
        "systems": {}}
    chosen: dict[str, QuickstartPlan] = {}
    for system in systems:
        plan = smoke_plan(plans[system]) if args.smoke else plans[system]
        if args.gan_steps is not None:
            plan = dataclasses.replace(plan, train={**plan.train, "steps": args.gan_steps})
        if train_options:
            plan = dataclasses.replace(plan, train={**plan.train, **train_options})
        plan = dataclasses.replace(plan, split_layout=args.fidelity_split_layout)
        chosen[system] = plan
        if args.runs and not args.retrain:
            mismatch = kept_run_mismatch(plan, Path(args.runs) / system)
            if mismatch:
                parser.error(mismatch)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.runs) if args.runs else Path(scratch)
        for system, plan in chosen.items():
            print(f"{system} ...", flush=True)
            result["systems"][system] = measure(system, plan, root / system, str(device),
                                                config, seeds, floor=not args.no_floor)
    output = Path(args.output) if args.output else \
        RESULTS / f"utility-{machine_name(device)}.json"
    if output.exists() and not args.replace:
        previous = json.loads(output.read_text())
        result["systems"] = {**previous.get("systems", {}), **result["systems"]}
    write_results(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
