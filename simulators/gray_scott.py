"""Gray–Scott reaction–diffusion on the periodic square, pseudo-spectral ETDRK4.

See :class:`GrayScott` for the equations, units, bounds, scheme and choices, and
:class:`ETDRK4` for the time integrator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from simulators.base import FieldSpec, Invariant, Parameter, Simulator
from simulators.grid import PeriodicGrid

if TYPE_CHECKING:
    import torch

#: default side ``L`` of the periodic box (length units): about five pattern wavelengths
DEFAULT_BOX_SIZE = 0.5
#: default upper bound of the time step (time units)
DEFAULT_DT_MAX = 1.0
#: points on the half circle of the Kassam–Trefethen contour integrals
CONTOUR_POINTS = 32
#: complex values evaluated together in the contour integrals (memory bound, 1 MiB)
CONTOUR_BLOCK = 2**16
#: random init: patches per unit area (4 in the default box, at least 1 in any box)
PATCH_DENSITY = 16.0
#: random init: side of a square patch (length units), before rounding to whole cells
PATCH_SIZE = 0.1
#: random init: ``(u, v)`` inside a patch (Pearson 1993) and the amplitude of the
#: uniform noise added to each inside a patch
PATCH_STATE = (0.5, 0.25)
PATCH_NOISE = 0.01
#: ETDRK4 coefficient sets kept per integrator (one per distinct step size)
COEFFICIENT_CACHE = 4
#: grid points (N^2 times trajectories) integrated together; see GrayScott.chunk_size
CHUNK_POINTS = 2**14
#: device memory per grid point and trajectory of the torch path (bytes, with margin)
TORCH_BYTES_PER_POINT = 384


class ETDRK4:
    r"""Coefficients of Cox & Matthews' ETDRK4 scheme for ``ds/dt = L s + N(s)``.

    ``L`` is a real diagonal operator (Fourier multipliers, ``L <= 0``), ``N`` the
    nonlinear part. With step ``h``, ``z = h L``, ``E = exp(z)``, ``E2 = exp(z / 2)``,
    one step is (S. M. Cox & P. C. Matthews 2002, J. Comput. Phys. 176, 430; written as
    in A.-K. Kassam & L. N. Trefethen 2005, SIAM J. Sci. Comput. 26, 1214)::

        a       = E2 s_n + Q N(s_n)
        b       = E2 s_n + Q N(a)
        c       = E2 a   + Q (2 N(b) - N(s_n))
        s_{n+1} = E s_n + f1 N(s_n) + 2 f2 (N(a) + N(b)) + f3 N(c)

        Q  = h (e^{z/2} - 1) / z
        f1 = h (-4 - z + e^z (4 - 3 z + z^2)) / z^3
        f2 = h ( 2 + z + e^z (z - 2)) / z^3
        f3 = h (-4 - 3 z - z^2 + e^z (4 - z)) / z^3

    The linear part is integrated exactly (no stability limit from stiff diffusion) and
    the scheme is fourth order in ``h``. Evaluated as written, ``Q, f1, f2, f3`` lose
    all their digits to cancellation as ``z -> 0``; following Kassam & Trefethen they
    are instead the mean of the same expressions over the points ``z + exp(i theta_j)``
    of a unit circle around each ``z`` (Cauchy's integral formula, trapezoidal rule,
    exponentially accurate), ``theta_j = pi (j - 1/2) / M``, ``j = 1..M`` on the upper
    half circle only: ``L`` is real, so the real part of that mean is the full-circle
    mean. With ``M = 32`` the coefficients are exact to about 1e-13 (relative) on
    ``-1000 <= z <= 0`` (checked against 50-digit arithmetic).

    Attributes (arrays of the shape of ``linear``, complex128 with zero imaginary part,
    so that multiplying the complex state is one complex loop):
        exp, exp_half: ``E`` and ``E2``.
        q, f1, f3: ``Q``, ``f1``, ``f3``.
        f2_twice: ``2 f2``.
        step: ``h``.

    Args:
        linear: real diagonal of ``L`` (any shape, e.g. ``(B, 2, N, N//2+1)``), ``<= 0``.
        step: ``h > 0`` (time units).
        contour_points: ``M``.
    """

    def __init__(self, linear: np.ndarray, step: float,
                 contour_points: int = CONTOUR_POINTS) -> None:
        self.step = float(step)
        z = np.asarray(linear, dtype=np.float64) * self.step
        # the coefficients depend on z only: evaluate them on its distinct values (a
        # Fourier multiplier -(D |k|^2 + c) takes ~4x fewer values than there are modes)
        values, where = np.unique(z, return_inverse=True)
        points = np.exp(1j * np.pi * (np.arange(contour_points) + 0.5) / contour_points)
        # contour points in blocks of about CONTOUR_BLOCK complex values (few numpy
        # calls for small grids, bounded memory for large ones)
        block = max(1, min(contour_points, CONTOUR_BLOCK // values.size))
        sums = np.zeros((4, values.size))
        with np.errstate(under="ignore"):       # exp(very negative) -> 0 is right
            exp_values, exp_half_values = np.exp(values), np.exp(values / 2)
            for first in range(0, contour_points, block):
                circle = points[first:first + block, None]
                r = values + circle                                  # (block, V)
                e_r = exp_values * np.exp(circle)                    # exp(r)
                inverse_cube = (1.0 / r) ** 3
                sums[0] += ((exp_half_values * np.exp(circle / 2) - 1.0) / r).real.sum(axis=0)
                sums[1] += ((-4.0 - r + e_r * (4.0 - 3.0 * r + r * r)) * inverse_cube
                            ).real.sum(axis=0)
                sums[2] += ((2.0 + r + e_r * (r - 2.0)) * inverse_cube).real.sum(axis=0)
                sums[3] += ((-4.0 - 3.0 * r - r * r + e_r * (4.0 - r)) * inverse_cube
                            ).real.sum(axis=0)
        where = where.reshape(z.shape)
        self.exp = exp_values[where].astype(np.complex128)
        self.exp_half = exp_half_values[where].astype(np.complex128)
        sums = sums[:, where]
        scale = self.step / contour_points
        self.q = (scale * sums[0]).astype(np.complex128)
        self.f1 = (scale * sums[1]).astype(np.complex128)
        self.f2_twice = (2.0 * scale * sums[2]).astype(np.complex128)
        self.f3 = (scale * sums[3]).astype(np.complex128)

    @classmethod
    def stacked(cls, parts: Sequence[ETDRK4]) -> ETDRK4:
        """Coefficients of equal steps stacked along a new leading axis."""
        if len({part.step for part in parts}) != 1:
            raise ValueError("ETDRK4.stacked: the parts have different steps")
        whole = cls.__new__(cls)
        whole.step = parts[0].step
        for name in ("exp", "exp_half", "q", "f1", "f2_twice", "f3"):
            setattr(whole, name, np.stack([getattr(part, name) for part in parts]))
        return whole


class GrayScottIntegrator:
    """State and ETDRK4 stepping of a batch of :class:`GrayScott` trajectories.

    Built by :meth:`GrayScott.integrator`; public so that tests and benchmarks can step
    the solver directly.

    The state is ``s = (a_hat, v_hat)``, complex128 of shape ``(B, 2, N, N//2+1)``: the
    numpy rfft2 (unnormalised forward transform) of ``a = 1 - u`` and of ``v``. In these
    variables the equations read ``ds/dt = L s + N(s)`` with the diagonal
    ``L = (-(D_u |k|^2 + F), -(D_v |k|^2 + F + k))`` and the *same* nonlinear term for
    both fields, ``N = rfft2((1 - a) v^2) = rfft2(u v^2)``: one array ``(B, N, N//2+1)``
    broadcast over the field axis. Per ETDRK4 stage: one inverse real 2-D transform of
    the two fields and one forward transform of ``u v^2``; ``numpy.fft`` 1-D passes with
    ``out=`` into preallocated arrays, so a step allocates nothing of the state's size.

    Attributes:
        grid: the periodic grid.
        linear: real diagonal of ``L``, (B, 2, N, N//2+1).
        state: spectral state, (B, 2, N, N//2+1), complex128.
        time: current time (all trajectories step together), time units.
    """

    def __init__(self, grid: PeriodicGrid, linear: np.ndarray, state: np.ndarray) -> None:
        self.grid = grid
        self.linear = linear
        self.state = state
        self.time = 0.0
        batch, n, half = state.shape[0], grid.resolution, grid.resolution // 2 + 1
        self._physical = np.empty((batch, 2, n, n))
        self._mixed = np.empty_like(state)
        self._stage = np.empty_like(state)
        self._next_stage = np.empty_like(state)
        self._scratch = np.empty_like(state)
        self._tendencies = np.empty((4, batch, 1, n, half), dtype=np.complex128)
        self._coefficients: dict[float, ETDRK4] = {}

    def coefficients(self, step: float) -> ETDRK4:
        """The :class:`ETDRK4` coefficients for ``step`` (cached per distinct step).

        Computed trajectory by trajectory and stacked: numpy evaluates expressions on
        large temporaries (above 256 KiB) in place, through other loops, which changed
        the last bit of some complex products (observed at 4 x 64^2 trajectories); per
        trajectory, the arrays have the same size in any batch, so a trajectory's
        coefficients, and its result, do not depend on the batch.
        """
        if step not in self._coefficients:
            if len(self._coefficients) >= COEFFICIENT_CACHE:
                self._coefficients.clear()
            self._coefficients[step] = ETDRK4.stacked(
                [ETDRK4(linear, step) for linear in self.linear])
        return self._coefficients[step]

    def nonlinear(self, state: np.ndarray, out: np.ndarray) -> None:
        """``out[:, 0] = rfft2((1 - a) v^2)`` for ``state`` (B, 2, N, C); out (B, 1, N, C)."""
        physical, mixed = self._physical, self._mixed
        np.fft.ifft(state, axis=-2, out=mixed)
        np.fft.irfft(mixed, n=self.grid.resolution, axis=-1, out=physical)
        a, v = physical[:, 0], physical[:, 1]
        np.subtract(1.0, a, out=a)                 # u
        np.multiply(v, v, out=v)                   # v^2
        np.multiply(a, v, out=a)                   # u v^2
        np.fft.rfft(a, axis=-1, out=mixed[:, 0])
        np.fft.fft(mixed[:, 0], axis=-2, out=out[:, 0])

    def step(self, h: float) -> None:
        """Advance every trajectory by one ETDRK4 step of size ``h`` (time units)."""
        c = self.coefficients(h)
        s, a, stage, scratch = self.state, self._stage, self._next_stage, self._scratch
        n_s, n_a, n_b, n_c = self._tendencies
        self.nonlinear(s, n_s)
        np.multiply(s, c.exp_half, out=a)          # a = E2 s + Q N(s)
        np.multiply(n_s, c.q, out=scratch)
        a += scratch
        self.nonlinear(a, n_a)
        np.multiply(s, c.exp_half, out=stage)      # b = E2 s + Q N(a)
        np.multiply(n_a, c.q, out=scratch)
        stage += scratch
        self.nonlinear(stage, n_b)
        np.multiply(a, c.exp_half, out=stage)      # c = E2 a + Q (2 N(b) - N(s))
        np.multiply(n_b, 2.0, out=n_c)
        n_c -= n_s
        np.multiply(n_c, c.q, out=scratch)
        stage += scratch
        self.nonlinear(stage, n_c)
        s *= c.exp                                 # E s + f1 N(s) + 2 f2 (N(a) + N(b))
        np.multiply(n_s, c.f1, out=scratch)        #   + f3 N(c)
        s += scratch
        n_a += n_b
        np.multiply(n_a, c.f2_twice, out=scratch)
        s += scratch
        np.multiply(n_c, c.f3, out=scratch)
        s += scratch
        self.time += h

    def advance(self, target: float, dt_max: float) -> None:
        """Step to exactly ``target``: ``ceil((target - time) / dt_max)`` equal steps.

        Does nothing when ``target <= time``.
        """
        interval = float(target) - self.time
        if interval <= 0:
            return
        steps = max(1, math.ceil(interval / dt_max))
        h = interval / steps
        for _ in range(steps):
            self.step(h)
        self.time = float(target)

    def fields(self) -> tuple[np.ndarray, np.ndarray]:
        """Real ``(u, v)`` now, each (B, N, N), float64 (new arrays)."""
        np.fft.ifft(self.state, axis=-2, out=self._mixed)
        physical = np.fft.irfft(self._mixed, n=self.grid.resolution, axis=-1)
        return 1.0 - physical[:, 0], physical[:, 1]


class TorchGrayScottIntegrator(GrayScottIntegrator):
    """:class:`GrayScottIntegrator`'s ETDRK4 scheme on a torch device (the torch backend).

    The same state layout ``(B, 2, N, N//2+1)`` (complex128 tensor on ``device``),
    linear part, stepping rule (:meth:`advance` is inherited) and ETDRK4 coefficients:
    those are computed by the numpy :class:`ETDRK4` contour integrals (per trajectory,
    cached per distinct step as on the numpy path) and copied to the device once per
    distinct step, as real float64 arrays (their imaginary parts are zero). Per stage one
    ``torch.fft.irfft2`` of both fields and one ``rfft2`` of ``u v^2`` for the whole
    batch.

    Args:
        grid: the periodic grid.
        linear: real diagonal of ``L`` (B, 2, N, N//2+1), numpy.
        state: initial spectral state (B, 2, N, N//2+1), numpy complex128.
        device: where to integrate.
    """

    def __init__(self, grid: PeriodicGrid, linear: np.ndarray, state: np.ndarray,
                 device: torch.device) -> None:
        from simulators.backend import to_device
        # no numpy work arrays: only the set-up and the coefficient cache are shared
        self.grid = grid
        self.linear = linear
        self.device = device
        self.state = to_device(state, device)
        self.time = 0.0
        self._coefficients: dict[float, ETDRK4] = {}
        self._device_coefficients: tuple[float, tuple[torch.Tensor, ...]] | None = None

    def device_coefficients(self, step: float) -> tuple[torch.Tensor, ...]:
        """``(E, E2, Q, f1, 2 f2, f3)`` of ``step`` on the device (real float64)."""
        from simulators.backend import to_device
        if self._device_coefficients is None or self._device_coefficients[0] != step:
            c = self.coefficients(step)
            self._device_coefficients = (step, tuple(
                to_device(getattr(c, name).real, self.device)
                for name in ("exp", "exp_half", "q", "f1", "f2_twice", "f3")))
        return self._device_coefficients[1]

    def nonlinear(self, state: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``rfft2((1 - a) v^2)`` (B, 1, N, N//2+1) of ``state`` (B, 2, N, N//2+1)."""
        import torch
        n = self.grid.resolution
        physical = torch.fft.irfft2(state, s=(n, n))
        v = physical[:, 1]
        return torch.fft.rfft2((1.0 - physical[:, 0]) * (v * v))[:, None]

    def step(self, h: float) -> None:
        """Advance every trajectory by one ETDRK4 step of size ``h`` (time units)."""
        exp, exp_half, q, f1, f2_twice, f3 = self.device_coefficients(h)
        s = self.state
        n_s = self.nonlinear(s)
        a = s * exp_half + n_s * q
        n_a = self.nonlinear(a)
        n_b = self.nonlinear(s * exp_half + n_a * q)
        n_c = self.nonlinear(a * exp_half + (n_b * 2.0 - n_s) * q)
        self.state = s * exp + n_s * f1 + (n_a + n_b) * f2_twice + n_c * f3
        self.time += h

    def fields(self) -> tuple[np.ndarray, np.ndarray]:
        """Real ``(u, v)`` now, each (B, N, N), numpy float64."""
        import torch

        from simulators.backend import to_numpy
        n = self.grid.resolution
        physical = to_numpy(torch.fft.irfft2(self.state, s=(n, n)))
        return 1.0 - physical[:, 0], physical[:, 1]


def patch_state(grid: PeriodicGrid, centres: np.ndarray, noise: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The random initial state for given patch centres and noise (see :class:`GrayScott`).

    Args:
        grid: the periodic grid (N points per side).
        centres: integer cell indices ``(P, 2)`` of the patch centres, ``(ix, iy)``.
        noise: ``(2, N, N)`` values in ``[-1, 1]`` (for ``u`` and ``v``).
    Returns:
        ``(u, v)``, each (N, N), float64: ``u = 1, v = 0`` outside the patches and
        ``PATCH_STATE + PATCH_NOISE * noise`` inside them. A patch is the square of
        ``2 h + 1`` cells per side centred on its cell, ``h = round(PATCH_SIZE / (2 dx))``.
    """
    n = grid.resolution
    half = round(PATCH_SIZE / (2 * grid.dx))
    offsets = np.arange(-half, half + 1)
    inside = np.zeros(grid.shape, dtype=bool)
    for cx, cy in np.asarray(centres, dtype=np.intp):
        inside[np.ix_((cx + offsets) % n, (cy + offsets) % n)] = True
    u = np.where(inside, PATCH_STATE[0] + PATCH_NOISE * noise[0], 1.0)
    v = np.where(inside, PATCH_STATE[1] + PATCH_NOISE * noise[1], 0.0)
    return u, v


class GrayScott(Simulator):
    r"""Gray–Scott reaction–diffusion system on a periodic square (Pearson 1993).

    Equations, on ``[0, L)^2`` (``L = box_size``, default 0.5)::

        du/dt = D_u lap(u) - u v^2 + F (1 - u)
        dv/dt = D_v lap(v) + u v^2 - (F + k) v

    the autocatalytic reaction ``U + 2 V -> 3 V``, ``V -> P`` in an open reactor that
    feeds ``U`` at rate ``F`` (toward concentration 1) and removes ``V`` at rate
    ``F + k`` (J. E. Pearson, "Complex patterns in a simple system", Science 261, 189
    (1993); P. Gray & S. K. Scott, Chem. Eng. Sci. 39, 1087 (1984)). Parameters:
    ``feed`` ``F`` and ``kill`` ``k`` (1/time), ``diffusivity_u`` ``D_u`` and
    ``diffusivity_v`` ``D_v`` (length^2/time). Fields ``u`` and ``v`` are dimensionless
    concentrations. Units: Pearson's, i.e. his ``D_u = 2e-5``, ``D_v = 1e-5`` (the
    defaults) and his ``(F, k)`` phase diagram carry over unchanged.

    Mass balance: the diffusion terms integrate to zero on the torus, so the domain means
    ``<.>`` obey ``d<u + v>/dt = F (1 - <u>) - (F + k) <v>``.

    Bounds (declared as invariants). The rectangle ``0 <= u <= 1``, ``v >= 0`` is an
    invariant region of the PDE for *any* positive ``D_u, D_v`` (Chueh, Conley &
    Smoller 1977, Indiana Univ. Math. J. 26, 373: with diagonal diffusion a rectangle is
    invariant when the reaction points into it on each face): on ``u = 0`` the reaction
    of ``u`` is ``F > 0``; on ``u = 1`` it is ``-v^2 <= 0``; on ``v = 0`` the reaction of
    ``v`` vanishes (``v`` solves ``dv/dt = D_v lap(v) + c v`` with bounded
    ``c = u v - F - k``, so ``v >= 0`` is kept, and ``v > 0`` for ``t > 0`` unless
    ``v = 0``). No upper bound of ``v`` is declared: a face ``v = V`` points inward for
    all ``u`` in ``[0, 1]`` only if ``V <= F + k`` (about 0.1), while patterns reach
    ``v ~ 0.4``; the classical ``u + v <= 1`` (from ``w = u + v``,
    ``dw/dt = D lap(w) + F (1 - w) - k v``) holds only when ``D_u = D_v``.
    The discrete solution keeps the bounds up to its truncation error (a spectral
    solution is not monotone). Measured to ``t = 4000`` in the default box: at N = 64
    round-off (1e-16) in most regimes and at most 5e-6 at the corners of the declared
    ``(F, k)`` range; at N = 32 at most 3.3e-4 in Pearson's regimes and 1.4e-3 at the
    extreme corner ``F = 0.005, k = 0.03`` (excursions below ``v = 0`` at the sharpest
    fronts).

    Scheme. Fourier pseudo-spectral in space (the exact Laplacian ``-|k|^2`` on numpy's
    rfft2 layout, ``field[..., ix, iy]``, the product ``u v^2`` on the grid, not
    dealiased, as in Kassam & Trefethen's reaction–diffusion examples: with developed
    patterns the spectrum at the grid scale is ~1e-6 of its peak at N = 64 and ~1e-3
    at N = 32, so aliasing stays at the level of the truncation error). In time, the
    variables ``a = 1 - u`` and ``v`` (so that the homogeneous state is ``s = 0``, a
    fixed point kept bit for bit) with the diffusion *and* the linear decay terms
    integrated exactly and ``N = u v^2`` by ETDRK4 (:class:`ETDRK4`; Cox & Matthews
    2002, with Kassam & Trefethen's 2005 contour evaluation of its coefficients). The
    step is fixed, ``h = interval / ceil(interval / dt_max)`` on each interval between
    snapshots, so steps land exactly on snapshot times, and the same for every
    trajectory of a batch: a trajectory's result is bit-for-bit the same alone or in
    any batch. With ``dt_max = 1`` (Pearson's step) the time error is ~6e-6 at
    ``t = 100`` and ~1e-4 at ``t = 1000`` (max norm, Pearson's regimes), and falls 16x
    per halving of the step (fourth order; tested).

    Box and resolution. Patterns at the default diffusivities have a wavelength of
    about 0.1 (spots 0.1 apart, stripes 0.1 wide), so the default box ``L = 0.5`` holds
    about five wavelengths: large enough for developed spots, stripes and mazes, small
    enough that N = 32 (``dx = 1/64``, six points per wavelength) resolves them. Against
    N = 128 at ``t = 1000`` (default diffusivities, several Pearson regimes), N = 64
    agrees to ~5e-6 and N = 32 to 1e-2–4e-2 (max norm; fields are O(0.4)). The
    diffusivity ranges stop where N = 32 degrades: ``D_v = 7.5e-6`` gives 10–20%
    errors at N = 32, ``D_v >= 1e-5`` a few %; at the lower ends use N = 64. The
    travelling-wave and chaotic regimes at low ``F`` (Pearson's alpha, beta, epsilon,
    e.g. ``F = 0.018, k = 0.047``) have longer waves: in the default box the patches
    excite the whole domain almost at once and it relaxes to ``u = 1, v = 0``; with
    ``box_size = 1`` (and N >= 64, better 128) they persist as in Pearson's figures.
    Most of the declared ``(F, k)`` rectangle outside Pearson's pattern band relaxes
    to the homogeneous state in any box, as in his phase diagram.

    Default time: patterns develop within ~1000 time units from the seeded patches and
    then rearrange slowly (spot replication until ~3000); ``default_t_end = 4000`` with
    11 snapshots shows both. A 64^2 trajectory to 4000 takes about a second on one core.

    Initial conditions (``init="random"``, all from ``numpy.random.default_rng(seed)``):
    the homogeneous state ``u = 1, v = 0`` with ``P = max(1, round(16 L^2))`` square
    patches (4 in the default box) where ``u = 1/2 + 0.01 xi_u`` and
    ``v = 1/4 + 0.01 xi_v``, ``xi`` uniform in ``[-1, 1]`` independently per cell:
    Pearson's perturbation (his single square had side ~0.2 in a box of 2.5; here the
    side is 0.1, about one pattern wavelength, so that several fit the small box, and
    the noise stays inside the patches, so the initial state is within the bounds).
    Each patch is centred on a cell drawn uniformly (``floor(N r)``, ``r`` uniform in
    [0, 1), so a seed puts its patches at the same places, within a cell, at every
    power-of-two resolution) and has ``2 h + 1`` cells per side,
    ``h = round(0.05 / dx)`` (:func:`patch_state`). ``initial_state={"u": (N, N),
    "v": (N, N)}`` (shared by the batch) overrides it; values outside ``0 <= u <= 1``,
    ``v >= 0`` are refused (clip a state from a coarse run, whose ``v`` may dip a few
    1e-4 below 0, before reusing it).

    Symmetries (``shift``, ``flip_x``, ``flip_y``, ``rotate_90``: the whole square-lattice
    group). The dynamics commute with every isometry of the grid: the reaction is
    pointwise and the spectral Laplacian's multiplier ``-|k|^2`` is invariant under the
    permutations of wavenumbers these maps induce. The random initial state is
    statistically invariant: a lattice map ``g`` sends a square of odd side centred on
    cell ``c`` to the square of the same side centred on ``g c`` (the reflections and
    rotations are about a grid point), cells drawn uniformly to cells drawn uniformly,
    and i.i.d. per-cell noise to i.i.d. per-cell noise, so the law of the initial state
    is unchanged.

    Backends (``simulate(..., device=...)``): ``device=None`` runs the numpy code
    (pocketfft). A torch device (``"cpu"``, ``"cuda"``, ``"cuda:N"``) runs the same
    ETDRK4 steps in complex128 with ``torch.fft`` (:class:`TorchGrayScottIntegrator`):
    the initial states, linear part and ETDRK4 coefficients (contour integrals, once per
    distinct step) come from the numpy code, the stages run on the device. It agrees
    with numpy to round-off, not bit-for-bit, and depends on the batch and chunking
    at round-off level only (not bit-for-bit as on numpy). On a GPU a chunk is the whole batch,
    capped at ``backend.TORCH_CHUNK_BYTES`` of work arrays (``TORCH_BYTES_PER_POINT``
    per grid point and trajectory); on the CPU it is :meth:`chunk_size`.

    Args (keyword-only numerical option):
        dt_max: upper bound of the time step (time units, default 1).
    """

    name = "gray_scott"
    description = ("Gray–Scott reaction–diffusion (Pearson 1993), pseudo-spectral, "
                   "ETDRK4 (Cox & Matthews 2002; Kassam & Trefethen 2005)")
    parameters = (
        Parameter("feed", 0.037, 0.005, 0.1, "1/time",
                  "feed rate F of u (Pearson's phase diagram: 0 to 0.08)"),
        Parameter("kill", 0.06, 0.03, 0.07, "1/time",
                  "removal rate k of v beyond the feed (Pearson: 0.03 to 0.07)"),
        Parameter("diffusivity_u", 2e-5, 1.5e-5, 4e-5, "length^2/time",
                  "diffusion coefficient D_u of u"),
        Parameter("diffusivity_v", 1e-5, 1e-5, 2e-5, "length^2/time",
                  "diffusion coefficient D_v of v"),
    )
    fields = (
        FieldSpec("u", "1", "concentration of the fed substrate u"),
        FieldSpec("v", "1", "concentration of the autocatalyst v"),
    )
    invariants = (
        Invariant("bounded", "u", low=0.0, high=1.0,
                  doc="invariant region 0 <= u <= 1 (reaction F at u = 0, -v^2 at u = 1)"),
        Invariant("bounded", "v", low=0.0,
                  doc="v >= 0 (linear in v with bounded rate); no upper bound for "
                      "D_u != D_v"),
    )
    inits = ("random",)
    symmetries = ("shift", "flip_x", "flip_y", "rotate_90")
    torch_backend = True
    default_box_size = DEFAULT_BOX_SIZE
    default_t_end = 4000.0
    default_snapshots = 11
    sweep_batch_size = 16
    time_units = "time"
    length_units = "length"

    def __init__(self, *, dt_max: float = DEFAULT_DT_MAX) -> None:
        try:
            number = float(dt_max)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise ValueError(f"{self.name}: option dt_max={dt_max!r} must be a positive "
                             "finite number")
        self.dt_max = number

    # ------------------------------------------------------------ initial states
    @staticmethod
    def patch_count(grid: PeriodicGrid) -> int:
        """Number of seeded patches: ``max(1, round(PATCH_DENSITY L^2))``."""
        return max(1, round(PATCH_DENSITY * grid.box_size**2))

    def random_initial_state(self, grid: PeriodicGrid, seed: int
                             ) -> tuple[np.ndarray, np.ndarray]:
        """``(u, v)`` of ``init="random"``, each (N, N), from ``default_rng(seed)`` only.

        Draws, in this order, the patch centres (``rng.random((P, 2))``, mapped to cells
        by ``floor(N r)``) and the noise (``rng.uniform(-1, 1, (2, N, N))``), then calls
        :func:`patch_state`.
        """
        rng = np.random.default_rng(seed)
        n = grid.resolution
        centres = np.floor(rng.random((self.patch_count(grid), 2)) * n).astype(np.intp) % n
        noise = rng.uniform(-1.0, 1.0, size=(2, n, n))
        return patch_state(grid, centres, noise)

    def validate_initial_state(self, state: dict[str, np.ndarray]) -> None:
        """Refuse ``u`` outside ``[0, 1]`` or negative ``v`` (one-line ``ValueError``)."""
        u, v = state["u"], state["v"]
        if u.min() < 0.0 or u.max() > 1.0:
            raise ValueError(f"initial_state['u'] must lie in [0, 1] (the physical bounds "
                             f"of a concentration fed toward 1); got values in "
                             f"[{u.min():.6g}, {u.max():.6g}]")
        if v.min() < 0.0:
            raise ValueError(f"initial_state['v'] must be >= 0 (a concentration); got a "
                             f"minimum of {v.min():.6g}")

    # --------------------------------------------------------------- integration
    def simulate(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                 times: np.ndarray, seeds: Sequence[int], init: str = "random",
                 initial_state: Mapping[str, np.ndarray] | None = None,
                 device: str | None = None) -> dict[str, np.ndarray]:
        """Integrate ``B = len(seeds)`` trajectories; see the class docstring.

        Args:
            parameters: ``{"feed", "kill", "diffusivity_u", "diffusivity_v"}``, each (B,).
            grid: periodic grid with ``N`` points per side.
            times: snapshot times (T,), non-decreasing, ``>= 0``.
            seeds: one seed per trajectory (used by ``init="random"``).
            init: ``"random"`` (ignored with ``initial_state``).
            initial_state: ``{"u": (N, N), "v": (N, N)}`` shared by the batch.
            device: ``None`` (numpy) or a torch device (``"cpu"``, ``"cuda"``,
                ``"cuda:1"``) for the torch backend (see the class docstring).
        Returns:
            ``{"u": (B, T, N, N), "v": (B, T, N, N)}``, float64.
        """
        resolved = self.check_device(device)
        times = np.asarray(times, dtype=np.float64)
        seeds = list(seeds)
        batch = len(seeds)
        parameters = {name: np.broadcast_to(np.asarray(values, dtype=np.float64), (batch,))
                      for name, values in parameters.items()}
        shape = (batch, len(times), *grid.shape)
        u, v = np.empty(shape), np.empty(shape)
        size = self.chunk_size(grid)
        if resolved is not None:
            from simulators.backend import chunk_size
            size = chunk_size(resolved, TORCH_BYTES_PER_POINT, grid.resolution, size)
        for start in range(0, batch, size):
            chunk = slice(start, start + size)
            integrator = self.integrator({name: values[chunk] for name, values
                                          in parameters.items()},
                                         grid, seeds[chunk], init, initial_state)
            if resolved is not None:
                integrator = TorchGrayScottIntegrator(grid, integrator.linear,
                                                      integrator.state, resolved)
            for index, target in enumerate(times):
                integrator.advance(float(target), self.dt_max)
                u[chunk, index], v[chunk, index] = integrator.fields()
        return {"u": u, "v": v}

    @staticmethod
    def chunk_size(grid: PeriodicGrid) -> int:
        """Trajectories integrated together (one FFT call per stage for all of them).

        ``max(1, CHUNK_POINTS // N^2)`` (16 at N = 32, 4 at N = 64): the chunk's work
        arrays (about 200 bytes per grid point and trajectory) then stay within a
        typical L2/L3 cache; larger batches are integrated chunk after chunk. Results do
        not depend on the chunking.
        """
        return max(1, CHUNK_POINTS // grid.resolution**2)

    def integrator(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                   seeds: Sequence[int], init: str = "random",
                   initial_state: Mapping[str, np.ndarray] | None = None
                   ) -> GrayScottIntegrator:
        """A :class:`GrayScottIntegrator` at ``t = 0`` (arguments as in :meth:`simulate`)."""
        batch = len(seeds)

        def column(name: str) -> np.ndarray:
            values = np.asarray(parameters[name], dtype=np.float64)
            return np.broadcast_to(values, (batch,))[:, None, None]

        feed, kill = column("feed"), column("kill")
        k_squared = grid.k_squared[None]
        linear = np.stack([-(column("diffusivity_u") * k_squared + feed),
                           -(column("diffusivity_v") * k_squared + feed + kill)], axis=1)
        if initial_state is not None:
            u0 = np.asarray(initial_state["u"], dtype=np.float64)
            v0 = np.asarray(initial_state["v"], dtype=np.float64)
            deviation = np.broadcast_to(np.stack([1.0 - u0, v0]), (batch, 2, *grid.shape))
        else:
            self.check_init(init)
            deviation = np.empty((batch, 2, *grid.shape))
            for index, seed in enumerate(seeds):
                u0, v0 = self.random_initial_state(grid, seed)
                deviation[index, 0] = 1.0 - u0
                deviation[index, 1] = v0
        return GrayScottIntegrator(grid, linear, np.fft.rfft2(deviation))
