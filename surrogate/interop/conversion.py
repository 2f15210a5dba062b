"""Conversion of a file of any layout to our format: :func:`convert`.

The file is opened with :func:`surrogate.interop.open.open_fields`; :func:`_plan` checks
that its Dataset fits our format (one cartesian, square, uniform grid; one time grid;
no time-varying scalars or unnamed datasets; periodic boundaries unless allowed) and
decides the schema (the file's own for ours, a registered system's, or one built from
the file: :func:`_registered_schema`, :func:`_generic_parameters`), where each of our
fields comes from (rank-2 fields split into rows) and the provenance attributes;
:func:`_convert` then writes it through :class:`simulators.store.FieldStoreWriter`, one
trajectory at a time (:func:`_trajectory_values`), atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from simulators.base import FieldSpec, Parameter
from simulators.messages import first_line
from simulators.store import (
    FieldStoreError,
    FieldStoreWriter,
    Provenance,
    StoreSchema,
    check_output_path,
    partial_path,
)
from surrogate.interop.backend import (
    _H5_ERRORS,
    LayoutError,
    _json_safe,
    _unreadable,
    attribute_text,
)
from surrogate.interop.open import field_names, open_fields, parameter_names
from surrogate.interop.ours import _OUR_METADATA, _as_stored

#: relative tolerance on the spacing of a uniform grid stored in float32
_GRID_RTOL = 1e-5


@dataclass
class _Plan:
    """What :func:`convert` writes: schema, where each field comes from, parameters."""

    schema: StoreSchema
    sources: dict[str, tuple[str, int | None]]       # our field -> (variable, t2 row)
    parameters: dict[str, np.ndarray]                # name -> (B,) float64
    seeds: np.ndarray                                # (B,) uint64
    seed: int
    extra_attrs: dict[str, Any] = field(default_factory=dict)
    #: an ``ours`` source's split codes (B,) and layout, kept; ``None``: drawn anew
    split: np.ndarray | None = None
    split_layout: str = "random"


def _uniform_axis(values: np.ndarray, axis: str, path: Path) -> float:
    """Spacing of a uniform grid axis (the store's grids are uniform and periodic)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        raise LayoutError(f"{path}: coordinate {axis} has {values.size} point(s); need 2 or "
                          f"more")
    spacing = (values[-1] - values[0]) / (values.size - 1)
    steps = np.diff(values)
    if not spacing > 0 or np.max(np.abs(steps - spacing)) > _GRID_RTOL * spacing:
        raise LayoutError(f"{path}: coordinate {axis} is not a uniform increasing grid; our "
                          f"format (data/FORMAT.md) holds uniform periodic grids only")
    return float(spacing)


def _field_sources(ds: xr.Dataset, path: Path) -> list[tuple[FieldSpec, str, int | None]]:
    """Our fields: rank 0 and 1 as they are, rank 2 split into its rows ``<name>_<i>``."""
    out = []
    for name in field_names(ds):
        var = ds[name]
        attrs = var.attrs
        units = attribute_text(attrs.get("units", ""))
        long_name = attribute_text(attrs.get("long_name", name))
        if "component_i" in var.dims:
            for row, label in enumerate(np.asarray(ds["component_i"].values).tolist()):
                out.append((FieldSpec(f"{name}_{label}", units,
                                      f"{long_name} (row {label} of the rank-2 tensor)", 1),
                            name, row))
        else:
            out.append((FieldSpec(name, units, long_name, 1 if "component" in var.dims
                                  else 0), name, None))
    names = [spec.name for spec, _, _ in out]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise LayoutError(f"{path}: splitting rank-2 fields gives duplicate names "
                          f"{duplicated}")
    return out


def _generic_parameters(ds: xr.Dataset, n: int, path: Path
                        ) -> tuple[tuple[Parameter, ...], dict[str, np.ndarray]]:
    """Parameters declared from the file: range = the values' [min, max]."""
    declared, values = [], {}
    for name in parameter_names(ds):
        array = np.asarray(ds[name].values)
        if array.dtype.kind not in "iuf":
            raise LayoutError(f"{path}: parameter {name!r} is not numeric ({array.dtype})")
        array = np.broadcast_to(array.astype(np.float64), (n,)) if array.ndim == 0 \
            else array.astype(np.float64)
        if not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            raise LayoutError(f"{path}: parameter {name!r} is NaN/Inf in trajectory {bad}")
        low, high = float(array.min()), float(array.max())
        attrs = ds[name].attrs
        declared.append(Parameter(
            name=name, default=low, low=low, high=high,
            units=attribute_text(attrs.get("units", "")),
            doc=attribute_text(attrs.get("long_name", f"{name} (from the source file)")),
            integer=array.dtype.kind in "iu" or ds[name].dtype.kind in "iu"))
        values[name] = np.ascontiguousarray(array)
    return tuple(declared), values


