"""The torch backend of the spectral simulators against the numpy reference path.

On any machine: torch on ``"cpu"`` equals numpy to round-off for the four spectral
systems (``simulate``: relative error <= 1e-10 per field; sweep files: <= 1e-5 in their
float32 datasets), results do not depend on the chunking, Taylor–Green decays at the
viscous rate, and devices that are not there (or systems without a torch backend) are
refused with one line. Tests marked ``cuda`` compare ``"cuda"`` with numpy at 64^2
(``pytest -m cuda`` on a machine with a GPU; elsewhere they are skipped).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import simulators
import simulators.backend as backend
from simulators.backend import resolve_device
from simulators.store import FieldStore
from simulators.sweep import SweepSpec, run_sweep
from surrogate.cli import main

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")

#: system -> (resolution, t_end, snapshots, parameters of a batch of three)
CASES = {
    "diffusion": (16, 1.0, 3, {"diffusivity": [1e-3, 1e-2, 1e-1]}),
    "gaussian_random_field": (32, None, 1, {"amplitude": [0.01, 0.1, 1.0],
                                            "spectral_index": [1.5, 2.5, 4.0]}),
    "navier_stokes2d": (32, 1.0, 3, {"nu": [1e-4, 1e-3, 1e-2],
                                     "forcing_amplitude": [0.0, 0.5, 1.0],
                                     "forcing_wavenumber": [4, 2, 5]}),
    "gray_scott": (32, 100.0, 3, {"feed": [0.037, 0.03, 0.06], "kill": [0.06, 0.055, 0.062],
                                  "diffusivity_u": [2e-5, 3e-5, 2e-5],
                                  "diffusivity_v": [1e-5, 1e-5, 1.5e-5]}),
}


def _simulate(name: str, device: str | None, resolution: int | None = None
              ) -> dict[str, np.ndarray]:
    n, t_end, snapshots, values = CASES[name]
    simulator = simulators.get(name)
    grid = simulator.make_grid(resolution or n)
    times = simulator.snapshot_times(t_end, snapshots)
    parameters = {key: np.asarray(value, dtype=np.float64) for key, value in values.items()}
    return simulator.simulate(parameters, grid, times, [0, 1, 2], device=device)


def _relative_errors(result: dict[str, np.ndarray], reference: dict[str, np.ndarray]
                     ) -> dict[str, float]:
    assert result.keys() == reference.keys()
    errors = {}
    for name, expected in reference.items():
        actual = result[name]
        assert actual.shape == expected.shape and actual.dtype == np.float64
        errors[name] = float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))
    return errors


# ---------------------------------------------------------------- same results
@pytest.mark.parametrize("name", list(CASES))
def test_torch_on_the_cpu_equals_numpy_to_round_off(name):
    errors = _relative_errors(_simulate(name, "cpu"), _simulate(name, None))
    assert max(errors.values()) <= 1e-10, errors


@pytest.mark.parametrize("name", list(CASES))
def test_a_sweep_on_the_torch_backend_writes_the_numpy_file(name, tmp_path):
    _, t_end, snapshots, values = CASES[name]
    swept = next(iter(values))
    parameter = simulators.get(name).parameter(swept)
    spec = SweepSpec(name, n_trajectories=3, resolution=16, t_end=t_end, n_snapshots=snapshots,
                     ranges={swept: (parameter.low, parameter.high)}, seed=2)
    files = {device: run_sweep(spec, tmp_path / f"{device}.h5", progress=False, device=device)
             for device in (None, "cpu")}
    with FieldStore(files[None]) as reference, FieldStore(files["cpu"]) as result:
        assert result.field_names == reference.field_names
        for field in reference.field_names:
            expected, actual = reference.read(field), result.read(field)
            assert actual.dtype == expected.dtype == np.float32
            assert actual.shape == expected.shape
            error = np.linalg.norm(actual.astype(np.float64) - expected) / np.linalg.norm(expected)
            assert error <= 1e-5, (field, error)
        for key, expected in reference.parameters().items():
            np.testing.assert_array_equal(result.parameters()[key], expected)


@pytest.mark.parametrize("name", ["navier_stokes2d", "gray_scott", "diffusion",
                                  "gaussian_random_field"])
def test_torch_results_do_not_depend_on_the_chunking(name, monkeypatch):
    whole = _simulate(name, "cpu", resolution=16)
    monkeypatch.setattr(backend, "chunk_size", lambda *args: 1)
    one_by_one = _simulate(name, "cpu", resolution=16)
    # to round-off, not bit for bit: torch's CPU kernels may round differently for
    # arrays of different sizes (observed: 1e-14 relative for Gray-Scott)
    for field, values in whole.items():
        scale = np.abs(values).max()
        np.testing.assert_allclose(one_by_one[field], values, rtol=0, atol=1e-12 * scale)


def test_taylor_green_decays_at_the_viscous_rate_on_the_torch_path():
    simulator = simulators.get("navier_stokes2d")
    grid = simulator.make_grid(16)
    nu, times = 1e-2, np.linspace(0.0, 5.0, 6)
    fields = simulator.simulate({"nu": np.array([nu]), "forcing_amplitude": np.zeros(1),
                                 "forcing_wavenumber": np.array([4.0])}, grid, times, [0],
                                init="taylor_green", device="cpu")
    k0 = 2 * np.pi / grid.box_size
    x, y = grid.mesh()
    decay = np.exp(-2 * nu * k0**2 * times)[:, None, None]
    expected = 2 * k0 * np.sin(k0 * x) * np.sin(k0 * y) * decay
    error = np.abs(fields["vorticity"][0] - expected).max() / np.abs(expected).max()
    assert error <= 1e-12, error


def test_run_takes_a_device_and_returns_the_same_dataset():
    simulator = simulators.get("diffusion")
    numpy_run = simulator.run(resolution=16, t_end=0.5, n_snapshots=2, seed=3)
    torch_run = simulator.run(resolution=16, t_end=0.5, n_snapshots=2, seed=3, device="cpu")
    np.testing.assert_allclose(torch_run["u"].values, numpy_run["u"].values, rtol=0, atol=1e-6)
    assert torch_run.attrs == numpy_run.attrs


# ----------------------------------------------------------------- refusals
def test_only_the_spectral_systems_declare_a_torch_backend():
    declared = {name: simulators.get(name).torch_backend for name in simulators.available()}
    assert declared == {"diffusion": True, "gaussian_random_field": True,
                        "navier_stokes2d": True, "gray_scott": True, "ising": False}


def test_ising_refuses_a_device_with_one_line():
    ising = simulators.get("ising")
    grid = ising.make_grid(8)
    for call in (lambda: ising.simulate({"temperature": np.array([2.0])}, grid,
                                        np.array([0.0, 1.0]), [0], device="cpu"),
                 lambda: ising.run(resolution=8, t_end=1, n_snapshots=2, device="cpu")):
        with pytest.raises(ValueError, match="numpy only") as error:
            call()
        assert "\n" not in str(error.value) and "default_rng" in str(error.value)


def test_unknown_devices_are_refused():
    for device in ("gpu0", "cuda:x", "mps", ""):
        with pytest.raises(ValueError) as error:
            resolve_device(device)
        assert "\n" not in str(error.value) and repr(device) in str(error.value)
    assert resolve_device("cpu") == torch.device("cpu")


@no_cuda
def test_cuda_without_a_gpu_is_refused():
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="no CUDA GPU is available") as error:
            resolve_device(device)
        assert "\n" not in str(error.value) and repr(device) in str(error.value)


def test_a_sweep_refuses_a_device_with_workers_or_for_ising(tmp_path):
    spec = SweepSpec("diffusion", n_trajectories=2, resolution=16)
    with pytest.raises(ValueError, match="workers > 1"):
        run_sweep(spec, tmp_path / "a.h5", workers=2, device="cpu", progress=False)
    with pytest.raises(ValueError, match="numpy only"):
        run_sweep(SweepSpec("ising", n_trajectories=2, resolution=8, t_end=1, n_snapshots=2),
                  tmp_path / "b.h5", device="cpu", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device", [
    pytest.param("cuda", marks=no_cuda), "cuda:99", "tpu"])
def test_cli_refuses_an_absent_device_with_one_line_and_no_file(device, tmp_path, capsys):
    path = tmp_path / "out.h5"
    status = main(["simulate", "diffusion", "-o", str(path), "-n", "2", "--resolution", "16",
                   "-q", "--device", device])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("surrogate: error: ") and device in err
    if device.startswith("cuda"):
        assert "CUDA" in err
    if device == "cuda:99" and torch.cuda.is_available():
        assert "99" in err and f"{torch.cuda.device_count()} CUDA GPU" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_simulate_on_the_torch_cpu_backend(tmp_path, capsys):
    path = tmp_path / "ns.h5"
    status = main(["simulate", "navier_stokes2d", "-o", str(path), "-n", "2",
                   "--resolution", "16", "--t-end", "0.2", "--snapshots", "2", "-q",
                   "--device", "cpu"])
    assert status == 0 and path.exists()
    assert main(["check", str(path)]) == 0
    capsys.readouterr()


def test_the_numpy_path_does_not_import_torch():
    code = ("import sys, simulators; from simulators.sweep import run_sweep; "
            "simulators.get('navier_stokes2d').run(resolution=16, t_end=0.1, n_snapshots=2); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------- on a GPU
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", ["navier_stokes2d", "gray_scott"])
def test_cuda_equals_numpy_at_64(name):
    errors = _relative_errors(_simulate(name, "cuda", resolution=64),
                              _simulate(name, None, resolution=64))
    print(name, errors)
    assert max(errors.values()) <= 1e-10, errors


@pytest.mark.cuda
@needs_cuda
def test_a_cuda_index_beyond_the_gpus_is_refused():
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"index {count} \\({count} CUDA GPU") as error:
        resolve_device(f"cuda:{count}")
    assert "\n" not in str(error.value)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
