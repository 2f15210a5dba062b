"""The noise floor: each gated metric between two independent simulator ensembles.

A second simulator ensemble scores at its floor; broken copies (white noise, a blur) are
far above it; the floor comes from a second file (``--floor``) or from two halves of the
reference; a floor file of another system, grid or set of conditions is refused.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import scipy.ndimage

from simulators.store import FieldStore
from simulators.sweep import SweepSpec, run_sweep
from surrogate.cli import main
from surrogate.validation.report import validate_files
from surrogate.validation.report.floor import attach_floor
from tests._files import modified_copy

GRF = dict(system="gaussian_random_field", resolution=32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One condition x 32 trajectories (halves possible) and a 48-point sweep (not)."""
    directory = tmp_path_factory.mktemp("floor")
    one = SweepSpec(n_trajectories=32, fixed={"spectral_index": 2.5, "amplitude": 0.3}, **GRF)
    sweep = SweepSpec(n_trajectories=48, ranges={"spectral_index": (2.0, 3.0)}, **GRF)
    paths = {"one": run_sweep(one, directory / "one.h5", progress=False),
             "sweep": run_sweep(sweep, directory / "sweep.h5", progress=False)}
    for label in ("one", "sweep"):
        for seed in (1, 2):
            paths[f"{label}{seed}"] = run_sweep(SweepSpec.like(paths[label], seed),
                                                directory / f"{label}{seed}.h5", progress=False)
    return paths


def _checks(report, name):
    return {check["field"]: check for check in report["checks"] if check["check"] == name}


def test_like_runs_the_same_conditions_with_other_trajectories(files, tmp_path):
    with FieldStore(files["sweep"]) as a, FieldStore(files["sweep1"]) as b:
        assert a.parameters().keys() == b.parameters().keys()
        for name, values in a.parameters().items():
            assert values.tolist() == b.parameters()[name].tolist()
        assert a.times.tolist() == b.times.tolist()
        assert not np.array_equal(a.read("delta", 0), b.read("delta", 0))
    with pytest.raises(ValueError, match="own seed"):
        SweepSpec.like(files["sweep"], 0)
    # a generated file is not a sweep: its trajectories' conditions are simulated again
    # (here a file written by the generator's writer is stood in for by a copy whose
    # producer is not the simulator)
    copy = tmp_path / "generated_like.h5"
    shutil.copyfile(files["one"], copy)
    with h5py.File(copy, "r+") as handle:
        handle.attrs["producer"] = "surrogate.generate"
    spec = SweepSpec.like(copy, 0)
    assert spec.n_trajectories == 32 and set(spec.design["spectral_index"]) == {2.5}


def test_a_second_simulator_ensemble_scores_at_its_floor_and_broken_copies_far_above(
        files, tmp_path):
    result = validate_files(files["one"], files["one1"], floor=files["one2"]).report
    assert result["floor"]["source"] == "file" and result["passed"]
    for name in ("spectrum_rel_error_median", "pdf_w1_over_std"):
        for field, check in _checks(result, name).items():
            # two draws of the same noise: the same order of magnitude
            assert check["floor"] > 0 and check["value"] < 3 * check["floor"], (name, field)
    rng = np.random.default_rng(0)
    noisy = modified_copy(files["one1"], tmp_path / "noisy.h5",
                          lambda _, a: a + 0.5 * a.std() * rng.standard_normal(a.shape))
    blurred = modified_copy(files["one1"], tmp_path / "blurred.h5",
                            lambda _, a: scipy.ndimage.gaussian_filter(a, (0, 0, 1.5, 1.5),
                                                                       mode="wrap"))
    for broken in (noisy, blurred):
        report = validate_files(files["one"], broken, floor=files["one2"]).report
        for field, check in _checks(report, "spectrum_rel_error_median").items():
            assert check["value"] > 5 * check["floor"], (broken.name, field)


