"""The whole flow in one call: simulate, train, generate at held-out conditions, validate.

:func:`quickstart` is what ``surrogate quickstart -o DIR`` runs. Four stages, each
writing into ``DIR``:

1. **simulate** -> ``DIR/data.h5``: a Sobol sweep of the reference simulator (the file is
   split by trajectory into train / valid / test conditions when it is written; on a
   CUDA device, systems with a torch backend are simulated on the GPU too);
2. **train** -> ``DIR/run/``: the conditional GAN on the train split, its best checkpoint
   chosen by the physics score on the valid split;
3. **generate** -> ``DIR/generated.h5``: ``samples_per_condition`` new trajectories at
   each *test* condition (parameter values the GAN never saw);
4. **validate** -> ``DIR/report.md``, ``DIR/report.json`` and PNG figures: the generated
   fields against the reference (``data.h5``'s test split, or with
   ``reference_per_condition = k`` ``k`` new simulations at each held-out condition,
   ``DIR/reference.h5``), matched condition by condition, with the noise
   floor beside every gated metric: the simulator run again at each generated
   trajectory's condition from new seeds (``DIR/floor.h5``, what a perfect surrogate
   would have written) and judged the same way.

The default plan (:func:`default_plan`) is small enough to finish in a few minutes on two
CPU cores: a Gaussian random field sweep over the spectral index ``n`` of ``P(k) = A
k^-n`` on a 32^2 grid. It is a good first system because its truth is known in closed
form and its spectrum, which the report plots, shows at a glance whether the GAN
learned the conditioning: steep spectra (large ``n``) give smooth fields, shallow ones
rough fields. On a CUDA device the plan is larger (64^2, more trajectories and steps).

Stages already finished with the same settings are reused: ``DIR/quickstart.json``
records, per stage, the settings it ran with and when it finished. An interrupted
training run resumes from its last checkpoint; an interrupted sweep resumes from its
``.partial`` file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.store import partial_path
from surrogate.checkpoint import atomic_write_bytes

__all__ = ["STAGES", "QuickstartPlan", "adopt_data", "default_plan", "finished_data",
           "quickstart", "recorded_key", "simulate_plan"]

STAGES = ("simulate", "train", "generate", "validate")
MANIFEST = "quickstart.json"


@dataclass(frozen=True)
class QuickstartPlan:
    """What the quickstart simulates and how long it trains.

    Attributes:
        system: simulator name.
        n_trajectories: trajectories in the sweep (split 80/10/10 by the store).
        resolution: grid points per side.
        sweep: ``{parameter: (low, high)}`` swept by the Sobol design.
        fixed: ``{parameter: value}`` held constant.
        t_end, n_snapshots: snapshot times (``None``: the system's defaults).
        train: :class:`surrogate.train.TrainConfig` fields.
        samples_per_condition: generated trajectories per held-out (test) condition.
        reference_per_condition: 0 (default): the generated fields are judged against
            ``data.h5``'s test split (one simulation per held-out condition); ``k >= 1``:
            against ``DIR/reference.h5``, ``k`` new simulations at each held-out condition
            (seed ``seed + 2``), for a reference whose own sampling noise (the report's
            floor) is small beside the thresholds.
        seed: seed of the sweep, the training run and the generation (a ``"seed"`` in
            ``train`` seeds the training run instead: one dataset, several trainings).
        split_layout: the sweep's split layout, ``"stratified"`` (default) or
            ``"random"`` (:class:`simulators.sweep.SweepSpec`); it enters the stage keys
            only when not ``"random"``, so a directory made with the random split (the
            default until 2026-12-07) simulates again.
    """

    system: str
    n_trajectories: int
    resolution: int
    sweep: Mapping[str, tuple[float, float]]
    fixed: Mapping[str, float] = field(default_factory=dict)
    t_end: float | None = None
    n_snapshots: int | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    samples_per_condition: int = 4
    reference_per_condition: int = 0
    seed: int = 0
    split_layout: str = "stratified"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sweep"] = {k: list(v) for k, v in sorted(self.sweep.items())}
        data["fixed"] = dict(sorted(self.fixed.items()))
        data["train"] = dict(sorted(self.train.items()))
        return data

    def stage_key(self, stage: str) -> str:
        """Canonical JSON of the settings that decide ``stage``'s output (and all before it).

        The training settings enter resolved (every :class:`TrainConfig` field, defaults
        included), so that a run trained under an earlier default is not reused as if it
        had today's; a lean generator's carry ``"lean_output_noise": true`` (its
        full-resolution output noise, ``ModelConfig.output_noise``);
        ``shift_equivariant``, ``neighbour_batches``, ``ensemble_weight`` and
        ``ensemble_spread_target`` enter only when on (off, a run trains as runs did
        before the options). A sign-equivariant generator's files carry ``"signs": "balanced"``
        (:func:`surrogate.generate.balanced_signs`): a directory generated before them
        generates again."""
        from surrogate.data.symmetry import symmetries_for
        from surrogate.train.config import TrainConfig
        data = self.to_dict()
        data["train"] = dict(sorted(TrainConfig(**self.train).to_dict().items()))
        if data["train"]["arch"] == "lean":     # its generator has had output noise since
            data["train"]["lean_output_noise"] = True
        for option in ("shift_equivariant", "neighbour_batches", "ensemble_weight",
                       "ensemble_spread_target"):
            value = data["train"][option]
            if value is not None and not value:  # off: what runs before the option did
                del data["train"][option]
        data["signs"] = "balanced"
        keys = {"simulate": ("system", "n_trajectories", "resolution", "sweep", "fixed",
                             "t_end", "n_snapshots", "seed")
                + (("split_layout",) if self.split_layout != "random" else ())}
        keys["train"] = (*keys["simulate"], "train")
        signed = data["train"]["sign_equivariant"] and "negate" in symmetries_for(self.system)
        keys["generate"] = (*keys["train"], "samples_per_condition",
                            *(("signs",) if signed else ()))
        keys["validate"] = (*keys["generate"], "reference_per_condition")
        return json.dumps({k: data[k] for k in keys[stage]}, sort_keys=True)


def default_plan(device_type: str = "cpu", *, steps: int | None = None,
                 seed: int | None = None) -> QuickstartPlan:
    """The quickstart's plan for a ``"cpu"`` or ``"cuda"`` device.

    CPU (a few minutes on 2 cores): 400 Gaussian random fields of 32^2 with spectral
    index ``n`` in [1.5, 3.5] (amplitude 0.1), 600 steps of batch 16, width 16,
    mode-seeking weight 1.0 with the conditional spectral loss in 4 groups (measured over
    training seeds 0, 1, 2 on this plan: 3 of 3 pass with spread ratio 0.98-1.02 and
    delta spectrum error 0.19 / 0.19 / 0.12, against spread 0.57-0.75 and 0.19 / 0.19 /
    0.25 with mode seeking 0.1 and pooled spectra) and no spectral
    envelope (measured over training seeds 0, 1, 2 on this plan: without it 3 of 3 pass,
    delta spectrum error 0.19 / 0.19 / 0.25; with it 2 of 3, 0.12 / 0.12 / 0.30 -- the
    envelope starts as the identity and 600 steps are too few for every seed to learn it;
    at 2,000 steps it wins on every seed), and the spectral bias loss at weight 1
    (``spectral_bias_weight``: the generated log shell power against the simulator's
    mean at each condition). Measured over training seeds 0, 1, 2 on 2 threads: without
    the bias loss seed 0 failed (density spectrum error 0.30 > 0.25) and the spectrum
    error in the worst quarter of the index range, judged against 1,024 fresh
    simulations (``python -m benchmarks.quickstart_seeds``), was 0.48-0.82 (delta) for
    the three seeds; with it 3 of 3 pass (delta 0.12 / 0.21 / 0.13, density 0.13 / 0.18
    / 0.16) and the worst quarter reads 0.18-0.32 (weight 3: one seed fails, density
    0.37).
    CUDA: 2,000 fields of 64^2, 4,000 steps of batch 64, width 32, the library defaults
    otherwise (mode seeking 0.3, spectral envelope, spectral bias loss 1; not yet run on a
    GPU with the bias loss).
    ``steps`` and ``seed`` (the training seed; the data stay the same) override the plan.
    """
    common = {"system": "gaussian_random_field", "sweep": {"spectral_index": (1.5, 3.5)},
              "fixed": {"amplitude": 0.1}}
    if device_type == "cuda":
        plan = QuickstartPlan(**common, n_trajectories=2000, resolution=64,
                              train={"steps": 4000, "batch_size": 64, "width": 32,
                                     "validate_every": 500, "checkpoint_every": 500,
                                     "sample_every": 1000, "log_every": 50})
    else:
        plan = QuickstartPlan(**common, n_trajectories=400, resolution=32,
                              train={"steps": 600, "batch_size": 16, "width": 16,
                                     "validate_every": 150, "checkpoint_every": 150,
                                     "sample_every": 300, "log_every": 25,
                                     "mode_seeking_weight": 1.0, "spectral_loss_groups": 4,
                                     "spectral_envelope": False,
                                     "spectral_bias_weight": 1.0})
    if steps is not None:
        plan = dataclasses.replace(plan, train={**plan.train, "steps": steps})
    if seed is not None:
        plan = dataclasses.replace(plan, train={**plan.train, "seed": seed})
    return plan


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("stages"), dict) else {}


class _Manifest:
    """``DIR/quickstart.json``: per stage, the settings key and whether it finished."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / MANIFEST
        data = _read_manifest(self.path)
        self.stages: dict[str, dict[str, Any]] = data.get("stages", {})

    def done(self, stage: str, key: str) -> bool:
        entry = self.stages.get(stage, {})
        return entry.get("key") == key and entry.get("finished", False)

    def started_with(self, stage: str, key: str) -> bool:
        return self.stages.get(stage, {}).get("key") == key

    def record(self, stage: str, key: str, *, finished: bool, **extra: Any) -> None:
        self.stages[stage] = {"key": key, "finished": finished, **extra}
        # later stages depend on this one: they are stale once it runs again
        if not finished:
            for later in STAGES[STAGES.index(stage) + 1:]:
                self.stages.pop(later, None)
        text = json.dumps({"stages": self.stages}, indent=1, sort_keys=True) + "\n"
        atomic_write_bytes(self.path, lambda handle: handle.write(text.encode()))


def simulate_plan(plan: QuickstartPlan, path: str | os.PathLike, *, device: str | None = None,
                  progress: bool = False, resume: bool = False) -> Path:
    """The training data of ``plan`` (its sweep, seed ``plan.seed``) written to ``path``,
    exactly as :func:`quickstart`'s simulate stage writes ``data.h5``. ``device``: the
    simulators' torch device, ``None`` for numpy."""
    from simulators.sweep import SweepSpec, run_sweep
    spec = SweepSpec(system=plan.system, n_trajectories=plan.n_trajectories,
                     resolution=plan.resolution, t_end=plan.t_end,
                     n_snapshots=plan.n_snapshots, ranges=dict(plan.sweep),
                     fixed=dict(plan.fixed), seed=plan.seed,
                     split_layout=plan.split_layout)
    return run_sweep(spec, path, workers=1, overwrite=True, progress=progress,
                     resume=resume and partial_path(Path(path)).exists(), device=device)


def recorded_key(directory: str | os.PathLike, stage: str) -> str | None:
    """The settings key ``DIR/quickstart.json`` records for ``stage`` (``None``: no
    manifest or no such stage)."""
    return _Manifest(Path(directory)).stages.get(stage, {}).get("key")


def finished_data(directory: str | os.PathLike, plan: QuickstartPlan) -> Path | None:
    """``DIR/data.h5`` when the quickstart in ``directory`` finished its simulate stage
    with ``plan``'s settings, else ``None``."""
    directory = Path(directory)
    data = directory / "data.h5"
    done = _Manifest(directory).done("simulate", plan.stage_key("simulate"))
    return data if done and data.exists() else None


def adopt_data(directory: str | os.PathLike, plan: QuickstartPlan,
               data: str | os.PathLike) -> bool:
    """Make ``data`` (written by :func:`simulate_plan` for a plan with the same simulate
    settings) the finished simulate stage of a quickstart in ``directory``: hard-linked
    (copied where links are impossible) to ``DIR/data.h5`` and recorded in the manifest,
    so that several trainings of one plan (training seeds, options) share one simulation.
    A directory whose simulate stage is already done with these settings is left alone.
    Returns whether it adopted ``data``."""
    import shutil
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if finished_data(directory, plan) is not None:
        return False
    manifest = _Manifest(directory)
    key = plan.stage_key("simulate")
    target = directory / "data.h5"
    if not (target.exists() and os.path.samefile(data, target)):
        target.unlink(missing_ok=True)
        try:
            os.link(data, target)
        except OSError:
            shutil.copyfile(data, target)
    manifest.record("simulate", key, finished=False)      # later stages are stale
    manifest.record("simulate", key, finished=True, seconds=0.0, shared_from=str(data))
    return True


def quickstart(directory: str | os.PathLike = "quickstart", *, device: str = "auto",
               plan: QuickstartPlan | None = None, progress: bool = True,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Simulate, train, generate at held-out conditions and validate, in ``directory``.

    Args:
        directory: output directory (created); finished stages in it are reused.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        plan: what to run (default: :func:`default_plan` for the device).
        progress: progress bars of the stages.
        log: called with one line per stage event (default: silent).
    Returns:
        ``{"directory", "report", "report_json", "passed", "failures", "fields":
        {name: {"spectrum_rel_error_median", "spectrum_rel_error_worst_third" (the
        report's ``range``: the worst third of a swept range), "w1_over_std",
        "spread_ratio"}},
        "stages": {stage: {"seconds", "reused"}}, "device", "plan"}``.
    Raises:
        ValueError: bad directory, device or plan (nothing already finished is lost).
    """
    from simulators.store import SPLIT_LAYOUTS
    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.generate import generate
    from surrogate.train import TrainConfig, resolve_device, train
    from surrogate.validation.report import validate_files, write_report

    say = log or (lambda message: None)
    resolved = resolve_device(device)
    plan = plan or default_plan(resolved.type)
    TrainConfig(**plan.train)                      # bad settings fail before any work
    if plan.split_layout not in SPLIT_LAYOUTS:
        raise ValueError(f"plan.split_layout must be one of {', '.join(SPLIT_LAYOUTS)}, "
                         f"got {plan.split_layout!r}")
    for name, minimum in (("samples_per_condition", 1), ("reference_per_condition", 0)):
        value = getattr(plan, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"plan.{name} must be an integer >= {minimum}, got {value!r}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(directory)
    # on a GPU the sweep runs there too when the system has a torch backend (the same
    # scheme and seeds; the file equals the numpy one to float32 round-off)
    import simulators
    simulate_on = str(resolved) if resolved.type == "cuda" \
        and simulators.get(plan.system).torch_backend else None
    data, run, generated = directory / "data.h5", directory / "run", directory / "generated.h5"
    timings: dict[str, dict[str, Any]] = {}

    def stage(name: str, number: int, output: Path, work: Callable[[bool], None]) -> None:
        key = plan.stage_key(name)
        if manifest.done(name, key) and output.exists():
            timings[name] = {"seconds": manifest.stages[name].get("seconds"), "reused": True}
            say(f"[{number}/4] {name}: reusing {output}")
            return
        resumable = manifest.started_with(name, key)
        say(f"[{number}/4] {name} -> {output}" + (" (resuming)" if resumable else ""))
        manifest.record(name, key, finished=False)
        start = time.perf_counter()
        work(resumable)
        seconds = time.perf_counter() - start
        manifest.record(name, key, finished=True, seconds=round(seconds, 2))
        timings[name] = {"seconds": seconds, "reused": False}
        say(f"      {name} done in {seconds:.1f} s")

    def simulate(resumable: bool) -> None:
        simulate_plan(plan, data, device=simulate_on, progress=progress, resume=resumable)

    def fit(resumable: bool) -> None:
        config = TrainConfig(**{"seed": plan.seed, **plan.train})
        can_resume = resumable and (run / "checkpoints" / "last.pt").exists()
        train(data, run, None if can_resume else config, device=str(resolved),
              resume=can_resume, overwrite=not can_resume, progress=progress,
              steps=config.steps)

    def sample(resumable: bool) -> None:
        generate(run, generated, like=data, split="test", n=plan.samples_per_condition,
                 seed=plan.seed, device=str(resolved), overwrite=True, progress=progress)

    def judge(resumable: bool) -> None:
        # the noise floor: the simulator run again at every generated trajectory's
        # condition (new seeds), i.e. what a perfect surrogate would have written
        floor = directory / "floor.h5"
        run_sweep(SweepSpec.like(generated, plan.seed + 1), floor, overwrite=True,
                  progress=False, device=simulate_on)
        reference = data
        if plan.reference_per_condition:
            reference = directory / "reference.h5"
            run_sweep(SweepSpec.like(generated, plan.seed + 2,
                                     per_condition=plan.reference_per_condition),
                      reference, overwrite=True, progress=False, device=simulate_on)
        write_report(validate_files(reference, generated, floor=floor), directory)

    stage("simulate", 1, data, simulate)
    stage("train", 2, run / "checkpoints" / "best.pt", fit)
    stage("generate", 3, generated, sample)
    stage("validate", 4, directory / "report.json", judge)
    report = json.loads((directory / "report.json").read_text())
    from surrogate.validation.report.summaries import worst_third
    fields = {name: {"spectrum_rel_error_median": entry["spectrum"]["rel_error_median"],
                     "spectrum_rel_error_worst_third": worst_third(report.get("range") or {},
                                                                   name),
                     "w1_over_std": entry["pdf"]["w1_over_std"],
                     "spread_ratio": entry["spread_ratio"]}
              for name, entry in report["fields"].items()}
    return {"directory": str(directory), "report": str(directory / "report.md"),
            "report_json": str(directory / "report.json"), "passed": bool(report["passed"]),
            "failures": list(report.get("failures", [])), "fields": fields,
            "conditions": report.get("counts", {}).get("matched_conditions"),
            "stages": timings, "device": str(resolved), "plan": plan.to_dict()}
