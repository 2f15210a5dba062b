"""Tests of the marching-squares Minkowski functionals (surrogate.validation.morphology).

Reference shapes are level sets of smooth fields, so the exact answers are known:
a disk (area pi R^2, perimeter 2 pi R, chi 1), an annulus (chi 0), disjoint disks
(chi = count), complements on the torus (chi = -count), and Gaussian random fields
(Gaussian kinematic formula: Adler 1981; Tomita 1986; Schmalzing & Buchert 1997).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import euler_number, perimeter_crofton

from surrogate.validation.morphology import gaussian_expectations, minkowski_functionals

FAST = settings(max_examples=20, deadline=None)


def _coords(n: int, box: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n) * (box / n)
    return np.meshgrid(x, x, indexing="ij")


def _sq_dist(n: int, box: float, centre: tuple[float, float]) -> np.ndarray:
    """Squared minimum-image (periodic) distance to ``centre``."""
    x, y = _coords(n, box)
    dx = (x - centre[0] + box / 2) % box - box / 2
    dy = (y - centre[1] + box / 2) % box - box / 2
    return dx**2 + dy**2


def _disks_field(n: int, box: float, disks: list[tuple[float, float, float]]) -> np.ndarray:
    """max_i (R_i^2 - r_i^2): smooth near every circle when the disks are well apart."""
    return np.max([r**2 - _sq_dist(n, box, (cx, cy)) for cx, cy, r in disks], axis=0)


def _gaussian_fields(
    rng: np.random.Generator, n_fields: int, n: int, box: float, smooth_px: float
) -> tuple[np.ndarray, float]:
    """Unit-variance periodic Gaussian fields with a Gaussian filter of ``smooth_px`` cells.

    Returns the fields and lambda = <(df/dx)^2> / sigma^2 of the band-limited continuum
    field they sample (exact for the discrete spectrum).
    """
    k = 2 * np.pi * np.fft.fftfreq(n, d=box / n)
    kx, ky = k[:, None], k[None, :]
    g2 = np.exp(-(kx**2 + ky**2) * (smooth_px * box / n) ** 2)
    sigma = math.sqrt(g2.sum() / n**2)
    lam = float((g2 * kx**2).sum() / g2.sum())
    noise = rng.standard_normal((n_fields, n, n))
    fields = np.fft.ifft2(np.fft.fft2(noise) * np.sqrt(g2)).real / sigma
    return fields, lam


def _chi(v: np.ndarray, box: float) -> np.ndarray:
    """Euler characteristic from the density column, checked to be an integer."""
    chi = np.asarray(v)[..., 2] * box**2
    np.testing.assert_allclose(chi, np.rint(chi), atol=1e-9)
    return np.rint(chi)


# --- exact shapes -----------------------------------------------------------------------


def test_disk_functionals_converge_at_second_order():
    box, radius, centre = 2.0, 0.61, (1.013, 0.977)
    area_err, perim_err = [], []
    for n in (32, 64, 128):
        v = minkowski_functionals(radius**2 - _sq_dist(n, box, centre), [0.0], box)[0]
        area_err.append(abs(v[0] - math.pi * radius**2 / box**2))
        perim_err.append(abs(v[1] - 2 * math.pi * radius / box**2))
        assert _chi(v, box) == 1
    # Relative errors (perimeter, area): N = 32: 1.3e-3, 3.5e-3; N = 64: 3.3e-4, 8.6e-4;
    # N = 128: 8.3e-5, 2.2e-4 -- observed order 2.0.
    assert perim_err[-1] / (2 * math.pi * radius / box**2) < 3e-4
    assert area_err[-1] / (math.pi * radius**2 / box**2) < 4e-4
    for errs in (area_err, perim_err):
        orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        assert np.all(orders > 1.8), orders


def test_disk_perimeter_is_not_the_pixel_edge_count():
    # A pixel-edge count gives 4/pi times the true length (27 % too long); ours is < 0.1 %.
    box, radius = 1.0, 0.3
    v = minkowski_functionals(radius**2 - _sq_dist(64, box, (0.5, 0.5)), [0.0], box)[0]
    assert v[1] == pytest.approx(2 * math.pi * radius, rel=1e-3)


def test_annulus_has_zero_euler_characteristic_and_both_circles_as_boundary():
    box, n, centre, r1, r2 = 1.0, 128, (0.43, 0.52), 0.15, 0.32
    rm, half = (r1 + r2) / 2, (r2 - r1) / 2
    field = half**2 - (np.sqrt(_sq_dist(n, box, centre)) - rm) ** 2
    v = minkowski_functionals(field, [0.0], box)[0]
    assert v[0] == pytest.approx(math.pi * (r2**2 - r1**2), rel=1e-3)
    assert v[1] == pytest.approx(2 * math.pi * (r1 + r2), rel=1e-3)
    assert v[2] == 0.0


def test_disjoint_disks_euler_characteristic_counts_them_including_across_the_wrap():
    box, n = 3.0, 128
    # The first disk straddles the periodic corner (0, 0).
    disks = [(0.05, 2.95, 0.4), (1.5, 1.5, 0.5), (0.6, 1.4, 0.2), (2.2, 0.6, 0.3)]
    v = minkowski_functionals(_disks_field(n, box, disks), [0.0], box)[0]
    radii = np.array([d[2] for d in disks])
    assert _chi(v, box) == len(disks)
    assert v[0] == pytest.approx(math.pi * np.sum(radii**2) / box**2, rel=2e-3)
    assert v[1] == pytest.approx(2 * math.pi * np.sum(radii) / box**2, rel=2e-3)


def test_complement_of_disks_on_torus_has_euler_characteristic_minus_count():
    # chi(T^2 minus k disks) = chi(T^2) - k = -k; area and boundary length are shared.
    box, n = 1.0, 96
    for disks in ([(0.5, 0.5, 0.2)], [(0.2, 0.2, 0.1), (0.7, 0.6, 0.15), (0.3, 0.75, 0.1)]):
        field = _disks_field(n, box, disks)
        inside, outside = minkowski_functionals(np.stack([field, -field]), [0.0], box)[:, 0]
        assert _chi(outside, box) == -len(disks)
        assert inside[0] + outside[0] == pytest.approx(1.0, abs=1e-12)
        assert inside[1] == pytest.approx(outside[1], rel=1e-12)


def test_empty_and_full_sets_and_torus():
    field = np.random.default_rng(0).standard_normal((16, 16))
    v = minkowski_functionals(field, [-10.0, 10.0], 2.0)
    np.testing.assert_array_equal(v[0], [1.0, 0.0, 0.0])  # whole torus: chi = 0
    np.testing.assert_array_equal(v[1], [0.0, 0.0, 0.0])


def test_units_scale_with_box_size():
    field = _gaussian_fields(np.random.default_rng(3), 1, 32, 1.0, 2.0)[0][0]
    nu = [-1.0, 0.0, 0.7]
    v1 = minkowski_functionals(field, nu, 1.0)
    v5 = minkowski_functionals(field, nu, 5.0)
    np.testing.assert_allclose(v5, v1 * np.array([1.0, 1 / 5, 1 / 25]), rtol=1e-13)


# --- Gaussian random fields ---------------------------------------------------------------


def test_gaussian_field_excursion_sets_match_gaussian_kinematic_formula():
    """Mean over 24 fields of 128^2 (filter 3 cells) vs the GKF expectations.

    Tolerance per threshold and functional: 5 standard errors of the mean (estimated from
    the 24 realisations) plus a discretisation budget of 2 % of the functional's scale
    (1, sqrt(lambda)/2, lambda/(2 pi)^1.5). Observed: all deviations within 1.6 standard
    errors and within 0.34 % (area), 0.9 % (length), 2.0 % (chi) of the scale.
    """
    box = 1.0
    fields, lam = _gaussian_fields(np.random.default_rng(20240611), 24, 128, box, 3.0)
    nu = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    v = minkowski_functionals(fields, nu, box)
    mean = v.mean(axis=0)
    sem = v.std(axis=0, ddof=1) / math.sqrt(v.shape[0])
    expected = gaussian_expectations(nu, 1.0, lam)
    scale = np.array([1.0, math.sqrt(lam) / 2, lam / (2 * math.pi) ** 1.5])
    tol = 5 * sem + 0.02 * scale
    assert np.all(np.abs(mean - expected) <= tol), (mean - expected) / scale


def test_gaussian_expectations_have_the_textbook_shape():
    lam = 7.0
    e = gaussian_expectations(np.array([-1.0, 0.0, 1.0]), 2.0, lam)
    assert e[1, 0] == 0.5 and e[1, 2] == 0.0
    assert e[1, 1] == pytest.approx(math.sqrt(lam) / 2)
    assert e[0, 2] == pytest.approx(-e[2, 2]) and e[2, 2] > 0


# --- scikit-image cross-checks (non-periodic shapes away from the border) -----------------


@pytest.mark.parametrize("radius", [10.3, 20.7, 35.2])
def test_disk_perimeter_agrees_with_skimage_crofton(radius):
    # Crofton on the binarised image is a coarser estimator (1.6 %, 0.1 %, 0.3 % off ours
    # for these radii in pixels); we require 3 %. Ours is within 0.2 % of 2 pi R.
    n = 128
    field = radius**2 - _sq_dist(n, float(n), (63.4, 64.3))
    v = minkowski_functionals(field, [0.0], float(n))[0]
    length = v[1] * n**2  # pixel units
    crofton = perimeter_crofton(field >= 0, directions=4)
    assert length == pytest.approx(crofton, rel=0.03)
    assert length == pytest.approx(2 * math.pi * radius, rel=2e-3)
    assert _chi(v, float(n)) == euler_number(field >= 0, connectivity=1) == 1


def test_gaussian_blob_perimeter_agrees_with_skimage_crofton():
    # A smooth irregular shape: a positive Gaussian-field level set windowed to the centre.
    n = 128
    field = _gaussian_fields(np.random.default_rng(5), 1, n, float(n), 6.0)[0][0]
    window = 1.0 - _sq_dist(n, float(n), (64.0, 64.0)) / 40.0**2
    field = np.minimum(field + 1.0, 3.0 * window)
    ours = minkowski_functionals(field, [0.5], float(n))[0] * n**2
    image = field >= 0.5
    assert not image[:2].any() and not image[-2:].any()
    assert not image[:, :2].any() and not image[:, -2:].any()
    assert ours[1] == pytest.approx(perimeter_crofton(image, directions=4), rel=0.05)


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.2, 0.8),
    size=st.integers(4, 24),
)
def test_euler_characteristic_matches_skimage_with_saddle_connectivity(seed, density, size):
    """A 0/1 image: every saddle's centre value is 1/2, so nu = 1/4 joins all saddles
    (8-connected foreground, skimage connectivity=2) and nu = 3/4 splits all
    (4-connected foreground, skimage connectivity=1)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size + 4, size + 4))
    image[2:-2, 2:-2] = rng.random((size, size)) < density
    n = image.shape[0]
    chi = _chi(minkowski_functionals(image, [0.25, 0.75], float(n)), float(n))
    assert chi[0] == euler_number(image > 0, connectivity=2)
    assert chi[1] == euler_number(image > 0, connectivity=1)


