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
# Cells processed per chunk (whole fields, at least one): keeps the temporaries cache-sized
# (measured fastest for 1000 x 128^2 fields; about 100 bytes of temporaries per cell).
_CHUNK_CELLS = 1 << 16

# Corner k of a cell, relative to the cell centre in cell units:
#   0: (-1/2, -1/2)   1: (1/2, -1/2)   2: (1/2, 1/2)   3: (-1/2, 1/2),
# where corner 0 is grid point (ix, iy). Edge k runs counter-clockwise from corner k to
# corner k+1 (mod 4); its crossing point is corner_k + t (corner_{k+1} - corner_k) with
# t = (f_k - nu) / (f_k - f_{k+1}). The 4-bit case code has bit k set when corner k is
# inside (f >= nu).
_CORNER_X = np.array([-0.5, 0.5, 0.5, -0.5])
_CORNER_Y = np.array([-0.5, -0.5, 0.5, 0.5])
_EDGE_DX = np.array([1.0, 0.0, -1.0, 0.0])
_EDGE_DY = np.array([0.0, 1.0, 0.0, -1.0])

# Every boundary cell holds one contour segment (two in a saddle cell), running from an
# "exit" crossing (edge k with corner k inside, corner k+1 outside) to an "entry" crossing
# (corner k outside, corner k+1 inside), so that the set lies on its left.
_SEG_START = np.zeros((16, 2), dtype=np.intp)  # [code, segment] -> exit edge
_SEG_END = np.zeros((2, 16, 2), dtype=np.intp)  # [joined, code, segment] -> entry edge
_FULL_EDGES = np.zeros(16)  # number of cell edges with both ends inside
_CHI4 = np.zeros((2, 16), dtype=np.int64)  # 4 * bit-quad Euler weight, [joined, code]


def _build_tables() -> None:
    for code in range(16):
        inside = [(code >> k) & 1 for k in range(4)]
        exits = [k for k in range(4) if inside[k] and not inside[(k + 1) % 4]]
        entries = [k for k in range(4) if not inside[k] and inside[(k + 1) % 4]]
        n_in = sum(inside)
        _FULL_EDGES[code] = sum(inside[k] and inside[(k + 1) % 4] for k in range(4))
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
        integer up to floating-point rounding).

    The set is the marching-squares polygon of the linearly interpolated level set, with
    saddle cells decided by the cell-centre average (joined if it is ``>= nu``); see the
    module docstring for the estimator, its :math:`O(dx^2)` accuracy and its connectivity
    convention. Fully vectorised; thresholds are processed one at a time and the batch in
    chunks of about 65 000 cells.

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
    """Area (cells), boundary length (cell widths) and chi of a (B, N, N) chunk."""
    b, n, _ = f.shape
    ncell = n * n
    # corners[k, cell]: value at corner k of cell (ix, iy), flattened over (B, N, N).
    corners = np.stack(
        [
            f,
            np.roll(f, -1, axis=1),
            np.roll(f, (-1, -1), axis=(1, 2)),
            np.roll(f, -1, axis=2),
        ]
    ).reshape(4, -1)
    res = np.zeros((b, thresholds.size, 3), dtype=np.float64)
    for it, nu in enumerate(thresholds):
        inside = (f >= nu).view(np.uint8)
        in1 = np.roll(inside, -1, axis=1)
        code = inside | (in1 << 1)
        code |= np.roll(in1, -1, axis=2) << 2
        code |= np.roll(inside, -1, axis=2) << 3
        code = code.ravel()
        # Full cells count one cell area each. Boundary cells have codes 1..14, i.e.
        # (code - 1) < 14 in uint8 arithmetic (0 wraps round to 255).
        full = np.count_nonzero(code.reshape(b, ncell) == 15, axis=1)
        idx = np.flatnonzero((code - np.uint8(1)) < 14)
        owner = idx // ncell
        fc = corners[:, idx]
        code = code[idx].astype(np.intp)
        area, perim, seg_owner, chi4 = _boundary_cells(code, fc, owner, nu)
        res[:, it, 0] = full + np.bincount(seg_owner, weights=area, minlength=b)
        res[:, it, 1] = np.bincount(seg_owner, weights=perim, minlength=b)
        res[:, it, 2] = np.rint(np.bincount(owner, weights=chi4, minlength=b)) / 4.0
    return res


def _boundary_cells(code: np.ndarray, fc: np.ndarray, owner: np.ndarray, nu: float):
    """Per-segment area and length (cell units), segment owners, per-cell 4*chi weights.

    ``code``: case codes (1..14) of the m boundary cells; ``fc``: (4, m) corner values;
    ``owner``: field index of each cell.
    """
    m = code.size
    # Saddle cells: joined when the centre value (f0 + f1 + f2 + f3)/4 >= nu. Pairing the
    # diagonals makes the rounded sum exactly invariant under the square's symmetries.
    sad = np.flatnonzero((code == 5) | (code == 10))
    joined = np.zeros(m, dtype=np.intp)
    joined[sad] = 0.25 * ((fc[0, sad] + fc[2, sad]) + (fc[1, sad] + fc[3, sad])) >= nu
    # One segment per boundary cell, plus the second segment of each saddle cell.
    cell = np.concatenate([np.arange(m), sad])
    start = np.concatenate([_SEG_START[code, 0], _SEG_START[code[sad], 1]])
    end = np.concatenate([_SEG_END[joined, code, 0], _SEG_END[joined[sad], code[sad], 1]])
    flat = fc.ravel()
    fa = flat[start * m + cell]
    t_p = (fa - nu) / (fa - flat[((start + 1) & 3) * m + cell])  # inside part of exit edge
    fa = flat[end * m + cell]
    t_q = (fa - nu) / (fa - flat[((end + 1) & 3) * m + cell])  # outside part of entry edge
    px = _CORNER_X[start] + _EDGE_DX[start] * t_p
    py = _CORNER_Y[start] + _EDGE_DY[start] * t_p
    qx = _CORNER_X[end] + _EDGE_DX[end] * t_q
    qy = _CORNER_Y[end] + _EDGE_DY[end] * t_q
    perim = np.hypot(qx - px, qy - py)
    # Green's theorem about the cell centre, area = (1/2) \oint (x dy - y dx): each inside
    # piece of a cell edge (length l) gives l/4, each contour segment P->Q gives P x Q / 2.
    # The inside length of the cell boundary is (edges fully inside) + sum over segments of
    # t_p + (1 - t_q); the full-edge term is attached to the cell's first segment.
    area = 0.25 * (t_p + (1.0 - t_q)) + 0.5 * (px * qy - py * qx)
    area[:m] += 0.25 * _FULL_EDGES[code]
    seg_owner = np.concatenate([owner, owner[sad]])
    return area, perim, seg_owner, _CHI4[joined, code].astype(np.float64)


def gaussian_expectations(thresholds: ArrayLike, sigma: float, lambda_: float) -> np.ndarray:
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
