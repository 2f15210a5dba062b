"""The ``surrogate`` command line: parse arguments, call the library, print.

Every command turns bad input (``ValueError``/``OSError`` from the library) into a
one-line ``surrogate: error: ...`` on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

EXAMPLES = """\
examples:
  surrogate systems
  surrogate simulate navier_stokes2d -o ns.h5 -n 64 --resolution 64 --t-end 10 \\
      --snapshots 11 --sweep nu=1e-4:1e-2 --seed 0 --workers 2
  surrogate simulate gaussian_random_field -o grf.h5 -n 128 --resolution 64 \\
      --sweep spectral_index=2:3.5 --set amplitude=0.1
  surrogate info ns.h5
  surrogate check ns.h5
  surrogate validate reference.h5 generated.h5 -o report/ [--strict] [--thresholds t.toml]
"""


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
    spec = SweepSpec(system=args.system, n_trajectories=args.n, resolution=args.resolution,
                     t_end=args.t_end, n_snapshots=args.snapshots,
                     ranges=parse_sweeps(args.sweep), fixed=parse_settings(args.set),
                     seed=args.seed, init=args.init)
    path = run_sweep(spec, args.output, workers=args.workers, batch_size=args.batch_size,
                     overwrite=args.overwrite, resume=args.resume, progress=not args.quiet,
                     dask_address=args.dask)
    print(f"wrote {path} ({args.n} trajectories of {args.system})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from simulators.store import describe_file
    info = describe_file(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    times = info["times"]
    print(f"{info['path']}: {info['system']} ({info['dataset_name']}), format "
          f"{info['format_version']}")
    print(f"  trajectories: {info['n_trajectories']} (split: "
          + ", ".join(f"{k} {v}" for k, v in info["split"].items()) + ")")
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


def cmd_validate(args: argparse.Namespace) -> int:
    from surrogate.validation.report import load_thresholds, validate_files, write_report
    thresholds = load_thresholds(args.thresholds) if args.thresholds else None
    progress = None if args.quiet else (lambda message: print(f"  {message}", file=sys.stderr))
    result = validate_files(args.reference, args.generated, thresholds=thresholds,
                            max_match_distance=args.max_match_distance, progress=progress)
    page = write_report(result, args.output)
    report = result.report
    print(f"{'PASSED' if result.passed else 'FAILED'}: {args.generated} against "
          f"{args.reference} ({report['counts']['matched_conditions']} conditions)")
    print(f"  {'field':<12} {'spectrum err':>12} {'W1/std':>8} {'spread':>8}")
    for name, entry in report["fields"].items():
        values = (entry["spectrum"]["rel_error_median"], entry["pdf"]["w1_over_std"],
                  entry["spread_ratio"])
        print(f"  {name:<12} " + " ".join(
            f"{'n/a' if v is None else format(v, '.3g'):>{w}}"
            for v, w in zip(values, (12, 8, 8), strict=True)))
    for failure in report["failures"]:
        print(f"  failed: {failure}")
    print(f"report: {page} (+ report.json and PNG figures)")
    return 1 if args.strict and not result.passed else 0


# -------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surrogate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reference simulators, a conditional GAN surrogate and physics validation.",
        epilog=EXAMPLES)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    systems = commands.add_parser("systems", help="list simulators, parameters, ranges, units")
    systems.add_argument("--json", action="store_true", help="machine-readable output")
    systems.set_defaults(func=cmd_systems)

    simulate = commands.add_parser(
        "simulate", help="run a parameter sweep into one HDF5 file",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    simulate.add_argument("system", help="simulator name (see `surrogate systems`)")
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
    simulate.add_argument("--init", default="random", help="initial condition (random)")
    simulate.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    simulate.add_argument("--batch-size", type=int, default=None,
                          help="trajectories per simulator call (system default)")
    simulate.add_argument("--dask", metavar="ADDRESS", default=None,
                          help="run on the Dask distributed scheduler at ADDRESS")
    simulate.add_argument("--resume", action="store_true",
                          help="continue an interrupted sweep from OUTPUT.partial")
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    simulate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(func=cmd_simulate)

    info = commands.add_parser("info", help="what is inside a field-store file")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    check = commands.add_parser("check", help="check a file against data/FORMAT.md")
    check.add_argument("file")
    check.add_argument("--quick", action="store_true",
                       help="structure only; skip the NaN/checksum scan of every snapshot")
    check.set_defaults(func=cmd_check)

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
    validate.add_argument("--strict", action="store_true",
                          help="exit with status 1 when the validation fails")
    validate.add_argument("-q", "--quiet", action="store_true", help="no stage messages")
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``surrogate`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        hint = " (rerun with --resume to continue the sweep)" if args.command == "simulate" else ""
        print(f"surrogate: interrupted{hint}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"surrogate: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
