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
  :data:`SYSTEM_OBSERVABLES`. The report compares their distributions (mean, std, W1
  over the reference std, histograms) between reference and generated snapshots, and
  per condition:

  - ``navier_stokes2d``: the energy ``E = <|u|^2>/2`` and enstrophy ``Z = <omega^2>/2``;
  - ``ising``: magnetisation per spin ``m = <s>``, ``|m|`` and energy per spin
    ``e = -(1/N^2) sum_<ij> s_i s_j`` (:mod:`simulators.ising`), each twice: on the raw
    values (a generator's spins are continuous in ``[-1, 1]``) and on the thresholded
    spins ``sign(s)`` (labels ending in ``(sign)``), which are what a user of the spins
    would take;
  - ``gray_scott``: the pattern wavelength ``2 pi / k_mean`` of ``v`` with the
    power-weighted mean wavenumber ``k_mean = sum_m |k_m| P_v(k_m) / sum_m P_v(k_m)``
    over all Fourier modes ``m != 0`` of the snapshot
    (:func:`surrogate.validation.spectra.mode_power`, before shell averaging, so a
    single-mode pattern gives its own wavelength exactly; NaN for a homogeneous snapshot,
    whose variance is below ``1e-20 max(1, max |v|^2)``) and the mean ``<v>`` (the
    fraction of the domain the pattern covers, in concentration units).

* *Modes* (:func:`system_modes`): systems with symmetric ordered states name each
  snapshot's state; for ``ising`` ``"+"`` when ``m(sign) >= 0.5``, ``"-"`` when
  ``m(sign) <= -0.5`` and ``""`` otherwise (disordered). The report's mode coverage check
  fails a generator that produces one sign only (the classic GAN mode collapse on the
  Ising model).
* *Condition observables* (:func:`condition_observables`): ensemble quantities of one
  condition, from all its snapshots: for ``ising`` the susceptibility
  ``chi = N^2 (<m^2> - <|m|>^2) / T`` and the specific heat
  ``c = N^2 (<e^2> - <e>^2) / T^2`` (finite-lattice estimators, ``k_B = J = 1``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from simulators.base import Invariant
from simulators.ising import energy_per_spin, magnetisation
from surrogate.validation.conservation import (
    divergence_violation,
    energy_enstrophy,
    kinetic_energy,
)
from surrogate.validation.spectra import mode_power

__all__ = ["ORDERED_MAGNETISATION", "SYSTEM_ENSEMBLE_OBSERVABLES", "SYSTEM_MODES",
           "SYSTEM_OBSERVABLES", "condition_observables", "invariant_series", "system_modes",
           "system_observables"]

#: |m(sign)| from which an Ising snapshot counts as ordered (in the "+" or "-" state)
ORDERED_MAGNETISATION = 0.5

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
            series[f"energy({name})"] = kinetic_energy(values)
    return series


def _navier_stokes(fields: Mapping[str, np.ndarray], box_size: float) -> Series:
    energy, enstrophy = energy_enstrophy(fields["velocity"], fields["vorticity"])
    return {"energy": energy, "enstrophy": enstrophy}


def _ising(fields: Mapping[str, np.ndarray], box_size: float) -> Series:
    spin = np.asarray(fields["spin"], dtype=np.float64)
    signs = np.where(spin >= 0, 1.0, -1.0)
    series: Series = {}
    for suffix, values in (("", spin), ("(sign)", signs)):
        m = magnetisation(values)
        series[f"magnetisation{suffix}"] = m
        series[f"|magnetisation|{suffix}"] = np.abs(m)
        series[f"energy_per_spin{suffix}"] = energy_per_spin(values)
    return series


def _gray_scott(fields: Mapping[str, np.ndarray], box_size: float) -> Series:
    v = np.asarray(fields["v"], dtype=np.float64)
    k, multiplicity, power = mode_power(v - v.mean(axis=(-2, -1), keepdims=True), box_size)
    power = power * multiplicity                     # (T, N, N // 2 + 1), full plane
    variance = power.sum(axis=(-2, -1)) / box_size**2               # Parseval: Var_x v
    wavelength = np.full(v.shape[0], np.nan)
    patterned = variance > 1e-20 * max(1.0, float(np.max(np.abs(v))) ** 2)
    k_mean = ((power[patterned] * k).sum(axis=(-2, -1))
              / power[patterned].sum(axis=(-2, -1)))
    wavelength[patterned] = 2 * np.pi / k_mean
    return {"pattern_wavelength": wavelength, "mean(v)": v.mean(axis=(-2, -1))}


#: ``system name -> function(fields (T, ...), box_size) -> {observable: (T,)}``
SYSTEM_OBSERVABLES: dict[str, Callable[[Mapping[str, np.ndarray], float], Series]] = {
    "navier_stokes2d": _navier_stokes,
    "ising": _ising,
    "gray_scott": _gray_scott,
}


def system_observables(system: str, fields: Mapping[str, np.ndarray], box_size: float
                       ) -> Series:
    """The named observables of ``system`` per snapshot (empty for systems without any)."""
    function = SYSTEM_OBSERVABLES.get(system)
    return {} if function is None else function(fields, box_size)


def _ising_modes(series: Mapping[str, np.ndarray]) -> np.ndarray:
    m = np.asarray(series["magnetisation(sign)"])
    return np.where(m >= ORDERED_MAGNETISATION, "+",
                    np.where(m <= -ORDERED_MAGNETISATION, "-", ""))


def _ising_ensemble(series: Mapping[str, np.ndarray], parameters: Mapping[str, float],
                    resolution: int) -> dict[str, float]:
    m = np.asarray(series["|magnetisation|(sign)"])
    e = np.asarray(series["energy_per_spin(sign)"])
    if m.size < 2:
        return {"susceptibility": np.nan, "specific_heat": np.nan}
    temperature = float(parameters["temperature"])
    sites = resolution**2
    return {"susceptibility": float(sites * (np.mean(m**2) - np.mean(m) ** 2) / temperature),
            "specific_heat": float(sites * np.var(e) / temperature**2)}


#: ``system name -> function(series) -> mode label per snapshot``
SYSTEM_MODES: dict[str, Callable[[Mapping[str, np.ndarray]], np.ndarray]] = {
    "ising": _ising_modes,
}
#: ``system name -> function(series, parameters, resolution) -> {observable: value}``
SYSTEM_ENSEMBLE_OBSERVABLES: dict[
    str, Callable[[Mapping[str, np.ndarray], Mapping[str, float], int], dict[str, float]]] = {
    "ising": _ising_ensemble,
}


def system_modes(system: str, series: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Per-snapshot mode labels (``"+"``, ``"-"``, ``""``) from :func:`system_observables`.

    ``None`` for systems without symmetric ordered states (:data:`SYSTEM_MODES`).
    """
    function = SYSTEM_MODES.get(system)
    return None if function is None else function(series)


def condition_observables(system: str, series: Mapping[str, np.ndarray],
                          parameters: Mapping[str, float], resolution: int
                          ) -> dict[str, float]:
    """Ensemble observables of one condition from its pooled per-snapshot ``series``.

    Args:
        system: system name.
        series: ``{observable: (S,)}`` over all snapshots of the condition.
        parameters: the condition's parameter values.
        resolution: lattice size ``N``.
    Returns:
        ``{"susceptibility", "specific_heat"}`` for ``ising`` (thresholded spins; NaN with
        fewer than 2 snapshots), ``{}`` for systems without any
        (:data:`SYSTEM_ENSEMBLE_OBSERVABLES`).
    """
    function = SYSTEM_ENSEMBLE_OBSERVABLES.get(system)
    return {} if function is None else function(series, parameters, resolution)
