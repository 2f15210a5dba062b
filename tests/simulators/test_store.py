"""The field store: format round trip, xarray view, checker, atomic writes, statistics."""

import json
import os
import signal

import h5py
import numpy as np
import pytest
import xarray as xr

import simulators
from simulators.store import (
    FieldStore,
    FieldStoreError,
    FieldStoreWriter,
    Provenance,
    StoreSchema,
    assign_split,
    check_file,
    morton_key,
    partial_path,
)
from simulators.sweep import SweepSpec, run_sweep, sobol_design


@pytest.fixture(scope="module")
def diffusion_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "diffusion.h5"
    spec = SweepSpec("diffusion", n_trajectories=10, resolution=16, n_snapshots=4,
                     ranges={"diffusivity": (1e-3, 1e-1)}, seed=3)
    return run_sweep(spec, path, progress=False)


def _write(path, sim, fields, n=2, **kwargs):
    grid = sim.make_grid(16)
    times = np.linspace(0, 1, fields[next(iter(fields))].shape[0])
    schema = StoreSchema.from_simulator(sim, grid, times)
    with FieldStoreWriter(path, schema, n, Provenance("test", seed=0), **kwargs) as writer:
        for index in range(n):
            writer.write(index, sim.resolve_parameters({}), fields, seed=index)
    return path


def test_round_trip_preserves_fields_parameters_and_seeds(diffusion_file):
    sim = simulators.get("diffusion")
    with FieldStore(diffusion_file) as store:
        assert store.system == "diffusion" and store.n_trajectories == 10
        diffusivity = store.parameters()["diffusivity"]
        seeds = store.seeds
        for index in (0, 7):
            ds = sim.run({"diffusivity": diffusivity[index]}, resolution=16, n_snapshots=4,
                         seed=int(seeds[index]))
            np.testing.assert_array_equal(store.read("u", index), ds["u"].values)
        assert store.schema.parameters == sim.parameters
        assert store.schema.invariants == sim.invariants


def test_xarray_opens_every_group_with_named_dimensions(diffusion_file):
    fields = xr.open_dataset(diffusion_file, engine="h5netcdf", group="t0_fields")
    assert fields["u"].dims == ("trajectory", "time", "x", "y")
    assert not any(dim.startswith("phony_dim") for dim in fields.dims)
    scalars = xr.open_dataset(diffusion_file, engine="h5netcdf", group="scalars")
    assert scalars["diffusivity"].dims == ("trajectory",)
    root = xr.open_dataset(diffusion_file, engine="h5netcdf")
    np.testing.assert_allclose(root["x"].values, np.arange(16) * 2 * np.pi / 16)
    tree = xr.open_datatree(diffusion_file, engine="h5netcdf")
    assert tree["t0_fields"]["u"].shape == (10, 4, 16, 16)


def test_vector_fields_get_a_component_dimension(tmp_path):
    sim = simulators.get("navier_stokes2d")
    ds = sim.run(resolution=16, t_end=0.1, n_snapshots=2)
    path = _write(tmp_path / "ns.h5", sim, {"vorticity": ds["vorticity"].values,
                                           "velocity": ds["velocity"].values})
    assert check_file(path) == []
    velocity = xr.open_dataset(path, engine="h5netcdf", group="t1_fields")["velocity"]
    assert velocity.dims == ("trajectory", "time", "x", "y", "component")


def test_statistics_are_those_of_the_training_split(diffusion_file):
    with FieldStore(diffusion_file) as store:
        train = np.flatnonzero(store.split == 0)
        assert 0 < train.size < store.n_trajectories
        values = store.read("u", train).astype(np.float64)
        stats = store.statistics()["u"]
    assert stats["mean"] == pytest.approx(values.mean(), abs=1e-9)
    assert stats["std"] == pytest.approx(values.std(), rel=1e-9)
    assert stats["rms"] == pytest.approx(np.sqrt((values**2).mean()), rel=1e-9)


