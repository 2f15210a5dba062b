"""Condition grouping in normalised parameter space; physics features for the Fréchet distance."""

from __future__ import annotations

import numpy as np
import pytest

import simulators
from simulators.base import FieldSpec, Parameter
from surrogate.validation.conditions import group_conditions, normalised_parameters
from surrogate.validation.features import (
    band_edges,
    feature_names,
    frechet_physics_distance,
    physics_features,
)

NU = Parameter("nu", 1e-3, 1e-4, 1e-2, "1", "log-scaled (two decades)")
AMPLITUDE = Parameter("amplitude", 0.5, 0.0, 1.0, "1", "linear")


def test_normalisation_is_log_for_log_scaled_parameters():
    z = normalised_parameters([NU, AMPLITUDE], {"nu": np.array([1e-4, 1e-3, 1e-2]),
                                                "amplitude": np.array([0.0, 0.25, 1.0])})
    np.testing.assert_allclose(z, [[0, 0], [0.5, 0.25], [1, 1]], atol=1e-15)


def test_groups_follow_first_appearance_and_generated_match_the_nearest():
    reference = {"nu": np.array([1e-3, 1e-4, 1e-3, 1e-4]), "amplitude": np.zeros(4)}
    # 1.01e-3 is 0.0011 away from 1e-3 in normalised units; 5e-3 is 0.35 away from 1e-2
    generated = {"nu": np.array([1.01e-3, 1e-4, 5e-3]), "amplitude": np.zeros(3)}
    groups = group_conditions([NU, AMPLITUDE], reference, generated)
    assert groups.n_groups == 2
    np.testing.assert_array_equal(groups.reference, [0, 1, 0, 1])
    np.testing.assert_array_equal(groups.generated, [0, 1, -1])
    assert groups.unmatched == 1
    assert groups.distance[0] == pytest.approx(np.log(1.01) / np.log(100), rel=1e-9)
    np.testing.assert_allclose(groups.values["nu"], [1e-3, 1e-4])
    ref_members, gen_members = groups.members(0)
    np.testing.assert_array_equal(ref_members, [0, 2])
    np.testing.assert_array_equal(gen_members, [0])


def test_matching_radius_is_respected():
    reference = {"nu": np.array([1e-3]), "amplitude": np.array([0.5])}
    generated = {"nu": np.array([1e-3]), "amplitude": np.array([0.53])}
    assert group_conditions([NU, AMPLITUDE], reference, generated).generated[0] == -1
    assert group_conditions([NU, AMPLITUDE], reference, generated,
                            max_distance=0.05).generated[0] == 0
    with pytest.raises(ValueError, match="missing"):
        group_conditions([NU, AMPLITUDE], reference, {"nu": np.array([1e-3])})


def test_band_edges_cover_every_shell_once():
    for n in (16, 32, 64, 128, 256):
        edges = band_edges(n)
        assert edges[0] == 1 and edges[-1] == n // 2 + 1
        assert np.all(np.diff(edges) >= 1)
    assert band_edges(64).size - 1 == 6


def _fields(n=32, samples=6, seed=0):
    simulator = simulators.get("gaussian_random_field")
    grid = simulator.make_grid(n)
    parameters = {"amplitude": np.full(samples, 0.3), "spectral_index": np.full(samples, 2.5)}
    out = simulator.simulate(parameters, grid, np.zeros(1), list(range(seed, seed + samples)))
    return {name: values[:, 0] for name, values in out.items()}, simulator.fields, grid


def test_feature_matrix_matches_its_names_and_a_single_mode_sits_in_its_band():
    fields, specs, grid = _fields()
    levels = {name: (float(v.mean()), float(v.std())) for name, v in fields.items()}
    features = physics_features(fields, specs, grid.box_size, levels)
    names = feature_names(specs, grid.resolution)
    assert features.shape == (6, len(names))
    assert np.all(np.isfinite(features))
    # a single cosine of mode 5: all power in the band holding shell 5
    x, _ = grid.mesh()
    mode = np.cos(5 * 2 * np.pi * x / grid.box_size)[None]
    single = physics_features({"u": mode}, [FieldSpec("u", "1", "u")], grid.box_size,
                              {"u": (0.0, 1.0)})
    bands = single[0, : band_edges(32).size - 1]
    edges = band_edges(32)
    holding = int(np.searchsorted(edges, 5, side="right") - 1)
    assert np.argmax(bands) == holding
    assert np.all(np.delete(bands, holding) < bands[holding] - 20)   # others at round-off
    # mean and std of the cosine: 0 and 1/sqrt 2
    mean_column = feature_names([FieldSpec("u", "1", "u")], 32).index("u:mean")
    assert single[0, mean_column] == pytest.approx(0.0, abs=1e-12)
    assert single[0, mean_column + 1] == pytest.approx(2**-0.5, rel=1e-12)


def test_frechet_physics_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((400, 5)) * [1, 2, 3, 4, 5] + 10
    assert frechet_physics_distance(reference, reference) == pytest.approx(0.0, abs=1e-9)
    shifted = reference + np.array([0, 0, 0, 0, 5])   # about one std of the last feature
    # same covariance: d^2 = |mean shift|^2 in units of the reference std
    expected = (5 / reference[:, 4].std()) ** 2
    assert frechet_physics_distance(shifted, reference) == pytest.approx(expected, rel=1e-6)


def test_round_off_in_a_constrained_mean_does_not_dominate_the_frechet_distance():
    """A zero-mean field's mean spreads at float32 round-off (1e-9) in the reference; a
    generated mean of 1e-7 is as exact physically. Scaled by the raw reference std it
    would count as ~100 std per sample (d^2 ~ 1e4); with the floor of 1e-3 field std it
    contributes ~(1e-7 / 3e-4)^2 ~ 1e-7, and the distance is that of the other features."""
    rng = np.random.default_rng(3)
    names = ["f:mean", "f:std", "f:skewness"]

    def sample(n, mean_scale):
        return np.column_stack([rng.standard_normal(n) * mean_scale,
                                0.3 + 0.01 * rng.standard_normal(n),
                                rng.standard_normal(n)])

    reference, generated = sample(200, 1e-9), sample(200, 1e-7)
    floored = frechet_physics_distance(generated, reference, names)
    others = frechet_physics_distance(generated[:, 1:], reference[:, 1:])
    assert floored == pytest.approx(others, abs=1e-3)
    assert frechet_physics_distance(generated, reference) > 1e3      # without the floor
    # a mean shift of a tenth of the field's std is still seen: 0.03 / 3e-4 = 100 units, d^2 ~ 1e4
    shifted = generated.copy()
    shifted[:, 0] += 0.03
    assert frechet_physics_distance(shifted, reference, names) > 5e3
