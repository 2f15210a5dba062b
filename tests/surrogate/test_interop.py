"""Reading The Well, PDEBench and our own files; converting them to ours without loss."""

import json

import h5py
import numpy as np
import pytest
import xarray as xr

import simulators
from simulators.store import FieldStore, FieldStoreWriter, Provenance, StoreSchema, check_file
from surrogate.interop import (
    LAYOUTS,
    LayoutError,
    convert,
    describe_layout,
    detect_layout,
    field_names,
    open_fields,
    parameter_names,
)

B, T, N = 3, 4, 8


def _random(rng, shape, dtype=np.float32):
    """Random values with a negative zero and a subnormal, so bit-exactness can fail."""
    values = rng.standard_normal(shape).astype(dtype)
    values.flat[0] = -0.0
    values.flat[1] = np.finfo(dtype).smallest_subnormal
    return values


def _flags(dataset, *, sample=True, time=True, dims=(True, True)):
    dataset.attrs.update({"sample_varying": sample, "time_varying": time,
                          "dim_varying": list(dims)})


def write_the_well(path, *, bc_type="PERIODIC", t2=True, nx=N, x=None, constant_axis="both"):
    """A small file in The Well's layout; returns the arrays written.

    A field constant along y (``dim_varying`` [True, False]) is stored with that axis of
    length 1 (``column``, ``constant_axis`` "length_one" or "both") and/or without it
    (``profile``, "absent" or "both"): The Well's ``WellDataset`` reads the former only,
    its ``hdf5_to_xarray`` the latter only; :func:`open_fields` reads both.
    """
    rng = np.random.default_rng(1)
    x = (np.arange(nx) + 0.5) / nx if x is None else x
    y = (np.arange(N) + 0.5) / N
    arrays = {"tracer": _random(rng, (B, T, nx, N)), "obstacle": _random(rng, (nx, N)),
              "profile": _random(rng, (B, T, nx)), "column": _random(rng, (B, T, nx, 1)),
              "velocity": _random(rng, (B, T, nx, N, 2)),
              "stress": _random(rng, (B, T, nx, N, 2, 2)),
              "Reynolds": np.array([100.0, 200.0, 400.0]), "gamma": np.float64(1.4),
              "time": np.linspace(0.0, 1.5, T), "x": x, "y": y}
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset_name": "toy_well", "grid_type": "cartesian",
                        "n_spatial_dims": 2, "n_trajectories": B,
                        "simulation_parameters": ["Reynolds", "gamma"]})
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        for name in ("time", "x", "y"):
            dataset = dims.create_dataset(name, data=arrays[name])
            dataset.attrs.update({"sample_varying": False, "time_varying": name == "time"})
        scalars = f.create_group("scalars")
        scalars.attrs["field_names"] = ["Reynolds", "gamma"]
        for name, sample in (("Reynolds", True), ("gamma", False)):
            dataset = scalars.create_dataset(name, data=arrays[name])
            dataset.attrs.update({"sample_varying": sample, "time_varying": False})
        bcs = f.create_group("boundary_conditions")
        for axis, size in (("x", nx), ("y", N)):
            group = bcs.create_group(f"{axis}_{bc_type.lower()}")
            group.attrs.update({"bc_type": bc_type, "associated_dims": [axis],
                                "associated_fields": [], "sample_varying": False,
                                "time_varying": False})
            mask = np.zeros(size, dtype=bool)
            mask[[0, -1]] = True
            group.create_dataset("mask", data=mask)
            group.create_dataset("values", data=np.zeros(0, dtype=np.float32))
        t0 = f.create_group("t0_fields")
        stored = {"both": ["column", "profile"], "length_one": ["column"],
                  "absent": ["profile"]}[constant_axis]
        t0.attrs["field_names"] = ["tracer", "obstacle", *stored]
        _flags(t0.create_dataset("tracer", data=arrays["tracer"]))
        _flags(t0.create_dataset("obstacle", data=arrays["obstacle"]), sample=False, time=False)
        for name in stored:
            _flags(t0.create_dataset(name, data=arrays[name]), dims=(True, False))
        t0["tracer"].attrs.update({"units": "1", "long_name": "passive tracer"})
        t1 = f.create_group("t1_fields")
        t1.attrs["field_names"] = ["velocity"]
        _flags(t1.create_dataset("velocity", data=arrays["velocity"]))
        t2_group = f.create_group("t2_fields")
        t2_group.attrs["field_names"] = ["stress"] if t2 else []
        if t2:
            _flags(t2_group.create_dataset("stress", data=arrays["stress"]))
        else:
            del arrays["stress"]
    return arrays


