"""Fault tests: corrupted files, SIGKILLed jobs, paths stored inside files (the bad-input
contract of README.md: a one-line error, exit status 2, nothing written or overwritten).

Every read command (``info``, ``check``, ``check --quick``, ``validate`` both ways,
``generate --like``, ``train``, ``convert``) is run on many deterministically corrupted
variants of two small valid files, in a child process with a timeout and an address-space
limit. Each run must either succeed with a sane result or exit with status 2 and one
``surrogate: error:`` line naming the file, with no traceback, no partial output and no
pre-existing output touched (see :func:`_judge`).

Two ways to run the commands, with the same outcome records:

* ``subprocess``: one ``python -m surrogate ...`` per command (the exhaustive, slow test);
* ``batch``: one child process imports ``surrogate.cli`` once and calls ``main(argv)`` per
  command with file descriptors 1 and 2 redirected to files, an interval timer as the
  timeout and an uncaught exception printed as a traceback with status 1, which is
  what ``python -m surrogate`` does. A child that dies or hangs is killed and restarted
  after the command it was running, which is recorded as crashed or timed out.

The default suite runs a representative subset in batch mode plus a cross-check of a few
commands as real subprocesses; ``pytest -m slow`` runs every case as subprocesses and
prints the outcome counts.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests._files import file_contents

ROOT = Path(__file__).resolve().parents[1]
#: seconds one command may take before it counts as hung
TIMEOUT = 60.0
#: address-space limit of every child (a declared huge shape must not be allocated)
MEMORY_LIMIT = 4 * 2**30
#: seed of every random choice (offsets of flipped bytes, truncation points)
FUZZ_SEED = 20261126
SENTINEL = b"precious output written before the command ran\n"


# ------------------------------------------------------------------ running the CLI
def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    # CPU only: a CUDA driver would not initialise inside the address-space limit (and
    # would warn on stderr); these tests are about files, not devices
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "CUDA_VISIBLE_DEVICES": ""})
    return env


@dataclasses.dataclass
class Outcome:
    """What one command did: exit status, output, and whether it hung."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    seconds: float = 0.0


def surrogate(*argv: str | os.PathLike, timeout: float = TIMEOUT,
              cwd: Path = ROOT) -> Outcome:
    """``python -m surrogate ARGV`` in a child with the timeout and memory limit."""
    started = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "surrogate", *map(str, argv)],
                                capture_output=True, text=True, timeout=timeout,
                                preexec_fn=_limit_memory, env=_child_env(), cwd=cwd,
                                check=False)
    except subprocess.TimeoutExpired as error:
        return Outcome(-signal.SIGKILL, _decode(error.stdout), _decode(error.stderr),
                       timed_out=True, seconds=time.perf_counter() - started)
    return Outcome(result.returncode, result.stdout, result.stderr,
                   seconds=time.perf_counter() - started)


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


_BATCH_SCRIPT = r"""
import json, os, signal, sys, time, traceback, warnings
jobs = json.loads(open(sys.argv[1]).read())
first, timeout = int(sys.argv[2]), float(sys.argv[3])
from surrogate.cli import main

class _Timeout(BaseException):
    pass

def _alarm(signum, frame):
    raise _Timeout()

signal.signal(signal.SIGALRM, _alarm)
filters = list(warnings.filters)
saved_out, saved_err, home = os.dup(1), os.dup(2), os.getcwd()
for index in range(first, len(jobs)):
    job = jobs[index]
    warnings.resetwarnings()               # "shown once" registries start afresh
    warnings.filters[:] = filters
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    out, err = os.open(job["stdout"], flags, 0o644), os.open(job["stderr"], flags, 0o644)
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(out, 1); os.dup2(err, 2)
    os.chdir(job["cwd"])
    started, timed_out = time.perf_counter(), False
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        status = main(job["argv"])
    except _Timeout:
        status, timed_out = -9, True
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        traceback.print_exc()              # what the interpreter prints for python -m
        status = 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - started
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(saved_out, 1); os.dup2(saved_err, 2); os.close(out); os.close(err)
    os.chdir(home)
    with open(job["result"] + ".tmp", "w") as handle:
        json.dump({"returncode": status, "timed_out": timed_out, "seconds": seconds}, handle)
    os.replace(job["result"] + ".tmp", job["result"])
"""


def _run_shard(jobs: list[dict], directory: Path, timeout: float) -> None:
    """Run ``jobs`` in batch children, restarting after a command that killed its child."""
    jobs_file = directory / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    first = 0
    while first < len(jobs):
        process = subprocess.Popen(
            [sys.executable, "-c", _BATCH_SCRIPT, str(jobs_file), str(first), str(timeout)],
            preexec_fn=_limit_memory, env=_child_env(), cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        done, last_progress, hung = first, time.monotonic(), False
        while process.poll() is None:
            time.sleep(0.05)
            while done < len(jobs) and Path(jobs[done]["result"]).exists():
                done, last_progress = done + 1, time.monotonic()
            # the interval timer cannot interrupt a hang inside C code: kill from outside
            if time.monotonic() - last_progress > timeout + (60 if done == first else 15):
                process.kill()
                hung = True
        child_error = _decode(process.stderr.read())
        process.stderr.close()
        while done < len(jobs) and Path(jobs[done]["result"]).exists():
            done += 1
        if done >= len(jobs):
            break
        # the child died (or hung) in jobs[done]: record it as the interpreter would
        job = jobs[done]
        stderr = Path(job["stderr"]).read_text(errors="replace") \
            if Path(job["stderr"]).exists() else ""
        if done == first and not Path(job["stderr"]).exists():
            stderr = child_error          # died before the first command (import error)
        Path(job["result"]).write_text(json.dumps(
            {"returncode": process.returncode, "timed_out": hung, "seconds": timeout
             if hung else 0.0, "stderr": stderr}))
        first = done + 1


def run_commands(commands: Sequence[Sequence[str]], workdir: Path, *, mode: str = "batch",
                 workers: int | None = None, timeout: float = TIMEOUT) -> list[Outcome]:
    """Run CLI commands (``argv`` lists) in children; outcomes in the same order."""
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    if mode == "subprocess":
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda argv: surrogate(*argv, timeout=timeout), commands))
    jobs = []
    for index, argv in enumerate(commands):
        stem = workdir / f"job{index:05d}"
        jobs.append({"argv": [str(a) for a in argv], "cwd": str(ROOT),
                     "stdout": f"{stem}.out", "stderr": f"{stem}.err",
                     "result": f"{stem}.json"})
    shards = [jobs[k::workers] for k in range(workers)]
    directories = []
    for k in range(workers):
        directories.append(workdir / f"shard{k}")
        directories[-1].mkdir()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda a: _run_shard(*a, timeout), zip(shards, directories,
                                                                strict=True)))
    outcomes = []
    for job in jobs:
        result = json.loads(Path(job["result"]).read_text())
        stdout = Path(job["stdout"]).read_text(errors="replace") \
            if Path(job["stdout"]).exists() else ""
        stderr = result.get("stderr")
        if stderr is None:
            stderr = Path(job["stderr"]).read_text(errors="replace")
        outcomes.append(Outcome(result["returncode"], stdout, stderr, result["timed_out"],
                                result["seconds"]))
    return outcomes


