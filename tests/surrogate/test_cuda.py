"""The CUDA paths of training and generation.

Two kinds of test live here:

* tests marked ``cuda`` run on a CUDA GPU only (``pytest -m cuda``; ``python -m
  benchmarks.gpu`` runs them first): bf16 autocast and TF32 training steps, checkpoints
  moving between CUDA and the CPU, CUDA generation against CPU generation, the
  ``torch.compile`` path, NCCL data parallelism on >= 2 GPUs;
* the rest check on any machine what a CPU can check of those paths: the autocast dtype
  choice, a checkpoint written on a GPU read on a CPU-only machine, and one-line refusals
  of CUDA devices that are not there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from simulators.store import FieldStore
from surrogate.checkpoint import load_checkpoint, save_checkpoint
from surrogate.cli import main
from surrogate.generate import generate, load_surrogate
from surrogate.train import TrainConfig, Trainer, autocast_dtype, resolve_device, train

SAMPLE = "data/sample_navier_stokes2d.h5"
TINY = dict(steps=6, batch_size=8, width=8, noise_dim=16, log_every=1, validate_every=3,
            sample_every=6, checkpoint_every=3, r1_interval=2, validation_samples=16)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ----------------------------------------------------------------- on any machine
def test_autocast_is_bf16_on_cuda_only_and_only_with_amp(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert autocast_dtype(cpu, True) is None
    assert autocast_dtype(cpu, False) is None
    assert autocast_dtype(gpu, False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert autocast_dtype(gpu, True) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    with pytest.warns(UserWarning, match="no bf16 support"):
        assert autocast_dtype(gpu, True) is None


@contextlib.contextmanager
def _saved_as_if_on_cuda():
    """``torch.save`` tags every CPU storage ``cuda:0``: the file a GPU run writes.

    A location tagger registered ahead of torch's own is the mechanism ``torch.save``
    uses to record each storage's device; the file then loads on a CPU-only machine
    only through a ``map_location``.
    """
    registry = torch.serialization._package_registry
    before = list(registry)
    torch.serialization.register_package(
        -1, lambda storage: "cuda:0" if storage.device.type == "cpu" else None,
        lambda storage, location: None)
    try:
        yield
    finally:
        registry[:] = before


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only machine")
def test_a_checkpoint_written_on_a_gpu_generates_on_a_cpu_only_machine(tmp_path):
    run = tmp_path / "run"
    train(SAMPLE, run, TrainConfig(**TINY), device="cpu", progress=False)
    for name in ("best.pt", "last.pt"):
        path = run / "checkpoints" / name
        state = torch.load(path, map_location="cpu", weights_only=True)
        with _saved_as_if_on_cuda():
            save_checkpoint(path, state)
    # the file really is a CUDA one: without a map_location torch refuses it here
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert load_checkpoint(run / "checkpoints" / "best.pt")["generator_ema"]["to_raw.weight"] \
        .device.type == "cpu"
    for device in ("auto", "cpu"):
        path = generate(run, tmp_path / f"{device}.h5", parameters={"nu": 3e-3}, n=2, seed=1,
                        device=device, progress=False)
        assert path.exists()
    # and training resumes from it on the CPU
    summary = train(SAMPLE, run, resume=True, device="cpu", progress=False, steps=8)
    assert summary["steps"] == 8


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cpu") / "run"
    train(SAMPLE, run, TrainConfig(**TINY), device="cpu", progress=False)
    return run


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only machine")
@pytest.mark.parametrize("command", ["train", "generate", "quickstart"])
def test_cuda_without_a_gpu_is_a_one_line_error_and_writes_nothing(tmp_path, capsys, cpu_run,
                                                                     command):
    output = tmp_path / "out"
    argv = {"train": ["train", SAMPLE, "-o", str(output), "--device", "cuda", "-q"],
            "generate": ["generate", str(cpu_run), "-o", str(output),
                         "--device", "cuda", "-q"],
            "quickstart": ["quickstart", "-o", str(output), "--device", "cuda", "-q"]}[command]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "no CUDA GPU" in error, error
    assert not output.exists()


def test_a_device_index_beyond_the_gpus_present_is_refused():
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match="cuda:7"):
        resolve_device("cuda:7" if count < 8 else "cuda:99")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


# ------------------------------------------------------------------- on a CUDA GPU
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("amp", [True, False])
def test_training_steps_on_cuda_under_bf16_autocast_and_tf32(tmp_path, amp):
    config = TrainConfig(**{**TINY, "amp": amp, "tf32": True})
    trainer = Trainer(SAMPLE, tmp_path / "run", config, device="cuda", progress=False)
    dtypes = []
    hook = trainer.generator.to_raw.register_forward_hook(
        lambda module, inputs, output: dtypes.append(output.dtype))
    before = trainer.generator.to_raw.weight.detach().clone()
    losses = [trainer.train_step() for _ in range(4)]
    hook.remove()
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert dtypes and set(dtypes) == {torch.bfloat16 if amp else torch.float32}
    assert all(np.isfinite(value) for step in losses for value in step.values())
    assert trainer.generator.to_raw.weight.dtype == torch.float32      # master weights
    assert not torch.equal(before, trainer.generator.to_raw.weight.detach())


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    run = tmp_path_factory.mktemp("cuda") / "run"
    train(SAMPLE, run, TrainConfig(**TINY), device="cuda", progress=False)
    return run


@pytest.mark.cuda
def test_a_cuda_checkpoint_loads_on_the_cpu_and_generates_the_same_fields(cuda_run, tmp_path):
    state = load_checkpoint(cuda_run / "checkpoints" / "best.pt")
    assert all(tensor.device.type == "cpu" for tensor in state["generator_ema"].values())
    # one latent and condition, generated on each device (fp32 on both: generation turns
    # off the TF32 that training left on)
    on_gpu = load_surrogate(cuda_run, device="cuda")
    on_cpu = load_surrogate(cuda_run, device="cpu")
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(8, on_cpu.model_config.noise_dim, generator=generator)
    condition = np.random.default_rng(3).uniform(-1, 1, (8, on_cpu.model_config.condition_dim)
                                                 ).astype(np.float32)
    with torch.no_grad():
        gpu = on_gpu.sample(condition, noise)
        cpu = on_cpu.sample(condition, noise)
    error = np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu)
    assert error < 1e-3, error          # fp32 on both; cuDNN and CPU sum in other orders
    # and whole files: the CUDA file matches the CPU file to the same tolerance
    paths = {device: generate(cuda_run, tmp_path / f"{device}.h5", parameters={"nu": 3e-3},
                              n=2, seed=1, device=device, progress=False)
             for device in ("cuda", "cpu")}
    with FieldStore(paths["cuda"]) as a, FieldStore(paths["cpu"]) as b:
        for name in ("vorticity", "velocity"):
            x, y = a.read(name), b.read(name)
            assert np.linalg.norm(x - y) / np.linalg.norm(y) < 1e-2, name


@pytest.mark.cuda
@needs_cuda
def test_given_signs_on_cuda_flip_the_fields_as_on_the_cpu():
    """A sign-equivariant generator on CUDA takes explicit signs (a float tensor from the
    CPU, as generation passes them) and gives the CPU's fields times them (TF32 off)."""
    from surrogate.models import Generator, ModelConfig
    config = ModelConfig.for_resolution(16, 1, 1, 2, width=8, noise_dim=8, negate=True,
                                        negate_each_snapshot=True)
    generator = Generator(config).eval()
    noise = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    condition = torch.zeros(4, 2)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0])
    with torch.no_grad():
        cpu = generator(noise, condition, pixel_noise=False, sign=sign)
        cuda = generator.cuda()(noise.cuda(), condition.cuda(), pixel_noise=False, sign=sign)
    np.testing.assert_allclose(cuda.cpu().numpy(), cpu.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
@needs_cuda
def test_a_cpu_checkpoint_resumes_on_cuda(tmp_path):
    run = tmp_path / "run"
    train(SAMPLE, run, TrainConfig(**TINY), device="cpu", progress=False)
    summary = train(SAMPLE, run, resume=True, device="cuda", progress=False, steps=9)
    assert summary["steps"] == 9 and summary["device"].startswith("cuda")
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert all(torch.isfinite(value).all() for value in state["generator"].values())


@pytest.mark.cuda
@needs_cuda
def test_the_compile_path_trains_like_the_eager_one(tmp_path):
    losses = {}
    for compiled in (False, True):
        config = TrainConfig(**{**TINY, "compile": compiled, "amp": False, "tf32": False,
                                "seed": 5})
        trainer = Trainer(SAMPLE, tmp_path / f"run{compiled}", config, device="cuda",
                          progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            losses[compiled] = [trainer.train_step() for _ in range(3)]
    for eager, compiled in zip(losses[False], losses[True], strict=True):
        for key in ("loss_d", "loss_g"):
            assert np.isfinite(compiled[key])
            # same seed, same data: a compiled graph reorders float sums only
            assert compiled[key] == pytest.approx(eager[key], rel=0.05, abs=0.05), key


@pytest.mark.cuda
@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpu_replicas_train_one_model_over_nccl(tmp_path):
    run = tmp_path / "run"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "surrogate",
               "train", SAMPLE, "-o", str(run), "--steps", "4", "--batch-size", "8",
               "--width", "8", "--validate-every", "2", "--checkpoint-every", "2",
               "--log-every", "1", "--device", "cuda", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4


def _out_of_memory(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 "
                                      "has a total capacity of 79.19 GiB\nmore detail")


@pytest.mark.parametrize("command", ["train", "generate"])
def test_out_of_gpu_memory_is_a_one_line_error_naming_the_batch_size(
        tmp_path, capsys, monkeypatch, cpu_run, command):
    output = tmp_path / "out"
    if command == "train":
        monkeypatch.setattr(Trainer, "train_step", _out_of_memory)
        argv = ["train", SAMPLE, "-o", str(output), "--batch-size", "48", "--device", "cpu",
                "-q"]
    else:
        from surrogate.generate import SurrogateModel
        monkeypatch.setattr(SurrogateModel, "sample", _out_of_memory)
        argv = ["generate", str(cpu_run), "-o", str(output), "--set", "nu=0.003",
                "--batch-size", "48", "--device", "cpu", "-q"]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.splitlines() == [error], error
    assert f"{command}: out of GPU memory with --batch-size 48" in error
    assert "Tried to allocate 20.00 GiB" in error and "smaller --batch-size" in error
    # no checkpoint or file was written (a new run directory keeps only its config.json)
    assert not output.exists() or not (output / "checkpoints" / "last.pt").exists()
    assert not output.is_file()


def test_generation_runs_in_full_precision_and_restores_the_tf32_flags():
    from surrogate.devices import full_precision
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with full_precision():
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