def _check_time_series(ds: xr.Dataset, path: Path) -> None:
    for name, var in ds.data_vars.items():
        role = var.attrs.get("role")
        if role == "time_series":
            raise LayoutError(f"{path}: scalar {name!r} changes in time; our format holds "
                              f"one value per trajectory (scalars/), so it cannot be "
                              f"converted without loss")
        if role == "extra":
            raise LayoutError(f"{path}: dataset {name!r} of shape {var.shape} has no place "
                              f"in our format; it cannot be converted without loss")


def _periodicity(ds: xr.Dataset, layout: str, allow_nonperiodic: bool, path: Path) -> str:
    text = ds.attrs.get("boundary_conditions")
    if text is None:
        return "not recorded in the source file" if layout.startswith("pdebench") else "{}"
    bcs = json.loads(text)
    other = sorted({attribute_text(entry.get("bc_type", "?")) for entry in bcs.values()
                    if attribute_text(entry.get("bc_type", "?")).upper() != "PERIODIC"})
    if other and not allow_nonperiodic:
        raise LayoutError(f"{path}: boundary conditions {', '.join(other)} are not periodic; "
                          f"our format declares periodic boundaries (pass "
                          f"allow_nonperiodic=True / --allow-nonperiodic to convert anyway, "
                          f"keeping the source's in source_boundary_conditions)")
    return text


def _plan(ds: xr.Dataset, path: Path, system: str | None, allow_nonperiodic: bool,
          allow_rounding: bool) -> _Plan:
    layout = ds.attrs["layout"]
    _check_time_series(ds, path)
    if "time" not in ds.coords:
        raise LayoutError(f"{path}: trajectories have different time grids; our format "
                          f"holds one time grid per file")
    if ds.attrs.get("grid_type", "cartesian") != "cartesian" or not {"x", "y"} <= set(ds.dims):
        raise LayoutError(f"{path}: grid {ds.attrs.get('grid_type')!r} with dims "
                          f"{list(ds.dims)}; our format holds cartesian x, y grids")
    n, nx, ny = ds.sizes.get("trajectory", 1), ds.sizes["x"], ds.sizes["y"]
    if nx != ny:
        raise LayoutError(f"{path}: grid is {nx} x {ny}; our format holds square N x N grids")
    times = np.asarray(ds["time"].values, dtype=np.float64)
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise LayoutError(f"{path}: snapshot times are not finite and strictly increasing")
    sources = _field_sources(ds, path)
    extra: dict[str, Any] = {
        "source_file": path.name, "source_layout": layout,
        "source_attrs": json.dumps(_json_safe({k: v for k, v in ds.attrs.items()
                                               if k not in ("layout", "source")})),
        "source_boundary_conditions": _periodicity(ds, layout, allow_nonperiodic, path),
        "source_fields": json.dumps({spec.name: {
            "variable": name, "row": row, "dims": list(ds[name].dims),
            "dtype": str(ds[name].dtype),
            "source_dataset": attribute_text(ds[name].attrs.get("source_dataset", name))}
            for spec, name, row in sources}),
    }
    kept = {*_OUR_METADATA, "t_coordinate_source"}
    metadata = {name: _json_safe(np.asarray(var.values)) for name, var in ds.data_vars.items()
                if var.attrs.get("role") == "metadata" and name not in kept}
    if metadata:
        extra["source_metadata"] = json.dumps(metadata)
    cast = [spec.name for spec, name, _ in sources if ds[name].dtype != np.float32]
    if cast:
        extra["cast_to_float32"] = json.dumps({"fields": cast,
                                               "rounding_allowed": bool(allow_rounding)})
    if "t_coordinate_source" in ds:
        extra["source_time"] = np.asarray(ds["t_coordinate_source"].values, dtype=np.float64)

    split, split_layout = None, "random"
    if layout == "ours" and "split" in ds:
        split = np.asarray(ds["split"].values, dtype=np.int8)
        split_layout = attribute_text(ds["split"].attrs.get("layout", "random"))
    if layout == "ours" and system is None:
        schema, parameters, seeds, seed = _as_stored(path)
        return _Plan(schema, {spec.name: (name, row) for spec, name, row in sources},
                     parameters, seeds, seed, extra, split, split_layout)

    spacing = _uniform_axis(ds["x"].values, "x", path)
    if abs(_uniform_axis(ds["y"].values, "y", path) - spacing) > _GRID_RTOL * spacing:
        raise LayoutError(f"{path}: x and y spacings differ; our format holds square cells")
    box_size = spacing * nx
    if layout != "ours":
        extra["source_x"] = np.asarray(ds["x"].values, dtype=np.float64)
        extra["source_y"] = np.asarray(ds["y"].values, dtype=np.float64)
    declared, parameters = _generic_parameters(ds, n, path)
    specs = tuple(spec for spec, _, _ in sources)
    dataset_name = attribute_text(ds.attrs.get("dataset_name", path.stem))
    name = system or (dataset_name if layout in ("ours", "the_well") else
                      "pdebench_2d_" + "_".join(spec.name for spec in specs))
    time_units = attribute_text(ds["time"].attrs.get("units", ""))
    length_units = attribute_text(ds["x"].attrs.get("units", ""))
    import simulators
    if name in simulators.available():
        # our own files record the initial condition ("random" when they record none,
        # as for `surrogate simulate --like`); other sources' is unknown
        init = attribute_text(ds.attrs.get("init") or "random") if layout == "ours" else None
        schema = _registered_schema(name, specs, parameters, times, nx, box_size, path, init)
        parameters = {p.name: parameters[p.name] for p in schema.parameters}
    elif system is not None:
        raise LayoutError(f"{path}: unknown system {system!r} (available: "
                          f"{', '.join(simulators.available())}); leave it out to convert "
                          f"with the fields and parameters the file declares")
    else:
        schema = StoreSchema(system=name, parameters=declared, fields=specs, invariants=(),
                             times=times, resolution=nx, box_size=box_size,
                             time_units=time_units, length_units=length_units,
                             dataset_name=dataset_name)
    if "trajectory_seed" in ds:
        seeds = np.asarray(ds["trajectory_seed"].values, dtype=np.uint64)
    elif "source_group" in ds.coords:
        seeds = np.asarray([int(v) for v in ds["source_group"].values], dtype=np.uint64)
    else:
        seeds = np.zeros(n, dtype=np.uint64)
    seed = int(ds.attrs.get("seed", 0)) if layout == "ours" else 0
    return _Plan(schema, {spec.name: (var, row) for spec, var, row in sources}, parameters,
                 seeds, seed, extra, split, split_layout)