# ------------------------------------------------------------------ base files and runs
BASE_COMMANDS = {
    "grf": ["simulate", "gaussian_random_field", "-n", "6", "--resolution", "16", "-q"],
    "ns": ["simulate", "navier_stokes2d", "-n", "8", "--resolution", "16", "--t-end", "0.2",
           "--snapshots", "3", "-q"],
}
TRAIN_OPTIONS = ["--steps", "2", "--batch-size", "4", "--width", "8", "--validate-every", "1",
                 "--checkpoint-every", "1", "--sample-every", "2", "--device", "cpu", "-q"]


@dataclasses.dataclass
class Bases:
    """Valid files and runs trained on them; ``hashes`` fingerprints them all."""

    directory: Path
    files: dict[str, Path]
    runs: dict[str, Path]

    def fingerprint(self) -> dict[str, str]:
        paths = list(self.files.values())
        for run in self.runs.values():
            paths += sorted(p for p in run.rglob("*") if p.is_file())
        return {str(p): _digest(p) for p in paths}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*argv: str | os.PathLike, timeout: float = 300, cwd: Path = ROOT) -> Outcome:
    """A command that must succeed (``python -m surrogate``, one thread per child)."""
    outcome = surrogate(*argv, timeout=timeout, cwd=cwd)
    assert outcome.returncode == 0, (argv, outcome.stderr[-2000:])
    return outcome


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> Bases:
    """The two valid files and a tiny run trained on each (in parallel children)."""
    directory = tmp_path_factory.mktemp("bases")
    files = {name: directory / f"{name}.h5" for name in BASE_COMMANDS}
    runs = {name: directory / f"run_{name}" for name in BASE_COMMANDS}

    def make(name: str) -> None:
        # relative output name: the `command` attribute, hence the byte layout of the
        # file and what each seeded offset hits, is the same in every test session
        _cli(*BASE_COMMANDS[name], "-o", files[name].name, cwd=directory)
        _cli("train", files[name], "-o", runs[name], *TRAIN_OPTIONS)

    with concurrent.futures.ThreadPoolExecutor(len(BASE_COMMANDS)) as pool:
        list(pool.map(make, BASE_COMMANDS))
    return Bases(directory, files, runs)


# ------------------------------------------------------------------ corruptions
COMMAND_NAMES = ("info", "check", "check-quick", "validate-ref-bad", "validate-bad-ref",
                 "generate", "train", "convert")


@dataclasses.dataclass(frozen=True)
class Case:
    """One corrupted input: ``make(base file, target path)`` writes it.

    ``quick``: part of the default suite's representative subset (all cases run in the
    slow exhaustive test).
    """

    name: str
    base: str
    kind: str
    make: Callable[[Path, Path], None]
    quick: bool = False


def _bytes_edit(edit: Callable[[bytearray], bytes | bytearray]) -> Callable[[Path, Path], None]:
    def make(source: Path, target: Path) -> None:
        target.write_bytes(bytes(edit(bytearray(source.read_bytes()))))
    return make


def _h5_edit(edit: Callable[[h5py.File], None]) -> Callable[[Path, Path], None]:
    def make(source: Path, target: Path) -> None:
        shutil.copyfile(source, target)
        with h5py.File(target, "r+") as handle:
            edit(handle)
    return make


def _flip(offsets: Sequence[int], mask: int = 0xFF):
    def edit(data: bytearray) -> bytearray:
        for offset in offsets:
            data[offset] ^= mask
        return data
    return edit


def _chunk_regions(path: Path) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """Byte ranges of field chunks and of contiguous small datasets: (start, stop, name)."""
    chunks, contiguous = [], []

    def visit(name: str, obj) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.chunks is not None:
            for i in range(obj.id.get_num_chunks()):
                info = obj.id.get_chunk_info(i)
                chunks.append((info.byte_offset, info.byte_offset + info.size, name))
        elif obj.id.get_offset() is not None and obj.id.get_storage_size():
            start = obj.id.get_offset()
            contiguous.append((start, start + obj.id.get_storage_size(), name))

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return chunks, contiguous


def _replace(name: str, **kwargs) -> Callable[[h5py.File], None]:
    """Delete dataset ``name`` and create another one in its place."""
    def edit(handle: h5py.File) -> None:
        del handle[name]
        handle.create_dataset(name, **kwargs)
    return edit


def _set_attr(name: str, key: str, value) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        handle[name].attrs[key] = value
    return edit


def _del_attr(name: str, key: str) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        del handle[name].attrs[key]
    return edit


def _delete(*names: str) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        for name in names:
            del handle[name]
    return edit


def _write_values(name: str, index, value) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        handle[name][index] = value
    return edit


def _edit_description(change: Callable[[dict], object]) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        description = json.loads(handle.attrs["system_description"])
        result = change(description)
        handle.attrs["system_description"] = json.dumps(
            description if result is None else result)
    return edit


def _all(*edits: Callable[[h5py.File], None]) -> Callable[[h5py.File], None]:
    def edit(handle: h5py.File) -> None:
        for step in edits:
            step(handle)
    return edit


def _huge_chunks(handle: h5py.File) -> None:
    """The first scalar field with chunks of 8192^2 floats (256 MiB), deflated to ~0.3 MB."""
    name = "t0_fields/" + next(iter(handle["t0_fields"]))
    shape = handle[name].shape
    del handle[name]
    chunk = (1, 1, 8192, 8192)
    dataset = handle.create_dataset(name, shape=shape, maxshape=(None,) * 4, dtype=np.float32,
                                    chunks=chunk, compression="gzip")
    compressor = zlib.compressobj(1)
    block = bytes(2**24)
    body = b"".join(compressor.compress(block) for _ in range(16)) + compressor.flush()
    for b in range(shape[0]):
        for t in range(shape[1]):
            dataset.id.write_direct_chunk((b, t, 0, 0), body)


def _external_storage(handle: h5py.File) -> None:
    """The first scalar field stored in an external raw file (a path inside the file)."""
    name = "t0_fields/" + next(iter(handle["t0_fields"]))
    shape = handle[name].shape
    del handle[name]
    size = int(np.prod(shape)) * 4
    handle.create_dataset(name, shape=shape, dtype=np.float32,
                          external=[("/etc/hostname", 0, size)])


