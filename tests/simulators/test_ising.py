"""Ising: exact results (Onsager, Kaufman), phase behaviour, symmetries, input checks, store.

Statistical tests compare Monte Carlo averages with exact values. Their tolerances are
``Z`` standard errors of the mean over *independent trajectories* (each trajectory's
time average is one independent sample, so autocorrelation between its snapshots is
accounted for), plus, where a finite-lattice value is not known exactly, a bound on the
finite-size correction. With ``Z = 4`` a correct sampler fails one comparison in
~16,000; every run is seeded, so the outcome is fixed.
"""

import itertools
import math

import h5py
import numpy as np
import pytest

import simulators
from simulators import ising
from simulators.ising import (
    CRITICAL_TEMPERATURE,
    Ising,
    energy_per_spin,
    finite_lattice_energy,
    finite_lattice_specific_heat,
    magnetisation,
    onsager_energy,
    onsager_magnetisation,
)
from surrogate.cli import main

Z = 4.0


def _sample(temperature, resolution, trajectories, t_end, snapshots, seed=0, burn_in=None,
            init="random", times=None):
    """``(B, T, N, N)`` spins of ``trajectories`` chains at one temperature."""
    simulator = Ising(burn_in=burn_in)
    grid = simulator.make_grid(resolution)
    if times is None:
        times = simulator.snapshot_times(t_end, snapshots)
    seeds = list(range(1000 * seed, 1000 * seed + trajectories))
    return simulator.simulate({"temperature": np.full(trajectories, temperature)}, grid,
                              times, seeds, init=init)["spin"]


