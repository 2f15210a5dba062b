"""surrogate.data: channel layout, conditions, normalisation, splits, datasets, augmentation."""

from __future__ import annotations

import json
import pickle
import shutil

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import simulators
from simulators.base import FieldSpec, Invariant, Parameter
from simulators.grid import PeriodicGrid
from simulators.store import FieldStore, StoreSchema
from simulators.sweep import SweepSpec, run_sweep
from surrogate.data import (
    ConditionEncoder,
    EmptySplitWarning,
    FieldNormalizer,
    FieldTransform,
    SnapshotDataset,
    SymmetryAugmentation,
    apply_symmetry,
    augment,
    channel_layout,
    check_compatible,
    declared_invariants,
    from_store_layout,
    load_training_data,
    n_channels,
    neighbour_groups,
    open_store,
    point_group,
    pseudoscalar_fields,
    split_trajectories,
    symmetries_for,
    to_store_layout,
    zero_mean_axes,
)


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ns_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ns.h5"
    spec = SweepSpec("navier_stokes2d", n_trajectories=6, resolution=16, t_end=0.5,
                     n_snapshots=3, ranges={"nu": (1e-3, 1e-2)},
                     fixed={"forcing_amplitude": 0.5, "forcing_wavenumber": 2}, seed=1)
    return run_sweep(spec, path, progress=False)


@pytest.fixture(scope="module")
def grf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "grf.h5"
    spec = SweepSpec("gaussian_random_field", n_trajectories=6, resolution=16,
                     ranges={"spectral_index": (2.0, 3.5)}, seed=2)
    return run_sweep(spec, path, progress=False)


@pytest.fixture(scope="module")
def diffusion_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "diffusion.h5"
    spec = SweepSpec("diffusion", n_trajectories=3, resolution=16, n_snapshots=2,
                     ranges={"diffusivity": (1e-3, 1e-1)}, seed=3)
    return run_sweep(spec, path, progress=False)


def _ns_schema(resolution=16, times=(0.0, 1.0)):
    simulator = simulators.get("navier_stokes2d")
    return StoreSchema.from_simulator(simulator, simulator.make_grid(resolution),
                                      np.asarray(times))


# ------------------------------------------------------------------ channel layout
def test_channel_layout_follows_schema_order_with_two_channels_per_vector():
    schema = _ns_schema()
    assert channel_layout(schema.fields) == [("vorticity", 0, slice(0, 1)),
                                             ("velocity", 1, slice(1, 3))]
    assert n_channels(schema.fields) == 3


def test_store_layout_round_trip_is_exact_and_keeps_components_in_order():
    fields = _ns_schema().fields
    rng = np.random.default_rng(0)
    arrays = {"vorticity": rng.standard_normal((2, 3, 8, 8)).astype(np.float32),
              "velocity": rng.standard_normal((2, 3, 8, 8, 2)).astype(np.float32)}
    channels = from_store_layout(arrays, fields)
    assert channels.shape == (2, 3, 3, 8, 8) and channels.dtype == np.float32
    np.testing.assert_array_equal(channels[:, :, 0], arrays["vorticity"])
    np.testing.assert_array_equal(channels[:, :, 1], arrays["velocity"][..., 0])   # u_x
    np.testing.assert_array_equal(channels[:, :, 2], arrays["velocity"][..., 1])   # u_y
    back = to_store_layout(torch.from_numpy(channels), fields)
    for name, array in arrays.items():
        np.testing.assert_array_equal(back[name], array)
        assert back[name].flags.c_contiguous
    with pytest.raises(ValueError, match="velocity"):
        from_store_layout({"vorticity": arrays["vorticity"]}, fields)
    with pytest.raises(ValueError, match="3, N, N"):
        to_store_layout(channels[..., :2, :, :], fields)