def _external_link_to_fifo(handle: h5py.File) -> None:
    """A field that is an external link to a named pipe: following it would block."""
    fifo = Path(handle.filename).with_suffix(".fifo")
    os.mkfifo(fifo)
    name = "t0_fields/" + next(iter(handle["t0_fields"]))
    del handle[name]
    handle[name] = h5py.ExternalLink(str(fifo), "/data")


def _virtual_field(handle: h5py.File) -> None:
    """A field that is a virtual dataset mapping another file (a copy of the field)."""
    name = "t0_fields/" + next(iter(handle["t0_fields"]))
    values = handle[name][()]
    other = Path(handle.filename).with_suffix(".source.h5")
    with h5py.File(other, "w") as source:
        source["data"] = values
    del handle[name]
    layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype)
    layout[...] = h5py.VirtualSource(str(other), "data", shape=values.shape)
    handle.create_virtual_dataset(name, layout)


def _text_case(content: bytes) -> Callable[[Path, Path], None]:
    def make(source: Path, target: Path) -> None:
        target.write_bytes(content)
    return make


def _directory(source: Path, target: Path) -> None:
    target.mkdir()
    shutil.copyfile(source, target / source.name)


def _fifo(source: Path, target: Path) -> None:
    os.mkfifo(target)


def _symlink_to(destination: str) -> Callable[[Path, Path], None]:
    def make(source: Path, target: Path) -> None:
        target.symlink_to(destination)
    return make


def _netcdf3(source: Path, target: Path) -> None:
    import xarray as xr
    xr.Dataset({"a": ("x", np.arange(4.0))}).to_netcdf(target, engine="scipy")


