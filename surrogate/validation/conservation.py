"""Conservation and constraint checks driven by the invariants each simulator declares.

Every check returns a *relative violation*: a dimensionless number that is 0 for a
field that keeps the invariant exactly, of the order of float32 round-off (~1e-7 to
1e-6) for simulator output stored in float32, and of order 0.1 to 1 for a field that
clearly breaks it. :func:`check_invariants` runs the checks named by a sequence of
:class:`simulators.base.Invariant` (``Simulator.invariants`` or
``FieldStore.schema.invariants``) on in-memory arrays; :func:`check_invariants_streaming`
does the same from a :class:`simulators.store.FieldStore`, one trajectory at a time.

Array conventions (as in :mod:`simulators.grid`): real fields ``field[..., ix, iy]`` on
the periodic square ``[0, L)^2`` with ``N`` points per side; vector fields
``(..., N, N, 2)`` with the last axis ``(u_x, u_y)``; in :func:`check_invariants` the
leading axes are ``(B, T)`` = (trajectory, time). ``<f>`` is the domain mean, i.e. the
plain mean over the ``N^2`` grid points (the grid is uniform). All arithmetic is done in
float64 whatever the input dtype.

Reduction conventions, stated once and repeated in each docstring:

* *Reference scale* of a field (:func:`reference_scale`): its standard deviation over
  *all* its values (every trajectory, time and grid point), falling back to
  ``max |f|`` and then to 1 for a field that is constant / identically zero. It is used
  by the mean and bound checks, which divide an absolute error (in the field's units)
  by it; callers can pass their own ``scale`` instead (e.g. the reference data's std,
  so that a generated field is judged on the reference's scale).
* Derivative checks (:func:`divergence_violation`, :func:`curl_violation`) are
  normalised *per snapshot* by an RMS of the same snapshot, then the maximum over all
  snapshots (all leading indices) is returned.
* Every check returns the *maximum* over trajectories and times (worst case), except the
  fraction of out-of-bounds / off-lattice values, which is pooled over all values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simulators.base import (
    ENERGY_BUDGET_FORCING,
    ENERGY_BUDGET_UNSUPPORTED,
    ENERGY_BUDGET_VISCOSITY,
    Invariant,
)
from simulators.grid import PeriodicGrid
from simulators.store import RunningMoments

__all__ = [
    "DISCRETE_TOLERANCE",
    "bounds_violation",
    "check_invariants",
    "check_invariants_streaming",
    "conserved_mean_violation",
    "curl_violation",
    "discrete_values_violation",
    "divergence_violation",
    "domain_mean",
    "energy_budget_residual",
    "energy_budget_violation",
    "energy_enstrophy",
    "initial_energy_violation",
    "invariant_key",
    "kinetic_energy",
    "kolmogorov_forcing_work",
    "reference_scale",
    "zero_mean_violation",
]

#: default tolerance of :func:`discrete_values_violation`, relative to max |allowed value|
DISCRETE_TOLERANCE = 1e-6

#: result entry of a check that could not be run: ``{"skipped": reason}``
SKIPPED = "skipped"


# --------------------------------------------------------------------------- helpers
def _real(array: Any, name: str, min_ndim: int = 2) -> np.ndarray:
    """``array`` as finite float64 with at least ``min_ndim`` axes (ValueError otherwise)."""
    values = np.asarray(array)
    if np.iscomplexobj(values):
        raise ValueError(f"{name} must be real, got dtype {values.dtype}")
    values = values.astype(np.float64, copy=False)
    if values.ndim < min_ndim:
        raise ValueError(f"{name} needs at least {min_ndim} dimensions, got shape "
                         f"{values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or Inf")
    return values


def _square(values: np.ndarray, name: str, vector: bool = False) -> int:
    """Check the spatial axes ``(N, N)`` (then ``2`` for vectors); return ``N``."""
    spatial = values.shape[-3:-1] if vector else values.shape[-2:]
    if vector and (values.ndim < 3 or values.shape[-1] != 2):
        raise ValueError(f"{name} must have shape (..., N, N, 2), got {values.shape}")
    if len(spatial) != 2 or spatial[0] != spatial[1]:
        raise ValueError(f"{name} must be square in its spatial axes, got {values.shape}")
    return int(spatial[0])


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` elementwise; 0/0 -> 0 and x/0 -> inf for x > 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    positive = denominator > 0
    safe = np.where(positive, denominator, 1.0)
    return np.where(positive, numerator / safe, np.where(numerator > 0, np.inf, 0.0))


def _scale_from_moments(std: float, max_abs: float) -> float:
    if std > 0:
        return std
    if max_abs > 0:
        return max_abs
    return 1.0


def _positive_scale(scale: float | None, field: np.ndarray) -> float:
    if scale is None:
        return reference_scale(field)
    value = float(scale)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return value


def _rms(values: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.sqrt(np.mean(values * values, axis=axes))


def reference_scale(field: np.ndarray) -> float:
    """The scale that the mean and bound checks divide by (field units).

    ``std(field)`` over *all* values (every leading index and grid point, float64);
    ``max |field|`` if that is 0 (a constant field), and 1 if the field is identically 0.
    """
    values = _real(field, "field", min_ndim=0)
    if values.size == 0:
        raise ValueError("field is empty")
    return _scale_from_moments(float(np.std(values)), float(np.max(np.abs(values))))


# ------------------------------------------------------------------ mean and bounds
def domain_mean(field: np.ndarray) -> np.ndarray:
    """Domain mean ``<f> = (1/N^2) sum_ij f[..., i, j]`` (= (1/L^2) integral f dA).

    Args:
        field: real array (..., N, N), any units.
    Returns:
        float64 array of shape ``field.shape[:-2]`` (0-d for one field), same units.
    """
    values = _real(field, "field")
    _square(values, "field")
    return np.mean(values, axis=(-2, -1))


def conserved_mean_violation(field_over_time: np.ndarray, scale: float | None = None
                             ) -> float:
    """Drift of the domain mean from its initial value, relative to the field's scale.

    ``max_{b, t} |<f>(b, t) - <f>(b, 0)| / scale`` with ``<.>`` the domain mean
    (:func:`domain_mean`), the reference taken per trajectory at its first snapshot.

    Args:
        field_over_time: real array (..., T, N, N), typically (B, T, N, N); any units.
        scale: positive reference scale in the field's units; default
            :func:`reference_scale` (std over all values of ``field_over_time``).
    Returns:
        Dimensionless relative drift (0 if the mean is exactly conserved; 0 for T = 1).
    """
    values = _real(field_over_time, "field_over_time", min_ndim=3)
    means = domain_mean(values)
    drift = np.abs(means - means[..., :1])
    return float(np.max(drift) / _positive_scale(scale, values))


def zero_mean_violation(field: np.ndarray, scale: float | None = None) -> float:
    """Largest domain mean relative to the field's scale: ``max |<f>| / scale``.

    Args:
        field: real array (..., N, N); the maximum is over all leading indices.
        scale: positive reference scale in the field's units; default
            :func:`reference_scale` (std over all values).
    Returns:
        Dimensionless relative violation (0 for exactly zero-mean fields).
    """
    values = _real(field, "field")
    return float(np.max(np.abs(domain_mean(values))) / _positive_scale(scale, values))


def bounds_violation(field: np.ndarray, low: float | None = None, high: float | None = None,
                     scale: float | None = None) -> dict[str, float]:
    """How far and how often a field leaves ``[low, high]`` (``None`` = open side).

    Args:
        field: real array of any shape (all values are pooled), any units.
        low, high: bounds in the field's units; ``low=0, high=None`` states positivity.
        scale: positive reference scale for the excursion; default
            :func:`reference_scale` (std over all values).
    Returns:
        ``{"fraction_outside": fraction of all values with f < low or f > high (in
        [0, 1]), "max_excursion": max(low - f, f - high, 0) over all values / scale}``;
        both 0 for a field inside its bounds.
    """
    values = _real(field, "field", min_ndim=0)
    if values.size == 0:
        raise ValueError("field is empty")
    if low is not None and high is not None and low > high:
        raise ValueError(f"low {low} is above high {high}")
    outside = np.zeros(values.shape, dtype=bool)
    excursion = 0.0
    if low is not None:
        outside |= values < low
        excursion = max(excursion, float(low - values.min()))
    if high is not None:
        outside |= values > high
        excursion = max(excursion, float(values.max() - high))
    return {"fraction_outside": float(np.mean(outside)),
            "max_excursion": excursion / _positive_scale(scale, values)}


def discrete_values_violation(field: np.ndarray, values: Sequence[float],
                              tolerance: float | None = None) -> float:
    """Fraction of values farther than ``tolerance`` from every allowed value.

    Args:
        field: real array of any shape (all values are pooled), e.g. Ising spins.
        values: the allowed values (e.g. ``(-1, 1)``), same units as ``field``.
        tolerance: absolute tolerance in the field's units; default
            ``DISCRETE_TOLERANCE * max(1, max |values|)`` (1e-6 for spins ±1, which
            float32 stores exactly).
    Returns:
        Fraction in [0, 1] (0 when every value is on the allowed set).
    """
    data = _real(field, "field", min_ndim=0)
    allowed = np.unique(np.asarray(values, dtype=np.float64))
    if allowed.size == 0 or not np.all(np.isfinite(allowed)):
        raise ValueError("values must be a non-empty set of finite numbers")
    if tolerance is None:
        tolerance = DISCRETE_TOLERANCE * max(1.0, float(np.max(np.abs(allowed))))
    flat = data.ravel()
    # distance to the nearest allowed value via the sorted allowed set
    index = np.clip(np.searchsorted(allowed, flat), 1, max(allowed.size - 1, 1))
    distance = np.abs(flat - allowed[index - 1])
    if allowed.size > 1:
        distance = np.minimum(distance, np.abs(flat - allowed[index]))
    return float(np.mean(distance > tolerance)) if flat.size else 0.0


# --------------------------------------------------------- derivative constraints
def divergence_violation(velocity: np.ndarray, box_size: float) -> float:
    """Relative divergence ``max_s rms(div u) / rms(|grad u|)`` over snapshots ``s``.

    For each snapshot (every leading index), with spectral derivatives of
    :class:`simulators.grid.PeriodicGrid` (Nyquist mode of each odd derivative zeroed)::

        r_s = sqrt(<(du_x/dx + du_y/dy)^2>) / sqrt(<sum_ij (du_i/dx_j)^2>)

    (``<.>`` the domain mean); the result is ``max_s r_s``. Mode by mode
    ``|k . u_hat|^2 <= |k|^2 |u_hat|^2``, so ``0 <= r <= 1``: ``r^2`` is the fraction of
    the velocity-gradient variance in the compressive (gradient) part of the Helmholtz
    decomposition, 0 for a solenoidal field and exactly 1 for a pure gradient
    ``u = grad phi``. A uniform flow (``grad u = 0``) has ``r = 0``. RMS rather than
    max-norm ratios make the value insensitive to isolated grid points.

    Args:
        velocity: real array (..., N, N, 2), last axis ``(u_x, u_y)``; velocity units.
        box_size: side ``L`` of the periodic square (length units).
    Returns:
        Dimensionless ratio in [0, 1].
    """
    values = _real(velocity, "velocity", min_ndim=3)
    grid = PeriodicGrid(_square(values, "velocity", vector=True), float(box_size))
    u_hat = grid.fft(values[..., 0])
    v_hat = grid.fft(values[..., 1])
    divergence = grid.ifft(grid.ikx * u_hat + grid.iky * v_hat)
    gradient_squared = sum(grid.ifft(factor * spectrum) ** 2
                           for factor in (grid.ikx, grid.iky) for spectrum in (u_hat, v_hat))
    ratio = _ratio(_rms(divergence, (-2, -1)),
                   np.sqrt(np.mean(gradient_squared, axis=(-2, -1))))
    return float(np.max(ratio))


def _without_nyquist(grid: PeriodicGrid, spectrum: np.ndarray) -> np.ndarray:
    """Zero the rfft2 Nyquist row ``m_x = -N/2`` and column ``m_y = N/2`` (in place)."""
    n = grid.resolution
    spectrum[..., n // 2, :] = 0.0
    spectrum[..., :, n // 2] = 0.0
    return spectrum


def curl_violation(vorticity: np.ndarray, velocity: np.ndarray, box_size: float) -> float:
    """Relative mismatch ``max_s rms(P omega - P curl u) / rms(omega)`` over snapshots.

    ``curl u = du_y/dx - du_x/dy`` is the spectral curl of
    :class:`simulators.grid.PeriodicGrid`. ``P`` removes the Nyquist row ``m_x = -N/2``
    and column ``m_y = N/2`` of the rfft2 before comparing: in our convention odd
    derivatives have no Nyquist mode, so even an exact pair (``omega`` with Nyquist
    content and ``u`` derived from it by ``grid.velocity_from_vorticity_hat``) differs
    there (``curl u`` has ``k_y^2 psi_hat`` on the Nyquist row, ``omega`` has
    ``|k|^2 psi_hat``). Those modes are excluded from the residual only; the denominator
    is the RMS of the full ``omega`` of the same snapshot. The mean mode is kept, so a
    non-zero mean vorticity counts as a mismatch (``curl u`` has zero mean). A snapshot
    with ``omega = 0`` gives 0 if the residual is 0 as well and ``inf`` otherwise.

    Args:
        vorticity: real array (..., N, N), 1/time.
        velocity: real array (..., N, N, 2) with the same leading axes, length/time.
        box_size: side ``L`` (length units).
    Returns:
        Dimensionless ratio, maximum over all leading indices (0 = exact).
    """
    omega = _real(vorticity, "vorticity")
    values = _real(velocity, "velocity", min_ndim=3)
    n = _square(values, "velocity", vector=True)
    if omega.shape != values.shape[:-1]:
        raise ValueError(f"vorticity shape {omega.shape} does not match velocity shape "
                         f"{values.shape} (expected {values.shape[:-1]})")
    grid = PeriodicGrid(n, float(box_size))
    residual_hat = (grid.fft(omega) - grid.ikx * grid.fft(values[..., 1])
                    + grid.iky * grid.fft(values[..., 0]))
    residual = grid.ifft(_without_nyquist(grid, residual_hat))
    ratio = _ratio(_rms(residual, (-2, -1)), _rms(omega, (-2, -1)))
    return float(np.max(ratio))


# ------------------------------------------------------------------ energy budget
def kinetic_energy(velocity: np.ndarray) -> np.ndarray:
    """Kinetic energy per unit area ``E = <|u|^2>/2`` of each snapshot.

    Args:
        velocity: float64 array (..., N, N, 2), length/time.
    Returns:
        ``E``, shape ``velocity.shape[:-3]``, length^2/time^2.
    """
    return 0.5 * np.mean(np.sum(velocity * velocity, axis=-1), axis=(-2, -1))


def energy_enstrophy(velocity: np.ndarray, vorticity: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Kinetic energy ``E = <|u|^2>/2`` and enstrophy ``Z = <omega^2>/2`` per snapshot.

    ``<.>`` is the domain mean (per unit area); the mean of ``omega`` is *not* removed.

    Args:
        velocity: real array (..., N, N, 2), length/time.
        vorticity: real array (..., N, N) with the same leading axes, 1/time.
    Returns:
        ``(E, Z)``, float64 arrays of shape ``velocity.shape[:-3]``, in
        length^2/time^2 and 1/time^2.
    """
    values = _real(velocity, "velocity", min_ndim=3)
    omega = _real(vorticity, "vorticity")
    _square(values, "velocity", vector=True)
    if omega.shape != values.shape[:-1]:
        raise ValueError(f"vorticity shape {omega.shape} does not match velocity shape "
                         f"{values.shape}")
    enstrophy = 0.5 * np.mean(omega * omega, axis=(-2, -1))
    return kinetic_energy(values), enstrophy