# --------------------------------------------------------------- condition vector
def test_condition_encoder_maps_declared_ranges_to_unit_interval():
    encoder = ConditionEncoder.from_schema(_ns_schema(times=np.linspace(0.0, 2.0, 5)))
    assert encoder.dim == 4 and encoder.labels[-1] == "time"
    condition = encoder.encode({"nu": np.array([1e-4, 1e-3, 1e-2]),
                                "forcing_amplitude": np.array([0.0, 0.25, 1.0]),
                                "forcing_wavenumber": np.array([1, 8, 4.5])},
                               np.array([0.0, 1.0, 2.0]))
    assert condition.dtype == np.float32 and condition.shape == (3, 4)
    expected = [[-1.0, -1.0, -1.0, -1.0],     # nu on a log scale: 1e-3 is the midpoint
                [0.0, -0.5, 1.0, 0.0],
                [1.0, 1.0, 0.0, 1.0]]
    np.testing.assert_allclose(condition, expected, atol=1e-7)
    parameters, times = encoder.decode(condition)
    np.testing.assert_allclose(parameters["nu"], [1e-4, 1e-3, 1e-2], rtol=1e-6)
    np.testing.assert_allclose(times, [0.0, 1.0, 2.0], atol=1e-6)


def test_condition_encoder_single_time_and_scalars_broadcast():
    grf = simulators.get("gaussian_random_field")
    schema = StoreSchema.from_simulator(grf, grf.make_grid(16), np.zeros(1))
    encoder = ConditionEncoder.from_schema(schema)
    condition = encoder.encode({"amplitude": 0.1, "spectral_index": [1.5, 4.0]}, 0.0)
    np.testing.assert_allclose(condition, [[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]], atol=1e-7)


def test_condition_encoder_refuses_out_of_range_and_missing_values():
    encoder = ConditionEncoder.from_schema(_ns_schema())
    good = {"nu": 1e-3, "forcing_amplitude": 0.5, "forcing_wavenumber": 2}
    with pytest.raises(ValueError, match=r"'nu' = 0\.05 is outside the range \[0\.0001, 0\.01\]"):
        encoder.encode({**good, "nu": 0.05}, 0.5)
    with pytest.raises(ValueError, match=r"time = 3 is outside the range \[0, 1\]"):
        encoder.encode(good, 3.0)
    with pytest.raises(ValueError, match=r"missing.*forcing_wavenumber"):
        encoder.encode({"nu": 1e-3, "forcing_amplitude": 0.5}, 0.5)
    with pytest.raises(ValueError, match=r"unknown.*'mu'"):
        encoder.encode({**good, "mu": 1.0}, 0.5)
    with pytest.raises(ValueError, match="outside"):
        encoder.encode({**good, "nu": np.nan}, 0.5)


def test_condition_encoder_json_round_trip():
    encoder = ConditionEncoder.from_schema(_ns_schema(times=(0.0, 0.5, 3.0)))
    copy = ConditionEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert copy == encoder
    values = {"nu": [2e-4, 5e-3], "forcing_amplitude": [0.1, 0.9], "forcing_wavenumber": [3, 7]}
    np.testing.assert_array_equal(copy.encode(values, [0.1, 2.9]),
                                  encoder.encode(values, [0.1, 2.9]))


def test_neighbour_groups_are_the_nearest_points_by_brute_force():
    rng = np.random.default_rng(3)
    for points in (rng.uniform(-1, 1, (40, 1)), rng.uniform(-1, 1, (30, 3))):
        groups = neighbour_groups(points, 4)
        assert groups.shape == (len(points), 4)
        np.testing.assert_array_equal(groups[:, 0], np.arange(len(points)))
        for row, group in enumerate(groups):
            gaps = np.sqrt(((points - points[row]) ** 2).sum(axis=1))
            gaps[row] = np.inf
            np.testing.assert_array_equal(np.sort(gaps[group[1:]]), np.sort(gaps)[:3])


def test_neighbour_groups_keep_a_repeated_condition_together():
    """A sweep that repeats each condition (here 5 values x 6 repeats, shuffled, the
    repeats far more than the queried neighbours' margin) groups repeats only."""
    rng = np.random.default_rng(0)
    values = rng.permutation(np.repeat(np.linspace(-1, 1, 5), 6))[:, None]
    for size in (2, 6):
        groups = neighbour_groups(values, size)
        assert (values[groups, 0] == values[:, :1]).all()
        assert all(len(set(group)) == size for group in groups)
    wide = neighbour_groups(np.zeros((20, 1)), 12)    # ties reach past the query
    assert all(sorted(group[1:]) == [j for j in range(20) if j != row][:11]
               for row, group in enumerate(wide))


