"""Conservation checks: round-off on real simulator output, clear failures on broken copies.

Truth comes from the simulators themselves (which keep their declared invariants to
round-off), from exact Helmholtz decompositions built mode by mode, from analytic time
series for the energy budget, and from deliberately broken copies of real output whose
expected violation is known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulators
from simulators.base import Invariant
from simulators.grid import PeriodicGrid
from simulators.store import FieldStore, FieldStoreWriter, Provenance, StoreSchema
from surrogate.validation.conservation import (
    bounds_violation,
    check_invariants,
    check_invariants_streaming,
    conserved_mean_violation,
    curl_violation,
    discrete_values_violation,
    divergence_violation,
    domain_mean,
    energy_budget_residual,
    energy_budget_violation,
    energy_enstrophy,
    initial_energy_violation,
    reference_scale,
    zero_mean_violation,
)

#: float32 storage: every declared invariant of real output must hold to this level
ROUND_OFF = 1e-6
BOX = 2 * np.pi
NS_DENSE = {"resolution": 32, "t_end": 0.2, "n_snapshots": 41}


def _as_batch(dataset) -> dict[str, np.ndarray]:
    """One ``Simulator.run`` Dataset as ``{name: (1, T, N, N[, 2])}`` float32 arrays."""
    return {name: dataset[name].values[None] for name in dataset.data_vars}


def _parameters(simulator, dataset) -> dict[str, np.ndarray]:
    return {name: np.array([dataset.attrs[name]]) for name in simulator.resolve_parameters({})}


def _check_run(simulator, dataset, fields=None, parameters=None):
    return check_invariants(simulator.invariants, fields or _as_batch(dataset),
                            dataset.attrs["box_size"], dataset["time"].values,
                            parameters or _parameters(simulator, dataset))


def _band_limited(rng: np.random.Generator, grid: PeriodicGrid, count: int) -> np.ndarray:
    """``count`` random real fields (count, N, N) with modes |m| <= N/4 only (no Nyquist)."""
    spectrum = grid.fft(rng.standard_normal((count, *grid.shape)))
    n = grid.resolution
    m = np.abs(np.fft.fftfreq(n) * n)
    spectrum *= (m[:, None] <= n // 4) & (np.arange(n // 2 + 1)[None, :] <= n // 4)
    return grid.ifft(spectrum)


@pytest.fixture(scope="module")
def diffusion_run():
    simulator = simulators.get("diffusion")
    return simulator, simulator.run(resolution=32, n_snapshots=6, seed=1)


@pytest.fixture(scope="module")
def grf_run():
    simulator = simulators.get("gaussian_random_field")
    return simulator, simulator.run({"amplitude": 0.5}, resolution=32, seed=2)


@pytest.fixture(scope="module")
def ns_run():
    simulator = simulators.get("navier_stokes2d")
    return simulator, simulator.run(seed=3, **NS_DENSE)


# ------------------------------------------------------------- basic conventions
def test_domain_mean_is_the_grid_average_over_the_last_two_axes():
    field = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    means = domain_mean(field)
    assert means.shape == (2, 3) and means.dtype == np.float64
    np.testing.assert_allclose(means, field.reshape(2, 3, 16).mean(axis=-1))


def test_reference_scale_is_the_std_over_all_values_with_fallbacks_for_constants():
    rng = np.random.default_rng(0)
    field = rng.normal(3.0, 2.0, (2, 3, 8, 8))
    assert reference_scale(field) == pytest.approx(field.std())
    assert reference_scale(np.full((4, 4), -5.0)) == 5.0
    assert reference_scale(np.zeros((4, 4))) == 1.0


def test_checks_reject_nan_instead_of_ignoring_it():
    field = np.zeros((1, 2, 8, 8))
    field[0, 1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        conserved_mean_violation(field)


# ------------------------------------------------- real output keeps its invariants
@pytest.mark.parametrize("fixture, expected_keys", [
    ("diffusion_run", {"conserved_mean(u)"}),
    ("grf_run", {"zero_mean(delta)", "bounded(density)"}),
    ("ns_run", {"zero_mean(vorticity)", "divergence_free(velocity)",
                "curl_of(vorticity,velocity)", "energy_budget(velocity)",
                "initial_energy(velocity)"}),
])
def test_simulator_output_keeps_every_declared_invariant_to_float32_round_off(
        fixture, expected_keys, request):
    simulator, dataset = request.getfixturevalue(fixture)
    result = _check_run(simulator, dataset)
    assert set(result) == expected_keys
    for key, value in result.items():
        if key == "energy_budget(velocity)":
            continue        # a finite-difference estimate, tested separately below
        if isinstance(value, dict):
            assert "skipped" not in value, (key, value)
            assert all(v <= ROUND_OFF for v in value.values()), (key, value)
        else:
            assert 0 <= value <= ROUND_OFF, (key, value)


def test_batched_navier_stokes_keeps_invariants_for_every_trajectory():
    simulator = simulators.get("navier_stokes2d")
    grid = simulator.make_grid(16)
    times = np.linspace(0, 0.2, 21)
    parameters = {"nu": np.array([1e-3, 1e-2]), "forcing_amplitude": np.array([0.0, 0.5]),
                  "forcing_wavenumber": np.array([4.0, 2.0])}
    fields = simulator.simulate(parameters, grid, times, [5, 6])
    fields = {name: array.astype(np.float32) for name, array in fields.items()}
    result = check_invariants(simulator.invariants, fields, BOX, times, parameters)
    assert max(result["zero_mean(vorticity)"], result["divergence_free(velocity)"],
               result["curl_of(vorticity,velocity)"],
               result["initial_energy(velocity)"]) <= ROUND_OFF
    assert result["energy_budget(velocity)"] < 1e-3
    # the per-trajectory viscosities matter: swapping them breaks the budget
    swapped = {**parameters, "nu": parameters["nu"][::-1]}
    assert check_invariants(simulator.invariants, fields, BOX, times,
                            swapped)["energy_budget(velocity)"] > 0.3


# ----------------------------------------------- broken copies fail the right check
def test_mean_shift_growing_in_time_breaks_conserved_mean(diffusion_run):
    simulator, dataset = diffusion_run
    field = _as_batch(dataset)["u"].astype(np.float64)
    scale = reference_scale(field)
    times = dataset["time"].values
    shifted = field + 0.01 * scale * (times / times[-1])[None, :, None, None]
    assert conserved_mean_violation(shifted, scale=scale) == pytest.approx(0.01, rel=1e-4)
    result = check_invariants(simulator.invariants, {"u": shifted}, BOX)
    assert result["conserved_mean(u)"] > 1e-3
    # a constant offset is not a drift: the mean is still conserved
    assert conserved_mean_violation(field + 5.0) <= ROUND_OFF


def test_gradient_part_breaks_divergence_free_but_not_curl_of(ns_run):
    simulator, dataset = ns_run
    fields = _as_batch(dataset)
    grid = PeriodicGrid(32, BOX)
    potential = _band_limited(np.random.default_rng(7), grid, 1)[0]
    gradient = grid.gradient(potential)
    gradient *= 0.3 * np.sqrt(np.mean(fields["velocity"] ** 2) / np.mean(gradient**2))
    broken = {**fields, "velocity": fields["velocity"] + gradient}
    result = _check_run(simulator, dataset, broken)
    assert result["divergence_free(velocity)"] > 0.05
    assert result["curl_of(vorticity,velocity)"] <= ROUND_OFF     # curl(grad) = 0
    assert result["zero_mean(vorticity)"] <= ROUND_OFF


def test_vorticity_scaled_by_1_3_breaks_curl_of_by_0_3_over_1_3(ns_run):
    simulator, dataset = ns_run
    fields = _as_batch(dataset)
    broken = {**fields, "vorticity": fields["vorticity"] * np.float32(1.3)}
    result = _check_run(simulator, dataset, broken)
    assert result["curl_of(vorticity,velocity)"] == pytest.approx(0.3 / 1.3, rel=1e-5)
    assert result["divergence_free(velocity)"] <= ROUND_OFF
    assert result["zero_mean(vorticity)"] <= ROUND_OFF


def test_negative_density_values_break_bounded_by_their_count_and_depth(grf_run):
    simulator, dataset = grf_run
    fields = _as_batch(dataset)
    density = fields["density"].astype(np.float64)
    flat = density.reshape(-1)
    chosen = np.random.default_rng(8).choice(flat.size, size=flat.size // 50, replace=False)
    flat[chosen] = -0.25
    result = check_invariants(simulator.invariants, {**fields, "density": density}, BOX)
    bounded = result["bounded(density)"]
    assert bounded["fraction_outside"] == pytest.approx(chosen.size / flat.size)
    assert bounded["max_excursion"] == pytest.approx(0.25 / density.std())
    assert result["zero_mean(delta)"] <= ROUND_OFF


def test_bounds_violation_measures_both_sides():
    field = np.array([-2.0, 0.0, 0.5, 1.0, 4.0])
    result = bounds_violation(field, low=0.0, high=1.0, scale=2.0)
    assert result == {"fraction_outside": pytest.approx(0.4), "max_excursion": 1.5}
    assert bounds_violation(field, None, None)["fraction_outside"] == 0.0


def test_zero_mean_violation_is_the_largest_mean_over_the_scale():
    rng = np.random.default_rng(9)
    field = rng.standard_normal((3, 2, 16, 16))
    field -= field.mean(axis=(-2, -1), keepdims=True)
    assert zero_mean_violation(field) <= 1e-15
    field[1, 0] += 0.2
    assert zero_mean_violation(field, scale=2.0) == pytest.approx(0.1)


def test_spins_with_values_other_than_plus_minus_one_break_discrete_values():
    rng = np.random.default_rng(10)
    spins = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(2, 3, 16, 16))
    invariants = (Invariant("discrete_values", "spin", values=(-1.0, 1.0)),)
    assert check_invariants(invariants, {"spin": spins}, 1.0) == {"discrete_values(spin)": 0.0}
    broken = spins.copy().reshape(-1)
    broken[: broken.size // 20] = 0.5          # 5 % off the lattice
    broken[-3:] = 1.0 + 1e-3                   # slightly off: still counted
    result = check_invariants(invariants, {"spin": broken.reshape(spins.shape)}, 1.0)
    assert result["discrete_values(spin)"] == pytest.approx((broken.size // 20 + 3) / broken.size)
    assert discrete_values_violation(np.array([0.9, 1.1]), (-1, 1), tolerance=0.2) == 0.0


# ------------------------------------------------------- the derivative metrics
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), solenoidal=st.floats(0.0, 3.0),
       compressive=st.floats(0.0, 3.0))
def test_divergence_ratio_is_the_compressive_share_of_the_velocity_gradient(
        seed, solenoidal, compressive):
    grid = PeriodicGrid(16, 3.0)
    stream, potential = _band_limited(np.random.default_rng(seed), grid, 2)
    rotational = grid.velocity_from_vorticity_hat(-grid.k_squared * grid.fft(stream))
    gradient = grid.gradient(potential)
    velocity = solenoidal * rotational + compressive * gradient

    def gradient_variance(u):
        return sum(np.mean(grid.gradient(u[..., i]) ** 2) * 2 for i in range(2))

    total = solenoidal**2 * gradient_variance(rotational) \
        + compressive**2 * gradient_variance(gradient)
    expected = np.sqrt(compressive**2 * gradient_variance(gradient) / total) if total else 0.0
    assert divergence_violation(velocity, 3.0) == pytest.approx(expected, abs=1e-12)


def test_divergence_is_reported_per_snapshot_then_maximised():
    grid = PeriodicGrid(16, BOX)
    stream, potential = _band_limited(np.random.default_rng(11), grid, 2)
    clean = grid.velocity_from_vorticity_hat(-grid.k_squared * grid.fft(stream))
    snapshots = np.stack([clean, clean, grid.gradient(potential)])
    assert divergence_violation(snapshots[:2], BOX) <= 1e-14
    assert divergence_violation(snapshots, BOX) == pytest.approx(1.0)
    assert divergence_violation(np.ones((16, 16, 2)), BOX) == 0.0      # uniform flow


def test_curl_check_ignores_only_the_nyquist_modes_odd_derivatives_cannot_carry():
    grid = PeriodicGrid(16, BOX)
    rng = np.random.default_rng(12)
    vorticity = rng.standard_normal(grid.shape)              # white: has Nyquist content
    vorticity -= vorticity.mean()
    velocity = grid.velocity_from_vorticity_hat(grid.fft(vorticity))
    naive = np.sqrt(np.mean((vorticity - grid.curl(velocity)) ** 2) / np.mean(vorticity**2))
    assert naive > 0.05                                      # why the projection is needed
    assert curl_violation(vorticity, velocity, BOX) <= 1e-13
    x, _ = grid.mesh()
    wrong = vorticity + 0.1 * np.sqrt(2) * np.cos(3 * x)    # rms 0.1, not a Nyquist mode
    assert curl_violation(wrong, velocity, BOX) == pytest.approx(
        0.1 / np.sqrt(np.mean(wrong**2)), rel=1e-9)


# ------------------------------------------------------------------ energy budget
def test_energy_and_enstrophy_are_half_the_mean_squares():
    velocity = np.zeros((2, 8, 8, 2))
    velocity[0, ..., 0] = 2.0
    velocity[1, ..., 1] = 1.0
    vorticity = np.ones((2, 8, 8)) * np.array([3.0, 0.0])[:, None, None]
    energy, enstrophy = energy_enstrophy(velocity, vorticity)
    np.testing.assert_allclose(energy, [2.0, 0.5])
    np.testing.assert_allclose(enstrophy, [4.5, 0.0])


def test_energy_budget_residual_is_the_second_order_centred_difference_error():
    nu, rate = 0.01, 3.0
    errors = []
    for count in (11, 21, 41):
        times = np.linspace(0.0, 1.0, count)
        step = times[1]
        energy = np.exp(-rate * times)                      # dE/dt = -rate E = -2 nu Z
        enstrophy = rate * energy / (2 * nu)
        residual = energy_budget_residual(times, energy, enstrophy, nu)
        assert residual.shape == (count - 2,)
        # leading error of the centred difference: (h^2 / 6) d^3E/dt^3, at t = 0.5
        error = residual[(count - 1) // 2 - 1]
        assert error == pytest.approx(-step**2 / 6 * rate**3 * np.exp(-rate * 0.5), rel=0.02)
        errors.append(abs(error))
    np.testing.assert_allclose(np.log2(np.array(errors[:-1]) / errors[1:]), 2.0, atol=0.01)


def test_energy_budget_of_dense_navier_stokes_snapshots_closes_and_a_wrong_nu_does_not(ns_run):
    simulator, dataset = ns_run
    parameters = _parameters(simulator, dataset)
    assert _check_run(simulator, dataset)["energy_budget(velocity)"] < 1e-3
    for factor, expected in ((2.0, 0.5), (0.5, 1.0)):
        wrong = {**parameters, "nu": parameters["nu"] * factor}
        violation = _check_run(simulator, dataset, parameters=wrong)["energy_budget(velocity)"]
        assert violation == pytest.approx(expected, rel=1e-2)


def test_forced_energy_budget_needs_the_forcing_work():
    simulator = simulators.get("navier_stokes2d")
    dataset = simulator.run({"nu": 1e-2, "forcing_amplitude": 0.5, "forcing_wavenumber": 2},
                            seed=4, **NS_DENSE)
    parameters = _parameters(simulator, dataset)
    assert _check_run(simulator, dataset, parameters=parameters)[
        "energy_budget(velocity)"] < 1e-3
    unforced = {"nu": parameters["nu"]}
    assert _check_run(simulator, dataset, parameters=unforced)[
        "energy_budget(velocity)"] > 0.1


def test_energy_budget_violation_is_relative_to_the_source_and_sink_terms():
    times = np.linspace(0.0, 1.0, 5)
    energy = np.ones((2, 5))
    enstrophy = np.ones((2, 5))
    # dE/dt = 0 but -2 nu Z = -2 nu: the residual equals the whole sink term
    assert energy_budget_violation(times, energy, enstrophy, np.array([0.1, 0.2])) == 1.0
    assert energy_budget_violation(times, energy, enstrophy, 0.1,
                                   forcing_work=0.2 * np.ones((2, 5))) == 0.0


@pytest.mark.parametrize("times, parameters, reason", [
    (None, {"nu": [1e-3]}, "times"),
    (np.linspace(0, 0.2, 41), None, "nu"),
    (np.linspace(0, 0.2, 41), {"nu": [1e-3], "forcing_amplitude": [0.1]}, "forcing"),
    (np.linspace(0, 0.2, 41), {"nu": [1e-3], "drag": [0.1]}, "drag"),
])
def test_energy_budget_is_skipped_with_a_reason_when_its_inputs_are_missing(
        ns_run, times, parameters, reason):
    simulator, dataset = ns_run
    result = check_invariants(simulator.invariants, _as_batch(dataset), BOX, times, parameters)
    assert reason in result["energy_budget(velocity)"]["skipped"]


def test_missing_field_is_reported_as_skipped_not_dropped(ns_run):
    simulator, dataset = ns_run
    result = check_invariants(simulator.invariants,
                              {"velocity": _as_batch(dataset)["velocity"]}, BOX)
    assert "vorticity" in result["zero_mean(vorticity)"]["skipped"]
    assert "vorticity" in result["curl_of(vorticity,velocity)"]["skipped"]
    assert result["divergence_free(velocity)"] <= ROUND_OFF


def test_wrong_rank_is_rejected():
    invariants = (Invariant("conserved_mean", "u"),)
    with pytest.raises(ValueError, match=r"\(B, T, N, N\)"):
        check_invariants(invariants, {"u": np.zeros((4, 8, 8))}, BOX)


# ---------------------------------------------------------------------- streaming
class _RecordingStore:
    """A FieldStore proxy that records the largest array it handed out."""

    def __init__(self, store: FieldStore) -> None:
        self._store = store
        self.largest = 0

    def read(self, name, trajectories=slice(None), times=slice(None)):
        array = self._store.read(name, trajectories, times)
        self.largest = max(self.largest, array.nbytes)
        return array

    def __getattr__(self, name):
        return getattr(self._store, name)


def _write_store(path, simulator, fields, parameters, times):
    schema = StoreSchema.from_simulator(simulator, simulator.make_grid(16), times)
    batch = len(next(iter(fields.values())))
    with FieldStoreWriter(path, schema, batch, Provenance("test", seed=0)) as writer:
        for b in range(batch):
            writer.write(b, {name: values[b] for name, values in parameters.items()},
                         {name: array[b] for name, array in fields.items()}, seed=b)
    return path


def test_streaming_check_equals_in_memory_check_and_holds_one_trajectory(tmp_path):
    simulator = simulators.get("navier_stokes2d")
    times = np.linspace(0, 0.1, 21)
    parameters = {"nu": np.array([1e-3, 3e-3, 1e-2]),
                  "forcing_amplitude": np.array([0.0, 0.2, 0.5]),
                  "forcing_wavenumber": np.array([4.0, 3.0, 2.0])}
    fields = simulator.simulate(parameters, simulator.make_grid(16), times, [0, 1, 2])
    fields["vorticity"][1] *= 1.1                            # one broken trajectory
    path = _write_store(tmp_path / "ns.h5", simulator, fields, parameters, times)
    with FieldStore(path) as store:
        recorder = _RecordingStore(store)
        streamed = check_invariants_streaming(recorder)
        in_memory = check_invariants(store.schema.invariants,
                                     {name: store.read(name) for name in store.field_names},
                                     store.box_size, store.times, store.parameters())
        one_trajectory = store.dataset("velocity")[0].nbytes
    assert recorder.largest <= one_trajectory
    assert streamed.keys() == in_memory.keys()
    for key in in_memory:
        assert streamed[key] == pytest.approx(in_memory[key], rel=1e-9, abs=1e-15), key
    assert streamed["curl_of(vorticity,velocity)"] == pytest.approx(0.1 / 1.1, rel=1e-5)


def test_streaming_pools_bounds_and_uses_the_global_scale(tmp_path):
    simulator = simulators.get("gaussian_random_field")
    parameters = {"amplitude": np.array([0.1, 0.5, 1.0, 0.3]),
                  "spectral_index": np.array([2.5, 2.0, 3.0, 2.5])}
    fields = simulator.simulate(parameters, simulator.make_grid(16), np.zeros(1), [0, 1, 2, 3])
    fields["density"][2, 0, :3, :5] = -0.5                   # 15 values below zero
    fields["delta"][3] += 0.05                               # one non-zero-mean field
    path = _write_store(tmp_path / "grf.h5", simulator, fields, parameters, np.zeros(1))
    with FieldStore(path) as store:
        streamed = check_invariants_streaming(store, trajectories=[0, 2, 3])
        in_memory = check_invariants(store.schema.invariants,
                                     {name: store.read(name, [0, 2, 3])
                                      for name in store.field_names}, store.box_size)
    bounded = streamed["bounded(density)"]
    assert bounded["fraction_outside"] == pytest.approx(15 / (3 * 16 * 16))
    assert bounded == pytest.approx(in_memory["bounded(density)"], rel=1e-9)
    assert streamed["zero_mean(delta)"] == pytest.approx(in_memory["zero_mean(delta)"],
                                                         rel=1e-9)
    assert streamed["zero_mean(delta)"] > 0.01


def test_initial_energy_check_reads_the_t0_snapshot_and_fails_a_rescaled_flow():
    # a Taylor–Green flow u = (sin x cos y, -cos x sin y) has E = 1/4 exactly
    grid = PeriodicGrid(16, BOX)
    x, y = grid.mesh()
    flow = np.stack([np.sin(x) * np.cos(y), -np.cos(x) * np.sin(y)], axis=-1)
    velocity = np.stack([flow, 3.0 * flow])[None]                   # (1, 2, N, N, 2)
    assert initial_energy_violation(velocity, np.array([0.0, 1.0]), 0.25) < 1e-15
    # the snapshot at t = 0 is the one judged, wherever it sits
    assert initial_energy_violation(velocity, np.array([-1.0, 0.0]), 0.25) \
        == pytest.approx(8.0)
    invariant = Invariant("initial_energy", "velocity", value=0.25)
    skipped = check_invariants([invariant], {"velocity": velocity}, BOX,
                               np.array([0.5, 1.0]))
    assert "t = 0" in skipped["initial_energy(velocity)"]["skipped"]
    with pytest.raises(ValueError, match="positive finite value"):
        Invariant("initial_energy", "velocity", value=-1.0)