def write_pdebench_seeds(path, channels=2):
    rng = np.random.default_rng(2)
    data = _random(rng, (B, T, N, N, channels))
    grid = {"x": np.linspace(-1, 1, N, dtype=np.float32), "y": np.linspace(-1, 1, N,
                                                                          dtype=np.float32),
            "t": np.linspace(0, 5, T, dtype=np.float32)}
    with h5py.File(path, "w") as f:
        for b in range(B):
            group = f.create_group(f"{b:04d}")
            group.create_dataset("data", data=data[b])
            for axis, values in grid.items():
                group.create_dataset(f"grid/{axis}", data=values)
    return data, grid


def write_pdebench_cfd(path, *, extra_edge=True):
    rng = np.random.default_rng(3)
    arrays = {name: _random(rng, (B, T, N, N)) for name in ("density", "Vx", "Vy", "pressure")}
    x = ((np.arange(N) + 0.5) * 2.0 / N - 1.0).astype(np.float32)
    t = np.linspace(0, 1, T + int(extra_edge), dtype=np.float32)
    with h5py.File(path, "w") as f:
        for name, values in arrays.items():
            f.create_dataset(name, data=values)
        f["x-coordinate"], f["y-coordinate"], f["t-coordinate"] = x, x, t
    return arrays, t


def write_pdebench_darcy(path):
    rng = np.random.default_rng(4)
    arrays = {"tensor": _random(rng, (B, 1, N, N)), "nu": _random(rng, (B, N, N))}
    x = ((np.arange(N) + 0.5) / N).astype(np.float32)
    with h5py.File(path, "w") as f:
        for name, values in arrays.items():
            f.create_dataset(name, data=values)
        f["x-coordinate"], f["y-coordinate"] = x, x
    return arrays


def write_ours(path, n=B):
    sim = simulators.get("navier_stokes2d")
    rng = np.random.default_rng(5)
    schema = StoreSchema.from_simulator(sim, sim.make_grid(N), np.linspace(0, 1, T))
    arrays = {"vorticity": _random(rng, (n, T, N, N)),
              "velocity": _random(rng, (n, T, N, N, 2))}
    parameters = sim.resolve_parameters({})
    with FieldStoreWriter(path, schema, n, Provenance("simulator:navier_stokes2d", seed=7)
                          ) as writer:
        for b in range(n):
            writer.write(b, parameters, {k: v[b] for k, v in arrays.items()}, seed=10 + b)
    return arrays, parameters


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("interop")
    out = {name: root / f"{name}.h5" for name in ("ours", "the_well", "pdebench_seeds",
                                                  "pdebench_arrays", "darcy")}
    write_ours(out["ours"])
    write_the_well(out["the_well"])
    write_pdebench_seeds(out["pdebench_seeds"])
    write_pdebench_cfd(out["pdebench_arrays"])
    write_pdebench_darcy(out["darcy"])
    return out


