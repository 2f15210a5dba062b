"""Energy-budget penalty: second-order exact on simulated trajectories, wrong physics
detected, the same terms as the validation's, trainable, bad set-ups refused."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import torch

from simulators.grid import PeriodicGrid
from simulators.store import FieldStore
from simulators.sweep import SweepSpec, run_sweep
from surrogate.budget import EnergyBudget, energy_budget_unavailable
from surrogate.cli import main
from surrogate.constraints import OutputHeads
from surrogate.data import EmptySplitWarning, load_training_data
from surrogate.train import TrainConfig, train
from surrogate.train.config import AUTO_BUDGET_WEIGHT, AUTO_BUDGET_WEIGHT_ENSEMBLE
from surrogate.validation.conservation import energy_enstrophy, kolmogorov_forcing_work
from tests._files import forget_option

SAMPLE = "data/sample_navier_stokes2d.h5"
TINY = TrainConfig(steps=6, batch_size=8, width=8, noise_dim=16, log_every=2,
                   validate_every=6, sample_every=6, checkpoint_every=3, r1_interval=4)


@pytest.fixture(scope="module")
def dense_files(tmp_path_factory):
    """Forced Navier–Stokes, two trajectories to t = 0.8, sampled with 5, 9 and 17
    snapshots (time steps 0.2, 0.1, 0.05)."""
    folder = tmp_path_factory.mktemp("budget")
    paths = {}
    for count in (5, 9, 17):
        spec = SweepSpec("navier_stokes2d", 2, resolution=32, t_end=0.8, n_snapshots=count,
                         ranges={"nu": (1e-3, 1e-2)},
                         fixed={"forcing_amplitude": 0.5, "forcing_wavenumber": 2}, seed=0)
        paths[count] = run_sweep(spec, folder / f"ns{count}.h5", progress=False)
    return paths


def _pairs(path):
    """(budget, physical fields at t_i, at t_i+1 (float64), conditions at t_i, t_i+1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptySplitWarning)
        data = load_training_data(path)
    heads = OutputHeads.from_schema(data.schema, data.normalizer, dtype=torch.float64)
    budget = EnergyBudget.from_schema(data.schema, heads, data.encoder)
    split = data.splits["train"]
    times = split.n_times
    first = np.array([i for i in range(len(split)) if i % times != times - 1])
    real_a, condition_a = split.get_batch(first)
    real_b, condition_b = split.get_batch(first + 1)
    return (budget, data.normalizer.decode(real_a.double()),
            data.normalizer.decode(real_b.double()), condition_a.double(),
            condition_b.double())


def test_simulated_trajectories_close_the_budget_to_second_order_in_the_time_step(
        dense_files):
    # the trapezoid rule's error is O(dt^2): halving dt divides the residual by ~4
    worst = []
    for count in (5, 9, 17):
        budget, *pairs = _pairs(dense_files[count])
        worst.append(float(budget.relative_residual(*pairs).abs().max()))
    assert worst[2] < 1e-3
    for coarse, fine in itertools.pairwise(worst):
        assert 3.0 < coarse / fine < 5.0


def test_a_wrong_viscosity_or_a_rescaled_snapshot_breaks_the_budget(dense_files):
    budget, fields_a, fields_b, condition_a, condition_b = _pairs(dense_files[17])
    assert budget.penalty(fields_a, fields_b, condition_a, condition_b) < 1e-6
    # nu is log-scaled over [1e-4, 1e-2]: +0.3 in the condition is nu x 2
    doubled_a, doubled_b = condition_a.clone(), condition_b.clone()
    doubled_a[:, 0] += 0.3
    doubled_b[:, 0] += 0.3
    residual = budget.relative_residual(fields_a, fields_b, doubled_a, doubled_b)
    assert residual.abs().min() > 0.2
    # the later snapshot 1 % too energetic (velocity x 1.005): a jump of 0.01 E in
    # dt = 0.05, of the order of the budget's own terms, against a floor below 1e-3
    too_energetic = budget.relative_residual(fields_a, fields_b * 1.005, condition_a,
                                             condition_b)
    assert too_energetic.abs().min() > 0.5