def kolmogorov_forcing_work(velocity: np.ndarray, amplitude: float, wavenumber: float,
                            box_size: float) -> np.ndarray:
    """Power of the Kolmogorov body force of ``navier_stokes2d``: ``P = <F . u>``.

    ``F = (A sin(k_f y), 0)`` with ``k_f = 2 pi m_f / L`` (``m_f`` = ``wavenumber``, the
    simulator's ``forcing_wavenumber``), evaluated at the grid points ``y_j = j L / N``.

    Args:
        velocity: real array (..., N, N, 2), length/time.
        amplitude: ``A`` (length/time^2).
        wavenumber: mode number ``m_f`` (dimensionless).
        box_size: ``L`` (length units).
    Returns:
        ``P`` per snapshot, shape ``velocity.shape[:-3]``, length^2/time^3.
    """
    values = _real(velocity, "velocity", min_ndim=3)
    grid = PeriodicGrid(_square(values, "velocity", vector=True), float(box_size))
    force_x = float(amplitude) * np.sin(float(wavenumber) * 2 * np.pi / grid.box_size * grid.y)
    return np.mean(values[..., 0] * force_x, axis=(-2, -1))


def _time_derivative(times: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Second-order centred ``d series / dt`` at the interior times ``1 .. T-2``."""
    return np.gradient(series, times, axis=-1)[..., 1:-1]


def _check_times(times: Any, count: int) -> np.ndarray:
    values = np.asarray(times, dtype=np.float64)
    if values.shape != (count,):
        raise ValueError(f"times has shape {values.shape}, expected ({count},)")
    if count < 3:
        raise ValueError(f"the energy budget needs at least 3 snapshots, got {count}")
    if not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise ValueError("times must be finite and strictly increasing")
    return values


def energy_budget_residual(times: np.ndarray, energy: np.ndarray, enstrophy: np.ndarray,
                           nu: float | np.ndarray, forcing_work: np.ndarray | None = None
                           ) -> np.ndarray:
    """Residual of the energy budget ``dE/dt = -2 nu Z + P`` at interior snapshot times.

    ``dE/dt`` is estimated by centred finite differences in time (``numpy.gradient``,
    second order: error ``-(h^2/6) d^3E/dt^3`` for uniform spacing ``h``, and the
    second-order three-point formula for non-uniform spacing), at the interior times
    ``t_1 .. t_{T-2}`` only (no one-sided end formulas). The estimate is only
    meaningful for *densely* sampled snapshots (``h`` small against the time scales of
    ``E``, e.g. 41 snapshots over ``t = 0.2`` for ``navier_stokes2d``); the default
    snapshot spacing of a simulator (e.g. 11 snapshots over 10 time units) makes the
    finite-difference error dominate. The identity holds for incompressible flow on the
    torus with only viscous dissipation (no hyperviscosity or drag) and ``Z`` the
    enstrophy of ``curl u``.

    Args:
        times: snapshot times (T,), strictly increasing, T >= 3 (time units).
        energy: ``E`` (..., T), length^2/time^2 (see :func:`energy_enstrophy`).
        enstrophy: ``Z`` (..., T), 1/time^2.
        nu: viscosity (length^2/time), a number or an array broadcastable to
            ``energy.shape[:-1]`` (one per trajectory).
        forcing_work: ``P`` (..., T), length^2/time^3; default 0 (unforced).
    Returns:
        ``dE/dt + 2 nu Z - P`` at ``times[1:-1]``, shape (..., T-2), length^2/time^3.
    """
    energy = _real(energy, "energy", min_ndim=1)
    enstrophy = _real(enstrophy, "enstrophy", min_ndim=1)
    if enstrophy.shape != energy.shape:
        raise ValueError(f"enstrophy shape {enstrophy.shape} != energy shape {energy.shape}")
    times = _check_times(times, energy.shape[-1])
    viscosity = np.asarray(nu, dtype=np.float64)[..., None]
    if np.any(~np.isfinite(viscosity)) or np.any(viscosity < 0):
        raise ValueError("nu must be finite and non-negative")
    rate = -2.0 * viscosity * enstrophy
    if forcing_work is not None:
        work = _real(forcing_work, "forcing_work", min_ndim=1)
        if work.shape != energy.shape:
            raise ValueError(f"forcing_work shape {work.shape} != energy shape "
                             f"{energy.shape}")
        rate = rate + work
    return _time_derivative(times, energy) - rate[..., 1:-1]


def energy_budget_violation(times: np.ndarray, energy: np.ndarray, enstrophy: np.ndarray,
                            nu: float | np.ndarray, forcing_work: np.ndarray | None = None
                            ) -> float:
    """Relative energy-budget residual, worst trajectory.

    For each leading index ``b`` (trajectory), with the residual ``r`` of
    :func:`energy_budget_residual` at the interior times::

        v_b = max_t |r_b(t)| / max_t (2 nu_b Z_b(t) + |P_b(t)|)

    i.e. the residual relative to the size of the budget's source and sink terms; the
    result is ``max_b v_b``. A wrong ``nu`` by a factor 2 gives ``v ~ 0.5`` to 1 in
    unforced flow. Arguments as in :func:`energy_budget_residual`.

    Returns:
        Dimensionless; finite-difference (``O(h^2)``) and round-off errors set the floor.
    """
    residual = energy_budget_residual(times, energy, enstrophy, nu, forcing_work)
    viscosity = np.asarray(nu, dtype=np.float64)[..., None]
    terms = 2.0 * viscosity * _real(enstrophy, "enstrophy", min_ndim=1)
    if forcing_work is not None:
        terms = terms + np.abs(_real(forcing_work, "forcing_work", min_ndim=1))
    scale = np.max(terms[..., 1:-1], axis=-1)
    return float(np.max(_ratio(np.max(np.abs(residual), axis=-1), scale)))


def initial_energy_violation(velocity: np.ndarray, times: np.ndarray, value: float) -> float:
    """Relative error of the kinetic energy at ``t = 0``: ``max_b |E_b(0) - value| / value``.

    Args:
        velocity: ``(B, T, N, N, 2)`` vector fields.
        times: snapshot times ``(T,)``; the check reads the snapshot at ``t == 0``.
        value: the declared ``E(t = 0) = <|u|^2>/2`` (velocity^2), positive.
    Returns:
        Dimensionless; ~1e-7 for float32 fields that hold it exactly.
    Raises:
        ValueError: no snapshot at ``t = 0``, or shapes that do not match.
    """
    flow = _real(velocity, "velocity", min_ndim=5)
    times = np.asarray(times, dtype=np.float64)
    if times.shape != flow.shape[1:2]:
        raise ValueError(f"times has shape {times.shape}, expected ({flow.shape[1]},)")
    zero = np.flatnonzero(times == 0.0)
    if zero.size == 0:
        raise ValueError("no snapshot at t = 0")
    energy = kinetic_energy(flow[:, zero[0]])
    return float(np.max(np.abs(energy - value)) / abs(value))


# ------------------------------------------------------------- invariant driver
def invariant_key(invariant: Invariant) -> str:
    """Stable result key: ``"kind(field)"``, or ``"curl_of(field,of)"``."""
    if invariant.kind == "curl_of":
        return f"curl_of({invariant.field},{invariant.of})"
    return f"{invariant.kind}({invariant.field})"




def _energy_budget_entry(invariant: Invariant, velocity: np.ndarray, box_size: float,
                         times: Any, parameters: Mapping[str, Any] | None
                         ) -> float | dict[str, Any]:
    """Per-trajectory relative energy-budget residual, or ``{"skipped": reason}``."""
    if times is None:
        return {SKIPPED: "needs the snapshot times"}
    if parameters is None or ENERGY_BUDGET_VISCOSITY not in parameters:
        return {SKIPPED: f"needs the per-trajectory viscosity {ENERGY_BUDGET_VISCOSITY!r} in "
                         f"parameters"}
    for name in ENERGY_BUDGET_UNSUPPORTED:
        if name in parameters and np.any(np.asarray(parameters[name], dtype=float) != 0):
            return {SKIPPED: f"the {name} term of the budget is not implemented"}
    present = [name in parameters for name in ENERGY_BUDGET_FORCING]
    if any(present) and not all(present):
        return {SKIPPED: "forcing work needs both forcing_amplitude and forcing_wavenumber"}
    count = velocity.shape[1]
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (count,):
        return {SKIPPED: f"times has shape {times.shape}, the field has {count} snapshots"}
    if count < 3:
        return {SKIPPED: f"needs at least 3 snapshots, got {count}"}
    if np.any(np.diff(times) <= 0):
        return {SKIPPED: "times are not strictly increasing"}
    batch = velocity.shape[0]

    def per_trajectory(name: str) -> np.ndarray:
        return np.broadcast_to(np.asarray(parameters[name], dtype=np.float64), (batch,))

    nu = per_trajectory(ENERGY_BUDGET_VISCOSITY)
    grid = PeriodicGrid(velocity.shape[-2], float(box_size))
    worst = 0.0
    for b in range(batch):
        flow = velocity[b]
        energy, enstrophy = energy_enstrophy(flow, grid.curl(flow))
        work = None
        if all(present):
            amplitude, wavenumber = ENERGY_BUDGET_FORCING
            work = kolmogorov_forcing_work(flow, per_trajectory(amplitude)[b],
                                           per_trajectory(wavenumber)[b], box_size)
        worst = max(worst, energy_budget_violation(times, energy, enstrophy, nu[b], work))
    return worst


def _expect_shape(name: str, array: np.ndarray, vector: bool) -> None:
    rank = 5 if vector else 4
    layout = "(B, T, N, N, 2)" if vector else "(B, T, N, N)"
    if array.ndim != rank:
        raise ValueError(f"field {name!r} must have shape {layout}, got {array.shape}")


def check_invariants(invariants: Sequence[Invariant], fields: Mapping[str, np.ndarray],
                     box_size: float, times: np.ndarray | None = None,
                     parameters: Mapping[str, Any] | None = None,
                     scales: Mapping[str, float] | None = None
                     ) -> dict[str, float | dict[str, Any]]:
    """Run the check of every declared invariant; one entry per invariant.

    Keys are :func:`invariant_key` (``"conserved_mean(u)"``, ``"zero_mean(delta)"``,
    ``"bounded(density)"``, ``"divergence_free(velocity)"``,
    ``"curl_of(vorticity,velocity)"``, ``"energy_budget(velocity)"``,
    ``"discrete_values(spin)"``, ``"initial_energy(velocity)"``). Values are relative
    violations (0 = perfect):

    * ``conserved_mean``: :func:`conserved_mean_violation` (float),
    * ``zero_mean``: :func:`zero_mean_violation` (float),
    * ``bounded``: :func:`bounds_violation` (dict ``fraction_outside``, ``max_excursion``),
    * ``divergence_free``: :func:`divergence_violation` (float),
    * ``curl_of``: :func:`curl_violation` (float),
    * ``discrete_values``: :func:`discrete_values_violation` (float),
    * ``energy_budget``: :func:`energy_budget_violation` computed per trajectory from
      the velocity alone (``E = <|u|^2>/2``, ``Z = <(curl u)^2>/2``) with each
      trajectory's ``nu``, and the forcing work of :func:`kolmogorov_forcing_work` when
      ``forcing_amplitude`` and ``forcing_wavenumber`` are given (unforced when both are
      absent); max over trajectories (float). It needs ``times`` and ``parameters["nu"]``
      and densely sampled snapshots (see :func:`energy_budget_residual`),
    * ``initial_energy``: :func:`initial_energy_violation` (float; needs ``times`` with a
      snapshot at ``t = 0``).

    A check that cannot run gives ``{"skipped": reason}`` instead of a number: a field
    missing from ``fields``, an energy budget without times / ``nu`` / at least three
    snapshots, or with non-zero ``hyperviscosity`` / ``drag`` entries in ``parameters``
    (those budget terms are not implemented). Nothing is skipped silently.

    Args:
        invariants: e.g. ``simulator.invariants`` or ``store.schema.invariants``.
        fields: ``{name: array (B, T, N, N)}`` for scalar fields and
            ``(B, T, N, N, 2)`` for vector fields (any float dtype).
        box_size: side ``L`` of the periodic square.
        times: snapshot times (T,) (only the energy budget uses them).
        parameters: ``{name: (B,) array or number}`` per-trajectory physical parameters.
        scales: optional ``{field name: reference scale}`` for the mean and bound checks
            (default :func:`reference_scale` of the given array, i.e. its std over all
            trajectories, times and grid points).
    Returns:
        ``{key: float | dict}`` in the order of ``invariants``.
    Raises:
        ValueError: on a field with the wrong rank, NaN/Inf, or non-square grids.
    """
    results: dict[str, float | dict[str, Any]] = {}
    scales = dict(scales or {})
    cache: dict[str, np.ndarray] = {}

    def get(name: str, vector: bool) -> np.ndarray:
        if name not in cache:
            array = _real(fields[name], name, min_ndim=0)
            _expect_shape(name, array, vector)
            cache[name] = array
        return cache[name]

    for invariant in invariants:
        key = invariant_key(invariant)
        if key in results:                     # the same check declared twice
            key = f"{key}#{sum(k.split('#')[0] == key for k in results) + 1}"
        needed = [invariant.field] + ([invariant.of] if invariant.kind == "curl_of" else [])
        missing = [name for name in needed if name is None or name not in fields]
        if missing:
            results[key] = {SKIPPED: f"field(s) {', '.join(map(str, missing))} not given"}
            continue
        name, kind = invariant.field, invariant.kind
        scale = scales.get(name)
        if kind == "conserved_mean":
            results[key] = conserved_mean_violation(get(name, False), scale)
        elif kind == "zero_mean":
            results[key] = zero_mean_violation(get(name, False), scale)
        elif kind == "bounded":
            results[key] = bounds_violation(get(name, False), invariant.low, invariant.high,
                                            scale)
        elif kind == "divergence_free":
            results[key] = divergence_violation(get(name, True), box_size)
        elif kind == "curl_of":
            results[key] = curl_violation(get(name, False), get(invariant.of, True), box_size)
        elif kind == "discrete_values":
            if not invariant.values:
                results[key] = {SKIPPED: "the invariant declares no allowed values"}
            else:
                results[key] = discrete_values_violation(get(name, False), invariant.values)
        elif kind == "energy_budget":
            results[key] = _energy_budget_entry(invariant, get(name, True), box_size, times,
                                                parameters)
        elif kind == "initial_energy":
            flow = get(name, True)
            try:
                results[key] = initial_energy_violation(
                    flow, np.asarray([] if times is None else times), float(invariant.value))
            except ValueError as error:
                results[key] = {SKIPPED: f"needs the snapshot times with t = 0 ({error})"}
        else:                                  # pragma: no cover - Invariant checks kinds
            results[key] = {SKIPPED: f"no check for kind {kind!r}"}
    return results


# -------------------------------------------------------------------- streaming
_SCALED_KINDS = ("conserved_mean", "zero_mean", "bounded")


class _RunningMoments(RunningMoments):
    """Streaming moments (:class:`simulators.store.RunningMoments`: count, mean, M2 by the
    Chan et al. 1979 pairwise update, max |f|) with the reference scale they give."""

    @property
    def scale(self) -> float:
        return _scale_from_moments(self.std, self.max_abs)


def _merge(total: dict[str, Any], part: Mapping[str, Any], seen: int) -> None:
    """Fold one trajectory's results into ``total`` (``seen`` trajectories already in)."""
    for key, value in part.items():
        if key not in total:
            total[key] = value
        elif isinstance(value, dict) and SKIPPED in value:
            continue
        elif isinstance(value, dict):          # bounded: pooled fraction, max excursion
            old = total[key]
            total[key] = {
                "fraction_outside": (old["fraction_outside"] * seen
                                     + value["fraction_outside"]) / (seen + 1),
                "max_excursion": max(old["max_excursion"], value["max_excursion"])}
        else:
            total[key] = max(total[key], value)


def check_invariants_streaming(store: Any, trajectories: Sequence[int] | None = None,
                               invariants: Sequence[Invariant] | None = None
                               ) -> dict[str, float | dict[str, Any]]:
    """:func:`check_invariants` on a field-store file, one trajectory in memory at a time.

    Two passes over the selected trajectories: the first accumulates, per field used by
    a mean or bound check, the std over all selected values (pairwise update, float64),
    so that the scales equal those :func:`check_invariants` uses on the whole array; the
    second reads each trajectory's fields ``(1, T, N, N[, 2])`` and its parameters,
    checks them with those scales and folds the results (maxima; the out-of-bounds
    fraction is averaged over trajectories, which all hold the same number of values).
    The result therefore equals ``check_invariants`` on the selected trajectories
    loaded at once (up to summation order), while memory stays that of one trajectory.

    Args:
        store: an open :class:`simulators.store.FieldStore` (anything with ``schema``,
            ``read(name, trajectories, times)``, ``parameters()``, ``times``,
            ``box_size`` and ``n_trajectories``).
        trajectories: indices to check (default all).
        invariants: default ``store.schema.invariants``.
    Returns:
        ``{key: float | dict}`` as :func:`check_invariants`.
    """
    invariants = tuple(store.schema.invariants if invariants is None else invariants)
    indices = [int(b) for b in (range(store.n_trajectories) if trajectories is None
                                else trajectories)]
    available = set(store.field_names) if hasattr(store, "field_names") else {
        spec.name for spec in store.schema.fields}
    needed = sorted({name for invariant in invariants
                     for name in (invariant.field, invariant.of) if name in available})
    scaled = sorted({invariant.field for invariant in invariants
                     if invariant.kind in _SCALED_KINDS and invariant.field in available})
    moments = {name: _RunningMoments() for name in scaled}
    for b in indices:
        for name in scaled:
            moments[name].add(np.asarray(store.read(name, b)))
    scales = {name: moments[name].scale for name in scaled}
    parameters = store.parameters()
    total: dict[str, Any] = {}
    for seen, b in enumerate(indices):
        fields = {name: np.asarray(store.read(name, slice(b, b + 1))) for name in needed}
        part = check_invariants(invariants, fields, store.box_size, store.times,
                                {name: values[b:b + 1] for name, values in parameters.items()},
                                scales)
        _merge(total, part, seen)
    if not indices:
        return {invariant_key(i): {SKIPPED: "no trajectories selected"} for i in invariants}
    return total
