"""The benchmark suite runs and writes its JSON and Markdown (no timings are asserted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks import suite


def test_speed_part_writes_results_and_a_table(tmp_path):
    output = tmp_path / "machine.json"
    result = suite.main(["--parts", "speed", "--systems", "diffusion", "--widths", "8",
                         "--device", "cpu", "--output", str(output)])
    saved = json.loads(output.read_text())
    assert saved["machine"]["name"] == suite.machine_name(__import__("torch").device("cpu"))
    [row] = saved["speed"]
    assert row["system"] == "diffusion" and row["resolution"] == 64
    entry = row["generator"]["width_8"]
    # the ratio is the quotient of the two measured times of this run
    assert entry["speedup"] == row["simulator_seconds_per_snapshot"] / entry["seconds_per_field"]
    table = output.with_suffix(".md").read_text()
    assert "| diffusion | 64 |" in table
    assert result["budget"]["speed_widths"] == [8]


def _fidelity_entry(**changes):
    entry = {"passed": False, "failures": ["spectrum of u"], "held_out_conditions": 3,
             "fields": {"u": {"spectrum_rel_error_median": 0.5, "spectrum_rel_error_max": 2.0,
                              "bands": {"low": {"median": 0.1, "max": 0.2}},
                              "w1_over_std": 0.1, "spread_ratio": 1.0}},
             "frechet_physics_distance": 3.0, "frechet_reference_split": 1.0,
             "stage_seconds": {"train": 12.0}, "plan": {"train": {"steps": 10}}}
    return {**entry, **changes}


def test_markdown_lists_fidelity_failures():
    entry = _fidelity_entry()
    result = {"machine": {"name": "cpu-2core", "device": "cpu", "cpu_count": 2,
                          "torch": "x", "gpu": None, "date": "2026-01-01"},
              "budget": {"training_width": 32}, "fidelity": {"diffusion": entry}}
    table = suite.markdown(result)
    assert "| diffusion (3) | u | 0.5 | 2 | 0.10 / n/a / n/a |" in table
    assert "- diffusion: failed spectrum of u" in table


def test_a_run_of_one_part_merges_into_the_existing_results(tmp_path):
    output = tmp_path / "machine.json"
    earlier = {"machine": {"name": "cpu-2core", "device": "cpu", "cpu_count": 2, "torch": "x",
                           "gpu": None, "date": "2026-01-01"},
               "budget": {"parts": ["speed", "fidelity"], "speed_widths": [16],
                          "training_width": 32},
               "measured": {"speed": {"date": "2026-01-01", "torch": "x"},
                            "fidelity": {"date": "2026-01-01", "torch": "x",
                                         "systems": {"ising": "2026-01-01"}}},
               "speed": [{"system": "kept"}], "fidelity": {"ising": _fidelity_entry(passed=True)}}
    output.write_text(json.dumps(earlier))
    new = {"machine": {**earlier["machine"], "date": "2026-02-02"},
           "budget": {"parts": ["fidelity"], "fidelity_steps_override": 5},
           "measured": {"fidelity": {"date": "2026-02-02", "torch": "y"}},
           "fidelity": {"gray_scott": _fidelity_entry()}}
    merged = suite.merge_results(json.loads(output.read_text()), new)
    assert merged["speed"] == [{"system": "kept"}]
    assert merged["fidelity"] == {"ising": _fidelity_entry(passed=True),
                                  "gray_scott": _fidelity_entry()}
    assert merged["budget"]["parts"] == ["speed", "fidelity"]
    assert merged["budget"]["speed_widths"] == [16]
    assert merged["measured"]["speed"]["date"] == "2026-01-01"
    assert merged["measured"]["fidelity"]["systems"] == {"ising": "2026-01-01",
                                                         "gray_scott": "2026-02-02"}
    # through main: a speed run keeps the earlier fidelity entries; --replace drops them
    suite.main(["--parts", "speed", "--systems", "diffusion", "--widths", "8",
                "--device", "cpu", "--output", str(output)])
    saved = json.loads(output.read_text())
    assert set(saved["fidelity"]) == {"ising"} and saved["speed"][0]["system"] == "diffusion"
    assert "Parts measured on: speed " in output.with_suffix(".md").read_text()
    suite.main(["--parts", "speed", "--systems", "diffusion", "--widths", "8",
                "--device", "cpu", "--output", str(output), "--replace"])
    assert "fidelity" not in json.loads(output.read_text())


def test_fidelity_over_training_seeds_reports_each_seed_and_the_spread(tmp_path, monkeypatch):
    trained = []

    def fake_quickstart(work, *, device, plan, progress, log):
        seed = plan.train["seed"]
        assert plan.train["consistency_weight"] == 10.0       # --fidelity-train reached it
        assert plan.split_layout == "stratified"              # --fidelity-split-layout
        # judged against 4 new simulations per held-out condition, not the test split
        assert plan.reference_per_condition == suite.REFERENCE_PER_CONDITION == 4
        trained.append((work.name, seed, plan.seed))
        work.mkdir(parents=True)
        report = {"passed": seed != 1, "failures": [] if seed != 1 else ["spectrum of u"],
                  "fields": {"u": {"spectrum": {"rel_error_median": 0.1 * (seed + 1),
                                                "rel_error_max": 1.0, "bands": {},
                                                "scatter": {"ratio": 1.0 + 0.1 * seed,
                                                            "floor": 1.0}},
                                   "pdf": {"w1_over_std": 0.05}, "spread_ratio": 0.9,
                                   "temporal_change_ratio": 1.0}},
                  "conservation": {}, "frechet_physics_distance": 1.0,
                  "counts": {"matched_conditions": 4, "matched_reference_trajectories": 16},
                  "floor": {"too_noisy": ["pdf_w1_over_std of u"] if seed == 1 else []}}
        (work / "report.json").write_text(json.dumps(report))
        (work / "run").mkdir()
        # a --low-modes run records the start it was given (seed 3 here)
        calibration = {"factor": 5.0, "mismatch_after": 1.001} if seed == 3 else None
        (work / "run" / "config.json").write_text(json.dumps(
            {"train": {"seed": seed}} if calibration is None else
            {"train": {"seed": seed}, "low_mode_calibration": calibration}))
        scores = [(2, 0.9, 0.1), (4, 0.5, 0.05), (6, 0.6, 0.02)]
        # seed 1's mean of the last generators scores best at step 6
        averages = {6: 0.4 if seed == 1 else 0.7}
        (work / "run" / "metrics.jsonl").write_text("".join(
            json.dumps({"step": step, "valid/score": score, "valid/score_noise": noise,
                        **({"valid/average_score": averages[step]} if step in averages
                           else {})}) + "\n"
            + json.dumps({"step": step + 1, "loss_d": 1.0}) + "\n"
            for step, score, noise in scores))
        return {"report_json": str(work / "report.json"), "plan": plan.to_dict(),
                "directory": str(work), "stages": {"train": {"seconds": 2.0}}}

    monkeypatch.setattr(suite, "quickstart", fake_quickstart)
    monkeypatch.setattr(suite, "share_data", lambda tasks, root: {})
    result = suite.fidelity(__import__("torch").device("cpu"), ["gaussian_random_field"],
                            tmp_path, None, seeds=[3, 1],
                            train_options={"consistency_weight": 10.0},
                            split_layout="stratified")
    # the same data (plan seed) for every run, the training seed changed
    assert [(name, seed) for name, seed, _ in trained] == [
        ("gaussian_random_field_seed3", 3), ("gaussian_random_field_seed1", 1)]
    assert len({data_seed for _, _, data_seed in trained}) == 1
    entry = result["gaussian_random_field"]
    assert entry["fields"]["u"]["spectrum_rel_error_median"] == 0.4       # the first seed's
    assert [r["training_seed"] for r in entry["repeats"]] == [3, 1]
    assert [r["passed"] for r in entry["repeats"]] == [True, False]
    # the training log's scores: best and its step, noise and change medians
    assert entry["repeats"][0]["validation_score"] == pytest.approx(
        {"best": 0.5, "best_step": 4, "best_averaged": False, "scores": [0.9, 0.5, 0.6],
         "average_scores": [0.7], "score_noise_median": 0.05, "score_change_median": 0.25})
    assert entry["repeats"][1]["validation_score"]["best"] == 0.4
    assert entry["repeats"][1]["validation_score"]["best_step"] == 6
    assert entry["repeats"][1]["validation_score"]["best_averaged"] is True
    assert [r["low_mode_calibration"] for r in entry["repeats"]] == [
        {"factor": 5.0, "mismatch_after": 1.001}, None]
    table = suite.markdown({"machine": {"name": "m", "device": "cpu", "cpu_count": 2,
                                        "torch": "x", "gpu": None, "date": "d"},
                            "budget": {}, "fidelity": result})
    assert "| gaussian_random_field | u | 3, 1 | 0.2 / 0.3 / 0.4 | 0.05 | 0.9 / 0.9 | n/a " \
           "| 1.1 / 1.3 | 1 of 2 | 0.05 / 0.25 |" in table
    assert entry["repeats"][0]["fields"]["u"]["spectrum_scatter_ratio"] == pytest.approx(1.3)
    assert entry["fields"]["u"]["spectrum_scatter_ratio_floor"] == 1.0
    assert "- gaussian_random_field: reference 16 simulations at 4 held-out conditions; " \
           "floors above a third of their threshold: none" in table


def test_fidelity_train_overrides_are_checked_training_options(capsys):
    assert suite._train_overrides(None, ["consistency_weight=10", "augment=false"]) == {
        "consistency_weight": 10, "augment": False}
    import argparse
    parser = argparse.ArgumentParser(prog="bench")
    for bad, message in (("nonsense=1", "training option"),
                         ("ema_half_life_fraction=2", "ema_half_life_fraction")):
        with pytest.raises(SystemExit) as error:
            suite._train_overrides(parser, [bad])
        assert error.value.code == 2 and message in capsys.readouterr().err


def test_range_positions_bin_held_out_conditions_by_thirds_of_the_swept_range():
    # nu is declared log-scaled: over [1e-3, 1e-2] the thirds split at 10^-2.667, 10^-2.333
    def condition(nu, error):
        return {"parameters": {"nu": nu, "forcing_amplitude": 0.1},
                "fields": {"velocity": {"spectrum_rel_error_median": error}}}

    report = {"system": "navier_stokes2d", "per_condition": [
        condition(1.1e-3, 0.30), condition(2.0e-3, 0.10),      # low end (2.0e-3 < 2.15e-3)
        condition(2.2e-3, 0.20), condition(4.5e-3, 0.10),      # middle
        condition(4.7e-3, 0.40), condition(1e-2, 0.60)]}       # high end, incl. the end
    result = suite.range_positions(report, {"nu": (1e-3, 1e-2), "forcing_amplitude": (0.1, 0.1)})
    assert list(result) == ["nu"]                              # a fixed parameter is no range
    thirds = result["nu"]["thirds"]
    assert [thirds[label]["conditions"] for label in suite.RANGE_POSITIONS] == [2, 2, 2]
    assert thirds["low end"]["values"] == [1.1e-3, 2.0e-3]
    assert thirds["low end"]["spectrum_rel_error_median"]["velocity"] == pytest.approx(0.2)
    assert thirds["middle"]["spectrum_rel_error_median"]["velocity"] == pytest.approx(0.15)
    assert thirds["high end"]["spectrum_rel_error_median"]["velocity"] == pytest.approx(0.5)
    assert result["nu"]["end_over_middle"]["velocity"] == pytest.approx(0.5 / 0.15)
    # (on a linear scale 2.2e-3 would be in the low end: the log scale is used)
    assert suite.range_positions({"system": "navier_stokes2d", "per_condition": []},
                                 {"nu": (1e-3, 1e-2)}) == {}
    # without per-condition floors no floor; with them the same medians of the floors
    assert result["nu"]["end_over_middle_floor"] == {"velocity": None}
    assert thirds["middle"]["floor"] == {"velocity": None}
    floors = iter([0.08, 0.12, 0.05, 0.07, 0.04, 0.06])
    for entry in report["per_condition"]:
        entry["fields"]["velocity"]["spectrum_rel_error_median_floor"] = next(floors)
    result = suite.range_positions(report, {"nu": (1e-3, 1e-2)})
    floor = {label: third["floor"]["velocity"]
             for label, third in result["nu"]["thirds"].items()}
    assert floor == pytest.approx({"low end": 0.10, "middle": 0.06, "high end": 0.05})
    assert result["nu"]["end_over_middle_floor"]["velocity"] == pytest.approx(0.10 / 0.06)
    assert result["nu"]["end_over_middle"]["velocity"] == pytest.approx(0.5 / 0.15)
    lines = suite._range_table({"navier_stokes2d": {"repeats": [
        {"training_seed": 1, **suite._repeat_record(1, {
            "passed": True, "failures": [], "fields": {}, "conservation": {},
            "stage_seconds": {}, "range_positions": result})}]}})
    assert "| navier_stokes2d | nu | velocity | 1 | 0.2 (floor 0.1) (2) | 0.15 (floor 0.06) " \
           "(2) | 0.5 (floor 0.05) (2) | 3.33 (floor 1.67) |" in lines


def test_the_report_s_own_thirds_reach_the_range_table_with_their_floors():
    third = {"conditions": 2, "values": [1.0, 2.0],
             "fields": {"u": {"spectrum_rel_error_median": 0.1, "ratio": [1.1, 0.9],
                              "floor": 0.05}}}
    report = {"range": {"spectral_index": {
        "thirds": {"low end": third, "middle": {**third, "fields": {"u": {
            "spectrum_rel_error_median": 0.05, "ratio": [1.0], "floor": 0.04}}},
            "high end": third},
        "end_over_middle": {"u": 2.0}, "end_over_middle_floor": {"u": 1.25}}}}
    pooled = suite.pooled_range(report)
    assert "ratio" not in pooled["spectral_index"]["thirds"]["low end"]["fields"]["u"]
    lines = suite._range_table({"gaussian_random_field": {"repeats": [
        {"training_seed": 0, "range_positions": {}, "range_pooled": pooled}]}})
    assert "| gaussian_random_field | spectral_index | u | 0 | 0.1 (0.05) | 0.05 (0.04) | " \
           "0.1 (0.05) | 2 (1.25) |" in lines


def test_fidelity_jobs_run_every_seed_in_a_worker_and_keep_the_seed_order(tmp_path,
                                                                          monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    calls = []

    def fake_run(system, plan, directory, device, label):
        calls.append(label)
        seed = plan.train["seed"]
        return {"passed": True, "failures": [], "fields": {}, "conservation": {},
                "stage_seconds": {"train": float(seed)}, "seed": seed}

    pools = []

    def fake_executor(jobs, threads):
        pools.append((jobs, threads))
        return ThreadPoolExecutor(jobs)

    monkeypatch.setattr(suite, "_fidelity_run", fake_run)
    monkeypatch.setattr(suite, "_executor", fake_executor)
    monkeypatch.setattr(suite, "share_data", lambda tasks, root: {})
    monkeypatch.setattr(suite.os, "cpu_count", lambda: 4)
    result = suite.fidelity(__import__("torch").device("cpu"),
                            ["gaussian_random_field", "ising"], tmp_path, None,
                            seeds=[2, 0, 1], jobs=2)
    assert pools == [(2, 2)]                           # 2 workers of 4 // 2 threads
    assert sorted(calls) == sorted(f"{system}_seed{seed}" for seed in (2, 0, 1)
                                   for system in ("gaussian_random_field", "ising"))
    for system in ("gaussian_random_field", "ising"):
        entry = result[system]
        assert entry["seed"] == 2                      # the first seed's full entry
        assert [r["training_seed"] for r in entry["repeats"]] == [2, 0, 1]
        assert [r["train_seconds"] for r in entry["repeats"]] == [2.0, 0.0, 1.0]
    with pytest.raises(SystemExit):
        suite.main(["--parts", "fidelity", "--fidelity-jobs", "0"])


def test_training_seeds_share_one_simulation_of_their_data(tmp_path, monkeypatch):
    """``share_data``: the runs of one system are given one simulation, hard-linked and
    recorded as their finished simulate stage; a second call finds it and simulates
    nothing; a run whose simulate settings differ is left to quickstart."""
    import dataclasses
    import os

    from surrogate import quickstart as quickstart_module
    plan = dataclasses.replace(suite.fidelity_plans("cpu")["gaussian_random_field"],
                               n_trajectories=6, resolution=16)
    simulated = []
    real = quickstart_module.simulate_plan

    def counted(plan, path, **options):
        simulated.append(path)
        return real(plan, path, **options)

    monkeypatch.setattr(quickstart_module, "simulate_plan", counted)
    tasks = [("gaussian_random_field", dataclasses.replace(
        plan, train={**plan.train, "seed": seed}), tmp_path, "cpu", f"grf_seed{seed}")
        for seed in (0, 1, 2)]
    shared = suite.share_data(tasks, tmp_path)
    assert len(simulated) == 1 and set(shared) == {"grf_seed0", "grf_seed1", "grf_seed2"}
    for _, seed_plan, _, _, label in tasks:
        data = quickstart_module.finished_data(tmp_path / label, seed_plan)
        assert data is not None and os.path.samefile(data, tmp_path / "grf_seed0" / "data.h5")
    assert suite.share_data(tasks, tmp_path) and len(simulated) == 1
    other = [*tasks[:1], ("gaussian_random_field", dataclasses.replace(plan, seed=5),
                          tmp_path, "cpu", "grf_data5")]
    assert suite.share_data(other, tmp_path) == {} and len(simulated) == 1


def _gone(pid: int) -> bool:
    """The process has ended (a zombie no one reaps counts as ended)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return any(line.split()[:2] == ["State:", "Z"] for line in handle)
    except FileNotFoundError:
        return True


@pytest.mark.slow       # 8 s of worker start-up and kill: the default suite stays < 5 min
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_fidelity_workers_end_with_a_killed_benchmark():
    """A benchmark process killed outright (SIGKILL: no cleanup runs) takes its training
    workers with it instead of leaving them to run on in the background."""
    script = textwrap.dedent("""
        import os, signal, time
        from benchmarks import suite
        executor = suite._executor(1, 1)
        print(executor.submit(os.getpid).result(), flush=True)
        executor.submit(time.sleep, 120)
        time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(suite.__file__).parents[1])
    assert done.returncode == -signal.SIGKILL
    worker = int(done.stdout.split()[0])
    deadline = time.monotonic() + 20
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = not _gone(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive, "the training worker outlived the benchmark"
