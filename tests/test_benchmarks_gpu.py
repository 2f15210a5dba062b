"""``python -m benchmarks.gpu``: every stage runs tiny on the CPU (``--smoke``) and writes
its JSON and Markdown; without CUDA the plain command says so and exits 0. No timings are
asserted: the numbers are only checked to be the quotients of what the run measured."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    output = tmp_path_factory.mktemp("gpu")
    status = gpu.main(["--device", "cpu", "--smoke", "--output", str(output),
                       "--training-seeds", "0", "1"])
    return status, output


@pytest.mark.slow
def test_smoke_runs_every_stage_and_writes_json_and_markdown(smoke):
    status, output = smoke
    saved = json.loads((output / "smoke-cpu.json").read_text())
    stages = saved["stages"]
    assert list(stages) == list(gpu.STAGES)
    failed = {name: stage.get("error") for name, stage in stages.items()
              if stage["status"] != "ok"}
    assert not failed and status == 0, failed
    table = (output / "smoke-cpu.md").read_text()
    for name in gpu.STAGES:
        assert f"## {name} (ok," in table
    assert (output / "smoke-fidelity-report.md").exists()
    # results are committed: no machine paths (the scratch folder, the checkout) in them
    import tempfile
    for path in output.iterdir():
        text = path.read_text()
        assert tempfile.gettempdir() + "/tmp" not in text, path.name
    assert "not_run" in stages["cuda_tests"]["result"]


@pytest.mark.slow
def test_smoke_numbers_are_the_quotients_of_what_was_measured(smoke):
    _, output = smoke
    stages = json.loads((output / "smoke-cpu.json").read_text())["stages"]
    for row in stages["generation"]["result"]["rows"]:
        assert row["fields_per_second"] == pytest.approx(1 / row["seconds_per_field"])
    simulators = stages["simulators"]["result"]
    systems = {row["system"] for row in simulators["rows"]}
    assert systems == {"navier_stokes2d", "gray_scott", "diffusion", "gaussian_random_field"}
    for row in simulators["rows"]:
        assert row["trajectories_per_second"] == pytest.approx(row["batch"] / row["seconds"])
    for row in stages["training"]["result"]["rows"]:
        assert row["images_per_second"] > 0 and row["ratio_to_fp32"] == 1.0
    fidelity = stages["fidelity"]["result"]
    assert set(fidelity["fields"]) == {"vorticity", "velocity"}
    assert fidelity["plan"]["resolution"] == gpu.SMOKE.fidelity_resolution
    # the quickstart's report carries the noise floor: the simulator at the same conditions
    assert fidelity["floor_source"] == "file"
    assert fidelity["fields"]["vorticity"]["spectrum_rel_error_floor"] > 0
    # one entry per training seed, the same held-out conditions, different trainings
    assert [repeat["training_seed"] for repeat in fidelity["repeats"]] == [0, 1]
    first, second = (repeat["fields"]["vorticity"] for repeat in fidelity["repeats"])
    assert first["spectrum_rel_error_median"] == fidelity["fields"]["vorticity"][
        "spectrum_rel_error_median"]
    assert first != second


@pytest.mark.slow
def test_a_run_of_some_stages_keeps_the_others(smoke):
    _, output = smoke
    before = json.loads((output / "smoke-cpu.json").read_text())["stages"]
    gpu.main(["--device", "cpu", "--smoke", "--output", str(output), "--stages", "generation"])
    after = json.loads((output / "smoke-cpu.json").read_text())["stages"]
    assert list(after) == list(before)
    assert after["fidelity"] == before["fidelity"]
    assert after["generation"] != before["generation"]          # measured again


def test_speedups_divide_simulator_time_by_generator_time(monkeypatch):
    monkeypatch.setattr(gpu, "_cpu_reference", lambda: {("navier_stokes2d", 128): 0.5})
    generation = [{"resolution": 128, "width": 16, "precision": "fp32",
                   "seconds_per_field": 2e-5},
                  {"resolution": 128, "width": 16, "precision": "bf16",
                   "seconds_per_field": 1e-5}]
    simulated = [{"system": "navier_stokes2d", "resolution": 128, "t_end": 10.0,
                  "backend": "torch cuda", "batch": 100, "seconds": 2.0},
                  {"system": "navier_stokes2d", "resolution": 128, "t_end": 10.0,
                   "backend": "numpy, this machine's CPU (16 cores)", "batch": 1,
                   "seconds": 0.4}]
    [row] = gpu.speedups(simulated, generation)
    assert row["generator_precision"] == "bf16"                 # the faster one
    assert row["speedup_vs_cpu_2core"] == pytest.approx(0.5 / 1e-5)
    assert row["speedup_vs_same_device"] == pytest.approx(0.02 / 1e-5)
    assert row["speedup_vs_this_cpu"] == pytest.approx(0.4 / 1e-5)


def test_largest_batch_doubles_while_throughput_grows_and_stops_at_out_of_memory():
    calls = []

    def measure(batch):
        calls.append(batch)
        if batch > 64:
            raise torch.cuda.OutOfMemoryError("out of memory")
        return 1.0 / batch                     # seconds per item fall with the batch

    assert gpu._largest_batch(measure, 8, 1024, torch.device("cpu")) == (64, 1 / 64)
    assert calls == [8, 16, 32, 64, 128]
    with pytest.raises(torch.cuda.OutOfMemoryError, match="batch 128"):
        gpu._largest_batch(measure, 128, 1024, torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_without_cuda_the_command_says_so_and_exits_0(tmp_path, capsys):
    assert gpu.main(["--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "no CUDA GPU" in out
    assert list(tmp_path.iterdir()) == []
    assert gpu.main(["--device", "cpu", "--output", str(tmp_path)]) == 2
