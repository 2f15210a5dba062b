"""Declared symmetries hold on the actual simulators; undeclared ones fail where expected.

A grid map ``g: x -> M x + s`` acts on a scalar ``f'(x) = f(g^-1 x)``, on a vector
``u'(x) = M u(g^-1 x)`` and on a pseudoscalar (vorticity) ``w'(x) = det(M) w(g^-1 x)``
(``simulators.base.SYMMETRIES``). A symmetry of a system maps its random initial state to
an equally likely one and commutes with its dynamics; both are checked at once by
running the simulator on the transformed white noise from which it draws its initial
state: ``simulate(g noise) == g simulate(noise)`` to float64 round-off. White noise has a
law invariant under every permutation of the grid points and under a change of sign, so
``g noise`` is as likely as ``noise``.

The transforms here are written with ``numpy.roll/flip/rot90``, independently of the
gather-based implementation in ``surrogate.data``.
"""

from __future__ import annotations

import numpy as np
import pytest

import simulators
from simulators.base import SYMMETRIES, Simulator

RESOLUTION = 32
#: float64 round-off level of the comparisons (observed ~1e-15 to 1e-13)
ROUND_OFF = 1e-10


# ------------------------------------------------------------ reference transforms
def _negate_x(f):
    """``f'[i, j] = f[-i mod N, j]`` (axes -2, -1 are x, y)."""
    return np.roll(np.flip(f, axis=-2), 1, axis=-2)


def _negate_y(f):
    return np.roll(np.flip(f, axis=-1), 1, axis=-1)


def _rotate_90(f):
    """Counterclockwise: ``f'(x, y) = f(y, -x)``, i.e. ``f'[i, j] = f[j, -i mod N]``."""
    return np.roll(np.rot90(f, 1, axes=(-2, -1)), 1, axis=-2)


#: name -> (spatial map of a scalar array (..., N, N), matrix M acting on vectors)
ELEMENTS = {
    "shift": (lambda f: np.roll(f, (3, 5), axis=(-2, -1)), np.eye(2)),
    "shift_x": (lambda f: np.roll(f, 3, axis=-2), np.eye(2)),
    "shift_y": (lambda f: np.roll(f, 3, axis=-1), np.eye(2)),
    "shift_y_one_cell": (lambda f: np.roll(f, 1, axis=-1), np.eye(2)),
    "flip_x": (_negate_x, np.diag([-1.0, 1.0])),
    "flip_y": (_negate_y, np.diag([1.0, -1.0])),
    "rotate_90": (_rotate_90, np.array([[0.0, -1.0], [1.0, 0.0]])),
    "rotate_180": (lambda f: _negate_x(_negate_y(f)), -np.eye(2)),
}


def transform(name: str, fields: dict[str, np.ndarray], pseudoscalars=()) -> dict:
    """Apply element ``name`` to ``{field: (..., N, N) or (..., N, N, 2)}``."""
    spatial, matrix = ELEMENTS[name]
    out = {}
    for key, value in fields.items():
        if value.shape[-1] == 2 != value.shape[-2]:     # vector (..., N, N, 2), N >= 8
            moved = np.stack([spatial(value[..., c]) for c in range(2)], axis=-1)
            out[key] = moved @ matrix.T              # u' = M u
        else:
            sign = np.linalg.det(matrix) if key in pseudoscalars else 1.0
            out[key] = sign * spatial(value)
    return out


def test_reference_transforms_follow_the_documented_conventions():
    n = 8
    bump = np.zeros((n, n))
    bump[2, 0] = 1.0                              # a point at (x, y) = (2, 0) cells
    assert _rotate_90(bump)[0, 2] == 1.0          # goes to (0, 2): counterclockwise
    assert _negate_x(bump)[n - 2, 0] == 1.0
    velocity = np.zeros((n, n, 2))
    velocity[2, 0] = (1.0, 0.0)                   # pointing along +x at (2, 0)
    rotated = transform("rotate_90", {"velocity": velocity})["velocity"]
    np.testing.assert_array_equal(rotated[0, 2], (0.0, 1.0))   # now along +y at (0, 2)
    for name in ("flip_x", "flip_y", "rotate_90", "rotate_180"):
        assert name in SYMMETRIES


class _FixedNoise:
    """Stands in for ``numpy.random.default_rng(seed)``: hands out a given noise field."""

    def __init__(self, noise: np.ndarray) -> None:
        self.noise = noise

    def standard_normal(self, shape):
        assert tuple(shape) == self.noise.shape
        return self.noise.copy()


def _simulate_from_noise(monkeypatch, simulator: Simulator, parameters, noise, times,
                         **kwargs):
    grid = simulator.make_grid(RESOLUTION)
    batch = {name: np.array([value]) for name, value in
             simulator.resolve_parameters(parameters).items()}
    with monkeypatch.context() as patch:
        patch.setattr(np.random, "default_rng", lambda seed: _FixedNoise(noise))
        result = simulator.simulate(batch, grid, times, [0], **kwargs)
    return {name: array[0] for name, array in result.items()}


def _pseudoscalars(simulator: Simulator) -> set[str]:
    return {inv.field for inv in simulator.invariants if inv.kind == "curl_of"}


