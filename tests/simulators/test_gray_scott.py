"""Gray–Scott: agrees with py-pde, balances mass, keeps its bounds, symmetries, refusals.

Reference problem of the py-pde comparison: the smooth state
``u = 1 - b/2, v = b/4``, ``b = (1 + cos(2 pi x / L)) (1 + cos(2 pi y / L)) / 4`` in the
default box ``L = 0.5``, default parameters, integrated to ``t = 100`` (the bump sharpens
into a spot and starts to split, so the reaction and both diffusions matter).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import simpson

import simulators
from benchmarks.gray_scott_vs_pypde import PARAMETERS, pypde_problem, smooth_bump
from simulators.gray_scott import ETDRK4, GrayScott, patch_state
from surrogate.cli import main as cli_main

#: (F, k) of Pearson's (1993) regimes as they develop in the default box: spots,
#: spot replication, stripes, mazes, worms, holes, waves and the chaotic low-F corner
PEARSON_REGIMES = {
    "spots": (0.030, 0.062), "spot_replication": (0.039, 0.065), "stripes": (0.038, 0.061),
    "maze": (0.029, 0.057), "worms": (0.050, 0.063), "holes": (0.046, 0.0594),
    "waves": (0.022, 0.051), "worm_stripes": (0.058, 0.065), "chaos": (0.018, 0.047),
    "spirals": (0.010, 0.047),
}
#: corners of the declared (F, k) range
RANGE_CORNERS = {"corner_low_low": (0.005, 0.03), "corner_high_high": (0.1, 0.07),
                 "corner_high_low": (0.1, 0.03), "corner_low_high": (0.005, 0.07)}


def _batch(values: dict[str, float], size: int = 1) -> dict[str, np.ndarray]:
    return {name: np.full(size, value) for name, value in
            GrayScott().resolve_parameters(values).items()}


def _regime_batch(regimes: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    size = len(regimes)
    batch = _batch(PARAMETERS, size)
    batch["feed"] = np.array([feed for feed, _ in regimes.values()])
    batch["kill"] = np.array([kill for _, kill in regimes.values()])
    return batch


def _simulate(simulator, values, resolution, times, seeds=(0,), initial_state=None):
    grid = simulator.make_grid(resolution)
    return simulator.simulate(_batch(values, len(seeds)), grid, np.asarray(times, float),
                              list(seeds), initial_state=initial_state)


# ------------------------------------------------------------------ the scheme
def test_etdrk4_coefficients_match_their_limits_and_closed_forms():
    h = 0.7
    # z -> 0: Q = h/2 and f1 = f2 = f3 = h/6, i.e. classic RK4 (Kassam & Trefethen 2005)
    small = ETDRK4(np.array([0.0, -1e-14]), h)
    for values, expected in ((small.q, h / 2), (small.f1, h / 6), (small.f2_twice, h / 3),
                             (small.f3, h / 6)):
        np.testing.assert_allclose(values.real, expected, rtol=1e-12)
    # |z| >= 2: the closed forms lose at most a few digits to cancellation
    z = -np.array([2.0, 10.0, 300.0])
    c = ETDRK4(z / h, h)
    e = np.exp(z)
    closed = {"q": h * (np.exp(z / 2) - 1) / z,
              "f1": h * (-4 - z + e * (4 - 3 * z + z**2)) / z**3,
              "f2_twice": 2 * h * (2 + z + e * (z - 2)) / z**3,
              "f3": h * (-4 - 3 * z - z**2 + e * (4 - z)) / z**3}
    for name, expected in closed.items():
        np.testing.assert_allclose(getattr(c, name).real, expected, rtol=1e-12, err_msg=name)
        assert np.all(getattr(c, name).imag == 0)
    np.testing.assert_allclose(c.exp.real, e, rtol=1e-15)


def test_time_stepping_is_fourth_order():
    # max-norm error at t = 100 against dt = 1/32; ETDRK4 is fourth order, so halving the
    # step divides the error by 16 in the asymptotic range (observed 14.5, 15.5, 15.8)
    def final(dt_max):
        out = _simulate(GrayScott(dt_max=dt_max), PARAMETERS, 32, [100.0], seeds=[5])
        return np.stack([out["u"][0, -1], out["v"][0, -1]])

    reference = final(1 / 32)
    errors = [np.abs(final(dt) - reference).max() for dt in (2.0, 1.0, 0.5, 0.25)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 12) & (ratios < 20)), (errors, ratios)
    assert errors[1] < 1e-5          # the default dt_max = 1


def test_default_box_is_resolved_at_64_and_adequate_at_32():
    # Fourier truncation: at N = 64 the spot fronts are resolved to ~1e-6 (spectral
    # accuracy); at N = 32 (six points per pattern wavelength) to a few per cent
    times = [0.0, 300.0]
    fields = {n: _simulate(GrayScott(), PARAMETERS, n, times, initial_state=smooth_bump(n))
              for n in (32, 64, 128)}
    for n, tolerance in ((32, 0.03), (64, 1e-5)):
        step = 128 // n
        error = max(np.abs(fields[n][f][0, -1] - fields[128][f][0, -1, ::step, ::step]).max()
                    for f in ("u", "v"))
        assert error < tolerance, (n, error)


# ------------------------------------------------------------ py-pde agreement
PYPDE_TIME = 100.0
#: solve_ivp tolerance: time error ~1e-7, far below the spatial differences (>= 1e-3)
RTOL = 1e-7


def _py_pde_solution(resolution: int) -> dict[str, np.ndarray]:
    """py-pde's solution of the reference problem (2nd-order finite differences).

    Same equations as expression strings, periodic ``CartesianGrid``, the same initial
    arrays, ``scipy.integrate.solve_ivp`` (RK45, rtol 1e-7, atol 1e-9: time error ~1e-7,
    far below the spatial one). py-pde puts its cells at ``(i + 1/2) dx``, ours at ``i dx``;
    the problem is translation invariant, so the same arrays give the same arrays.
    """
    pytest.importorskip("pde")
    state, equations = pypde_problem(resolution)
    result = equations.solve(state, t_range=PYPDE_TIME, dt=0.1, solver="scipy",
                             tracker=None, backend="numpy", method="RK45", rtol=RTOL,
                             atol=RTOL / 100)
    return {"u": result[0].data.copy(), "v": result[1].data.copy()}


@pytest.fixture(scope="module")
def py_pde_comparison():
    """py-pde at N = 64 and 128 and ours (float64, dt_max = 1/4) on the same grids.

    (At N = 32 py-pde is outside its asymptotic range: pattern-scale modes have
    ``k dx ~ 1``, and its pointwise error is not yet ``C dx^2``.)
    """
    ours, theirs, times = {}, {}, np.linspace(0.0, PYPDE_TIME, 101)
    for n in (64, 128):
        out = _simulate(GrayScott(dt_max=0.25), PARAMETERS, n, times,
                        initial_state=smooth_bump(n))
        ours[n] = {name: out[name][0] for name in ("u", "v")}
        theirs[n] = _py_pde_solution(n)
    return ours, theirs, times


def _truncation_bound(fields: dict[str, np.ndarray], times: np.ndarray, n: int) -> float:
    """``int_0^t max_x |D dx^2/12 (f_xxxx + f_yyyy)| dt``, the larger over ``u`` and ``v``.

    The leading truncation error of the 5-point Laplacian is
    ``(dx^2/12)(f_xxxx + f_yyyy)``; integrated in time, it bounds the finite-difference
    solution's deviation from the exact one when the reaction neither amplifies nor
    damps it (diffusion damps it, so the bound is loose, by ~6x here).
    """
    grid = GrayScott().make_grid(n)
    fourth = grid.kx**4 + grid.ky**4
    bounds = []
    for name, diffusivity in (("u", PARAMETERS["diffusivity_u"]),
                              ("v", PARAMETERS["diffusivity_v"])):
        tau = np.abs(grid.ifft(grid.fft(fields[name]) * fourth)).max(axis=(-2, -1))
        bounds.append(np.trapezoid(tau, times) * diffusivity * grid.dx**2 / 12)
    return max(bounds)


@pytest.mark.slow   # py-pde at N = 64 and 128 (~20 s): a long physics check
def test_agrees_with_py_pde_within_its_second_order_truncation_error(py_pde_comparison):
    ours, theirs, times = py_pde_comparison
    differences = {}
    for n in (64, 128):
        differences[n] = max(np.abs(ours[n][f][-1] - theirs[n][f]).max() for f in ("u", "v"))
        # observed 6.6e-3 (N = 64) and 1.6e-3 (N = 128) against bounds 4.3e-2 and 1.1e-2
        assert differences[n] < _truncation_bound(ours[n], times, n), (n, differences[n])
    # py-pde converges to our (spectrally accurate) solution at second order: the
    # difference falls by 2^2 = 4 when dx is halved (observed 4.2)
    ratio = differences[64] / differences[128]
    assert 3.6 < ratio < 4.6, ratio


@pytest.mark.slow   # py-pde at N = 64 and 128 (~20 s): a long physics check
def test_richardson_extrapolated_py_pde_matches_ours(py_pde_comparison):
    # (4 f_128 - f_64) / 3 cancels py-pde's dx^2 error term on the common points; what
    # is left is O(dx^4) and must be far below the N = 128 difference itself
    # (observed 1.2e-4 against 1.6e-3)
    ours, theirs, _ = py_pde_comparison
    for name in ("u", "v"):
        extrapolated = (4 * theirs[128][name][::2, ::2] - theirs[64][name]) / 3
        residual = np.abs(extrapolated - ours[128][name][-1, ::2, ::2]).max()
        difference = np.abs(theirs[128][name] - ours[128][name][-1]).max()
        assert residual < difference / 5, (name, residual, difference)


# ------------------------------------------------------------------ mass balance
def test_mean_concentrations_follow_the_reaction_source():
    # d<u + v>/dt = F (1 - <u>) - (F + k) <v>: the change of <u + v> over [100, 200]
    # against Simpson's rule of the source on snapshots dt_s apart. Simpson's error is
    # O(dt_s^4): with a fine time step (1/8, time error ~1e-11) the residual falls ~16x
    # per halving of dt_s (observed 1.1e-10, 1.5e-9, 2.9e-8 for dt_s = 1, 2, 4).
    simulator = GrayScott(dt_max=0.125)
    times = np.linspace(100.0, 200.0, 101)
    out = _simulate(simulator, PARAMETERS, 32, times, seeds=[5])
    u_mean, v_mean = out["u"][0].mean(axis=(1, 2)), out["v"][0].mean(axis=(1, 2))
    change = (u_mean + v_mean)[-1] - (u_mean + v_mean)[0]
    source = PARAMETERS["feed"] * (1 - u_mean) - (PARAMETERS["feed"] + PARAMETERS["kill"]) * v_mean
    integrals = [simpson(source[::every], x=times[::every]) for every in (1, 2, 4)]
    residuals = [abs(change - integral) for integral in integrals]
    assert abs(change) > 0.01                               # a real change to balance
    # Richardson estimate of Simpson's error at dt_s = 1: (I_1 - I_2) / 15 (~9e-11);
    # the time-stepping error adds ~3e-11
    assert residuals[0] < 2 * abs(integrals[0] - integrals[1]) / 15
    assert residuals[0] < 1e-8 * abs(change)
    assert residuals[1] > 8 * residuals[0] and residuals[2] > 8 * residuals[1], residuals


# ------------------------------------------------------------------------ bounds
def _bound_violation(out: dict[str, np.ndarray]) -> np.ndarray:
    """Per trajectory, the largest excursion below 0 or above 1 (u) / below 0 (v)."""
    u, v = out["u"], out["v"]
    axes = (1, 2, 3)
    return np.maximum.reduce([u.max(axis=axes) - 1, -u.min(axis=axes), -v.min(axis=axes)])


def test_homogeneous_state_is_a_fixed_point_bit_for_bit():
    # the solver evolves a = 1 - u and v: the state s = 0 has N(0) = 0 and E 0 = 0
    simulator = GrayScott()
    state = {"u": np.ones((32, 32)), "v": np.zeros((32, 32))}
    out = simulator.simulate(_regime_batch(PEARSON_REGIMES), simulator.make_grid(32),
                             np.array([0.0, 10.0, 500.0]), list(range(len(PEARSON_REGIMES))),
                             initial_state=state)
    assert np.all(out["u"] == 1.0) and np.all(out["v"] == 0.0)


@pytest.mark.slow   # long runs of every regime (4 s)
def test_bounds_kept_in_long_runs_of_every_pearson_regime():
    # The PDE keeps 0 <= u <= 1, v >= 0 exactly; the pseudo-spectral solution up to its
    # truncation error, which at N = 32 (dx = 1/64) reaches a few 1e-4 at the sharpest
    # spot fronts (observed at most 3.3e-4, in the chaotic regime), against pattern
    # amplitudes ~0.4. Snapshots every 100 time units to t = 4000.
    simulator = GrayScott()
    times = np.linspace(0.0, 4000.0, 41)
    out = simulator.simulate(_regime_batch(PEARSON_REGIMES), simulator.make_grid(32), times,
                             list(range(len(PEARSON_REGIMES))))
    violation = _bound_violation(out)
    assert np.all(violation < 1e-3), dict(zip(PEARSON_REGIMES, violation, strict=True))
    developed = out["v"][:, -1].std(axis=(-2, -1))
    # patterns developed (not the homogeneous state) in the pattern-forming regimes
    for name, spread in zip(PEARSON_REGIMES, developed, strict=True):
        if name not in ("chaos", "spirals"):      # these need a larger box (docstring)
            assert spread > 0.03, (name, spread)


@pytest.mark.slow
def test_bounds_kept_to_truncation_level_when_resolved():
    # N = 64, Pearson's regimes and the corners of the declared range, to t = 10000:
    # violations at the 1e-6 level (observed <= 5e-6 to t = 4000)
    simulator = GrayScott()
    regimes = PEARSON_REGIMES | RANGE_CORNERS
    out = simulator.simulate(_regime_batch(regimes), simulator.make_grid(64),
                             np.linspace(0.0, 10000.0, 51), list(range(len(regimes))))
    violation = _bound_violation(out)
    assert np.all(violation < 1e-5), dict(zip(regimes, violation, strict=True))


# ------------------------------------------------------- determinism and batching
def test_same_seed_same_bytes_and_seeds_differ():
    simulator = simulators.get("gray_scott")
    kwargs = {"resolution": 32, "t_end": 50.0, "n_snapshots": 3}
    first = simulator.run(PARAMETERS, seed=7, **kwargs)
    again = simulator.run(PARAMETERS, seed=7, **kwargs)
    other = simulator.run(PARAMETERS, seed=8, **kwargs)
    for name in ("u", "v"):
        assert first[name].values.tobytes() == again[name].values.tobytes()
        assert not np.array_equal(first[name].values, other[name].values)


@pytest.mark.parametrize("resolution", [32, 64])
def test_trajectory_identical_alone_or_in_any_batch(resolution):
    # 6 trajectories, each its own parameters and seed; at N = 64 the batch is split
    # into chunks of GrayScott.chunk_size = 4, at N = 32 it is one chunk
    simulator = GrayScott()
    grid = simulator.make_grid(resolution)
    rng = np.random.default_rng(0)
    batch = {name: rng.uniform(p.low, p.high, 6) for name, p in
             ((p.name, p) for p in simulator.parameters)}
    seeds = [11, 12, 13, 14, 15, 16]
    times = np.array([0.0, 7.5, 20.0])
    together = simulator.simulate(batch, grid, times, seeds)
    for index, seed in enumerate(seeds):
        alone = simulator.simulate({k: v[index:index + 1] for k, v in batch.items()}, grid,
                                   times, [seed])
        for name in ("u", "v"):
            assert np.array_equal(alone[name][0], together[name][index]), (index, name)


# ------------------------------------------------------------------- symmetries
def _negate_x(f):
    return np.roll(np.flip(f, axis=-2), 1, axis=-2)


def _negate_y(f):
    return np.roll(np.flip(f, axis=-1), 1, axis=-1)


#: name -> (map of (..., N, N) arrays f'(x) = f(g^-1 x), map of a cell index (ix, iy))
#: (the array maps are those of tests/simulators/test_symmetries.py)
ELEMENTS = {
    "shift": (lambda f: np.roll(f, (3, 5), axis=(-2, -1)), lambda c, n: (c[0] + 3, c[1] + 5)),
    "flip_x": (_negate_x, lambda c, n: (-c[0], c[1])),
    "flip_y": (_negate_y, lambda c, n: (c[0], -c[1])),
    "rotate_90": (lambda f: np.roll(np.rot90(f, 1, axes=(-2, -1)), 1, axis=-2),
                  lambda c, n: (-c[1], c[0])),
}


def test_every_declared_symmetry_is_tested():
    assert set(GrayScott.symmetries) == set(ELEMENTS)


@pytest.mark.parametrize("name", sorted(ELEMENTS))
def test_declared_symmetry_maps_the_random_law_and_commutes_with_the_dynamics(name):
    # 1. Law of the initial state: it is patch_state(centres, noise) with centres i.i.d.
    #    uniform over the cells and noise i.i.d. per cell. The map g sends the state
    #    built from (centres, noise) to the one built from (g centres, g noise), an
    #    equally likely draw, so the law is invariant.
    # 2. Dynamics: simulate(g s0) == g simulate(s0) to float64 round-off (t <= 200,
    #    before round-off differences grow in the chaotic regimes).
    spatial, cell_map = ELEMENTS[name]
    simulator = GrayScott()
    n = 32
    grid = simulator.make_grid(n)
    rng = np.random.default_rng(3)
    centres = rng.integers(0, n, size=(4, 2))
    noise = rng.uniform(-1, 1, size=(2, n, n))
    u0, v0 = patch_state(grid, centres, noise)
    moved_centres = np.array([cell_map(c, n) for c in centres]) % n
    moved_u, moved_v = patch_state(grid, moved_centres, spatial(noise))
    np.testing.assert_array_equal(moved_u, spatial(u0))
    np.testing.assert_array_equal(moved_v, spatial(v0))

    times = [0.0, 100.0, 200.0]
    original = _simulate(simulator, PARAMETERS, n, times, initial_state={"u": u0, "v": v0})
    moved = _simulate(simulator, PARAMETERS, n, times,
                      initial_state={"u": moved_u, "v": moved_v})
    for field in ("u", "v"):
        np.testing.assert_allclose(moved[field][0], spatial(original[field][0]), rtol=0,
                                   atol=1e-10)


def test_random_init_is_pearson_patches_from_the_seed():
    simulator = GrayScott()
    grid = simulator.make_grid(64)
    u, v = simulator.random_initial_state(grid, seed=4)
    rng = np.random.default_rng(4)
    centres = np.floor(rng.random((4, 2)) * 64).astype(int)
    expected = patch_state(grid, centres, rng.uniform(-1, 1, (2, 64, 64)))
    np.testing.assert_array_equal(u, expected[0])
    np.testing.assert_array_equal(v, expected[1])
    inside = v > 0
    assert np.all((np.abs(u[inside] - 0.5) <= 0.01) & (np.abs(v[inside] - 0.25) <= 0.01))
    assert np.all((u[~inside] == 1.0) & (v[~inside] == 0.0))
    # 4 patches of 13 x 13 cells (side 0.1 at dx = 1/128), possibly overlapping
    assert 13 * 13 <= inside.sum() <= 4 * 13 * 13
    # the patches sit at the same places (within a cell) at N = 32 and 64
    coarse = simulator.random_initial_state(simulator.make_grid(32), seed=4)[1] > 0
    assert np.mean(coarse == inside[::2, ::2]) > 0.9


# -------------------------------------------------------------------- refusals
@pytest.mark.parametrize(("parameters", "message"), [
    ({"feed": 0.2}, "'feed'"),
    ({"kill": 0.01}, "'kill'"),
    ({"diffusivity_u": 1e-4}, "'diffusivity_u'"),
    ({"diffusivity_v": -1e-5}, "'diffusivity_v'"),
    ({"nu": 1e-3}, "no parameter 'nu'"),
])
def test_parameters_outside_the_declared_ranges_are_refused(parameters, message):
    with pytest.raises(ValueError, match=message) as error:
        GrayScott().run(parameters, resolution=16, t_end=1.0, n_snapshots=2)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("state", "message"), [
    ({"u": np.ones((16, 16)), "v": np.zeros((8, 8))}, r"initial_state\['v'\] has shape"),
    ({"u": np.ones((16, 16))}, "missing field"),
    ({"u": np.full((16, 16), 1.01), "v": np.zeros((16, 16))}, r"initial_state\['u'\]"),
    ({"u": np.full((16, 16), -0.01), "v": np.zeros((16, 16))}, r"initial_state\['u'\]"),
    ({"u": np.ones((16, 16)), "v": np.full((16, 16), -1e-9)}, r"initial_state\['v'\]"),
    ({"u": np.ones((16, 16)), "v": np.full((16, 16), np.nan)}, "NaN"),
])
def test_bad_initial_states_are_refused_with_one_line(state, message):
    with pytest.raises(ValueError, match=message) as error:
        GrayScott().run(resolution=16, t_end=1.0, initial_state=state)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("dt_max", [0.0, -1.0, float("nan"), "fast"])
def test_bad_time_step_option_is_refused(dt_max):
    with pytest.raises(ValueError, match="dt_max"):
        GrayScott(dt_max=dt_max)


def test_valid_initial_state_runs_and_is_returned_at_t0():
    state = smooth_bump(16)
    ds = GrayScott().run(resolution=16, t_end=10.0, n_snapshots=2, initial_state=state)
    np.testing.assert_allclose(ds["u"].values[0], state["u"], atol=1e-7)
    assert ds.attrs["init"] == "initial_state" and ds["v"].dims == ("time", "x", "y")


# ------------------------------------------------------------- store round trip
def test_sweep_writes_a_file_that_passes_the_checker(tmp_path, capsys):
    path = tmp_path / "gray_scott.h5"
    status = cli_main(["simulate", "gray_scott", "-o", str(path), "-n", "4",
                       "--resolution", "32", "--t-end", "200", "--snapshots", "3",
                       "--sweep", "feed=0.03:0.05", "--sweep", "kill=0.055:0.065",
                       "--seed", "1", "-q"])
    assert status == 0 and path.exists()
    assert cli_main(["check", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    assert "gray_scott" in simulators.available()