# --- symmetries and properties ------------------------------------------------------------


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    shift=st.tuples(st.integers(-40, 40), st.integers(-40, 40)),
    quarter_turns=st.integers(0, 3),
    transpose=st.booleans(),
)
def test_invariant_under_periodic_shifts_and_square_symmetries(
    seed, shift, quarter_turns, transpose
):
    rng = np.random.default_rng(seed)
    field = _gaussian_fields(rng, 1, 32, 1.0, 1.5)[0][0]
    nu = np.linspace(-2.0, 2.0, 5) + rng.uniform(-0.1, 0.1)
    moved = np.rot90(np.roll(field, shift, axis=(0, 1)), quarter_turns)
    if transpose:
        moved = moved.T
    v, w = minkowski_functionals(np.stack([field, moved]), nu, 1.0)
    np.testing.assert_allclose(w[:, :2], v[:, :2], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(w[:, 2], v[:, 2])


@FAST
@given(seed=st.integers(0, 2**32 - 1), nu=st.floats(-2.5, 2.5), smooth=st.floats(0.5, 3.0))
def test_threshold_flip_gives_the_complement(seed, nu, smooth):
    # {-f >= -nu} is the complement of {f >= nu} (up to ties, which have probability 0):
    # areas add to 1, boundaries coincide, chi(A) + chi(T^2 minus A) = chi(T^2) = 0.
    field = _gaussian_fields(np.random.default_rng(seed), 1, 24, 1.0, smooth)[0][0]
    v = minkowski_functionals(field, [nu], 1.0)[0]
    w = minkowski_functionals(-field, [-nu], 1.0)[0]
    assert v[0] + w[0] == pytest.approx(1.0, abs=1e-12)
    assert v[1] == pytest.approx(w[1], rel=1e-12, abs=1e-12)
    assert v[2] == -w[2]


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 40), box=st.floats(0.1, 10.0))
def test_functionals_are_bounded_monotone_and_chi_is_integer(seed, n, box):
    rng = np.random.default_rng(seed)
    field = rng.standard_normal((n, n))
    nu = np.sort(rng.uniform(-3.0, 3.0, size=6))
    v = minkowski_functionals(field, nu, box)
    assert v.shape == (6, 3)
    assert np.all((v[:, 0] >= 0) & (v[:, 0] <= 1))
    assert np.all(np.diff(v[:, 0]) <= 1e-15)
    assert np.all(v[:, 1] >= 0)
    _chi(v, box)