def _registered_schema(system: str, specs: Sequence[FieldSpec],
                       parameters: Mapping[str, np.ndarray], times: np.ndarray,
                       resolution: int, box_size: float, path: Path,
                       init: str | None = None) -> StoreSchema:
    """The registered system's schema, if the file's fields and parameters match it."""
    import simulators
    from simulators.grid import PeriodicGrid
    simulator = simulators.get(system)
    declared = [(f.name, f.rank) for f in simulator.fields]
    found = [(f.name, f.rank) for f in specs]
    if sorted(declared) != sorted(found):
        raise LayoutError(f"{path}: fields {found} do not match system {system!r}'s "
                          f"{declared} (name, rank)")
    names = [p.name for p in simulator.parameters]
    missing = [p for p in names if p not in parameters]
    unused = [p for p in parameters if p not in names]
    if missing or unused:
        raise LayoutError(f"{path}: parameters {sorted(parameters)} do not match system "
                          f"{system!r}'s {names}" + (f" (missing {missing})" if missing else "")
                          + (f" (not declared: {unused})" if unused else ""))
    for parameter in simulator.parameters:
        for index, value in enumerate(parameters[parameter.name]):
            try:
                parameter.check(value)
            except ValueError as error:
                raise LayoutError(f"{path}: trajectory {index}: {error}") from None
    # init-specific invariants (e.g. a fixed initial energy) only for a known init
    return StoreSchema.from_simulator(simulator, PeriodicGrid(resolution, box_size), times,
                                      init=init)


def _trajectory_values(ds: xr.Dataset, name: str, row: int | None, rank: int, index: int,
                       allow_rounding: bool, path: Path) -> np.ndarray:
    """One trajectory of one of our fields, ``(T, N, N[, 2])`` float32, broadcast as needed."""
    var = ds[name]
    if "trajectory" in var.dims:
        var = var.isel(trajectory=index)
    if row is not None:
        var = var.isel(component_i=row).rename(component_j="component")
    target = ("time", "x", "y") + (("component",) if rank else ())
    try:
        values = np.asarray(var.values)
    except OSError as error:
        raise LayoutError(f"{path}: field {name!r}, trajectory {index}: unreadable "
                          f"({first_line(error, limit=None)})") from None
    view = xr.Variable(var.dims, values)
    missing = {d: ds.sizes[d] for d in target if d not in view.dims}
    if missing:
        view = view.set_dims({**missing, **dict(view.sizes)})
    values = view.transpose(*target).values
    if values.dtype != np.float32:
        with np.errstate(all="ignore"):
            converted = values.astype(np.float32)
            exact = np.array_equal(converted.astype(values.dtype), values, equal_nan=True)
        if not exact and not allow_rounding:
            raise LayoutError(f"{path}: field {name!r} is {values.dtype} and its values do not "
                              f"fit float32 exactly (trajectory {index}); pass "
                              f"allow_rounding=True / --allow-rounding to round them to the "
                              f"nearest float32")
        values = converted
    finite = np.isfinite(values).reshape(values.shape[0], -1).all(axis=1)
    if not finite.all():
        raise LayoutError(f"{path}: field {name!r} has NaN/Inf in trajectory {index} at time "
                          f"index {int(np.flatnonzero(~finite)[0])}; our format holds finite "
                          f"values only")
    return np.ascontiguousarray(values)


