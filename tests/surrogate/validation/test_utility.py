"""Train on synthetic, test on real (issue 19): the negative controls of the utility metric.

Data: Gaussian random fields on 16^2 grids, spectral index swept over its whole declared
range [1.5, 4] (amplitude fixed), simulated here: the real training set, an independent
simulator ensemble at the same conditions (a perfect "generator"), and held-out
simulations at other conditions. Regressors are small and trained for a few hundred
steps on one thread, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import dataclasses
import json
import math

import h5py
import numpy as np
import pytest

import simulators
from simulators.store import FieldStore
from simulators.sweep import SweepSpec, run_sweep
from surrogate.cli import main
from surrogate.data import ConditionEncoder
from surrogate.validation.utility import (
    RegressorConfig,
    Snapshots,
    read_snapshots,
    regression_scores,
    train_regressor,
    utility_scores,
)

RESOLUTION = 16
SWEEP = {"spectral_index": (1.5, 4.0)}
FIXED = {"amplitude": 0.1}
#: the control trainings: big enough to learn the index, small enough for seconds
CONFIG = RegressorConfig(steps=300, batch_size=64, width=8, learning_rate=3e-3, device="cpu",
                         threads=1)
#: the file-level runs only need to be deterministic and to write their files
TINY = ["--steps", "20", "--width", "4", "--threads", "1", "--device", "cpu", "-q"]


def _sweep(path, n, seed, resolution=RESOLUTION, fixed=None, system="gaussian_random_field",
           sweep=None):
    spec = SweepSpec(system, n, resolution=resolution,
                     ranges=SWEEP if sweep is None else sweep,
                     fixed=FIXED if fixed is None else fixed, seed=seed)
    return run_sweep(spec, path, progress=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """REF (192 trajectories), a second and a third simulator ensemble at REF's
    conditions, TEST (128 trajectories at other conditions of the same range)."""
    directory = tmp_path_factory.mktemp("utility")
    reference = _sweep(directory / "ref.h5", 192, seed=0)
    second = run_sweep(SweepSpec.like(reference, 1), directory / "second.h5", progress=False)
    third = run_sweep(SweepSpec.like(reference, 3), directory / "third.h5", progress=False)
    test = _sweep(directory / "test.h5", 128, seed=2)
    return {"ref": reference, "second": second, "third": third, "test": test,
            "dir": directory}


@pytest.fixture(scope="module")
def arrays(files):
    with FieldStore(files["ref"]) as store:
        encoder, schema = ConditionEncoder.from_schema(store.schema), store.schema
        real = read_snapshots(store, encoder, ["spectral_index"])
    with FieldStore(files["second"]) as store:
        second = read_snapshots(store, encoder, ["spectral_index"])
    with FieldStore(files["test"]) as store:
        test = read_snapshots(store, encoder, ["spectral_index"])
    return {"real": real, "second": second, "test": test, "schema": schema}


def _rmse(training: Snapshots, arrays) -> dict[str, float]:
    """Test scores of a regressor trained on ``training``."""
    mean, std = train_regressor(training, arrays["schema"], CONFIG, seed=0).predict(
        arrays["test"])
    return regression_scores(mean, std, arrays["test"].targets, ("spectral_index",))[
        "spectral_index"]


def _mirrored(snapshots: Snapshots) -> Snapshots:
    """Fields labelled with the condition of their mirror in rank (lowest index gets the
    highest label): a generator that maps conditions to the wrong physics."""
    order = np.argsort(snapshots.targets[:, 0], kind="stable")
    labels = np.empty_like(snapshots.targets)
    labels[order] = snapshots.targets[order[::-1]]
    return snapshots.relabelled(labels)


@pytest.fixture(scope="module")
def controls(arrays):
    """``utility_scores`` with the mirrored second ensemble as "generated" and the second
    ensemble itself as the floor (a perfect generator): three trainings, one seed."""
    return utility_scores(arrays["real"], _mirrored(arrays["second"]), arrays["test"],
                          arrays["schema"], config=CONFIG, seeds=(0,), fractions=(),
                          floor=arrays["second"]).report["parameters"]["spectral_index"]


@pytest.fixture(scope="module")
def real_scores(controls):
    return {"rmse": controls["rmse_real"], "prior_std": controls["prior_std"]}


def test_targets_encode_the_declared_range():
    """The regressor's units are the GAN's condition encoding: the declared range [1.5, 4]
    maps linearly onto [-1, 1]."""
    encoder = ConditionEncoder.from_dict({"parameters": [
        {"name": "spectral_index", "low": 1.5, "high": 4.0, "log_scale": False},
        {"name": "amplitude", "low": 0.01, "high": 1.0, "log_scale": True}],
        "time_range": [0.0, 0.0]})
    fields = {"delta": np.zeros((3, 4, 4)), "density": np.ones((3, 4, 4))}
    snapshots = Snapshots.from_arrays(
        fields, {"spectral_index": np.array([1.5, 2.75, 4.0]), "amplitude": 0.1}, 0.0,
        specs=simulators.get("gaussian_random_field").fields, encoder=encoder,
        names=["spectral_index", "amplitude"])
    np.testing.assert_allclose(snapshots.targets[:, 0], [-1.0, 0.0, 1.0], atol=1e-7)
    # log-scaled: 0.1 is the geometric middle of [0.01, 1]
    np.testing.assert_allclose(snapshots.targets[:, 1], 0.0, atol=1e-7)


def test_scores_of_a_known_prediction():
    """RMSE, coverages and prior std against values computed by hand."""
    targets = np.array([[-1.0], [0.0], [1.0], [0.0]])
    mean = targets + np.array([[0.5], [-0.5], [2.5], [0.0]])
    std = np.full_like(mean, 1.0)
    scores = regression_scores(mean, std, targets, ["p"])["p"]
    assert scores["rmse"] == pytest.approx(math.sqrt((0.25 + 0.25 + 6.25) / 4))
    assert scores["coverage68"] == pytest.approx(3 / 4)      # |error| <= 1: three of four
    assert scores["coverage95"] == pytest.approx(3 / 4)      # 2.5 > 1.96
    assert scores["prior_std"] == pytest.approx(math.sqrt(0.5))


def test_a_field_positive_in_training_but_not_in_the_test_set_predicts_finite(arrays):
    """The density of a log-normal field is positive in every training snapshot; a test
    snapshot at -1e-16 (round-off of a field declared >= 0, as the Gray-Scott simulator
    writes) must still give finite predictions (a log normalisation gave NaN)."""
    names = [spec.name for spec in arrays["schema"].fields]
    channel = names.index("density")
    assert arrays["real"].fields[:, channel].min() > 0
    small = dataclasses.replace(CONFIG, steps=20)
    fitted = train_regressor(arrays["real"], arrays["schema"], small, seed=0)
    assert all(transform.kind != "log" for transform in fitted.normalizer.transforms)
    fields = arrays["test"].fields.copy()
    fields[:, channel, 0, 0] = -1e-16
    touched = dataclasses.replace(arrays["test"], fields=fields)
    mean, std = fitted.predict(touched)
    assert np.isfinite(mean).all() and np.isfinite(std).all()


def test_regressor_trained_on_simulations_learns(real_scores):
    """Trained on simulations, the test RMSE is well below what learning nothing gives."""
    assert real_scores["rmse"] < 0.35 * real_scores["prior_std"]


@pytest.mark.slow
def test_second_simulator_ensemble_as_generated_scores_like_the_simulations(arrays,
                                                                            controls):
    """A perfect generator (the simulator again, other seeds, same conditions), here the
    floor set, gives a ratio within [0.8, 1.25] (one training each: over training seeds
    0-3 this setup gave 0.89, 0.87, 0.95, 0.97); the floor is that ratio, and trained
    alone on the second ensemble the regressor scores the same RMSE (same seed)."""
    assert 0.8 <= controls["ratio_floor"] <= 1.25
    assert controls["ratio_floor_per_seed"] == [controls["ratio_floor"]]
    assert controls["rmse_floor"] == pytest.approx(_rmse(arrays["second"], arrays)["rmse"],
                                                   rel=1e-6)
    assert 0.85 <= controls["coverage95_floor"] <= 1.0


def test_fields_relabelled_to_other_conditions_give_a_large_ratio(controls):
    """Generated fields mirrored in condition (:func:`_mirrored`): ratio >= 2, far past
    the floor's."""
    assert controls["ratio"] >= max(2.0, 2 * controls["ratio_floor"])
    assert controls["ratio_per_seed"] == [controls["ratio"]]


