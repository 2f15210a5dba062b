"""Diffusion: the solver equals the exact per-mode solution and conserves the mean."""

import numpy as np
import pytest

import simulators
from simulators.grid import PeriodicGrid


def test_single_mode_decays_at_exact_rate():
    sim = simulators.get("diffusion")
    grid = PeriodicGrid(32)
    x, y = grid.mesh()
    initial = np.sin(2 * x) * np.cos(3 * y) + 0.25
    ds = sim.run({"diffusivity": 0.05}, resolution=32, t_end=2.0, n_snapshots=5,
                 initial_state={"u": initial})
    for t, snapshot in zip(ds.time.values, ds["u"].values, strict=True):
        exact = 0.25 + np.exp(-0.05 * 13 * t) * np.sin(2 * x) * np.cos(3 * y)
        # float32 storage: round-off of a number of order 1 is ~6e-8
        np.testing.assert_allclose(snapshot, exact, atol=3e-7)


def test_random_initial_field_matches_independent_finite_difference_solution():
    """Second opinion: explicit central differences with tiny steps, different method."""
    sim = simulators.get("diffusion")
    diffusivity, t_end = 0.02, 0.5
    ds = sim.run({"diffusivity": diffusivity}, resolution=128, t_end=t_end, n_snapshots=2, seed=3)
    u = ds["u"].values[0].astype(np.float64)
    grid = PeriodicGrid(128)
    # the initial field is smooth: fourth-order periodic stencil, RK4 in time. The
    # stencil's relative error on mode k is (k dx)^4 / 90, ~1e-3 for the k ~ 12 tail of
    # the initial spectrum at dx = 2 pi / 128, so the solutions agree to ~1e-3.
    def rhs(field):
        def second(f, axis):
            return (-np.roll(f, 2, axis) + 16 * np.roll(f, 1, axis) - 30 * f
                    + 16 * np.roll(f, -1, axis) - np.roll(f, -2, axis)) / (12 * grid.dx**2)
        return diffusivity * (second(field, 0) + second(field, 1))
    steps = 500
    dt = t_end / steps
    for _ in range(steps):
        k1 = rhs(u); k2 = rhs(u + dt / 2 * k1); k3 = rhs(u + dt / 2 * k2); k4 = rhs(u + dt * k3)  # noqa: E702
        u = u + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    np.testing.assert_allclose(ds["u"].values[-1], u, atol=1e-3)


def test_mean_is_conserved_to_round_off():
    ds = simulators.get("diffusion").run({"diffusivity": 0.1}, resolution=64, t_end=5.0,
                                         n_snapshots=6, seed=1,
                                         initial_state={"u": 1.0 + np.random.default_rng(0)
                                                        .standard_normal((64, 64))})
    means = ds["u"].values.astype(np.float64).mean(axis=(1, 2))
    assert np.abs(means - means[0]).max() < 1e-6


def test_same_seed_same_bytes_and_different_seed_differs():
    sim = simulators.get("diffusion")
    a = sim.run(resolution=32, seed=5)["u"].values
    b = sim.run(resolution=32, seed=5)["u"].values
    c = sim.run(resolution=32, seed=6)["u"].values
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_batched_simulation_equals_single_runs():
    sim = simulators.get("diffusion")
    grid = PeriodicGrid(32)
    times = np.linspace(0, 1, 4)
    batch = sim.simulate({"diffusivity": np.array([0.01, 0.05, 0.002])}, grid, times, [1, 2, 3])
    for index, (d, seed) in enumerate([(0.01, 1), (0.05, 2), (0.002, 3)]):
        single = sim.simulate({"diffusivity": np.array([d])}, grid, times, [seed])
        np.testing.assert_array_equal(batch["u"][index], single["u"][0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"parameters": {"diffusivity": 1.0}}, "outside its declared range"),
    ({"parameters": {"nu": 1e-3}}, "has no parameter 'nu'"),
    ({"resolution": 48}, "power of two"),
    ({"resolution": 4}, "power of two"),
    ({"n_snapshots": 0}, "positive integer"),
    ({"t_end": -1.0}, "positive"),
    ({"init": "taylor_green"}, "unknown init"),
    ({"initial_state": {"u": np.zeros((8, 8))}}, "shape"),
    ({"initial_state": {"u": np.full((32, 32), np.nan)}}, "NaN"),
    ({"initial_state": {"v": np.zeros((32, 32))}}, "does not take"),
    ({"seed": -1}, "seed"),
])
def test_bad_input_raises_value_error_naming_the_problem(kwargs, message):
    kwargs = {"resolution": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        simulators.get("diffusion").run(**kwargs)


def test_dataset_has_named_dims_coordinates_and_parameter_attrs():
    ds = simulators.get("diffusion").run({"diffusivity": 0.03}, resolution=16, t_end=2.0,
                                         n_snapshots=3)
    assert ds["u"].dims == ("time", "x", "y")
    assert ds["u"].dtype == np.float32
    np.testing.assert_allclose(ds.time.values, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(ds.x.values, np.arange(16) * 2 * np.pi / 16)
    assert ds.attrs["diffusivity"] == 0.03 and ds.attrs["system"] == "diffusion"