def test_budget_terms_equal_the_validation_library_terms(dense_files):
    budget, fields_a, _, condition_a, _ = _pairs(dense_files[5])
    energy, enstrophy, work = budget.terms(fields_a, condition_a)
    with FieldStore(dense_files[5]) as store:
        schema = store.schema
    velocity = np.moveaxis(fields_a[:, budget.channels].numpy(), 1, -1)    # (B, N, N, 2)
    grid = PeriodicGrid(schema.resolution, schema.box_size)
    expected_energy, expected_enstrophy = energy_enstrophy(velocity, grid.curl(velocity))
    # the forcing parameters as the condition encodes them (float32: m_f = 2 +- 1e-7)
    parameters, _ = budget.encoder.decode(condition_a)
    expected_work = [kolmogorov_forcing_work(flow, amplitude, wavenumber, schema.box_size)
                     for flow, amplitude, wavenumber in zip(
                         velocity, parameters["forcing_amplitude"],
                         parameters["forcing_wavenumber"], strict=True)]
    np.testing.assert_allclose(energy.numpy(), expected_energy, rtol=1e-12)
    np.testing.assert_allclose(enstrophy.numpy(), expected_enstrophy, rtol=1e-10)
    np.testing.assert_allclose(work.numpy(), expected_work, rtol=1e-10, atol=1e-14)
    assert np.all(np.abs(expected_work) > 1e-4)          # the forcing term is exercised


@pytest.mark.slow
def test_training_with_the_budget_logs_it(tmp_path):
    config = TrainConfig(**{**TINY.to_dict(), "steps": 4, "budget_weight": 1.0})
    train(SAMPLE, tmp_path / "run", config, progress=False)
    lines = [json.loads(line) for line in
             (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [line for line in lines if "energy_budget" in line]
    assert logged
    # untrained, the generated pairs break the budget; simulated pairs close it up to
    # the trapezoid rule's error
    assert all(line["energy_budget"] > line["energy_budget_real"] for line in logged)
    assert json.loads((tmp_path / "run" / "config.json").read_text()
                      )["train"]["budget_weight"] == 1.0


@pytest.mark.slow
def test_systems_without_a_budget_are_refused_with_the_reason(tmp_path, capsys):
    field_file = run_sweep(SweepSpec("gaussian_random_field", 6, resolution=16, seed=0),
                           tmp_path / "grf.h5", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptySplitWarning)
        data = load_training_data(field_file)
    assert "declares no energy_budget" in energy_budget_unavailable(data.schema, data.encoder)
    code = main(["train", str(field_file), "-o", str(tmp_path / "run"),
                 "--steps", "2", "--width", "8", "--budget-weight", "1", "-q"])
    assert code == 2
    assert "declares no energy_budget" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    code = main(["train", SAMPLE, "-o", str(tmp_path / "run2"), "--steps", "2", "--width",
                 "8", "--budget-weight", "1", "--temporal-weight", "0", "-q"])
    assert code == 2
    assert "temporal_weight > 0" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()


def _logs_the_budget(run) -> bool:
    return any("energy_budget" in json.loads(line)
               for line in (run / "metrics.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_the_default_applies_the_budget_where_the_system_declares_it(tmp_path):
    """``budget_weight=None`` (auto): AUTO_BUDGET_WEIGHT_ENSEMBLE on a Navier–Stokes file
    with snapshot pairs and the (default) ensemble discriminator, AUTO_BUDGET_WEIGHT
    without it; 0 without pairs or for a system with no energy budget (no error);
    config.json records the number used."""
    grf = run_sweep(SweepSpec("gaussian_random_field", 12, resolution=16, seed=0),
                    tmp_path / "grf.h5", progress=False)
    cases = ((SAMPLE, {}, AUTO_BUDGET_WEIGHT_ENSEMBLE),
             (SAMPLE, {"ensemble_weight": 0.0}, AUTO_BUDGET_WEIGHT),
             (SAMPLE, {"temporal_weight": 0.0}, 0.0), (grf, {}, 0.0))
    for index, (path, options, expected) in enumerate(cases):
        config = TrainConfig(**{**TINY.to_dict(), "steps": 4, **options})
        assert config.budget_weight is None
        run = tmp_path / f"run{index}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptySplitWarning)
            train(path, run, config, progress=False)
        assert json.loads((run / "config.json").read_text()
                          )["train"]["budget_weight"] == expected
        assert _logs_the_budget(run) is (expected > 0)


@pytest.mark.slow
def test_a_run_written_before_the_auto_default_resumes_without_the_budget(tmp_path):
    run = tmp_path / "old"
    train(SAMPLE, run, TrainConfig(**{**TINY.to_dict(), "steps": 2, "budget_weight": 0.0}),
          progress=False)
    forget_option(run, "budget_weight")        # as a run of an older version has none
    assert train(SAMPLE, run, resume=True, progress=False, steps=4)["steps"] == 4
    assert json.loads((run / "config.json").read_text())["train"]["budget_weight"] == 0.0
    assert not _logs_the_budget(run)
