"""Per-condition grouping: which reference and generated samples share physical parameters.

A *condition* is one point of parameter space. Reference trajectories with identical
parameter vectors form one group; each generated trajectory joins the group whose
parameters are nearest in *normalised parameter space*, where every declared parameter
is mapped to ``[0, 1]`` over its declared range ``[low, high]`` (in ``log(value)`` when
the parameter is log-scaled, :attr:`simulators.base.Parameter.log_scale`)::

    z_p = (g(value_p) - g(low_p)) / (g(high_p) - g(low_p)),   g = log or identity

and the distance is Euclidean in ``z``. A generated trajectory farther than
``max_distance`` from every reference condition is left unmatched (group ``-1``): it
has no reference to be compared with, and the report says how many there were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.spatial

from simulators.base import Parameter

__all__ = ["DEFAULT_MATCH_DISTANCE", "ConditionGroups", "group_conditions",
           "normalised_parameters"]

#: default largest distance in normalised parameter space for a generated sample to be
#: matched with a reference condition (0.02 = 2 % of the declared range along one axis)
DEFAULT_MATCH_DISTANCE = 0.02


def normalised_parameters(parameters: Sequence[Parameter],
                          values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Map per-trajectory parameter values to the unit cube of the declared ranges.

    Args:
        parameters: declared parameters (order of the output columns).
        values: ``{name: (B,) array}`` physical values.
    Returns:
        ``(B, P)`` float64 array ``z`` (see the module docstring); a parameter with
        ``low == high`` maps to 0.
    Raises:
        ValueError: a declared parameter missing from ``values`` or non-finite values.
    """
    columns = []
    for parameter in parameters:
        if parameter.name not in values:
            raise ValueError(f"parameter {parameter.name!r} missing from the values")
        value = np.asarray(values[parameter.name], dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"parameter {parameter.name!r} has NaN/Inf values")
        low, high = float(parameter.low), float(parameter.high)
        if parameter.log_scale and low > 0 and np.all(value > 0):
            value, low, high = np.log(value), np.log(low), np.log(high)
        span = high - low
        columns.append((value - low) / span if span > 0 else np.zeros_like(value))
    if not columns:
        size = len(next(iter(values.values()))) if values else 0
        return np.zeros((size, 0))
    return np.stack(columns, axis=1)


@dataclass(frozen=True)
class ConditionGroups:
    """Result of :func:`group_conditions`.

    Attributes:
        centres: ``(G, P)`` normalised parameters of each reference condition.
        values: ``{name: (G,)}`` physical parameter values of each condition.
        reference: ``(B_ref,)`` group index of every reference trajectory.
        generated: ``(B_gen,)`` group index of every generated trajectory (``-1``:
            farther than ``max_distance`` from every condition).
        distance: ``(B_gen,)`` normalised distance of each generated trajectory to the
            centre of its nearest condition.
    """

    centres: np.ndarray
    values: dict[str, np.ndarray]
    reference: np.ndarray
    generated: np.ndarray
    distance: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.centres.shape[0])

    def members(self, group: int) -> tuple[np.ndarray, np.ndarray]:
        """``(reference indices, generated indices)`` of one group."""
        return (np.flatnonzero(self.reference == group),
                np.flatnonzero(self.generated == group))

    @property
    def unmatched(self) -> int:
        """Number of generated trajectories matched with no condition."""
        return int(np.sum(self.generated < 0))


def group_conditions(parameters: Sequence[Parameter], reference: Mapping[str, np.ndarray],
                     generated: Mapping[str, np.ndarray], *,
                     max_distance: float = DEFAULT_MATCH_DISTANCE) -> ConditionGroups:
    """Group reference trajectories by parameters and match generated ones to them.

    Reference trajectories whose normalised parameters agree to ``1e-9`` form one
    condition (in order of first appearance). Each generated trajectory is assigned to
    the condition with the nearest centre (Euclidean distance in normalised space, a
    k-d tree query, so memory stays linear in the number of trajectories), or
    to ``-1`` when that distance exceeds ``max_distance``.

    Args:
        parameters: declared parameters of the system.
        reference, generated: ``{name: (B,)}`` per-trajectory parameter values.
        max_distance: matching radius in normalised units (default
            :data:`DEFAULT_MATCH_DISTANCE`).
    Returns:
        :class:`ConditionGroups`.
    """
    if not max_distance >= 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance!r}")
    z_ref = normalised_parameters(parameters, reference)
    z_gen = normalised_parameters(parameters, generated)
    keys = np.round(z_ref / 1e-9).astype(np.int64) if z_ref.size else np.zeros(
        (z_ref.shape[0], 0), dtype=np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(first, kind="stable")            # groups in order of appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    reference_group = rank[inverse]
    centres = z_ref[first[order]]
    values = {p.name: np.asarray(reference[p.name], dtype=np.float64)[first[order]]
              for p in parameters}
    if z_gen.shape[0] and centres.shape[0] and centres.shape[1]:
        distance, nearest = scipy.spatial.cKDTree(centres).query(z_gen)
        generated_group = np.where(distance <= max_distance, nearest, -1)
    elif z_gen.shape[0] and centres.shape[0]:          # no parameters: one condition
        distance = np.zeros(z_gen.shape[0])
        generated_group = np.zeros(z_gen.shape[0], dtype=np.int64)
    else:
        distance = np.full(z_gen.shape[0], np.inf)
        generated_group = np.full(z_gen.shape[0], -1)
    return ConditionGroups(centres=centres, values=values, reference=reference_group,
                           generated=generated_group.astype(np.int64), distance=distance)
