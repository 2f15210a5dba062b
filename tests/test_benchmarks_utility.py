"""``python -m benchmarks.utility``: the issue-19 table, its targets and its smoke run."""

import json

import pytest

from benchmarks import utility


def _entry(ratio, coverage_real, coverage_generated, alone, with_generated):
    return {"parameters": {"p": {"ratio": ratio, "coverage95_real": coverage_real,
                                 "coverage95_generated": coverage_generated}},
            "augmentation": {"p": [{"fraction": 0.1, "rmse_real_only": alone,
                                    "rmse_with_generated": with_generated}]}}


@pytest.mark.parametrize("entry, expected", [
    (_entry(1.2, 0.9, 0.99, 0.3, 0.2), {"ratio": True, "coverage95": True,
                                         "augmentation": True}),
    (_entry(1.21, 0.95, 0.95, 0.3, 0.2), {"ratio": False, "coverage95": True,
                                           "augmentation": True}),
    (_entry(1.0, 0.95, 1.0, 0.3, 0.2), {"ratio": True, "coverage95": False,
                                         "augmentation": True}),
    (_entry(1.0, 0.89, 0.95, 0.3, 0.3), {"ratio": True, "coverage95": False,
                                          "augmentation": False}),
])
def test_targets_are_the_issues(entry, expected):
    """ratio <= 1.2, both 95 % coverages in [0.9, 0.99], 10 % + generated strictly below
    10 % alone (the first augmentation point)."""
    assert utility.meets_targets(entry) == expected


@pytest.mark.slow
def test_smoke_run_writes_the_table(tmp_path):
    """The whole chain on a tiny plan: quickstart, generation at the data's conditions, a
    held-out sweep, ``utility_files``; the results file holds the issue's keys."""
    output = tmp_path / "utility.json"
    utility.main(["--smoke", "--systems", "gaussian_random_field", "--device", "cpu",
                  "--threads", "1", "--runs", str(tmp_path / "runs"), "--output", str(output)])
    entry = json.loads(output.read_text())["systems"]["gaussian_random_field"]
    assert set(entry["parameters"]) == {"spectral_index"}
    assert [p["fraction"] for p in entry["augmentation"]["spectral_index"]] == [
        0.1, 0.25, 0.5, 1.0]
    # 9 trainings and one on the floor (the data's conditions simulated again)
    assert entry["utility_seconds"] > 0 and entry["counts"]["trainings"] == 10
    scores = entry["parameters"]["spectral_index"]
    assert scores["ratio_floor"] > 0 and len(scores["ratio_floor_per_seed"]) == 1
    assert entry["counts"]["floor_trajectories"] == entry["counts"]["generated_trajectories"]
    assert "| gaussian_random_field | spectral_index |" in output.with_suffix(".md").read_text()


def test_fidelity_train_overrides_reach_the_gan_plan(tmp_path, monkeypatch):
    """``--fidelity-train`` changes the plan the way ``python -m benchmarks`` does, so that
    runs kept by the fidelity part are reused; an unknown option is a usage error."""
    plans, floors = [], []

    def fake_measure(system, plan, directory, device, config, seeds, floor=True):
        plans.append(plan)
        floors.append(floor)
        return {"parameters": {}, "augmentation": {}}

    monkeypatch.setattr(utility, "measure", fake_measure)
    monkeypatch.setattr(utility, "markdown", lambda result: "")
    utility.main(["--systems", "navier_stokes2d", "--device", "cpu", "--gan-steps", "7",
                  "--fidelity-train", "budget_weight=1", "seed=2",
                  "--output", str(tmp_path / "u.json")])
    assert plans[0].train["steps"] == 7
    assert plans[0].train["budget_weight"] == 1 and plans[0].train["seed"] == 2
    assert plans[0].split_layout == "stratified"
    utility.main(["--systems", "ising", "--device", "cpu", "--fidelity-split-layout",
                  "random", "--no-floor", "--output", str(tmp_path / "w.json")])
    assert plans[1].system == "ising" and plans[1].split_layout == "random"
    assert floors == [True, False]                     # the floor unless --no-floor
    with pytest.raises(SystemExit):
        utility.main(["--fidelity-train", "no_such_option=1",
                      "--output", str(tmp_path / "v.json")])


def test_a_kept_run_of_other_settings_is_refused_not_retrained(tmp_path, monkeypatch, capsys):
    """``--runs`` holding a GAN trained with other options stops with a usage error naming
    the differing option (quickstart would otherwise retrain over it); the same options,
    or ``--retrain``, go on."""
    called = []
    monkeypatch.setattr(utility, "measure",
                        lambda system, plan, *rest, **options: called.append(plan) or
                        {"parameters": {}, "augmentation": {}})
    monkeypatch.setattr(utility, "markdown", lambda result: "")
    kept = utility.fidelity_plans("cpu")["navier_stokes2d"]
    kept = utility.dataclasses.replace(kept, train={**kept.train, "seed": 1})
    run = tmp_path / "runs" / "navier_stokes2d"
    run.mkdir(parents=True)
    manifest = {"stages": {"train": {"key": kept.stage_key("train"), "finished": True}}}
    (run / "quickstart.json").write_text(json.dumps(manifest))
    manifest_text = (run / "quickstart.json").read_text()
    common = ["--systems", "navier_stokes2d", "--device", "cpu", "--runs",
              str(tmp_path / "runs"), "--output", str(tmp_path / "u.json")]
    with pytest.raises(SystemExit) as stop:
        utility.main(common)
    assert stop.value.code == 2 and not called
    assert "train.seed=1 (asked 0)" in capsys.readouterr().err     # resolved settings
    assert (run / "quickstart.json").read_text() == manifest_text
    utility.main([*common, "--fidelity-train", "seed=1"])
    utility.main([*common, "--retrain"])
    assert len(called) == 2
