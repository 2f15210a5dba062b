r"""Minkowski functionals of excursion sets of 2-D periodic fields.

For a scalar field :math:`f` on the periodic square :math:`[0, L)^2` and a threshold
:math:`\nu`, the excursion set is :math:`A_\nu = \{x : f(x) \ge \nu\}`. Its three
Minkowski functionals, as densities per unit area of the box, are

* :math:`v_0 = |A_\nu| / L^2` -- area fraction (dimensionless),
* :math:`v_1 = |\partial A_\nu| / L^2` -- boundary length per unit area (1/length),
* :math:`v_2 = \chi(A_\nu) / L^2` -- Euler characteristic (connected components minus
  holes) per unit area (1/length^2).

Note the normalisation: no factors of :math:`1/4` or :math:`1/2\pi` are applied (some
papers, e.g. Schmalzing & Buchert 1997, define :math:`v_1 = |\partial A|/(4 L^2)` and
:math:`v_2 = \chi/(2\pi L^2)`).

Estimator (marching squares)
----------------------------
The field is sampled at the grid points :math:`x_{ij} = (i, j)\,\Delta x`,
:math:`\Delta x = L/N`, with periodic wrap-around. The set is reconstructed cell by cell
as in marching squares (Lorensen & Cline 1987; for Minkowski functionals: Mantz,
Jacobs & Mecke 2008, J. Stat. Mech. P12015): a cell edge whose end values lie on
opposite sides of :math:`\nu` is crossed at the linearly interpolated point
:math:`t = (f_a - \nu)/(f_a - f_b)` (measured from end :math:`a`), and the crossing
points are joined by straight segments inside the cell. The result is a polygon
:math:`P_\nu` approximating :math:`A_\nu`.

* Ambiguous (saddle) cells, whose diagonally opposite corners are inside, are resolved by
  the cell-centre value :math:`\bar f = (f_{00} + f_{10} + f_{11} + f_{01})/4`: if
  :math:`\bar f \ge \nu` the two inside corners are joined, otherwise they are separated.
  The rule is symmetric under the square's symmetries and complementary under
  :math:`(f, \nu) \to (-f, -\nu)` (the complement is joined exactly where the set is not).
* :math:`v_1` is the exact length of the polygon's boundary. For a smooth boundary the
  crossing points are second-order accurate, so :math:`v_1` converges as
  :math:`O(\Delta x^2)` (a pixel-edge count would converge to :math:`4/\pi` times the
  true length).
* :math:`v_0` is the exact area of the same polygon (consistent with :math:`v_1`;
  :math:`O(\Delta x^2)` for smooth boundaries), computed per cell by Green's theorem
  :math:`|P \cap \text{cell}| = \tfrac12 \oint (x\,dy - y\,dx)`.
* :math:`v_2` is the exact Euler characteristic of the polygon :math:`P_\nu` on the torus.
  :math:`P_\nu` deformation-retracts onto the cell complex whose vertices are the inside
  grid points, whose edges are the grid edges with both ends inside plus one diagonal in
  every *joined* saddle cell, and whose faces are the cells with four inside corners, so
  :math:`\chi = V - E + F`. Spreading each vertex over its 4 cells and each edge over its
  2 cells gives the bit-quad sum (Gray 1971)
  :math:`\chi = \tfrac14 (n_1 - n_3 + 2 n_{\text{split}} - 2 n_{\text{joined}})`,
  where :math:`n_k` counts cells with :math:`k` inside corners (adjacent pairs contribute
  0). In pixel language (each grid value a pixel, inside if :math:`f \ge \nu`) this is
  4-connectivity of the set except at saddles whose centre value is :math:`\ge \nu`,
  which are 8-connected. So: if every saddle is joined (e.g. a 0/1 image thresholded
  below 1/2) :math:`\chi` equals the 8-connectivity count (skimage
  ``euler_number(..., connectivity=2)``); if every saddle is split (a 0/1 image
  thresholded above 1/2) it equals the 4-connectivity count (``connectivity=1``).
  On the torus :math:`\chi(A) + \chi(T^2 \setminus A) = \chi(T^2) = 0`.

Gaussian fields
---------------
For an isotropic Gaussian field of variance :math:`\sigma^2` and
:math:`\lambda = \langle(\partial_x f)^2\rangle/\sigma^2`, with :math:`u = \nu/\sigma`,
the expectations are (Adler 1981, *The Geometry of Random Fields*, ch. 5; Tomita 1986,
Prog. Theor. Phys. 76, 952; Schmalzing & Buchert 1997, ApJ 482, L1)

.. math::

    v_0 = 1 - \Phi(u), \qquad
    v_1 = \frac{\sqrt{\lambda}}{2}\, e^{-u^2/2}, \qquad
    v_2 = \frac{\lambda}{(2\pi)^{3/2}}\, u\, e^{-u^2/2}.

They are the reference for :func:`gaussian_expectations`, used by the tests.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

__all__ = ["gaussian_expectations", "minkowski_functionals"]

MIN_GRID = 4
# Cells processed per chunk: bounds the temporary memory (about 60 bytes per cell).
_CHUNK_CELLS = 1 << 21

# Corner k of a cell, in cell units relative to its lower-left grid point (ix, iy):
#   0: (0, 0)   1: (1, 0)   2: (1, 1)   3: (0, 1)
# Edge k runs counter-clockwise from corner k to corner k+1 (mod 4). The 4-bit case
# code has bit k set when corner k is inside (f >= nu).
#
# Every boundary cell holds one contour segment (two in a saddle cell), running from an
# "exit" crossing (edge k with corner k inside, corner k+1 outside) to an "entry"
# crossing (corner k outside, corner k+1 inside), so that the set lies on its left.
_SEG_START = np.zeros((16, 2), dtype=np.intp)
_SEG_END = np.zeros((2, 16, 2), dtype=np.intp)  # [joined, code, segment]
# 4 * (bit-quad Euler weight); index [joined, code].
_CHI4 = np.zeros((2, 16), dtype=np.int64)


def _build_tables() -> None:
    for code in range(16):
        inside = [(code >> k) & 1 for k in range(4)]
        exits = [k for k in range(4) if inside[k] and not inside[(k + 1) % 4]]
        entries = [k for k in range(4) if not inside[k] and inside[(k + 1) % 4]]
        n_in = sum(inside)
        if code in (5, 10):  # saddle: exits k and k+2
            k0 = exits[0]
            _SEG_START[code] = (k0, (k0 + 2) % 4)
            # joined: the contour cuts off the outside corners -> exit k pairs with entry k+1;
            # split: it cuts off the inside corners -> exit k pairs with entry k-1.
            _SEG_END[1, code] = ((k0 + 1) % 4, (k0 + 3) % 4)
            _SEG_END[0, code] = ((k0 + 3) % 4, (k0 + 1) % 4)
            _CHI4[1, code] = -2
            _CHI4[0, code] = 2
        elif exits:
            _SEG_START[code] = (exits[0], exits[0])
            _SEG_END[:, code] = (entries[0], entries[0])
            _CHI4[:, code] = {1: 1, 2: 0, 3: -1}[n_in]


_build_tables()


def _validate(field: ArrayLike, thresholds: ArrayLike, box_size: float):
    f = np.asarray(field)
    if f.dtype == object or not (
        np.issubdtype(f.dtype, np.floating)
        or np.issubdtype(f.dtype, np.integer)
        or np.issubdtype(f.dtype, np.bool_)
    ):
        raise ValueError(f"field must be a real numeric array, got dtype {f.dtype}")
    f = f.astype(np.float64, copy=False)
    if f.ndim < 2:
        raise ValueError(f"field must have shape (..., N, N), got shape {f.shape}")
    n = f.shape[-1]
    if f.shape[-2] != n:
        raise ValueError(f"field must be square in its last two axes, got shape {f.shape}")
    if n < MIN_GRID:
        raise ValueError(f"field needs N >= {MIN_GRID} grid points per side, got N = {n}")
    if not np.all(np.isfinite(f)):
        raise ValueError("field contains NaN or infinite values")

    nu = np.asarray(thresholds)
    if nu.ndim != 1:
        raise ValueError(f"thresholds must be a 1-D array, got shape {nu.shape}")
    try:
        nu = nu.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"thresholds must be real numbers, got dtype {nu.dtype}") from None
    if not np.all(np.isfinite(nu)):
        raise ValueError("thresholds contain NaN or infinite values")

    try:
        length = float(box_size)
    except (TypeError, ValueError):
        raise ValueError(f"box_size must be a positive number, got {box_size!r}") from None
    if not (math.isfinite(length) and length > 0):
        raise ValueError(f"box_size must be a positive finite number, got {box_size!r}")
    return f, nu, length


def minkowski_functionals(field: ArrayLike, thresholds: ArrayLike, box_size: float) -> np.ndarray:
    r"""Minkowski functional densities of the excursion sets ``{field >= nu}``.

    Args:
        field: real array of shape ``(..., N, N)``, ``field[..., ix, iy]`` sampled at
            ``(ix, iy) * dx`` on the periodic square ``[0, L)^2``, ``dx = L / N``,
            ``N >= 4``; leading axes are a batch. Must be finite.
        thresholds: 1-D array of ``n_thresholds`` finite levels ``nu`` (field units).
        box_size: side length ``L > 0`` of the periodic domain (length units).

    Returns:
        float64 array of shape ``(..., n_thresholds, 3)``; for each level, column 0 is
        the area fraction :math:`|A_\nu|/L^2` (dimensionless), column 1 the boundary
        length per unit area :math:`|\partial A_\nu|/L^2` (1/length), column 2 the Euler
        characteristic per unit area :math:`\chi(A_\nu)/L^2` (1/length^2), where
        :math:`\chi` = components minus holes on the torus (so ``column 2 * L**2`` is an
        integer).

    The set is the marching-squares polygon of the linearly interpolated level set, with
    saddle cells decided by the cell-centre average (joined if it is ``>= nu``); see the
    module docstring for the estimator, its :math:`O(dx^2)` accuracy and its connectivity
    convention. Fully vectorised; thresholds are processed one at a time and the batch in
    chunks of about two million cells.

    Raises:
        ValueError: on NaN/inf, non-square or ``N < 4`` fields, non-1-D thresholds or a
            non-positive ``box_size``.
    """
    f, nu, length = _validate(field, thresholds, box_size)
    batch_shape = f.shape[:-2]
    n = f.shape[-1]
    f = f.reshape(-1, n, n)
    n_fields = f.shape[0]
    out = np.zeros((n_fields, nu.size, 3), dtype=np.float64)
    if n_fields == 0 or nu.size == 0:
        return out.reshape(*batch_shape, nu.size, 3)

    per_chunk = max(1, _CHUNK_CELLS // (n * n))
    for start in range(0, n_fields, per_chunk):
        stop = min(start + per_chunk, n_fields)
        out[start:stop] = _chunk_functionals(f[start:stop], nu)

    out[..., 0] /= n * n  # cells -> fraction of the box
    out[..., 1] *= (length / n) / length**2  # cell widths -> length, per unit area
    out[..., 2] /= length**2
    return out.reshape(*batch_shape, nu.size, 3)


def _chunk_functionals(f: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Area (cells), boundary length (cell units) and chi of a (B, N, N) chunk."""
    b, n, _ = f.shape
    ncell = n * n
    # Corner values of cell (ix, iy): corners 0..3 counter-clockwise from (ix, iy).
    corners = (
        f.ravel(),
        np.roll(f, -1, axis=1).ravel(),
        np.roll(f, (-1, -1), axis=(1, 2)).ravel(),
        np.roll(f, -1, axis=2).ravel(),
    )
    res = np.zeros((b, thresholds.size, 3), dtype=np.float64)
    for it, nu in enumerate(thresholds):
        inside = (f >= nu).view(np.uint8)
        in1 = np.roll(inside, -1, axis=1)
        code = inside | (in1 << 1)
        code |= np.roll(in1, -1, axis=2) << 2
        code |= np.roll(inside, -1, axis=2) << 3
        code = code.ravel()
        # Full cells: one cell area each. Boundary cells: codes 1..14, i.e. (code-1) < 14
        # in uint8 arithmetic (0 wraps to 255).
        full = np.count_nonzero(code.reshape(b, ncell) == 15, axis=1)
        idx = np.flatnonzero((code - np.uint8(1)) < 14)
        owner = idx // ncell
        area, perim, chi4 = _boundary_cells(code[idx], [c[idx] for c in corners], nu)
        res[:, it, 0] = full + np.bincount(owner, weights=area, minlength=b)
        res[:, it, 1] = np.bincount(owner, weights=perim, minlength=b)
        chi4_tot = np.bincount(owner, weights=chi4, minlength=b)
        res[:, it, 2] = np.rint(chi4_tot) / 4.0
    return res