def test_generator_that_ignores_its_condition_teaches_nothing(arrays):
    """Fields whose law does not depend on their label (the ensemble's fields under a
    random permutation of the labels: at every label, a draw from the mixture over all
    conditions) give rmse_generated close to prior_std, against ~0.13 prior_std for the
    simulations.

    The bounds: a constant guess scores >= prior_std. A regressor can still learn the
    permutation's chance correlation rho with the fields' true conditions (|rho| up to
    ~2.5 / sqrt(192) = 0.18 for a random permutation); predicting b y with b <= rho
    scores |1 - b| prior_std at best, so >= ~0.8 prior_std; memorising the labels
    (outputs spread like the labels, independent of the truth) scores up to
    sqrt(2) prior_std, and weight decay keeps it well below."""
    second = arrays["second"]
    permuted = np.random.default_rng(7).permutation(second.targets)
    scores = _rmse(second.relabelled(permuted), arrays)
    assert 0.75 <= scores["rmse"] / scores["prior_std"] <= 1.3


@pytest.mark.slow
def test_same_seed_gives_the_same_report(files, tmp_path):
    """Two runs with one seed write byte-identical utility.json; the report holds the
    issue's keys."""
    arguments = ["utility", "--train-real", str(files["ref"]), "--generated",
                 str(files["second"]), "--test", str(files["test"]), "--fractions", "0.5", "1",
                 *TINY]
    assert main([*arguments, "-o", str(tmp_path / "a")]) == 0
    assert main([*arguments, "-o", str(tmp_path / "b")]) == 0
    first = (tmp_path / "a" / "utility.json").read_text()
    assert first == (tmp_path / "b" / "utility.json").read_text()
    report = json.loads(first)
    assert set(report["parameters"]["spectral_index"]) == {
        "rmse_real", "rmse_generated", "ratio", "ratio_per_seed", "coverage68_real",
        "coverage68_generated", "coverage95_real", "coverage95_generated", "prior_std"}
    assert report["floor"] is None
    points = report["augmentation"]["spectral_index"]
    assert [p["fraction"] for p in points] == [0.5, 1.0]
    assert {"fraction", "rmse_real_only", "rmse_with_generated"} <= set(points[0])
    # f = 1 alone is the TRTR training itself
    assert points[1]["rmse_real_only"] == report["parameters"]["spectral_index"]["rmse_real"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "utility.json", "utility.md", "utility_augmentation.png", "utility_predictions.png"]


