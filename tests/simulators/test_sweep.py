"""Sweeps: Sobol designs, seeds independent of workers, resume after interruption."""

import dataclasses
import json

import h5py
import numpy as np
import pytest
from scipy.stats import qmc

import simulators
from simulators.store import FieldStore, assign_split, partial_path
from simulators.sweep import (
    SweepSpec,
    design_positions,
    run_sweep,
    sobol_design,
    trajectory_seeds,
)


def _fields(path):
    with FieldStore(path) as store:
        return {name: store.read(name) for name in store.field_names}, store.parameters()


def test_design_spans_the_range_log_uniformly_for_decades():
    sim = simulators.get("navier_stokes2d")
    design = sobol_design(sim, 256, {"nu": (1e-4, 1e-2)}, {"forcing_amplitude": 0.5}, seed=1)
    nu = design["nu"]
    assert nu.min() >= 1e-4 and nu.max() <= 1e-2
    # log-uniform: each decade holds half the points (Sobol: balanced to ~1 point)
    assert abs(np.sum(nu < 1e-3) - 128) <= 2
    assert np.all(design["forcing_amplitude"] == 0.5)
    assert np.all(design["forcing_wavenumber"] == sim.parameter("forcing_wavenumber").default)
    # the unit-cube points form a low-discrepancy set (far better than random)
    unit = (np.log(nu) - np.log(1e-4)) / (np.log(1e-2) - np.log(1e-4))
    assert qmc.discrepancy(unit[:, None]) < 1e-3


def test_integer_parameters_get_integer_values_covering_the_range():
    sim = simulators.get("navier_stokes2d")
    design = sobol_design(sim, 64, {"forcing_wavenumber": (1, 8)}, {}, seed=0)
    values = design["forcing_wavenumber"]
    assert set(np.unique(values)) == set(range(1, 9))
    assert np.all(np.bincount(values.astype(int))[1:] == 8)


def test_trajectory_seeds_are_distinct_and_depend_only_on_master_seed():
    seeds = trajectory_seeds(7, 100)
    assert len(set(seeds.tolist())) == 100
    np.testing.assert_array_equal(seeds[:10], trajectory_seeds(7, 10))
    assert not np.array_equal(seeds[:10], trajectory_seeds(8, 10))


@pytest.mark.slow
def test_same_seed_same_bytes_whatever_workers_and_batching(tmp_path):
    spec = SweepSpec("diffusion", n_trajectories=6, resolution=16, n_snapshots=3,
                     ranges={"diffusivity": (1e-3, 1e-1)}, seed=11)
    one = run_sweep(spec, tmp_path / "one.h5", workers=1, batch_size=4, progress=False)
    two = run_sweep(spec, tmp_path / "two.h5", workers=2, batch_size=1, progress=False)
    (a, pa), (b, pb) = _fields(one), _fields(two)
    assert a["u"].tobytes() == b["u"].tobytes()
    assert pa["diffusivity"].tobytes() == pb["diffusivity"].tobytes()


def test_resume_after_interruption_gives_the_same_bytes(tmp_path, monkeypatch):
    spec = SweepSpec("gaussian_random_field", n_trajectories=8, resolution=16,
                     ranges={"spectral_index": (2.0, 3.0)}, seed=4)
    reference = run_sweep(spec, tmp_path / "ref.h5", progress=False)
    import simulators.sweep as sweep_module
    original = sweep_module._run_batch
    calls = {"n": 0}

    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "_run_batch", crash_on_third)
    target = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, target, batch_size=2, progress=False)
    assert not target.exists() and partial_path(target).exists()
    monkeypatch.setattr(sweep_module, "_run_batch", original)
    run_sweep(spec, target, batch_size=2, resume=True, progress=False)
    assert not partial_path(target).exists()
    (a, _), (b, _) = _fields(reference), _fields(target)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes()


def test_resume_refuses_a_partial_file_from_another_job(tmp_path):
    spec = SweepSpec("diffusion", n_trajectories=3, resolution=16, n_snapshots=2, seed=1)
    target = tmp_path / "x.h5"
    run_sweep(spec, target, progress=False)
    target.rename(partial_path(target))          # pretend it was interrupted
    other = SweepSpec("diffusion", n_trajectories=3, resolution=16, n_snapshots=2, seed=2)
    with pytest.raises(ValueError, match="different job"):
        run_sweep(other, target, resume=True, progress=False)


