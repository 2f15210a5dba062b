"""Data-parallel training under torchrun with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from surrogate.checkpoint import load_checkpoint

SAMPLE = "data/sample_navier_stokes2d.h5"


@pytest.mark.slow   # two torchrun processes (10 s)
def test_torchrun_two_cpu_replicas_train_one_model(tmp_path):
    run = tmp_path / "run"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:                     # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "surrogate",
               "train", SAMPLE, "-o", str(run),
               "--steps", "4", "--batch-size", "8", "--width", "8", "--validate-every", "2",
               "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained 4 steps") == 1          # rank 0 reports
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 4
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]     # one writer
    assert all(torch.isfinite(value).all() for value in state["generator"].values())