def _mean_and_error(per_trajectory):
    """Mean of independent per-trajectory values and its standard error."""
    values = np.asarray(per_trajectory, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


# ----------------------------------------------------------------- exact results
def test_onsager_results_take_their_known_values():
    assert onsager_energy(CRITICAL_TEMPERATURE) == pytest.approx(-math.sqrt(2.0), abs=1e-12)
    # low temperature: u = -2 + 8 exp(-8/T) + O(exp(-12/T)) (one flipped spin costs 8J)
    assert onsager_energy(0.5) == pytest.approx(-2.0 + 8.0 * math.exp(-16.0), abs=1e-9)
    # high temperature: u = -2 tanh(1/T) + O(tanh^3)
    assert onsager_energy(100.0) == pytest.approx(-2.0 * math.tanh(0.01), abs=1e-5)
    # the energy is continuous at T_c (only its derivative diverges)
    assert onsager_energy(CRITICAL_TEMPERATURE * (1 - 1e-9)) == pytest.approx(-math.sqrt(2),
                                                                            abs=1e-6)
    assert onsager_magnetisation(0.1) == pytest.approx(1.0, abs=1e-12)
    assert onsager_magnetisation(2.0) == pytest.approx(0.911319, abs=1e-6)   # Yang 1952
    assert onsager_magnetisation(CRITICAL_TEMPERATURE) == 0.0
    assert onsager_magnetisation(2.3) == 0.0
    # m ~ (T_c - T)^(1/8) near T_c: 1e-8 below T_c gives m = (5e-8)^(1/8) = 0.12
    assert 0.0 < onsager_magnetisation(CRITICAL_TEMPERATURE * (1 - 1e-8)) < 0.2
    values = onsager_energy(np.array([1.0, 2.0, 3.0]))
    assert values.shape == (3,) and np.all(np.diff(values) > 0)
    assert CRITICAL_TEMPERATURE == pytest.approx(2.269185314, abs=1e-9)


def test_kaufman_energy_and_specific_heat_match_brute_force_on_4x4():
    """All 2^16 states of the 4 x 4 torus, enumerated: <e> and N^2 var(e) / T^2."""
    states = np.array(list(itertools.product((-1, 1), repeat=16)), dtype=np.float64)
    energies = energy_per_spin(states.reshape(-1, 4, 4))
    for temperature in (1.0, 2.0, CRITICAL_TEMPERATURE, 3.0):
        weights = np.exp(-(energies - energies.min()) * 16 / temperature)
        weights /= weights.sum()
        mean = np.sum(weights * energies)
        heat = 16 * (np.sum(weights * energies**2) - mean**2) / temperature**2
        assert finite_lattice_energy(temperature, 4) == pytest.approx(mean, abs=1e-9)
        assert finite_lattice_specific_heat(temperature, 4) == pytest.approx(heat, abs=1e-6)


def test_kaufman_energy_tends_to_onsager_with_the_known_finite_size_correction():
    temperatures = np.array([1.5, 2.0, 2.2, 2.8, 3.5])
    np.testing.assert_allclose(finite_lattice_energy(temperatures, 512),
                               onsager_energy(temperatures), atol=1e-9)
    # at T_c the correction is O(1/N) (Ferdinand and Fisher 1969): N (e_N + sqrt 2) is
    # the same (-0.62) within 2% from N = 32 to 128; the finite torus has lower energy
    corrections = [(finite_lattice_energy(CRITICAL_TEMPERATURE, n) + math.sqrt(2)) * n
                   for n in (32, 64, 128)]
    assert corrections == pytest.approx([corrections[-1]] * 3, rel=0.02)
    assert -0.7 < corrections[-1] < -0.5


def test_observables_of_known_configurations():
    n = 8
    ordered = np.ones((n, n))
    checkerboard = np.where(np.indices((n, n)).sum(axis=0) % 2, 1.0, -1.0)
    stripes = np.where(np.arange(n)[:, None] < n // 2, 1.0, -1.0) * np.ones((1, n))
    assert energy_per_spin(ordered) == -2.0 and magnetisation(ordered) == 1.0
    assert energy_per_spin(-ordered) == -2.0 and magnetisation(-ordered) == -1.0
    assert energy_per_spin(checkerboard) == 2.0 and magnetisation(checkerboard) == 0.0
    # two domain walls of n bonds each: e = -(2 n^2 - 2 * 2 n) / n^2
    assert energy_per_spin(stripes) == pytest.approx(-2.0 + 4.0 / n)
    assert energy_per_spin(np.stack([ordered, checkerboard])).tolist() == [-2.0, 2.0]


@pytest.mark.parametrize("function", [onsager_energy, onsager_magnetisation])
@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_exact_functions_refuse_non_positive_temperatures(function, temperature):
    with pytest.raises(ValueError, match="positive"):
        function(temperature)


# --------------------------------------------------------------- Monte Carlo vs exact
@pytest.mark.parametrize(("temperature", "resolution"),
                         [(1.5, 32), (2.0, 32),
                          pytest.param(2.2, 64, marks=pytest.mark.slow), (2.8, 32),
                          (3.5, 32)])
def test_energy_and_magnetisation_agree_with_onsager(temperature, resolution):
    """Mean energy per spin and <|m|> against the exact values.

    Energy: compared with Kaufman's exact mean energy of the same finite torus, so the
    only tolerance is sampling error: ``Z`` standard errors over 48 independent
    trajectories, each the average of its 41 snapshots 5 sweeps apart (the standard
    error is 3e-4 to 1.5e-3 here, asserted below 2e-3 so that the check has teeth).
    The finite-size correction, Kaufman minus Onsager, is below 2e-5 at these
    temperatures and sizes (exponentially small in ``N / xi`` off T_c); it is asserted
    too, so the samples also agree with Onsager within ``Z`` errors + 2e-5.

    ``|m|`` below T_c: no finite-lattice exact value exists; on a torus the correction
    to ``<|m|>`` is of order ``exp(-N / xi)`` with ``xi = 1 / (2 gamma_0)``,
    ``gamma_0 = 2K + ln tanh K`` the exact correlation length (xi = 9.1 at T = 2.2,
    below 1.5 at T <= 2; N / xi >= 7), plus the effect of the width of the distribution
    of m, ``~ chi T / (2 N^2 m)``, ~1e-3 at T = 2.2 on 64^2; the tolerance is ``Z``
    standard errors plus ``2e-3``.
    """
    spins = _sample(temperature, resolution, trajectories=48, t_end=200, snapshots=41,
                    seed=int(10 * temperature))
    energy = energy_per_spin(spins)                     # (B, T)
    mean, error = _mean_and_error(energy.mean(axis=1))
    exact = finite_lattice_energy(temperature, resolution)
    assert abs(exact - onsager_energy(temperature)) < 2e-5
    assert abs(mean - exact) < Z * error, (temperature, mean, exact, error)
    assert error < 2e-3
    if temperature < CRITICAL_TEMPERATURE:
        absolute_m, m_error = _mean_and_error(np.abs(magnetisation(spins)).mean(axis=1))
        expected = onsager_magnetisation(temperature)
        assert abs(absolute_m - expected) < Z * m_error + 2e-3, (temperature, absolute_m,
                                                                  expected, m_error)


def test_magnetisation_vanishes_above_tc_with_the_right_fluctuations():
    """At T = 3.5 the mean of m is zero within its error, and ``T chi = N^2 <m^2>`` lies
    between rigorous bounds: ``1 + 4 tanh K`` (Griffiths: every pair correlation is
    non-negative, nearest neighbours at least ``tanh K``) and ``1 + 4t / (1 - 3t)``,
    ``t = tanh K`` (each correlation is at most the sum of ``t^length`` over
    self-avoiding walks, at most ``4 * 3^(l-1)`` of length ``l``). A sampler that kept
    order would give ``N^2 <m^2> ~ N^2``.
    """
    temperature, n = 3.5, 32
    spins = _sample(temperature, n, trajectories=32, t_end=50, snapshots=11, seed=3)
    m = magnetisation(spins)
    mean, error = _mean_and_error(m.mean(axis=1))
    assert abs(mean) < Z * error
    t_chi, t_chi_error = _mean_and_error((n * n * m**2).mean(axis=1))
    t = math.tanh(1.0 / temperature)
    assert 1 + 4 * t - Z * t_chi_error < t_chi < 1 + 4 * t / (1 - 3 * t) + Z * t_chi_error
    # sigma(m) = sqrt(T chi) / N ~ 0.07 per snapshot, so |mean| is far below it
    assert abs(mean) < 0.1 * math.sqrt(t_chi) / n * math.sqrt(11 * 32)


def test_both_magnetisation_signs_occur_below_tc():
    """The spanning cluster flips with probability 1/2 at each sweep: at T = 2.0 the sign of
    m is positive with probability 1/2 in each trajectory (from both starts), so among
    32 trajectories the fraction with m > 0 is within ``Z sqrt(1/4 / 32) = 0.35`` of 1/2.
    A sampler that always ends at +1 (or never leaves its start) fails.
    """
    for init in ("random", "ordered"):
        m = magnetisation(_sample(2.0, 32, trajectories=32, t_end=10, snapshots=2,
                                  seed=5, init=init))
        assert np.all(np.abs(m) > 0.5)                  # ordered phase
        positive = np.mean(m[:, -1] > 0)
        assert abs(positive - 0.5) < Z * math.sqrt(0.25 / 32), (init, positive)
        # and the sign changes along trajectories
        assert np.any(np.sign(m[:, 0]) != np.sign(m[:, -1]))


def test_specific_heat_peaks_near_tc_on_a_16x16_lattice():
    """``c = N^2 (<e^2> - <e>^2) / T^2`` from the samples, against Kaufman's exact
    finite-lattice value at each temperature (peak 1.55 at T = 2.32 for N = 16).

    Variance estimated from all snapshots pooled (48 trajectories x 50 snapshots, 2
    sweeps apart), its standard error by the jackknife over trajectories (so
    correlations between snapshots are included); relative error ~4%. The largest
    estimate must be at 2.2, 2.3 or 2.4: the exact values at 2.0 and 2.6 are half
    the peak, 10 standard errors away.
    """
    n = 16
    temperatures = np.array([1.8, 2.0, 2.2, 2.3, 2.4, 2.6, 2.8])
    per_temperature = 48
    simulator = Ising()
    grid = simulator.make_grid(n)
    times = simulator.snapshot_times(98, 50)
    repeated = np.repeat(temperatures, per_temperature)
    spins = simulator.simulate({"temperature": repeated}, grid, times,
                               list(range(repeated.size)))["spin"]
    energy = energy_per_spin(spins).reshape(temperatures.size, per_temperature, -1)

    def heat(samples, temperature):
        return n * n * samples.var(ddof=1) / temperature**2

    estimates, errors = [], []
    for samples, temperature in zip(energy, temperatures, strict=True):
        estimate = heat(samples, temperature)
        leave_one_out = np.array([heat(np.delete(samples, b, axis=0), temperature)
                                  for b in range(per_temperature)])
        error = math.sqrt((per_temperature - 1) * np.mean((leave_one_out
                                                           - leave_one_out.mean())**2))
        estimates.append(estimate)
        errors.append(error)
    exact = finite_lattice_specific_heat(temperatures, n)
    np.testing.assert_array_less(np.abs(np.array(estimates) - exact), Z * np.array(errors))
    assert 2.2 <= temperatures[int(np.argmax(estimates))] <= 2.4
    assert 2.2 <= temperatures[int(np.argmax(exact))] <= 2.4


def test_first_snapshot_is_in_equilibrium_from_hot_and_cold_starts_at_tc():
    """Burn-in: the t = 0 snapshot alone, over 96 trajectories, has Kaufman's exact
    mean energy at T_c (where relaxation is slowest) from either start. With a burn-in of
    only 2 sweeps the same check fails (the mean is still ~0.2 to 0.3 away), so it
    would catch a burn-in that is too short."""
    n = 32
    exact = finite_lattice_energy(CRITICAL_TEMPERATURE, n)
    for init in ("random", "ordered"):
        for burn_in, settled in ((None, True), (2, False)):
            first = energy_per_spin(_sample(CRITICAL_TEMPERATURE, n, trajectories=96,
                                            t_end=None, snapshots=None, seed=7, init=init,
                                            burn_in=burn_in, times=np.zeros(1)))[:, 0]
            mean, error = _mean_and_error(first)
            assert (abs(mean - exact) < Z * error) == settled, (init, burn_in, mean, exact)


# ------------------------------------------------------- determinism and batching
def test_same_seed_same_bytes_and_batches_and_chunks_do_not_matter(monkeypatch):
    simulator = Ising(burn_in=10)
    grid = simulator.make_grid(16)
    times = np.array([0.0, 5.0, 10.0])
    temperatures = np.array([1.5, CRITICAL_TEMPERATURE, 3.5])
    batch = simulator.simulate({"temperature": temperatures}, grid, times, [11, 12, 13])
    again = simulator.simulate({"temperature": temperatures}, grid, times, [11, 12, 13])
    assert batch["spin"].tobytes() == again["spin"].tobytes()
    for index, (temperature, seed) in enumerate(zip(temperatures, [11, 12, 13], strict=True)):
        single = simulator.simulate({"temperature": np.array([temperature])}, grid, times,
                                    [seed])
        np.testing.assert_array_equal(batch["spin"][index], single["spin"][0])
    monkeypatch.setattr(ising, "CHUNK_SITES", 2 * 16 * 16)    # chunks of 2 trajectories
    assert simulator.chunk_size(grid) == 2
    chunked = simulator.simulate({"temperature": temperatures}, grid, times, [11, 12, 13])
    np.testing.assert_array_equal(chunked["spin"], batch["spin"])
    other = simulator.simulate({"temperature": temperatures}, grid, times, [11, 12, 14])
    assert not np.array_equal(other["spin"][2], batch["spin"][2])


def test_random_stream_follows_the_documented_pattern():
    """Hot start from ``rng.random((N, N)) < 1/2``, then ``rng.random((3, N, N))`` per
    sweep into :func:`swendsen_wang_sweep`: re-implemented by hand, bit for bit."""
    n, burn_in, temperature, seed = 16, 3, 2.1, 21
    rng = np.random.default_rng(seed)
    spins = np.where(rng.random((n, n)) < 0.5, 1, -1).astype(np.int8)[None]
    expected = []
    for sweep in range(burn_in + 4):
        spins = ising.swendsen_wang_sweep(spins, np.array([-math.expm1(-2 / temperature)]),
                                          rng.random((3, n, n))[None])
        if sweep + 1 - burn_in in (0, 2, 4):
            expected.append(spins[0])
    simulator = Ising(burn_in=burn_in)
    result = simulator.simulate({"temperature": np.array([temperature])},
                                simulator.make_grid(n), np.array([0.0, 2.0, 4.0]), [seed])
    np.testing.assert_array_equal(result["spin"][0], np.stack(expected))


def test_run_returns_exact_plus_minus_one_spins_on_the_lattice():
    ds = simulators.get("ising").run({"temperature": 2.5}, resolution=16, seed=3)
    spins = ds["spin"].values
    assert spins.dtype == np.float32 and spins.shape == (11, 16, 16)
    assert set(np.unique(spins).tolist()) == {-1.0, 1.0}
    np.testing.assert_array_equal(ds.time.values, np.arange(0, 101, 10))
    np.testing.assert_array_equal(ds.x.values, np.arange(16))     # lattice spacing 1
    assert ds.attrs["box_size"] == 16.0 and ds.time.attrs["units"] == "sweep"


def test_default_burn_in_grows_slowly_with_the_lattice():
    assert ising.default_burn_in(8) == ising.MIN_BURN_IN
    values = [ising.default_burn_in(2**k) for k in range(3, 13)]
    assert values == sorted(values) and values[-1] < 1000
    assert Ising(burn_in=0).burn_in_sweeps(Ising().make_grid(64)) == 0


# --------------------------------------------------------------------- symmetries
def _flip_x(f):
    """``f'[i, j] = f[-i mod N, j]``."""
    return np.roll(np.flip(f, axis=-2), 1, axis=-2)


def _flip_y(f):
    return np.roll(np.flip(f, axis=-1), 1, axis=-1)


def _rotate_90(f):
    """``f'[i, j] = f[j, -i mod N]`` (counterclockwise, as in test_symmetries.py)."""
    return np.roll(np.rot90(f, 1, axes=(-2, -1)), 1, axis=-2)


def _shift(f):
    return np.roll(f, (3, 5), axis=(-2, -1))


#: name -> (map of site arrays, map of (x-bond, y-bond) arrays). Bond (i, j)-(i+1, j) is
#: stored at [i, j] of the x-bond array. Under x -> -x it becomes bond (-i-1, j)-(-i, j),
#: stored at [-i-1, j]; under the rotation f'[i, j] = f[j, -i] an x-bond of the image is
#: the y-bond (j, -i-1)-(j, -i) of the original and a y-bond the x-bond (j, -i).
LATTICE_MAPS = {
    "shift": (_shift, lambda bx, by: (_shift(bx), _shift(by))),
    "flip_x": (_flip_x, lambda bx, by: (np.roll(_flip_x(bx), -1, axis=-2), _flip_x(by))),
    "flip_y": (_flip_y, lambda bx, by: (_flip_y(bx), np.roll(_flip_y(by), -1, axis=-1))),
    "rotate_90": (_rotate_90, lambda bx, by: (np.roll(_rotate_90(by), -1, axis=-2),
                                              _rotate_90(bx))),
}


class _ScriptedGenerator:
    """Stands in for ``numpy.random.default_rng(seed)``: hands out given uniforms."""

    def __init__(self, arrays):
        self.arrays = list(arrays)

    def random(self, size=None, out=None):
        array = self.arrays.pop(0)
        if out is None:
            assert array.shape == tuple(size)
            return array.copy()
        assert out.shape == array.shape
        out[...] = array
        return out


def _scripted_run(monkeypatch, arrays, times, init="random"):
    simulator = Ising(burn_in=4)
    grid = simulator.make_grid(16)
    with monkeypatch.context() as patch:
        patch.setattr(np.random, "default_rng", lambda seed: _ScriptedGenerator(arrays))
        return simulator.simulate({"temperature": np.array([CRITICAL_TEMPERATURE])}, grid,
                                  times, [0], init=init)["spin"][0]


def _uniforms(sweeps, n=16):
    rng = np.random.default_rng(99)
    return [rng.random((n, n))] + [rng.random((3, n, n)) for _ in range(sweeps)]


def _mapped(arrays, site_map, bond_map):
    out = [site_map(arrays[0])]
    for u in arrays[1:]:
        bx, by = bond_map(u[0], u[1])
        out.append(np.stack([bx, by, site_map(u[2])]))
    return out


@pytest.mark.parametrize("name", sorted(LATTICE_MAPS))
def test_sampler_commutes_exactly_with_the_declared_lattice_symmetries(name, monkeypatch):
    """Same construction as test_symmetries.py: running on the mapped random numbers (the
    hot start's site uniforms, each sweep's bond uniforms and cluster coins; their law
    is invariant under any relabelling of sites and bonds) gives exactly the mapped
    spins, at T_c, where clusters of every size occur."""
    assert name in Ising.symmetries
    site_map, bond_map = LATTICE_MAPS[name]
    times = np.array([0.0, 3.0, 8.0])
    arrays = _uniforms(4 + 8)
    original = _scripted_run(monkeypatch, arrays, times)
    moved = _scripted_run(monkeypatch, _mapped(arrays, site_map, bond_map), times)
    np.testing.assert_array_equal(moved, site_map(original))
    assert len(np.unique(magnetisation(original))) > 1      # the spins did change


def test_symmetry_check_fails_when_bonds_are_mapped_like_sites(monkeypatch):
    # the exact check has teeth: moving x-bonds as if they sat on sites breaks it
    times = np.array([0.0, 8.0])
    arrays = _uniforms(4 + 8)
    original = _scripted_run(monkeypatch, arrays, times)
    wrong = _mapped(arrays, _flip_x, lambda bx, by: (_flip_x(bx), _flip_x(by)))
    assert not np.array_equal(_scripted_run(monkeypatch, wrong, times), _flip_x(original))


def test_global_spin_flip_is_an_exact_symmetry():
    """``s -> -s`` (declared as ``negate``) commutes with the sampler exactly, here through
    ``run`` with an initial state; every declared symmetry is proven in this file."""
    assert set(Ising.symmetries) == set(LATTICE_MAPS) | {"negate", "negate_each_snapshot"}
    simulator = Ising(burn_in=3)
    start = np.where(np.random.default_rng(4).random((16, 16)) < 0.3, 1.0, -1.0)
    kwargs = {"resolution": 16, "t_end": 6, "n_snapshots": 3, "seed": 8,
              "parameters": {"temperature": 2.4}}
    up = simulator.run(initial_state={"spin": start}, **kwargs)["spin"].values
    down = simulator.run(initial_state={"spin": -start}, **kwargs)["spin"].values
    np.testing.assert_array_equal(down, -up)


def _sign_changes(spins):
    """Fraction of consecutive snapshot pairs, both ordered (|m| > 0.5), whose
    magnetisation has opposite signs; and how many such pairs."""
    m = magnetisation(spins)
    ordered = (np.abs(m[:, 1:]) > 0.5) & (np.abs(m[:, :-1]) > 0.5)
    changed = np.sign(m[:, 1:]) != np.sign(m[:, :-1])
    return changed[ordered].mean(), int(ordered.sum())


def test_the_sign_has_no_memory_between_snapshots(monkeypatch):
    """``negate_each_snapshot``: deep in the ordered phase (T = 1.5, |m| ~ 0.99) one sweep
    apart, a trajectory's magnetisation changes sign with probability 1/2 (the largest
    cluster's own coin), not ~0 as under local dynamics: 400 x 2 pairs, binomial standard
    error 0.018, bound 0.5 +- 0.08. Control: with every cluster coin scripted to "keep",
    the same statistic reads 0 (it can see memory)."""
    assert "negate_each_snapshot" in Ising.symmetries and "negate" in Ising.symmetries
    spins = _sample(1.5, 16, 400, None, None, seed=3, times=np.array([0.0, 1.0, 2.0]))
    fraction, pairs = _sign_changes(spins)
    assert pairs > 700 and abs(fraction - 0.5) < 0.08, (fraction, pairs)
    sweep = ising.swendsen_wang_sweep

    def keep_every_cluster(spins, bond_probability, uniforms):
        uniforms = uniforms.copy()
        uniforms[:, 2] = 0.75                       # no heads: an even count everywhere
        return sweep(spins, bond_probability, uniforms)

    monkeypatch.setattr(ising, "swendsen_wang_sweep", keep_every_cluster)
    frozen = _sample(1.5, 16, 50, None, None, seed=3, times=np.array([0.0, 1.0, 2.0]),
                     init="ordered")
    assert _sign_changes(frozen) == (0.0, 100)


def test_negate_each_snapshot_requires_negate():
    with pytest.raises(TypeError, match="implies negate"):
        type("Bad", (simulators.base.Simulator,), {"symmetries": ("negate_each_snapshot",)})


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"parameters": {"temperature": -1.0}}, "outside its declared range"),
    ({"parameters": {"temperature": 0.0}}, "outside its declared range"),
    ({"parameters": {"temperature": 10.0}}, "outside its declared range"),
    ({"initial_state": {"spin": np.ones((8, 8))}}, "has shape"),
    ({"initial_state": {"spin": np.full((16, 16), 0.5)}}, r"only \+1 and -1"),
    ({"initial_state": {"spin": np.zeros((16, 16))}}, r"only \+1 and -1"),
    ({"initial_state": {"u": np.ones((16, 16))}}, "does not take"),
    ({"t_end": 10, "n_snapshots": 4}, "whole numbers of Monte Carlo sweeps"),
    ({"t_end": 2.5, "n_snapshots": 1}, "whole numbers of Monte Carlo sweeps"),
    ({"box_size": 1.0}, "box_size is the lattice size"),
    ({"init": "checkerboard"}, "unknown init"),
])
def test_bad_input_is_a_one_line_value_error(kwargs, message):
    arguments = {"resolution": 16, "t_end": 10, "n_snapshots": 3, **kwargs}
    with pytest.raises(ValueError, match=message) as caught:
        simulators.get("ising").run(**arguments)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("burn_in", [-1, 1.5, "10", True])
