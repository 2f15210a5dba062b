"""Sweeps on a Dask distributed cluster (a LocalCluster on 127.0.0.1 started by the test)."""

from __future__ import annotations

import sys

import pytest

from simulators.sweep import SweepSpec, run_sweep
from surrogate.cli import main
from tests._files import file_contents

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler_address():
    # two worker processes with one thread each: batches really leave this process
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  protocol="tcp") as cluster:
        yield cluster.scheduler_address


def _finished_batches(address: str) -> int:
    """Tasks of ``simulators.sweep._run_batch`` the scheduler saw finish (dask names the
    task prefix without the leading underscore)."""
    with distributed.Client(address) as client:
        return client.run_on_scheduler(
            lambda dask_scheduler: sum(prefix.state_counts.get("memory", 0)
                                       for name, prefix in dask_scheduler.task_prefixes.items()
                                       if name.endswith("run_batch")))


@pytest.mark.slow
def test_cli_sweep_on_a_cluster_gives_the_same_bytes_as_a_local_run(tmp_path,
                                                                    scheduler_address):
    assert scheduler_address.startswith("tcp://127.0.0.1:")
    common = ["simulate", "navier_stokes2d", "-n", "6", "--resolution", "16", "--t-end", "0.5",
              "--snapshots", "3", "--sweep", "nu=1e-3:1e-2", "--seed", "5",
              "--batch-size", "1", "-q"]
    assert main([*common, "-o", str(tmp_path / "local.h5")]) == 0
    before = _finished_batches(scheduler_address)
    assert main([*common, "-o", str(tmp_path / "dask.h5"), "--dask", scheduler_address]) == 0
    local, remote = file_contents(tmp_path / "local.h5"), file_contents(tmp_path / "dask.h5")
    assert set(local) == set(remote)
    for name in local:
        assert local[name] == remote[name], name
    # the six batches really ran on the cluster's workers
    assert _finished_batches(scheduler_address) - before == 6


def test_resume_on_a_cluster_finishes_a_local_partial_file(tmp_path, scheduler_address,
                                                          monkeypatch):
    spec = SweepSpec("gaussian_random_field", n_trajectories=8, resolution=16,
                     ranges={"spectral_index": (2.0, 3.0)}, seed=4)
    reference = run_sweep(spec, tmp_path / "ref.h5", progress=False)
    import simulators.sweep as sweep_module
    original, calls = sweep_module._run_batch, []

    def dies_on_third_batch(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(sweep_module, "_run_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "out.h5", batch_size=2, progress=False)
    monkeypatch.setattr(sweep_module, "_run_batch", original)
    assert not (tmp_path / "out.h5").exists()
    run_sweep(spec, tmp_path / "out.h5", batch_size=2, progress=False, resume=True,
              dask_address=scheduler_address)
    ours, theirs = file_contents(tmp_path / "out.h5"), file_contents(reference)
    assert ours["t0_fields/density"] == theirs["t0_fields/density"]
    assert ours["scalars/spectral_index"] == theirs["scalars/spectral_index"]


def test_unreachable_scheduler_is_a_one_line_error_and_writes_nothing(tmp_path, capsys,
                                                                     monkeypatch):
    import simulators.sweep
    monkeypatch.setattr(simulators.sweep, "DASK_CONNECT_TIMEOUT", "1s")
    output = tmp_path / "out.h5"
    # a port nobody listens on (the cluster fixture is not used here)
    code = main(["simulate", "diffusion", "-n", "2", "--resolution", "16", "-q",
                 "-o", str(output), "--dask", "tcp://127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in err
    assert "\n" not in err
    assert not output.exists() and not list(tmp_path.iterdir())


def test_missing_distributed_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    code = main(["simulate", "diffusion", "-n", "2", "--resolution", "16", "-q",
                 "-o", str(tmp_path / "out.h5"), "--dask", "tcp://127.0.0.1:9"])
    assert code == 2
    assert "pip install 'physics-surrogate[dask]'" in capsys.readouterr().err