def test_neighbour_groups_refuse_bad_sizes_and_points():
    assert neighbour_groups(np.zeros((3, 0)), 3).shape == (3, 3)     # no parameters
    for size in (0, 4):
        with pytest.raises(ValueError, match="group size"):
            neighbour_groups(np.zeros((3, 1)), size)
    with pytest.raises(ValueError, match="finite"):
        neighbour_groups(np.array([[0.0], [np.nan]]), 2)
    with pytest.raises(ValueError, match=r"\(n, P\)"):
        neighbour_groups(np.zeros(3), 2)


# ------------------------------------------------------------------ normalisation
def _pooled(array):
    return float(array.mean()), float(array.std()), float(np.sqrt(np.mean(array**2)))


def test_normalizer_kinds_follow_invariants(ns_file, grf_file, diffusion_file):
    kinds = {}
    for path in (ns_file, grf_file, diffusion_file):
        with FieldStore(path) as store:
            normalizer = FieldNormalizer.from_store(store)
            kinds.update({t.name: t.kind for t in normalizer.transforms})
            if store.system == "navier_stokes2d":
                stats = store.statistics()
                assert normalizer.transform("velocity").scale == pytest.approx(
                    stats["velocity"]["rms"])
                assert normalizer.transform("velocity").offset == 0.0
    assert kinds == {"vorticity": "scale", "velocity": "scale", "delta": "scale",
                     "density": "log", "u": "standard"}


def test_normalised_training_data_is_order_one(grf_file, diffusion_file):
    # the statistics are those of the training split: encoded, its log/standard fields
    # have mean 0 and std 1, its scaled fields rms 1
    for path in (grf_file, diffusion_file):
        with FieldStore(path) as store:
            normalizer = FieldNormalizer.from_store(store)
            train = np.flatnonzero(store.split == 0)
            physical = from_store_layout({name: store.read(name, train)
                                          for name in store.field_names}, store.schema.fields)
        encoded = normalizer.encode(physical.astype(np.float64))
        for transform, (_, _, channel) in zip(normalizer.transforms, normalizer.layout,
                                              strict=True):
            mean, std, rms = _pooled(encoded[..., channel, :, :])
            if transform.kind == "scale":
                assert rms == pytest.approx(1.0, rel=1e-5)
            else:
                assert (mean, std) == pytest.approx((0.0, 1.0), abs=1e-5)


def test_normalizer_round_trip_and_json(ns_file, grf_file):
    for path in (ns_file, grf_file):
        with FieldStore(path) as store:
            normalizer = FieldNormalizer.from_store(store)
            physical = from_store_layout({name: store.read(name, [0, 3])
                                          for name in store.field_names}, store.schema.fields)
        copy = FieldNormalizer.from_dict(json.loads(json.dumps(normalizer.to_dict())))
        assert copy == normalizer
        tensor = torch.from_numpy(physical)
        decoded = copy.decode(copy.encode(tensor))
        assert decoded.dtype == torch.float32
        torch.testing.assert_close(decoded, tensor, rtol=2e-6, atol=1e-6 * tensor.abs().max())
        exact = normalizer.decode(normalizer.encode(physical.astype(np.float64)))
        np.testing.assert_allclose(exact, physical, rtol=1e-12, atol=0)


