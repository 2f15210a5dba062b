"""Explicit Runge–Kutta schemes as data, and the integrating-factor (Lawson) step.

A scheme is a :class:`ButcherTableau` ``(a, b, c)``: for ``du/dt = f(u)`` and step ``h``,

    U_i     = u_n + h sum_{j<i} a_ij f(U_j),      i = 1..s
    u_{n+1} = u_n + h sum_j b_j f(U_j),

with stage times ``t_n + c_i h``.

For a stiff *diagonal* linear part, ``du/dt = L u + N(u)`` with ``L`` a real diagonal
operator in Fourier space (viscosity ``-nu |k|^2``, hyperviscosity, drag), the Lawson
(1967) integrating-factor method applies the tableau to ``v = exp(-t L) u``, for which
``dv/dt = exp(-t L) N(exp(t L) v)`` has no stiff part. Written for ``u`` again:

    U_i     = e^{c_i h L} u_n + h sum_j a_ij e^{(c_i - c_j) h L} N(U_j)
    u_{n+1} = e^{h L} u_n     + h sum_j b_j  e^{(1 - c_j) h L} N(U_j)

The linear part is integrated exactly (no stability limit from viscosity, and a pure
linear decay is reproduced to round-off); the order of accuracy for ``N`` is the order
of the tableau. Reference: J. D. Lawson, "Generalized Runge–Kutta processes for stable
systems with large Lipschitz constants", SIAM J. Numer. Anal. 4, 372–380 (1967).

Step sizes may differ per trajectory: ``h`` may be a scalar or an array that
broadcasts against the state, e.g. shape ``(B, 1, 1)`` for a state ``(B, R, C)``. A
trajectory with ``h = 0`` is left bit-for-bit unchanged (all factors are ``exp(0) = 1``
and every tendency is multiplied by an exact zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge–Kutta scheme.

    Attributes:
        name: short identifier.
        a: strictly lower-triangular stage matrix, ``a[i][j]`` for ``j < i`` (rows of
            length ``s``; entries on and above the diagonal must be zero).
        b: weights, length ``s``, summing to 1.
        c: nodes, length ``s``, with ``c[0] = 0`` and ``c[i] = sum_j a[i][j]``.
        order: classical order of accuracy.
        reference: where the coefficients come from.
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    reference: str

    def __post_init__(self) -> None:
        stages = len(self.b)
        if len(self.c) != stages or len(self.a) != stages \
                or any(len(row) != stages for row in self.a):
            raise ValueError(f"tableau {self.name}: a, b, c sizes disagree")
        for i, row in enumerate(self.a):
            if any(row[j] != 0.0 for j in range(i, stages)):
                raise ValueError(f"tableau {self.name}: not explicit (row {i})")
            if abs(sum(row) - self.c[i]) > 1e-14:
                raise ValueError(f"tableau {self.name}: c[{i}] != sum_j a[{i}][j]")
        if abs(sum(self.b) - 1.0) > 1e-14:
            raise ValueError(f"tableau {self.name}: weights do not sum to 1")
        if self.c[0] != 0.0:
            raise ValueError(f"tableau {self.name}: c[0] must be 0")

    @property
    def stages(self) -> int:
        """Number of stages ``s``."""
        return len(self.b)


#: Classic fourth-order Runge–Kutta method (Kutta 1901, "Beitrag zur näherungsweisen
#: Integration totaler Differentialgleichungen", Z. Math. Phys. 46, 435; Hairer,
#: Nørsett & Wanner, Solving ODEs I, table 1.2 of section II.1).
CLASSIC_RK4 = ButcherTableau(
    name="rk4",
    a=((0.0, 0.0, 0.0, 0.0),
       (0.5, 0.0, 0.0, 0.0),
       (0.0, 0.5, 0.0, 0.0),
       (0.0, 0.0, 1.0, 0.0)),
    b=(1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0),
    c=(0.0, 0.5, 0.5, 1.0),
    order=4,
    reference="Kutta (1901); Hairer, Nørsett & Wanner, Solving ODEs I, sec. II.1",
)

#: Three-stage, third-order strong-stability-preserving Runge–Kutta method (Shu & Osher
#: 1988, J. Comput. Phys. 77, 439, eq. 2.18; Gottlieb & Shu 1998, Math. Comp. 67, 73),
#: written in Butcher form.
SSP_RK3 = ButcherTableau(
    name="ssprk3",
    a=((0.0, 0.0, 0.0),
       (1.0, 0.0, 0.0),
       (0.25, 0.25, 0.0)),
    b=(1.0 / 6.0, 1.0 / 6.0, 2.0 / 3.0),
    c=(0.0, 1.0, 0.5),
    order=3,
    reference="Shu & Osher (1988), J. Comput. Phys. 77, 439; Gottlieb & Shu (1998)",
)

#: Forward Euler (first order), mostly for convergence tests.
FORWARD_EULER = ButcherTableau(name="euler", a=((0.0,),), b=(1.0,), c=(0.0,), order=1,
                               reference="Euler (1768), Institutiones calculi integralis")

#: Tendency ``N``: ``tendency(state, out)`` writes ``N(state)`` into ``out`` (same shape).
Tendency = Callable[[np.ndarray, np.ndarray], None]


class LawsonStepper:
    """Integrating-factor Runge–Kutta step for ``du/dt = L u + N(u)``, ``L`` diagonal.

    The stepper owns its work arrays (allocated once for a state shape), so repeated
    steps allocate nothing of the state's size. Per step it evaluates, for every
    distinct exponent the tableau needs, one real ``exp`` of the state's size.

    Args:
        tableau: the explicit Runge–Kutta scheme applied to the nonlinear part.
        shape: shape of the (complex) state, e.g. ``(B, R, C)`` Fourier coefficients.
        dtype: state dtype (default complex128).

    Attributes:
        tendencies: array ``(s, *shape)``; after :meth:`step`, ``tendencies[i]`` holds
            ``N(U_i)``. A caller may fill ``tendencies[0]`` with ``N(u_n)`` before the
            step (e.g. to get a CFL speed from the same evaluation) and pass
            ``first_tendency_ready=True``.
    """

    def __init__(self, tableau: ButcherTableau, shape: tuple[int, ...],
                 dtype: np.dtype | type = np.complex128) -> None:
        self.tableau = tableau
        self.shape = tuple(shape)
        self.tendencies = np.empty((tableau.stages, *self.shape), dtype=dtype)
        self._stage_value = np.empty(self.shape, dtype=dtype)
        self._scratch = np.empty(self.shape, dtype=dtype)
        self._exponent = np.empty(self.shape, dtype=np.float64)
        c = tableau.c
        # ("exp", d): exp(d h L) multiplying u_n; ("tendency", d, w): w h exp(d h L)
        keys: set[tuple[float, ...]] = {(1.0,)} | {(ci,) for ci in c if ci != 0.0}
        for i, row in enumerate(tableau.a):
            keys |= {(c[i] - c[j], a_ij) for j, a_ij in enumerate(row) if a_ij != 0.0}
        keys |= {(1.0 - c[j], b_j) for j, b_j in enumerate(tableau.b) if b_j != 0.0}
        self._factors = {key: np.zeros(self.shape, dtype=dtype) for key in sorted(keys)}
        #: exp(d h L) for every distinct non-zero exponent coefficient d (real)
        self._exponentials = {d: np.empty(self.shape) for d in sorted({k[0] for k in keys})
                              if d != 0.0}

    def _prepare_factors(self, step: np.ndarray | float, linear: np.ndarray) -> None:
        """Fill ``exp(d h L)`` and ``w h exp(d h L)`` for this step (stored complex)."""
        step = np.asarray(step, dtype=np.float64)
        for exponent_coefficient, values in self._exponentials.items():
            np.multiply(linear, step * exponent_coefficient, out=values)
            np.exp(values, out=values)
        for key, factor in self._factors.items():
            if len(key) == 1:                              # exp(c_i h L)
                factor.real = self._exponentials[key[0]]
            elif key[0] == 0.0:                            # w h
                factor.real = step * key[1]
            else:                                          # w h exp(d h L)
                np.multiply(self._exponentials[key[0]], step * key[1], out=factor.real)

    def step(self, state: np.ndarray, step: np.ndarray | float, linear: np.ndarray,
             tendency: Tendency, *, first_tendency_ready: bool = False) -> None:
        """Advance ``state`` in place by one step of size ``step``.

        Args:
            state: complex array of :attr:`shape`, ``u_n`` on entry, ``u_{n+1}`` on exit.
            step: ``h``, a scalar or an array broadcasting against ``state`` (one step
                size per trajectory, e.g. shape ``(B, 1, 1)``); ``h = 0`` leaves that
                trajectory exactly unchanged.
            linear: real diagonal of ``L``, broadcasting to :attr:`shape`.
            tendency: ``tendency(U, out)`` writes ``N(U)`` into ``out``.
            first_tendency_ready: ``tendencies[0]`` already holds ``N(u_n)``.
        """
        tableau = self.tableau
        with np.errstate(under="ignore"):          # exp(-large) -> 0 is the right value
            self._prepare_factors(step, linear)
            if not first_tendency_ready:
                tendency(state, self.tendencies[0])
            for i in range(1, tableau.stages):
                self._combine(state, tableau.c[i], tableau.a[i][:i], self._stage_value)
                tendency(self._stage_value, self.tendencies[i])
            self._combine(state, 1.0, tableau.b, state)

    def _combine(self, state: np.ndarray, node: float, weights: tuple[float, ...],
                 out: np.ndarray) -> None:
        """``out = e^{node h L} state + sum_j w_j h e^{(node - c_j) h L} N_j``.

        ``out`` may be ``state`` itself (the final combination).
        """
        c = self.tableau.c
        if node == 0.0:
            np.copyto(out, state)
        else:
            np.multiply(state, self._factors[(node,)], out=out)
        for j, weight in enumerate(weights):
            if weight != 0.0:
                np.multiply(self.tendencies[j], self._factors[(node - c[j], weight)],
                            out=self._scratch)
                np.add(out, self._scratch, out=out)

