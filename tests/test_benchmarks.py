"""The benchmark suite runs and writes its JSON and Markdown (no timings are asserted)."""

from __future__ import annotations

import json

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


def test_markdown_lists_fidelity_failures():
    entry = {"passed": False, "failures": ["spectrum of u"], "held_out_conditions": 3,
             "fields": {"u": {"spectrum_rel_error_median": 0.5, "spectrum_rel_error_max": 2.0,
                              "bands": {"low": {"median": 0.1, "max": 0.2}},
                              "w1_over_std": 0.1, "spread_ratio": 1.0}},
             "frechet_physics_distance": 3.0, "frechet_reference_split": 1.0,
             "stage_seconds": {"train": 12.0}, "plan": {"train": {"steps": 10}}}
    result = {"machine": {"name": "cpu-2core", "device": "cpu", "cpu_count": 2,
                          "torch": "x", "gpu": None, "date": "2026-01-01"},
              "budget": {"training_width": 32}, "fidelity": {"diffusion": entry}}
    table = suite.markdown(result)
    assert "| diffusion (3) | u | 0.5 | 2 | 0.10 / n/a / n/a |" in table
    assert "- diffusion: failed spectrum of u" in table
