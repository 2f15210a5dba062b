"""The report must pass independent simulator runs and fail each broken copy on its metric."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.ndimage

import simulators
from simulators.store import FieldStore, FieldStoreWriter, Provenance, StoreSchema
from simulators.sweep import SweepSpec, run_sweep
from surrogate.cli import main
from surrogate.validation.report import (
    DEFAULT_THRESHOLDS,
    RANGE_THIRDS,
    load_thresholds,
    validate_files,
    write_report,
)
from surrogate.validation.spectra import field_power_spectrum
from tests._files import modified_copy


# ------------------------------------------------------------------ data
def _sweep(path: Path, system: str, n: int, resolution: int, seed: int, **kwargs) -> Path:
    spec = SweepSpec(system=system, n_trajectories=n, resolution=resolution, seed=seed,
                     **kwargs)
    return run_sweep(spec, path, progress=False)


def _resimulated_copy(source: Path, target: Path, seed_offset: int) -> Path:
    """The same parameters and times as ``source``, new initial-condition seeds."""
    with FieldStore(source) as store:
        simulator = simulators.get(store.system)
        parameters = store.parameters()
        seeds = store.seeds + seed_offset
        fields = simulator.simulate(parameters, store.schema.grid, store.times,
                                    [int(s) for s in seeds])
    return modified_copy(source, target, lambda name, values: fields[name])


@pytest.fixture(scope="module")
def grf(tmp_path_factory):
    """Gaussian random fields, one condition, two independent seeds (64^2, 48 samples)."""
    root = tmp_path_factory.mktemp("grf")
    reference = _sweep(root / "reference.h5", "gaussian_random_field", 48, 64, seed=0,
                       fixed={"spectral_index": 3.0, "amplitude": 0.2})
    independent = _sweep(root / "independent.h5", "gaussian_random_field", 48, 64, seed=1,
                         fixed={"spectral_index": 3.0, "amplitude": 0.2})
    return root, reference, independent


@pytest.fixture(scope="module")
def navier_stokes(tmp_path_factory):
    """Forced Navier-Stokes, one condition, two independent seeds (32^2, 8 x 11 snapshots)."""
    root = tmp_path_factory.mktemp("ns")
    fixed = {"nu": 2e-3, "forcing_amplitude": 0.1}
    reference = _sweep(root / "reference.h5", "navier_stokes2d", 8, 32, seed=0, t_end=0.5,
                       n_snapshots=11, fixed=fixed)
    independent = _sweep(root / "independent.h5", "navier_stokes2d", 8, 32, seed=1, t_end=0.5,
                         n_snapshots=11, fixed=fixed)
    return root, reference, independent


def _failed(report: dict) -> set[tuple[str, str | None]]:
    return {(c["check"], c["field"]) for c in report["checks"] if c["gated"] and not c["passed"]}


# ------------------------------------------------------------------ independent runs pass
@pytest.mark.slow
def test_two_independent_grf_runs_pass(grf):
    _, reference, independent = grf
    report = validate_files(reference, independent).report
    assert report["passed"], report["failures"]
    delta = report["fields"]["delta"]
    assert delta["spectrum"]["rel_error_median"] < DEFAULT_THRESHOLDS["spectrum_rel_error_median"]
    assert delta["pdf"]["w1_over_std"] < DEFAULT_THRESHOLDS["pdf_w1_over_std"]
    assert report["counts"]["matched_conditions"] == 1


def test_two_independent_navier_stokes_runs_pass(navier_stokes):
    _, reference, independent = navier_stokes
    report = validate_files(reference, independent).report
    assert report["passed"], report["failures"]
    conservation = report["conservation"]
    assert conservation["divergence_free(velocity)"]["generated"] < 1e-6
    assert conservation["energy_budget(velocity)"]["passed"]
    assert set(report["observables"]) == {"energy", "enstrophy"}


# ------------------------------------------------------------------ broken copies fail
def test_white_noise_with_the_same_mean_and_variance_fails_on_the_spectrum(grf):
    root, reference, _ = grf
    rng = np.random.default_rng(5)

    def white(name, values):
        noise = rng.standard_normal(values.shape)
        noise = (noise - noise.mean()) / noise.std()
        return values.mean() + values.std() * noise
    broken = modified_copy(reference, root / "white.h5", white)
    report = validate_files(reference, broken).report
    failed = _failed(report)
    assert ("spectrum_rel_error_median", "delta") in failed
    assert ("pdf_w1_over_std", "delta") not in failed      # its one-point PDF is right


def test_two_pixel_blur_fails_on_the_high_k_spectrum(grf):
    root, reference, _ = grf

    def blur(name, values):
        return scipy.ndimage.gaussian_filter(values, sigma=(0, 0, 2, 2), mode="wrap")
    broken = modified_copy(reference, root / "blur.h5", blur)
    report = validate_files(reference, broken).report
    spectrum = report["fields"]["delta"]["spectrum"]
    assert ("spectrum_rel_error_median", "delta") in _failed(report)
    assert spectrum["bands"]["high"]["median"] > 0.9            # high-k power is gone
    assert spectrum["bands"]["low"]["median"] < spectrum["bands"]["high"]["median"]
    assert report["conservation"]["zero_mean(delta)"]["passed"]   # blur keeps the mean


def test_mean_shift_fails_on_conservation(grf):
    root, reference, _ = grf
    broken = modified_copy(reference, root / "shift.h5",
                            lambda name, v: v + 0.2 * v.std() if name == "delta" else v)
    report = validate_files(reference, broken).report
    failed = _failed(report)
    assert ("conservation zero_mean(delta)", None) in failed
    assert ("spectrum_rel_error_median", "delta") not in failed   # k = 0 is not in a shell


def test_scaling_by_1_3_fails_on_pdf_and_spectrum_amplitude(grf):
    root, reference, _ = grf
    broken = modified_copy(reference, root / "scaled.h5", lambda name, v: 1.3 * v)
    report = validate_files(reference, broken).report
    failed = _failed(report)
    assert {("pdf_w1_over_std", "delta"), ("spectrum_rel_error_median", "delta")} <= failed
    assert report["fields"]["delta"]["spectrum"]["rel_error_median"] == pytest.approx(0.69,
                                                                                      abs=1e-3)
    # W1 between N(0, s) and N(0, 1.3 s) is 0.3 s E|Z| = 0.3 sqrt(2 / pi) s
    assert report["fields"]["delta"]["pdf"]["w1_over_std"] == pytest.approx(
        0.3 * math.sqrt(2 / math.pi), rel=0.1)


def test_repeated_single_sample_fails_on_spread(navier_stokes):
    root, reference, _ = navier_stokes
    broken = modified_copy(reference, root / "collapsed.h5",
                            lambda name, v: np.broadcast_to(v[:1], v.shape))
    report = validate_files(reference, broken).report
    assert ("spread_ratio_min", "vorticity") in _failed(report)
    assert report["fields"]["vorticity"]["spread_ratio"] == 0.0


def test_one_trajectory_at_random_shifts_passes_the_spread_but_not_the_aligned_spread(
        navier_stokes):
    """Every generated trajectory is the reference's first, rolled along x (the flow's
    declared shift) by a different whole-cell shift: the plain spread counts the shifts
    as spread, the aligned one sees one pattern; two simulations read about 1 in both."""
    root, reference, independent = navier_stokes
    shifts = np.random.default_rng(0).permutation(32)

    def shifted(name, values):
        return np.stack([np.roll(values[0], int(shifts[b]), axis=1)
                         for b in range(values.shape[0])])

    broken = modified_copy(reference, root / "shifted.h5", shifted)
    report = validate_files(reference, broken).report["fields"]
    honest = validate_files(reference, independent).report["fields"]
    for name in ("vorticity", "velocity"):
        assert report[name]["spread_ratio"] > 0.5, name
        assert report[name]["spread_aligned_ratio"] < 1e-6, name
        assert honest[name]["spread_aligned_ratio"] == pytest.approx(1.0, abs=0.2), name


@pytest.mark.slow
def test_snapshots_scrambled_across_trajectories_fail_only_in_time(navier_stokes):
    """Each snapshot a true one at its time, but consecutive ones from other trajectories:
    every per-snapshot statistic is unchanged; the change in time and the energy
    budget are not."""
    root, reference, independent = navier_stokes
    scrambled = modified_copy(reference, root / "scrambled.h5", lambda name, v: np.stack(
        [v[(np.arange(v.shape[0]) + t) % v.shape[0], t] for t in range(v.shape[1])], axis=1))
    report = validate_files(reference, scrambled).report
    assert _failed(report) == {("temporal_change_ratio_max", "vorticity"),
                               ("temporal_change_ratio_max", "velocity"),
                               ("conservation energy_budget(velocity)", None)}
    assert report["fields"]["vorticity"]["spectrum"]["rel_error_median"] < 1e-12
    assert report["fields"]["vorticity"]["temporal_change_ratio"] > 5
    # a second simulation of the same condition changes as much in time as the first
    honest = validate_files(reference, independent).report["fields"]
    for name in ("vorticity", "velocity"):
        assert honest[name]["temporal_change_ratio"] == pytest.approx(1.0, abs=0.15)
    with FieldStore(reference) as store:
        vorticity = store.read("vorticity").astype(np.float64)
    direct = np.mean(np.abs(np.diff(vorticity, axis=1)))
    assert honest["vorticity"]["temporal_change"]["reference"] == pytest.approx(direct, rel=1e-12)
    # a trajectory frozen at its last snapshot does not change at all
    frozen = modified_copy(reference, root / "frozen.h5",
                            lambda name, v: np.broadcast_to(v[:, -1:], v.shape))
    report = validate_files(reference, frozen).report
    assert ("temporal_change_ratio_min", "vorticity") in _failed(report)
    assert report["fields"]["vorticity"]["temporal_change_ratio"] == 0.0


def test_gradient_added_to_velocity_fails_on_divergence(navier_stokes):
    root, reference, _ = navier_stokes
    with FieldStore(reference) as store:
        grid = store.schema.grid
    x, y = grid.mesh()
    k0 = 2 * np.pi / grid.box_size
    # u += grad(phi), phi = cos(2 k0 x) sin(3 k0 y) / k0: curl-free, divergence -13 k0 phi
    gradient = np.stack([-2 * np.sin(2 * k0 * x) * np.sin(3 * k0 * y),
                         3 * np.cos(2 * k0 * x) * np.cos(3 * k0 * y)], axis=-1)
    broken = modified_copy(reference, root / "compressible.h5",
                            lambda name, v: v + 0.3 * gradient if name == "velocity" else v)
    report = validate_files(reference, broken).report
    failed = _failed(report)
    assert ("conservation divergence_free(velocity)", None) in failed
    assert report["conservation"]["divergence_free(velocity)"]["generated"] > 0.05


def test_mean_shift_of_vorticity_fails_on_zero_mean(navier_stokes):
    root, reference, _ = navier_stokes
    broken = modified_copy(reference, root / "vortshift.h5",
                            lambda name, v: v + 0.1 * v.std() if name == "vorticity" else v)
    failed = _failed(validate_files(reference, broken).report)
    assert ("conservation zero_mean(vorticity)", None) in failed


def test_initial_energy_off_by_a_few_percent_fails_even_without_it_in_the_generated_schema(
        navier_stokes):
    # a surrogate without the energy head: each trajectory's flow scaled by 1 +- 0.05 (its
    # structure exact), written in a file whose own schema does not declare the invariant
    root, reference, _ = navier_stokes
    factors = np.array([0.95, 1.05] * 4)[:, None, None, None]

    def scale(name, values):
        return values * (factors if values.ndim == 4 else factors[..., None])

    broken = modified_copy(reference, root / "energy.h5", scale)
    with h5py.File(broken, "r+") as handle:
        description = json.loads(handle.attrs["system_description"])
        description["invariants"] = [i for i in description["invariants"]
                                     if i["kind"] != "initial_energy"]
        handle.attrs["system_description"] = json.dumps(description)
    report = validate_files(reference, broken).report
    entry = report["conservation"]["initial_energy(velocity)"]
    assert entry["reference"] < 1e-6                        # float32 storage of E = 0.5
    # |1.05^2 - 1| = 0.1025 (an independent number: the scaling applied above)
    assert entry["generated"] == pytest.approx(0.1025, rel=1e-5)
    assert ("conservation initial_energy(velocity)", None) in _failed(report)


# ------------------------------------------------------------------ per condition
@pytest.fixture(scope="module")
def grf_sweep(tmp_path_factory):
    """Six conditions of spectral index, four samples each, and a re-seeded copy."""
    root = tmp_path_factory.mktemp("grfsweep")
    base = _sweep(root / "base.h5", "gaussian_random_field", 6, 64, seed=3,
                  ranges={"spectral_index": (1.6, 3.9)}, fixed={"amplitude": 0.2})
    with FieldStore(base) as store:
        index = store.parameters()["spectral_index"]
    repeated = np.repeat(index, 4)
    simulator = simulators.get("gaussian_random_field")
    grid = simulator.make_grid(64)
    times = simulator.snapshot_times(simulator.default_t_end, 1)

    def write(path, seeds):
        schema = StoreSchema.from_simulator(simulator, grid, times)
        parameters = {"spectral_index": repeated, "amplitude": np.full(24, 0.2)}
        fields = simulator.simulate(parameters, grid, times, seeds)
        with FieldStoreWriter(path, schema, 24, Provenance("test", seed=0)) as writer:
            for b in range(24):
                writer.write(b, {k: float(v[b]) for k, v in parameters.items()},
                             {k: v[b] for k, v in fields.items()}, seeds[b])
        return path
    reference = write(root / "reference.h5", list(range(24)))
    independent = write(root / "independent.h5", list(range(100, 124)))
    return root, reference, independent


def test_per_condition_groups_and_independent_samples_pass(grf_sweep):
    _, reference, independent = grf_sweep
    report = validate_files(reference, independent).report
    assert report["counts"]["matched_conditions"] == 6
    assert [c["n_reference"] for c in report["per_condition"]] == [4] * 6
    assert report["fields"]["delta"]["spread_basis"] == "per_condition"
    assert report["passed"], report["failures"]


def test_ignoring_the_condition_fails_per_condition_but_not_pooled(grf_sweep):
    """Fields of other conditions: the pooled statistics match, per condition they do not."""
    root, reference, _ = grf_sweep
    permutation = np.roll(np.arange(24), 4)          # every sample moves to the next condition
    broken = modified_copy(reference, root / "shuffled.h5",
                            lambda name, v: v[permutation])
    report = validate_files(reference, broken).report
    failed = _failed(report)
    assert ("per_condition_spectrum_rel_error_median", "delta") in failed
    assert ("spectrum_rel_error_median", "delta") not in failed
    assert report["fields"]["delta"]["spectrum"]["rel_error_median"] < 1e-12


def test_range_thirds_find_a_generator_wrong_at_one_end_only(grf_sweep):
    """Independent samples everywhere but the high-end third of the spectral index, whose
    fields are scaled by 1.3 (power x 1.69): that third's pooled spectrum error is 0.69,
    the other two sit at their floor, and the pooled error over all conditions dilutes it."""
    root, reference, independent = grf_sweep
    with FieldStore(independent) as store:
        index = store.parameters()["spectral_index"]
    high_end = index >= index.min() + 2 * (index.max() - index.min()) / 3
    factor = np.where(high_end, 1.3, 1.0)[:, None, None, None]
    broken = modified_copy(independent, root / "high_end_scaled.h5",
                           lambda name, v: v * factor)
    report = validate_files(reference, broken).report
    entry = report["range"]["spectral_index"]
    thirds = entry["thirds"]
    assert [thirds[label]["conditions"] for label in RANGE_THIRDS] == [2, 2, 2]
    assert thirds["high end"]["fields"]["delta"]["spectrum_rel_error_median"] == \
        pytest.approx(0.69, abs=0.08)
    for label in ("low end", "middle"):
        numbers = thirds[label]["fields"]["delta"]
        assert numbers["spectrum_rel_error_median"] < 0.15
        assert numbers["floor"] is not None and numbers["floor"] < 0.2
    assert entry["end_over_middle"]["delta"] > 4
    assert report["fields"]["delta"]["spectrum"]["rel_error_median"] < \
        thirds["high end"]["fields"]["delta"]["spectrum_rel_error_median"] / 2
    # the same file unbroken: every third near its floor
    clean = validate_files(reference, independent).report["range"]["spectral_index"]
    for third in clean["thirds"].values():
        assert third["fields"]["delta"]["spectrum_rel_error_median"] < 0.15


def test_unequal_samples_per_condition_are_weighted_like_the_reference(grf_sweep):
    """A second simulator ensemble with 1 and 7 trajectories at alternate conditions
    (the reference has 4 each): pooling its snapshots would weight the conditions 1 : 7
    and read a pooled spectrum error of ~0.4; weighted by the reference's counts it reads
    as an ensemble should, and so does every third of the range."""
    root, reference, _ = grf_sweep
    with FieldStore(reference) as store:
        index = np.unique(store.parameters()["spectral_index"])
    counts = np.tile([1, 7], index.size // 2)
    values = np.repeat(index, counts)
    simulator = simulators.get("gaussian_random_field")
    grid, times = simulator.make_grid(64), simulator.snapshot_times(simulator.default_t_end, 1)
    parameters = {"spectral_index": values, "amplitude": np.full(values.size, 0.2)}
    seeds = list(range(300, 300 + values.size))
    fields = simulator.simulate(parameters, grid, times, seeds)
    path = root / "unequal.h5"
    schema = StoreSchema.from_simulator(simulator, grid, times)
    with FieldStoreWriter(path, schema, values.size, Provenance("test", seed=0)) as writer:
        for b in range(values.size):
            writer.write(b, {k: float(v[b]) for k, v in parameters.items()},
                         {k: v[b] for k, v in fields.items()}, seeds[b])
    report = validate_files(reference, path).report
    assert sorted((c["parameters"]["spectral_index"], c["n_generated"])
                  for c in report["per_condition"]) == pytest.approx(
        list(zip(index, counts, strict=True)))
    for name in ("delta", "density"):
        assert report["fields"][name]["spectrum"]["rel_error_median"] < 0.12
        for third in report["range"]["spectral_index"]["thirds"].values():
            assert third["fields"][name]["spectrum_rel_error_median"] < 0.2


def test_range_thirds_pool_the_spectra_of_their_conditions(grf_sweep):
    """Each third's spectrum ratio equals the ratio of the mean spectra of its snapshots,
    computed directly from the files."""
    _, reference, independent = grf_sweep
    report = validate_files(reference, independent, reference_halves=False).report
    entry = report["range"]["spectral_index"]
    with FieldStore(reference) as ref_store, FieldStore(independent) as gen_store:
        index = ref_store.parameters()["spectral_index"]
        box = ref_store.box_size
        means = {}
        for side, store in (("reference", ref_store), ("generated", gen_store)):
            values = store.read("delta")                       # (B, T, N, N)
            k, power = field_power_spectrum(values.reshape(-1, *values.shape[2:]), box)
            means[side] = power.reshape(values.shape[0], values.shape[1], -1)
    low, high = index.min(), index.max()
    for number, label in enumerate(RANGE_THIRDS):
        members = np.minimum(np.floor(3 * (index - low) / (high - low)), 2) == number
        ref = means["reference"][members].mean(axis=(0, 1))
        gen = means["generated"][members].mean(axis=(0, 1))
        ratio = np.array(entry["thirds"][label]["fields"]["delta"]["ratio"], dtype=float)
        resolved = np.isfinite(ratio)
        assert resolved.sum() >= k.size - 2
        np.testing.assert_allclose(ratio[resolved], (gen / ref)[resolved], rtol=1e-10)
    assert "floor" not in entry["thirds"]["middle"]["fields"]["delta"]


@pytest.fixture(scope="module")
def sobol_sweep(tmp_path_factory):
    """A Sobol sweep (one trajectory per condition, 64 conditions at 32^2) and, at every
    fourth of its conditions, four new independent simulator samples."""
    root = tmp_path_factory.mktemp("sobol")
    reference = _sweep(root / "reference.h5", "gaussian_random_field", 64, 32, seed=5,
                       ranges={"spectral_index": (2.0, 3.0)}, fixed={"amplitude": 0.2})
    with FieldStore(reference) as store:
        index = store.parameters()["spectral_index"][::4]
    simulator = simulators.get("gaussian_random_field")
    grid, times = simulator.make_grid(32), simulator.snapshot_times(None, 1)
    repeated = np.repeat(index, 4)
    parameters = {"spectral_index": repeated, "amplitude": np.full(repeated.size, 0.2)}
    fields = simulator.simulate(parameters, grid, times, list(range(500, 500 + repeated.size)))
    schema = StoreSchema.from_simulator(simulator, grid, times)
    samples = root / "samples.h5"
    with FieldStoreWriter(samples, schema, repeated.size, Provenance("test", seed=0)) as writer:
        for b in range(repeated.size):
            writer.write(b, {k: float(v[b]) for k, v in parameters.items()},
                         {k: v[b] for k, v in fields.items()}, 500 + b)
    return root, reference, samples


def test_one_reference_per_condition_judges_spread_against_the_nearest_neighbour(sobol_sweep):
    _, reference, samples = sobol_sweep
    report = validate_files(reference, samples).report
    delta = report["fields"]["delta"]
    assert delta["spread_basis"] == "nearest_reference_neighbour"
    # independent samples: the c4-corrected spreads agree (uncorrected mean-of-std of four
    # samples over that of two would read 0.921 / 0.798 = 1.15)
    assert 0.85 < delta["spread_ratio"] < 1.12, delta["spread_ratio"]
    assert delta["spread_neighbour_distance_median"] < 0.05
    assert report["passed"], report["failures"]


def test_a_generator_that_ignores_its_latent_fails_the_neighbour_spread(sobol_sweep):
    """Different fields at different conditions, the same field for every sample at one
    condition: the spread across conditions looks healthy, the within-condition one is 0."""
    root, reference, samples = sobol_sweep
    collapsed = modified_copy(samples, root / "collapsed.h5",
                               lambda name, v: np.repeat(v[::4], 4, axis=0))
    report = validate_files(reference, collapsed).report
    assert report["fields"]["delta"]["spread_ratio"] == 0.0
    assert ("spread_ratio_min", "delta") in _failed(report)
    assert ("spectrum_rel_error_median", "delta") not in _failed(report)


# ------------------------------------------------------------------ streaming equals in-memory
def test_streamed_statistics_equal_direct_computation(navier_stokes):
    from surrogate.validation import moments, power_spectrum, spread_ratio
    _, reference, independent = navier_stokes
    report = validate_files(reference, independent).report
    with FieldStore(reference) as ref, FieldStore(independent) as gen:
        omega_ref, omega_gen = ref.read("vorticity"), gen.read("vorticity")
        box = ref.box_size
    entry = report["fields"]["vorticity"]
    direct = moments(omega_gen)
    for key in ("mean", "std", "skewness", "kurtosis"):
        assert entry["moments"]["generated"][key] == pytest.approx(direct[key], rel=1e-9,
                                                                   abs=1e-12)
    _, power = power_spectrum(omega_ref.reshape(-1, 32, 32), box)
    np.testing.assert_allclose(entry["spectrum"]["reference"], power.mean(axis=0), rtol=1e-12)
    assert entry["spread_ratio"] == pytest.approx(spread_ratio(omega_gen, omega_ref), rel=1e-9)


# ------------------------------------------------------------------ report files and CLI
def test_cli_writes_report_files_with_stable_keys(navier_stokes, tmp_path, capsys):
    _, reference, independent = navier_stokes
    status = main(["validate", str(reference), str(independent), "-o", str(tmp_path / "r"),
                   "-q"])
    assert status == 0
    assert "PASSED" in capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    for key in ("reference", "generated", "fields", "conservation", "frechet_physics_distance",
                "passed", "thresholds"):
        assert key in report
    spectrum = report["fields"]["velocity"]["spectrum"]
    assert {"k", "reference", "generated", "rel_error_median", "rel_error_max"} <= set(spectrum)
    assert {"w1_over_std", "ks_pvalue"} <= set(report["fields"]["velocity"]["pdf"])
    assert "spread_ratio" in report["fields"]["velocity"]
    assert {"reference", "generated"} <= set(report["fields"]["velocity"]["temporal_change"])
    for key, entry in report["conservation"].items():
        assert {"reference", "generated"} <= set(entry), key
    markdown = (tmp_path / "r" / "report.md").read_text()
    ratio = report["fields"]["vorticity"]["temporal_change_ratio"]
    assert f"vorticity {report['fields']['vorticity']['temporal_change']['reference']:.4g}" \
        in markdown and f"ratio {ratio:.3g}" in markdown
    for figure in ("spectra.png", "pdfs.png", "samples.png", "conservation.png",
                   "two_point.png"):
        assert f"]({figure})" in markdown
        assert (tmp_path / "r" / figure).stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]   # no staging left
    # --no-figures: the same report.json, a page without images, no PNG
    assert main(["validate", str(reference), str(independent), "-o", str(tmp_path / "bare"),
                 "-q", "--no-figures"]) == 0
    assert "PNG" not in capsys.readouterr().out.splitlines()[-1]
    assert json.loads((tmp_path / "bare" / "report.json").read_text()) == report
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["report.json",
                                                                     "report.md"]
    bare = (tmp_path / "bare" / "report.md").read_text()
    assert "![" not in bare and ".png" not in bare
    assert bare.splitlines()[0] == markdown.splitlines()[0]


@pytest.mark.slow
def test_strict_exit_status_and_thresholds_file(grf, tmp_path):
    root, reference, _ = grf
    broken = root / "scaled.h5"
    if not broken.exists():
        modified_copy(reference, broken, lambda name, v: 1.3 * v)
    assert main(["validate", str(reference), str(broken), "-o", str(tmp_path / "a"), "-q",
                 "--no-figures"]) == 0
    assert main(["validate", str(reference), str(broken), "-o", str(tmp_path / "b"), "-q",
                 "--no-figures", "--strict"]) == 1
    loose = tmp_path / "loose.toml"
    loose.write_text("pdf_w1_over_std = 2.0\nspectrum_rel_error_median = 1.0\n"
                     "per_condition_spectrum_rel_error_median = 1.0\n")
    assert main(["validate", str(reference), str(broken), "-o", str(tmp_path / "c"), "-q",
                 "--no-figures", "--strict", "--thresholds", str(loose)]) == 0
    saved = json.loads((tmp_path / "c" / "report.json").read_text())
    assert saved["thresholds"]["pdf_w1_over_std"] == 2.0
    assert saved["thresholds"]["spread_ratio_min"] == DEFAULT_THRESHOLDS["spread_ratio_min"]


def test_thresholds_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("spectrum_error = 0.3\n")
    with pytest.raises(ValueError, match="unknown threshold 'spectrum_error'"):
        load_thresholds(bad)
    bad.write_text("spread_ratio_min = 'low'\n")
    with pytest.raises(ValueError, match="must be a number"):
        load_thresholds(bad)
    bad.write_text("not toml [\n")
    with pytest.raises(ValueError, match="not a valid TOML"):
        load_thresholds(bad)
    assert load_thresholds_inf(tmp_path)["frechet_physics_distance_max"] == math.inf


def load_thresholds_inf(tmp_path):
    path = tmp_path / "inf.toml"
    path.write_text("frechet_physics_distance_max = inf\n")
    return load_thresholds(path)


# ------------------------------------------------------------------ bad input
def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("surrogate: error: ")
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_different_systems_are_refused_without_a_report(grf, navier_stokes, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["validate", str(grf[1]), str(navier_stokes[1]), "-o", str(out), "-q"]) == 2
    assert "system 'navier_stokes2d' differs" in _error_line(capsys)
    assert not out.exists()


def test_different_resolutions_are_refused(grf, tmp_path, capsys):
    other = _sweep(tmp_path / "grf32.h5", "gaussian_random_field", 4, 32, seed=0)
    assert main(["validate", str(grf[1]), str(other), "-o", str(tmp_path / "r"), "-q"]) == 2
    assert "resolution 32 differs" in _error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_nan_is_reported_with_trajectory_and_time_index(navier_stokes, tmp_path, capsys):
    _, reference, _ = navier_stokes

    def poison(name, values):
        if name == "vorticity":
            values = values.copy()
            values[5, 3, 7, 7] = np.nan
        return values
    broken = modified_copy(reference, tmp_path / "nan.h5", poison)
    assert main(["validate", str(reference), str(broken), "-o", str(tmp_path / "r"), "-q"]) == 2
    line = _error_line(capsys)
    assert "'vorticity' has NaN/Inf values at trajectory 5, time index 3" in line
    assert not (tmp_path / "r").exists()


def test_empty_and_truncated_files_are_refused(navier_stokes, tmp_path, capsys):
    _, reference, _ = navier_stokes
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    assert main(["validate", str(reference), str(empty), "-o", str(tmp_path / "r"), "-q"]) == 2
    assert "empty.h5" in _error_line(capsys)
    missing_group = tmp_path / "nogroup.h5"
    shutil.copyfile(reference, missing_group)
    with h5py.File(missing_group, "r+") as handle:
        del handle["t1_fields"]
    assert main(["validate", str(missing_group), str(reference), "-o", str(tmp_path / "r"),
                 "-q"]) == 2
    assert "t1_fields" in _error_line(capsys)
    assert not (tmp_path / "r").exists()
    unmarked = tmp_path / "unmarked.h5"
    shutil.copyfile(reference, unmarked)
    with h5py.File(unmarked, "r+") as handle:
        handle.attrs["complete"] = False
    assert main(["validate", str(reference), str(unmarked), "-o", str(tmp_path / "r"),
                 "-q"]) == 2
    assert "unmarked.h5 (generated file): file is not marked complete" in _error_line(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_existing_report_is_not_touched_by_a_failed_run(navier_stokes, grf, tmp_path):
    _, reference, independent = navier_stokes
    out = tmp_path / "r"
    main(["validate", str(reference), str(independent), "-o", str(out), "-q"])
    before = (out / "report.json").read_bytes()
    assert main(["validate", str(reference), str(grf[1]), "-o", str(out), "-q"]) == 2
    assert (out / "report.json").read_bytes() == before


def test_write_report_refuses_a_file_as_directory(navier_stokes, tmp_path):
    _, reference, independent = navier_stokes
    result = validate_files(reference, independent)
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        write_report(result, target)
