"""The spectrum scatter of a validation report: the within-condition std of one snapshot's
log shell power, against the Gaussian-field value and broken ensembles."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from scipy.special import polygamma

from simulators.sweep import SweepSpec, run_sweep
from surrogate.cli import main
from surrogate.validation.report import validate_files
from surrogate.validation.report.accumulators import LogPowerScatter
from surrogate.validation.spectra import power_spectrum
from tests._files import modified_copy

GRF = dict(system="gaussian_random_field", resolution=32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two conditions x 24 trajectories, two more simulations of them."""
    directory = tmp_path_factory.mktemp("scatter")
    spec = SweepSpec(n_trajectories=48, design={"spectral_index": [2.0] * 24 + [3.0] * 24,
                                                "amplitude": [0.3] * 48}, **GRF)
    paths = {"ref": run_sweep(spec, directory / "ref.h5", progress=False)}
    for seed in (1, 2):
        paths[f"ref{seed}"] = run_sweep(SweepSpec.like(paths["ref"], seed),
                                        directory / f"ref{seed}.h5", progress=False)
    return paths


def _scatter(report, name="delta"):
    return report["fields"][name]["spectrum"]["scatter"]


def test_gaussian_fields_scatter_by_the_trigamma_of_their_mode_count_whatever_the_spectrum():
    """For a Gaussian random field the power of shell k is a mean of m = n_k / 2 independent
    exponentials, so var(log P) = psi'(m), independent of the spectrum: the pooled value
    over conditions with very different spectra equals it."""
    rng = np.random.default_rng(0)
    n, samples = 32, 400
    m = np.fft.fftfreq(n) * n
    k = np.hypot(m[:, None], m[None, :])
    scatter = LogPowerScatter()
    for slope in (0.0, 2.0, 4.0):                          # white noise to steep spectra
        amplitude = np.where(k > 0, np.maximum(k, 1.0) ** (-slope / 2), 0.0)
        fields = np.fft.ifft2(amplitude * np.fft.fft2(rng.standard_normal((samples, n, n)))).real
        _, power, counts = power_spectrum(fields, 1.0, return_counts=True)
        scatter.add_condition(np.log(power)[:, None, :])   # (S, T = 1, shells)
    assert scatter.dof == 3 * (samples - 1)
    shells = slice(0, n // 2 - 1)                          # shells without self-conjugate modes
    expected = np.sqrt(polygamma(1, counts[shells] / 2))
    measured = np.sqrt(scatter.variance()[0, shells])
    # std of a std estimate from 1,197 dof of a near-Gaussian variable: ~2 %; 4 sigma
    np.testing.assert_allclose(measured, expected, rtol=0.08)
    assert abs(np.median(measured / expected) - 1) < 0.03


@pytest.mark.slow
def test_a_second_ensemble_scores_one_and_the_floor_sits_beside_it(files, tmp_path):
    report = validate_files(files["ref"], files["ref1"], floor=files["ref2"]).report
    for name in report["fields"]:
        scatter = _scatter(report, name)
        assert scatter["dof"] == {"reference": 46, "generated": 46}
        assert 0.85 < scatter["ratio"] < 1.18, (name, scatter["ratio"])
        assert 0.85 < scatter["floor"] < 1.18, (name, scatter["floor"])
        checks = {c["check"]: c for c in report["checks"] if c["field"] == name}
        assert checks["spectrum_scatter_ratio_max"]["value"] == scatter["ratio"]
        assert checks["spectrum_scatter_ratio_max"]["floor"] == scatter["floor"]
        # reported, not gated by default
        assert not checks["spectrum_scatter_ratio_max"]["gated"]
        assert not checks["spectrum_scatter_ratio_min"]["gated"]
    assert main(["validate", str(files["ref"]), str(files["ref1"]), "-o",
                 str(tmp_path / "report"), "-q"]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "spectrum scatter ratio (floor)" in markdown
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(_scatter(saved)["reference_std"]) == len(saved["fields"]["delta"]["spectrum"]["k"])


def test_a_random_amplitude_per_sample_adds_its_log_variance(files, tmp_path):
    """Fields multiplied by exp(s xi), xi ~ N(0, 1) per sample: log P shifts by 2 s xi, so
    the generated variance is var_ref + 4 s^2 in every shell, the mean spectrum barely
    moves (E exp(2 s xi) = exp(2 s^2))."""
    s = 0.25
    rng = np.random.default_rng(7)

    def amplitude(_, values):                       # (B, T, N, N): one factor per sample
        return values * np.exp(s * rng.standard_normal((len(values), 1, 1, 1)))

    broken = modified_copy(files["ref1"], tmp_path / "amplitude.h5", amplitude)
    report = validate_files(files["ref"], broken).report
    scatter = _scatter(report)
    reference_var = np.asarray(scatter["reference_std"]) ** 2
    expected = np.median(np.sqrt(1 + 4 * s**2 / reference_var[:-1]))
    assert expected > 1.5
    assert scatter["ratio"] == pytest.approx(expected, rel=0.15)
    gated = validate_files(files["ref"], broken,
                           thresholds={"spectrum_scatter_ratio_max": 1.25}).report
    assert not gated["passed"] and any("spectrum_scatter_ratio_max" in text
                                       for text in gated["failures"])


def test_samples_pinned_to_the_mean_spectrum_have_almost_no_scatter(files, tmp_path):
    """Each sample's Fourier modes rescaled so that its shell powers equal the ensemble's
    mean: the mean spectrum is right, the scatter ratio near 0."""
    n = 32
    m = np.fft.fftfreq(n) * n
    shell = np.rint(np.hypot(m[:, None], m[None, :])).astype(int)
    with h5py.File(files["ref1"]) as handle:
        fields = handle["t0_fields/delta"][:, 0].astype(np.float64)
        index = handle["scalars/spectral_index"][:]
    modes = np.abs(np.fft.fft2(fields)) ** 2
    target = np.stack([np.bincount(shell.ravel(), modes[index == value].mean(0).ravel())
                       for value in index])                     # each row's condition

    def pin(name, values):                          # (B, 1, N, N): delta only
        if name != "delta":
            return values
        spectrum = np.fft.fft2(values[:, 0].astype(np.float64))
        power = np.stack([np.bincount(shell.ravel(), row.ravel())
                          for row in np.abs(spectrum) ** 2])
        gain = np.sqrt(np.divide(target, power, out=np.ones_like(power), where=power > 0))
        return np.fft.ifft2(spectrum * gain[:, shell]).real[:, None]

    pinned = modified_copy(files["ref1"], tmp_path / "pinned.h5", pin)
    report = validate_files(files["ref"], pinned).report
    assert report["fields"]["delta"]["spectrum"]["rel_error_median"] < 0.1
    assert _scatter(report)["ratio"] < 0.1


def test_one_trajectory_per_condition_leaves_the_scatter_undefined(tmp_path):
    sweep = SweepSpec(n_trajectories=12, ranges={"spectral_index": (2.0, 3.0)}, **GRF)
    path = run_sweep(sweep, tmp_path / "sweep.h5", progress=False)
    other = run_sweep(SweepSpec.like(path, 1), tmp_path / "other.h5", progress=False)
    report = validate_files(path, other).report
    scatter = _scatter(report)
    assert scatter["ratio"] is None and scatter["dof"] == {"reference": 0, "generated": 0}
    assert not any(c["evaluated"] for c in report["checks"]
                   if c["check"].startswith("spectrum_scatter"))