def test_positive_fields_get_log_statistics(tmp_path):
    sim = simulators.get("gaussian_random_field")
    ds = sim.run(resolution=16, seed=1)
    path = _write(tmp_path / "grf.h5", sim, {"delta": ds["delta"].values,
                                            "density": ds["density"].values})
    with FieldStore(path) as store:
        stats = store.statistics()
    assert "log_mean" in stats["density"] and "log_mean" not in stats["delta"]
    assert stats["density"]["log_mean"] == pytest.approx(
        np.log(ds["density"].values.astype(np.float64)).mean(), rel=1e-6)


def test_checker_accepts_our_files_and_names_what_is_broken(diffusion_file, tmp_path):
    assert check_file(diffusion_file) == []
    cases = {
        "attr": (lambda f: f.attrs.__delitem__("n_trajectories"), "n_trajectories"),
        "group": (lambda f: f.__delitem__("scalars"), "scalars"),
        "nan": (lambda f: f["t0_fields/u"].__setitem__((3, 2, 0, 0), np.nan),
                "NaN/Inf at trajectory 3, time index 2"),
        "range": (lambda f: f["scalars/diffusivity"].__setitem__(0, 5.0), "declared range"),
        "incomplete": (lambda f: f.attrs.__setitem__("complete", False), "complete"),
        "dims": (lambda f: f["t0_fields/u"].dims[2].detach_scale(f["x"]), "axis 2"),
    }
    for name, (damage, message) in cases.items():
        broken = tmp_path / f"{name}.h5"
        broken.write_bytes(diffusion_file.read_bytes())
        with h5py.File(broken, "r+") as handle:
            damage(handle)
        problems = check_file(broken)
        assert problems and any(message in p for p in problems), (name, problems)


def test_checker_refuses_spins_that_are_not_plus_minus_one(tmp_path):
    path = run_sweep(SweepSpec("ising", n_trajectories=3, resolution=8, n_snapshots=2,
                               t_end=2, seed=0), tmp_path / "ising.h5", progress=False)
    assert check_file(path) == []
    with h5py.File(path, "r+") as handle:
        handle["t0_fields/spin"][1, 1, 2, 3] = 0.5          # a continuous "spin"
    assert check_file(path) == ["t0_fields/spin: value 0.5 at trajectory 1, time index 1 is "
                                "not one of the declared discrete values [-1.0, 1.0]"]


def test_truncated_and_foreign_files_raise_one_line_errors(diffusion_file, tmp_path):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(diffusion_file.read_bytes()[:5000])
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    for path in (truncated, text, tmp_path / "missing.h5"):
        with pytest.raises(FieldStoreError, match=str(path.name)) as error:
            FieldStore(path)
        assert "\n" not in str(error.value)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["data"] = np.zeros(3)
    with pytest.raises(FieldStoreError, match="missing group"):
        FieldStore(other)


def test_writer_refuses_nan_fields_and_leaves_no_final_file(tmp_path):
    sim = simulators.get("diffusion")
    fields = {"u": np.full((2, 16, 16), np.nan, dtype=np.float32)}
    path = tmp_path / "nan.h5"
    with pytest.raises(FieldStoreError, match="NaN/Inf at time index 0"):
        _write(path, sim, fields)
    assert not path.exists()


def test_interrupted_write_leaves_only_a_partial_file(tmp_path):
    sim = simulators.get("diffusion")
    path = tmp_path / "crash.h5"
    schema = StoreSchema.from_simulator(sim, sim.make_grid(16), np.linspace(0, 1, 2))
    with pytest.raises(RuntimeError), FieldStoreWriter(path, schema, 3, Provenance("t", 0)) as w:
        w.write(0, {"diffusivity": 0.01}, {"u": np.zeros((2, 16, 16))}, seed=0)
        raise RuntimeError("crash")
    assert not path.exists() and partial_path(path).exists()


