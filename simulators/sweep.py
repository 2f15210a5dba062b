"""Parameter sweeps: Sobol designs, parallel resumable runs streamed into one HDF5 file.

A sweep draws ``n`` parameter vectors from a scrambled Sobol sequence
(``scipy.stats.qmc.Sobol``; Owen scrambling seeded by the master seed) over the swept
ranges, holds the ``fixed`` parameters constant and leaves the others at their defaults.
Parameters whose range spans at least two decades (or that declare ``log=True``) are
sampled uniformly in ``log(value)``; integer parameters are rounded down after a
uniform draw over ``[low, high + 1)``.

Every trajectory ``i`` gets its own seed, derived from the master seed by
``numpy.random.SeedSequence(seed).spawn(n)[i]``, so its content depends on ``i`` and
the master seed only: the same seed gives the same bytes whatever the number of
workers, the batching, or an interruption followed by ``resume``.

The file's train/valid/test split (10 % each held out) is drawn at random from the
master seed, or with ``split_layout="stratified"`` laid out over the design: the trajectories
ordered along a Z-order curve through the swept ranges (by value for one swept
parameter) give one validation and one test trajectory per run of about ten, so every
stretch of the range holds its share of the held-out conditions
(:func:`simulators.store.assign_split`).

Trajectories run in batches (one simulator call, batched FFTs) on a process pool or on
a Dask distributed cluster; results are written in index order as they arrive, with at
most two batches per worker process (or per Dask worker thread) in flight, so memory does
not grow with ``n``. Only the submitting process writes; Dask workers need this package
installed (the same version) and return arrays, never touch the output file.

``device``: the systems with a torch backend (``Simulator.torch_backend``) can run their
batches with torch on a device (``"cpu"``, ``"cuda"``, ``"cuda:N"``) in this process
(``workers=1``, no Dask). With a CUDA device the default batch is large: as many
trajectories as keep one batch's float64 output under ``DEVICE_BATCH_OUTPUT_BYTES``
(2 GiB; e.g. 1985 trajectories of Navier–Stokes at 64^2 with 11 snapshots, 31 at
512^2), which the simulator integrates in chunks capped by device memory. The file's
layout does not depend on the device; its values agree with the numpy path's to
round-off, not bit for bit, so resume a sweep on the backend that started it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import qmc

from simulators.base import Simulator, check_seed
from simulators.registry import get
from simulators.store import (
    FieldStoreWriter,
    Provenance,
    StoreSchema,
    assign_split,
    check_split_layout,
)

#: float64 bytes one simulator call may return on a CUDA device: caps the default batch
DEVICE_BATCH_OUTPUT_BYTES = 2**31

#: how long ``--dask ADDRESS`` waits for the scheduler before a one-line error
DASK_CONNECT_TIMEOUT = "10s"


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: which system, how many trajectories, on which grid, over which ranges.

    Attributes:
        system: simulator name.
        n_trajectories: number of trajectories ``n``.
        resolution: grid points per side.
        t_end: final time (``None``: the system's default).
        n_snapshots: snapshots per trajectory (``None``: the system's default).
        ranges: ``{parameter: (low, high)}`` swept by the Sobol design.
        fixed: ``{parameter: value}`` held constant.
        seed: master seed (design scrambling and trajectory seeds).
        init: initial-condition name.
        box_size: domain side (``None``: the system's default).
        options: numerical options of the simulator's constructor.
        design: explicit per-trajectory parameter values ``{name: (n values)}`` for
            every declared parameter, used instead of a Sobol design (``ranges`` and
            ``fixed`` must then be empty); :meth:`like` builds such a spec from a file.
        split_layout: how the train/valid/test split is laid out
            (``simulators.store.SPLIT_LAYOUTS``):
            ``"stratified"`` (the default: each stretch of the swept range holds its
            share of the validation and test trajectories, over :func:`design_positions`;
            :func:`simulators.store.assign_split`) or ``"random"`` (a seeded permutation,
            the default until 2026-12-07, which can leave an end of the range without
            validation: the checkpoint score is then blind there).
    """

    system: str
    n_trajectories: int
    resolution: int = 64
    t_end: float | None = None
    n_snapshots: int | None = None
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    init: str = "random"
    box_size: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    design: Mapping[str, tuple[float, ...]] | None = None
    split_layout: str = "stratified"

    def key(self) -> str:
        """Canonical JSON of the spec (identifies the job for ``resume``); an explicit
        design enters as its SHA-256 (an HDF5 attribute stays small)."""
        data = asdict(self)
        data["ranges"] = {k: list(v) for k, v in sorted(self.ranges.items())}
        data["fixed"] = dict(sorted(self.fixed.items()))
        if self.design is None:                # the keys of files written before it
            del data["design"]
        else:
            text = json.dumps({k: [float(x) for x in v] for k, v in sorted(self.design.items())})
            data["design"] = hashlib.sha256(text.encode()).hexdigest()
        if self.split_layout == "random":      # random: the keys of files written before it
            del data["split_layout"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def like(cls, path: str | os.PathLike, seed: int,
             per_condition: int | None = None) -> SweepSpec:
        """A sweep of the conditions of a field-store file with new trajectory seeds.

        Every trajectory of ``path`` (a simulator sweep or a generated file) is simulated
        again at its parameters, on its grid, at its snapshot times and with its init
        (``"random"`` when the file records none), its random initial state drawn from
        seed ``seed`` instead: an independent simulator ensemble shaped like the file,
        e.g. the noise floor's second ensemble (``surrogate validate --floor``).
        ``per_condition = k`` instead simulates ``k`` trajectories at each distinct
        parameter set of the file (in the order they first appear), e.g. a reference
        ensemble larger than the file's test split at its held-out conditions.

        Raises:
            ValueError: unreadable file, unknown system, snapshot times that are not
                ``linspace(0, t_end, T)`` (or ``[t_end]``), ``seed`` equal to the
                file's own master seed, or ``per_condition`` not a positive integer.
        """
        if per_condition is not None and (isinstance(per_condition, bool) or not isinstance(
                per_condition, int) or per_condition < 1):
            raise ValueError(f"per_condition must be a positive integer, got {per_condition!r}")
        from simulators.store import FieldStore
        from simulators.store.hdf5 import attribute_text
        with FieldStore(path) as store:
            system, times = store.system, store.times
            design = {name: tuple(float(x) for x in values)
                      for name, values in store.parameters().items()}
            provenance = store.provenance()
            init = store.h5.attrs.get("init")
            resolution, box_size = store.resolution, store.box_size
            n = store.n_trajectories
        init = attribute_text(init) if init else "random"
        if str(provenance.get("producer", "")).startswith("simulator:") \
                and provenance.get("seed") is not None and int(provenance["seed"]) == seed:
            raise ValueError(f"{path}: seed {seed} is the file's own seed; an independent "
                             f"ensemble needs another seed")
        simulator = get(system)
        n_snapshots = times.size
        t_end = None if simulator.static else float(times[-1])
        expected = simulator.snapshot_times(1.0 if simulator.static else t_end, n_snapshots)
        if not np.allclose(times, expected, rtol=1e-9, atol=1e-12):
            raise ValueError(f"{path}: snapshot times {np.round(times, 6).tolist()} are not "
                             f"equally spaced from 0, which a sweep cannot reproduce")
        if per_condition is not None:
            names = list(design)
            distinct = list(dict.fromkeys(zip(*(design[name] for name in names), strict=True)))
            rows = [row for row in distinct for _ in range(per_condition)]
            design = {name: tuple(row[i] for row in rows) for i, name in enumerate(names)}
            n = len(rows)
        return cls(system=system, n_trajectories=n, resolution=resolution, t_end=t_end,
                   n_snapshots=n_snapshots, seed=seed, init=init, box_size=box_size,
                   design=design)


def check_spec(spec: SweepSpec) -> tuple[Simulator, Any, np.ndarray]:
    """Validate a spec before any work; return ``(simulator, grid, times)``.

    Raises:
        ValueError: unknown system or parameter, a parameter both swept and fixed, a
            range outside the declared one or with ``low > high``, bad resolution,
            snapshots, ``t_end``, seed, count or init.
    """
    simulator = get(spec.system, **dict(spec.options))
    if not isinstance(spec.n_trajectories, int) or spec.n_trajectories < 1:
        raise ValueError(f"number of trajectories must be a positive integer, got "
                         f"{spec.n_trajectories!r}")
    check_seed(spec.seed)
    check_split_layout(spec.split_layout)
    if spec.design is not None:
        if spec.ranges or spec.fixed:
            raise ValueError("an explicit design takes no ranges or fixed parameters")
        names = [p.name for p in simulator.parameters]
        if sorted(spec.design) != sorted(names):
            raise ValueError(f"the design gives parameters {sorted(spec.design)}, the system "
                             f"declares {sorted(names)}")
        for name, values in spec.design.items():
            if len(values) != spec.n_trajectories:
                raise ValueError(f"the design gives {len(values)} values of {name!r} for "
                                 f"{spec.n_trajectories} trajectories")
            for value in values:
                simulator.parameter(name).check(value)
    simulator.check_init(spec.init)
    both = set(spec.ranges) & set(spec.fixed)
    if both:
        raise ValueError(f"parameter(s) {', '.join(sorted(both))} both swept and fixed")
    for name, (low, high) in spec.ranges.items():
        parameter = simulator.parameter(name)
        parameter.check(low)
        parameter.check(high)
        if low > high:
            raise ValueError(f"sweep range for {name!r} has low {low:g} > high {high:g}")
    simulator.resolve_parameters(spec.fixed)
    grid = simulator.make_grid(spec.resolution, spec.box_size)
    n_snapshots = spec.n_snapshots
    if n_snapshots is None:
        n_snapshots = 1 if simulator.static else simulator.default_snapshots
    t_end = simulator.default_t_end if spec.t_end is None else spec.t_end
    times = simulator.snapshot_times(t_end, n_snapshots)
    return simulator, grid, times


def sobol_design(simulator: Simulator, n: int, ranges: Mapping[str, tuple[float, float]],
                 fixed: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
    """Parameter values for ``n`` trajectories: ``{name: (n,) float64}`` for every parameter.

    Swept parameters follow a scrambled Sobol design (dimension = number of swept
    parameters, in declaration order); see the module docstring for the mapping.
    """
    values = {p.name: np.full(n, float(fixed.get(p.name, p.default)))
              for p in simulator.parameters}
    swept = [p for p in simulator.parameters if p.name in ranges]
    if not swept:
        return values
    sampler = qmc.Sobol(d=len(swept), scramble=True, seed=np.random.default_rng([seed, 0x50B]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # balance warning for n != 2^m
        unit = sampler.random(n)
    for column, parameter in enumerate(swept):
        low, high = (float(v) for v in ranges[parameter.name])
        u = unit[:, column]
        if parameter.integer:
            drawn = np.floor(low + u * (high - low + 1.0))
            values[parameter.name] = np.clip(drawn, low, high)
        elif parameter.log_scale and low > 0:
            values[parameter.name] = np.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            values[parameter.name] = low + u * (high - low)
        values[parameter.name] = np.clip(values[parameter.name], low, high)
    return values


def design_positions(simulator: Simulator, design: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each trajectory's condition as a point of the unit cube, ``(n, P)`` float64.

    One column per declared parameter that varies over the design, in declaration order:
    ``(x - min) / (max - min)`` over the design, of ``log x`` for a log-scaled parameter
    (``Parameter.log_scale``) with positive values, as the Sobol design draws them.
    Parameters held fixed give no column. What a stratified split is laid out over
    (:func:`simulators.store.assign_split`).
    """
    columns = []
    count = len(next(iter(design.values()))) if design else 0
    for parameter in simulator.parameters:
        values = np.asarray(design[parameter.name], dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        if high <= low:
            continue
        if parameter.log_scale and low > 0:
            values, low, high = np.log(values), math.log(low), math.log(high)
        columns.append((values - low) / (high - low))
    return np.stack(columns, axis=1) if columns else np.zeros((count, 0))


def trajectory_seeds(seed: int, n: int) -> np.ndarray:
    """Seed of each trajectory, ``SeedSequence(seed).spawn(n)``, as (n,) uint64 < 2**63."""
    children = np.random.SeedSequence(seed).spawn(n)
    return np.array([int(child.generate_state(1, np.uint64)[0]) >> 1 for child in children],
                    dtype=np.uint64)


def _run_batch(system: str, options: Mapping[str, Any], parameters: Mapping[str, np.ndarray],
               resolution: int, box_size: float | None, times: np.ndarray, seeds: list[int],
               init: str, device: str | None = None) -> dict[str, np.ndarray]:
    """Worker entry point: integrate one batch and return float32 arrays."""
    simulator = get(system, **dict(options))
    grid = simulator.make_grid(resolution, box_size)
    fields = simulator.simulate(parameters, grid, times, seeds, init=init, device=device)
    return {name: np.asarray(array, dtype=np.float32) for name, array in fields.items()}


def default_batch_size(simulator: Simulator, grid: Any, times: np.ndarray,
                       device: Any = None) -> int:
    """Trajectories per simulator call when ``run_sweep`` is not given ``batch_size``.

    ``simulator.sweep_batch_size`` on numpy and on a torch CPU device; on a CUDA device
    (a resolved ``torch.device``) as many as keep the batch's float64 output under
    :data:`DEVICE_BATCH_OUTPUT_BYTES` (at least ``sweep_batch_size``).
    """
    if device is None or device.type != "cuda":
        return simulator.sweep_batch_size
    values = sum(2 if spec.rank == 1 else 1 for spec in simulator.fields) \
        * len(times) * grid.resolution**2
    return max(simulator.sweep_batch_size, DEVICE_BATCH_OUTPUT_BYTES // (8 * values))


class _InlineExecutor(Executor):
    """Runs submitted calls immediately in this process (``workers=1``)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # propagated through future.result()
            future.set_exception(error)
        return future


def _executor(workers: int, dask_address: str | None) -> tuple[Executor, Any, int]:
    """(executor, Dask client or None, number of batches that can run at once)."""
    if dask_address:
        try:
            from distributed import Client
        except ImportError:
            raise ValueError("--dask needs the optional dependency: pip install "
                             "'physics-surrogate[dask]'") from None
        try:
            client = Client(dask_address, timeout=DASK_CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            raise ValueError(f"cannot connect to the Dask scheduler at {dask_address}: "
                             f"{error}") from None
        # keep every worker thread of the cluster busy (it may grow later; at least one)
        slots = max(1, sum(client.nthreads().values()))
        return client.get_executor(), client, slots
    if workers == 1:
        return _InlineExecutor(), None, 1
    return (ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")), None,
            workers)


def run_sweep(spec: SweepSpec, path: str | os.PathLike, *, workers: int = 1,
              batch_size: int | None = None, overwrite: bool = False, resume: bool = False,
              progress: bool = True, dask_address: str | None = None,
              dataset_name: str = "", device: str | None = None) -> Path:
    """Run a sweep and write it to one field-store file (atomic; resumable).

    Args:
        spec: the sweep.
        path: output ``.h5`` file; it appears only when every trajectory is written.
        workers: worker processes (``1``: run in this process).
        batch_size: trajectories per simulator call (default: the system's
            ``sweep_batch_size``, larger on a CUDA device: :func:`default_batch_size`);
            does not change any output byte (on a given backend).
        overwrite: replace an existing output file.
        resume: continue from ``<path>.partial`` left by an interrupted run of the same
            spec (without it, a stale partial file is replaced).
        progress: show a tqdm progress bar on stderr.
        dask_address: run the batches on the Dask scheduler at this address instead.
        dataset_name: ``dataset_name`` root attribute (default: the system name).
        device: ``None`` (numpy) or a torch device string (``"cpu"``, ``"cuda"``,
            ``"cuda:N"``) for systems with a torch backend; only with ``workers=1`` and
            no ``dask_address``.

    Returns:
        The path of the finished file.

    Raises:
        ValueError: a bad spec, ``workers`` or Dask address; a device with ``workers > 1``
            or ``dask_address``, for a system without a torch backend, or unknown or
            absent (no CUDA GPU) — all before any file is created.
    """
    from tqdm.auto import tqdm

    simulator, grid, times = check_spec(spec)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if device is not None and (workers > 1 or dask_address):
        raise ValueError(f"device {device!r} runs the sweep in this process: it cannot be "
                         f"combined with {'a Dask scheduler' if dask_address else 'workers > 1'}")
    resolved = simulator.check_device(device)
    batch_size = batch_size or default_batch_size(simulator, grid, times, resolved)
    n = spec.n_trajectories
    if spec.design is None:
        design = sobol_design(simulator, n, spec.ranges, spec.fixed, spec.seed)
    else:
        design = {name: np.asarray(values, dtype=np.float64)
                  for name, values in spec.design.items()}
    seeds = trajectory_seeds(spec.seed, n)
    schema = StoreSchema.from_simulator(simulator, grid, times, dataset_name=dataset_name,
                                        init=spec.init)
    provenance = Provenance(producer=f"simulator:{spec.system}", seed=spec.seed)
    in_flight: dict[int, Future] = {}
    writer = bar = None
    # connect first (a bad --dask address writes nothing); process pools start lazily
    executor, client, slots = _executor(workers, dask_address)
    window = 2 * slots     # batches in flight: results are written in order as they arrive
    try:
        # the writer checks the output path before it creates anything
        writer = FieldStoreWriter(
            path, schema, n, provenance, overwrite=overwrite, resume=resume,
            resume_key=spec.key(), extra_attrs={"init": spec.init},
            **({"split": assign_split(n, spec.seed, design_positions(simulator, design)),
                "split_layout": "stratified"} if spec.split_layout == "stratified" else {}))
        pending = writer.pending
        batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
        bar = tqdm(total=n, initial=n - len(pending), desc=f"simulate {spec.system}",
                   unit="traj", disable=not progress)
        next_submit = 0
        for position, batch in enumerate(batches):
            while next_submit < len(batches) and next_submit < position + window:
                indices = batches[next_submit]
                in_flight[next_submit] = executor.submit(
                    _run_batch, spec.system, dict(spec.options),
                    {name: values[indices] for name, values in design.items()},
                    grid.resolution, spec.box_size, times,
                    [int(seeds[i]) for i in indices], spec.init, device)
                next_submit += 1
            result = in_flight.pop(position).result()
            for offset, index in enumerate(batch):
                writer.write(index, {name: float(values[index]) for name, values in design.items()},
                             {name: array[offset] for name, array in result.items()},
                             seed=int(seeds[index]))
            bar.update(len(batch))
        return writer.finalize()
    except BaseException:
        for future in in_flight.values():
            future.cancel()
        if writer is not None:
            writer.close()
        raise
    finally:
        if bar is not None:
            bar.close()
        try:
            executor.shutdown(wait=True, cancel_futures=True)
        except TypeError:          # dask's ClientExecutor takes no cancel_futures
            executor.shutdown(wait=True)
        if client is not None:
            client.close()
