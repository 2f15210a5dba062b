"""Tests of the navier_stokes2d reference simulator against independent truths.

Truths used: the Taylor–Green vortex (exact decaying solution), the laminar
Kolmogorov flow started from rest (exact forced solution), the energy budget
dE/dt = -2 nu Z + <F.u> (exact for the dealiased Galerkin system), spectral identities
(div u = 0, omega = curl u), the convergence order of RK4, and the batch/seed contract
of the simulator protocol.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import simulators
from simulators.grid import PeriodicGrid
from simulators.navier_stokes2d import NavierStokes2D
from simulators.timestepping import CLASSIC_RK4, SSP_RK3, LawsonStepper


@pytest.fixture(autouse=True)
def strict_floating_point():
    """Any overflow, invalid operation or division by zero fails the test."""
    with np.errstate(all="raise", under="ignore"):
        yield


def batch_parameters(**values: float) -> dict[str, np.ndarray]:
    """Parameters for one trajectory as the (1,)-arrays ``simulate`` takes."""
    defaults = {"nu": 1e-3, "forcing_amplitude": 0.0, "forcing_wavenumber": 4}
    return {name: np.array([value]) for name, value in (defaults | values).items()}


def relative_max_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


# ----------------------------------------------------------------- exact solutions
@pytest.mark.parametrize("box_size", [2 * np.pi, 1.0])
def test_taylor_green_decays_at_viscous_rate(box_size: float) -> None:
    # omega = 2 k0 sin(k0 x) sin(k0 y) is an eigenfunction of the Laplacian, so
    # omega = 2 k0^2 psi and u . grad omega = J(psi, omega) = 0: only viscosity acts,
    # omega(t) = omega(0) exp(-2 nu k0^2 t). The integrating factor integrates the
    # viscous term exactly and the computed advection term is round-off (~1e-16 |u||k|
    # |omega|), so the only error is accumulated round-off, ~1e-15 after the ~50 steps
    # here; the 1e-6 bound leaves 9 orders of margin and would catch any error in the
    # integrating factor (an O(h) error would be ~1e-3) or in the sign conventions.
    simulator = NavierStokes2D()
    grid = PeriodicGrid(16, box_size)
    nu = 1e-2
    times = np.linspace(0.0, 5.0, 6)
    fields = simulator.simulate(batch_parameters(nu=nu), grid, times, [0],
                                init="taylor_green")
    k0 = 2 * np.pi / box_size
    x, y = grid.mesh()
    decay = np.exp(-2 * nu * k0**2 * times)[:, None, None]
    vorticity = 2 * k0 * np.sin(k0 * x) * np.sin(k0 * y) * decay
    velocity = np.stack([np.sin(k0 * x) * np.cos(k0 * y),
                         -np.cos(k0 * x) * np.sin(k0 * y)], axis=-1) * decay[..., None]
    errors = [relative_max_error(fields["vorticity"][0, i], vorticity[i])
              for i in range(len(times))]
    assert max(errors) <= 1e-6, errors
    assert max(errors) <= 1e-12, errors            # what the scheme actually reaches
    assert relative_max_error(fields["velocity"][0], velocity) <= 1e-12


def test_forcing_from_rest_gives_laminar_kolmogorov_flow() -> None:
    # From rest, F = (A sin(k_f y), 0) drives the shear flow u = U(t) sin(k_f y), v = 0,
    # U(t) = A (1 - exp(-nu k_f^2 t)) / (nu k_f^2), for which u . grad omega = 0; the
    # forcing work is <F.u> = A U(t) / 2. Lawson RK4 integrates a constant forcing with
    # Simpson's rule on exp((h - s) L): its error h^5 (nu k_f^2)^4 / 2880 is ~1e-17, so
    # agreement is to round-off.
    simulator = NavierStokes2D()
    grid = PeriodicGrid(32)
    amplitude, mode, nu = 0.5, 2, 1e-2
    times = np.linspace(0.0, 2.0, 5)
    fields = simulator.simulate(
        batch_parameters(nu=nu, forcing_amplitude=amplitude, forcing_wavenumber=mode),
        grid, times, [0], initial_state={"vorticity": np.zeros(grid.shape)})
    k_f = mode * 2 * np.pi / grid.box_size
    speed = amplitude * (1 - np.exp(-nu * k_f**2 * times)) / (nu * k_f**2)
    y = grid.mesh()[1]
    expected_u = speed[:, None, None] * np.sin(k_f * y)
    velocity = fields["velocity"][0]
    assert relative_max_error(velocity[1:, ..., 0], expected_u[1:]) <= 1e-10
    assert np.abs(velocity[..., 1]).max() <= 1e-12 * speed.max()
    # the vorticity source is -A k_f cos(k_f y): omega = -dU/dy = -U k_f cos(k_f y)
    expected_vorticity = -(speed * k_f)[:, None, None] * np.cos(k_f * y)
    assert relative_max_error(fields["vorticity"][0, 1:], expected_vorticity[1:]) <= 1e-10
    budget = simulator.energy_budget(
        fields["vorticity"][0],
        {"nu": nu, "forcing_amplitude": amplitude, "forcing_wavenumber": mode})
    np.testing.assert_allclose(budget["forcing_work"], amplitude * speed / 2,
                               rtol=1e-10, atol=1e-15)


# ----------------------------------------------------------------- invariants
def random_forced_run(resolution: int = 32, t_end: float = 1.0, snapshots: int = 5,
                      **options: float) -> tuple[NavierStokes2D, PeriodicGrid, dict]:
    simulator = NavierStokes2D(**options)
    grid = PeriodicGrid(resolution)
    fields = simulator.simulate(
        batch_parameters(nu=1e-3, forcing_amplitude=0.5, forcing_wavenumber=3), grid,
        np.linspace(0.0, t_end, snapshots), [7])
    return simulator, grid, fields


def test_velocity_is_divergence_free_to_round_off() -> None:
    _, grid, fields = random_forced_run()
    velocity = fields["velocity"][0]
    divergence = grid.divergence(velocity)
    gradient_norm = np.sqrt(np.sum(grid.gradient(velocity[..., 0]) ** 2
                                   + grid.gradient(velocity[..., 1]) ** 2, axis=-1))
    assert np.abs(divergence).max() <= 1e-13 * gradient_norm.max()


def test_vorticity_is_curl_of_velocity_and_has_zero_mean() -> None:
    _, grid, fields = random_forced_run()
    vorticity, velocity = fields["vorticity"][0], fields["velocity"][0]
    scale = np.abs(vorticity).max()
    assert np.abs(grid.curl(velocity) - vorticity).max() <= 1e-13 * scale
    assert np.abs(vorticity.mean(axis=(-2, -1))).max() <= 1e-14 * scale
    assert np.abs(velocity.mean(axis=(-3, -2))).max() <= 1e-14 * np.abs(velocity).max()


def energy_rate_residual(simulator: NavierStokes2D, spacing: float, order: int,
                         parameters: dict[str, float]) -> float:
    """max |dE/dt (finite differences of snapshots) - predicted dE/dt| / max term."""
    grid = PeriodicGrid(32)
    times = np.arange(0.0, 1.0 + spacing / 2, spacing)
    fields = simulator.simulate({k: np.array([v]) for k, v in parameters.items()}, grid,
                                times, [3])
    budget = simulator.energy_budget(fields["vorticity"][0], parameters)
    energy, rate = budget["energy"], budget["energy_rate"]
    if order == 2:
        estimate, predicted = (energy[2:] - energy[:-2]) / (2 * spacing), rate[1:-1]
    else:
        estimate = (energy[:-4] - 8 * energy[1:-3] + 8 * energy[3:-1] - energy[4:]) \
            / (12 * spacing)
        predicted = rate[2:-2]
    scale = np.max(np.abs(budget["dissipation"]) + np.abs(budget["forcing_work"]))
    return float(np.abs(estimate - predicted).max() / scale)


def test_energy_budget_holds_to_finite_difference_and_time_step_error() -> None:
    # The 2/3-dealiased Galerkin system conserves energy exactly in its advection term,
    # so dE/dt = -2 nu Z + <F.u> holds exactly for the semi-discrete solution. The
    # residual of a finite-difference estimate of dE/dt from snapshots spaced dt is
    # (a) the difference error, dt^2 E'''/6 for central differences: it must fall by
    # 4 when dt halves; and (b) the RK4 error, O(h^4) with h <= dt: with a 4th-order
    # difference it is what remains, and it must fall by >= 8 (better than 3rd order)
    # when the snapshot spacing (hence the step) halves. Measured: 2.7e-5 -> 6.7e-6
    # (ratio 3.98) and 1.3e-7 -> 4.6e-9 -> 2.2e-10.
    simulator = NavierStokes2D()
    parameters = {"nu": 1e-2, "forcing_amplitude": 0.5, "forcing_wavenumber": 2}
    coarse = energy_rate_residual(simulator, 0.02, 2, parameters)
    fine = energy_rate_residual(simulator, 0.01, 2, parameters)
    assert fine <= 2e-5
    assert 3.5 <= coarse / fine <= 4.5
    fourth_coarse = energy_rate_residual(simulator, 0.01, 4, parameters)
    fourth_fine = energy_rate_residual(simulator, 0.005, 4, parameters)
    assert fourth_coarse <= 1e-7
    assert fourth_coarse / fourth_fine >= 8


def test_energy_budget_includes_drag_and_hyperviscosity() -> None:
    # Same check with the optional terms: dE/dt = -2 nu Z - 2 nu_h P_al - 2 mu E + P.
    # The 4th-order residual stays at the time-stepping level only if the budget's
    # hyperviscous and drag terms match what the integrating factor does.
    simulator = NavierStokes2D(hyperviscosity=1e-4, drag=0.2)
    parameters = {"nu": 1e-3, "forcing_amplitude": 0.5, "forcing_wavenumber": 2}
    assert energy_rate_residual(simulator, 0.01, 4, parameters) <= 1e-7
    without = NavierStokes2D()
    grid = PeriodicGrid(32)
    vorticity = simulator.simulate(batch_parameters(), grid, np.array([0.0]), [0])
    terms = simulator.energy_budget(vorticity["vorticity"][0, 0], parameters)
    plain = without.energy_budget(vorticity["vorticity"][0, 0], parameters)
    assert terms["dissipation"] == pytest.approx(
        plain["dissipation"] + 2e-4 * terms["palinstrophy"] + 0.4 * terms["energy"])


def test_time_stepping_converges_at_fourth_order() -> None:
    # Fixed steps (dt_max below the CFL limit): the error against a 16x finer run must
    # fall by ~2^4 = 16 per halving of the step (measured 12.7 and 15.5).
    grid = PeriodicGrid(32)
    parameters = batch_parameters(nu=1e-2, forcing_amplitude=0.5, forcing_wavenumber=2)

    def final_vorticity(step: float) -> np.ndarray:
        simulator = NavierStokes2D(cfl=1.0, dt_max=step)
        return simulator.simulate(parameters, grid, np.array([0.0, 1.0]), [0])["vorticity"][0, -1]

    reference = final_vorticity(0.0025)
    errors = [relative_max_error(final_vorticity(step), reference)
              for step in (0.04, 0.02, 0.01)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all(ratios >= 10), errors


def test_lawson_step_orders_and_zero_step() -> None:
    # du/dt = l u - u^2 has the exact solution u = l / ((l/u0 - 1) exp(-l t) + 1).
    linear = np.array([-1.0, -3.0])
    initial = np.array([0.5 + 0j, 0.3 + 0j])
    exact = linear / ((linear / initial - 1) * np.exp(-linear) + 1)

    def tendency(value: np.ndarray, out: np.ndarray) -> None:
        np.multiply(value, -value, out=out)

    for tableau in (CLASSIC_RK4, SSP_RK3):
        errors = []
        for steps in (10, 20):
            state = initial.copy()
            stepper = LawsonStepper(tableau, state.shape)
            for _ in range(steps):
                stepper.step(state, 1.0 / steps, linear, tendency)
            errors.append(np.abs(state - exact).max())
        assert np.log2(errors[0] / errors[1]) == pytest.approx(tableau.order, abs=0.3)
    state = initial.copy()
    LawsonStepper(CLASSIC_RK4, state.shape).step(state, np.array([0.0, 0.1]), linear,
                                                  tendency)
    assert state[0] == initial[0] and state[1] != initial[1]


# ----------------------------------------------------------------- protocol
def test_trajectory_alone_equals_trajectory_in_batch() -> None:
    # Bitwise: every operation is element-wise or per transform line, the CFL step
    # and the snapshot landing are per trajectory, and finished trajectories take
    # exact no-op steps (dt = 0) while the others catch up.
    simulator = NavierStokes2D()
    grid = PeriodicGrid(32)
    parameters = {"nu": np.array([1e-3, 1e-2, 3e-3]),
                  "forcing_amplitude": np.array([0.0, 0.5, 1.0]),
                  "forcing_wavenumber": np.array([4, 2, 3])}
    times = np.linspace(0.0, 1.0, 4)
    batch = simulator.simulate(parameters, grid, times, [0, 1, 2])
    for index in range(3):
        alone = simulator.simulate({k: v[index:index + 1] for k, v in parameters.items()},
                                   grid, times, [index])
        for name in ("vorticity", "velocity"):
            assert np.array_equal(alone[name][0], batch[name][index]), (index, name)


def test_chunking_and_threads_do_not_change_results() -> None:
    grid = PeriodicGrid(128)                        # chunk_size(128^2) = 4 trajectories
    assert NavierStokes2D.chunk_size(grid) == 4
    parameters = {"nu": np.full(5, 1e-2), "forcing_amplitude": np.zeros(5),
                  "forcing_wavenumber": np.full(5, 4)}
    times = np.array([0.0, 0.05])
    serial = NavierStokes2D().simulate(parameters, grid, times, range(5))
    threaded = NavierStokes2D(workers=2).simulate(parameters, grid, times, range(5))
    last = NavierStokes2D().simulate({k: v[4:] for k, v in parameters.items()}, grid,
                                     times, [4])
    assert np.array_equal(serial["vorticity"], threaded["vorticity"])
    assert np.array_equal(serial["vorticity"][4], last["vorticity"][0])


def test_same_seed_same_bytes_different_seed_differs() -> None:
    simulator = simulators.get("navier_stokes2d")
    run = dict(parameters={"forcing_amplitude": 0.3}, resolution=16, t_end=0.5,
               n_snapshots=3)
    first = simulator.run(seed=11, **run)
    again = simulator.run(seed=11, **run)
    other = simulator.run(seed=12, **run)
    assert first["vorticity"].values.tobytes() == again["vorticity"].values.tobytes()
    assert first["velocity"].values.tobytes() == again["velocity"].values.tobytes()
    assert not np.array_equal(first["vorticity"].values, other["vorticity"].values)


def test_random_initial_state_is_smooth_zero_mean_unit_rms_velocity() -> None:
    simulator = NavierStokes2D()
    grid = PeriodicGrid(64)
    fields = simulator.simulate(batch_parameters(), grid, np.array([0.0]), [5])
    velocity = fields["velocity"][0, 0]
    assert np.sqrt(np.mean(np.sum(velocity**2, axis=-1))) == pytest.approx(1.0, rel=1e-12)
    assert abs(fields["vorticity"][0, 0].mean()) <= 1e-14
    # energy concentrated near mode 4: the shell-averaged energy spectrum peaks there
    spectrum = np.abs(grid.fft(velocity[..., 0])) ** 2 + np.abs(grid.fft(velocity[..., 1])) ** 2
    shells = np.rint(grid.k_magnitude).astype(int)
    weights = np.where(np.arange(grid.spectral_shape[1]) == 0, 1.0, 2.0)
    energy = np.bincount(shells.ravel(), (spectrum * weights).ravel())
    assert 3 <= int(np.argmax(energy)) <= 5


def test_run_returns_dataset_with_named_dimensions() -> None:
    dataset = simulators.get("navier_stokes2d").run(
        {"nu": 1e-3}, resolution=16, t_end=0.2, n_snapshots=3, seed=0)
    assert isinstance(dataset, xr.Dataset)
    assert dataset["vorticity"].dims == ("time", "x", "y")
    assert dataset["velocity"].dims == ("time", "x", "y", "component")
    assert dataset["velocity"].shape == (3, 16, 16, 2)
    assert dataset.attrs["system"] == "navier_stokes2d"
    assert dataset.attrs["forcing_wavenumber"] == 4.0
    assert dataset["vorticity"].attrs["units"] == "1/time"


def test_initial_state_mean_is_removed() -> None:
    grid = PeriodicGrid(16)
    x, y = grid.mesh()
    vorticity = 2 * np.sin(x) * np.sin(y)
    fields = NavierStokes2D().simulate(batch_parameters(), grid, np.array([0.0]), [0],
                                       initial_state={"vorticity": vorticity + 3.0})
    np.testing.assert_allclose(fields["vorticity"][0, 0], vorticity, atol=1e-14)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"parameters": {"nu": 0.5}}, "nu"),
    ({"parameters": {"forcing_wavenumber": 2.5}}, "integer"),
    ({"parameters": {"viscosity": 1e-3}}, "viscosity"),
    ({"init": "vortex_street"}, "unknown init"),
    ({"initial_state": {"vorticity": np.zeros((8, 8))}}, "shape"),
    ({"initial_state": {"vorticity": np.full((16, 16), np.nan)}}, "NaN"),
    ({"parameters": {"forcing_amplitude": 0.5, "forcing_wavenumber": 8}}, "not resolved"),
])
def test_bad_input_raises_value_error_naming_the_problem(arguments: dict,
                                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NavierStokes2D().run(resolution=16, t_end=0.1, n_snapshots=2, **arguments)


@pytest.mark.parametrize("options", [{"cfl": 0.0}, {"cfl": 2.0}, {"dt_max": -1.0},
                                     {"drag": np.inf}, {"hyperviscosity": "a"},
                                     {"workers": 0}])
def test_bad_options_raise_value_error(options: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        NavierStokes2D(**options)


def test_declares_parameters_fields_and_invariants() -> None:
    simulator = simulators.get("navier_stokes2d")
    nu = simulator.parameter("nu")
    assert (nu.default, nu.low, nu.high, nu.units) == (1e-3, 1e-4, 1e-2, "length^2/time")
    assert simulator.parameter("forcing_wavenumber").integer
    assert (simulator.parameter("forcing_wavenumber").low,
            simulator.parameter("forcing_wavenumber").high) == (1, 8)
    assert [(f.name, f.rank) for f in simulator.fields] == [("vorticity", 0), ("velocity", 1)]
    kinds = {(i.kind, i.field) for i in simulator.invariants}
    assert kinds == {("zero_mean", "vorticity"), ("divergence_free", "velocity"),
                     ("curl_of", "vorticity"), ("energy_budget", "velocity"),
                     ("initial_energy", "velocity")}
    assert simulator.inits == ("random", "taylor_green")