def _same_bits(a, b):
    """Equal dtype, shape and bytes (so -0.0 != 0.0 and NaN payloads count)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _one_line_error(error, path):
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    return message


# -------------------------------------------------------------------- detection
@pytest.mark.parametrize(("name", "layout"), [
    ("ours", "ours"), ("the_well", "the_well"), ("pdebench_seeds", "pdebench_seeds"),
    ("pdebench_arrays", "pdebench_arrays"), ("darcy", "pdebench_arrays")])
def test_detect_layout_names_each_layout(files, name, layout):
    assert detect_layout(files[name]) == layout
    assert layout in LAYOUTS


# ---------------------------------------------------------------------- reading
def test_the_well_fields_read_back_exactly_with_named_dims(tmp_path):
    arrays = write_the_well(tmp_path / "well.h5")
    with open_fields(tmp_path / "well.h5") as ds:
        assert ds.attrs["layout"] == "the_well" and ds.attrs["source"] == "well.h5"
        assert ds.attrs["dataset_name"] == "toy_well"
        assert field_names(ds) == ["tracer", "obstacle", "column", "profile", "velocity",
                                   "stress"]
        assert parameter_names(ds) == ["Reynolds", "gamma"]
        expected_dims = {
            "tracer": ("trajectory", "time", "x", "y"), "obstacle": ("x", "y"),
            "profile": ("trajectory", "time", "x"), "column": ("trajectory", "time", "x"),
            "velocity": ("trajectory", "time", "x", "y", "component"),
            "stress": ("trajectory", "time", "x", "y", "component_i", "component_j")}
        for name, dims in expected_dims.items():
            assert ds[name].dims == dims, name
            source = arrays[name][..., 0] if name == "column" else arrays[name]
            assert _same_bits(ds[name].values, source), name
        assert ds["tracer"].attrs["units"] == "1"
        assert ds["tracer"].attrs["long_name"] == "passive tracer"
        assert list(ds["component"].values) == ["x", "y"]
        assert ds["Reynolds"].dims == ("trajectory",) and ds["gamma"].dims == ()
        np.testing.assert_array_equal(ds["Reynolds"].values, arrays["Reynolds"])
        np.testing.assert_array_equal(ds["time"].values, arrays["time"])
        np.testing.assert_array_equal(ds["x"].values, arrays["x"])
        assert _same_bits(ds["velocity"].sel(component="y").isel(trajectory=2).values,
                          arrays["velocity"][2, ..., 1])
        bcs = json.loads(ds.attrs["boundary_conditions"])
        assert bcs["x_periodic"]["bc_type"] == "PERIODIC"
        assert bcs["x_periodic"]["mask_true_indices"] == [0, N - 1]


def test_pdebench_seeds_channels_become_fields(files):
    data, grid = write_pdebench_seeds(files["pdebench_seeds"].with_name("seeds2.h5"))
    with open_fields(files["pdebench_seeds"].with_name("seeds2.h5")) as ds:
        assert field_names(ds) == ["u", "v"]
        for channel, name in enumerate(("u", "v")):
            assert ds[name].dims == ("trajectory", "time", "x", "y")
            assert _same_bits(ds[name].values, data[..., channel])
            assert ds[name].attrs["source_channel"] == channel
        assert _same_bits(ds["u"].isel(trajectory=[2, 0], x=slice(None, None, -1)).values,
                          data[[2, 0]][:, :, ::-1, :, 0])
        assert _same_bits(ds["time"].values, grid["t"])
        assert _same_bits(ds["x"].values, grid["x"])
        assert list(ds["source_group"].values) == ["0000", "0001", "0002"]


def test_pdebench_seed_with_one_channel_is_water_depth(tmp_path):
    data, _ = write_pdebench_seeds(tmp_path / "swe.h5", channels=1)
    with open_fields(tmp_path / "swe.h5") as ds:
        assert field_names(ds) == ["h"]
        assert _same_bits(ds["h"].values, data[..., 0])


def test_pdebench_cfd_velocity_is_a_vector_and_the_extra_time_edge_is_trimmed(tmp_path):
    arrays, t = write_pdebench_cfd(tmp_path / "cfd.h5")
    with open_fields(tmp_path / "cfd.h5") as ds:
        assert field_names(ds) == ["density", "velocity", "pressure"]
        assert ds["velocity"].dims == ("trajectory", "time", "x", "y", "component")
        assert _same_bits(ds["velocity"].values, np.stack([arrays["Vx"], arrays["Vy"]], -1))
        assert _same_bits(ds["velocity"].sel(component="y").values, arrays["Vy"])
        for name in ("density", "pressure"):
            assert _same_bits(ds[name].values, arrays[name])
        assert ds.sizes["time"] == T and _same_bits(ds["time"].values, t[:T])
        assert _same_bits(ds["t_coordinate_source"].values, t)
        assert "T + 1" in ds["time"].attrs["comment"]


def test_pdebench_time_coordinate_with_t_entries_is_used_as_is(tmp_path):
    _, t = write_pdebench_cfd(tmp_path / "cfd.h5", extra_edge=False)
    with open_fields(tmp_path / "cfd.h5") as ds:
        assert _same_bits(ds["time"].values, t) and "t_coordinate_source" not in ds


def test_pdebench_time_coordinate_of_another_length_is_refused(tmp_path):
    write_pdebench_cfd(tmp_path / "cfd.h5")
    with h5py.File(tmp_path / "cfd.h5", "r+") as f:
        del f["t-coordinate"]
        f["t-coordinate"] = np.arange(T + 3, dtype=np.float32)
    with pytest.raises(LayoutError, match="t-coordinate has 7 entries for 4") as error:
        open_fields(tmp_path / "cfd.h5")
    _one_line_error(error, tmp_path / "cfd.h5")


def test_darcy_solution_and_coefficient_field(tmp_path):
    arrays = write_pdebench_darcy(tmp_path / "darcy.h5")
    with open_fields(tmp_path / "darcy.h5") as ds:
        assert ds["tensor"].dims == ("trajectory", "time", "x", "y")
        assert ds["nu"].dims == ("trajectory", "x", "y")
        assert _same_bits(ds["tensor"].values, arrays["tensor"])
        assert _same_bits(ds["nu"].values, arrays["nu"])
        np.testing.assert_array_equal(ds["time"].values, [0.0])


def test_our_files_read_like_the_field_store(files):
    with open_fields(files["ours"]) as ds, FieldStore(files["ours"]) as store:
        assert ds.attrs["layout"] == "ours" and ds.attrs["system"] == "navier_stokes2d"
        assert field_names(ds) == ["vorticity", "velocity"]
        for name in store.field_names:
            assert _same_bits(ds[name].values, store.read(name))
        for name, values in store.parameters().items():
            np.testing.assert_array_equal(ds[name].values, values)
        np.testing.assert_array_equal(ds["split"].values, store.split)
        np.testing.assert_array_equal(ds["trajectory_seed"].values, store.seeds)
        np.testing.assert_array_equal(ds["x"].values, store.x)
        assert ds["time"].attrs["units"] == store.schema.time_units


def _corrupt_chunk(path, dataset, coord):
    """Overwrite the bytes of one stored chunk (its Fletcher-32 checksum then fails)."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info_by_coord(coord)
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset + 8)
        handle.write(b"\xff" * 16)


