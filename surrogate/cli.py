"""The ``surrogate`` command line: parse arguments, call the library, print.

Every command turns bad input (``ValueError``/``OSError`` from the library) into a
one-line ``surrogate: error: ...`` on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLES = """\
examples:
  surrogate quickstart -o quickstart/          # simulate, train, generate, validate
  surrogate systems
  surrogate simulate navier_stokes2d -o ns.h5 -n 64 --resolution 64 --t-end 10 \\
      --snapshots 11 --sweep nu=1e-4:1e-2 --seed 0 --workers 2
  surrogate simulate gaussian_random_field -o grf.h5 -n 128 --resolution 64 \\
      --sweep spectral_index=2:3.5 --set amplitude=0.1
  surrogate info ns.h5
  surrogate check ns.h5
  surrogate convert pdebench_2d_diff_react.h5 -o diff_react.h5   # The Well / PDEBench in
  surrogate train ns.h5 -o runs/ns --steps 20000 --batch-size 64 --device auto --seed 0
  surrogate train ns.h5 -o runs/ns --resume
  surrogate generate runs/ns -o gen.h5 --set nu=3e-3 -n 256 --seed 1
  surrogate generate runs/ns -o gen.h5 --like ns.h5
  surrogate validate reference.h5 generated.h5 -o report/ [--strict] [--thresholds t.toml]
  surrogate utility --train-real ns.h5 --generated gen.h5 --test ns_test.h5 -o utility/
  torchrun --nproc_per_node=4 -m surrogate train ns.h5 -o runs/ns ...   # data-parallel
"""


#: training options exposed on the command line: (TrainConfig field, type, help)
TRAIN_OPTION_HELP = (
    ("steps", int, "total optimisation steps (2000)"),
    ("batch_size", int, "global batch size (32)"),
    ("seed", int, "seed of weights, data order and noise (0)"),
    ("lr_generator", float, "Adam learning rate of G (2e-4)"),
    ("lr_discriminator", float, "Adam learning rate of D (2e-4)"),
    ("lr_decay_fraction", float, "final fraction of the steps over which the learning "
                                 "rates fall linearly to 0 (0: constant)"),
    ("loss", str, "hinge (default) or nonsaturating"),
    ("r1_gamma", float, "R1 penalty weight (0.1; 0 disables)"),
    ("spectral_loss_weight", float, "log power-spectrum loss weight (0.1)"),
    ("spectral_loss_groups", int, "compare spectra in this many groups of similar conditions "
                                  "instead of pooled over the batch (1)"),
    ("mode_seeking_weight", float, "mode-seeking term weight against mode collapse (0.3)"),
    ("template_weight", float, "penalty on a pattern shared by all latents at one "
                               "condition (cosine of generated pairs, centred along the "
                               "declared shift axes; 0: off)"),
    ("spectral_scatter_weight", float, "loss on the scatter of one sample's log shell power "
                                       "at a condition against the simulator's (0: off)"),
    ("spectral_bias_weight", float, "loss on the bias of the log shell power at each "
                                    "condition against the simulator's mean there, from "
                                    "pairs of generated samples (1; 0: off)"),
    ("spectral_bias_space", str, "what the spectral bias loss matches: log (the mean log "
                                 "shell power, default) or power (the mean shell power, "
                                 "as the report's spectra)"),
    ("temporal_weight", float, "weight of the temporal discriminator on consecutive "
                               "snapshots (1.0; 0 disables)"),
    ("ema_half_life_fraction", float, "EMA half-life as a fraction of the steps seen "
                                      "(0: the default ramp (1 + step) / (10 + step))"),
    ("consistency_weight", float, "balanced consistency regularisation of D under the "
                                  "system's declared symmetries (0: off)"),
    ("budget_weight", float, "penalty on the energy budget dE/dt = P - 2 nu Z between "
                             "consecutive generated snapshots of one latent (default: 1 "
                             "for systems that declare energy_budget, trained on >= 2 "
                             "snapshot times; 0 elsewhere; 0: off)"),
    ("width", int, "base channel width of G and D (32)"),
    ("arch", str, "generator architecture: default, or lean (thin stages up to N/4, "
                  "a pixel-shuffle output and full-resolution output noise: ~50x fewer "
                  "FLOPs at 128^2)"),
    ("spectral_envelope", bool, "end G in a conditional isotropic filter: one gain per "
                                "wavenumber shell, set by the condition (on)"),
    ("noise_dim", int, "length of the generator's latent vector (64)"),
    ("low_modes", int, "make the lowest K wavenumber shells of G's output Gaussian: "
                       "their modes become latent coordinates times a conditional "
                       "amplitude started at the data's power per shell and "
                       "condition (0: off)"),
    ("envelope_lr_multiplier", float, "the spectral envelope learns at this multiple of "
                                      "the generator's learning rate (1)"),
    ("straight_through", bool, "discrete fields (Ising spins) reach the discriminators "
                               "snapped to their values, with the relaxation's gradient "
                               "(on)"),
    ("augment", bool, "symmetry augmentation of real fields (on)"),
    ("sign_equivariant", bool, "build a declared negate symmetry (Ising) into G and D: "
                               "both global signs by construction (on)"),
    ("shift_equivariant", bool, "build declared periodic shifts into G: every output "
                                "rolled by a uniform shift read off its latent (off)"),
    ("ensemble_weight", float, "largest weight of an ensemble discriminator that judges "
                               "two samples at one condition together: real pairs of "
                               "neighbouring trajectories against two latents (default: "
                               "0.3 with a batch of >= 2 and >= 2 training "
                               "trajectories; 0: off)"),
    ("ensemble_spread_target", float, "the ensemble weight is applied as far as the "
                                      "generated spread at one condition stays below "
                                      "rho times the simulated one (0.9; 0: the weight "
                                      "at every step)"),
    ("neighbour_batches", bool, "real batches in groups of snapshots of neighbouring "
                                "conditions, one per minibatch-stddev group, so that D "
                                "sees the within-condition diversity (off)"),
    ("amp", bool, "bf16 autocast on CUDA (on)"),
    ("compile", bool, "torch.compile G and D (off)"),
    ("validate_every", int, "steps between validations on held-out conditions (500)"),
    ("checkpoint_every", int, "steps between checkpoints (500)"),
    ("keep_validated", bool, "also keep each validation's EMA generator as "
                             "checkpoints/ema_step_NNNNNN.pt (off)"),
    ("average_checkpoints", int, "K >= 2: also score the mean weights of the last K "
                                 "validated EMA generators; it becomes best.pt when it "
                                 "scores better (4; 0: off)"),
    ("score_range_thirds", bool, "the validation score's spectrum term is half the "
                                 "pooled spectrum error, half its mean over the thirds "
                                 "of every swept range (on)"),
    ("sample_every", int, "steps between sample PNGs (500)"),
    ("log_every", int, "steps between metrics.jsonl lines (50)"),
)
TRAIN_OPTIONS = tuple(name for name, _, _ in TRAIN_OPTION_HELP)


class UsageError(ValueError):
    """A command-line argument that cannot be parsed into a value."""


def _parse_assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise UsageError(f"expected name=value, got {text!r}")
    return name.strip(), value.strip()


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a number") from None


def parse_sweeps(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``["nu=1e-4:1e-2"] -> {"nu": (1e-4, 1e-2)}``."""
    ranges = {}
    for item in items:
        name, value = _parse_assignment(item)
        low, sep, high = value.partition(":")
        if not sep:
            raise UsageError(f"--sweep {item!r}: expected name=low:high")
        ranges[name] = (_float(low, f"--sweep {name}"), _float(high, f"--sweep {name}"))
    return ranges


