"""Reading untrusted HDF5 safely: the store's error type, size limits, link refusal and
text that is printed, never interpreted.

A field-store file may be damaged (truncated, flipped bytes) or crafted (huge declared
sizes, links into other files, terminal escapes in attributes). Everything that opens or
reads one goes through these helpers, so that such a file gives one
:class:`FieldStoreError` line naming it instead of a crash, a hang or a huge allocation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np


class FieldStoreError(ValueError):
    """A field-store file is missing, unreadable or does not follow data/FORMAT.md."""


#: the most elements of a dataset that is read whole (coordinates, per-trajectory
#: parameters, split, seeds, completion flags): a damaged or crafted file that declares
#: more is refused instead of allocated (2**26 trajectories is far beyond any real file)
MAX_INDEX_ELEMENTS = 2**26
#: the largest grid side read: one float32 vector snapshot is then at most 512 MiB
MAX_RESOLUTION = 2**13
#: what h5py and numpy raise on a damaged file structure (turned into FieldStoreError)
_READ_ERRORS = (KeyError, TypeError, ValueError, OSError, RuntimeError, IndexError,
                AttributeError, RecursionError)


def open_hdf5(path: str | os.PathLike, error: type[FieldStoreError] = FieldStoreError
              ) -> h5py.File:
    """Open a regular HDF5 file read-only, or raise ``error`` with one line naming it.

    Missing files, directories, non-regular files (a FIFO would block the open), empty
    files and files h5py cannot open (truncated, another format) are refused.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a directory, not an HDF5 file")
    if not path.is_file():         # a FIFO would block the open, a device never ends
        raise error(f"{path}: not a regular file (a pipe, socket or device)")
    if path.stat().st_size == 0:
        raise error(f"{path}: empty file (0 bytes), not HDF5")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise error(f"{path}: not a readable HDF5 file (truncated or another "
                    f"format)") from None


def foreign_links(handle: h5py.File, *, datasets: bool = True) -> list[str]:
    """Members that point outside the file: external links and (with ``datasets``)
    virtual datasets and datasets whose raw data lives in external files. Readers
    refuse them; none is ever followed."""
    links: list[tuple[bytes, int]] = []
    # low-level visit: the callback only records (an exception inside an h5py callback
    # surfaces as SystemError), and no link is followed
    handle.id.links.visit(lambda name, info: links.append((name, info.type)), info=True)
    found = []
    for name, kind in links:
        if kind == h5py.h5l.TYPE_EXTERNAL:
            target = handle.id.links.get_val(name)[0]
            found.append(f"/{attribute_text(name)} is a link to another file "
                         f"({printable(attribute_text(target))})")
        elif kind not in (h5py.h5l.TYPE_HARD, h5py.h5l.TYPE_SOFT):
            found.append(f"/{attribute_text(name)} is a user-defined link (not followed)")
    if found or not datasets:
        return found
    for name, kind in links:
        if kind != h5py.h5l.TYPE_HARD:
            continue
        obj = handle.get(attribute_text(name))
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                found.append(f"/{attribute_text(name)} is a virtual dataset mapping other files")
            elif obj.external:
                found.append(f"/{attribute_text(name)} keeps its data in external files "
                             f"({printable(attribute_text(obj.external[0][0]))})")
    return found


def printable(text: str) -> str:
    """``text`` with control characters (newlines, terminal escapes) shown as escapes.

    Text read from a file (provenance, names, units) is printed, never interpreted: this
    keeps it on one line and keeps a crafted attribute from driving the terminal.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def attribute_text(value: Any) -> str:
    """An HDF5 attribute value read as text (h5py gives ``bytes`` for fixed-length
    strings; undecodable bytes are replaced): the one rule of the store and of interop."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _is_number(value: Any) -> bool:
    """A real number (Python or numpy integer or float), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))