def _boundary_cells(code: np.ndarray, fc: list[np.ndarray], nu: float):
    """Per-cell polygon area, contour length (cell units) and 4*chi weight."""
    m = code.size
    # Crossing point on each edge, in cell coordinates (safe where the edge is uncrossed).
    xs = np.empty((4, m))
    ys = np.empty((4, m))
    lin = np.empty((2, m))  # inside length of edges 1 and 2 (needed by Green's theorem)
    ins = [(code >> k) & 1 for k in range(4)]
    for k in range(4):
        a, c = fc[k], fc[(k + 1) % 4]
        crossed = ins[k] != ins[(k + 1) % 4]
        denom = np.where(crossed, a - c, 1.0)
        t = np.where(crossed, (a - nu) / denom, 0.0)
        if k == 0:
            xs[0], ys[0] = t, 0.0
        elif k == 1:
            xs[1], ys[1] = 1.0, t
        elif k == 2:
            xs[2], ys[2] = 1.0 - t, 1.0
        else:
            xs[3], ys[3] = 0.0, 1.0 - t
        if k in (1, 2):
            # inside length along edge k: 1 if both ends in, t if only the start is in,
            # 1 - t if only the end is in, 0 if neither.
            lin[k - 1] = np.where(
                crossed, np.where(ins[k] == 1, t, 1.0 - t), ins[k].astype(np.float64)
            )

    saddle = (code == 5) | (code == 10)
    joined = np.zeros(m, dtype=np.intp)
    if saddle.any():
        s = np.flatnonzero(saddle)
        centre = 0.25 * (fc[0][s] + fc[1][s] + fc[2][s] + fc[3][s])
        joined[s] = centre >= nu

    cols = np.arange(m)
    start = _SEG_START[code]
    end = _SEG_END[joined, code]
    px, py = xs[start[:, 0], cols], ys[start[:, 0], cols]
    qx, qy = xs[end[:, 0], cols], ys[end[:, 0], cols]
    cross = px * qy - py * qx
    perim = np.hypot(qx - px, qy - py)
    if saddle.any():
        s = np.flatnonzero(saddle)
        c2 = cols[s]
        px, py = xs[start[s, 1], c2], ys[start[s, 1], c2]
        qx, qy = xs[end[s, 1], c2], ys[end[s, 1], c2]
        cross[s] += px * qy - py * qx
        perim[s] += np.hypot(qx - px, qy - py)
    # Green's theorem with origin at corner 0: edges 0 and 3 contribute nothing, edges 1
    # and 2 contribute half their inside length, contour segments P->Q contribute P x Q / 2.
    area = 0.5 * (lin[0] + lin[1] + cross)
    chi4 = _CHI4[joined, code].astype(np.float64)
    return area, perim, chi4


