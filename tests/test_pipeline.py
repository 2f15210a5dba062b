"""The whole flow on the CPU: simulate -> train -> generate -> validate (``quickstart``)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from surrogate import cli
from surrogate import quickstart as quickstart_module
from surrogate.quickstart import QuickstartPlan, default_plan, quickstart

#: a plan small enough for the default suite (seconds): 16^2 fields, 40 steps
TINY = QuickstartPlan(system="gaussian_random_field", n_trajectories=40, resolution=16,
                      sweep={"spectral_index": (1.5, 3.5)}, fixed={"amplitude": 0.1},
                      train={"steps": 8, "batch_size": 8, "width": 8, "validate_every": 4,
                             "checkpoint_every": 4, "sample_every": 8, "log_every": 4,
                             "validation_samples": 16},
                      samples_per_condition=2)


def test_quickstart_runs_every_stage_then_reuses_them(tmp_path):
    lines: list[str] = []
    summary = quickstart(tmp_path / "qs", device="cpu", plan=TINY, progress=False,
                         log=lines.append)
    directory = tmp_path / "qs"
    for name in ("data.h5", "generated.h5", "report.md", "report.json", "quickstart.json",
                 "run/config.json", "run/checkpoints/best.pt"):
        assert (directory / name).exists(), name
    assert sorted(p.name for p in directory.glob("*.png")), "the report has no figures"
    report = json.loads((directory / "report.json").read_text())
    assert summary["passed"] == report["passed"]
    assert set(summary["fields"]) == {"delta", "density"}
    assert summary["conditions"] == report["counts"]["matched_conditions"] >= 1
    assert all(not stage["reused"] for stage in summary["stages"].values())
    # generated at the held-out (test) conditions only, 2 samples each
    from simulators.store import FieldStore
    with FieldStore(directory / "data.h5") as data, FieldStore(directory / "generated.h5") as gen:
        test = sorted(data.parameters()["spectral_index"][data.split == 2])
        generated = sorted(set(gen.parameters()["spectral_index"]))
        assert generated == pytest.approx(test)
        assert gen.schema.system == "gaussian_random_field"

    again = quickstart(directory, device="cpu", plan=TINY, progress=False, log=lines.append)
    assert all(stage["reused"] for stage in again["stages"].values())
    assert again["fields"] == summary["fields"]


@pytest.mark.slow   # a quickstart run twice (8 s)
def test_a_larger_reference_reruns_validation_only(tmp_path):
    first = quickstart(tmp_path, device="cpu", plan=TINY, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    conditions = report["counts"]["matched_conditions"]
    assert report["counts"]["matched_reference_trajectories"] == conditions   # test split
    larger = dataclasses.replace(TINY, reference_per_condition=3)
    summary = quickstart(tmp_path, device="cpu", plan=larger, progress=False)
    assert [summary["stages"][s]["reused"] for s in ("simulate", "train", "generate")] \
        == [True, True, True]
    assert not summary["stages"]["validate"]["reused"]
    report = json.loads((tmp_path / "report.json").read_text())
    counts = report["counts"]
    assert counts["matched_conditions"] == conditions == first["conditions"]
    assert counts["reference_trajectories"] == counts["matched_reference_trajectories"] \
        == 3 * conditions
    # the reference: 3 new simulations at each held-out condition, none from data.h5
    from simulators.store import FieldStore
    with FieldStore(tmp_path / "data.h5") as data, \
            FieldStore(tmp_path / "reference.h5") as reference:
        test = sorted(data.parameters()["spectral_index"][data.split == 2])
        values = reference.parameters()["spectral_index"]
        assert sorted(set(values)) == pytest.approx(test)
        assert all((values == value).sum() == 3 for value in set(values))
        held_out = data.read("delta")[data.split == 2].reshape(len(test), -1)
        new = reference.read("delta").reshape(values.size, -1)
        assert not any((row == new).all(axis=1).any() for row in held_out)
    with pytest.raises(ValueError, match="reference_per_condition"):
        quickstart(tmp_path, device="cpu", plan=dataclasses.replace(
            TINY, reference_per_condition=-1), progress=False)


@pytest.mark.slow   # three quickstarts; the default suite keeps the reuse tests of one
def test_changed_training_reruns_training_and_later_stages_only(tmp_path):
    quickstart(tmp_path, device="cpu", plan=TINY, progress=False)
    data_mtime = (tmp_path / "data.h5").stat().st_mtime_ns
    longer = QuickstartPlan(**{**TINY.__dict__, "train": {**TINY.train, "steps": 12}})
    summary = quickstart(tmp_path, device="cpu", plan=longer, progress=False)
    assert summary["stages"]["simulate"]["reused"]
    assert not summary["stages"]["train"]["reused"]
    assert not summary["stages"]["validate"]["reused"]
    assert (tmp_path / "data.h5").stat().st_mtime_ns == data_mtime
    steps = [json.loads(line)["step"]
             for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 12
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["seed"] == 0
    # a training seed of its own: the same data, another training run
    reseeded = QuickstartPlan(**{**TINY.__dict__, "train": {**TINY.train, "steps": 12,
                                                            "seed": 5}})
    summary = quickstart(tmp_path, device="cpu", plan=reseeded, progress=False)
    assert summary["stages"]["simulate"]["reused"] and not summary["stages"]["train"]["reused"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["seed"] == 5


@pytest.mark.slow   # a quickstart interrupted and resumed (6 s)
def test_interrupted_training_resumes(tmp_path, monkeypatch):
    import surrogate.train as train_module

    calls = []
    real_train = train_module.train

    def crash_after_checkpoint(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:                       # first attempt: train 4 steps, then die
            real_train(*args, **{**kwargs, "steps": 4})
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train_module, "train", crash_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        quickstart(tmp_path, device="cpu", plan=TINY, progress=False)
    summary = quickstart(tmp_path, device="cpu", plan=TINY, progress=False)
    assert calls[1]["resume"] is True and calls[1]["steps"] == TINY.train["steps"]
    assert summary["stages"]["simulate"]["reused"]
    assert not summary["stages"]["train"]["reused"]


@pytest.mark.slow   # a second quickstart run (6 s); the stages and their reuse stay default
def test_cli_quickstart_prints_the_headline_table(tmp_path, monkeypatch, capsys):
    asked = []

    def tiny(device, steps=None, seed=None):
        asked.append(seed)
        return dataclasses.replace(TINY, train={**TINY.train, "seed": seed or 0})

    monkeypatch.setattr(quickstart_module, "default_plan", tiny)
    assert cli.main(["quickstart", "-o", str(tmp_path / "qs"), "--device", "cpu", "-q",
                     "--seed", "3", "--reference-per-condition", "2"]) == 0
    assert asked == [3]
    report = json.loads((tmp_path / "qs" / "report.json").read_text())
    assert report["counts"]["matched_reference_trajectories"] \
        == 2 * report["counts"]["matched_conditions"]
    saved = json.loads((tmp_path / "qs" / "run" / "config.json").read_text())
    assert saved["train"]["seed"] == 3
    out = capsys.readouterr().out
    assert "spectrum err" in out and "delta" in out and "density" in out
    # the worst third of the swept range, as the report has it
    worst = max(third["fields"]["delta"]["spectrum_rel_error_median"]
                for third in report["range"]["spectral_index"]["thirds"].values()
                if third["fields"]["delta"]["spectrum_rel_error_median"] is not None)
    delta_row = next(line for line in out.splitlines() if line.strip().startswith("delta"))
    assert delta_row.split()[2] == format(worst, ".3g")
    assert str(tmp_path / "qs" / "report.md") in out


def test_cli_quickstart_bad_device_is_one_line_error(tmp_path, capsys):
    assert cli.main(["quickstart", "-o", str(tmp_path / "qs"), "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("surrogate: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "qs").exists()


def test_cli_quickstart_bad_reference_size_is_one_line_error(tmp_path, capsys):
    assert cli.main(["quickstart", "-o", str(tmp_path / "qs"), "--device", "cpu",
                     "--reference-per-condition", "-2"]) == 2
    err = capsys.readouterr().err
    assert "reference_per_condition" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "qs").exists()


def test_cli_quickstart_refuses_a_file_as_directory(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert cli.main(["quickstart", "-o", str(target), "--device", "cpu"]) == 2
    assert target.read_text() == "keep me"


def test_default_plans_are_valid_training_configs():
    from surrogate.train import TrainConfig
    for device in ("cpu", "cuda"):
        plan = default_plan(device)
        TrainConfig(**plan.train)
        assert plan.n_trajectories >= 10 * 10      # >= 10 test conditions after the split
    assert default_plan("cpu", steps=17).train["steps"] == 17
    seeded = default_plan("cpu", seed=5)
    assert seeded.train["seed"] == 5 and seeded.seed == default_plan("cpu").seed   # same data


def test_the_split_layout_enters_the_stage_keys_only_when_stratified(tmp_path):
    """Stratified by default, and keyed: a directory made with the random split (the
    default before it) simulates again; a random-split plan keeps the keys of directories
    made before the option (so they are reused); a bad layout stops before any work."""
    plan = default_plan("cpu")
    assert plan.split_layout == "stratified"
    assert json.loads(plan.stage_key("simulate"))["split_layout"] == "stratified"
    random = dataclasses.replace(plan, split_layout="random")
    assert '"split_layout"' not in random.stage_key("validate")
    assert random.stage_key("simulate") != plan.stage_key("simulate")
    with pytest.raises(ValueError, match=r"plan\.split_layout"):
        quickstart(tmp_path / "q", device="cpu",
                   plan=dataclasses.replace(plan, split_layout="even"), progress=False)
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize(("option", "on"), [("shift_equivariant", True),
                                            ("neighbour_batches", True)])
def test_an_option_added_later_enters_the_train_key_only_when_on(option, on):
    """Off, a plan keeps the keys of directories trained before the option existed (they
    are reused); on, it trains again."""
    plan = default_plan("cpu")
    assert option not in json.loads(plan.stage_key("train"))["train"]
    turned_on = dataclasses.replace(plan, train={**plan.train, option: on})
    assert json.loads(turned_on.stage_key("train"))["train"][option] == on
    assert turned_on.stage_key("simulate") == plan.stage_key("simulate")


def test_the_ensemble_default_enters_the_train_key_and_an_explicit_off_does_not():
    """The auto ensemble term (``None``) and its spread target are in the key, so that a
    directory trained before they were the default trains again; turned off (weight 0)
    the key is that of runs before the option, which are reused."""
    plan = default_plan("cpu")
    key = json.loads(plan.stage_key("train"))["train"]
    assert key["ensemble_weight"] is None and key["ensemble_spread_target"] == 0.9
    off = dataclasses.replace(plan, train={**plan.train, "ensemble_weight": 0.0,
                                           "ensemble_spread_target": 0.0})
    off_key = json.loads(off.stage_key("train"))["train"]
    assert "ensemble_weight" not in off_key and "ensemble_spread_target" not in off_key
    assert off.stage_key("simulate") == plan.stage_key("simulate")


def test_a_sign_equivariant_plan_generates_again_with_balanced_signs():
    """Ising files generated before the balanced signs are not reused: its generate key
    names them; a system without the sign symmetry keeps its keys."""
    ising = dataclasses.replace(default_plan("cpu"), system="ising",
                                sweep={"temperature": (1.5, 3.5)})
    assert json.loads(ising.stage_key("generate"))["signs"] == "balanced"
    assert "signs" not in json.loads(ising.stage_key("train"))
    unsigned = dataclasses.replace(ising, train={**ising.train, "sign_equivariant": False})
    assert "signs" not in json.loads(unsigned.stage_key("validate"))
    assert "signs" not in json.loads(default_plan("cpu").stage_key("validate"))


def test_a_lean_plan_trains_again_with_its_output_noise():
    """A lean run kept from before the lean generator's output noise is not reused: its
    train key names it; the default generator's keys are unchanged."""
    plan = default_plan("cpu")
    lean = dataclasses.replace(plan, train={**plan.train, "arch": "lean"})
    assert json.loads(lean.stage_key("train"))["train"]["lean_output_noise"] is True
    assert "lean_output_noise" not in json.loads(plan.stage_key("validate"))["train"]


@pytest.mark.slow
def test_default_cpu_quickstart_learns_the_spectrum(tmp_path):
    """The README's goal: the default CPU quickstart's median spectrum error is < 25%."""
    summary = quickstart(tmp_path, device="cpu", progress=False)
    for name, values in summary["fields"].items():
        assert values["spectrum_rel_error_median"] < 0.25, name
    assert summary["passed"], summary["failures"]