def test_normalizer_bounds_and_constant_fields():
    fields = (FieldSpec("spin", "1", "spin"), FieldSpec("fraction", "1", "fraction"),
              FieldSpec("flat", "1", "constant field"))
    invariants = (Invariant("discrete_values", "spin", values=(-1.0, 1.0)),
                  Invariant("bounded", "fraction", low=0.2, high=0.6))
    stats = {"spin": {"mean": 0.1, "std": 0.9, "rms": 0.9},
             "fraction": {"mean": 0.4, "std": 0.1, "rms": 0.4},
             "flat": {"mean": 3.0, "std": 0.0, "rms": 3.0}}
    normalizer = FieldNormalizer.from_statistics(fields, invariants, stats)
    assert [t.kind for t in normalizer.transforms] == ["bounds", "bounds", "standard"]
    physical = torch.tensor([[-1.0, 0.2, 3.0], [1.0, 0.6, 3.0]]).view(2, 3, 1, 1)
    encoded = normalizer.encode(physical).view(2, 3)
    # bounds map to -1, 1; a constant field (std 0) is only shifted (scale falls back to 1)
    torch.testing.assert_close(encoded, torch.tensor([[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]))
    assert normalizer.transform("flat").scale == 1.0
    with pytest.raises(ValueError, match="no statistics for field 'spin'"):
        FieldNormalizer.from_statistics(fields, invariants, {}, source="x.h5")


def test_declared_invariants_keep_the_first_declaration_of_each_kind():
    first = Invariant("bounded", "a", low=0.0, high=1.0)
    invariants = (Invariant("zero_mean", "b"), first, Invariant("zero_mean", "a"),
                  Invariant("bounded", "a", low=-2.0, high=2.0))
    assert declared_invariants("a", invariants) == {"bounded": first,
                                                    "zero_mean": invariants[2]}
    assert declared_invariants("c", invariants) == {}
    # the normaliser reads the first bounds: [0, 1] onto [-1, 1]
    normalizer = FieldNormalizer.from_statistics(
        [FieldSpec("a", "1", "a")], invariants, {"a": {"mean": 0.4, "std": 0.2, "rms": 0.5}})
    assert (normalizer.transform("a").offset, normalizer.transform("a").scale) == (0.5, 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decode_field_is_the_decode_of_one_fields_channels(dtype):
    transforms = [FieldTransform("p", 0, "log", -0.5, 2.0),
                  FieldTransform("s", 0, "scale", 0.0, 3.0),
                  FieldTransform("b", 0, "bounds", 0.5, 0.5),
                  FieldTransform("f", 0, "standard", 1.0, 0.2),
                  FieldTransform("v", 1, "scale", 0.0, 0.8)]
    normalizer = FieldNormalizer(transforms)
    normalised = torch.randn(3, normalizer.channels, 4, 4, dtype=dtype,
                             generator=torch.Generator().manual_seed(2)) * 30.0
    decoded = normalizer.decode(normalised)
    for transform, (name, _, channel) in zip(transforms, normalizer.layout, strict=True):
        part = normalised[:, channel]
        assert torch.equal(normalizer.decode_field(name, part), decoded[:, channel])
        assert torch.equal(transform.decode(part), decoded[:, channel])
        clamped = normalizer.decode_field(name, part, log_clamp=5.0)
        if transform.kind == "log":      # the exponent clamped to [-5, 5] before exp
            expected = torch.exp(torch.clamp(part * 2.0 - 0.5, min=-5.0, max=5.0))
            assert torch.equal(clamped, expected) and not torch.equal(clamped, decoded[:, 0:1])
        else:                            # other kinds ignore the clamp
            assert torch.equal(clamped, decoded[:, channel])
    with pytest.raises(ValueError, match="no field 'x'"):
        normalizer.decode_field("x", normalised[:, :1])


# ------------------------------------------------------------------ splits, datasets
def test_splits_are_by_trajectory_and_snapshots_never_straddle(ns_file):
    data = load_training_data(ns_file)
    assert set(data.splits) == {"train", "valid", "test"}
    owner = {}
    for name, dataset in data.splits.items():
        for index in range(len(dataset)):
            trajectory, _ = dataset.snapshot(index)
            assert owner.setdefault(trajectory, name) == name      # one split per trajectory
    with FieldStore(ns_file) as store:
        indices = split_trajectories(store)
        assert sorted(owner) == list(range(store.n_trajectories))
        nu = store.parameters()["nu"]
        for name, values in indices.items():
            assert {t for t, s in owner.items() if s == name} == set(values.tolist())
        assert len(data.splits["train"]) == indices["train"].size * store.times.size
        # held-out trajectories are held-out parameter values
        assert not set(nu[indices["valid"]]) & set(nu[indices["train"]])


def test_empty_validation_split_is_reported(diffusion_file):
    with pytest.warns(EmptySplitWarning, match="validation split is empty"):
        data = load_training_data(diffusion_file)
    assert set(data.splits) == {"train"} and len(data.splits["train"]) == 3 * 2


@pytest.mark.parametrize("cache_bytes", [0, 2**20])
def test_dataset_items_are_normalised_snapshots_with_conditions(ns_file, cache_bytes):
    with FieldStore(ns_file) as store:
        normalizer = FieldNormalizer.from_store(store)
        encoder = ConditionEncoder.from_schema(store.schema)
        dataset = SnapshotDataset(ns_file, [4, 1], normalizer, encoder,
                                  cache_bytes=cache_bytes)
        assert dataset.cached == (cache_bytes > 0) and len(dataset) == 2 * 3
        parameters = store.parameters()
        fields, condition = dataset[4]                     # trajectory 1, time index 1
        assert dataset.snapshot(4) == (1, 1)
        expected = normalizer.encode(from_store_layout(
            {name: store.read(name, 1, 1) for name in store.field_names}, store.schema.fields))
        assert fields.dtype == torch.float32 and fields.shape == (3, 16, 16)
        np.testing.assert_array_equal(fields.numpy(), expected)
        np.testing.assert_array_equal(condition.numpy(), encoder.encode(
            {name: values[1] for name, values in parameters.items()}, store.times[1])[0])
    batch, conditions = dataset.get_batch([5, 0, 4])
    assert batch.shape == (3, 3, 16, 16) and conditions.shape == (3, 4)
    for row, index in enumerate([5, 0, 4]):
        torch.testing.assert_close(batch[row], dataset[index][0], rtol=0, atol=0)
        torch.testing.assert_close(conditions[row], dataset[index][1], rtol=0, atol=0)
    with pytest.raises(IndexError):
        dataset[6]


def test_lazy_dataset_pickles_and_works_in_dataloader_workers(ns_file):
    with FieldStore(ns_file) as store:
        normalizer = FieldNormalizer.from_store(store)
        encoder = ConditionEncoder.from_schema(store.schema)
    dataset = SnapshotDataset(ns_file, [0, 2, 3], normalizer, encoder, cache_bytes=0)
    first = dataset[7][0]                                  # opens the file in this process
    clone = pickle.loads(pickle.dumps(dataset))
    torch.testing.assert_close(clone[7][0], first, rtol=0, atol=0)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    fields = torch.cat([batch for batch, _ in loader])
    torch.testing.assert_close(fields, dataset.get_batch(range(len(dataset)))[0], rtol=0, atol=0)
    dataset.close()


def test_reading_errors_name_the_file_and_the_problem(ns_file, grf_file, tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        open_store(tmp_path / "missing.h5")
    broken = tmp_path / "nan.h5"
    shutil.copy(ns_file, broken)
    with h5py.File(broken, "r+") as handle:
        handle["t0_fields/vorticity"][1, 2, 3, 3] = np.nan
    with FieldStore(broken) as store:
        normalizer = FieldNormalizer.from_store(store)
        encoder = ConditionEncoder.from_schema(store.schema)
    for cache_bytes in (0, 2**20):
        with pytest.raises(ValueError, match=r"nan\.h5: field 'vorticity' has NaN/Inf at "
                                             r"trajectory 1, time index 2"):
            dataset = SnapshotDataset(broken, [1], normalizer, encoder, cache_bytes=cache_bytes)
            dataset[2]
    incomplete = tmp_path / "incomplete.h5"
    shutil.copy(ns_file, incomplete)
    with h5py.File(incomplete, "r+") as handle:
        handle.attrs["complete"] = False
    with pytest.raises(ValueError, match=r"incomplete\.h5: file is not marked complete"):
        load_training_data(incomplete)
    no_stats = tmp_path / "no_stats.h5"
    shutil.copy(ns_file, no_stats)
    with h5py.File(no_stats, "r+") as handle:
        del handle["stats/velocity"]
    with pytest.raises(ValueError, match=r"no_stats\.h5: stats/velocity missing"):
        load_training_data(no_stats)
    with FieldStore(grf_file) as store:
        grf_normalizer = FieldNormalizer.from_store(store)
        grf_encoder = ConditionEncoder.from_schema(store.schema)
    with FieldStore(ns_file) as store, pytest.raises(ValueError, match=r"ns\.h5: fields"):
        check_compatible(store, grf_normalizer, grf_encoder)
    with pytest.raises(ValueError, match=r"ns\.h5: fields"):
        load_training_data(ns_file, normalizer=grf_normalizer, encoder=grf_encoder)


# -------------------------------------------------------------------- augmentation
def _negate_x(f):
    return np.roll(np.flip(f, axis=-2), 1, axis=-2)          # f[-i mod N, j]


def _negate_y(f):
    return np.roll(np.flip(f, axis=-1), 1, axis=-1)


def _rotate_90(f):
    return np.roll(np.rot90(f, 1, axes=(-2, -1)), 1, axis=-2)  # f[j, -i mod N]


#: name -> (matrix M, numpy map of (vorticity w, u_x, u_y) channels), references written
#: with roll/flip/rot90 independently of apply_symmetry's gather
REFERENCE = {
    "flip_x": (((-1, 0), (0, 1)), lambda w, ux, uy: (-_negate_x(w), -_negate_x(ux),
                                                     _negate_x(uy))),
    "flip_y": (((1, 0), (0, -1)), lambda w, ux, uy: (-_negate_y(w), _negate_y(ux),
                                                     -_negate_y(uy))),
    "rotate_90": (((0, -1), (1, 0)), lambda w, ux, uy: (_rotate_90(w), -_rotate_90(uy),
                                                        _rotate_90(ux))),
    "rotate_180": (((-1, 0), (0, -1)), lambda w, ux, uy: (
        _negate_x(_negate_y(w)), -_negate_x(_negate_y(ux)), -_negate_x(_negate_y(uy)))),
}


def test_apply_symmetry_matches_reference_transforms():
    layout = channel_layout(_ns_schema().fields)
    batch = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    w, ux, uy = batch[0].numpy()
    for name, (matrix, reference) in REFERENCE.items():
        out = apply_symmetry(batch, layout, torch.tensor([matrix]), torch.zeros(1, 2),
                             pseudoscalars={"vorticity"})
        np.testing.assert_array_equal(out[0].numpy(), np.stack(reference(w, ux, uy)),
                                      err_msg=name)
    shifted = apply_symmetry(batch, layout, torch.tensor([((1, 0), (0, 1))]),
                             torch.tensor([[3, -2]]))
    np.testing.assert_array_equal(shifted[0].numpy(), np.roll(batch[0].numpy(), (3, -2),
                                                              axis=(-2, -1)))


def test_zero_mean_axes_follow_the_declared_shifts_and_sign():
    # shift-invariant in both directions: fields centred on their spatial mean
    for system in ("diffusion", "gaussian_random_field", "gray_scott"):
        assert zero_mean_axes(simulators.get(system).symmetries) == (-2, -1)
    # Navier–Stokes (x-shifts and the point reflection; the forcing depends on y): along x
    assert zero_mean_axes(simulators.get("navier_stokes2d").symmetries) == (-2,)
    # a quarter turn carries x-shifts to y-shifts
    assert zero_mean_axes(("shift_x", "rotate_90")) == (-2, -1)
    # a sign symmetry makes the mean itself zero: nothing to centre
    assert zero_mean_axes(simulators.get("ising").symmetries) == ()
    # mirrors alone fix no mean
    assert zero_mean_axes(("flip_x", "flip_y")) is None
    assert zero_mean_axes(()) is None


def test_point_group_closure():
    assert len(point_group(simulators.get("diffusion").symmetries)[0]) == 8
    assert point_group(("shift_x", "rotate_180")) == (
        [((1, 0), (0, 1)), ((-1, 0), (0, -1))], (True, False))
    assert len(point_group(("flip_x", "flip_y"))[0]) == 4
    assert point_group(("shift_x", "rotate_90"))[1] == (True, True)
    assert point_group(())[0] == [((1, 0), (0, 1))]
    with pytest.raises(ValueError, match="rotate_45"):
        point_group(("rotate_45",))


def test_augment_draws_only_declared_elements_for_forced_navier_stokes():
    schema = _ns_schema(resolution=8)
    augmentation = SymmetryAugmentation.from_schema(schema)
    assert augmentation.symmetries == ("shift_x", "rotate_180") == symmetries_for(schema.system)
    assert augmentation.pseudoscalars == {"vorticity"} == pseudoscalar_fields(schema.invariants)
    batch = torch.randn(1, 3, 8, 8).expand(64, 3, 8, 8)
    out = augmentation(batch, torch.Generator().manual_seed(0))
    w, ux, uy = batch[0].numpy()
    rotated = np.stack(REFERENCE["rotate_180"][1](w, ux, uy))
    seen = set()
    for sample in out.numpy():
        matches = [(rotate, shift) for rotate, base in ((False, batch[0].numpy()),
                                                         (True, rotated))
                   for shift in range(8) if np.array_equal(sample, np.roll(base, shift, axis=-2))]
        assert len(matches) == 1                  # an x-shift, possibly after rotate_180
        seen.add(matches[0])
    assert {rotate for rotate, _ in seen} == {False, True} and len(seen) > 8
    again = augmentation(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    assert symmetries_for("not_a_system") == ()
    plain = torch.randn(2, 3, 8, 8)
    assert augment(plain, augmentation.layout, ()) is plain


def _simulated_ns_snapshot(resolution=32):
    simulator = simulators.get("navier_stokes2d")
    grid = PeriodicGrid(resolution)
    fields = simulator.simulate({"nu": np.array([2e-3]), "forcing_amplitude": np.array([0.5]),
                                 "forcing_wavenumber": np.array([2])}, grid,
                                np.array([0.5]), [11])
    channels = np.concatenate([fields["vorticity"][:, 0, None],
                               np.moveaxis(fields["velocity"][:, 0], -1, 1)], axis=1)
    return grid, torch.from_numpy(channels)                          # float64 (1, 3, N, N)


def _violations(grid, channels):
    """max |div u| / max |grad u| and max |w - curl u| / max |w| per sample (numpy)."""
    vorticity = channels[:, 0].numpy()
    velocity = np.moveaxis(channels[:, 1:3].numpy(), 1, -1)
    gradient = np.stack([grid.gradient(velocity[..., 0]), grid.gradient(velocity[..., 1])])
    divergence = np.abs(grid.divergence(velocity)).max() / np.abs(gradient).max()
    curl = np.abs(vorticity - grid.curl(velocity)).max() / np.abs(vorticity).max()
    return divergence, curl


def test_augmented_navier_stokes_keeps_div_free_velocity_and_vorticity_curl():
    grid, snapshot = _simulated_ns_snapshot()
    assert max(_violations(grid, snapshot)) < 1e-12
    layout = channel_layout(simulators.get("navier_stokes2d").fields)
    batch = snapshot.expand(32, -1, -1, -1)
    generator = torch.Generator().manual_seed(1)
    # the whole lattice group too: the transformation rules hold for any grid map
    for symmetries in (("shift_x", "rotate_180"), ("shift", "flip_x", "rotate_90")):
        out = augment(batch, layout, symmetries, generator, pseudoscalars={"vorticity"})
        assert max(_violations(grid, out)) < 1e-12, symmetries
    # the checks can fail: a vorticity not flipped under mirrors, or components not rotated
    flipped = apply_symmetry(snapshot, layout, torch.tensor([((-1, 0), (0, 1))]),
                             torch.zeros(1, 2), pseudoscalars={"vorticity"})
    assert _violations(grid, flipped)[1] < 1e-12
    wrong_sign = apply_symmetry(snapshot, layout, torch.tensor([((-1, 0), (0, 1))]),
                                torch.zeros(1, 2), pseudoscalars=())
    assert _violations(grid, wrong_sign)[1] > 1.0
    unrotated = snapshot.clone()
    unrotated[0] = torch.from_numpy(np.stack([_rotate_90(c) for c in snapshot[0].numpy()]))
    assert _violations(grid, unrotated)[0] > 0.1


def test_normalisation_commutes_with_augmentation(ns_file):
    data = load_training_data(ns_file)
    physical = data.normalizer.decode(data.splits["train"].get_batch(range(6))[0])
    symmetries = ("shift", "flip_x", "flip_y", "rotate_90")
    augmented = augment(physical, data.layout, symmetries, torch.Generator().manual_seed(3),
                        pseudoscalars={"vorticity"})
    encoded_then = augment(data.normalizer.encode(physical), data.layout, symmetries,
                           torch.Generator().manual_seed(3), pseudoscalars={"vorticity"})
    torch.testing.assert_close(data.normalizer.encode(augmented), encoded_then)


def test_condition_encoder_from_dict_rejects_garbage():
    with pytest.raises(ValueError, match="condition encoder"):
        ConditionEncoder.from_dict({"parameters": [{"name": "nu"}], "time_range": [0, 1]})
    with pytest.raises(ValueError, match="log scale"):
        ConditionEncoder([Parameter("a", 0.0, 0.0, 1.0, "1", "", log=True)], (0.0, 1.0))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_on_cuda_with_a_cpu_generator_matches_the_cpu_result():
    layout = channel_layout(_ns_schema(resolution=8).fields)
    batch = torch.randn(16, 3, 8, 8)
    symmetries = ("shift", "flip_x", "rotate_90")
    on_cpu = augment(batch, layout, symmetries, torch.Generator().manual_seed(4),
                     pseudoscalars={"vorticity"})
    on_gpu = augment(batch.cuda(), layout, symmetries, torch.Generator().manual_seed(4),
                     pseudoscalars={"vorticity"})
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=0)


@pytest.mark.slow
def test_lazy_dataset_works_with_spawned_dataloader_workers(ns_file):
    data = load_training_data(ns_file, cache_bytes=0)
    dataset = data.splits["train"]
    dataset[3]                                             # a handle open in the parent
    loader = DataLoader(dataset, batch_size=5, num_workers=2, multiprocessing_context="spawn")
    fields = torch.cat([batch for batch, _ in loader])
    torch.testing.assert_close(fields, dataset.get_batch(range(len(dataset)))[0], rtol=0, atol=0)


def test_negate_symmetry_flips_whole_samples_with_both_signs():
    """``negate`` multiplies each sample (all channels) by +1 or -1, both drawn."""
    from surrogate.data import augment
    batch = torch.randn(64, 2, 8, 8)
    layout = channel_layout([FieldSpec("a", "1", "a"), FieldSpec("b", "1", "b")])
    out = augment(batch, layout, ("negate",), torch.Generator().manual_seed(0))
    sign = (out * batch).sum(dim=(1, 2, 3)).sign()
    assert torch.equal(out, batch * sign.view(-1, 1, 1, 1))
    assert 10 < int((sign < 0).sum()) < 54


@pytest.mark.parametrize("each", [False, True])
def test_stacked_snapshots_get_signs_of_their_own_only_where_declared(each):
    """``negate`` alone flips a stacked pair together (their relative sign is kept);
    with ``negate_each_snapshot`` each snapshot gets its own fair sign, so about half the
    pairs of equal snapshots come out opposite. Single snapshots are unaffected."""
    layout = channel_layout([FieldSpec("spin", "1", "spin")])
    symmetries = ("negate", "negate_each_snapshot") if each else ("negate",)
    augmentation = SymmetryAugmentation(layout, symmetries)
    snapshot = torch.randn(400, 1, 8, 8)
    pairs = augmentation.stacked(2)(torch.cat([snapshot, snapshot], dim=1),
                                    torch.Generator().manual_seed(1))
    first = (pairs[:, :1] * snapshot).sum(dim=(1, 2, 3)).sign()
    second = (pairs[:, 1:] * snapshot).sum(dim=(1, 2, 3)).sign()
    torch.testing.assert_close(pairs[:, :1], snapshot * first.view(-1, 1, 1, 1))
    torch.testing.assert_close(pairs[:, 1:], snapshot * second.view(-1, 1, 1, 1))
    opposite = float((first != second).float().mean())
    assert (0.4 < opposite < 0.6) if each else opposite == 0.0
    alone = augmentation(snapshot, torch.Generator().manual_seed(1))
    assert torch.equal(alone.abs(), snapshot.abs())


def test_stacked_augmentation_moves_consecutive_snapshots_together(ns_file):
    data = load_training_data(ns_file)
    train = data.splits["train"]
    first, second = train.get_batch(range(0, 6, 3))[0], train.get_batch(range(1, 7, 3))[0]
    channels = first.shape[1]
    augmentation = SymmetryAugmentation(data.layout, ("shift", "flip_x", "rotate_90"),
                                        frozenset({"vorticity"}))
    pairs = augmentation.stacked(2)(torch.cat([first, second], dim=1),
                                    torch.Generator().manual_seed(5))
    # each half is what the single-snapshot augmentation does with the same random draws
    for half, snapshot in ((pairs[:, :channels], first), (pairs[:, channels:], second)):
        alone = augmentation(snapshot, torch.Generator().manual_seed(5))
        torch.testing.assert_close(half, alone, rtol=0, atol=0)
    # and a pair of equal snapshots stays equal (one group element per pair)
    same = augmentation.stacked(2)(torch.cat([first, first], dim=1),
                                   torch.Generator().manual_seed(6))
    torch.testing.assert_close(same[:, :channels], same[:, channels:], rtol=0, atol=0)
    assert not torch.equal(same[:, :channels], first)
    assert [part for _, _, part in augmentation.stacked(2).layout] == [
        slice(0, 1), slice(1, 3), slice(3, 4), slice(4, 6)]
