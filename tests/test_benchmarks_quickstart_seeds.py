"""``python -m benchmarks.quickstart_seeds``: the whole-range judgement of a quickstart."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import quickstart_seeds
from simulators import get as get_simulator
from surrogate.quickstart import default_plan


def _fake_surrogate(shift_top_quarter: float):
    """A 'surrogate' that simulates GRFs at the asked spectral index (+ a shift of the
    index in the top quarter of the range [1.5, 3.5])."""
    simulator = get_simulator("gaussian_random_field")
    grid = simulator.make_grid(32)

    def sample(condition, noise):
        index = condition[:, 0] + np.where(condition[:, 0] > 3.0, shift_top_quarter, 0.0)
        count = index.shape[0]
        fields = simulator.simulate({"amplitude": np.full(count, 0.1), "spectral_index": index},
                                    grid, np.array([0.0]), list(range(7 * 10**5,
                                                                      7 * 10**5 + count)))
        return np.stack([fields["delta"][:, 0], fields["density"][:, 0]], axis=1)

    return SimpleNamespace(
        schema=SimpleNamespace(times=[0.0], resolution=32, box_size=grid.box_size,
                               fields=[SimpleNamespace(name="delta", rank=0),
                                       SimpleNamespace(name="density", rank=0)]),
        encoder=SimpleNamespace(encode=lambda parameters, times: np.stack(
            [parameters["spectral_index"], times], axis=1)),
        model_config=SimpleNamespace(noise_dim=4), step=0, sample=sample)


def test_range_errors_see_a_spectrum_wrong_in_one_quarter_of_the_range(monkeypatch, tmp_path):
    """Fresh simulations as the 'generated' samples read the sampling floor everywhere; a
    spectral index 0.4 too steep above 3.0 fails the top quarter only (P ~ k^-n: the
    power at the highest shells falls by 16^-0.4 ~ 0.33)."""
    plan = default_plan("cpu")
    errors = {}
    for shift in (0.0, 0.4):
        monkeypatch.setattr(quickstart_seeds, "load_surrogate",
                            lambda *args, shift=shift, **kwargs: _fake_surrogate(shift))
        errors[shift] = quickstart_seeds.range_errors(tmp_path, plan, 64, 4)
    for name in ("delta", "density"):
        right = errors[0.0]["fields"][name]
        assert max(right["quarters"]) < 0.1 and right["spectrum_rel_error_median"] < 0.06
        wrong = errors[0.4]["fields"][name]["quarters"]
        assert wrong[3] > 0.3 and max(wrong[:3]) < 0.1
    assert errors[0.4]["edges"] == pytest.approx([1.5, 2.0, 2.5, 3.0, 3.5])


@pytest.mark.slow   # trains the default quickstart plan for 20 steps (~30 s)
def test_smoke_run_writes_the_table(tmp_path):
    output = tmp_path / "seeds.json"
    quickstart_seeds.main(["--seeds", "1", "--smoke", "--output", str(output)])
    result = json.loads(output.read_text())
    entry = result["seeds"]["1"]
    assert set(entry["range"]["fields"]) == {"delta", "density"}
    assert len(entry["range"]["fields"]["delta"]["quarters"]) == quickstart_seeds.QUARTERS
    assert entry["quickstart_seconds"] >= entry["train_seconds"] > 0
    row = next(line for line in output.with_suffix(".md").read_text().splitlines()
               if line.startswith("| 1 |"))
    spread = f"{entry['report'][next(iter(entry['range']['fields']))]['spread_ratio']:.2f}"
    assert f"| {spread} |" in row


def test_the_table_reads_a_results_file_written_before_its_last_columns():
    """An entry without ``quickstart_seconds`` (files of 2026-12-05) still renders, with
    the report's spread and an empty wall-time cell."""
    fields = {"spectrum_rel_error_median": 0.1, "quarters": [0.1, 0.2, 0.3, 0.4]}
    entry = {"passed": True, "report": {"delta": {"spectrum_rel_error_median": 0.12,
                                                  "spread_ratio": 0.987}},
             "range": {"parameter": "spectral_index", "step": 600,
                       "fields": {"delta": fields}}}
    result = {"machine": {"name": "cpu-2core", "device": "cpu", "cpu_count": 2,
                          "torch": "2", "date": "2026-12-05"},
              "budget": {"conditions": 256, "per_condition": 4, "train_overrides": {}},
              "seeds": {"0": entry}}
    row = quickstart_seeds.markdown(result).splitlines()[4]
    assert row == "| 0 | yes | delta | 0.12 | 0.99 | 0.1 | 0.1 / 0.2 / 0.3 / 0.4 | 0.4 | 600 |  |"
    entry["quickstart_seconds"] = 131.4
    assert quickstart_seeds.markdown(result).splitlines()[4].endswith("| 600 | 131 |")
