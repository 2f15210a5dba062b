"""Which layout an HDF5 file has, from its structure alone (group names, root attributes).

- ``ours`` / ``the_well``: a ``dimensions`` group beside at least one of ``t0_fields``,
  ``t1_fields``, ``t2_fields``; ours when the root also has ``format_version`` and
  ``producer``.
- ``pdebench_seeds``: every top-level name is a number and the first is a group holding
  ``data``.
- ``pdebench_arrays``: an ``x-coordinate`` beside ``tensor`` or one of the compressible
  Navier–Stokes variables.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py

from surrogate.interop.backend import _H5_ERRORS, LayoutError, _member, _open, _unreadable
from surrogate.interop.pdebench import _ARRAY_FIELDS

#: layout names returned by :func:`detect_layout`
LAYOUTS = ("ours", "the_well", "pdebench_seeds", "pdebench_arrays")


def _detect(handle: h5py.File, path: Path) -> str:
    try:
        keys = list(handle.keys())
    except (OSError, RuntimeError, KeyError) as error:
        raise _unreadable(path, error, "HDF5 structure") from None
    if not keys:
        raise LayoutError(f"{path}: unknown layout: the HDF5 file holds no groups or "
                          f"datasets")
    if "dimensions" in keys and any(f"t{rank}_fields" in keys for rank in range(3)):
        attrs = handle.attrs
        return "ours" if "format_version" in attrs and "producer" in attrs else "the_well"
    if all(re.fullmatch(r"\d+", key) for key in keys):
        first = _member(handle, keys[0], path)
        if isinstance(first, h5py.Group) and "data" in first:
            return "pdebench_seeds"
    if "x-coordinate" in keys and ("tensor" in keys or any(
            name in keys for name in _ARRAY_FIELDS)):
        return "pdebench_arrays"
    shown = ", ".join(sorted(keys)[:8]) + (", ..." if len(keys) > 8 else "")
    raise LayoutError(f"{path}: unknown layout (top level holds {shown}); readable "
                      f"layouts: {', '.join(LAYOUTS)} (data/FORMAT.md)")


def detect_layout(path: str | os.PathLike) -> str:
    """Name of the layout of the HDF5 file at ``path``, one of :data:`LAYOUTS`.

    Only the file's structure (group names, root attributes) is looked at.

    Raises:
        LayoutError: one line naming the file: missing, a directory, empty, not HDF5
            (truncated or another format), or of no known layout.
    """
    path, handle = _open(path)
    try:
        return _detect(handle, path)
    except LayoutError:
        raise
    except _H5_ERRORS as error:
        raise _unreadable(path, error) from None
    finally:
        handle.close()