def test_floor_file_and_repeats_give_the_floor_and_each_seeds_ratio(files, tmp_path):
    """``--floor REF2 --repeats 2``: the floor keys per parameter, one ratio per seed,
    the ratio of the mean RMSEs between the seeds' ratios (a mediant), the floor in
    utility.md and a third column of predictions."""
    output = tmp_path / "out"
    assert main(["utility", "--train-real", str(files["ref"]), "--generated",
                 str(files["second"]), "--test", str(files["test"]), "--floor",
                 str(files["third"]), "--repeats", "2", "--fractions", "-o", str(output),
                 *TINY]) == 0
    report = json.loads((output / "utility.json").read_text())
    scores = report["parameters"]["spectral_index"]
    assert report["floor"] == str(files["third"]) and report["warnings"] == []
    assert report["counts"]["floor_trajectories"] == 192
    assert report["counts"]["trainings"] == 2 * 3
    for key in ("ratio", "ratio_floor"):
        per_seed = scores[f"{key}_per_seed"]
        assert len(per_seed) == 2
        assert min(per_seed) - 1e-12 <= scores[key] <= max(per_seed) + 1e-12
    assert scores["ratio_floor"] == pytest.approx(scores["rmse_floor"] / scores["rmse_real"])
    assert {"coverage68_floor", "coverage95_floor"} <= set(scores)
    page = (output / "utility.md").read_text()
    assert "ratio (floor)" in page and str(files["third"]) in page
    import matplotlib.image
    width = matplotlib.image.imread(output / "utility_predictions.png").shape[1]
    without = tmp_path / "without"
    assert main(["utility", "--train-real", str(files["ref"]), "--generated",
                 str(files["second"]), "--test", str(files["test"]), "--fractions",
                 "-o", str(without), *TINY]) == 0
    assert width > 1.4 * matplotlib.image.imread(
        without / "utility_predictions.png").shape[1]          # three panels, not two


def test_overlapping_test_conditions_are_named_in_a_warning(files, tmp_path, capsys):
    """REF used as its own test set: every test condition is a training condition."""
    status = main(["utility", "--train-real", str(files["ref"]), "--generated",
                   str(files["second"]), "--test", str(files["ref"]), "--fractions",
                   "-o", str(tmp_path / "out"), *TINY])
    assert status == 0
    assert "surrogate: warning: 192 of the 192 test conditions are also training conditions" \
        in capsys.readouterr().err


@pytest.fixture(scope="module")
def bad_files(files):
    directory = files["dir"]
    nan = directory / "test_nan.h5"
    nan.write_bytes(files["test"].read_bytes())
    with h5py.File(nan, "r+") as handle:
        handle["t0_fields/delta"][5, 0, 3, 3] = np.nan
    return {
        "other system": (_sweep(directory / "diffusion.h5", 8, 0, system="diffusion",
                                sweep={"diffusivity": (0.01, 0.1)}, fixed={}),
                         "system"),
        "other grid": (_sweep(directory / "grid8.h5", 8, 0, resolution=8), "resolution"),
        "other fixed parameter": (_sweep(directory / "amplitude.h5", 8, 0,
                                         fixed={"amplitude": 0.2}), "'amplitude' = 0.2"),
        "nan": (nan, "NaN/Inf"),
        "missing": (directory / "missing.h5", "not found"),
        "too few": (_sweep(directory / "three.h5", 3, 5), "fewer than"),
    }


