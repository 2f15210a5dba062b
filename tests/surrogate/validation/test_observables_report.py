"""System observables in reports: Ising magnetisation modes and ensemble observables,
Gray–Scott pattern wavelength."""

from __future__ import annotations

import numpy as np
import pytest

import simulators
from simulators.ising import energy_per_spin
from simulators.sweep import SweepSpec, run_sweep
from surrogate.validation.observables import (
    condition_observables,
    system_modes,
    system_observables,
)
from surrogate.validation.report import validate_files, write_report
from surrogate.validation.report.summaries import (
    one_point_values,
    one_point_w1,
    sign_balance,
    sign_symmetric,
)
from surrogate.validation.statistics import wasserstein1_over_std
from tests._files import modified_copy


def _failed(report: dict) -> set[str]:
    return {c["check"] for c in report["checks"] if c["gated"] and not c["passed"]}


@pytest.fixture(scope="module")
def ising_files(tmp_path_factory):
    """Ordered-phase Ising sweeps (T in [1.6, 2.0], 16^2): two independent seeds."""
    root = tmp_path_factory.mktemp("ising")
    files = []
    for seed in (0, 1):
        spec = SweepSpec("ising", 32, resolution=16, t_end=3.0, n_snapshots=4, seed=seed,
                         ranges={"temperature": (1.6, 2.0)})
        files.append(run_sweep(spec, root / f"ising_{seed}.h5", progress=False))
    return root, files[0], files[1]


def test_ising_observables_by_hand():
    """m, |m| and e of a checkerboard and of a uniform lattice, raw and thresholded."""
    checker = np.indices((8, 8)).sum(axis=0) % 2 * 2.0 - 1.0         # e = +2, m = 0
    uniform = -np.ones((8, 8))                                          # e = -2, m = -1
    soft = 0.5 * uniform                                                # raw e = -0.5
    series = system_observables("ising", {"spin": np.stack([checker, uniform, soft])}, 8.0)
    np.testing.assert_allclose(series["energy_per_spin"], [2.0, -2.0, -0.5])
    np.testing.assert_allclose(series["energy_per_spin(sign)"], [2.0, -2.0, -2.0])
    np.testing.assert_allclose(series["magnetisation"], [0.0, -1.0, -0.5])
    np.testing.assert_allclose(series["magnetisation(sign)"], [0.0, -1.0, -1.0])
    assert list(system_modes("ising", series)) == ["", "-", "-"]
    # chi = N^2 (<m^2> - <|m|>^2) / T and c = N^2 var(e) / T^2 on the thresholded spins
    ensemble = condition_observables("ising", series, {"temperature": 2.0}, 8)
    m = np.array([0.0, 1.0, 1.0])
    e = np.array([2.0, -2.0, -2.0])
    assert ensemble["susceptibility"] == pytest.approx(64 * m.var() / 2.0)
    assert ensemble["specific_heat"] == pytest.approx(64 * e.var() / 4.0)


def test_gray_scott_wavelength_of_a_single_mode_pattern():
    """v = 0.2 + 0.1 cos(k x) with k = 5 (2 pi / L) has wavelength L / 5; uniform is NaN."""
    box, n = 2.5, 64
    x = np.arange(n) * box / n
    v = 0.2 + 0.1 * np.cos(2 * np.pi * 5 * x / box)[:, None] * np.ones((1, n))
    series = system_observables("gray_scott", {"u": 1 - v, "v": np.stack([v, np.full((n, n),
                                                                                     0.3)])},
                                box)
    assert series["pattern_wavelength"][0] == pytest.approx(box / 5, rel=1e-9)
    assert np.isnan(series["pattern_wavelength"][1])
    np.testing.assert_allclose(series["mean(v)"], [0.2, 0.3])


