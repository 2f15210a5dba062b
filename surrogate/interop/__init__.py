"""Other people's 2-D HDF5 field files: detect their layout, read them, convert them to ours.

Four layouts are recognised (``data/FORMAT.md``, "Other layouts read by the package"):

``ours``
    files written by :mod:`simulators.store` (root attributes ``format_version`` and
    ``producer``); a special case of ``the_well``.
``the_well``
    The Well's published layout: root attributes ``dataset_name``, ``grid_type``,
    ``n_spatial_dims``, ``n_trajectories``, ``simulation_parameters``; groups
    ``dimensions/``, ``scalars/``, ``boundary_conditions/``, ``t0_fields/``
    ``(B, T, Nx, Ny)``, ``t1_fields/`` ``(B, T, Nx, Ny, 2)``, ``t2_fields/``
    ``(B, T, Nx, Ny, 2, 2)``. A field with ``time_varying=False`` has no ``T`` axis,
    one with ``sample_varying=False`` no ``B`` axis, and a spatial axis whose
    ``dim_varying`` entry is False is either absent or of length 1.
``pdebench_seeds``
    PDEBench's per-seed 2-D files (diffusion-reaction, shallow water): groups ``"0000"``,
    ``"0001"``, ... each with ``data`` ``(T, Nx, Ny, C)`` and ``grid/x`` ``(Nx,)``,
    ``grid/y`` ``(Ny,)``, ``grid/t`` ``(T,)``.
``pdebench_arrays``
    PDEBench's single-array files: compressible Navier–Stokes (``density``, ``Vx``,
    ``Vy``, ``pressure``, each ``(B, T, Nx, Ny)``) or ``tensor`` ``(B, T, Nx, Ny)`` (Darcy
    flow: ``(B, 1, Nx, Ny)`` with the coefficient ``nu`` ``(B, Nx, Ny)``), with
    ``x-coordinate`` ``(Nx,)``, ``y-coordinate`` ``(Ny,)`` and, optionally,
    ``t-coordinate`` ``(T,)`` or ``(T + 1,)``.

:func:`open_fields` turns any of them into one :class:`xarray.Dataset` with the named
dimensions ``trajectory``, ``time``, ``x``, ``y`` (``component`` for vectors,
``component_i``/``component_j`` for rank-2 tensors). Every data variable carries the
attribute ``role``: ``"field"`` (a spatial field), ``"parameter"`` (one number per
trajectory, or one for the file), ``"time_series"`` (a scalar that changes in time),
``"metadata"`` (bookkeeping such as our ``split``) or ``"extra"`` (a dataset whose axes
the layout does not name). Field data stay on disk until indexed (xarray lazy
indexing over h5py, no dask needed): opening a file reads only coordinates,
parameters and attributes. Close the dataset (or use ``with``) to close the file.

:func:`convert` writes any of them in our format through
:class:`simulators.store.FieldStoreWriter` (so ``surrogate check`` passes), one
trajectory in memory at a time, atomically. Links to other files (HDF5 external
links, virtual datasets) are never followed.

The package, one module per format plus what they share:

- :mod:`~surrogate.interop.backend`: :class:`LayoutError`, guarded h5py access (links to
  other files refused), attribute values as text / JSON / netCDF, and the lazy
  h5py-backed arrays under every field;
- :mod:`~surrogate.interop.detect`: :data:`LAYOUTS`, :func:`detect_layout`;
- :mod:`~surrogate.interop.the_well`, :mod:`~surrogate.interop.ours`,
  :mod:`~surrogate.interop.pdebench`: one reader per layout;
- :mod:`~surrogate.interop.open`: :func:`open_fields`, :func:`field_names`,
  :func:`parameter_names`, :func:`describe_layout`;
- :mod:`~surrogate.interop.conversion`: :func:`convert`.
"""

from surrogate.interop.backend import LayoutError
from surrogate.interop.conversion import convert
from surrogate.interop.detect import LAYOUTS, detect_layout
from surrogate.interop.open import describe_layout, field_names, open_fields, parameter_names

__all__ = [
    "LAYOUTS",
    "LayoutError",
    "convert",
    "describe_layout",
    "detect_layout",
    "field_names",
    "open_fields",
    "parameter_names",
]