@pytest.mark.parametrize("case, role", [
    ("other system", "--generated"), ("other grid", "--test"),
    ("other fixed parameter", "--generated"), ("nan", "--test"), ("missing", "--test"),
    ("too few", "--test"), ("no training conditions", "--generated"),
    ("too few for 10 %", "--train-real"), ("other grid", "--floor"),
    ("no training conditions", "--floor"), ("missing", "--floor"),
    ("the real training file", "--floor"), ("REF's seed", "--floor"),
    ("other times", "--floor")])
def test_bad_input_is_one_line_exit_2_nothing_written(files, bad_files, case, role, tmp_path,
                                                      capsys):
    paths = {"--train-real": files["ref"], "--generated": files["second"],
             "--test": files["test"]}
    if case == "no training conditions":
        paths[role], expected = files["test"], "no trajectory within"
    elif case == "the real training file":
        paths[role], expected = files["ref"], "it is the real training file"
    elif case == "REF's seed":
        copy = tmp_path / "ref_copy.h5"            # another file, REF's simulations again
        copy.write_bytes(files["ref"].read_bytes())
        paths[role], expected = copy, "simulated with the real training file's seed 0"
    elif case == "other times":
        # the floor of a Navier-Stokes file simulated to another end time
        ns = tmp_path / "ns.h5"
        run_sweep(SweepSpec("navier_stokes2d", 8, resolution=16, t_end=0.2, n_snapshots=2,
                            ranges={"nu": (1e-3, 1e-2)}, seed=0), ns, progress=False)
        ns_floor = run_sweep(dataclasses.replace(SweepSpec.like(ns, 1), t_end=0.3),
                             tmp_path / "ns_floor.h5", progress=False)
        paths = {"--train-real": ns, "--generated": run_sweep(
            SweepSpec.like(ns, 2), tmp_path / "ns_gen.h5", progress=False),
            "--test": ns, "--floor": ns_floor}
        expected = "(floor file): snapshot times"
    elif case == "too few for 10 %":
        # 10 % of 24 trajectories is 3, fewer than the regressor needs; GEN covers them
        small = _sweep(tmp_path / "ref24.h5", 24, seed=0)
        paths = {"--train-real": small, "--generated": run_sweep(
            SweepSpec.like(small, 1), tmp_path / "gen24.h5", progress=False),
            "--test": files["test"]}
        expected = "10% of the 24 real training trajectories is 3"
    else:
        paths[role], expected = bad_files[case]
    output = tmp_path / "out"
    arguments = [item for flag, path in paths.items() for item in (flag, str(path))]
    assert main(["utility", *arguments, "-o", str(output), *TINY]) == 2
    error = capsys.readouterr().err
    assert error.startswith("surrogate: error: ") and error.count("\n") == 1
    assert expected in error
    assert not output.exists()


@pytest.mark.slow   # a report and a utility run end to end; the API tests stay default
def test_validate_with_a_utility_test_file_adds_the_utility_to_the_report(files, bad_files,
                                                                          tmp_path, capsys):
    """``surrogate validate REF GEN --floor REF2 --utility-test TEST``: report.json
    ``utility`` equals the page's utility.json numbers, the floor file gives the utility
    its floor too, report.md links the page; run again into the same directory the page
    is replaced; a bad TEST writes nothing."""
    output = tmp_path / "report"
    arguments = ["validate", str(files["ref"]), str(files["second"]), "-o", str(output),
                 "--floor", str(files["third"]),
                 "--utility-test", str(files["test"]), "--utility-steps", "20",
                 "--utility-threads", "1", "--no-figures", "-q"]
    assert main(arguments) == 0
    report = json.loads((output / "report.json").read_text())
    page = json.loads((output / "utility" / "utility.json").read_text())
    assert report["utility"]["parameters"] == page["parameters"]
    assert "ratio_floor" in page["parameters"]["spectral_index"]
    assert report["utility"]["floor"] == str(files["third"])
    assert report["utility"]["page"] == "utility/utility.md"
    assert "(utility/utility.md)" in (output / "report.md").read_text()
    assert main(arguments) == 0                       # an existing utility/ is replaced
    assert json.loads((output / "utility" / "utility.json").read_text()) == page
    capsys.readouterr()
    other = tmp_path / "other"
    assert main([*arguments[:4], str(other), "--utility-test",
                 str(bad_files["other grid"][0]), "-q"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("surrogate: error: ") and error.count("\n") == 1
    assert not other.exists()