def corruption_cases(bases: Bases) -> list[Case]:
    """Every corrupted variant of the base files, deterministic for :data:`FUZZ_SEED`.

    Cases marked ``quick`` form the default suite's representative subset (each kind
    of damage at least once).
    """
    rng = np.random.default_rng(FUZZ_SEED)
    cases: list[Case] = []

    def add(base: str, kind: str, name: str, make, quick: bool = False) -> None:
        cases.append(Case(f"{base}/{kind}/{name}", base, kind, make, quick))

    for base, path in bases.files.items():
        size = path.stat().st_size
        chunks, contiguous = _chunk_regions(path)
        data_bytes = np.zeros(size, dtype=bool)
        for start, stop, _ in chunks + contiguous:
            data_bytes[start:stop] = True
        metadata = np.flatnonzero(~data_bytes[96:]) + 96
        quick_base = base == "ns"
        # truncations
        points = sorted({1, 8, 96, 512, 2048, size // 4, size // 2, 3 * size // 4,
                         chunks[0][0] + 1, size - 4096, size - 1})
        for k, point in enumerate(points):
            add(base, "truncate", f"at{point}", _bytes_edit(lambda d, p=point: d[:p]),
                quick=(quick_base and k in (2, 6, 10)) or (not quick_base and k == 4))
        # flipped bytes: superblock, metadata (object headers, heaps, b-trees), chunk data,
        # contiguous raw data (coordinates, parameters), many at once
        for k, offset in enumerate(sorted(rng.choice(96, 6, replace=False))):
            add(base, "flip-header", f"at{offset}", _bytes_edit(_flip([int(offset)])),
                quick=k in (1, 4) and quick_base)
        for k, offset in enumerate(sorted(rng.choice(metadata, 16, replace=False))):
            add(base, "flip-metadata", f"at{offset}", _bytes_edit(_flip([int(offset)])),
                quick=k % 4 == 1)
        for k in range(4):
            start, stop, _ = chunks[int(rng.integers(len(chunks)))]
            offset = int(rng.integers(start, stop))
            add(base, "flip-chunk", f"at{offset}", _bytes_edit(_flip([offset])),
                quick=k == 0)
        for k in range(4):
            start, stop, _ = contiguous[int(rng.integers(len(contiguous)))]
            offset = int(rng.integers(start, stop))
            add(base, "flip-raw", f"at{offset}", _bytes_edit(_flip([offset], 0x40)),
                quick=k == 0 and quick_base)
        for k in range(3):
            offsets = [int(o) for o in rng.choice(size, 24, replace=False)]
            add(base, "flip-many", f"seed{k}", _bytes_edit(_flip(offsets)), quick=k == 0)
        for k in range(2):
            start = int(rng.integers(0, size - 1024))
            add(base, "zero-block", f"at{start}",
                _bytes_edit(lambda d, s=start: d[:s] + bytes(1024) + d[s + 1024:]),
                quick=k == 0 and not quick_base)

    ns_cases: list[tuple[str, str, Callable[[h5py.File], None], bool]] = [
        # deleted groups, datasets, links and attributes
        ("delete", "group-dimensions", _delete("dimensions"), True),
        ("delete", "group-scalars", _delete("scalars"), False),
        ("delete", "group-t1_fields", _delete("t1_fields"), True),
        ("delete", "group-stats", _delete("stats"), True),
        ("delete", "group-boundary", _delete("boundary_conditions"), False),
        ("delete", "dimensions-time", _delete("dimensions/time", "time"), True),
        ("delete", "link-x", _delete("x"), False),
        ("delete", "trajectory", _delete("trajectory"), False),
        ("delete", "split", _delete("split"), True),
        ("delete", "completed", _delete("completed"), False),
        ("delete", "trajectory_seed", _delete("trajectory_seed"), False),
        ("delete", "scalar-nu", _delete("scalars/nu"), True),
        ("delete", "field-vorticity", _delete("t0_fields/vorticity"), True),
        ("delete", "field-velocity", _delete("t1_fields/velocity"), False),
        ("delete", "stats-vorticity", _delete("stats/vorticity"), False),
        ("delete", "component", _delete("component"), False),
        ("delete-attr", "system", _del_attr("/", "system"), True),
        ("delete-attr", "system_description", _del_attr("/", "system_description"), False),
        ("delete-attr", "n_trajectories", _del_attr("/", "n_trajectories"), True),
        ("delete-attr", "resolution", _del_attr("/", "resolution"), False),
        ("delete-attr", "box_size", _del_attr("/", "box_size"), False),
        ("delete-attr", "format_version", _del_attr("/", "format_version"), False),
        ("delete-attr", "complete", _del_attr("/", "complete"), True),
        ("delete-attr", "simulation_parameters", _del_attr("/", "simulation_parameters"),
         False),
        ("delete-attr", "stats-std", _del_attr("stats/vorticity", "std"), True),
        ("delete-attr", "stats-mean", _del_attr("stats/velocity", "mean"), False),
        ("delete-attr", "field_names", _del_attr("t0_fields", "field_names"), False),
        ("delete-attr", "time-units", _del_attr("dimensions/time", "units"), False),
        # datasets of the wrong dtype, shape or rank
        ("dtype", "field-float64", _replace("t0_fields/vorticity", shape=(8, 3, 16, 16),
                                            dtype=np.float64, chunks=(1, 1, 16, 16)), True),
        ("dtype", "field-int32", _replace("t0_fields/vorticity",
                                          data=np.ones((8, 3, 16, 16), np.int32)), False),
        ("dtype", "field-strings", _replace("t0_fields/vorticity",
                                            data=np.array(["a"] * 8, dtype="S1")), True),
        ("dtype", "field-compound", _replace(
            "t1_fields/velocity", data=np.zeros(8, dtype=[("a", "f4"), ("b", "i8")])), False),
        ("dtype", "time-strings", _replace("dimensions/time", data=np.array([b"0", b"1", b"2"])),
         False),
        ("dtype", "scalar-strings", _replace("scalars/nu", data=np.array([b"x"] * 8)), True),
        ("dtype", "split-float", _replace("split", data=np.full(8, 0.5)), False),
        ("dtype", "completed-int", _replace("completed", data=np.full(8, 7, np.int8)), False),
        ("shape", "field-fewer-trajectories", _replace(
            "t0_fields/vorticity", shape=(7, 3, 16, 16), dtype=np.float32,
            chunks=(1, 1, 16, 16)), True),
        ("shape", "field-other-grid", _replace(
            "t0_fields/vorticity", shape=(8, 3, 8, 8), dtype=np.float32, chunks=(1, 1, 8, 8)),
         False),
        ("shape", "field-more-times", _replace(
            "t0_fields/vorticity", data=np.ones((8, 4, 16, 16), np.float32),
            chunks=(1, 1, 16, 16)), False),
        ("shape", "vector-three-components", _replace(
            "t1_fields/velocity", data=np.ones((8, 3, 16, 16, 3), np.float32)), True),
        ("shape", "time-longer", _replace("dimensions/time", data=np.arange(4.0)), False),
        ("shape", "x-longer", _replace("dimensions/x", data=np.arange(17.0)), True),
        ("shape", "scalar-longer", _replace("scalars/nu", data=np.full(9, 1e-3)), False),
        ("shape", "split-shorter", _replace("split", data=np.zeros(7, np.int8)), True),
        ("shape", "field-empty", _replace("t0_fields/vorticity", shape=(0, 3, 16, 16),
                                          dtype=np.float32), False),
        ("shape", "time-empty", _replace("dimensions/time", shape=(0,), dtype=np.float64),
         True),
        ("rank", "field-no-time-axis", _replace(
            "t0_fields/vorticity", data=np.ones((8, 16, 16), np.float32)), True),
        ("rank", "field-0d", _replace("t0_fields/vorticity", data=np.float32(1)), False),
        ("rank", "vector-no-component", _replace(
            "t1_fields/velocity", data=np.ones((8, 3, 16, 16), np.float32)), False),
        ("rank", "time-2d", _replace("dimensions/time", data=np.ones((3, 3))), False),
        ("rank", "scalar-2d", _replace("scalars/nu", data=np.full((8, 1), 1e-3)), True),
        ("rank", "time-is-group", _all(_delete("dimensions/time", "time"),
                                       lambda h: h.create_group("dimensions/time")), False),
        # NaN / Inf / out-of-range values
        ("nonfinite", "field-nan", _write_values("t0_fields/vorticity", (0, 1, 3, 4), np.nan),
         True),
        ("nonfinite", "field-inf", _write_values("t1_fields/velocity", (7, 2), np.inf), False),
        ("nonfinite", "scalar-nan", _write_values("scalars/nu", 2, np.nan), True),
        ("nonfinite", "scalar-out-of-range", _write_values("scalars/nu", 2, 5.0), False),
        ("nonfinite", "time-nan", _write_values("dimensions/time", 1, np.nan), True),
        ("nonfinite", "time-decreasing", _write_values("dimensions/time", 2, -1.0), False),
        ("nonfinite", "x-nan", _write_values("dimensions/x", 3, np.nan), False),
        ("nonfinite", "stats-mean-nan", _set_attr("stats/vorticity", "mean", np.nan), True),
        ("nonfinite", "stats-std-zero", _set_attr("stats/vorticity", "std", 0.0), False),
        ("nonfinite", "stats-std-inf", _set_attr("stats/vorticity", "std", np.inf), False),
        ("nonfinite", "stats-vector-mean-nan", _set_attr(
            "stats/velocity", "mean", np.array([np.nan, 0.0])), False),
        ("nonfinite", "box-size-nan", _set_attr("/", "box_size", np.nan), True),
        ("nonfinite", "box-size-zero", _set_attr("/", "box_size", 0.0), False),
        ("nonfinite", "box-size-negative", _set_attr("/", "box_size", -6.0), False),
        ("nonfinite", "split-code-9", _write_values("split", 0, 9), False),
        # attributes of the wrong type
        ("attr-type", "n_trajectories-text", _set_attr("/", "n_trajectories", "eight"), True),
        ("attr-type", "resolution-text", _set_attr("/", "resolution", "16"), False),
        ("attr-type", "box_size-text", _set_attr("/", "box_size", "big"), False),
        ("attr-type", "system-number", _set_attr("/", "system", 5), True),
        ("attr-type", "system-unknown", _set_attr("/", "system", "no_such_system"), False),
        ("attr-type", "description-not-json", _set_attr("/", "system_description", "{nope"),
         True),
        ("attr-type", "description-list", _set_attr("/", "system_description", "[1, 2]"),
         False),
        ("attr-type", "description-no-fields", _edit_description(
            lambda d: d.pop("fields")), False),
        ("attr-type", "description-field-rank-7", _edit_description(
            lambda d: d["fields"][0].update(rank=7)), True),
        ("attr-type", "description-field-unknown-key", _edit_description(
            lambda d: d["fields"][0].update(colour="red")), False),
        ("attr-type", "description-parameter-low-above-high", _edit_description(
            lambda d: d["parameters"][0].update(low=1.0, high=0.1)), False),
        ("attr-type", "description-parameter-text-range", _edit_description(
            lambda d: d["parameters"][0].update(low="a")), True),
        ("attr-type", "description-extra-field", _edit_description(
            lambda d: d["fields"].append(dict(d["fields"][0], name="ghost"))), False),
        ("attr-type", "description-huge-nesting", _set_attr(
            "/", "system_description", "[" * 100000 + "]" * 100000), False),
        ("attr-type", "n_trajectories-array", _set_attr("/", "n_trajectories", [8, 8]),
         True),
        ("attr-type", "resolution-array", _set_attr("/", "resolution", np.array([16, 16])),
         False),
        ("attr-type", "box_size-array", _set_attr("/", "box_size", np.ones(3)), False),
        ("attr-type", "complete-text", _set_attr("/", "complete", "no"), False),
        ("attr-type", "seed-text", _set_attr("/", "seed", "s"), False),
        ("attr-type", "seed-negative", _set_attr("/", "seed", -5), False),
        ("attr-type", "format-version-float", _set_attr("/", "format_version", 1.0), False),
        ("attr-type", "simulation_parameters-int", _set_attr("/", "simulation_parameters", 3),
         False),
        ("attr-type", "stats-mean-text", _set_attr("stats/vorticity", "mean", "zero"), True),
        ("attr-type", "stats-std-array", _set_attr("stats/vorticity", "std", np.ones(5)),
         False),
        ("attr-type", "field_names-int", _set_attr("t1_fields", "field_names", 1), False),
        ("attr-type", "time-units-array", _set_attr("dimensions/time", "units", [1, 2]),
         False),
        # declared huge sizes
        ("huge", "n_trajectories-1e12", _set_attr("/", "n_trajectories", 10**12), True),
        ("huge", "n_trajectories-negative", _set_attr("/", "n_trajectories", -1), False),
        ("huge", "n_trajectories-zero", _set_attr("/", "n_trajectories", 0), False),
        ("huge", "resolution-2^40", _set_attr("/", "resolution", 2**40), True),
        ("huge", "resolution-zero", _set_attr("/", "resolution", 0), False),
        ("huge", "resolution-2^62", _set_attr("/", "resolution", 2**62), False),
        ("huge", "scalar-1e12-elements", _replace(
            "scalars/nu", shape=(10**12,), dtype=np.float64, chunks=(1024,)), True),
        ("huge", "time-1e12-elements", _replace(
            "dimensions/time", shape=(10**12,), maxshape=(None,), dtype=np.float64,
            chunks=(4096,)), True),
        ("huge", "split-1e12-elements", _replace(
            "split", shape=(10**12,), dtype=np.int8, chunks=(4096,)), False),
        ("huge", "completed-1e12-elements", _replace(
            "completed", shape=(10**12,), dtype=bool, chunks=(4096,)), False),
        ("huge", "field-and-count-1e6", _all(
            _replace("t0_fields/vorticity", shape=(10**6, 3, 16, 16), dtype=np.float32,
                     chunks=(1, 1, 16, 16), fletcher32=True),
            _set_attr("/", "n_trajectories", 10**6)), True),
        ("huge", "field-maxshape-unlimited", _replace(
            "t0_fields/vorticity", shape=(8, 3, 16, 16), maxshape=(None,) * 4,
            dtype=np.float32, chunks=(1, 1, 16, 16)), False),
        ("huge", "field-256MiB-chunks", _huge_chunks, True),
        ("huge", "stats-count-1e18", _set_attr("stats/vorticity", "count", 10**18), False),
        # paths inside the file
        ("links", "field-external-link", _all(
            _delete("t0_fields/vorticity"),
            lambda h: h.__setitem__("t0_fields/vorticity",
                                    h5py.ExternalLink("/tmp/__absent__.h5", "/data"))), True),
        ("links", "field-external-storage", _external_storage, True),
        ("links", "field-external-link-to-fifo", _external_link_to_fifo, True),
        ("links", "field-virtual-dataset", _virtual_field, False),
        ("links", "time-soft-link-dangling", _all(
            _delete("time"), lambda h: h.__setitem__("time", h5py.SoftLink("/nowhere"))),
         False),
        ("links", "field-soft-link-loop", _all(
            _delete("t1_fields/velocity"),
            lambda h: h.__setitem__("t1_fields/velocity", h5py.SoftLink("/t1_fields/velocity"))),
         False),
    ]
    for kind, name, edit, quick in ns_cases:
        add("ns", kind, name, _h5_edit(edit), quick)
    grf_cases = [
        ("delete", "field-density", _delete("t0_fields/density"), False),
        ("nonfinite", "field-nan", _write_values("t0_fields/delta", (5, 0, 0, 0), np.nan),
         False),
        ("attr-type", "system-navier", _set_attr("/", "system", "navier_stokes2d"), False),
        ("huge", "n_trajectories-1e12", _set_attr("/", "n_trajectories", 10**12), False),
    ]
    for kind, name, edit, quick in grf_cases:
        add("grf", kind, name, _h5_edit(edit), quick)
    # not HDF5 at all, or not a regular file
    for name, make, quick in [
        ("empty", _text_case(b""), True),
        ("text", _text_case(b"time,x,y\n0,1,2\n"), False),
        ("hdf5-signature-then-zeros", _text_case(b"\x89HDF\r\n\x1a\n" + bytes(4096)), True),
        ("random-bytes", _text_case(np.random.default_rng(FUZZ_SEED).bytes(8192)), False),
        ("zip", _text_case(b"PK\x03\x04" + bytes(200)), False),
        ("netcdf3", _netcdf3, True),
        ("directory", _directory, True),
        ("fifo", _fifo, True),
        ("dev-zero", _symlink_to("/dev/zero"), False),
        ("dangling-symlink", _symlink_to("/nonexistent/file.h5"), False),
    ]:
        add("ns", "not-hdf5", name, make, quick)
    return cases