@pytest.mark.slow
def test_the_floor_sits_beside_each_metric_in_json_and_markdown(files, tmp_path):
    assert main(["validate", str(files["sweep"]), str(files["sweep1"]), "-o",
                 str(tmp_path / "report"), "--floor", str(files["sweep2"]), "--no-figures",
                 "-q"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    checks = {(c["check"], c["field"]): c["floor"] for c in report["checks"]}
    for name, entry in report["fields"].items():
        assert entry["spectrum"]["floor"] == checks[("spectrum_rel_error_median", name)]
        assert entry["pdf"]["floor"] == checks[("pdf_w1_over_std", name)]
        assert entry["spread_ratio_floor"] == checks[("spread_ratio_min", name)]
        # one trajectory per condition: no per-condition groups, no aligned spread
        assert entry["spread_aligned_ratio"] is entry["spread_aligned_ratio_floor"] is None
    for key, entry in report["conservation"].items():
        assert entry["floor"] == checks[(f"conservation {key}", None)]
    assert report["floor"]["counts"] == {"trajectories": [48, 48], "conditions": 48}
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| check | field | value | floor | threshold | passed |" in markdown
    # one trajectory per condition: the per-condition spectrum check is noise-limited
    assert "per_condition_spectrum_rel_error_median of delta" in report["floor"]["too_noisy"]


@pytest.mark.slow
def test_each_condition_carries_the_floor_s_error_at_the_same_parameter_values(files):
    """The per-condition floor is the second simulation judged as the generated file is,
    condition by condition (here computed again by validating it directly)."""
    report = validate_files(files["sweep"], files["sweep1"], floor=files["sweep2"]).report
    direct = validate_files(files["sweep"], files["sweep2"]).report
    by_value = {entry["parameters"]["spectral_index"]: entry
                for entry in direct["per_condition"]}
    assert len(report["per_condition"]) == len(by_value) == 48
    for entry in report["per_condition"]:
        theirs = by_value[entry["parameters"]["spectral_index"]]
        for name, numbers in entry["fields"].items():
            assert numbers["spectrum_rel_error_median_floor"] == pytest.approx(
                theirs["fields"][name]["spectrum_rel_error_median"], rel=1e-12)
            # and it is not the generated file's own error
            assert numbers["spectrum_rel_error_median_floor"] != \
                numbers["spectrum_rel_error_median"]
    # a floor that did not compare a condition gives none there, and the others' still
    first = report["per_condition"][0]["parameters"]["spectral_index"]
    attach_floor(report, {"report": {**direct, "per_condition": [
        entry for entry in direct["per_condition"]
        if entry["parameters"]["spectral_index"] != first]},
        "source": "file", "path": "floor.h5", "counts": {}})
    missing = [entry["parameters"]["spectral_index"] for entry in report["per_condition"]
               if entry["fields"]["delta"]["spectrum_rel_error_median_floor"] is None]
    assert missing == [first]


def test_halves_of_the_reference_give_the_floor_when_it_has_two_per_condition(files):
    report = validate_files(files["one"], files["one1"]).report
    assert report["floor"]["source"] == "reference_halves"
    assert report["floor"]["counts"]["trajectories"] == [16, 16]
    # a Sobol sweep holds one trajectory per condition: no floor, and the report says why
    report = validate_files(files["sweep"], files["sweep1"]).report
    assert report["floor"]["source"] is None and "--floor" in report["floor"]["reason"]
    assert all(check.get("floor") is None for check in report["checks"])


def test_a_floor_file_that_does_not_fit_is_a_one_line_error_and_writes_nothing(
        files, tmp_path, capsys):
    other_grid = run_sweep(SweepSpec(n_trajectories=4, system="gaussian_random_field",
                                     resolution=16), tmp_path / "grid.h5", progress=False)
    other_conditions = run_sweep(SweepSpec(n_trajectories=48, ranges={"spectral_index": (
        2.0, 3.0)}, seed=7, **GRF), tmp_path / "conditions.h5", progress=False)
    cases = {other_grid: "resolution 16", "data/sample_navier_stokes2d.h5": "system",
             other_conditions: "holds no trajectory at", tmp_path / "missing.h5": "not found"}
    for floor, message in cases.items():
        output = tmp_path / "report"
        assert main(["validate", str(files["sweep"]), str(files["sweep1"]), "-o",
                     str(output), "--floor", str(floor), "-q"]) == 2
        error = capsys.readouterr().err.strip()
        assert error.splitlines() == [error] and message in error, error
        assert not output.exists()


def test_simulate_like_refuses_bad_files_and_its_own_seed(files, tmp_path, capsys):
    cases = [(tmp_path / "missing.h5", 1, "missing.h5"), (files["one"], 0, "own seed")]
    for like, seed, message in cases:
        assert main(["simulate", "gaussian_random_field", "--like", str(like), "--seed",
                     str(seed), "-o", str(tmp_path / "out.h5"), "-q"]) == 2
        assert message in capsys.readouterr().err
    assert main(["simulate", "navier_stokes2d", "--like", str(files["one"]), "--seed", "1",
                 "-o", str(tmp_path / "out.h5"), "-q"]) == 2
    assert "a gaussian_random_field file" in capsys.readouterr().err
    assert not (tmp_path / "out.h5").exists()


def test_simulate_like_takes_the_system_from_its_file(files, tmp_path, capsys):
    """``surrogate simulate --like REF`` without a system name simulates REF's system;
    neither a name nor --like is one line, exit 2, nothing written."""
    output = tmp_path / "like.h5"
    assert main(["simulate", "--like", str(files["one"]), "--seed", "3", "-o", str(output),
                 "-q"]) == 0
    with FieldStore(output) as store, FieldStore(files["one"]) as reference:
        assert store.system == reference.system == "gaussian_random_field"
        assert store.n_trajectories == reference.n_trajectories
    capsys.readouterr()
    assert main(["simulate", "-o", str(tmp_path / "none.h5"), "-q"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "simulator's name" in error
    assert not (tmp_path / "none.h5").exists()