def test_existing_output_is_not_overwritten_without_permission(diffusion_file, tmp_path):
    path = tmp_path / "keep.h5"
    path.write_bytes(b"precious")
    sim = simulators.get("diffusion")
    with pytest.raises(FieldStoreError, match="already exists"):
        _write(path, sim, {"u": np.zeros((2, 16, 16))})
    assert path.read_bytes() == b"precious"
    with pytest.raises(FieldStoreError, match="does not exist"):
        _write(tmp_path / "no" / "such" / "dir.h5", sim, {"u": np.zeros((2, 16, 16))})
    _write(path, sim, {"u": np.zeros((2, 16, 16))}, overwrite=True)
    assert check_file(path) == []


def test_committed_sample_file_passes_the_checker():
    from pathlib import Path
    sample = Path(__file__).resolve().parents[2] / "data" / "sample_navier_stokes2d.h5"
    assert sample.stat().st_size < 1_000_000
    assert check_file(sample) == []


def test_schema_round_trips_through_a_plain_dict():
    sim = simulators.get("navier_stokes2d")
    schema = StoreSchema.from_simulator(sim, sim.make_grid(16, 3.0), np.linspace(0, 2, 5),
                                        dataset_name="ns-test")
    data = json.loads(json.dumps(schema.to_dict()))          # through JSON, as config.json
    back = StoreSchema.from_dict(data)
    assert back.description_json() == schema.description_json()
    assert (back.system, back.resolution, back.box_size, back.dataset_name) == \
        ("navier_stokes2d", 16, 3.0, "ns-test")
    np.testing.assert_array_equal(back.times, schema.times)
    assert back.invariants == schema.invariants and back.parameters == schema.parameters
    with pytest.raises(KeyError):
        StoreSchema.from_dict({k: v for k, v in data.items() if k != "times"})


# ------------------------------------------------------------------------ the split
def _thirds(values):
    unit = (values - values.min()) / (values.max() - values.min())
    return np.minimum((unit * 3).astype(int), 2)


def test_the_random_split_is_a_seeded_permutation():
    """The documented policy rebuilt independently: 10 % validation, 10 % test, the
    first 2 n_held of ``default_rng([seed, 0x5B1]).permutation(B)``; all train below 5."""
    split = assign_split(240, 7)
    order = np.random.default_rng([7, 0x5B1]).permutation(240)
    expected = np.zeros(240, dtype=np.int8)
    expected[order[:24]], expected[order[24:48]] = 1, 2
    np.testing.assert_array_equal(split, expected)
    assert not assign_split(4, 7).any()
    # pinned: the indices the code of 2026-12-05 (before the layouts) drew
    small = assign_split(20, 3)
    assert np.flatnonzero(small == 1).tolist() == [9, 12]
    assert np.flatnonzero(small == 2).tolist() == [15, 19]
    assert np.flatnonzero(assign_split(240, 0) == 1)[:8].tolist() == [22, 26, 37, 54, 58, 80,
                                                                      85, 93]


def test_a_stratified_split_holds_its_share_of_every_stretch_of_the_range():
    """The Ising fidelity data's design (240 temperatures over [1.5, 3.5], seed 0): the
    random split put 1, 12 and 11 validation trajectories into the thirds of the range;
    the stratified one 8 of each, and as many test trajectories."""
    sim = simulators.get("ising")
    temperature = sobol_design(sim, 240, {"temperature": (1.5, 3.5)}, {}, seed=0)["temperature"]
    third = _thirds(temperature)
    random = assign_split(240, 0)
    assert np.bincount(third[random == 1], minlength=3).min() <= 2     # the draw it mends
    positions = ((temperature - 1.5) / 2.0)[:, None]
    split = assign_split(240, 0, positions)
    for code in (1, 2):
        np.testing.assert_array_equal(np.bincount(third[split == code], minlength=3),
                                      [8, 8, 8])
    assert np.count_nonzero(split == 0) == 192
    # one held-out trajectory of each kind in every run of 10 consecutive temperatures
    ranked = split[np.argsort(temperature)].reshape(24, 10)
    assert ((ranked == 1).sum(axis=1) == 1).all() and ((ranked == 2).sum(axis=1) == 1).all()
    np.testing.assert_array_equal(assign_split(240, 0, positions), split)
    assert not np.array_equal(assign_split(240, 1, positions), split)