def test_fields_are_read_lazily_so_a_bad_chunk_fails_only_where_read(tmp_path):
    path = tmp_path / "ours.h5"
    arrays, _ = write_ours(path)
    _corrupt_chunk(path, "t0_fields/vorticity", (1, 2, 0, 0))
    with open_fields(path) as ds:          # opening reads no field value
        assert _same_bits(ds["vorticity"].isel(trajectory=0).values, arrays["vorticity"][0])
        with pytest.raises(OSError):
            ds["vorticity"].isel(trajectory=1, time=2).load()
    with pytest.raises(LayoutError, match="'vorticity', trajectory 1: unreadable") as error:
        convert(path, tmp_path / "out.h5")
    _one_line_error(error, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.h5"]


@pytest.mark.parametrize("name", ["ours", "the_well", "pdebench_seeds", "pdebench_arrays",
                                  "darcy"])
def test_netcdf_round_trip_is_exact(files, tmp_path, name):
    target = tmp_path / "copy.nc"
    with open_fields(files[name]) as ds:
        ds.to_netcdf(target, engine="h5netcdf")
        with xr.open_dataset(target, engine="h5netcdf") as back:
            assert set(back.variables) == set(ds.variables)
            for key, var in ds.variables.items():
                assert back[key].dims == var.dims, key
                if var.dtype.kind == "f":
                    assert _same_bits(back[key].values, var.values), key
                else:
                    np.testing.assert_array_equal(back[key].values, var.values)
            assert back.attrs["layout"] == ds.attrs["layout"]
            assert field_names(back) == field_names(ds)


# ------------------------------------------------------------------- conversion
def _expected_fields(name, path):
    """What each converted field must hold, from the arrays the writers put in the source."""
    if name == "the_well":
        a = write_the_well(path)
        shape = (B, T, N, N)
        return {"tracer": a["tracer"], "obstacle": np.broadcast_to(a["obstacle"], shape),
                "column": np.broadcast_to(a["column"], shape),
                "profile": np.broadcast_to(a["profile"][..., None], shape),
                "velocity": a["velocity"],
                "stress_x": a["stress"][..., 0, :], "stress_y": a["stress"][..., 1, :]}, \
            {"Reynolds": a["Reynolds"], "gamma": np.full(B, 1.4)}
    if name == "pdebench_seeds":
        data, _ = write_pdebench_seeds(path)
        return {"u": data[..., 0], "v": data[..., 1]}, {}
    if name == "pdebench_arrays":
        a, _ = write_pdebench_cfd(path)
        return {"density": a["density"], "velocity": np.stack([a["Vx"], a["Vy"]], -1),
                "pressure": a["pressure"]}, {}
    if name == "darcy":
        a = write_pdebench_darcy(path)
        return {"tensor": a["tensor"], "nu": a["nu"][:, None]}, {}
    arrays, parameters = write_ours(path)
    return arrays, {k: np.full(B, v) for k, v in parameters.items()}


@pytest.mark.parametrize("name", ["ours", "the_well", "pdebench_seeds", "pdebench_arrays",
                                  "darcy"])
def test_convert_passes_check_and_keeps_every_bit(tmp_path, name):
    source = tmp_path / f"{name}.h5"
    fields, parameters = _expected_fields(name, source)
    out = convert(source, tmp_path / "converted.h5")
    assert out == tmp_path / "converted.h5"
    assert check_file(out) == []
    with open_fields(out) as ds, open_fields(source) as original:
        assert ds.attrs["layout"] == "ours"
        assert ds.attrs["producer"] == f"converted:{original.attrs['layout']}"
        assert ds.attrs["source_file"] == f"{name}.h5"
        assert ds.attrs["source"] == "converted.h5"
        assert field_names(ds) == list(fields)
        for key, values in fields.items():
            assert _same_bits(ds[key].values, values), key
        for key, values in parameters.items():
            np.testing.assert_array_equal(ds[key].values, values)
        np.testing.assert_array_equal(ds["time"].values,
                                      original["time"].values.astype(np.float64))
        dx = float(original["x"][1] - original["x"][0])
        np.testing.assert_allclose(ds["x"].values, np.arange(N) * dx, rtol=1e-6, atol=0)
        if name == "ours":
            np.testing.assert_array_equal(ds["split"].values, original["split"].values)
            np.testing.assert_array_equal(ds["trajectory_seed"].values,
                                          original["trajectory_seed"].values)
        else:
            assert _same_bits(np.asarray(ds.attrs["source_x"], dtype=original["x"].dtype),
                              original["x"].values)


def test_converting_a_stratified_file_keeps_its_split_and_layout(tmp_path):
    """A stratified split is not the seed's random draw: the converted file holds the
    source's codes and layout, with and without naming the system."""
    from simulators.sweep import SweepSpec, run_sweep
    source = run_sweep(SweepSpec("gaussian_random_field", 30, resolution=16, seed=4,
                                 ranges={"spectral_index": (1.5, 3.5)},
                                 split_layout="stratified"), tmp_path / "s.h5", progress=False)
    for system in (None, "gaussian_random_field"):
        out = convert(source, tmp_path / f"converted-{system}.h5", system=system)
        with FieldStore(source) as original, FieldStore(out) as converted:
            np.testing.assert_array_equal(converted.split, original.split)
            assert converted.split_layout == "stratified"


def test_the_writer_refuses_a_split_that_is_not_train_valid_test_codes(tmp_path):
    sim = simulators.get("diffusion")
    schema = StoreSchema.from_simulator(sim, sim.make_grid(16), np.array([0.0]))
    for split, layout, message in ((np.array([0, 1, 3]), "stratified", "codes 0, 1 or 2"),
                                   (np.array([0, 1]), "stratified", "codes 0, 1 or 2"),
                                   (np.array([0, 1, 2]), "even", "unknown split layout")):
        with pytest.raises(ValueError, match=message):
            FieldStoreWriter(tmp_path / "w.h5", schema, 3, Provenance("test", seed=0),
                             split=split, split_layout=layout)
    assert list(tmp_path.iterdir()) == []


def test_converted_file_passes_surrogate_check(tmp_path, capsys):
    from surrogate.cli import main
    write_pdebench_cfd(tmp_path / "cfd.h5")
    convert(tmp_path / "cfd.h5", tmp_path / "out.h5")
    assert main(["check", str(tmp_path / "out.h5")]) == 0
    with FieldStore(tmp_path / "out.h5") as store:
        assert store.system == "pdebench_2d_density_velocity_pressure"
        assert [(f.name, f.rank) for f in store.schema.fields] == [
            ("density", 0), ("velocity", 1), ("pressure", 0)]
        times = json.loads(store.h5.attrs["source_fields"])
        assert times["velocity"]["source_dataset"] == "Vx Vy"
        np.testing.assert_array_equal(store.h5.attrs["source_time"],
                                      np.linspace(0, 1, T + 1, dtype=np.float32))


def test_convert_never_touches_an_existing_output_unless_asked(tmp_path):
    write_pdebench_darcy(tmp_path / "darcy.h5")
    target = tmp_path / "out.h5"
    target.write_bytes(b"precious")
    with pytest.raises(ValueError, match="already exists") as error:
        convert(tmp_path / "darcy.h5", target)
    _one_line_error(error, target)
    assert target.read_bytes() == b"precious"
    convert(tmp_path / "darcy.h5", target, overwrite=True)
    assert check_file(target) == []


def test_a_failed_conversion_leaves_no_file_behind(tmp_path):
    write_pdebench_darcy(tmp_path / "darcy.h5")
    with h5py.File(tmp_path / "darcy.h5", "r+") as f:
        f["tensor"][2, 0, 3, 3] = np.nan
    target = tmp_path / "out.h5"
    target.write_bytes(b"precious")
    with pytest.raises(LayoutError, match="'tensor' has NaN/Inf in trajectory 2") as error:
        convert(tmp_path / "darcy.h5", target, overwrite=True)
    _one_line_error(error, tmp_path / "darcy.h5")
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["darcy.h5", "out.h5"]


def _darcy_float64(path, values):
    with h5py.File(path, "w") as f:
        f["tensor"] = values
        f["x-coordinate"] = f["y-coordinate"] = (np.arange(N) + 0.5) / N


def test_float64_fields_convert_exactly_or_only_when_rounding_is_allowed(tmp_path):
    exact = _random(np.random.default_rng(6), (B, 1, N, N)).astype(np.float64)
    _darcy_float64(tmp_path / "exact.h5", exact)
    convert(tmp_path / "exact.h5", tmp_path / "exact_out.h5")
    with FieldStore(tmp_path / "exact_out.h5") as store:
        assert _same_bits(store.read("tensor"), exact.astype(np.float32))
        assert json.loads(store.h5.attrs["cast_to_float32"]) == {
            "fields": ["tensor"], "rounding_allowed": False}
    inexact = exact + 0.1
    _darcy_float64(tmp_path / "inexact.h5", inexact)
    with pytest.raises(LayoutError, match=r"do not fit float32 exactly.*allow_rounding"):
        convert(tmp_path / "inexact.h5", tmp_path / "inexact_out.h5")
    assert not (tmp_path / "inexact_out.h5").exists()
    convert(tmp_path / "inexact.h5", tmp_path / "inexact_out.h5", allow_rounding=True)
    with FieldStore(tmp_path / "inexact_out.h5") as store:
        assert _same_bits(store.read("tensor"), inexact.astype(np.float32))
        assert json.loads(store.h5.attrs["cast_to_float32"])["rounding_allowed"] is True


def test_convert_refuses_grids_our_format_cannot_hold(tmp_path):
    write_the_well(tmp_path / "wide.h5", nx=2 * N)
    with pytest.raises(LayoutError, match="16 x 8; our format holds square") as error:
        convert(tmp_path / "wide.h5", tmp_path / "out.h5")
    _one_line_error(error, tmp_path / "wide.h5")
    x = (np.arange(N) + 0.5) / N
    x[3] += 0.01
    write_the_well(tmp_path / "uneven.h5", x=x)
    with pytest.raises(LayoutError, match="not a uniform increasing grid"):
        convert(tmp_path / "uneven.h5", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_non_periodic_boundaries_are_converted_only_on_request(tmp_path):
    write_the_well(tmp_path / "walls.h5", bc_type="WALL")
    with pytest.raises(LayoutError, match="WALL are not periodic"):
        convert(tmp_path / "walls.h5", tmp_path / "out.h5")
    convert(tmp_path / "walls.h5", tmp_path / "out.h5", allow_nonperiodic=True)
    assert check_file(tmp_path / "out.h5") == []
    with FieldStore(tmp_path / "out.h5") as store:
        kept = json.loads(store.h5.attrs["source_boundary_conditions"])
        assert kept["x_wall"]["bc_type"] == "WALL"


def test_time_varying_scalars_are_refused_not_dropped(tmp_path):
    write_the_well(tmp_path / "well.h5")
    with h5py.File(tmp_path / "well.h5", "r+") as f:
        f["scalars"].attrs["field_names"] = ["Reynolds", "gamma", "energy"]
        dataset = f["scalars"].create_dataset("energy", data=np.ones((B, T)))
        dataset.attrs.update({"sample_varying": True, "time_varying": True})
    with open_fields(tmp_path / "well.h5") as ds:
        assert ds["energy"].dims == ("trajectory", "time")
        assert ds["energy"].attrs["role"] == "time_series"
    with pytest.raises(LayoutError, match="'energy' changes in time"):
        convert(tmp_path / "well.h5", tmp_path / "out.h5")


def test_convert_as_a_registered_system_checks_that_the_file_matches(files, tmp_path):
    out = convert(files["ours"], tmp_path / "ns.h5", system="navier_stokes2d")
    assert check_file(out) == []
    with FieldStore(out) as store, FieldStore(files["ours"]) as original:
        assert store.schema.parameters == original.schema.parameters
        assert store.schema.invariants == original.schema.invariants
    with pytest.raises(LayoutError, match="do not match system 'diffusion'"):
        convert(files["the_well"], tmp_path / "d.h5", system="diffusion")
    with pytest.raises(LayoutError, match="unknown system 'nope'"):
        convert(files["the_well"], tmp_path / "d.h5", system="nope")
    assert not (tmp_path / "d.h5").exists()


def test_convert_refuses_to_write_over_its_source(files):
    with pytest.raises(ValueError, match="is the source file"):
        convert(files["darcy"], files["darcy"], overwrite=True)
    assert detect_layout(files["darcy"]) == "pdebench_arrays"


# --------------------------------------------------------------------- bad files
def _bad_files(tmp_path):
    out = {"missing": tmp_path / "missing.h5", "directory": tmp_path / "a_directory"}
    out["directory"].mkdir()
    (out.setdefault("empty", tmp_path / "empty.h5")).write_bytes(b"")
    (out.setdefault("garbage", tmp_path / "garbage.h5")).write_bytes(b"not hdf5 at all" * 50)
    write_ours(tmp_path / "whole.h5")
    data = (tmp_path / "whole.h5").read_bytes()
    (out.setdefault("truncated", tmp_path / "truncated.h5")).write_bytes(data[:len(data) // 2])
    with h5py.File(out.setdefault("no_members", tmp_path / "no_members.h5"), "w"):
        pass
    with h5py.File(out.setdefault("unknown", tmp_path / "unknown.h5"), "w") as f:
        f["temperature"] = np.zeros((2, 8, 8))
    return out


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "no such file"), ("directory", "is a directory"), ("empty", "empty file"),
    ("garbage", "not a readable HDF5 file"), ("truncated", "not a readable HDF5 file"),
    ("no_members", "holds no groups or datasets"), ("unknown", "unknown layout")])
def test_bad_files_give_one_line_errors(tmp_path, kind, message):
    path = _bad_files(tmp_path)[kind]
    for function in (detect_layout, open_fields, describe_layout):
        with pytest.raises(LayoutError, match=message) as error:
            function(path)
        _one_line_error(error, path)
    with pytest.raises(LayoutError, match=message):
        convert(path, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_links_to_other_files_are_not_followed(tmp_path):
    write_the_well(tmp_path / "well.h5")
    with h5py.File(tmp_path / "elsewhere.h5", "w") as f:
        f["tracer"] = np.zeros((B, T, N, N), dtype=np.float32)
    with h5py.File(tmp_path / "well.h5", "r+") as f:
        attrs = dict(f["t0_fields/tracer"].attrs)
        del f["t0_fields/tracer"]
        f["t0_fields/tracer"] = h5py.ExternalLink("elsewhere.h5", "/tracer")
        assert attrs
    with pytest.raises(LayoutError, match="link to another file") as error:
        open_fields(tmp_path / "well.h5")
    _one_line_error(error, tmp_path / "well.h5")


def test_a_field_whose_shape_contradicts_its_attributes_is_refused(tmp_path):
    write_the_well(tmp_path / "well.h5")
    with h5py.File(tmp_path / "well.h5", "r+") as f:
        f["t0_fields/obstacle"].attrs["time_varying"] = True
    with pytest.raises(LayoutError, match="t0_fields/obstacle has shape"):
        open_fields(tmp_path / "well.h5")


# ---------------------------------------------------------------------- describe
def test_describe_layout_summarises_fields_parameters_and_grid(files):
    info = describe_layout(files["the_well"])
    json.dumps(info)
    assert info["layout"] == "the_well" and info["dataset_name"] == "toy_well"
    assert info["n_trajectories"] == B and info["resolution"] == [N, N]
    assert info["fields"]["velocity"]["shape"] == [B, T, N, N, 2]
    assert info["fields"]["obstacle"]["dims"] == ["x", "y"]
    assert info["parameters"]["Reynolds"] == {"min": 100.0, "max": 400.0, "units": "",
                                              "shape": [B]}
    assert info["times"] == {"n": T, "first": 0.0, "last": 1.5, "units": ""}
    assert info["grid"]["x"]["spacing"] == pytest.approx(1 / N)
    assert describe_layout(files["pdebench_arrays"])["times"]["n"] == T


# ---------------------------------------------- The Well's own reader on our files
def _our_simulated_file(directory):
    from simulators.sweep import SweepSpec, run_sweep
    directory.mkdir()
    spec = SweepSpec("gaussian_random_field", n_trajectories=4, resolution=16, seed=0)
    return run_sweep(spec, directory / "grf.h5", progress=False)


def test_the_well_exporter_reads_our_files(tmp_path):
    pytest.importorskip("the_well")
    from the_well.utils.export import hdf5_to_xarray
    path = _our_simulated_file(tmp_path / "data")
    with h5py.File(path, "r") as f, FieldStore(path) as store:
        ds = hdf5_to_xarray(f)
        for name in store.field_names:
            assert _same_bits(ds[name].values, store.read(name))
        for name, values in store.parameters().items():
            np.testing.assert_array_equal(ds[name].values, values)


def _well_dataset(directory):
    from the_well.data import WellDataset
    return WellDataset(path=str(directory), use_normalization=False, n_steps_input=1,
                       n_steps_output=0)


def test_the_well_dataset_reads_our_values_and_parameters(tmp_path):
    pytest.importorskip("the_well")
    path = _our_simulated_file(tmp_path / "data")
    dataset = _well_dataset(tmp_path / "data")
    with FieldStore(path) as store:
        assert len(dataset) == store.n_trajectories * store.times.size
        assert dataset.metadata.constant_scalar_names == store.parameter_names
        for index in range(store.n_trajectories):
            sample = dataset[index]
            for channel, name in enumerate(store.field_names):
                assert _same_bits(sample["input_fields"][0, ..., channel].numpy(),
                                  store.read(name, index, 0))
            np.testing.assert_array_equal(sample["constant_scalars"].numpy(),
                                          [v[index] for v in store.parameters().values()])


def test_the_well_dataset_reads_our_files_as_written(tmp_path):
    pytest.importorskip("the_well")
    _our_simulated_file(tmp_path / "data")
    _well_dataset(tmp_path / "data")


def test_the_well_dataset_sees_our_boundaries_as_periodic(tmp_path):
    pytest.importorskip("the_well")
    _our_simulated_file(tmp_path / "data")
    sample = _well_dataset(tmp_path / "data")[0]
    assert sample["boundary_conditions"].tolist() == [[2, 2], [2, 2]]   # PERIODIC = 2


def test_the_well_dataset_reads_the_well_files_these_tests_build(tmp_path):
    pytest.importorskip("the_well")
    (tmp_path / "data").mkdir()
    arrays = write_the_well(tmp_path / "data" / "toy.h5", constant_axis="length_one")
    dataset = _well_dataset(tmp_path / "data")
    sample = dataset[1 * T + 2]          # trajectory 1, time index 2
    assert _same_bits(sample["input_fields"][0, ..., 0].numpy(), arrays["tracer"][1, 2])
    assert sample["boundary_conditions"].tolist() == [[2, 2], [2, 2]]
    assert _same_bits(sample["input_fields"][0, ..., 1].numpy(),     # column, tiled along y
                      np.broadcast_to(arrays["column"][1, 2], (N, N)))
    np.testing.assert_array_equal(sample["constant_scalars"].numpy(), [200.0, 1.4])


def test_the_well_exporter_and_open_fields_agree_on_the_well_files(tmp_path):
    pytest.importorskip("the_well")
    from the_well.utils.export import hdf5_to_xarray
    write_the_well(tmp_path / "toy.h5", constant_axis="absent")
    with h5py.File(tmp_path / "toy.h5", "r") as f, open_fields(tmp_path / "toy.h5") as ds:
        theirs = hdf5_to_xarray(f)
        names = {"trajectory": "sample", "component": "i", "component_i": "i",
                 "component_j": "j"}
        for name in field_names(ds):
            var = ds[name].variable
            ours = xr.DataArray(var.values, dims=[names.get(d, d) for d in var.dims])
            ours, other = xr.broadcast(ours, xr.DataArray(theirs[name].variable))
            assert _same_bits(ours.transpose(*other.dims).values, other.values), name
        for name in parameter_names(ds):
            np.testing.assert_array_equal(np.broadcast_to(ds[name].values, (B,)),
                                          theirs[name].values)


# ------------------------------------------------------------------- odds and ends
def test_numeric_attributes_of_every_seed_group_become_parameters(tmp_path):
    write_pdebench_seeds(tmp_path / "seeds.h5")
    with h5py.File(tmp_path / "seeds.h5", "r+") as f:
        for b in range(B):
            f[f"{b:04d}"].attrs.update({"Du": 1e-3 * (b + 1), "note": f"seed {b}"})
    with open_fields(tmp_path / "seeds.h5") as ds:
        assert parameter_names(ds) == ["Du"]
        np.testing.assert_array_equal(ds["Du"].values, [1e-3, 2e-3, 3e-3])
        assert list(ds["note"].values) == ["seed 0", "seed 1", "seed 2"]
    out = convert(tmp_path / "seeds.h5", tmp_path / "out.h5")
    with FieldStore(out) as store:
        np.testing.assert_array_equal(store.parameters()["Du"], [1e-3, 2e-3, 3e-3])
        assert store.schema.parameters[0].range_text == "[0.001, 0.003]"
        np.testing.assert_array_equal(store.seeds, [0, 1, 2])
        assert json.loads(store.h5.attrs["source_metadata"]) == {
            "note": ["seed 0", "seed 1", "seed 2"]}


def test_trajectories_with_different_time_grids_are_read_but_not_converted(tmp_path):
    write_the_well(tmp_path / "well.h5")
    with h5py.File(tmp_path / "well.h5", "r+") as f:
        times = np.linspace(0.0, 1.5, T)[None] * np.arange(1, B + 1)[:, None]
        del f["dimensions/time"]
        f["dimensions/time"] = times
        f["dimensions/time"].attrs.update({"sample_varying": True, "time_varying": True})
    with open_fields(tmp_path / "well.h5") as ds:
        assert ds["trajectory_time"].dims == ("trajectory", "time")
        np.testing.assert_array_equal(ds["trajectory_time"].values, times)
    with pytest.raises(LayoutError, match="different time grids"):
        convert(tmp_path / "well.h5", tmp_path / "out.h5")


def test_open_fields_is_re_exported_by_surrogate_data():
    import surrogate.data
    assert surrogate.data.open_fields is open_fields


def test_cli_info_names_the_layout_and_convert_writes_a_checked_file(tmp_path, capsys):
    from surrogate.cli import main
    source = tmp_path / "diff_react.h5"
    write_pdebench_seeds(source)
    assert main(["info", str(source)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("layout: pdebench_seeds") and "field u" in out and "field v" in out
    output = tmp_path / "converted.h5"
    assert main(["convert", str(source), "-o", str(output)]) == 0
    assert "pdebench_seeds" in capsys.readouterr().out
    assert main(["check", str(output)]) == 0
    capsys.readouterr()
    assert main(["info", str(output)]) == 0
    assert capsys.readouterr().out.startswith("layout: ours")
    before = output.read_bytes()
    assert main(["convert", str(source), "-o", str(output)]) == 2      # no --overwrite
    err = capsys.readouterr().err
    assert err.startswith("surrogate: error:") and len(err.strip().splitlines()) == 1
    assert output.read_bytes() == before