# ------------------------------------------------------------------ judging outcomes

@dataclasses.dataclass
class Invocation:
    """One command on one corrupted file, with the state to judge it against."""

    case: Case
    command: str
    argv: list[str]
    bad: Path
    out: Path                      # directory holding every output of the command
    target: Path | None            # the output file or directory, if any
    before: dict[str, bytes]       # out's files before the command


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)) + ("/" if p.is_dir() else ""):
            (b"" if p.is_dir() else p.read_bytes()) for p in sorted(directory.rglob("*"))}


def prepare(cases: Sequence[Case], bases: Bases, workdir: Path,
            commands: Callable[[Case], Sequence[str]]) -> list[Invocation]:
    """Materialise every case under ``workdir`` and lay out one output directory per command.

    Outputs alternate (by case number) between a new name and an existing file replaced
    with ``--overwrite`` (generate, convert) or an existing report directory (validate), so
    that "pre-existing outputs are untouched on error" is tested too.
    """
    invocations = []
    for number, case in enumerate(cases):
        folder = workdir / f"case{number:04d}"
        folder.mkdir()
        bad = folder / "bad.h5"
        case.make(bases.files[case.base], bad)
        ref, run = bases.files[case.base], bases.runs[case.base]
        existing = number % 2 == 1
        for command in commands(case):
            out = folder / command
            out.mkdir()
            (out / "keep.h5").write_bytes(SENTINEL)
            target = None
            if command == "info":
                argv = ["info", bad]
            elif command == "check":
                argv = ["check", bad]
            elif command == "check-quick":
                argv = ["check", "--quick", bad]
            elif command.startswith("validate"):
                target = out / "report"
                if existing:
                    target.mkdir()
                    (target / "report.json").write_bytes(SENTINEL)
                pair = [ref, bad] if command == "validate-ref-bad" else [bad, ref]
                argv = ["validate", *pair, "-o", target, "-q"]
            elif command == "generate":
                target = out / ("keep.h5" if existing else "generated.h5")
                argv = ["generate", run, "--like", bad, "-o", target, "-q", "--device", "cpu"]
                argv += ["--overwrite"] if existing else []
            elif command == "train":
                target = out / "run"
                argv = ["train", bad, "-o", target, "--steps", "1", "--batch-size", "4",
                        "--width", "8", "--device", "cpu", "-q"]
            elif command == "convert":
                target = out / ("keep.h5" if existing else "converted.h5")
                argv = ["convert", bad, "-o", target] + (["--overwrite"] if existing else [])
            else:                                                    # pragma: no cover
                raise ValueError(command)
            invocations.append(Invocation(case, command, [str(a) for a in argv], bad, out,
                                          target, _snapshot(out)))
    return invocations