def test_bad_burn_in_option_is_refused(burn_in):
    with pytest.raises(ValueError, match="burn_in"):
        simulators.get("ising", burn_in=burn_in)


def test_simulate_refuses_fractional_times_given_directly():
    simulator = Ising(burn_in=0)
    with pytest.raises(ValueError, match="whole numbers"):
        simulator.simulate({"temperature": np.array([2.0])}, simulator.make_grid(8),
                           np.array([0.0, 0.5]), [0])


# --------------------------------------------------------------------------- store
def test_cli_sweep_writes_a_file_that_passes_the_checker(tmp_path, capsys):
    path = tmp_path / "ising.h5"
    status = main(["simulate", "ising", "-o", str(path), "-n", "4", "--resolution", "16",
                   "--t-end", "20", "--snapshots", "5", "--sweep", "temperature=1.5:3.5",
                   "--seed", "1", "-q"])
    assert status == 0 and path.exists()
    status = main(["check", str(path)])
    out, _ = capsys.readouterr()
    assert status == 0 and "OK" in out
    with h5py.File(path, "r") as handle:
        spins = handle["t0_fields/spin"][...]
        assert spins.dtype == np.float32 and spins.shape == (4, 5, 16, 16)
        assert set(np.unique(spins).tolist()) == {-1.0, 1.0}
        np.testing.assert_array_equal(handle["dimensions/time"][...], [0, 5, 10, 15, 20])
        assert handle["dimensions/time"].attrs["units"] == "sweep"
        temperatures = handle["scalars/temperature"][...]
        assert np.all((temperatures >= 1.5) & (temperatures <= 3.5))
    status = main(["simulate", "ising", "-o", str(tmp_path / "bad.h5"), "-n", "2",
                   "--resolution", "16", "--t-end", "10", "--snapshots", "4", "-q"])
    _, err = capsys.readouterr()
    assert status == 2 and "whole numbers" in err and not (tmp_path / "bad.h5").exists()