def gaussian_expectations(
    thresholds: ArrayLike, sigma: float, lambda_: float
) -> np.ndarray:
    r"""Expected Minkowski densities of excursion sets of an isotropic Gaussian field.

    Gaussian kinematic formula in 2-D (Adler 1981; Tomita 1986; Schmalzing & Buchert
    1997), for a zero-mean stationary isotropic Gaussian field of variance ``sigma**2``
    and ``lambda_ = <(df/dx)^2> / sigma**2`` (1/length^2), with ``u = nu / sigma``:

    * area fraction :math:`1 - \Phi(u)`,
    * boundary length per unit area :math:`\tfrac12\sqrt{\lambda}\, e^{-u^2/2}`
      (Rice formula: :math:`p(\nu)\,\langle|\nabla f|\rangle`, :math:`|\nabla f|` Rayleigh),
    * Euler characteristic per unit area
      :math:`\lambda\, (2\pi)^{-3/2}\, u\, e^{-u^2/2}`.

    Returns an array of shape ``(n_thresholds, 3)`` in the units of
    :func:`minkowski_functionals`.
    """
    u = np.asarray(thresholds, dtype=np.float64) / sigma
    g = np.exp(-0.5 * u**2)
    return np.stack(
        [ndtr(-u), 0.5 * math.sqrt(lambda_) * g, lambda_ / (2 * np.pi) ** 1.5 * u * g],
        axis=-1,
    )