def convert(source: str | os.PathLike, output: str | os.PathLike, *, system: str | None = None,
            overwrite: bool = False, allow_rounding: bool = False,
            allow_nonperiodic: bool = False) -> Path:
    """Convert a 2-D field file of any supported layout to our format (data/FORMAT.md).

    Field values are copied bit for bit when they are float32 (and when they are float64,
    float16 or integers whose every value is exactly a float32); other float64 values
    are refused unless ``allow_rounding`` (then rounded to the nearest float32). Every
    field cast from another dtype is listed in the root attribute ``cast_to_float32``
    (JSON: ``{"fields": [...], "rounding_allowed": bool}``). Fields that do not vary
    in time, across trajectories or along an axis are repeated along it; rank-2 fields
    ``(…, 2, 2)`` become two vector fields ``<name>_<row label>``; PDEBench ``Vx``, ``Vy``
    become the vector ``velocity``. Non-square, non-uniform or non-cartesian grids,
    time-varying scalars, NaN/Inf values and datasets without a place in our format are
    refused (nothing is dropped silently).

    The schema: the file's own for ``ours``; with ``system`` (a registered simulator)
    that system's parameters, fields, ranges and invariants, which the file must match;
    otherwise one built from the file (its fields, its per-trajectory parameters with
    the values' [min, max] as declared range, no invariants, system name = The Well's
    ``dataset_name`` or ``pdebench_2d_<fields>``). The grid becomes ``x_i = i L / N`` with
    ``L = N dx``; the source coordinates are kept in ``source_x``, ``source_y`` (and a
    T + 1 PDEBench time coordinate in ``source_time``).

    Provenance: ``producer = "converted:<layout>"``, ``source_file`` (the source's name),
    ``source_layout``, ``source_attrs`` (JSON), ``source_fields`` (JSON: where each field
    came from), ``source_boundary_conditions``, ``source_metadata`` (JSON: per-trajectory
    metadata variables such as PDEBench seed-group text attributes). Paths stored inside
    the source are never followed.

    Memory: one trajectory of one field at a time (plus the writer's per-trajectory copy).
    Atomic: written to ``<output>.partial`` and renamed; on any error the partial file is
    removed and an existing ``output`` is left untouched.

    Args:
        source: file to read (any layout of :data:`LAYOUTS`).
        output: file to write.
        system: registered simulator name to convert as (its schema), or None.
        overwrite: replace an existing ``output``.
        allow_rounding: round float64 fields that do not fit float32 exactly.
        allow_nonperiodic: convert a Well file whose boundary conditions are not periodic
            (our format declares periodic boundaries).
    Returns:
        The path of the written file.
    Raises:
        LayoutError: one line naming the file and what is wrong.
    """
    source = Path(source)
    output = check_output_path(output, overwrite)
    if source.exists() and output.exists() and os.path.samefile(source, output):
        raise LayoutError(f"{output}: is the source file; write to another name")
    with open_fields(source) as ds:
        try:
            return _convert(ds, source, output, system, overwrite, allow_rounding,
                            allow_nonperiodic)
        except FieldStoreError:
            raise
        except _H5_ERRORS as error:        # h5py on a damaged file, past open_fields's checks
            raise _unreadable(source, error) from None


def _convert(ds: xr.Dataset, source: Path, output: Path, system: str | None, overwrite: bool,
             allow_rounding: bool, allow_nonperiodic: bool) -> Path:
    """:func:`convert` once the source is open (errors name ``source``)."""
    plan = _plan(ds, source, system, allow_nonperiodic, allow_rounding)
    schema = plan.schema
    n = int(ds.sizes.get("trajectory", 1))
    ranks = {spec.name: spec.rank for spec in schema.fields}
    provenance = Provenance(producer=f"converted:{ds.attrs['layout']}", seed=plan.seed)
    writer = FieldStoreWriter(output, schema, n, provenance, overwrite=overwrite,
                              extra_attrs=plan.extra_attrs, split=plan.split,
                              split_layout=plan.split_layout)
    try:
        for index in range(n):
            arrays = {name: _trajectory_values(ds, var, row, ranks[name], index,
                                               allow_rounding, source)
                      for name, (var, row) in plan.sources.items()}
            writer.write(index, {k: float(v[index]) for k, v in plan.parameters.items()},
                         arrays, seed=int(plan.seeds[index]))
        return writer.finalize()
    except BaseException:
        writer.close()
        partial_path(output).unlink(missing_ok=True)
        raise
