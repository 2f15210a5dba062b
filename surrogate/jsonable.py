"""Values as plain JSON types: one conversion, with the policy for what JSON lacks as a parameter.

JSON has no NaN, no infinities, no byte strings and no numpy types. :func:`json_safe`
turns mappings into ``dict`` (keys as ``str``), sequences and numpy arrays into
(nested) ``list``, numpy scalars into Python numbers, and then applies one of two
policies, for two kinds of output:

* ``non_finite="null"``: what the package *computes* (``report.json``, the training's
  ``metrics.jsonl``). NaN and infinities become ``null``, which a program reading the
  report takes as "this metric is undefined here" (e.g. a spread from a single sample);
  the output is strict JSON (``json.dumps(..., allow_nan=False)`` accepts it). Nothing
  else is converted: an object of another type is left for ``json.dumps`` to refuse,
  since it can only come from a bug.
* ``non_finite="text"``: what the package *copies* from other people's files (HDF5
  attributes and metadata carried over by :mod:`surrogate.interop`). NaN and infinities
  become the strings ``"nan"``, ``"inf"``, ``"-inf"``, so that a value written in the
  source file is kept as written rather than lost as ``null``; byte strings are decoded
  (UTF-8, undecodable bytes replaced) and any other object becomes ``str(value)`` (e.g.
  an HDF5 object reference), since such a file may hold anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

__all__ = ["NonFinitePolicy", "json_safe"]

NonFinitePolicy = Literal["null", "text"]


def json_safe(value: Any, *, non_finite: NonFinitePolicy = "null") -> Any:
    """``value`` as plain JSON types (see the module docstring for the two policies).

    Args:
        value: a number, string, mapping, sequence, numpy array or scalar, nested freely.
        non_finite: ``"null"`` (NaN and infinities -> ``None``; computed results) or
            ``"text"`` (-> ``"nan"``/``"inf"``/``"-inf"``, bytes decoded, other objects
            as ``str``; values copied from files).
    Returns:
        The converted value; containers are new objects, the input is not modified.
    """
    if non_finite not in ("null", "text"):
        raise ValueError(f"non_finite must be 'null' or 'text', got {non_finite!r}")
    return _convert(value, non_finite == "text")


def _convert(value: Any, as_text: bool) -> Any:
    if as_text and isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Mapping):
        return {str(k): _convert(v, as_text) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_convert(v, as_text) for v in value]
    if isinstance(value, np.ndarray):
        return _convert(value.tolist(), as_text)
    if isinstance(value, np.generic):
        return _convert(value.item(), as_text)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value) if as_text else None
    if not as_text or isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