@pytest.mark.slow
def test_independent_ising_runs_cover_both_signs_and_pass(ising_files, tmp_path):
    _root, reference, independent = ising_files
    result = validate_files(reference, independent)
    report = result.report
    coverage = report["mode_coverage"]
    assert coverage["modes"] == ["+", "-"]
    for side in ("reference", "generated"):       # both signs present below Tc
        assert min(coverage["fraction"][side].values()) > 0.2
    assert coverage["coverage"] > 0.5
    assert "mode_coverage_min" not in _failed(report)
    assert report["passed"], report["failures"]
    for label in ("magnetisation", "energy_per_spin(sign)", "|magnetisation|(sign)"):
        assert label in report["observables"]
        assert report["observables"][label]["w1_over_std"] < 0.5
    condition = report["per_condition"][0]["observables"]
    assert {"susceptibility", "specific_heat"} <= set(condition)
    page = write_report(result, tmp_path / "report")
    assert (tmp_path / "report" / "observables.png").exists()
    assert (tmp_path / "report" / "condition_observables.png").exists()
    assert "Ordered states" in page.read_text()


def test_mode_coverage_of_a_sign_symmetric_system_expects_both_signs_equally(monkeypatch):
    """Ising declares the sign symmetry: against a reference that drew 30 "+" / 20 "-"
    ordered snapshots, an exactly balanced generator (25 / 25) covers both states fully,
    where the counted fractions would cap it at 25 / 30; a reference holding one sign
    still expects the other; without the declaration the counted fractions are used."""
    from surrogate.validation.report import summaries

    def observables(plus, minus, disordered):
        m = np.concatenate([np.full(plus, 0.9), np.full(minus, -0.9),
                            np.full(disordered, 0.1)])
        return {"magnetisation(sign)": [m]}

    balanced = {"reference": observables(30, 20, 50), "generated": observables(25, 25, 50)}
    coverage = summaries.mode_coverage("ising", balanced)
    assert coverage["reference_symmetrised"]
    assert coverage["coverage"] == pytest.approx(1.0)
    assert coverage["fraction"]["reference"] == {"+": 0.3, "-": 0.2}   # as counted
    one_sided = {"reference": observables(50, 0, 50), "generated": observables(50, 0, 50)}
    assert summaries.mode_coverage("ising", one_sided)["coverage"] == 0.0
    # a reference barely ordered (6 "+" / 3 "-" of 100): a generator of one sign, or of
    # none, still fails, although each symmetrised fraction (4.5 %) is below 5 %
    sparse = observables(6, 3, 91)
    for generated in (observables(0, 9, 91), observables(0, 0, 100)):
        sided = summaries.mode_coverage("ising", {"reference": sparse, "generated": generated})
        assert sided["coverage"] == 0.0
    monkeypatch.setattr(summaries, "sign_symmetric", lambda system: False)
    plain = summaries.mode_coverage("ising", balanced)
    assert not plain["reference_symmetrised"]
    assert plain["coverage"] == pytest.approx(25 / 30)
    assert summaries.mode_coverage("ising", one_sided)["coverage"] == pytest.approx(1.0)


def test_a_generator_that_produces_one_sign_only_fails(ising_files, tmp_path):
    """Flip every negatively magnetised snapshot: each snapshot stays a valid equilibrium
    configuration (the Hamiltonian is even), spectra, PDFs of |s| and energies are
    unchanged, only the sign balance is gone."""
    _root, reference, independent = ising_files

    def collapse(spins):
        m = spins.mean(axis=(-2, -1), keepdims=True)
        return np.where(m < 0, -spins, spins)

    collapsed = modified_copy(independent, tmp_path / "collapsed.h5",
                              lambda _, spins: collapse(spins))
    report = validate_files(reference, collapsed).report
    assert report["mode_coverage"]["fraction"]["generated"]["-"] == 0.0
    assert report["mode_coverage"]["coverage"] == 0.0
    assert "mode_coverage_min" in _failed(report)
    assert "sign_balance_z_max" in _failed(report)
    assert report["fields"]["spin"]["pdf"]["sign_balance"]["z"] > 4
    assert not report["passed"]
    # the energy does not see it
    assert report["observables"]["energy_per_spin"]["w1_over_std"] < 0.5


