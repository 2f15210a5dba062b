"""The HDF5 field store: writer, reader and format checker (spec: ``data/FORMAT.md``).

One file holds ``B`` trajectories of one system on one grid, laid out as in The Well
(``t0_fields/``, ``t1_fields/``, ``scalars/``, ``dimensions/``,
``boundary_conditions/``), with per-trajectory physical parameters in ``scalars/``,
HDF5 dimension scales so that ``xarray.open_dataset(path, engine="h5netcdf",
group="t0_fields")`` shows the named dims ``trajectory, time, x, y``, float32 fields
chunked one snapshot per chunk (with Fletcher-32 checksums), normalisation statistics
of the training split computed when the file is finalised, and provenance attributes.

Writes are atomic: data goes to ``<path>.partial``; :meth:`FieldStoreWriter.finalize`
computes the statistics, flushes, fsyncs and renames the file to ``<path>``. A crash
leaves at most a ``.partial`` file, which ``resume=True`` continues.

One idea per module; every public name is re-exported here:

* :mod:`~simulators.store.schema`: :class:`StoreSchema` (system, parameters, fields,
  grid, times) and the train/valid/test split policy (:func:`assign_split`);
* :mod:`~simulators.store.writer`: :class:`FieldStoreWriter`, :class:`Provenance`,
  output paths (:func:`partial_path`, :func:`check_output_path`);
* :mod:`~simulators.store.statistics`: :func:`write_statistics` (training-split
  normalisation statistics) and :class:`RunningMoments` (streaming, pairwise-updated
  mean and variance);
* :mod:`~simulators.store.hdf5`: opening untrusted files safely (:func:`open_hdf5`,
  :func:`foreign_links`, :func:`printable`, size limits, :class:`FieldStoreError`);
* :mod:`~simulators.store.rules`: the structural rules that the reader and the checker
  share, and :func:`require_complete`;
* :mod:`~simulators.store.reader`: :class:`FieldStore`, the lazy read-only view;
* :mod:`~simulators.store.describe`: :func:`describe_file` (``surrogate info``);
* :mod:`~simulators.store.checker`: :func:`check_file` (``surrogate check``).
"""

from simulators.store.checker import FIELD_ATTRS, REQUIRED_ROOT_ATTRS, check_file
from simulators.store.describe import describe_file
from simulators.store.hdf5 import (
    MAX_INDEX_ELEMENTS,
    MAX_RESOLUTION,
    FieldStoreError,
    foreign_links,
    open_hdf5,
    printable,
)
from simulators.store.reader import FieldStore
from simulators.store.rules import require_complete
from simulators.store.schema import (
    FORMAT_VERSION,
    SPLIT_FRACTIONS,
    SPLIT_LAYOUTS,
    SPLIT_NAMES,
    StoreSchema,
    assign_split,
    check_split_layout,
    morton_key,
)
from simulators.store.statistics import RunningMoments, write_statistics
from simulators.store.writer import (
    PARTIAL_SUFFIX,
    FieldStoreWriter,
    Provenance,
    check_output_path,
    command_line,
    package_version,
    partial_path,
)

__all__ = [
    "FIELD_ATTRS",
    "FORMAT_VERSION",
    "MAX_INDEX_ELEMENTS",
    "MAX_RESOLUTION",
    "PARTIAL_SUFFIX",
    "REQUIRED_ROOT_ATTRS",
    "SPLIT_FRACTIONS",
    "SPLIT_LAYOUTS",
    "SPLIT_NAMES",
    "FieldStore",
    "FieldStoreError",
    "FieldStoreWriter",
    "Provenance",
    "RunningMoments",
    "StoreSchema",
    "assign_split",
    "check_file",
    "check_output_path",
    "check_split_layout",
    "command_line",
    "describe_file",
    "foreign_links",
    "morton_key",
    "open_hdf5",
    "package_version",
    "partial_path",
    "printable",
    "require_complete",
    "write_statistics",
]