def test_a_stratified_split_covers_every_quadrant_of_a_plane():
    points = np.random.default_rng(3).random((400, 2))
    split = assign_split(400, 0, points)
    quadrant = (points[:, 0] >= 0.5) * 2 + (points[:, 1] >= 0.5)
    for q in range(4):
        inside = quadrant == q
        for code in (1, 2):      # one in ten, to within the run that straddles an edge
            assert abs(np.count_nonzero(split[inside] == code) - inside.sum() / 10) <= 1


def test_morton_key_interleaves_the_axes_bits():
    one_bit = morton_key(np.array([[0.25, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.75]]),
                         bits=1)
    np.testing.assert_array_equal(one_bit, [0, 1, 2, 3])
    line = morton_key(np.linspace(0, 1, 50)[:, None])
    assert (np.diff(line.astype(np.int64)) > 0).all()
    assert morton_key(np.zeros((3, 0))).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="64-bit"):
        morton_key(np.zeros((2, 7)))


def test_a_one_parameter_stratified_split_orders_by_exact_value():
    """Values closer than the Morton grid's 1/1024 are still ordered by value."""
    values = np.repeat(np.arange(10) / 10, 2) + np.tile([0.0, 1e-5], 10)   # 20 close pairs
    shuffled = np.random.default_rng(1).permutation(20)
    split = assign_split(20, 2, values[shuffled][:, None])
    ranked = split[np.argsort(values[shuffled])].reshape(2, 10)
    assert ((ranked == 1).sum(axis=1) == 1).all() and ((ranked == 2).sum(axis=1) == 1).all()
    many = np.random.default_rng(2).random((50, 8))          # 8 axes: 8 bits each
    assert np.count_nonzero(assign_split(50, 0, many) == 1) == 5


def test_stratified_split_refuses_positions_of_the_wrong_shape_or_not_finite():
    with pytest.raises(ValueError, match="shape"):
        assign_split(4, 0, np.zeros((9, 3)))          # checked below 5 trajectories too
    with pytest.raises(ValueError, match="shape"):
        assign_split(10, 0, np.zeros((9, 1)))
    with pytest.raises(ValueError, match="finite"):
        assign_split(10, 0, np.full((10, 1), np.nan))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolation needs os.fork")
@pytest.mark.parametrize(("damaged_object", "reader"), [
    ("scalars/amplitude", "opening its fields groups with xarray"),
    ("t0_fields/delta", "reading its dimension scales"),
])
def test_a_dimension_list_that_crashes_hdf5_is_one_problem_not_a_crash(
        tmp_path, damaged_object, reader):
    """A byte flipped in the global-heap reference of an object's DIMENSION_LIST makes
    HDF5's dimension-scale code dereference garbage (a segfault): for a scalar when
    xarray opens the group, for a field already when the check reads which scale each
    axis is attached to. Both are read in a child process, so the check reports one
    line naming the reader and the caller lives."""
    path = run_sweep(SweepSpec("gaussian_random_field", n_trajectories=6, resolution=16),
                     tmp_path / "grf.h5", progress=False)
    data = bytearray(path.read_bytes())
    with h5py.File(path, "r") as handle:
        header = h5py.h5o.get_info(handle[damaged_object].id).addr
    data[data.find(b"DIMENSION_LIST", header) + 17] ^= 0xFF
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(bytes(data))
    problems = check_file(damaged)          # HDF5 1.14 with h5py 3: signal 11 in the child
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert reader in problems[0]
    assert check_file(path) == []


def _segfault() -> list[str]:
    os.kill(os.getpid(), signal.SIGSEGV)
    return ["not reached"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolation needs os.fork")
def test_a_crash_in_the_child_process_is_one_problem_line():
    from simulators.store.checker import in_child_process
    assert in_child_process(lambda: ["a", "b"], what="x") == ["a", "b"]
    crashed = in_child_process(_segfault, what="reading it")
    assert crashed == [f"the HDF5 library crashed reading it (signal {int(signal.SIGSEGV)}): "
                       f"a damaged file"]