def test_batch_axes_match_single_fields():
    fields = _gaussian_fields(np.random.default_rng(7), 6, 16, 1.0, 1.0)[0].reshape(2, 3, 16, 16)
    nu = np.array([-0.5, 0.0, 1.0])
    batched = minkowski_functionals(fields, nu, 1.0)
    assert batched.shape == (2, 3, 3, 3)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(batched[i, j], minkowski_functionals(fields[i, j], nu, 1.0))
    assert minkowski_functionals(np.zeros((0, 8, 8)), nu, 1.0).shape == (0, 3, 3)


def test_integer_fields_are_accepted():
    image = np.zeros((8, 8), dtype=np.int64)
    image[2:5, 3:6] = 1
    v = minkowski_functionals(image, [0.5], 8.0)[0] * 64.0
    # A 3x3 block of grid points: the 3x3 square (half a cell beyond the outer points)
    # minus four corner triangles with legs 1/2.
    assert v[2] == pytest.approx(1.0)
    assert v[0] == pytest.approx(3 * 3 - 4 * 0.125)
    assert v[1] == pytest.approx(4 * 2 + 4 * math.sqrt(0.5))


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "thresholds", "box_size", "match"),
    [
        (np.full((8, 8), np.nan), [0.0], 1.0, "NaN"),
        (np.full((8, 8), np.inf), [0.0], 1.0, "NaN or infinite"),
        (np.zeros((8, 9)), [0.0], 1.0, "square"),
        (np.zeros((3, 3)), [0.0], 1.0, "N >= 4"),
        (np.zeros(16), [0.0], 1.0, "shape"),
        (np.zeros((8, 8)), [[0.0, 1.0]], 1.0, "1-D"),
        (np.zeros((8, 8)), 0.0, 1.0, "1-D"),
        (np.zeros((8, 8)), [np.nan], 1.0, "thresholds"),
        (np.zeros((8, 8)), [0.0], 0.0, "box_size"),
        (np.zeros((8, 8)), [0.0], -1.0, "box_size"),
        (np.zeros((8, 8)), [0.0], np.nan, "box_size"),
        (np.zeros((8, 8), dtype=complex), [0.0], 1.0, "real"),
    ],
)
def test_bad_input_raises_value_error_with_one_line_message(field, thresholds, box_size, match):
    with pytest.raises(ValueError, match=match) as info:
        minkowski_functionals(field, thresholds, box_size)
    assert "\n" not in str(info.value)