def _fields(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return {f"{group}/{name}": handle[f"{group}/{name}"][...]
                for group in ("t0_fields", "t1_fields") for name in handle[group]}


def _judge(invocation: Invocation, outcome: Outcome, bases: Bases) -> list[str]:
    """Violations of the bad-input contract (module docstring) by one outcome (empty: all
    well)."""
    problems = []
    command, err = invocation.command, outcome.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    if outcome.timed_out:
        return [f"hung (killed after {TIMEOUT:g} s)"]
    if "Traceback" in err:
        return ["traceback: " + " | ".join(err.strip().splitlines()[-3:])]
    if outcome.returncode == 2:
        if not lines or not lines[0].startswith("surrogate: error:"):
            problems.append(f"exit 2 without a 'surrogate: error:' line: {err.strip()[:300]!r}")
        else:
            # `check` lists further problems, indented, after its one error line
            extra = [line for line in lines[1:]
                     if not (command.startswith("check") and line.startswith("  "))]
            if extra:
                problems.append(f"{len(lines)} stderr lines: {err.strip()[:300]!r}")
            bad = invocation.bad
            if str(bad) not in lines[0] and bad.name not in lines[0]:
                problems.append(f"error line does not name the file: {lines[0][:300]!r}")
        after = _snapshot(invocation.out)
        if after != invocation.before:
            changed = sorted(set(after) ^ set(invocation.before) | {
                k for k in after if k in invocation.before and after[k] != invocation.before[k]})
            problems.append(f"outputs left or changed after the error: {changed}")
    elif outcome.returncode == 0:
        problems += _check_success(invocation, outcome, bases)
    else:
        problems.append(f"exit status {outcome.returncode}: {err.strip()[-300:]!r}")
    return problems


def _check_success(invocation: Invocation, outcome: Outcome, bases: Bases) -> list[str]:
    """A command that exited 0 did its job (and did not bless a damaged file)."""
    from simulators.store import check_file
    command, out, target = invocation.command, outcome.stdout, invocation.target
    ref = bases.files[invocation.case.base]
    if command == "info":
        return [] if out.startswith("layout:") else [f"info printed {out[:200]!r}"]
    if command.startswith("check"):
        if "OK" not in out:
            return [f"check printed {out[:200]!r}"]
        if command == "check":
            # a file that passes the full check holds the original fields, bit for bit
            # (Fletcher-32 guards every chunk; values outside chunks are checked)
            try:
                same = {k: v.tobytes() for k, v in _fields(invocation.bad).items()} == \
                    {k: v.tobytes() for k, v in _fields(ref).items()}
            except (OSError, KeyError) as error:
                return [f"check passed but h5py cannot read the fields: {error}"]
            if not same:
                return ["check passed, but the fields differ from the original"]
        return []
    if command.startswith("validate"):
        report = target / "report.json"
        if not report.exists() or report.read_bytes() == SENTINEL:
            return ["validate exited 0 without writing report.json"]
        data = json.loads(report.read_text())
        if not ("PASSED" in out or "FAILED" in out) or "counts" not in data:
            return [f"validate report not sane: {out[:200]!r}"]
        return []
    if command in ("generate", "convert"):
        if not target.exists() or target.read_bytes() == SENTINEL:
            return [f"{command} exited 0 without writing {target.name}"]
        problems = check_file(target)
        return [f"{command} wrote a file that fails check: {problems[0]}"] if problems else []
    if command == "train":
        if not (target / "checkpoints" / "last.pt").exists():
            return ["train exited 0 without a checkpoint"]
        return []
    raise ValueError(command)                                       # pragma: no cover


def fuzz(cases: Sequence[Case], bases: Bases, workdir: Path, *, mode: str,
         commands: Callable[[Case], Sequence[str]] = lambda case: COMMAND_NAMES
         ) -> tuple[collections.Counter, list[str], list[tuple[Invocation, Outcome]]]:
    """Run ``commands(case)`` on every case; (outcome counts, violations, raw results)."""
    invocations = prepare(cases, bases, workdir, commands)
    digests = {id(inv.bad): _digest(inv.bad) for inv in invocations
               if inv.bad.is_file() and not inv.bad.is_symlink()}
    outcomes = run_commands([inv.argv for inv in invocations], workdir, mode=mode)
    counts: collections.Counter = collections.Counter()
    violations = []
    for invocation, outcome in zip(invocations, outcomes, strict=True):
        label = "timeout" if outcome.timed_out else f"exit {outcome.returncode}"
        counts[(invocation.command, label)] += 1
        for problem in _judge(invocation, outcome, bases):
            violations.append(f"{invocation.case.name} | {invocation.command}: {problem}")
    for invocation in invocations:
        if id(invocation.bad) in digests and _digest(invocation.bad) != digests[id(invocation.bad)]:
            violations.append(f"{invocation.case.name}: the input file was modified")
            digests.pop(id(invocation.bad))
    return counts, violations, list(zip(invocations, outcomes, strict=True))


def _summary(counts: collections.Counter, n_cases: int) -> str:
    labels = sorted({label for _, label in counts})
    lines = [f"{n_cases} corrupted inputs, {sum(counts.values())} command runs",
             f"{'command':<18}" + "".join(f"{label:>10}" for label in labels)]
    for command in COMMAND_NAMES:
        if any(c == command for c, _ in counts):
            lines.append(f"{command:<18}" + "".join(f"{counts[(command, label)]:>10}"
                                                    for label in labels))
    lines.append(f"{'total':<18}" + "".join(
        f"{sum(v for (_, lab), v in counts.items() if lab == label):>10}" for label in labels))
    return "\n".join(lines)


# ------------------------------------------------------------------ fuzz tests
@pytest.mark.slow   # 46 s on 2 cores; the exhaustive version below is a superset, and CI
# runs both (the default suite keeps test_batch_runner_agrees_with_real_subprocesses)
def test_corrupted_inputs_fail_with_one_line_or_give_a_sane_result(bases, tmp_path):
    """Representative subset: every kind of damage, every read command (batch mode)."""
    before = bases.fingerprint()
    everything = corruption_cases(bases)
    cases = [case for case in everything if case.quick]
    assert 40 <= len(cases) <= 70
    assert {case.kind for case in cases} == {case.kind for case in everything}
    counts, violations, _ = fuzz(cases, bases, tmp_path, mode="batch")
    print("\n" + _summary(counts, len(cases)))
    assert not violations, "\n".join(violations)
    assert bases.fingerprint() == before, "a reference file or a training run was modified"


@pytest.mark.slow   # real subprocesses for every case (6 s); the batch runner itself stays default
def test_batch_runner_agrees_with_real_subprocesses(bases, tmp_path):
    """The batch mode of the default suite sees what ``python -m surrogate`` does."""
    cases = corruption_cases(bases)
    chosen = [next(c for c in cases if c.name.startswith("ns/flip-chunk/")),
              next(c for c in cases if c.name == "ns/not-hdf5/fifo")]
    results = {}
    for mode in ("batch", "subprocess"):
        workdir = tmp_path / mode
        workdir.mkdir()
        _, violations, raw = fuzz(chosen, bases, workdir, mode=mode,
                                  commands=lambda case: ("check", "validate-ref-bad"))
        assert not violations, "\n".join(violations)
        results[mode] = [(inv.case.name, inv.command, out.returncode,
                          out.stderr.replace(str(workdir), "W")) for inv, out in raw]
    assert results["batch"] == results["subprocess"]
    assert {code for _, _, code, _ in results["batch"]} == {2}


@pytest.mark.slow
def test_every_corruption_with_every_command_as_subprocesses(bases, tmp_path):
    """Exhaustive: every case, every command, one ``python -m surrogate`` each (set
    ``SURROGATE_FUZZ_MODE=batch`` for the faster batch mode)."""
    before = bases.fingerprint()
    cases = corruption_cases(bases)
    mode = os.environ.get("SURROGATE_FUZZ_MODE", "subprocess")
    started = time.perf_counter()
    counts, violations, raw = fuzz(cases, bases, tmp_path, mode=mode)
    kinds = collections.Counter(case.kind for case in cases)
    print(f"\n{mode} mode, {time.perf_counter() - started:.0f} s")
    print(_summary(counts, len(cases)))
    print("cases per kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    by_case = collections.defaultdict(set)
    for invocation, outcome in raw:
        by_case[invocation.case.name].add(outcome.returncode)
    print(f"inputs accepted by every command: "
          f"{sum(1 for codes in by_case.values() if codes == {0})}; refused by every command: "
          f"{sum(1 for codes in by_case.values() if codes == {2})}; mixed: "
          f"{sum(1 for codes in by_case.values() if len(codes) > 1)}")
    assert not violations, "\n".join(violations)
    assert bases.fingerprint() == before


@pytest.mark.slow
def test_a_flipped_byte_in_a_field_chunk_fails_its_fletcher32_checksum(bases, tmp_path):
    """Fields carry Fletcher-32 checksums: one flipped bit inside a chunk is caught by
    ``surrogate check`` (naming the dataset, trajectory and time index) and by every
    reader, instead of being read as data."""
    from simulators.store import FieldStore, FieldStoreError
    with h5py.File(bases.files["ns"], "r") as handle:
        for name in ("t0_fields/vorticity", "t1_fields/velocity"):
            dataset = handle[name]
            assert dataset.fletcher32
        info = handle["t1_fields/velocity"].id.get_chunk_info_by_coord((5, 2, 0, 0, 0))
    bad = tmp_path / "flipped.h5"
    data = bytearray(bases.files["ns"].read_bytes())
    data[info.byte_offset + info.size // 2] ^= 0x01       # one bit, mid-chunk
    bad.write_bytes(bytes(data))
    outcome = surrogate("check", bad)
    assert outcome.returncode == 2 and "Traceback" not in outcome.stderr
    line = outcome.stderr.splitlines()[0]
    assert line.startswith(f"surrogate: error: {bad}") and \
        "t1_fields/velocity: trajectory 5, time index 2: unreadable chunk" in line, line
    # the structure is intact: --quick (no value scan) passes, as documented
    assert surrogate("check", "--quick", bad).returncode == 0
    with FieldStore(bad) as store:
        store.read("velocity", 4, 2)                      # other chunks still read
        with pytest.raises(FieldStoreError, match=r"velocity: trajectory 5, time index 2: "
                                                   r"unreadable .*checksum|filter"):
            store.read("velocity", 5, 2)


# ------------------------------------------------------------------ kill tests
def _spawn(argv: Sequence[str | os.PathLike], log: Path) -> subprocess.Popen:
    with log.open("wb") as handle:
        return subprocess.Popen([sys.executable, "-m", "surrogate", *map(str, argv)],
                                stdout=handle, stderr=subprocess.STDOUT, env=_child_env(),
                                cwd=ROOT, preexec_fn=_limit_memory)


def _kill_when(process: subprocess.Popen, ready: Callable[[], bool], what: str,
               timeout: float = 300) -> None:
    """SIGKILL ``process`` as soon as ``ready()``; fail if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"{what} ended (status {process.returncode}) before it could be "
                        f"killed: give it more work")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{what} made no progress in {timeout:g} s")
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"{what} was not killed mid-way"


def _reported(log: Path, at_least: int) -> Callable[[], bool]:
    """``ready`` once the job's progress bar (in ``log``) reports ``at_least`` items done.

    Both writers update the bar after the trajectories are written and flushed, so the
    partial file then holds at least that many (the file itself cannot be read while it
    is open for writing).
    """
    def ready() -> bool:
        counts = re.findall(rb"(\d+)/(\d+) \[", log.read_bytes()) if log.exists() else []
        return bool(counts) and int(counts[-1][0]) >= at_least
    return ready


#: root attributes that say when and how a file was made, not what it holds
def _completed(partial: Path) -> int:
    with h5py.File(partial, "r") as handle:
        return int(np.sum(handle["completed"][()]))


def _killed_midway(options: list, tmp_path: Path, at: int, total: int, what: str
                   ) -> tuple[Path, Path]:
    """Run ``surrogate *options -o killed.h5`` and SIGKILL it once its bar reports ``at``
    trajectories: the final name must not exist, the partial file holds
    ``at <= completed < total`` trajectories. Returns ``(final path, partial path)``."""
    from simulators.store import partial_path
    killed = tmp_path / "killed.h5"
    partial = partial_path(killed)
    log = tmp_path / f"{options[0]}.log"
    process = _spawn([*options, "-o", killed], log)
    _kill_when(process, _reported(log, at), what)
    assert not killed.exists(), f"the final name appeared before {what} finished"
    assert at <= _completed(partial) < total
    return killed, partial


@pytest.mark.slow   # a sweep killed and resumed in subprocesses (8 s)
def test_killed_sweep_leaves_no_file_and_resume_gives_the_same_bytes(tmp_path):
    from simulators.store import check_file
    options = ["simulate", "navier_stokes2d", "-n", "64", "--resolution", "16", "--t-end", "8",
               "--snapshots", "3", "--sweep", "nu=1e-3:1e-2", "--batch-size", "2", "--seed",
               "3"]
    straight = tmp_path / "straight.h5"
    _cli(*options, "-o", straight, "-q")
    killed, partial = _killed_midway(options, tmp_path, 4, 64, "the sweep")
    _cli(*options, "-o", killed, "--resume", "-q")
    assert not partial.exists()
    assert check_file(killed) == []
    assert file_contents(killed) == file_contents(straight)


@pytest.mark.slow   # 15 s on 2 cores; the default suite keeps the killed-sweep test
def test_killed_training_resumes_to_the_same_weights(bases, tmp_path):
    import torch

    from surrogate.checkpoint import load_checkpoint
    options = ["train", bases.files["ns"], "--steps", "40", "--batch-size", "4", "--width", "8",
               "--checkpoint-every", "10", "--validate-every", "20", "--sample-every", "1000",
               "--log-every", "5", "--device", "cpu", "-q"]
    _cli(*options, "-o", tmp_path / "straight")
    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.pt"
    process = _spawn([*options, "-o", run], tmp_path / "train.log")
    _kill_when(process, last.exists, "training")
    killed_at = load_checkpoint(last)["step"]
    assert 0 < killed_at < 40
    _cli("train", bases.files["ns"], "-o", run, "--resume", "--device", "cpu", "-q")
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(last)
    assert a["step"] == b["step"] == 40

    def tensors(value, prefix=""):
        if isinstance(value, torch.Tensor):
            yield prefix, value
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                yield from tensors(value[key], f"{prefix}/{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                yield from tensors(item, f"{prefix}/{index}")

    for key in ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d"):
        left, right = dict(tensors(a[key])), dict(tensors(b[key]))
        assert left.keys() == right.keys() and left, key
        for name in left:
            assert torch.equal(left[name], right[name]), (key, name)
    lines = [[json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
             for path in (tmp_path / "straight", run)]
    keep = ("step", "loss_d", "loss_g", "r1", "spectral_loss", "valid/score")
    assert [{k: v for k, v in line.items() if k in keep} for line in lines[0]] == \
        [{k: v for k, v in line.items() if k in keep} for line in lines[1]]


@pytest.mark.slow   # 16 s on 2 cores; the default suite keeps the killed-sweep test
def test_killed_generation_leaves_no_file_and_resume_gives_the_same_fields(bases, tmp_path):
    from simulators.store import check_file
    options = ["generate", bases.runs["grf"], "-n", "2000", "--batch-size", "4", "--seed", "5",
               "--device", "cpu"]
    straight = tmp_path / "straight.h5"
    _cli(*options, "-o", straight, "-q")
    killed, partial = _killed_midway(options, tmp_path, 100, 2000, "generation")
    # another job (another seed) does not resume this partial file, nor touch it
    before = partial.read_bytes()
    other = surrogate(*[o if o != "5" else "6" for o in options], "-o", killed, "--resume",
                      "-q")
    assert other.returncode == 2 and "different job" in other.stderr
    assert partial.read_bytes() == before and not killed.exists()
    _cli(*options, "-o", killed, "--resume", "-q")
    assert not partial.exists()
    assert check_file(killed) == []
    assert file_contents(killed) == file_contents(straight)


# ------------------------------------------------------------ paths stored inside files
@pytest.mark.slow
def test_paths_and_commands_stored_in_files_are_printed_never_run(bases, tmp_path):
    """Provenance text (``command``, ``producer``, ...) and names that look like paths
    are data: ``info`` prints them on one line, ``validate`` and ``convert`` carry
    them along; nothing is executed and no file they name is opened."""
    marker = tmp_path / "marker"
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT")
    texts = {"command": f"; touch {marker} && cat {secret}\nsurrogate: error: forged line",
             "producer": f"$(touch {marker})", "created": f"`touch {marker}`",
             "producer_version": f"| touch {marker}", "dataset_name": str(secret),
             "source_file": str(secret)}
    crafted = tmp_path / "crafted.h5"
    shutil.copyfile(bases.files["ns"], crafted)
    with h5py.File(crafted, "r+") as handle:
        handle.attrs.update(texts)
        handle["t0_fields/vorticity"].attrs["units"] = f"../../{secret.name}"
    report, converted = tmp_path / "report", tmp_path / "converted.h5"
    outcomes = run_commands([["info", crafted], ["info", "--json", crafted], ["check", crafted],
                             ["validate", bases.files["ns"], crafted, "-o", report, "-q"],
                             ["convert", crafted, "-o", converted]], tmp_path)
    for outcome in outcomes:
        assert outcome.returncode == 0 and "Traceback" not in outcome.stderr, outcome.stderr
    info = outcomes[0].stdout
    # printed as text, on one line: the newline shows as \n, no forged error line
    assert f"command: ; touch {marker} && cat {secret}\\nsurrogate: error: forged line" in info
    assert not any(line.startswith("surrogate: error") for line in info.splitlines())
    assert f"$(touch {marker})" in info
    assert json.loads(outcomes[1].stdout)["provenance"]["producer"] == texts["producer"]
    with h5py.File(converted, "r") as handle:
        carried = json.loads(handle.attrs["source_attrs"])
    assert carried["command"] == texts["command"] and carried["source_file"] == str(secret)
    assert not marker.exists(), "a command stored in a file was executed"
    everything = "".join(o.stdout + o.stderr for o in outcomes).encode()
    everything += b"".join(p.read_bytes() for p in report.rglob("*") if p.is_file())
    everything += converted.read_bytes()
    assert b"SECRET-CONTENT" not in everything, "a file named inside the file was read"


@pytest.mark.slow
def test_links_out_of_the_file_are_refused_and_never_followed(bases, tmp_path):
    """External links (one to a named pipe, which would block if opened), virtual
    datasets and external raw storage: every reader refuses them by name."""
    cases = [case for case in corruption_cases(bases)
             if case.kind == "links" and ("external" in case.name or "virtual" in case.name)]
    assert len(cases) == 4
    _, violations, raw = fuzz(cases, bases, tmp_path, mode="batch")
    assert not violations, "\n".join(violations)
    for invocation, outcome in raw:
        assert outcome.returncode == 2, (invocation.case.name, invocation.command)
        assert re.search(r"another file|other files|external files|not followed",
                         outcome.stderr), (invocation.case.name, outcome.stderr)
