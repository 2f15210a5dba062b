"""Per-snapshot physical observables: the time series a report plots and compares.

Two kinds, both computed from one trajectory's fields ``{name: (T, N, N[, 2])}``:

* *Invariant series* (:func:`invariant_series`), derived from the invariants a system
  declares, one value per snapshot: the domain mean ``<f>`` of every field declared
  ``conserved_mean`` or ``zero_mean``; the relative divergence ``rms(div u) /
  rms(|grad u|)`` (:func:`surrogate.validation.divergence_violation` per snapshot) of
  every ``divergence_free`` field; the kinetic energy ``E = <|u|^2>/2`` of every field
  with an ``energy_budget``. Plotted against time they show whether a conserved
  quantity stays put and a constraint holds at every time, not only on average.
* *System observables* (:func:`system_observables`), named per system in
  :data:`SYSTEM_OBSERVABLES`: for ``navier_stokes2d`` the energy ``E`` and enstrophy
  ``Z = <omega^2>/2``. The report compares their distributions (mean, std, W1 over
  the reference std) between reference and generated snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from simulators.base import Invariant
from surrogate.validation.conservation import divergence_violation, energy_enstrophy

__all__ = ["SYSTEM_OBSERVABLES", "invariant_series", "system_observables"]

Series = dict[str, np.ndarray]


def invariant_series(invariants: Sequence[Invariant], fields: Mapping[str, np.ndarray],
                     box_size: float) -> Series:
    """Per-snapshot series of the declared invariants of one trajectory.

    Args:
        invariants: the system's declared invariants.
        fields: ``{name: (T, N, N)}`` scalar / ``(T, N, N, 2)`` vector fields.
        box_size: side ``L`` of the periodic square [length].
    Returns:
        ``{label: (T,) float64}`` with labels ``"mean(u)"`` [field units],
        ``"divergence(velocity)"`` [dimensionless] and ``"energy(velocity)"``
        [velocity^2]; invariants on fields absent from ``fields`` are left out.
    """
    series: Series = {}
    for invariant in invariants:
        name = invariant.field
        if name not in fields:
            continue
        values = np.asarray(fields[name], dtype=np.float64)
        if invariant.kind in ("conserved_mean", "zero_mean"):
            series[f"mean({name})"] = values.mean(axis=(-2, -1))
        elif invariant.kind == "divergence_free":
            series[f"divergence({name})"] = np.array(
                [divergence_violation(snapshot, box_size) for snapshot in values])
        elif invariant.kind == "energy_budget":
            series[f"energy({name})"] = 0.5 * np.mean(np.sum(values**2, axis=-1),
                                                      axis=(-2, -1))
    return series


def _navier_stokes(fields: Mapping[str, np.ndarray], box_size: float) -> Series:
    energy, enstrophy = energy_enstrophy(fields["velocity"], fields["vorticity"])
    return {"energy": energy, "enstrophy": enstrophy}


#: ``system name -> function(fields (T, ...), box_size) -> {observable: (T,)}``
SYSTEM_OBSERVABLES: dict[str, Callable[[Mapping[str, np.ndarray], float], Series]] = {
    "navier_stokes2d": _navier_stokes,
}


def system_observables(system: str, fields: Mapping[str, np.ndarray], box_size: float
                       ) -> Series:
    """The named observables of ``system`` per snapshot (empty for systems without any)."""
    function = SYSTEM_OBSERVABLES.get(system)
    return {} if function is None else function(fields, box_size)
