"""Generation: same schema as simulator files, deterministic, conditions honoured, refusals."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from simulators.store import FieldStore, check_file
from simulators.sweep import SweepSpec, run_sweep
from surrogate.checkpoint import CheckpointError
from surrogate.cli import main
from surrogate.generate import SurrogateModel, balanced_signs, generate, load_surrogate
from surrogate.train import TrainConfig, train
from surrogate.validation import divergence_violation

SAMPLE = "data/sample_navier_stokes2d.h5"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gen") / "run"
    train(SAMPLE, directory, TrainConfig(steps=4, batch_size=8, width=8, noise_dim=16,
                                         validate_every=2), progress=False)
    return directory


def test_generated_file_follows_the_format_and_the_constraints(run, tmp_path):
    path = generate(run, tmp_path / "g.h5", parameters={"nu": 3e-3}, n=5, seed=1)
    assert check_file(path) == []
    with FieldStore(path) as store:
        assert store.system == "navier_stokes2d"
        assert store.n_trajectories == 5
        np.testing.assert_allclose(store.parameters()["nu"], 3e-3)
        # parameters the training data held fixed keep their training value
        np.testing.assert_allclose(store.parameters()["forcing_amplitude"], 0.1)
        with FieldStore(SAMPLE) as sample:
            np.testing.assert_allclose(store.times, sample.times)
        velocity = store.read("velocity")
        vorticity = store.read("vorticity")
        attrs = dict(store.h5.attrs)
    assert divergence_violation(velocity, 2 * np.pi) < 1e-5       # stream-function head
    assert np.max(np.abs(vorticity.mean(axis=(-2, -1)))) < 1e-5 * np.std(vorticity)
    assert attrs["generator_checkpoint"] == "best.pt"
    assert attrs["seed"] == 1 and len(attrs["generator_run_id"]) == 12
    assert str(tmp_path) not in attrs["command"]


def test_same_seed_same_bytes_other_seed_other_fields(run, tmp_path):
    a = generate(run, tmp_path / "a.h5", parameters={"nu": 1e-3}, n=3, seed=4)
    b = generate(run, tmp_path / "b.h5", parameters={"nu": 1e-3}, n=3, seed=4)
    c = generate(run, tmp_path / "c.h5", parameters={"nu": 1e-3}, n=3, seed=5)
    with FieldStore(a) as fa, FieldStore(b) as fb, FieldStore(c) as fc:
        assert np.array_equal(fa.read("vorticity"), fb.read("vorticity"))
        assert not np.array_equal(fa.read("vorticity"), fc.read("vorticity"))


def test_thread_count_changes_nothing_but_round_off_and_is_restored(run, tmp_path, capsys):
    """``threads`` sets torch's CPU threads for the generator calls only: one and two
    threads give the same fields to float round-off, the caller's count comes back, and
    a count below 1 is a one-line error (exit 2) before any file exists."""
    before = torch.get_num_threads()
    one = generate(run, tmp_path / "one.h5", parameters={"nu": 1e-3}, n=3, seed=4, threads=1)
    assert torch.get_num_threads() == before
    two = generate(run, tmp_path / "two.h5", parameters={"nu": 1e-3}, n=3, seed=4, threads=2)
    with FieldStore(one) as first, FieldStore(two) as second:
        for name in ("vorticity", "velocity"):
            a, b = first.read(name), second.read(name)
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(a).max())
    out = tmp_path / "zero.h5"
    assert main(["generate", str(run), "-o", str(out), "--threads", "0", "-q"]) == 2
    assert "threads must be a positive integer" in capsys.readouterr().err
    assert not out.exists() and torch.get_num_threads() == before


def test_bf16_generation_differs_from_fp32_by_bf16_round_off_and_keeps_the_heads(
        run, tmp_path, capsys):
    """``--precision bf16`` runs the generator under bf16 autocast: the fields differ from
    float32 ones (by how much, in the statistics that matter, the README's measurement
    says: pointwise the differences grow through the layers); the heads still hold
    exactly; the file says how it was made; its resume key differs from a float32 job's;
    an unknown precision is refused."""
    full = generate(run, tmp_path / "fp32.h5", parameters={"nu": 1e-3}, n=3, seed=4)
    half = generate(run, tmp_path / "bf16.h5", parameters={"nu": 1e-3}, n=3, seed=4,
                    precision="bf16")
    with FieldStore(full) as first, FieldStore(half) as second:
        for name in ("vorticity", "velocity"):
            a, b = first.read(name), second.read(name)
            difference = np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a**2))
            assert difference > 1e-4, (name, difference)         # bf16 was used
        assert divergence_violation(second.read("velocity"), 2 * np.pi) < 1e-5
        assert second.h5.attrs["generator_precision"] == "bf16"
        assert first.h5.attrs["generator_precision"] == "fp32"
        key = json.loads(second.h5.attrs["resume_key"])
    assert key["precision"] == "bf16"
    out = tmp_path / "bad.h5"
    assert main(["generate", str(run), "-o", str(out), "--precision", "fp16", "-q"]) == 2
    assert "fp16" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        load_surrogate(run, precision="half")


def test_condition_changes_the_output(run):
    model = load_surrogate(run, device="cpu")
    noise = torch.randn(2, model.model_config.noise_dim, generator=torch.Generator().manual_seed(0))
    low = model.encoder.encode({"nu": 1e-4, "forcing_amplitude": 0.1, "forcing_wavenumber": 4},
                               0.5)
    high = model.encoder.encode({"nu": 1e-2, "forcing_amplitude": 0.1, "forcing_wavenumber": 4},
                                0.5)
    torch.manual_seed(0)
    a = model.sample(np.repeat(low, 2, axis=0), noise)
    torch.manual_seed(0)
    b = model.sample(np.repeat(high, 2, axis=0), noise)
    assert not np.allclose(a, b)


@pytest.mark.slow
def test_like_reuses_parameters_and_times(run, tmp_path):
    path = generate(run, tmp_path / "like.h5", like=SAMPLE, n=2, seed=0, split=None)
    with FieldStore(path) as generated, FieldStore(SAMPLE) as reference:
        assert generated.n_trajectories == 2 * reference.n_trajectories
        np.testing.assert_allclose(generated.parameters()["nu"],
                                   np.repeat(reference.parameters()["nu"], 2))
        np.testing.assert_allclose(generated.times, reference.times)
    assert main(["validate", SAMPLE, str(path), "-o", str(tmp_path / "report"), "-q"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["counts"]["matched_conditions"] == 6


def test_refusals(run, tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert main(["generate", str(run), "-o", str(out), "--set", "nu=5", "-q"]) == 2
    assert "outside its declared range" in capsys.readouterr().err
    assert main(["generate", str(run), "-o", str(out), "--set", "mu=1", "-q"]) == 2
    assert "unknown parameter(s) mu" in capsys.readouterr().err
    assert main(["generate", str(tmp_path), "-o", str(out), "-q"]) == 2
    assert "not a training run directory" in capsys.readouterr().err
    assert not out.exists()
    # a dataset of another system
    from simulators.sweep import SweepSpec, run_sweep
    grf = run_sweep(SweepSpec("gaussian_random_field", 2, resolution=32), tmp_path / "grf.h5",
                    progress=False)
    with pytest.raises(ValueError, match="system 'gaussian_random_field' differs"):
        generate(run, out, like=grf)
    # a checkpoint of another run (other model) is refused
    other = tmp_path / "other"
    shutil.copytree(run, other)
    config = json.loads((other / "config.json").read_text())
    config["model"]["base_width"] = 16
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model differs"):
        generate(other, out)
    # a crafted pickle in place of best.pt is refused, nothing runs
    class Payload:
        def __reduce__(self):
            return (print, ("owned",))
    torch.save({"format": 1, "x": Payload()}, other / "checkpoints" / "best.pt")
    assert main(["generate", str(other), "-o", str(out), "-q"]) == 2
    assert "refused" in capsys.readouterr().err
    assert not out.exists()


def test_existing_output_is_not_overwritten(run, tmp_path, capsys):
    out = tmp_path / "g.h5"
    out.write_bytes(b"keep")
    assert main(["generate", str(run), "-o", str(out), "-n", "1", "-q"]) == 2
    assert out.read_bytes() == b"keep"
    assert main(["generate", str(run), "-o", str(out), "-n", "1", "-q", "--overwrite"]) == 0
    with h5py.File(out) as handle:
        assert handle.attrs["n_trajectories"] == 1


def test_conditions_are_checked_before_any_file_is_made(run, tmp_path):
    from simulators.sweep import SweepSpec, run_sweep
    later = run_sweep(SweepSpec("navier_stokes2d", 2, resolution=32, t_end=2.0, n_snapshots=3,
                                fixed={"forcing_amplitude": 0.1}), tmp_path / "later.h5",
                      progress=False)
    with pytest.raises(ValueError, match="time = 2 is outside"):
        generate(run, tmp_path / "out.h5", like=later)
    assert not list(tmp_path.glob("out.h5*"))


@pytest.fixture(scope="module")
def ising_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ising")
    data = run_sweep(SweepSpec("ising", n_trajectories=12, resolution=16, n_snapshots=2,
                               t_end=4, ranges={"temperature": (1.5, 3.5)}, seed=0),
                     root / "ising.h5", progress=False)
    train(data, root / "run", TrainConfig(steps=2, batch_size=4, width=8, noise_dim=8,
                                          validate_every=2), progress=False)
    return root


def test_an_ising_surrogate_writes_spins_of_exactly_plus_minus_one(ising_run, tmp_path):
    path = generate(ising_run / "run", tmp_path / "g.h5", parameters={"temperature": 2.0},
                    n=3, seed=0, checkpoint="last")
    with FieldStore(path) as store:
        spins = store.read("spin")
    assert set(np.unique(spins).tolist()) == {-1.0, 1.0}
    assert check_file(path) == []


def test_balanced_signs_pair_neighbouring_conditions_with_opposite_fair_signs():
    rng = np.random.default_rng(0)
    conditions = np.column_stack([rng.choice([1.5, 2.0, 2.5, 3.0], 23), rng.random(23)])
    conditions[:6] = [2.0, 0.5]                          # one condition held 6 times
    signs = balanced_signs(conditions, 3, seed=4)
    assert signs.shape == (23, 3) and set(np.unique(signs)) == {-1.0, 1.0}
    assert np.abs(signs.sum(axis=0)).max() <= 1          # odd count: one unpaired
    np.testing.assert_array_equal(signs[:6].sum(axis=0), 0)
    order = np.lexsort(conditions.T[::-1])
    prefix = np.cumsum(signs[order], axis=0)             # from the lowest condition up
    assert np.abs(prefix).max() <= 1
    np.testing.assert_array_equal(balanced_signs(conditions, 3, seed=4), signs)
    assert not np.array_equal(balanced_signs(conditions, 3, seed=5), signs)
    # each entry is +1 with probability 1/2 (a pair's first member is its coin)
    draws = np.stack([balanced_signs(conditions, 3, seed=k) for k in range(2000)])
    assert abs(float((draws > 0).mean(axis=0).max()) - 0.5) < 0.04       # 3.6 sigma
    assert abs(float((draws > 0).mean(axis=0).min()) - 0.5) < 0.04
    assert balanced_signs(np.zeros((5, 0)), 1, seed=0).shape == (5, 1)  # no parameters


def test_balanced_signs_pair_within_a_condition_first():
    """A condition of even count is balanced wherever it starts in condition order (here
    at an odd position, after a condition held once), for every seed; the odd ones out of
    neighbouring conditions are paired with each other."""
    conditions = np.array([[1.0], [2.0], [2.0], [3.0], [3.0], [3.0], [4.0]])
    for seed in range(50):
        signs = balanced_signs(conditions, 2, seed=seed)
        np.testing.assert_array_equal(signs[1:3].sum(axis=0), 0)      # condition 2.0
        np.testing.assert_array_equal(signs[[0, 5]].sum(axis=0), 0)   # the odd ones out
        assert abs(signs[3:6].sum(axis=0)).max() == 1


def test_generation_balances_the_signs_of_a_sign_equivariant_generator(ising_run, tmp_path,
                                                                       monkeypatch):
    """Ising declares ``negate_each_snapshot``: the signs passed to the generator give
    every condition of 4 trajectories 2 of each sign at every snapshot time, whatever the
    batch size, and the snapshots of one trajectory independent signs."""
    passed = []
    sample = SurrogateModel.sample

    def recording(self, condition, noise, sign=None):
        passed.append(np.asarray(sign))
        return sample(self, condition, noise, sign)

    monkeypatch.setattr(SurrogateModel, "sample", recording)
    like = ising_run / "ising.h5"
    per_batch = {}
    for batch in (1, 64):
        passed.clear()
        generate(ising_run / "run", tmp_path / f"b{batch}.h5", like=like, n=4, seed=3,
                 checkpoint="last", batch_size=batch)
        per_batch[batch] = np.concatenate(passed).reshape(12, 4, 2)   # (cond, traj, time)
    np.testing.assert_array_equal(per_batch[1], per_batch[64])
    np.testing.assert_array_equal(per_batch[1].sum(axis=1), 0)
    # the snapshots of one trajectory have independent signs: not all kept
    assert (per_batch[1][..., 0] != per_batch[1][..., 1]).any()