def parse_settings(items: Sequence[str]) -> dict[str, float]:
    """``["nu=1e-3"] -> {"nu": 1e-3}``."""
    return {name: _float(value, f"--set {name}")
            for name, value in (_parse_assignment(item) for item in items)}


# ------------------------------------------------------------------ commands
def cmd_systems(args: argparse.Namespace) -> int:
    import simulators
    descriptions = [simulators.get(name).describe() for name in simulators.available()]
    if args.json:
        print(json.dumps(descriptions, indent=2))
        return 0
    for info in descriptions:
        fields = ", ".join(f["name"] + ("[vector]" if f["rank"] else "") for f in info["fields"])
        print(f"{info['name']}: {info['description']}")
        print(f"  fields: {fields}; inits: {', '.join(info['inits'])}"
              + ("; static (one snapshot)" if info["static"] else ""))
        for p in info["parameters"]:
            scale = "log" if p["log_scale"] else ("integer" if p["integer"] else "linear")
            print(f"  {p['name']:<20} default {p['default']:<8g} range [{p['low']:g}, "
                  f"{p['high']:g}] {p['units']:<14} ({scale}) {p['doc']}")
        invariants = ", ".join(f"{i['kind']}({i['field']})" for i in info["invariants"])
        print(f"  invariants: {invariants}\n")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.sweep import SweepSpec, run_sweep
    if args.like is not None:
        if args.sweep or args.set:
            raise ValueError("--like copies the sweep of its file: give no --sweep or --set")
        spec = dataclasses.replace(SweepSpec.like(args.like, args.seed),
                                   split_layout=args.split_layout)
        if args.system is not None and spec.system != args.system:
            raise ValueError(f"{args.like}: a {spec.system} file, not {args.system}")
        args.n, args.system = spec.n_trajectories, spec.system
    elif args.system is None:
        raise ValueError("give the simulator's name (see `surrogate systems`), or --like "
                         "REF.h5 to simulate a file's conditions again")
    else:
        spec = SweepSpec(system=args.system, n_trajectories=args.n,
                         resolution=args.resolution, t_end=args.t_end,
                         n_snapshots=args.snapshots, ranges=parse_sweeps(args.sweep),
                         fixed=parse_settings(args.set), seed=args.seed, init=args.init,
                         split_layout=args.split_layout)
    path = run_sweep(spec, args.output, workers=args.workers, batch_size=args.batch_size,
                     overwrite=args.overwrite, resume=args.resume, progress=not args.quiet,
                     dask_address=args.dask, device=args.device)
    print(f"wrote {path} ({args.n} trajectories of {args.system})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from simulators.store import describe_file
    from surrogate.interop import describe_layout, detect_layout
    if detect_layout(args.file) != "ours":
        return _print_foreign_info(describe_layout(args.file), args.json)
    info = describe_file(args.file)
    if args.json:
        print(json.dumps({"layout": "ours", **info}, indent=2))
        return 0
    print("layout: ours (data/FORMAT.md)")
    times = info["times"]
    print(f"{info['path']}: {info['system']} ({info['dataset_name']}), format "
          f"{info['format_version']}")
    print(f"  trajectories: {info['n_trajectories']} (split: "
          + ", ".join(f"{k} {v}" for k, v in info["split"].items())
          + f"; {info['split_layout']})")
    print(f"  grid: {info['resolution']}x{info['resolution']}, box size {info['box_size']:g}; "
          f"times: {times['n']} from {times['first']:g} to {times['last']:g} {times['units']}")
    for name, field in info["fields"].items():
        print(f"  field {name:<12} shape {tuple(field['shape'])} [{field['units']}] "
              f"{field['long_name']}")
    for name, p in info["parameters"].items():
        print(f"  parameter {name:<20} {p['min']:.4g} .. {p['max']:.4g} {p['units']} "
              f"(declared [{p['declared_range'][0]:g}, {p['declared_range'][1]:g}])")
    prov = info["provenance"]
    print(f"  produced by {prov.get('producer')} {prov.get('producer_version')} on "
          f"{prov.get('created')} (seed {prov.get('seed')})")
    print(f"  command: {prov.get('command')}")
    return 0


def _print_foreign_info(info: dict, as_json: bool) -> int:
    """``surrogate info`` of a The Well / PDEBench file (read through surrogate.interop)."""
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    times = info["times"]
    print(f"layout: {info['layout']} (convert with `surrogate convert {info['path']} -o "
          f"OUT.h5`)")
    print(f"{info['path']}: {info.get('dataset_name') or 'unnamed'}, "
          f"{info['n_trajectories']} trajectories, grid {' x '.join(map(str, info['resolution']))}"
          + (f", times: {times['n']} from {times['first']:g} to {times['last']:g}"
             if times and times.get("n") else ""))
    for name, field in info["fields"].items():
        print(f"  field {name:<12} dims {tuple(field['dims'])} shape {tuple(field['shape'])} "
              f"{field['dtype']} [{field.get('units') or '?'}]")
    for name, p in info["parameters"].items():
        print(f"  parameter {name:<20} {p['min']:.4g} .. {p['max']:.4g} {p.get('units') or ''}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from surrogate.interop import convert, detect_layout
    layout = detect_layout(args.source)
    path = convert(args.source, args.output, system=args.system, overwrite=args.overwrite,
                   allow_rounding=args.allow_rounding, allow_nonperiodic=args.allow_nonperiodic)
    print(f"wrote {path} (from {layout} layout {args.source})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from simulators.store import check_file
    problems = check_file(args.file, scan_values=not args.quick)
    if problems:
        print(f"surrogate: error: {args.file}: does not follow data/FORMAT.md: {problems[0]}"
              + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""),
              file=sys.stderr)
        for problem in problems[1:]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK (follows data/FORMAT.md)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from surrogate.train import TrainConfig, train
    options = {name: getattr(args, name) for name in TRAIN_OPTIONS
               if getattr(args, name) is not None}
    if args.resume and set(options) - {"steps"}:
        raise UsageError(f"--resume continues with the run's own settings; only --steps may "
                         f"change (got {', '.join('--' + k.replace('_', '-') for k in options)})")
    config = None if args.resume else TrainConfig(**options)
    if args.restarts is not None:
        from surrogate.train import train_restarts
        if args.resume:
            raise UsageError("--restarts trains afresh; resume one restart with `surrogate "
                             "train DATA -o RUN/restarts/seed_S --resume`")
        summary = train_restarts(args.data, args.output, config, args.restarts,
                                 device=args.device, overwrite=args.overwrite,
                                 progress=not args.quiet, screen_steps=args.screen_steps)
    elif args.screen_steps is not None:
        raise UsageError("--screen-steps chooses among --restarts K seeds; give --restarts")
    else:
        summary = train(args.data, args.output, config, device=args.device,
                        resume=args.resume, overwrite=args.overwrite,
                        progress=not args.quiet, steps=options.get("steps"))
    if summary["world_size"] > 1 and int(__import__("os").environ.get("RANK", "0")) != 0:
        return 0
    for entry in summary.get("restarts", []):
        screened = (f"screened at step {summary['screen_steps']}: best validation score "
                    f"{_score_text(entry['screen_score'])} at step {entry['screen_step']}; "
                    if "screen_score" in entry else "")
        print(f"seed {entry['seed']}: {screened}best validation score "
              f"{_score_text(entry['best_score'])} at step {entry['best_step']}"
              + (" (kept)" if entry["seed"] == summary["kept_seed"] else ""))
    print(f"trained {summary['steps']} steps on {summary['device']} "
          f"({summary['images_per_second']:.1f} images/s); best validation score "
          f"{_score_text(summary['best_score'])} at step {summary['best_step']}; "
          f"run: {summary['run_dir']}")
    if summary.get("score_noise_median") is not None:
        print(f"validation score noise (two latent draws): median "
              f"{_score_text(summary['score_noise_median'])}; median change between "
              f"validations {_score_text(summary.get('score_change_median'))}")
    return 0


def _score_text(score: float | None) -> str:
    """A validation score for printing: ``n/a`` when there was none (None, NaN or inf)."""
    return "n/a" if score is None or not math.isfinite(score) else f"{score:.4g}"


def cmd_generate(args: argparse.Namespace) -> int:
    from surrogate.generate import generate
    path = generate(args.run, args.output, parameters=parse_settings(args.set), like=args.like,
                    n=args.n, seed=args.seed, checkpoint=args.checkpoint, device=args.device,
                    batch_size=args.batch_size, split=args.split, overwrite=args.overwrite,
                    resume=args.resume, progress=not args.quiet, threads=args.threads,
                    precision=args.precision)
    print(f"wrote {path}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from surrogate.validation.report import load_thresholds, validate_files, write_report
    from surrogate.validation.report.summaries import worst_third
    thresholds = load_thresholds(args.thresholds) if args.thresholds else None
    progress = None if args.quiet else (lambda message: print(f"  {message}", file=sys.stderr))
    regressor = None
    if args.utility_test is not None:                  # options checked before any work
        from surrogate.validation.utility import RegressorConfig, utility_files
        regressor = RegressorConfig(steps=args.utility_steps, threads=args.utility_threads)
    result = validate_files(args.reference, args.generated, thresholds=thresholds,
                            max_match_distance=args.max_match_distance, progress=progress,
                            floor=args.floor)
    utility = None
    if regressor is not None:
        utility = utility_files(args.reference, args.generated, args.utility_test,
                                config=regressor, progress=progress, floor=args.floor)
        for warning in utility.report["warnings"]:
            print(f"surrogate: warning: {warning}", file=sys.stderr)
    page = write_report(result, args.output, utility=utility, figures=not args.no_figures)
    report = result.report
    print(f"{'PASSED' if result.passed else 'FAILED'}: {args.generated} against "
          f"{args.reference} ({report['counts']['matched_conditions']} conditions)")
    _print_headline({name: (entry["spectrum"]["rel_error_median"],
                            worst_third(report.get("range") or {}, name),
                            entry["pdf"]["w1_over_std"], entry["spread_ratio"])
                     for name, entry in report["fields"].items()}, report["failures"])
    _print_report_path(page, "report.json", args.no_figures)
    return 1 if args.strict and not result.passed else 0


def _print_report_path(page: Path, data_name: str, no_figures: bool) -> None:
    """The report line: the Markdown page, its JSON and, unless left out, its figures."""
    print(f"report: {page} (+ {data_name}{'' if no_figures else ' and PNG figures'})")


def _print_headline(fields: dict[str, tuple], failures: Sequence[str]) -> None:
    """Table of (spectrum median relative error, its worst third of a swept range, W1/std,
    spread ratio) per field."""
    print(f"  {'field':<12} {'spectrum err':>12} {'worst third':>11} {'W1/std':>8} "
          f"{'spread':>8}")
    for name, values in fields.items():
        print(f"  {name:<12} " + " ".join(
            f"{'n/a' if v is None else format(v, '.3g'):>{w}}"
            for v, w in zip(values, (12, 11, 8, 8), strict=True)))
    for failure in failures:
        print(f"  failed: {failure}")


def cmd_utility(args: argparse.Namespace) -> int:
    from surrogate.validation.utility import RegressorConfig, utility_files, write_utility
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    config = RegressorConfig(steps=args.steps, batch_size=args.batch_size, width=args.width,
                             device=args.device, threads=args.threads)
    progress = None if args.quiet else (lambda message: print(f"  {message}", file=sys.stderr))
    result = utility_files(args.train_real, args.generated, args.test, config=config,
                           seeds=range(args.seed, args.seed + args.repeats),
                           fractions=args.fractions, progress=progress, floor=args.floor)
    for warning in result.report["warnings"]:
        print(f"surrogate: warning: {warning}", file=sys.stderr)
    page = write_utility(result, args.output, figures=not args.no_figures)
    print(f"  {'parameter':<20} {'rmse real':>10} {'rmse gen':>10} {'ratio':>7} "
          f"{'floor':>7} {'cov95 real':>10} {'cov95 gen':>10} {'prior std':>10}")
    for name, s in result.report["parameters"].items():
        floor = s.get("ratio_floor")
        print(f"  {name:<20} {s['rmse_real']:>10.3g} {s['rmse_generated']:>10.3g} "
              f"{s['ratio']:>7.3g} {'n/a' if floor is None else format(floor, '.3g'):>7} "
              f"{s['coverage95_real']:>10.2f} {s['coverage95_generated']:>10.2f} "
              f"{s['prior_std']:>10.3g}")
    _print_report_path(page, "utility.json", args.no_figures)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from surrogate.quickstart import default_plan, quickstart
    from surrogate.train import resolve_device
    plan = default_plan(resolve_device(args.device).type, steps=args.steps, seed=args.seed)
    if args.reference_per_condition is not None:
        plan = dataclasses.replace(plan, reference_per_condition=args.reference_per_condition)
    log = None if args.quiet else (lambda message: print(message, file=sys.stderr))
    summary = quickstart(args.output, device=args.device, plan=plan, progress=not args.quiet,
                         log=log)
    stages = ", ".join(f"{name} {'reused' if s['reused'] else format(s['seconds'], '.0f') + ' s'}"
                       for name, s in summary["stages"].items())
    print(f"{'PASSED' if summary['passed'] else 'FAILED'}: surrogate of {plan.system} on "
          f"{summary['device']} at {summary['conditions']} held-out conditions ({stages})")
    _print_headline({name: (v["spectrum_rel_error_median"], v["spectrum_rel_error_worst_third"],
                            v["w1_over_std"], v["spread_ratio"])
                     for name, v in summary["fields"].items()}, summary["failures"])
    print(f"report: {summary['report']} (+ report.json and PNG figures in "
          f"{summary['directory']})")
    return 0


# -------------------------------------------------------------------- parser
def _add_systems(commands: argparse._SubParsersAction) -> None:
    """The ``systems`` command's arguments."""
    systems = commands.add_parser("systems", help="list simulators, parameters, ranges, units")
    systems.add_argument("--json", action="store_true", help="machine-readable output")
    systems.set_defaults(func=cmd_systems)


def _add_simulate(commands: argparse._SubParsersAction) -> None:
    """The ``simulate`` command's arguments."""
    simulate = commands.add_parser(
        "simulate", help="run a parameter sweep into one HDF5 file",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    simulate.add_argument("system", nargs="?", default=None,
                          help="simulator name (see `surrogate systems`); with --like it may "
                               "be left out (REF's system)")
    simulate.add_argument("-o", "--output", required=True, help="output .h5 file")
    simulate.add_argument("-n", type=int, default=16, help="number of trajectories (16)")
    simulate.add_argument("--resolution", type=int, default=64,
                          help="grid points per side, a power of two (64)")
    simulate.add_argument("--t-end", type=float, default=None,
                          help="final time (system default)")
    simulate.add_argument("--snapshots", type=int, default=None,
                          help="snapshots per trajectory, incl. t=0 (system default)")
    simulate.add_argument("--sweep", action="append", default=[], metavar="NAME=LO:HI",
                          help="sweep a parameter over [LO, HI] (Sobol design; repeatable)")
    simulate.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                          help="hold a parameter fixed (repeatable)")
    simulate.add_argument("--seed", type=int, default=0, help="master seed (0)")
    simulate.add_argument("--like", metavar="REF.h5", default=None,
                          help="simulate every trajectory of REF again (a sweep or a "
                               "generated file: its parameters, grid, times, init) from new "
                               "seeds (--seed): an independent ensemble shaped like REF, e.g. "
                               "for `surrogate validate ... --floor`; -n, --resolution, "
                               "--t-end, --snapshots and --init are taken from REF")
    simulate.add_argument("--init", default="random", help="initial condition (random)")
    # simulators.store.SPLIT_LAYOUTS, spelled out: the parser imports nothing heavy
    simulate.add_argument("--split-layout", default="stratified",
                          choices=("random", "stratified"),
                          help="how the train/valid/test split is laid out: stratified (every "
                               "stretch of the swept range holds its share of the validation "
                               "and test trajectories, the default) or random (a seeded draw)")
    simulate.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    simulate.add_argument("--batch-size", type=int, default=None,
                          help="trajectories per simulator call (system default; larger "
                               "with --device cuda)")
    simulate.add_argument("--dask", metavar="ADDRESS", default=None,
                          help="run on the Dask distributed scheduler at ADDRESS")
    simulate.add_argument("--device", default=None, metavar="DEVICE",
                          help="run the spectral systems (diffusion, gaussian_random_field, "
                               "navier_stokes2d, gray_scott) with torch on DEVICE: cpu, cuda, "
                               "cuda:N (default: numpy; not with --workers > 1 or --dask)")
    simulate.add_argument("--resume", action="store_true",
                          help="continue an interrupted sweep from OUTPUT.partial")
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    simulate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(func=cmd_simulate)


def _add_info(commands: argparse._SubParsersAction) -> None:
    """The ``info`` command's arguments."""
    info = commands.add_parser("info", help="what is inside a field file (any supported layout)")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)


def _add_convert(commands: argparse._SubParsersAction) -> None:
    """The ``convert`` command's arguments."""
    convert = commands.add_parser(
        "convert", help="convert a The Well or PDEBench HDF5 file to this package's format",
        description="Read SOURCE in any supported layout (ours, the_well, pdebench_seeds, "
                    "pdebench_arrays; `surrogate info` says which) and write OUTPUT in "
                    "data/FORMAT.md's layout, float32 values bit for bit.")
    convert.add_argument("source", help="input .h5 file")
    convert.add_argument("-o", "--output", required=True, help="output .h5 file")
    convert.add_argument("--system", default=None,
                         help="registered simulator whose schema the file follows (default: "
                              "a schema built from the file)")
    convert.add_argument("--allow-rounding", action="store_true",
                         help="accept float64 fields that float32 cannot hold exactly")
    convert.add_argument("--allow-nonperiodic", action="store_true",
                         help="accept files whose boundaries are not periodic")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    convert.set_defaults(func=cmd_convert)


def _add_check(commands: argparse._SubParsersAction) -> None:
    """The ``check`` command's arguments."""
    check = commands.add_parser("check", help="check a file against data/FORMAT.md")
    check.add_argument("file")
    check.add_argument("--quick", action="store_true",
                       help="structure only; skip the NaN/checksum scan of every snapshot")
    check.set_defaults(func=cmd_check)


def _add_train(commands: argparse._SubParsersAction) -> None:
    """The ``train`` command's arguments."""
    train = commands.add_parser(
        "train", help="train the conditional GAN on a field-store file",
        description="Train (or --resume) the conditional GAN; writes RUN/config.json, "
                    "checkpoints/last.pt and best.pt (best validation score on held-out "
                    "conditions), metrics.jsonl and samples/*.png.")
    train.add_argument("data", help="training field-store file (simulator output)")
    train.add_argument("-o", "--output", required=True, metavar="RUN", help="run directory")
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    train.add_argument("--resume", action="store_true",
                       help="continue RUN from checkpoints/last.pt (exactly, on the CPU)")
    train.add_argument("--overwrite", action="store_true",
                       help="start afresh in an existing RUN")
    train.add_argument("--restarts", type=int, default=None, metavar="K",
                       help="train K runs that differ only in their seed (--seed, --seed+1, "
                            "...) on the same split into RUN/restarts/ and keep the one with "
                            "the best validation score as RUN (K times the cost)")
    train.add_argument("--screen-steps", type=int, default=None, metavar="S",
                       help="with --restarts: train every seed only S steps, then continue "
                            "the best-scored one to --steps (cost K S / steps + 1 - S / "
                            "steps trainings instead of K; drops a training that went "
                            "wrong early)")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    for name, kind, text in TRAIN_OPTION_HELP:
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            train.add_argument(flag, dest=name, default=None,
                               action=argparse.BooleanOptionalAction, help=text)
        else:
            train.add_argument(flag, dest=name, type=kind, default=None, help=text)
    train.set_defaults(func=cmd_train)


def _add_generate(commands: argparse._SubParsersAction) -> None:
    """The ``generate`` command's arguments."""
    generate = commands.add_parser(
        "generate", help="generate a field-store file from a trained run",
        description="Generate trajectories with a trained run's EMA generator at one "
                    "condition (--set) or at the conditions of a file (--like), in the "
                    "simulators' HDF5 layout.")
    generate.add_argument("run", help="training run directory")
    generate.add_argument("-o", "--output", required=True, help="output .h5 file")
    generate.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                          help="parameter value (repeatable; others: the training data's "
                               "fixed value or the default)")
    generate.add_argument("--like", metavar="FILE", default=None,
                          help="reuse the parameters and times of FILE's trajectories")
    generate.add_argument("--split", choices=("train", "valid", "test"), default=None,
                          help="with --like: only trajectories of this split")
    generate.add_argument("-n", type=int, default=None,
                          help="trajectories (16 with --set; per condition, 1, with --like)")
    generate.add_argument("--seed", type=int, default=0, help="master seed (0)")
    generate.add_argument("--checkpoint", default="best",
                          help="best (default), last, a file in RUN/checkpoints, or average:K "
                               "(the last K validated generators averaged; a run trained "
                               "with --keep-validated)")
    generate.add_argument("--device", default="auto", help="auto, cpu, cuda")
    generate.add_argument("--batch-size", type=int, default=64, help="snapshots per call (64)")
    generate.add_argument("--threads", type=int, default=None,
                          help="torch CPU threads (default: torch's, one per core; 1 is often "
                               "faster on shared cores)")
    generate.add_argument("--precision", default="fp32", metavar="{fp32,bf16}",
                          help="the generator's arithmetic: fp32 (default) or bf16 autocast "
                               "(faster on CPUs with native bf16 and on GPUs)")
    generate.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    generate.add_argument("--resume", action="store_true",
                          help="continue an interrupted run from OUTPUT.partial (same options; "
                               "same bytes as an uninterrupted run)")
    generate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(func=cmd_generate)


def _add_validate(commands: argparse._SubParsersAction) -> None:
    """The ``validate`` command's arguments."""
    validate = commands.add_parser(
        "validate", help="compare generated fields with reference fields; write a report",
        description="Compare GENERATED with REFERENCE (same system, grid and times) through "
                    "spectra, PDFs, conservation, two-point statistics, morphology, spread "
                    "and a Fréchet physics distance, per condition; write DIR/report.json, "
                    "DIR/report.md and PNG figures. Exit status 0 when the report was "
                    "written, whatever it says (1 with --strict if it failed), 2 on bad input.")
    validate.add_argument("reference", help="reference field-store file (simulator output)")
    validate.add_argument("generated", help="field-store file to judge")
    validate.add_argument("-o", "--output", required=True, metavar="DIR",
                          help="report directory (created; report files in it are replaced)")
    validate.add_argument("--thresholds", metavar="FILE.toml", default=None,
                          help="override pass thresholds (flat keys of report.json thresholds)")
    validate.add_argument("--max-match-distance", type=float, default=0.02,
                          help="matching radius of conditions in normalised parameter space "
                               "(0.02)")
    validate.add_argument("--floor", metavar="REF2.h5", default=None,
                          help="a second simulation of REFERENCE's conditions (other seeds, "
                               "e.g. `surrogate simulate --like REFERENCE --seed 1`): every "
                               "gated metric is also computed between it and REFERENCE, the "
                               "noise floor shown beside each value (default: from two halves "
                               "of REFERENCE when it holds >= 2 trajectories per condition); "
                               "with --utility-test also the utility's floor ratio")
    validate.add_argument("--utility-test", metavar="TEST.h5", default=None,
                          help="also measure the utility (surrogate utility): a regressor "
                               "of the swept parameters trained on REFERENCE and on "
                               "GENERATED (which must hold REFERENCE's conditions), tested "
                               "on these held-out simulations; report.json `utility`, "
                               "DIR/utility/")
    validate.add_argument("--utility-steps", type=int, default=600,
                          help="regressor steps of each utility training (600)")
    validate.add_argument("--utility-threads", type=int, default=None,
                          help="torch CPU threads of the utility regressor (default: torch's)")
    validate.add_argument("--strict", action="store_true",
                          help="exit with status 1 when the validation fails")
    validate.add_argument("--no-figures", action="store_true",
                          help="write report.json and report.md without the PNG figures "
                               "(drawing them is most of a small validation's time; for "
                               "scripts that read only report.json)")
    validate.add_argument("-q", "--quiet", action="store_true", help="no stage messages")
    validate.set_defaults(func=cmd_validate)


def _add_utility(commands: argparse._SubParsersAction) -> None:
    """The ``utility`` command's arguments."""
    utility = commands.add_parser(
        "utility", help="train on synthetic, test on real: parameter inference from "
                        "generated fields",
        description="Train a small CNN regressor to infer the swept parameters of one "
                    "snapshot (with a Gaussian error bar) on the simulations (TRTR), on the "
                    "generated fields (TSTR) and on fractions of the simulations with and "
                    "without the generated fields; test each on held-out simulations. Writes "
                    "DIR/utility.json, DIR/utility.md and PNG figures. Exit status 0 when "
                    "written, 2 on bad input (nothing written).")
    utility.add_argument("--train-real", required=True, metavar="REF.h5",
                         help="simulations to train on (every trajectory)")
    utility.add_argument("--generated", required=True, metavar="GEN.h5",
                         help="generated at REF's conditions (`surrogate generate RUN --like "
                              "REF.h5`)")
    utility.add_argument("--test", required=True, metavar="TEST.h5",
                         help="held-out simulations (conditions not in REF)")
    utility.add_argument("-o", "--output", required=True, metavar="DIR",
                         help="report directory (created; report files in it are replaced)")
    utility.add_argument("--floor", metavar="REF2.h5", default=None,
                         help="a second simulation of REF's conditions (other seeds, as many "
                              "per condition as GEN: `surrogate simulate --like REF.h5 --seed "
                              "1`): the regressor is also trained on it, and its ratio, what "
                              "a perfect surrogate reads, is shown beside GEN's")
    utility.add_argument("--steps", type=int, default=600,
                         help="optimisation steps of every training (600)")
    utility.add_argument("--batch-size", type=int, default=32, help="snapshots per step (32)")
    utility.add_argument("--width", type=int, default=16, help="regressor base channels (16)")
    utility.add_argument("--seed", type=int, default=0, help="first training seed (0)")
    utility.add_argument("--repeats", type=int, default=1,
                         help="train with seeds SEED .. SEED+K-1; scores are means, and the "
                              "ratio of each seed is listed: the regressor's own noise (1)")
    utility.add_argument("--fractions", type=float, nargs="*", default=[0.1, 0.25, 0.5, 1.0],
                         help="fractions of REF's trajectories of the augmentation study "
                              "(0.1 0.25 0.5 1; none: skip it)")
    utility.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    utility.add_argument("--threads", type=int, default=None,
                         help="torch CPU threads (default: torch's; 1 is fastest on busy "
                              "cores)")
    utility.add_argument("--no-figures", action="store_true",
                         help="write utility.json and utility.md without the PNG figures")
    utility.add_argument("-q", "--quiet", action="store_true", help="no stage messages")
    utility.set_defaults(func=cmd_utility)


def _add_quickstart(commands: argparse._SubParsersAction) -> None:
    """The ``quickstart`` command's arguments."""
    quick = commands.add_parser(
        "quickstart", help="simulate, train briefly, generate, validate: the whole flow",
        description="Simulate a small Gaussian-random-field sweep (DIR/data.h5), train the "
                    "conditional GAN (DIR/run), generate at the held-out test conditions "
                    "(DIR/generated.h5) and validate (DIR/report.md, report.json, PNGs). "
                    "A few minutes on 2 CPU cores; larger on a GPU. Finished stages in DIR "
                    "are reused.")
    quick.add_argument("-o", "--output", default="quickstart", metavar="DIR",
                       help="output directory (quickstart)")
    quick.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    quick.add_argument("--steps", type=int, default=None,
                       help="training steps (600 on CPU, 4000 on CUDA)")
    quick.add_argument("--seed", type=int, default=None,
                       help="training seed (0); the simulated data stay the same")
    quick.add_argument("--reference-per-condition", type=int, default=None, metavar="K",
                       help="judge against K new simulations at each held-out condition "
                            "(DIR/reference.h5) instead of the test split's one: a smaller "
                            "noise floor; changing K reruns the validate stage only")
    quick.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    quick.set_defaults(func=cmd_quickstart)


def build_parser() -> argparse.ArgumentParser:
    """The ``surrogate`` argument parser: one ``_add_<command>`` builder per command."""
    parser = argparse.ArgumentParser(
        prog="surrogate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reference simulators, a conditional GAN surrogate and physics validation.",
        epilog=EXAMPLES)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_systems(commands)
    _add_simulate(commands)
    _add_info(commands)
    _add_convert(commands)
    _add_check(commands)
    _add_train(commands)
    _add_generate(commands)
    _add_validate(commands)
    _add_utility(commands)
    _add_quickstart(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``surrogate`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # a run directory that this command creates and that stays empty is removed on error
    new_run = Path(args.output) if args.command == "train" and not args.resume \
        and not Path(args.output).exists() else None
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        hint = {"simulate": " (rerun with --resume to continue the sweep)",
                "train": " (rerun with --resume to continue from the last checkpoint)",
                "generate": " (rerun with --resume to continue the generation)"}
        print(f"surrogate: interrupted{hint.get(args.command, '')}", file=sys.stderr)
        return 130
    except Exception as error:
        train = sys.modules.get("surrogate.train")      # not imported: not its error
        if train is not None and isinstance(error, train.TrainingDivergedError):
            print(f"surrogate: error: {error}", file=sys.stderr)
            return 1
        error = _out_of_memory(error, args) or error
        # bad input: our one-line errors, and whatever h5py raises on a damaged file
        if not isinstance(error, (ValueError, OSError)) and not _from_h5py(error):
            raise
        from simulators.messages import first_line
        message = first_line(error, limit=None)
        inputs = _input_files(args)
        if len(inputs) == 1 and _from_h5py(error) and inputs[0] not in message:
            message = f"{inputs[0]}: {message}"     # HDF5 errors do not name the file
        print(f"surrogate: error: {message}", file=sys.stderr)
        if new_run is not None:
            _remove_if_empty(new_run)
        return 2


def _out_of_memory(error: BaseException, args: argparse.Namespace) -> ValueError | None:
    """A GPU out-of-memory error as a one-line ``ValueError`` naming the size to change.

    Halving the batch behind the user's back would change the bytes of ``generate`` and
    the arithmetic of ``train``, so the command stops (exit status 2; a partial file or
    the last checkpoint stays for ``--resume``) and says which option sets the size.
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(error, torch.cuda.OutOfMemoryError):
        return None
    from simulators.messages import first_line
    detail = first_line(error, "CUDA out of memory", limit=None)
    batch = getattr(args, "batch_size", None)
    size = f"--batch-size {batch}" if batch is not None else "this size"
    option = "a smaller --batch-size" + (" or --width, and --overwrite" if args.command
                                         == "train" else "")
    return ValueError(f"{args.command}: out of GPU memory with {size} ({detail.rstrip('.')}); "
                      f"rerun with {option}")


def _input_files(args: argparse.Namespace) -> list[str]:
    """The HDF5 files a command reads (to name in an error that does not say which)."""
    names = {"info": ("file",), "check": ("file",), "convert": ("source",),
             "simulate": ("like",),
             "train": ("data",), "generate": ("like",),
             "validate": ("reference", "generated", "floor", "utility_test"),
             "utility": ("train_real", "generated", "test", "floor")}.get(args.command, ())
    return [str(getattr(args, name)) for name in names if getattr(args, name, None)]


def _from_h5py(error: BaseException) -> bool:
    """Whether ``error`` was raised inside h5py (a damaged file, not our own message)."""
    traceback = error.__traceback__
    module = None
    while traceback is not None:
        module = traceback.tb_frame.f_globals.get("__name__", "")
        traceback = traceback.tb_next
    return bool(module) and module.split(".")[0] == "h5py"


def _remove_if_empty(directory: Path) -> None:
    """Remove ``directory`` if it holds nothing but empty directories (never a file)."""
    if not directory.is_dir() or any(p.is_file() or p.is_symlink()
                                     for p in directory.rglob("*")):
        return
    for sub in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    directory.rmdir()


if __name__ == "__main__":
    sys.exit(main())
