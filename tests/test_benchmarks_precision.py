"""``python -m benchmarks.precision``: bf16 against float32 generation on kept runs."""

import json

import pytest

from benchmarks import precision


def test_a_folder_without_kept_trainings_is_refused(tmp_path):
    (tmp_path / "navier_stokes2d_seed0" / "run").mkdir(parents=True)    # no reference/floor
    with pytest.raises(ValueError, match="no kept fidelity trainings"):
        precision.kept_seed_dirs(tmp_path)


@pytest.mark.slow
def test_smoke_run_compares_both_precisions_on_the_same_draws(tmp_path):
    """A tiny training, its reference and floor laid out as the fidelity benchmark keeps
    them: both precisions are validated, and the float32 file alone reproduces the
    same numbers when generated again (the draws are the seed's, not the precision's)."""
    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.train import TrainConfig, train
    sample = "data/sample_navier_stokes2d.h5"
    folder = tmp_path / "runs" / "navier_stokes2d_seed0"
    train(sample, folder / "run", TrainConfig(steps=4, batch_size=8, width=8, noise_dim=16,
                                              validate_every=2), progress=False)
    reference = run_sweep(SweepSpec.like(sample, 11, per_condition=2),
                          folder / "reference.h5", progress=False)
    run_sweep(SweepSpec.like(reference, 12), folder / "floor.h5", progress=False)
    output = tmp_path / "precision.json"
    precision.main(["--runs", str(tmp_path / "runs"), "--output", str(output)])
    result = json.loads(output.read_text())
    (row,) = result["trainings"]
    assert (row["system"], row["training_seed"]) == ("navier_stokes2d", 0)
    assert set(row["precisions"]) == {"fp32", "bf16"}
    fp32, bf16 = row["precisions"]["fp32"], row["precisions"]["bf16"]
    assert fp32["fields"]["vorticity"]["spectrum_rel_error_median"] != \
        bf16["fields"]["vorticity"]["spectrum_rel_error_median"]
    assert fp32["fields"]["vorticity"]["spectrum_rel_error_floor"] is not None
    again = precision.measure(folder, 7, "cpu", tmp_path)["fp32"]
    assert again["fields"] == fp32["fields"]
    assert "| navier_stokes2d | 0 | bf16 | vorticity |" in output.with_suffix(".md").read_text()