def test_the_one_point_pdf_of_a_sign_symmetric_system_does_not_see_the_drawn_signs(
        ising_files, tmp_path):
    """Ising declares the global sign symmetry. Negating a random half of the second
    ensemble's snapshots (another equally valid draw of the signs) moves its net
    magnetisation, which is all that an unsymmetrised W1 of +-1 spins measures; the
    report compares the symmetrised PDFs (W1 exactly 0 for +-1 spins either way) and
    keeps the sign balance to the mode coverage; the moments keep the values as drawn."""
    _root, reference, independent = ising_files
    rng = np.random.default_rng(3)

    def redraw(spins):
        signs = np.where(rng.random(spins.shape[:2]) < 0.5, -1.0, 1.0)
        return signs[..., None, None] * spins

    redrawn = modified_copy(independent, tmp_path / "redrawn.h5", lambda _, s: redraw(s))
    report = validate_files(reference, redrawn).report
    pdf = report["fields"]["spin"]["pdf"]
    assert pdf["sign_symmetrised"] is True
    assert pdf["w1_over_std"] == 0.0
    assert all(c["fields"]["spin"]["w1_over_std"] == 0.0 for c in report["per_condition"])
    np.testing.assert_allclose(pdf["reference"], pdf["reference"][::-1])   # symmetric bins
    means = report["fields"]["spin"]["moments"]
    assert means["reference"]["mean"] != means["generated"]["mean"]     # moments as drawn
    balance = pdf["sign_balance"]
    assert balance["generated"] == pytest.approx(means["generated"]["mean"], abs=1e-12)
    assert abs(balance["z"]) < 4
    assert report["mode_coverage"]["coverage"] > 0.5 and report["passed"], report["failures"]
    # an affine copy (0.5 s + 0.3: values 0.8 and -0.2) is drawn on edges symmetric about 0
    shifted = validate_files(reference, modified_copy(
        independent, tmp_path / "shifted.h5", lambda _, s: 0.5 * s + 0.3)).report
    edges = np.array(shifted["fields"]["spin"]["pdf"]["edges"])
    np.testing.assert_allclose(edges, -edges[::-1], atol=1e-12)
    assert edges[-1] == pytest.approx(1.0)


