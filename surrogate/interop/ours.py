"""Our own files (data/FORMAT.md) read like any other layout, and converted as they are.

Our format is The Well's layout plus: the root attributes ``format_version`` and
``producer`` (which is how :mod:`surrogate.interop.detect` tells it apart), a
``system_description`` (JSON) that fixes the order of the fields (the GAN's channel
order), the per-trajectory datasets ``split``, ``trajectory_seed`` and ``completed``,
and a ``stats`` group of per-field statistics. :func:`_read_ours` reads a file as
:mod:`surrogate.interop.the_well` does and adds these; :func:`_as_stored` gives what
converting it without naming a system keeps (its own schema, parameters and seeds,
read through :class:`simulators.store.FieldStore`).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from simulators.store import FieldStore, FieldStoreError, StoreSchema, require_complete
from surrogate.interop.backend import LayoutError, _attrs, _group, _json_safe, _member, _whole
from surrogate.interop.the_well import _well_parts

#: our per-trajectory bookkeeping datasets, read as ``metadata`` (and not carried over as
#: ``source_metadata`` by a conversion: the written file has its own)
_OUR_METADATA = ("split", "trajectory_seed", "completed")


def _schema_order(data_vars: dict[str, xr.Variable], description: str
                  ) -> dict[str, xr.Variable]:
    """Our fields in the order of ``system_description`` (the GAN's channel order)."""
    try:
        order = [item["name"] for item in json.loads(description)["fields"]]
    except (ValueError, KeyError, TypeError):
        return data_vars
    rank = {name: index for index, name in enumerate(order)}
    return dict(sorted(data_vars.items(), key=lambda item: rank.get(item[0], len(rank))))


def _read_ours(handle: h5py.File, path: Path) -> xr.Dataset:
    data_vars, coords, root_attrs, n = _well_parts(handle, path)
    data_vars = _schema_order(data_vars, root_attrs.get("system_description", ""))
    for name in _OUR_METADATA:
        dataset = _member(handle, name, path, required=False)
        if isinstance(dataset, h5py.Dataset) and dataset.shape == (n,):
            data_vars[name] = xr.Variable(("trajectory",), _whole(dataset, path),
                                          {**_attrs(dataset), "role": "metadata"})
    stats = _group(handle, "stats", path, required=False)
    if stats is not None:
        root_attrs["stats"] = json.dumps({key: {k: _json_safe(v) for k, v in
                                                stats[key].attrs.items()}
                                          for key in stats})
    return xr.Dataset(data_vars, coords=coords, attrs=root_attrs)


def _as_stored(path: Path) -> tuple[StoreSchema, dict[str, np.ndarray], np.ndarray, int]:
    """A complete file's own schema, parameters ``(B,)`` float64, seeds ``(B,)`` uint64 and
    file seed, each parameter checked against its declared range."""
    with FieldStore(path) as store:
        try:
            require_complete(store, path)
        except FieldStoreError as error:
            raise LayoutError(f"{error}; nothing to convert") from None
        schema = store.schema
        seeds = np.asarray(store.seeds, dtype=np.uint64)
        seed = int(store.h5.attrs.get("seed", 0))
        parameters = {k: np.asarray(v, dtype=np.float64)
                      for k, v in store.parameters().items()}
        for parameter in schema.parameters:
            values = parameters[parameter.name]
            outside = ~((values >= parameter.low) & (values <= parameter.high))
            if np.any(outside):
                index = int(np.flatnonzero(outside)[0])
                raise LayoutError(f"{path}: scalars/{parameter.name} = "
                                  f"{values[index]:g} at trajectory {index} is outside "
                                  f"the declared range {parameter.range_text}")
    return schema, parameters, seeds, seed