@pytest.mark.parametrize(("spec", "message"), [
    (SweepSpec("nope", 4), "unknown system 'nope'"),
    (SweepSpec("diffusion", 4, ranges={"nu": (0.1, 0.2)}), "has no parameter 'nu'"),
    (SweepSpec("diffusion", 4, ranges={"diffusivity": (1e-5, 1e-2)}), "declared range"),
    (SweepSpec("diffusion", 4, ranges={"diffusivity": (1e-2, 1e-3)}), "low"),
    (SweepSpec("diffusion", 4, ranges={"diffusivity": (1e-3, 1e-2)},
               fixed={"diffusivity": 1e-2}), "both swept and fixed"),
    (SweepSpec("diffusion", 4, resolution=100), "power of two"),
    (SweepSpec("diffusion", 4, n_snapshots=0), "positive integer"),
    (SweepSpec("diffusion", 0), "positive integer"),
    (SweepSpec("diffusion", 4, split_layout="even"), "unknown split layout 'even'"),
])
def test_bad_specs_fail_before_any_file_is_written(tmp_path, spec, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(spec, tmp_path / "bad.h5", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_like_per_condition_repeats_each_distinct_condition(tmp_path):
    # a file with 2 trajectories at each of 3 conditions (as a generated file has)
    design = {"spectral_index": (2.0, 2.0, 3.0, 3.0, 2.5, 2.5), "amplitude": (0.1,) * 6}
    spec = SweepSpec("gaussian_random_field", n_trajectories=6, resolution=16, seed=4,
                     design=design)
    source = run_sweep(spec, tmp_path / "source.h5", progress=False)
    like = SweepSpec.like(source, 9, per_condition=3)
    assert like.n_trajectories == 9
    assert like.design["spectral_index"] == (2.0,) * 3 + (3.0,) * 3 + (2.5,) * 3
    assert like.design["amplitude"] == (0.1,) * 9
    larger = run_sweep(like, tmp_path / "larger.h5", progress=False)
    fields, parameters = _fields(larger)
    assert fields["delta"].shape[0] == 9
    assert parameters["spectral_index"].tolist() == list(like.design["spectral_index"])
    # new random states: no trajectory repeats another of the file or of itself
    first = fields["delta"].reshape(9, -1)
    assert len({row.tobytes() for row in first}) == 9
    assert SweepSpec.like(source, 9).n_trajectories == 6       # default: one per trajectory
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="per_condition"):
            SweepSpec.like(source, 9, per_condition=bad)


def test_design_positions_map_each_varying_parameter_to_the_unit_interval():
    sim = simulators.get("navier_stokes2d")
    design = sobol_design(sim, 64, {"nu": (1e-4, 1e-2), "forcing_amplitude": (0.1, 0.3)},
                          {"forcing_wavenumber": 4}, seed=2)
    positions = design_positions(sim, design)
    assert positions.shape == (64, 2)                       # the fixed wavenumber drops out
    nu = design["nu"]
    np.testing.assert_allclose(positions[:, 0], (np.log(nu) - np.log(nu.min()))
                               / (np.log(nu.max()) - np.log(nu.min())))       # log-scaled
    amplitude = design["forcing_amplitude"]
    np.testing.assert_allclose(positions[:, 1], (amplitude - amplitude.min())
                               / (amplitude.max() - amplitude.min()))
    fixed = sobol_design(sim, 5, {}, {}, seed=0)
    assert design_positions(sim, fixed).shape == (5, 0)


def test_a_stratified_sweep_writes_its_split_layout_and_keys_it(tmp_path):
    """30 trajectories, 3 held out of each kind: one of each per tercile of the swept
    index; the layout (the default) is the split dataset's attribute; a random spec's key
    is the one of files written before the option existed, a stratified one's differs."""
    spec = SweepSpec("gaussian_random_field", n_trajectories=30, resolution=16, seed=5,
                     ranges={"spectral_index": (1.5, 3.5)}, split_layout="stratified")
    path = run_sweep(spec, tmp_path / "s.h5", progress=False)
    with FieldStore(path) as store:
        split, index = store.split, store.parameters()["spectral_index"]
    with h5py.File(path, "r") as handle:
        assert handle["split"].attrs["layout"] == "stratified"
    ranked = split[np.argsort(index)].reshape(3, 10)
    assert ((ranked == 1).sum(axis=1) == 1).all() and ((ranked == 2).sum(axis=1) == 1).all()
    random = SweepSpec("gaussian_random_field", n_trajectories=30, resolution=16, seed=5,
                       ranges={"spectral_index": (1.5, 3.5)}, split_layout="random")
    assert "split_layout" not in json.loads(random.key())
    assert dataclasses.replace(spec, split_layout="stratified") == spec == SweepSpec(
        "gaussian_random_field", n_trajectories=30, resolution=16, seed=5,
        ranges={"spectral_index": (1.5, 3.5)})                 # stratified by default
    assert json.loads(spec.key())["split_layout"] == "stratified"
    plain = run_sweep(random, tmp_path / "r.h5", progress=False)
    with FieldStore(plain) as store, FieldStore(path) as stratified:
        np.testing.assert_array_equal(store.split, assign_split(30, 5))
        assert store.split_layout == "random" and stratified.split_layout == "stratified"
        assert store.read("delta").tobytes() == stratified.read("delta").tobytes()