def test_symmetrised_laws_keep_what_the_sign_leaves():
    """Continuous values: a sample and its negation read W1 = 0 symmetrised (and twice
    the mean's distance plain), a scaled copy still reads the scale (x 1.3 of a standard
    Gaussian: 0.3 E|x| = 0.3 sqrt(2 / pi)); W1 between the symmetrised laws, computed
    directly from the pooled +-x samples, equals the |x| form (no thinning here)."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(200_000) + 0.2
    assert one_point_w1(-values, values, False) == pytest.approx(0.4, rel=0.02)
    assert one_point_w1(-values, values, True) == pytest.approx(0, abs=1e-12)
    gaussian = rng.standard_normal(200_000)
    assert one_point_w1(1.3 * gaussian, gaussian, True) == pytest.approx(
        0.3 * np.sqrt(2 / np.pi), rel=0.03)
    skewed, other = rng.gamma(2.0, size=5_000) - 1.0, rng.standard_normal(4_000)
    both = np.concatenate([skewed, -skewed])
    direct = wasserstein1_over_std(np.concatenate([other, -other]), both,
                                   max_values=10**6)
    assert one_point_w1(other, skewed, True) == pytest.approx(direct, rel=1e-9)
    np.testing.assert_array_equal(one_point_values(values, True), np.abs(values))
    assert one_point_values(values, False) is values
    assert sign_symmetric("ising") and not sign_symmetric("gaussian_random_field")
    assert not sign_symmetric("not_a_system")


@pytest.mark.slow
def test_sign_balance_is_a_standard_normal_under_fair_signs():
    """Fair random signs on fixed magnitudes (per trajectory and per snapshot): z has mean
    0 and std 1 within sampling error; a generator that always draws + reads |z| >> 4."""
    rng = np.random.default_rng(7)
    magnitudes = rng.uniform(0.0, 1.0, (60, 3))           # 60 trajectories x 3 snapshots

    def ensemble(per_snapshot: bool) -> list[np.ndarray]:
        shape = magnitudes.shape if per_snapshot else (magnitudes.shape[0], 1)
        return list(np.where(rng.random(shape) < 0.5, -1.0, 1.0) * magnitudes)

    for per_snapshot in (False, True):
        z = np.array([sign_balance(ensemble(per_snapshot), ensemble(per_snapshot))["z"]
                      for _ in range(2_000)])
        assert abs(z.mean()) < 0.08 and abs(z.std() - 1.0) < 0.06
    one_sign = sign_balance(ensemble(True), list(magnitudes))
    assert one_sign["generated"] == pytest.approx(magnitudes.mean())
    assert one_sign["z"] > 4                       # the default threshold
    assert np.isnan(sign_balance([], list(magnitudes))["z"])


@pytest.mark.slow
def test_state_switching_between_snapshots_is_reported(ising_files, tmp_path):
    """Under Swendsen-Wang an ordered trajectory changes sign between snapshots about half
    the time, in both independent runs; a copy whose every snapshot takes its
    trajectory's first sign (valid snapshots, balanced signs over trajectories, the
    fault of a generator with one sign per latent) reads 0, and the page says so."""
    _root, reference, independent = ising_files
    result = validate_files(reference, independent)
    switching = result.report["mode_coverage"]["switching"]
    assert switching["reference_pairs"] > 40 and switching["generated_pairs"] > 40
    assert 0.3 < switching["reference"] < 0.7 and 0.3 < switching["generated"] < 0.7

    def keep_first_sign(spins):          # (trajectories, times, N, N)
        m = spins.mean(axis=(-2, -1), keepdims=True)
        first = np.where(m[:, :1] >= 0, 1.0, -1.0)
        return np.where(m >= 0, 1.0, -1.0) * first * spins

    kept = modified_copy(independent, tmp_path / "kept.h5",
                         lambda _, spins: keep_first_sign(spins))
    result = validate_files(reference, kept)
    coverage = result.report["mode_coverage"]
    assert coverage["switching"]["generated"] == 0.0
    assert coverage["coverage"] > 0.5                 # per snapshot nothing is wrong
    page = write_report(result, tmp_path / "report").read_text()
    assert "State changes between consecutive snapshots" in page


def test_soft_spins_differ_raw_but_not_thresholded(ising_files, tmp_path):
    """A generator emitting 0.6 s (right signs, wrong magnitude) shows in the raw energy
    (scaled by 0.36) but not in the thresholded one."""
    _root, reference, independent = ising_files
    soft = modified_copy(independent, tmp_path / "soft.h5", lambda _, spins: 0.6 * spins)
    report = validate_files(reference, soft).report
    raw = report["observables"]["energy_per_spin"]
    thresholded = report["observables"]["energy_per_spin(sign)"]
    assert raw["generated"]["mean"] == pytest.approx(0.36 * raw["reference"]["mean"], rel=0.2)
    assert thresholded["w1_over_std"] < 0.5 < raw["w1_over_std"]


def test_energy_helper_matches_a_loop_over_bonds():
    rng = np.random.default_rng(0)
    spins = rng.choice([-1.0, 1.0], size=(5, 5))
    total = sum(spins[i, j] * (spins[(i + 1) % 5, j] + spins[i, (j + 1) % 5])
                for i in range(5) for j in range(5))
    assert energy_per_spin(spins) == pytest.approx(-total / 25)
    assert simulators.get("ising").symmetries
