"""Incompressible 2-D Navier–Stokes in vorticity form, pseudo-spectral, periodic.

See :class:`NavierStokes2D` for the equations, units and numerical scheme.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from simulators.base import FieldSpec, Invariant, Parameter, Simulator, check_resolution
from simulators.grid import PeriodicGrid, gaussian_random_field
from simulators.timestepping import CLASSIC_RK4, LawsonStepper

if TYPE_CHECKING:
    import torch

#: mode number (units of 2 pi / L) where the random initial energy spectrum peaks
INITIAL_PEAK_MODE = 4.0
#: default CFL number: half the RK4 stability limit of dealiased spectral advection
DEFAULT_CFL = 0.5
#: default upper bound of the time step (time units)
DEFAULT_DT_MAX = 0.1
#: grid points (N^2 times trajectories) integrated together; see NavierStokes2D.chunk_size
CHUNK_POINTS = 2**16
#: device memory per grid point and trajectory of the torch path (bytes, with margin)
TORCH_BYTES_PER_POINT = 256


class _RetainedModes:
    """The Fourier modes kept by the 2/3 rule and the layout of the spectral state.

    The rule keeps ``|m_x| < N/3`` and ``0 <= m_y < N/3`` (``grid.dealias_mask``): the
    rfft2 rows ``0..K`` and ``N-K..N-1`` and the columns ``0..K``, ``K = (N - 1) // 3``
    (``N`` is a power of two, never a multiple of 3). The state keeps the first
    ``C = K + 1`` columns of the rfft2 array, all ``N`` rows: shape ``(..., N, C)``,
    with the dropped rows ``K+1..N-K-1`` held at exactly zero (every multiplier that
    writes the state is zero there). Keeping whole columns lets every spectral
    operation be one numpy call on one contiguous array.
    """

    def __init__(self, grid: PeriodicGrid) -> None:
        n = grid.resolution
        self.k_max = (n - 1) // 3
        self.columns = self.k_max + 1
        #: (N, C) boolean: the retained modes within the kept columns
        self.mask = np.ascontiguousarray(grid.dealias_mask[:, :self.columns])
        assert self.mask.sum() == grid.dealias_mask.sum()

    def compact(self, full: np.ndarray) -> np.ndarray:
        """Retained modes of an rfft2 array: (..., N, N//2+1) -> new (..., N, C)."""
        return np.where(self.mask, full[..., :self.columns], 0.0)


class _VorticitySolver:
    """Work arrays and spectral multipliers for a batch of ``B`` trajectories on a grid.

    The spectral state is complex128 of shape ``(B, N, C)`` (see :class:`_RetainedModes`)
    in numpy's unnormalised rfft2 convention (``omega_hat = rfft2(omega)``). Real-space
    work arrays have shape ``(B, 2, N, N)``. Transforms are ``numpy.fft`` 1-D passes
    with ``out=`` (pocketfft, bit-identical to ``scipy.fft``), so a step allocates no
    array of the field's size; the x pass only transforms the ``C`` retained columns
    (the others are zero on input / not needed on output), out of place between a
    contiguous ``(…, N, C)`` array and the padded ``(…, N, N//2+1)`` one, so that every
    spectral multiply runs on contiguous memory.
    """

    def __init__(self, grid: PeriodicGrid, batch: int, work_arrays: bool = True) -> None:
        self.grid = grid
        self.modes = modes = _RetainedModes(grid)
        n, half, columns = grid.resolution, grid.resolution // 2 + 1, modes.columns
        self.batch = batch
        if work_arrays:       # the torch path only reads the multipliers below
            #: (u_hat, v_hat) on the kept columns, then (uv, v^2 - u^2)_hat
            self.retained = np.empty((batch, 2, n, columns), dtype=np.complex128)
            #: padded rfft2 layouts: inverse input (columns >= C stay zero for ever) and
            #: forward output (columns >= C hold unused values)
            self.padded = np.zeros((batch, 2, n, half), dtype=np.complex128)
            self.padded_forward = np.empty((batch, 2, n, half), dtype=np.complex128)
            self.physical = np.empty((batch, 2, n, n))
            self.products = np.empty((batch, 2, n, n))
            self.output_retained = np.empty((batch, 3, n, columns), dtype=np.complex128)
            self.output_padded = np.zeros((batch, 3, n, half), dtype=np.complex128)
            self.output_physical = np.empty((batch, 3, n, n))
        kx = np.broadcast_to(grid.kx, (n, columns))
        ky = np.broadcast_to(grid.ky[:, :columns], (n, columns))
        k_squared = kx**2 + ky**2
        keep = modes.mask & (k_squared > 0)
        inverse_k_squared = np.divide(1.0, k_squared, out=np.zeros_like(k_squared),
                                      where=keep)
        self.k_squared = k_squared
        # u_hat = i k_y psi_hat, v_hat = -i k_x psi_hat, psi_hat = omega_hat / |k|^2
        self.velocity_factor = np.stack([1j * ky * inverse_k_squared,
                                         -1j * kx * inverse_k_squared])
        # -(u . grad omega)_hat = (k_x^2 - k_y^2) (uv)_hat + k_x k_y (v^2 - u^2)_hat
        self.advection_factor = np.stack([kx**2 - ky**2, kx * ky]).astype(np.complex128)
        self.advection_factor[:, ~modes.mask] = 0.0
        #: forcing spectrum on row m_x = 0, shape (B, C)
        self.forcing_row = np.zeros((batch, columns), dtype=np.complex128)

    # ------------------------------------------------------------------ transforms
    def inverse(self, retained: np.ndarray, padded: np.ndarray, physical: np.ndarray) -> None:
        """irfft2: ``retained`` (…, N, C) -> ``physical`` (…, N, N), via ``padded``.

        ``padded`` (…, N, N//2+1) is a work array whose columns ``>= C`` are zero.
        """
        np.fft.ifft(retained, axis=-2, out=padded[..., :self.modes.columns])
        np.fft.irfft(padded, n=self.grid.resolution, axis=-1, out=physical)

    def forward(self, physical: np.ndarray, padded: np.ndarray, retained: np.ndarray) -> None:
        """rfft2: ``physical`` (…, N, N) -> its first ``C`` columns ``retained`` (…, N, C).

        ``padded`` (…, N, N//2+1) is a work array (all its columns are overwritten).
        """
        np.fft.rfft(physical, axis=-1, out=padded)
        np.fft.fft(padded[..., :self.modes.columns], axis=-2, out=retained)

    def velocity_hat(self, vorticity_hat: np.ndarray, out: np.ndarray) -> None:
        """``(u_hat, v_hat)`` (B, 2, N, C) of the state ``vorticity_hat`` (B, N, C)."""
        np.multiply(vorticity_hat[:, None], self.velocity_factor, out=out)

    # ------------------------------------------------------------------- dynamics
    def tendency(self, vorticity_hat: np.ndarray, out: np.ndarray,
                 speed: np.ndarray | None = None) -> None:
        """``N = -(u . grad omega)_hat + forcing_hat`` on the retained modes, into ``out``.

        The advection term uses Basdevant et al.'s (1981) form
        ``u . grad omega = d_x d_y (v^2 - u^2) + (d_x^2 - d_y^2)(u v)``, valid for
        ``div u = 0``: two inverse and two forward real 2-D transforms per call
        (instead of three + two, or four + one, for the other forms). Products of
        fields restricted to the 2/3-rule modes are alias-free on those modes (Orszag
        1971), and the result is kept on those modes only.

        Args:
            vorticity_hat: state ``(B, N, C)``.
            out: array ``(B, N, C)`` receiving ``N``.
            speed: optional ``(B,)`` array receiving ``max |u|`` per trajectory.
        """
        retained, physical, products = self.retained, self.physical, self.products
        self.velocity_hat(vorticity_hat, retained)
        self.inverse(retained, self.padded, physical)
        u, v = physical[:, 0], physical[:, 1]
        if speed is not None:
            np.square(physical, out=products)
            np.add(products[:, 0], products[:, 1], out=products[:, 0])
            np.sqrt(products[:, 0].max(axis=(-2, -1)), out=speed)
        np.multiply(u, v, out=products[:, 0])
        np.subtract(v, u, out=products[:, 1])
        np.add(v, u, out=v)
        np.multiply(products[:, 1], v, out=products[:, 1])        # v^2 - u^2
        self.forward(products, self.padded_forward, retained)
        np.multiply(retained, self.advection_factor, out=retained)
        np.add(retained[:, 0], retained[:, 1], out=out)
        np.add(out[:, 0], self.forcing_row, out=out[:, 0])

    def fields(self, vorticity_hat: np.ndarray) -> np.ndarray:
        """Real ``(u, v, omega)`` of the state ``vorticity_hat``: (B, 3, N, N), reused."""
        retained = self.output_retained
        self.velocity_hat(vorticity_hat, retained[:, :2])
        retained[:, 2] = vorticity_hat
        self.inverse(retained, self.output_padded, self.output_physical)
        return self.output_physical


def _step_sizes(speed: np.ndarray, time: np.ndarray, target: float | None, *, cfl: float,
                dx: float, dt_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Step sizes ``(B,)`` and the times after the step (see ``VorticityIntegrator.step``).

    Shared by both backends (on the host, from the ``(B,)`` speeds ``max |u_b|``).
    """
    limit = np.full(speed.shape[0], dt_max)
    moving = speed > 0
    limit[moving] = np.minimum(cfl * dx / speed[moving], dt_max)
    if target is None:
        step = limit
        new_time = time + step
    else:
        remaining = target - time
        active = remaining > 0
        steps = np.maximum(np.ceil(remaining / limit), 1.0)
        step = np.where(active, remaining / steps, 0.0)
        new_time = np.where(active & (steps == 1.0), target, time + step)
    return step, new_time


class VorticityIntegrator:
    """State and CFL-adaptive stepping of a batch of :class:`NavierStokes2D` trajectories.

    Built by :meth:`NavierStokes2D.integrator`; public so that benchmarks and tests can
    step the solver directly.

    Attributes:
        vorticity_hat: spectral state (B, N, C), complex128 (see ``modes``).
        time: current time of each trajectory, (B,).
        solver: work arrays, multipliers and transforms.
        stepper: the Lawson RK4 stepper.
    """

    def __init__(self, solver: _VorticitySolver, linear: np.ndarray,
                 vorticity_hat: np.ndarray, *, cfl: float, dt_max: float) -> None:
        self.solver = solver
        self.linear = linear
        self.vorticity_hat = vorticity_hat
        self.cfl = cfl
        self.dt_max = dt_max
        self.time = np.zeros(solver.batch)
        self.stepper = LawsonStepper(CLASSIC_RK4, vorticity_hat.shape)
        self._speed = np.empty(solver.batch)

    @property
    def modes(self) -> _RetainedModes:
        """Layout of the compact spectral state."""
        return self.solver.modes

    def step(self, target: float | None = None) -> np.ndarray:
        """Take one step per trajectory and return the step sizes (B,).

        ``dt_b = min(cfl dx / max|u_b|, dt_max)``; with ``target``, a trajectory's
        remaining interval ``target - time_b`` is split into equal steps no longer
        than that, its last step lands exactly on ``target``, and a trajectory already
        at ``target`` takes ``dt = 0`` (an exact no-op).
        """
        speed = self._speed
        self.solver.tendency(self.vorticity_hat, self.stepper.tendencies[0], speed=speed)
        step, new_time = _step_sizes(speed, self.time, target, cfl=self.cfl,
                                     dx=self.solver.grid.dx, dt_max=self.dt_max)
        self.stepper.step(self.vorticity_hat, step[:, None, None], self.linear,
                          self.solver.tendency, first_tendency_ready=True)
        self.time[:] = new_time
        return step

    def advance(self, target: float) -> None:
        """Step until every trajectory is exactly at ``target`` (>= current times)."""
        while np.any(self.time < target):
            self.step(target)

    def fields(self) -> np.ndarray:
        """Real ``(u_x, u_y, omega)`` now, shape (B, 3, N, N) (a reused buffer)."""
        return self.solver.fields(self.vorticity_hat)


class TorchVorticityIntegrator:
    """:class:`VorticityIntegrator`'s scheme on a torch device (the torch backend).

    The same state layout (``(B, N, C)`` retained columns, numpy's unnormalised rfft2
    convention), multipliers, forcing row and initial spectrum, all built by the numpy
    classes and copied to ``device``; the same Basdevant tendency, CFL rule (step sizes
    computed on the host by the same function, one device-to-host copy of the ``(B,)``
    speeds per step) and Lawson step, read from the same ``CLASSIC_RK4`` tableau
    (:func:`simulators.backend.lawson_step`). In complex128; one ``torch.fft`` call
    per transform for the whole batch.

    Attributes:
        vorticity_hat: spectral state (B, N, C), complex128 tensor on ``device``.
        time: current time of each trajectory, (B,) numpy float64.
    """

    def __init__(self, solver: _VorticitySolver, linear: np.ndarray,
                 vorticity_hat: np.ndarray, *, cfl: float, dt_max: float,
                 device: torch.device) -> None:
        from simulators.backend import to_device
        self.grid = solver.grid
        self.columns = solver.modes.columns
        self.cfl = cfl
        self.dt_max = dt_max
        self.device = device
        self.velocity_factor = to_device(solver.velocity_factor, device)      # (2, N, C)
        self.advection_factor = to_device(solver.advection_factor, device)    # (2, N, C)
        self.forcing_row = to_device(solver.forcing_row, device)              # (B, C)
        self.linear = to_device(linear, device)                               # (B, N, C)
        self.vorticity_hat = to_device(vorticity_hat, device)                 # (B, N, C)
        self.time = np.zeros(vorticity_hat.shape[0])

    def tendency(self, vorticity_hat: torch.Tensor, speed: bool = False
                 ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``N`` (B, N, C) as in ``_VorticitySolver.tendency``; with ``speed``, also
        ``max |u|`` per trajectory (B,) as a second tensor."""
        import torch
        n = self.grid.resolution
        physical = torch.fft.irfft2(vorticity_hat[:, None] * self.velocity_factor, s=(n, n))
        u, v = physical[:, 0], physical[:, 1]
        products = torch.stack([u * v, (v - u) * (v + u)], dim=1)   # (uv, v^2 - u^2)
        retained = torch.fft.fft(torch.fft.rfft(products, dim=-1)[..., :self.columns], dim=-2)
        retained = retained * self.advection_factor
        out = retained[:, 0] + retained[:, 1]
        out[:, 0] += self.forcing_row
        if not speed:
            return out
        return out, torch.sqrt(torch.amax(u * u + v * v, dim=(-2, -1)))

    def step(self, target: float | None = None) -> np.ndarray:
        """One step per trajectory, as :meth:`VorticityIntegrator.step`; returns (B,)."""
        import torch

        from simulators.backend import lawson_step, to_numpy
        first, speed = self.tendency(self.vorticity_hat, speed=True)
        step, new_time = _step_sizes(to_numpy(speed), self.time, target, cfl=self.cfl,
                                     dx=self.grid.dx, dt_max=self.dt_max)
        h = torch.from_numpy(step).to(self.device)[:, None, None]
        self.vorticity_hat = lawson_step(CLASSIC_RK4, self.vorticity_hat, h, self.linear,
                                         self.tendency, first)
        self.time = new_time
        return step

    def advance(self, target: float) -> None:
        """Step until every trajectory is exactly at ``target`` (>= current times)."""
        while np.any(self.time < target):
            self.step(target)

    def fields(self) -> np.ndarray:
        """Real ``(u_x, u_y, omega)`` now, shape (B, 3, N, N), numpy float64."""
        import torch

        from simulators.backend import to_numpy
        n = self.grid.resolution
        spectra = torch.cat([self.vorticity_hat[:, None] * self.velocity_factor,
                             self.vorticity_hat[:, None]], dim=1)
        return to_numpy(torch.fft.irfft2(spectra, s=(n, n)))


class NavierStokes2D(Simulator):

    r"""Incompressible 2-D Navier–Stokes equations in vorticity form on a periodic square.

    Equations, on ``[0, L)^2`` (``L = box_size``, default ``2 pi``)::

        d(omega)/dt + u . grad(omega) = nu lap(omega) - nu_h lap^2(omega) - mu omega
                                        + curl F
        u = (d psi/dy, -d psi/dx),    -lap(psi) = omega,    omega = dv/dx - du/dy
        F = (A sin(k_f y), 0),        curl F = dF_y/dx - dF_x/dy = -A k_f cos(k_f y)

    with ``nu`` the kinematic viscosity (parameter ``nu``, length^2/time), ``nu_h`` an
    optional hyperviscosity (constructor option, length^4/time, default 0), ``mu`` an
    optional linear drag (constructor option ``drag``, 1/time, default 0), ``A`` the
    forcing amplitude (parameter ``forcing_amplitude``, length/time^2, a body force per
    unit mass along +x) and ``k_f = 2 pi m_f / L`` with the integer mode number ``m_f``
    (parameter ``forcing_wavenumber``). This Kolmogorov forcing drives the laminar
    shear flow ``u = (A / (nu k_f^2)) (1 - exp(-nu k_f^2 t)) sin(k_f y)`` from rest.
    Units: lengths in the box's length unit, times in its time unit; ``vorticity`` in
    1/time, ``velocity`` in length/time. The mean vorticity is zero (Stokes' theorem on
    the torus) and the mean velocity is zero (the k = 0 mode is not forced).

    Energy budget (``E = <|u|^2>/2``, ``Z = <omega^2>/2``, ``P_al = <|grad omega|^2>/2``,
    ``<.>`` the domain mean)::

        dE/dt = -2 nu Z - 2 nu_h P_al - 2 mu E + <F . u>

    (:meth:`energy_budget` evaluates every term for given vorticity fields).

    Scheme: Fourier pseudo-spectral in space (numpy's rfft2 layout, ``field[..., ix,
    iy]``); the quadratic advection term is computed in real space and dealiased with
    the 2/3 rule (Orszag 1971, J. Atmos. Sci. 28, 1074), which is applied to the state
    itself, so the solver evolves the Galerkin truncation to ``|m_x|, |m_y| < N/3``;
    the advection term uses Basdevant et al.'s form (1981, J. Atmos. Sci. 38, 2305),
    four real FFTs per evaluation. In time: the viscous, hyperviscous and drag terms
    are integrated exactly by the integrating factor ``exp(h L)``,
    ``L = -(nu |k|^2 + nu_h |k|^4 + mu)``, and the advection + forcing term by classic
    RK4 in Lawson's integrating-factor form (Lawson 1967; :mod:`simulators.timestepping`).

    Time step, per trajectory ``b``:
    ``dt_b = min(cfl dx / max|u_b|, dt_max, time to next snapshot)``, where a remaining
    interval is split into equal steps no longer than that limit, so steps land exactly
    on snapshot times. Trajectories that reached the snapshot take ``dt = 0`` (an exact
    no-op) until the whole batch has, so a trajectory's result is bit-for-bit the same
    in any batch (and in any chunk: a batch is integrated in chunks of
    :meth:`chunk_size` trajectories, all of a chunk's fields going through one FFT
    call per stage, which keeps the work arrays in cache).

    Backends (``simulate(..., device=...)``): ``device=None`` runs the numpy code above
    (pocketfft). A torch device (``"cpu"``, ``"cuda"``, ``"cuda:N"``) runs the same
    scheme in complex128 with ``torch.fft`` (:class:`TorchVorticityIntegrator`): the
    multipliers, forcing row and initial spectra are built by the numpy code and copied
    to the device, the time loop (tendency, CFL step, Lawson RK4 from the same tableau)
    runs there, with one host copy of the ``(B,)`` speeds per step and of the fields per
    snapshot. It agrees with numpy to round-off (relative differences ~1e-15 at 32^2,
    t = 1), not bit-for-bit, and depends on the batch and chunking at round-off level
    only (numpy: not at all). On a GPU a chunk is the whole batch, capped at
    ``backend.TORCH_CHUNK_BYTES`` of work arrays (``TORCH_BYTES_PER_POINT`` per grid
    point and trajectory: 64 trajectories at 512^2); on the CPU it is :meth:`chunk_size`.
    The ``workers`` option is ignored there (torch threads its own kernels).

    ``cfl = 0.5`` is half the linear stability limit: the largest advective eigenvalue
    on the retained modes is ``|u| sqrt(2) k_max`` with ``k_max = 2 pi / (3 dx)``, i.e.
    ``|lambda dt| <= 2.96 cfl``, and classic RK4 is stable on the imaginary axis up to
    ``2 sqrt(2) = 2.83`` (so ``cfl <= 0.96``).

    Initial conditions (``init``):

    * ``"random"``: Gaussian random vorticity (``grid.gaussian_random_field`` from
      ``numpy.random.default_rng(seed)`` only) with isotropic energy spectrum
      ``E(k) ∝ k^4 exp(-2 (k / k_p)^2)`` peaking at ``k_p = 4 (2 pi / L)`` (vorticity
      power spectrum ``∝ k E(k)``), projected onto the retained modes and scaled so the
      rms velocity ``sqrt(<|u|^2>)`` is 1.
    * ``"taylor_green"``: ``u = sin(k0 x) cos(k0 y)``, ``v = -cos(k0 x) sin(k0 y)``,
      ``omega = 2 k0 sin(k0 x) sin(k0 y)`` with ``k0 = 2 pi / L``; unforced, it decays as
      ``exp(-2 nu k0^2 t)`` exactly (its advection term vanishes).
    * ``initial_state={"vorticity": (N, N) array}``: projected onto the retained modes.
      Its mean is removed rather than rejected: a constant vorticity has no velocity on
      the torus (``psi`` has no k = 0 mode) and no effect on the dynamics, so dropping
      it only makes the field a valid vorticity. Modes outside the 2/3 rule are dropped
      too; the returned ``t = 0`` snapshot is this projection.

    Symmetries (``symmetries = ("shift_x", "rotate_180")``). Unforced, the equations
    commute with every isometry of the grid; the random initial vorticity (white noise
    coloured by a filter of ``|k|``, projected on the square of retained modes, rescaled
    by its rms velocity) has a law invariant under all of them, and under a change of
    sign. A map ``g: x -> M x + s`` sends a solution ``u`` to
    ``u'(x) = M u(g^-1 x)``, ``omega'(x) = det(M) omega(g^-1 x)``, which solves the same
    equations with the force ``F'(x) = M F(g^-1 x)``. It is a symmetry of this system iff
    ``F' = F`` for every ``A`` and ``k_f`` in the declared ranges, with
    ``F = (A sin(k_f y), 0)``:

    * shifts in x: ``F`` does not depend on x. Kept (``shift_x``).
    * shifts in y by ``a``: ``A sin(k_f (y - a)) = A sin(k_f y)`` only when ``a`` is a
      multiple of ``L / m_f``, which depends on the parameter ``m_f``. Not declared.
    * point reflection ``(x, y) -> (-x, -y)``, ``u -> -u`` (``M = -1``):
      ``F' = -F(-x, -y) = (A sin(k_f y), 0) = F``. Kept (``rotate_180``); ``omega`` is
      unchanged in sign (``det M = 1``) and ``curl F = -A k_f cos(k_f y)`` is even.
    * mirror ``x -> -x`` (``u_x -> -u_x``): ``F' = (-A sin(k_f y), 0) = -F``, i.e. the
      system with amplitude ``-A`` (outside the declared range). Not a symmetry.
    * mirror ``y -> -y`` (``u_y -> -u_y``): ``F' = (A sin(-k_f y), 0) = -F``. Not a
      symmetry. (Either mirror combined with a y-shift by half a forcing period,
      ``L / (2 m_f)``, is the classic shift-reflect symmetry of Kolmogorov flow, but
      the shift depends on ``m_f`` and is a whole number of cells only when ``2 m_f``
      divides ``N``. Not declared.)
    * rotation by 90 degrees: ``F' = (0, A sin(k_f x))``, a force along y. Not a
      symmetry.

    With ``forcing_amplitude = 0`` the whole group is a symmetry, but symmetries are
    declared for every parameter value, so only the two above are.

    Outputs: ``vorticity`` (B, T, N, N) and ``velocity`` (B, T, N, N, 2), last axis
    ``(u_x, u_y)``, float64, both computed spectrally from the same state, so
    ``div u = 0`` and ``vorticity = curl(velocity)`` hold to round-off.

    Args (keyword-only numerical options):
        cfl: CFL number in (0, 1] (default 0.5, see above).
        dt_max: upper bound of the step in time units (default 0.1), which also bounds
            the step while the flow is at rest or very slow.
        hyperviscosity: ``nu_h >= 0`` of the ``-nu_h lap^2 omega`` term (length^4/time).
        drag: linear drag ``mu >= 0`` (1/time).
        workers: threads integrating chunks of the batch concurrently (default 1;
            numpy's FFTs and ufuncs release the GIL). Results do not depend on it.
    """

    name = "navier_stokes2d"
    description = ("2-D incompressible Navier–Stokes (vorticity form), pseudo-spectral, "
                   "2/3 dealiasing, integrating-factor RK4, Kolmogorov forcing")
    parameters = (
        Parameter("nu", 1e-3, 1e-4, 1e-2, "length^2/time", "kinematic viscosity"),
        Parameter("forcing_amplitude", 0.0, 0.0, 1.0, "length/time^2",
                  "amplitude A of the body force F = (A sin(k_f y), 0)"),
        Parameter("forcing_wavenumber", 4, 1, 8, "1",
                  "forcing mode number m_f, k_f = 2 pi m_f / L", integer=True),
    )
    fields = (
        FieldSpec("vorticity", "1/time", "vorticity omega = dv/dx - du/dy"),
        FieldSpec("velocity", "length/time", "velocity (u_x, u_y)", rank=1),
    )
    invariants = (
        Invariant("zero_mean", "vorticity", doc="Stokes' theorem on the torus"),
        Invariant("divergence_free", "velocity", doc="incompressible flow"),
        Invariant("curl_of", "vorticity", of="velocity", doc="omega = dv/dx - du/dy"),
        Invariant("energy_budget", "velocity",
                  doc="dE/dt = -2 nu Z - 2 nu_h P_al - 2 drag E + <F.u>; terms from "
                      "NavierStokes2D.energy_budget"),
        Invariant("initial_energy", "velocity", value=0.5, init="random",
                  doc="the random initial state is scaled to rms velocity 1"),
    )
    inits = ("random", "taylor_green")
    symmetries = ("shift_x", "rotate_180")
    torch_backend = True
    default_t_end = 10.0
    default_snapshots = 11
    time_units = "time"
    length_units = "length"

    def __init__(self, *, cfl: float = DEFAULT_CFL, dt_max: float = DEFAULT_DT_MAX,
                 hyperviscosity: float = 0.0, drag: float = 0.0, workers: int = 1) -> None:
        checks = {"cfl": (cfl, 0.0, 1.0, False), "dt_max": (dt_max, 0.0, math.inf, False),
                  "hyperviscosity": (hyperviscosity, 0.0, math.inf, True),
                  "drag": (drag, 0.0, math.inf, True)}
        for option, (value, low, high, zero_ok) in checks.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if not (math.isfinite(number) and number <= high
                    and (number > low or (zero_ok and number == low))):
                raise ValueError(f"{self.name}: option {option}={value!r} must be a finite "
                                 f"number in {'[' if zero_ok else '('}{low:g}, {high:g}]")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"{self.name}: option workers={workers!r} must be a positive "
                             "integer")
        self.cfl = float(cfl)
        self.dt_max = float(dt_max)
        self.hyperviscosity = float(hyperviscosity)
        self.drag = float(drag)
        self.workers = workers

    # ------------------------------------------------------------ initial states
    def initial_vorticity(self, grid: PeriodicGrid, seed: int, init: str) -> np.ndarray:
        """Initial vorticity (N, N) of ``init`` ("random" uses ``default_rng(seed)``).

        Not yet projected on the retained modes (``simulate`` does that; the random
        field is rescaled after the projection).
        """
        if self.check_init(init) == "taylor_green":
            k0 = 2 * np.pi / grid.box_size
            x, y = grid.mesh()
            return 2 * k0 * np.sin(k0 * x) * np.sin(k0 * y)
        peak = INITIAL_PEAK_MODE * 2 * np.pi / grid.box_size
        return gaussian_random_field(
            grid, lambda k: (k / peak) ** 5 * np.exp(-2.0 * (k / peak) ** 2),
            np.random.default_rng(seed))

    # --------------------------------------------------------------- integration
    def simulate(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                 times: np.ndarray, seeds: Sequence[int], init: str = "random",
                 initial_state: Mapping[str, np.ndarray] | None = None,
                 device: str | None = None) -> dict[str, np.ndarray]:
        """Integrate ``B = len(seeds)`` trajectories; see the class docstring.

        Args:
            parameters: ``{"nu", "forcing_amplitude", "forcing_wavenumber"}``, each (B,).
            grid: periodic grid with ``N`` points per side.
            times: snapshot times (T,), non-decreasing, ``>= 0``.
            seeds: one seed per trajectory (used by ``init="random"``).
            init: ``"random"`` or ``"taylor_green"`` (ignored with ``initial_state``).
            initial_state: ``{"vorticity": (N, N)}`` shared by the batch.
            device: ``None`` (numpy) or a torch device (``"cpu"``, ``"cuda"``,
                ``"cuda:1"``) for the torch backend (see the class docstring).
        Returns:
            ``{"vorticity": (B, T, N, N), "velocity": (B, T, N, N, 2)}``, float64.
        Raises:
            ValueError: unknown init, a forcing mode not resolved by the grid (raised
                by :meth:`integrator` before any step), or an unknown / absent device.
        """
        resolved = self.check_device(device)
        if resolved is not None:
            return self._simulate_torch(parameters, grid, times, seeds, init, initial_state,
                                        resolved)
        times = np.asarray(times, dtype=np.float64)
        seeds = list(seeds)
        batch, n = len(seeds), grid.resolution
        parameters = {name: np.broadcast_to(np.asarray(values), (batch,))
                      for name, values in parameters.items()}
        vorticity = np.empty((batch, len(times), n, n))
        velocity = np.empty((batch, len(times), n, n, 2))

        def integrate(chunk: slice) -> None:
            integrator = self.integrator({name: values[chunk] for name, values
                                          in parameters.items()},
                                         grid, seeds[chunk], init, initial_state)
            for index, target in enumerate(times):
                integrator.advance(float(target))
                fields = integrator.fields()
                vorticity[chunk, index] = fields[:, 2]
                velocity[chunk, index] = np.moveaxis(fields[:, :2], 1, -1)

        size = self.chunk_size(grid)
        chunks = [slice(start, start + size) for start in range(0, batch, size)]
        if self.workers == 1 or len(chunks) == 1:
            for chunk in chunks:
                integrate(chunk)
        else:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                for future in [pool.submit(integrate, chunk) for chunk in chunks]:
                    future.result()
        return {"vorticity": vorticity, "velocity": velocity}

    def _simulate_torch(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                        times: np.ndarray, seeds: Sequence[int], init: str,
                        initial_state: Mapping[str, np.ndarray] | None,
                        device: torch.device) -> dict[str, np.ndarray]:
        """:meth:`simulate` on the torch backend, chunk by chunk (see the class docstring)."""
        from simulators.backend import chunk_size
        times = np.asarray(times, dtype=np.float64)
        seeds = list(seeds)
        batch, n = len(seeds), grid.resolution
        parameters = {name: np.broadcast_to(np.asarray(values), (batch,))
                      for name, values in parameters.items()}
        self._check_batch(parameters, grid, init, initial_state)      # before any chunk
        vorticity = np.empty((batch, len(times), n, n))
        velocity = np.empty((batch, len(times), n, n, 2))
        size = chunk_size(device, TORCH_BYTES_PER_POINT, n, self.chunk_size(grid))
        for start in range(0, batch, size):
            chunk = slice(start, start + size)
            solver, linear, spectrum = self._setup(
                {name: values[chunk] for name, values in parameters.items()}, grid,
                seeds[chunk], init, initial_state, work_arrays=False)
            integrator = TorchVorticityIntegrator(solver, linear, spectrum, cfl=self.cfl,
                                                  dt_max=self.dt_max, device=device)
            for index, target in enumerate(times):
                integrator.advance(float(target))
                fields = integrator.fields()
                vorticity[chunk, index] = fields[:, 2]
                velocity[chunk, index] = np.moveaxis(fields[:, :2], 1, -1)
        return {"vorticity": vorticity, "velocity": velocity}

    @staticmethod
    def chunk_size(grid: PeriodicGrid) -> int:
        """Trajectories integrated together (one FFT call per stage for all of them).

        ``max(1, CHUNK_POINTS // N^2)``: a chunk's work arrays (about 150 bytes per
        grid point and trajectory) then stay within a typical L3 cache. Larger
        batches are split into chunks integrated one after another (or by
        ``workers`` threads); results do not depend on the chunking.
        """
        return max(1, CHUNK_POINTS // grid.resolution**2)

    def _check_batch(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                     init: str, initial_state: Mapping[str, np.ndarray] | None) -> None:
        """Raise ``ValueError`` for an unknown init or an unresolved forcing mode."""
        if initial_state is None:
            self.check_init(init)
        amplitude = np.asarray(parameters["forcing_amplitude"], dtype=np.float64)
        mode = np.rint(np.asarray(parameters["forcing_wavenumber"], dtype=np.float64))
        unresolved = (amplitude > 0) & (mode > (grid.resolution - 1) // 3)
        if np.any(unresolved):
            raise ValueError(f"{self.name}: forcing_wavenumber {int(mode[unresolved][0])} is "
                             f"not resolved at resolution {grid.resolution} (the 2/3 rule "
                             f"keeps modes < {grid.resolution / 3:.3g}); use a finer grid")

    def integrator(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                   seeds: Sequence[int], init: str = "random",
                   initial_state: Mapping[str, np.ndarray] | None = None
                   ) -> VorticityIntegrator:
        """A :class:`VorticityIntegrator` at ``t = 0`` (arguments as in :meth:`simulate`).

        Raises:
            ValueError: unknown init, or a forcing mode not resolved by the grid.
        """
        solver, linear, spectrum = self._setup(parameters, grid, seeds, init, initial_state)
        return VorticityIntegrator(solver, linear, spectrum, cfl=self.cfl, dt_max=self.dt_max)

    def _setup(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
               seeds: Sequence[int], init: str,
               initial_state: Mapping[str, np.ndarray] | None, work_arrays: bool = True
               ) -> tuple[_VorticitySolver, np.ndarray, np.ndarray]:
        """``(solver with its forcing row, linear (B, N, C), initial spectrum (B, N, C))``.

        The set-up shared by both backends (``work_arrays=False``: the solver holds only
        the multipliers, which the torch path copies to its device).
        """
        batch = len(seeds)
        nu = np.broadcast_to(np.asarray(parameters["nu"], dtype=np.float64), (batch,))
        amplitude = np.broadcast_to(np.asarray(parameters["forcing_amplitude"],
                                               dtype=np.float64), (batch,))
        mode = np.rint(np.broadcast_to(np.asarray(parameters["forcing_wavenumber"],
                                                  dtype=np.float64), (batch,))).astype(np.intp)
        self._check_batch({"forcing_amplitude": amplitude, "forcing_wavenumber": mode},
                          grid, init, initial_state)
        solver = _VorticitySolver(grid, batch, work_arrays)
        wavenumber = mode * (2 * np.pi / grid.box_size)
        # rfft2 of -A k_f cos(k_f y) is -A k_f N^2 / 2 at (m_x, m_y) = (0, m_f)
        forced = mode <= solver.modes.k_max
        solver.forcing_row[forced, mode[forced]] = (-amplitude * wavenumber
                                                    * grid.resolution**2 / 2)[forced]
        linear = -(nu[:, None, None] * solver.k_squared
                   + self.hyperviscosity * solver.k_squared**2 + self.drag)
        return solver, linear, self._initial_spectrum(solver, seeds, init, initial_state)

    def torch_integrator(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                         seeds: Sequence[int], init: str = "random",
                         initial_state: Mapping[str, np.ndarray] | None = None, *,
                         device: str = "cpu") -> TorchVorticityIntegrator:
        """A :class:`TorchVorticityIntegrator` at ``t = 0`` on ``device`` (else as
        :meth:`integrator`; ``ValueError`` also for an unknown or absent device)."""
        resolved = self.check_device(device)
        solver, linear, spectrum = self._setup(parameters, grid, seeds, init, initial_state,
                                               work_arrays=False)
        return TorchVorticityIntegrator(solver, linear, spectrum, cfl=self.cfl,
                                        dt_max=self.dt_max, device=resolved)

    def _initial_spectrum(self, solver: _VorticitySolver, seeds: Sequence[int], init: str,
                          initial_state: Mapping[str, np.ndarray] | None) -> np.ndarray:
        """Zero-mean initial spectrum (B, N, C) on the retained modes."""
        grid = solver.grid
        if initial_state is not None:
            single = solver.modes.compact(grid.fft(np.asarray(initial_state["vorticity"],
                                                              dtype=np.float64)))
            single[0, 0] = 0.0
            return np.repeat(single[None], len(seeds), axis=0)
        spectra = []
        for seed in seeds:
            spectrum = solver.modes.compact(grid.fft(self.initial_vorticity(grid, seed, init)))
            spectrum[0, 0] = 0.0
            if init == "random":
                velocity = _VorticitySolver(grid, 1).fields(spectrum[None])[0, :2]
                spectrum /= np.sqrt(np.mean(velocity[0] ** 2 + velocity[1] ** 2))
            spectra.append(spectrum)
        return np.stack(spectra)

    # -------------------------------------------------------------- diagnostics
    def energy_budget(self, vorticity: np.ndarray,
                      parameters: Mapping[str, Any] | None = None,
                      box_size: float | None = None) -> dict[str, np.ndarray]:
        """Terms of the energy budget for vorticity fields.

        Args:
            vorticity: real array (..., N, N) (zero mean; any mean is ignored).
            parameters: ``{name: value}`` (defaults filled in, ranges checked).
            box_size: ``L`` (default ``2 pi``).
        Returns:
            ``{name: array of shape (...)}`` with ``energy`` ``E = <|u|^2>/2``
            (length^2/time^2), ``enstrophy`` ``Z = <omega^2>/2`` (1/time^2),
            ``palinstrophy`` ``P_al = <|grad omega|^2>/2`` (1/(length^2 time^2)),
            ``forcing_work`` ``<F . u>`` and ``dissipation``
            ``2 nu Z + 2 nu_h P_al + 2 drag E`` (length^2/time^3), and
            ``energy_rate = forcing_work - dissipation``, the predicted ``dE/dt``.
            ``<.>`` is the mean over the grid points; the velocity is the spectral one
            of ``grid.velocity_from_vorticity_hat``.
        """
        values = self.resolve_parameters(parameters)
        vorticity = np.asarray(vorticity, dtype=np.float64)
        if vorticity.ndim < 2 or vorticity.shape[-1] != vorticity.shape[-2]:
            raise ValueError(f"vorticity must have shape (..., N, N), got {vorticity.shape}")
        grid = self.make_grid(check_resolution(vorticity.shape[-1]), box_size)
        spectrum = grid.fft(vorticity)
        spectrum[..., 0, 0] = 0.0
        velocity = grid.velocity_from_vorticity_hat(spectrum)
        fluctuation = grid.ifft(spectrum)
        gradient = np.stack([grid.ifft(grid.ikx * spectrum), grid.ifft(grid.iky * spectrum)])
        energy = 0.5 * np.mean(np.sum(velocity**2, axis=-1), axis=(-2, -1))
        enstrophy = 0.5 * np.mean(fluctuation**2, axis=(-2, -1))
        palinstrophy = 0.5 * np.mean(np.sum(gradient**2, axis=0), axis=(-2, -1))
        wavenumber = values["forcing_wavenumber"] * 2 * np.pi / grid.box_size
        force_x = values["forcing_amplitude"] * np.sin(wavenumber * grid.mesh()[1])
        forcing_work = np.mean(force_x * velocity[..., 0], axis=(-2, -1))
        dissipation = (2 * values["nu"] * enstrophy + 2 * self.hyperviscosity * palinstrophy
                       + 2 * self.drag * energy)
        return {"energy": energy, "enstrophy": enstrophy, "palinstrophy": palinstrophy,
                "forcing_work": forcing_work, "dissipation": dissipation,
                "energy_rate": forcing_work - dissipation}