def _relative_mismatch(name, simulator, parameters, times, monkeypatch) -> float:
    """``max |simulate(g noise) - g simulate(noise)| / max |simulate(noise)|`` over fields."""
    noise = np.random.Generator(np.random.PCG64(7)).standard_normal((RESOLUTION,) * 2)
    pseudo = _pseudoscalars(simulator)
    # the noise generates the first declared field; it transforms like that field
    noise_name = simulator.fields[0].name
    moved_noise = transform(name, {noise_name: noise}, pseudo)[noise_name]
    original = _simulate_from_noise(monkeypatch, simulator, parameters, noise, times)
    moved = _simulate_from_noise(monkeypatch, simulator, parameters, moved_noise, times)
    expected = transform(name, original, pseudo)
    return max(float(np.max(np.abs(moved[key] - expected[key])) / np.max(np.abs(expected[key])))
               for key in expected)


CASES = {
    "diffusion": ({"diffusivity": 0.05}, np.array([0.0, 0.5, 1.0])),
    "gaussian_random_field": ({"amplitude": 0.3, "spectral_index": 2.0}, np.zeros(1)),
    "navier_stokes2d": ({"nu": 2e-3, "forcing_amplitude": 1.0, "forcing_wavenumber": 2},
                        np.array([0.0, 0.5, 1.0])),
}


@pytest.mark.parametrize("system", sorted(CASES))
def test_declared_symmetries_hold_to_round_off(system, monkeypatch):
    simulator = simulators.get(system)
    parameters, times = CASES[system]
    assert simulator.symmetries, f"{system} declares no symmetry"
    for name in simulator.symmetries:
        mismatch = _relative_mismatch(name, simulator, parameters, times, monkeypatch)
        assert mismatch < ROUND_OFF, (system, name, mismatch)


@pytest.mark.parametrize("name", ["rotate_90", "flip_x", "flip_y", "shift_y_one_cell"])
def test_forced_navier_stokes_breaks_undeclared_symmetries(name, monkeypatch):
    simulator = simulators.get("navier_stokes2d")
    assert name not in simulator.symmetries
    parameters, times = CASES["navier_stokes2d"]
    assert _relative_mismatch(name, simulator, parameters, times, monkeypatch) > 0.05


def test_unforced_navier_stokes_has_the_whole_lattice_group(monkeypatch):
    # the failures above come from the forcing, not from the transforms or the solver
    simulator = simulators.get("navier_stokes2d")
    parameters = {**CASES["navier_stokes2d"][0], "forcing_amplitude": 0.0}
    for name in ("rotate_90", "flip_x", "flip_y", "shift"):
        mismatch = _relative_mismatch(name, simulator, parameters, np.array([0.0, 1.0]),
                                      monkeypatch)
        assert mismatch < ROUND_OFF, (name, mismatch)


def test_navier_stokes_initial_state_path_commutes_with_the_point_reflection():
    simulator = simulators.get("navier_stokes2d")
    parameters = {"nu": 2e-3, "forcing_amplitude": 0.5, "forcing_wavenumber": 3}
    start = simulator.run(parameters, resolution=RESOLUTION, t_end=0.1, n_snapshots=1,
                          seed=4)["vorticity"].values[0].astype(np.float64)
    kwargs = {"resolution": RESOLUTION, "t_end": 1.0, "n_snapshots": 2}
    original = simulator.run(parameters, initial_state={"vorticity": start}, **kwargs)
    moved_start = transform("rotate_180", {"vorticity": start}, {"vorticity"})["vorticity"]
    moved = simulator.run(parameters, initial_state={"vorticity": moved_start}, **kwargs)
    expected = transform("rotate_180", {k: original[k].values.astype(np.float64)
                                        for k in ("vorticity", "velocity")}, {"vorticity"})
    for key, value in expected.items():
        # run() returns float32: agreement at float32 round-off
        np.testing.assert_allclose(moved[key].values, value, rtol=0,
                                   atol=1e-5 * np.abs(value).max())


def test_unknown_symmetry_names_are_refused():
    with pytest.raises(TypeError, match="rotate_45"):
        type("Bad", (Simulator,), {"symmetries": ("rotate_45",)})


def test_ising_global_spin_flip_commutes_with_swendsen_wang_exactly():
    """``negate``: Swendsen–Wang bonds depend on s_i s_j only and clusters flip with
    probability 1/2 from the same random numbers, so running from -s gives exactly -(the
    run from s); the hot start draws each spin +-1 with probability 1/2, a law invariant
    under s -> -s. Together: the distribution at every time is flip-invariant."""
    simulator = simulators.get("ising")
    assert "negate" in simulator.symmetries
    grid = simulator.make_grid(16)
    start = np.where(np.random.default_rng(4).random((16, 16)) < 0.7, 1.0, -1.0)
    times = np.array([0.0, 1.0, 5.0])
    parameters = {"temperature": np.array([2.1])}
    plus = simulator.simulate(parameters, grid, times, [3], initial_state={"spin": start})
    minus = simulator.simulate(parameters, grid, times, [3], initial_state={"spin": -start})
    np.testing.assert_array_equal(minus["spin"], -plus["spin"])
    assert np.abs(plus["spin"]).min() == 1.0
