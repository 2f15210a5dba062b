"""2-D Ising model on a periodic square lattice, sampled by Swendsen–Wang cluster updates.

See :class:`Ising` for the model, units, algorithm and burn-in. This module also holds
the observables and exact results that other code (tests, validation) imports:

* :func:`energy_per_spin` and :func:`magnetisation` of spin arrays ``(..., N, N)``;
* Onsager's infinite-lattice results :func:`onsager_energy` and
  :func:`onsager_magnetisation`, and :data:`CRITICAL_TEMPERATURE`;
* the exact results on a finite ``N x N`` torus from Kaufman's partition function,
  :func:`finite_lattice_energy` and :func:`finite_lattice_specific_heat`;
* :func:`swendsen_wang_sweep`, one cluster update of a batch of lattices driven by given
  uniform random numbers (the simulator's only Monte Carlo step).

Units throughout: ``J = 1`` and ``k_B = 1``, so temperatures and energies are in units of
``J`` (``J / k_B`` for temperatures); spins, magnetisation and specific heat per spin are
dimensionless.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.special
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

from simulators.base import FieldSpec, Invariant, Parameter, Simulator, check_resolution
from simulators.grid import PeriodicGrid

#: Onsager's critical temperature ``T_c = 2 / ln(1 + sqrt 2) = 2.269185...`` (units of J)
CRITICAL_TEMPERATURE = 2.0 / math.log(1.0 + math.sqrt(2.0))

#: conservative time scale of Swendsen–Wang relaxation at ``T_c`` on an ``N x N``
#: torus, ``tau(N) = TAU_AMPLITUDE * N ** TAU_EXPONENT`` sweeps, above the measured decay
#: times (see :class:`Ising`, "Burn-in", and ``benchmarks/ising_sampler.py``)
TAU_AMPLITUDE = 2.0
TAU_EXPONENT = 0.35
#: default burn-in length in units of ``tau(N)``
BURN_IN_AUTOCORRELATION_TIMES = 10.0
#: lower bound of the default burn-in (sweeps)
MIN_BURN_IN = 50
#: lattice sites (N^2 times trajectories) updated together in one graph; see Ising.chunk_size
CHUNK_SITES = 2**15
#: relative tolerance under which a snapshot time counts as a whole number of sweeps
TIME_TOLERANCE = 1e-9


# ---------------------------------------------------------------------- observables
def energy_per_spin(spins: np.ndarray) -> np.ndarray:
    """Energy per spin ``e = -(1/N^2) sum_<ij> s_i s_j`` of periodic lattices (``J = 1``).

    Each nearest-neighbour pair (bond) of the ``N x N`` torus is counted once: the sum
    runs over the ``2 N^2`` bonds ``(i, j)-(i+1, j)`` and ``(i, j)-(i, j+1)``, indices
    mod ``N``. Ground states have ``e = -2``; ``e = 0`` on average at infinite
    temperature.

    Args:
        spins: array ``(..., N, N)`` of spin values (normally +1/-1; any real values
            are accepted, e.g. a generator's continuous output).
    Returns:
        float64 array of shape ``(...)`` (a 0-d array for one lattice), units of J.
    """
    s = np.asarray(spins, dtype=np.float64)
    bonds = s * (np.roll(s, -1, axis=-2) + np.roll(s, -1, axis=-1))
    return -bonds.mean(axis=(-2, -1))


def magnetisation(spins: np.ndarray) -> np.ndarray:
    """Magnetisation per spin ``m = (1/N^2) sum_i s_i`` of lattices ``(..., N, N)``.

    Returns:
        float64 array of shape ``(...)``, in ``[-1, 1]`` for +1/-1 spins.
    """
    return np.asarray(spins, dtype=np.float64).mean(axis=(-2, -1))


# ------------------------------------------------------------------ exact results
def _temperatures(temperature: Any) -> np.ndarray:
    values = np.asarray(temperature, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    return values


def _scalar_or_array(values: np.ndarray) -> np.ndarray | float:
    return float(values) if values.ndim == 0 else values


def onsager_energy(temperature: Any) -> np.ndarray | float:
    """Internal energy per spin of the infinite square-lattice Ising model (Onsager 1944).

    With ``K = J / T`` (``J = 1``)::

        u(T) = -coth(2K) [1 + (2/pi) (2 tanh^2(2K) - 1) K1(k)],
        k = 2 sinh(2K) / cosh^2(2K),

    ``K1(k) = int_0^{pi/2} dphi / sqrt(1 - k^2 sin^2 phi)`` the complete elliptic
    integral of the first kind with *modulus* ``k``. scipy's ``ellipk(m)`` takes the
    parameter ``m = k^2``; here ``1 - k^2 = (2 tanh^2(2K) - 1)^2`` exactly, so the value
    is computed as ``scipy.special.ellipkm1((2 tanh^2(2K) - 1)^2)``, accurate near ``T_c``
    where ``k -> 1``. At ``T_c`` the product ``(2 tanh^2 - 1) K1`` tends to 0
    (``x ln x``) and ``u(T_c) = -sqrt 2``. Limits: ``u -> -2`` as ``T -> 0``,
    ``u -> 0`` as ``T -> infinity``. Reference: L. Onsager, Phys. Rev. 65, 117 (1944);
    the formula as in R. J. Baxter, *Exactly Solved Models* (1982), eq. (7.12.12).

    Args:
        temperature: ``T > 0`` (units of J), scalar or array.
    Returns:
        ``u(T)`` per spin (units of J), float or float64 array of the input's shape.
    Raises:
        ValueError: for a temperature that is not positive and finite.
    """
    coupling = 1.0 / _temperatures(temperature)
    tanh2 = np.tanh(2.0 * coupling)
    factor = 2.0 * tanh2**2 - 1.0                        # = +-k', the complementary modulus
    at_critical = factor == 0.0
    safe = np.where(at_critical, 1.0, factor)
    elliptic = scipy.special.ellipkm1(safe**2)           # K1(k) with 1 - k^2 = factor^2
    term = np.where(at_critical, 0.0, factor * elliptic)
    return _scalar_or_array(-(1.0 / tanh2) * (1.0 + (2.0 / np.pi) * term))


def onsager_magnetisation(temperature: Any) -> np.ndarray | float:
    """Spontaneous magnetisation per spin of the infinite lattice (Onsager, Yang 1952).

    ``m(T) = (1 - sinh(2/T)^-4)^(1/8)`` for ``T < T_c`` and 0 for ``T >= T_c``
    (``J = 1``); ``m -> 1`` as ``T -> 0``. Reference: C. N. Yang, Phys. Rev. 85, 808 (1952).

    Args:
        temperature: ``T > 0`` (units of J), scalar or array.
    Returns:
        ``m(T)`` (dimensionless), float or float64 array of the input's shape.
    """
    values = _temperatures(temperature)
    inside = 1.0 - np.sinh(2.0 / values) ** -4.0
    ordered = values < CRITICAL_TEMPERATURE
    return _scalar_or_array(np.where(ordered, np.maximum(inside, 0.0), 0.0) ** 0.125)


def _log_cosh2(x: np.ndarray) -> np.ndarray:
    """``ln(2 cosh x)`` without overflow."""
    a = np.abs(x)
    return a + np.log1p(np.exp(-2.0 * a))


def _log_abs_sinh2(x: np.ndarray) -> np.ndarray:
    """``ln|2 sinh x|`` for ``x != 0`` without overflow."""
    a = np.abs(x)
    return a + np.log(-np.expm1(-2.0 * a))


def log_partition_function(coupling: float, size: int) -> float:
    """``ln Z`` of the Ising model on an ``N x N`` torus at coupling ``K = J / T`` (exact).

    Kaufman's formula (B. Kaufman, Phys. Rev. 76, 1232 (1949); in the form of
    A. E. Ferdinand and M. E. Fisher, Phys. Rev. 185, 832 (1969), eqs. 2.1-2.5)::

        Z = (1/2) (2 sinh 2K)^(N^2/2) (Z_1 + Z_2 + Z_3 + Z_4)
        Z_1 = prod_{r=0}^{N-1} 2 cosh(N gamma_{2r+1} / 2),  Z_2: same with sinh,
        Z_3 = prod_{r=0}^{N-1} 2 cosh(N gamma_{2r} / 2),    Z_4: same with sinh,
        cosh gamma_l = cosh 2K coth 2K - cos(pi l / N)   (l >= 1),
        gamma_0 = 2K + ln tanh K,

    with ``gamma_0 < 0`` above ``T_c`` (then ``Z_4 < 0``). Evaluated as a signed
    log-sum-exp, so it does not overflow for large ``N``; checked against a brute-force
    sum over all ``2^16`` states of the 4 x 4 torus in the tests.

    Args:
        coupling: ``K = J / T > 0``.
        size: ``N >= 2`` spins per side.
    Returns:
        ``ln Z`` (float).
    """
    k = float(coupling)
    n = int(size)
    modes = np.arange(2 * n)
    gamma = np.arccosh(np.cosh(2 * k) / np.tanh(2 * k) - np.cos(np.pi * modes / n))
    gamma[0] = 2.0 * k + math.log(math.tanh(k))
    odd, even = 0.5 * n * gamma[1::2], 0.5 * n * gamma[0::2]
    logs = [np.sum(_log_cosh2(odd)), np.sum(_log_abs_sinh2(odd)), np.sum(_log_cosh2(even))]
    signs = [1.0, 1.0, 1.0]
    if gamma[0] != 0.0:                                  # Z_4 = 0 exactly at T_c
        logs.append(np.sum(_log_abs_sinh2(even)))
        signs.append(math.copysign(1.0, gamma[0]))
    top = max(logs)
    total = sum(sign * math.exp(value - top) for sign, value in zip(signs, logs, strict=True))
    return math.log(0.5) + 0.5 * n * n * math.log(2 * math.sinh(2 * k)) + top + math.log(total)


def _coupling_derivatives(temperature: Any, size: int, order: int) -> np.ndarray | float:
    """``d^order (ln Z / N^2) / dK^order`` at ``K = 1/T`` by a 5-point central stencil.

    Step ``h = min(1e-3, 0.02 / N)`` in ``K``: the free energy per spin varies on the
    scale ``dK ~ 1/N`` near ``T_c`` (finite-size scaling) and on the scale 1 elsewhere,
    so the stencil's truncation error ``~ (h N)^4`` or ``~ h^4`` is ~1e-8 relative or
    less, and rounding (``ln Z / N^2`` is accurate to ~1e-15) adds ~1e-15 / h^order.
    """
    n = int(size)
    if n != size or n < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    temperatures = _temperatures(temperature)
    h = min(1e-3, 0.02 / n)
    weights = {1: (1.0, -8.0, 0.0, 8.0, -1.0), 2: (-1.0, 16.0, -30.0, 16.0, -1.0)}[order]
    denominator = 12.0 * h**order
    result = np.empty(temperatures.shape)
    for index, t in np.ndenumerate(temperatures):
        coupling = 1.0 / t
        values = [log_partition_function(coupling + step * h, n) / n**2
                  for step in (-2, -1, 0, 1, 2)]
        result[index] = sum(w * v for w, v in zip(weights, values, strict=True)) / denominator
    return _scalar_or_array(result)


def finite_lattice_energy(temperature: Any, size: int) -> np.ndarray | float:
    """Exact mean energy per spin ``<e>`` on an ``N x N`` torus, ``-(1/N^2) d ln Z / dK``.

    From :func:`log_partition_function` (Kaufman 1949) by numerical differentiation in
    ``K = 1/T``, accurate to ~1e-8 (checked by halving the step). It tends to
    :func:`onsager_energy` as ``N`` grows; at ``T_c`` the finite-size correction is
    ``O(1/N)`` (Ferdinand and Fisher 1969), ``N (e_N + sqrt 2) = -0.62``.

    Args:
        temperature: ``T > 0`` (units of J), scalar or array.
        size: ``N`` spins per side (``>= 2``).
    Returns:
        ``<e>`` (units of J), float or float64 array of the temperature's shape.
    """
    return _scalar_or_array(-np.asarray(_coupling_derivatives(temperature, size, 1)))


def finite_lattice_specific_heat(temperature: Any, size: int) -> np.ndarray | float:
    """Exact specific heat per spin on an ``N x N`` torus, ``c = (K^2 / N^2) d^2 ln Z / dK^2``.

    Equals ``N^2 (<e^2> - <e>^2) / T^2`` (fluctuation formula, ``k_B = 1``). From
    Kaufman's ``ln Z`` by a 5-point stencil, accurate to ~1e-6 up to ``N = 1024``. For
    ``N = 16`` it peaks at ``T = 2.32`` (the peak moves towards ``T_c`` as ``1/N``).

    Args:
        temperature: ``T > 0`` (units of J), scalar or array.
        size: ``N`` spins per side (``>= 2``).
    Returns:
        ``c`` (dimensionless), float or float64 array of the temperature's shape.
    """
    second = np.asarray(_coupling_derivatives(temperature, size, 2))
    return _scalar_or_array(second / _temperatures(temperature) ** 2)


def default_burn_in(resolution: int) -> int:
    """Default number of burn-in sweeps for an ``N x N`` lattice.

    ``max(MIN_BURN_IN, ceil(BURN_IN_AUTOCORRELATION_TIMES * tau(N)))`` with the
    conservative time scale ``tau(N) = TAU_AMPLITUDE * N ** TAU_EXPONENT`` of
    Swendsen–Wang relaxation, which is slowest at ``T_c``: ``ceil(20 N^0.35)``, at least
    50. See :class:`Ising` ("Burn-in") for the measurements and literature behind it.
    """
    tau = TAU_AMPLITUDE * float(resolution) ** TAU_EXPONENT
    return max(MIN_BURN_IN, math.ceil(BURN_IN_AUTOCORRELATION_TIMES * tau))


# --------------------------------------------------------------- Swendsen–Wang step
@lru_cache(maxsize=4)
def _forward_neighbours(batch: int, n: int) -> np.ndarray:
    """Flat site index of the +x and +y neighbour of every site, int32 ``(B N^2 * 2,)``.

    Sites of trajectory ``b`` are numbered ``b N^2 + i N + j``; entry ``2 site`` is the
    neighbour ``(i+1, j)`` and ``2 site + 1`` the neighbour ``(i, j+1)`` (mod ``N``), so
    the graph of a batch is block-diagonal: clusters never join two trajectories.
    """
    index = np.arange(batch * n * n, dtype=np.int32).reshape(batch, n, n)
    table = np.stack([np.roll(index, -1, axis=1), np.roll(index, -1, axis=2)], axis=-1)
    table = np.ascontiguousarray(table.reshape(-1))
    table.setflags(write=False)
    return table


def swendsen_wang_sweep(spins: np.ndarray, bond_probability: np.ndarray,
                        uniforms: np.ndarray) -> np.ndarray:
    """One Swendsen–Wang update of a batch of periodic lattices (Swendsen and Wang 1987).

    1. Each bond between equal neighbouring spins is activated with probability
       ``p = 1 - exp(-2 J / T)``: bond ``(i, j)-(i+1, j)`` iff ``uniforms[b, 0, i, j] < p``,
       bond ``(i, j)-(i, j+1)`` iff ``uniforms[b, 1, i, j] < p`` (indices mod ``N``).
    2. Clusters (connected components of the active bonds, periodic) are labelled by
       ``scipy.sparse.csgraph.connected_components`` on one block-diagonal graph for the
       whole batch (C code; no Python loop over sites or clusters).
    3. Each cluster is flipped with probability 1/2: the cluster flips iff an odd number
       of its sites have ``uniforms[b, 2, i, j] < 1/2``. The parity of independent fair
       coins is a fair coin, and disjoint clusters use disjoint coins, so the flips are
       independent with probability 1/2, as the algorithm requires. Unlike a coin per
       cluster *label*, this rule does not depend on how clusters are numbered, and it
       commutes with every permutation of the sites: lattice symmetries act on the
       result exactly (tests/simulators/test_ising.py uses that).

    The result depends on each lattice's own spins and uniforms only (never on the
    other lattices of the batch).

    Args:
        spins: ``(B, N, N)`` int8 array of +1/-1.
        bond_probability: ``(B,)`` activation probabilities ``p`` in ``[0, 1]``.
        uniforms: ``(B, 3, N, N)`` independent uniform numbers in ``[0, 1)``.
    Returns:
        New spins, ``(B, N, N)`` int8.
    """
    batch, n, _ = spins.shape
    p = np.asarray(bond_probability, dtype=np.float64)[:, None, None]
    bond_x = (spins == np.roll(spins, -1, axis=1)) & (uniforms[:, 0] < p)
    bond_y = (spins == np.roll(spins, -1, axis=2)) & (uniforms[:, 1] < p)
    # CSR graph with only the forward edges of each site; connected_components with
    # directed=False treats every edge as undirected.
    active = np.stack([bond_x, bond_y], axis=-1).reshape(-1)
    targets = _forward_neighbours(batch, n)[np.flatnonzero(active)]
    sites = batch * n * n
    indptr = np.zeros(sites + 1, dtype=np.int32)
    np.cumsum(np.add(bond_x.reshape(-1), bond_y.reshape(-1), dtype=np.int32), out=indptr[1:])
    graph = csr_array((np.ones(targets.size), targets, indptr), shape=(sites, sites))
    n_clusters, labels = connected_components(graph, directed=False)
    heads = (uniforms[:, 2] < 0.5).reshape(-1).astype(np.float64)
    odd = np.fmod(np.bincount(labels, weights=heads, minlength=n_clusters), 2.0) == 1.0
    sign = np.where(odd, -1, 1).astype(np.int8)
    return spins * sign[labels].reshape(batch, n, n)


# ------------------------------------------------------------------------ simulator
class Ising(Simulator):
    r"""Ferromagnetic 2-D Ising model on an ``N x N`` periodic square lattice.

    Model: spins ``s_i = +1/-1`` on the sites of the torus, Hamiltonian
    ``H = -J sum_<ij> s_i s_j`` over the ``2 N^2`` nearest-neighbour pairs, ``J = 1``,
    ``k_B = 1``; every snapshot is a sample of the Boltzmann distribution
    ``P(s) ∝ exp(-H(s) / T)`` at the parameter ``temperature`` (units of J). The
    critical temperature of the infinite lattice is
    ``T_c = 2 / ln(1 + sqrt 2) = 2.269185`` (Onsager 1944): below it the lattice orders
    (``|m| > 0``), above it it does not. The declared range ``T in [1, 4]`` covers both
    phases (``T_c / T`` from 0.57 to 2.3); zero and negative temperatures are outside it.

    Field ``spin``: +1/-1 as float64 in :meth:`simulate`; the field store and ``run``
    keep float32, in which +1 and -1 are exact. Lattice site ``(i, j)`` is
    ``spin[..., i, j]``. Coordinates are in lattice spacings: the box side is the
    lattice size, ``box_size = N`` (the only value accepted, so ``dx = 1``),
    ``x_i = i``.

    Time (``time_units = "sweep"``) counts Monte Carlo sweeps: one Swendsen–Wang update of
    the whole lattice is one time unit. Snapshot times must therefore be whole numbers
    (``t_end`` a multiple of ``n_snapshots - 1``); other times raise ``ValueError``
    rather than being rounded silently. The default, 11 snapshots over 100 sweeps,
    spaces snapshots by 10 sweeps, about twice the integrated autocorrelation time
    of ``e`` and ``|m|`` even at ``T_c`` (``tau_int`` = 3.1 / 4.0 / 5.1 sweeps for ``e``
    and 2.8 / 3.5 / 4.2 for ``|m|`` at ``N`` = 16 / 32 / 64, growing slowly; see
    ``benchmarks/ising_sampler.py``), so successive snapshots are nearly independent
    samples. Monte Carlo time is not physical time: the sequence of
    snapshots is a Markov chain in equilibrium, not a relaxation dynamics.

    Algorithm: Swendsen–Wang cluster updates (R. H. Swendsen and J.-S. Wang, Phys. Rev.
    Lett. 58, 86 (1987)), :func:`swendsen_wang_sweep`: activate bonds between equal
    neighbours with ``p = 1 - exp(-2/T)``, label the clusters of active bonds with
    ``scipy.sparse.csgraph.connected_components`` (periodic), flip each cluster with
    probability 1/2. It satisfies detailed balance for the Boltzmann distribution, and
    near ``T_c`` its autocorrelation time grows only as ``N^z`` with ``z ~ 0.2-0.35``
    (Swendsen and Wang 1987 report z = 0.35; later work finds ~0.25 or a logarithm,
    e.g. J. Salas and A. D. Sokal, J. Stat. Phys. 87, 1 (1997)), against ``z ~ 2.17``
    for single-spin Metropolis (Nightingale and Blöte, PRL 76, 4548 (1996)). Measured
    at ``T_c`` (``benchmarks/ising_sampler.py``): ``tau_int(|m|)`` = 2.8 / 3.5 / 4.2
    sweeps here against 11 / 42 / 191 for vectorised checkerboard Metropolis at
    ``N`` = 16 / 32 / 64; a Metropolis sweep is ~2.5 to 3 times cheaper, so an
    independent sample costs 2.3 / 6 / 18 times less with Swendsen–Wang, a factor that
    grows as ``~N^2``. Wolff's single-cluster variant has a similar ``z`` but flips one
    cluster at a time, which does not vectorise over a batch.

    Burn-in: before the ``t = 0`` snapshot every trajectory makes ``burn_in`` sweeps
    (constructor option; default :func:`default_burn_in`, ``max(50, ceil(20 N^0.35))``:
    53 sweeps for ``N = 16``, 86 for 64, 140 for 256, 227 for 1024, 368 for 4096), so
    that every snapshot, including ``t = 0``, is an equilibrium sample whatever the
    start. The bias of the start decays fastest off ``T_c`` (decay times ~2 sweeps, no
    bias left after 5 to 25 sweeps from either start at ``T`` = 1.0 to 3.0, ``N`` = 128
    and 256) and slowest at ``T_c``, where Swendsen–Wang
    autocorrelation times grow as ``N^z`` with ``z ~ 0.2-0.35`` (Swendsen and Wang 1987:
    0.35; e.g. Salas and Sokal 1997: ~0.25 or logarithmic). Measured with this code at
    ``T_c`` from the hot and the cold start (mean over 2000 chains for ``N <= 64``, 125
    at 256, 31 at 512, 16 at 1024; energy against Kaufman's exact finite-lattice value;
    ``python -m benchmarks.ising_sampler``, results in
    ``benchmarks/results/ising_sampler.json``): the energy bias decays exponentially
    with a time of 3.4 sweeps at ``N = 16``, ~5 at 64, 5.4-6.2 at 256, 5.9-6.9 at 512
    and 1024; ``|m|`` from the cold start decays with ~4 (16), ~6.5 (64) and 11-17
    sweeps (256-1024, noisy); from the hot start ``|m|`` first lags (clusters have to
    grow to the lattice's size), ~8 sweeps at ``N = 64`` and ~20 at 1024, then falls.
    The mean is within 4 standard errors of equilibrium (~1e-3 in ``e``; in ``|m|``
    ~2e-3 for ``N <= 64`` and ~0.1 with 16 chains at 1024) after 11-15 sweeps at
    ``N = 16``, 20-27 at 64, 23-30 at 256 and 512, 21-37 at 1024 (the hot-start ``|m|``
    at 1024 reaches 0 within its noise by ~45). The default is ``10 tau(N)`` with the
    conservative time scale ``tau(N) = 2 N^0.35`` (the largest reported ``z``; 8.6
    sweeps at ``N = 64``, 23 at 1024, above every decay time measured): 3.5 to 6 times
    the settling times and, even for a decay time of 17 sweeps at ``N = 1024`` from an
    initial bias of 0.6 with no lag credit, a remaining bias of ``0.6 e^-13 < 2e-6``, far
    under the sampling error of any practical ensemble. The extrapolation to
    ``N = 4096`` rests on the power law. ``burn_in=0`` returns the chain from its start.

    Initial conditions (before burn-in): ``"random"`` (hot start: independent +1/-1 with
    probability 1/2 each, from ``numpy.random.default_rng(seed)``), ``"ordered"`` (all
    +1, cold start), or ``initial_state={"spin": (N, N) array of +1/-1}`` shared by the
    batch (burn-in applies to it too).

    Backend: numpy only (``torch_backend = False``; a ``device`` other than ``None``
    raises ``ValueError``). Every sweep draws its uniforms from the trajectory's own
    ``numpy.random.default_rng(seed)`` stream, which torch generators cannot reproduce
    (the same seed would no longer give the same file), and the cluster search is graph
    work (``scipy.sparse.csgraph``), not FFT work that a GPU would speed up.

    Random numbers: trajectory ``b`` draws from ``numpy.random.default_rng(seeds[b])``
    only, in a fixed pattern (``random((N, N))`` for the hot start, then
    ``random((3, N, N))`` per sweep), so its result is bit-for-bit the same whatever the
    batch or chunk it runs in.

    Invariants: ``discrete_values`` (spins are exactly +1 or -1).

    Symmetries (``symmetries``): the whole square-lattice group, periodic shifts, the
    mirrors ``x -> -x`` and ``y -> -y`` and the 90-degree rotation. The Hamiltonian only
    involves nearest-neighbour pairs, which these maps permute, so the Boltzmann
    distribution is invariant; the sampler is even exactly equivariant (mapping the
    uniform numbers of every bond and site with the lattice maps the output, see
    :func:`swendsen_wang_sweep`), and the hot start is invariant in law. The global
    spin flip ``s -> -s`` is also an exact symmetry of the distribution (``H`` is even
    in ``s``; the sampler commutes with it exactly) and is declared as ``negate``: the
    GAN's augmentation flips whole training samples, which keeps both ordered states
    equally represented (tests/simulators/test_symmetries.py proves the commutation).
    ``negate_each_snapshot`` as well: every sweep flips every cluster, the largest one
    included, with probability 1/2 from coins of its own, so the kernel of one sweep
    obeys ``K(s, s') = K(s, -s')``, and with ``K(-s, -s') = K(s, s')`` the law of a
    trajectory ``P(s_0) K^{n_1}(s_0, s_1) K^{n_2}(s_1, s_2) ...`` is unchanged when any
    one snapshot alone is negated (snapshots are whole sweeps apart, ``n_i >= 1``): in the
    ordered phase a trajectory's magnetisation changes sign between two snapshots with
    probability 1/2 (tests/simulators/test_ising.py), which a generator that keeps one
    sign per trajectory gets wrong.

    Args (keyword-only numerical option):
        burn_in: sweeps before the first snapshot, an integer ``>= 0``, or ``None``
            (default) for :func:`default_burn_in` of the lattice size.
    """

    name = "ising"
    description = ("2-D Ising model (J = 1, periodic), Swendsen–Wang cluster Monte Carlo; "
                   "time in sweeps")
    parameters = (
        Parameter("temperature", CRITICAL_TEMPERATURE, 1.0, 4.0, "J/k_B",
                  "temperature T (T_c = 2.269)"),
    )
    fields = (FieldSpec("spin", "1", "Ising spin (+1 or -1)"),)
    invariants = (
        Invariant("discrete_values", "spin", values=(-1.0, 1.0),
                  doc="Ising spins are +1 or -1"),
    )
    inits = ("random", "ordered")
    symmetries = ("shift", "flip_x", "flip_y", "rotate_90", "negate", "negate_each_snapshot")
    numpy_only_reason = ("its Swendsen-Wang sweeps draw from one numpy default_rng(seed) "
                         "stream per trajectory, which torch cannot reproduce, so the same "
                         "seed would no longer give the same file")
    default_t_end = 100.0
    default_snapshots = 11
    time_units = "sweep"
    length_units = "lattice_spacing"

    def __init__(self, *, burn_in: int | None = None) -> None:
        if burn_in is not None and (not isinstance(burn_in, (int, np.integer))
                                    or isinstance(burn_in, bool) or burn_in < 0):
            raise ValueError(f"{self.name}: option burn_in={burn_in!r} must be a "
                             f"non-negative integer or None")
        self.burn_in = None if burn_in is None else int(burn_in)

    # ------------------------------------------------------------------ checks
    def burn_in_sweeps(self, grid: PeriodicGrid) -> int:
        """Sweeps made before the ``t = 0`` snapshot on ``grid`` (option or default)."""
        return default_burn_in(grid.resolution) if self.burn_in is None else self.burn_in

    def make_grid(self, resolution: Any, box_size: float | None = None) -> PeriodicGrid:
        """The lattice as a grid with spacing 1: ``box_size`` is ``N`` (or ``None``).

        Raises:
            ValueError: for a bad resolution, or a ``box_size`` other than ``N``.
        """
        n = check_resolution(resolution)
        if box_size is not None and float(box_size) != n:
            raise ValueError(f"{self.name}: box_size is the lattice size in lattice "
                             f"spacings, {n}, got {box_size!r}")
        return PeriodicGrid(n, float(n))

    def snapshot_times(self, t_end: Any, n_snapshots: Any) -> np.ndarray:
        """Snapshot times in sweeps, checked to be whole numbers (see the class docstring)."""
        times = super().snapshot_times(t_end, n_snapshots)
        return self._check_times(times, f"t_end={t_end!r} with n_snapshots="
                                        f"{n_snapshots!r} gives")

    def _check_times(self, times: np.ndarray, context: str = "got") -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        whole = np.round(times)
        bad = ~np.isfinite(times) | (np.abs(times - whole) > TIME_TOLERANCE * np.maximum(
            1.0, np.abs(np.where(np.isfinite(times), times, 0.0))))
        if np.any(bad):
            value = times[np.flatnonzero(bad)[0]]
            raise ValueError(f"{self.name}: snapshot times are whole numbers of Monte Carlo "
                             f"sweeps; {context} time {value:g} (make t_end a multiple of "
                             f"n_snapshots - 1)")
        if times.ndim != 1 or np.any(whole < 0) or np.any(np.diff(whole) < 0):
            raise ValueError(f"{self.name}: snapshot times must be non-negative and "
                             f"non-decreasing")
        return whole

    def validate_initial_state(self, state: dict[str, np.ndarray]) -> None:
        """Refuse spins other than +1/-1."""
        spins = state["spin"]
        bad = np.abs(spins) != 1.0
        if np.any(bad):
            raise ValueError(f"initial_state['spin'] must hold only +1 and -1, found "
                             f"{spins[bad].flat[0]!r}")

    @staticmethod
    def chunk_size(grid: PeriodicGrid) -> int:
        """Trajectories updated together (one cluster graph): ``max(1, CHUNK_SITES // N^2)``.

        Batching amortises numpy's per-call overhead on small lattices (a sweep of one
        16 x 16 lattice costs ~340 ns per site, of 128 of them in one graph ~43 ns);
        the cost per site is flat (~40 ns) from ~16k to ~64k sites per graph and
        doubles at 128k, when the cluster search leaves the cache, so ``CHUNK_SITES =
        2^15`` (measured on the reference machine, ``benchmarks/ising_sampler.py``).
        Results do not depend on the chunking.
        """
        return max(1, CHUNK_SITES // grid.resolution**2)

    # ------------------------------------------------------------- integration
    def initial_spins(self, grid: PeriodicGrid, rng: np.random.Generator, init: str
                      ) -> np.ndarray:
        """Spins ``(N, N)`` int8 of ``init`` (``"random"`` draws ``rng.random((N, N))``)."""
        if self.check_init(init) == "ordered":
            return np.ones(grid.shape, dtype=np.int8)
        return np.where(rng.random(grid.shape) < 0.5, 1, -1).astype(np.int8)

    def simulate(self, parameters: Mapping[str, np.ndarray], grid: PeriodicGrid,
                 times: np.ndarray, seeds: Sequence[int], init: str = "random",
                 initial_state: Mapping[str, np.ndarray] | None = None,
                 device: str | None = None) -> dict[str, np.ndarray]:
        """Sample ``B = len(seeds)`` Swendsen–Wang chains; see the class docstring.

        Args:
            parameters: ``{"temperature": (B,)}``, range-checked.
            grid: the lattice (``N`` spins per side).
            times: snapshot times in sweeps (T,), whole numbers, non-decreasing, >= 0;
                the snapshot at time ``t`` is taken after ``burn_in + t`` sweeps.
            seeds: one seed per trajectory.
            init: ``"random"`` or ``"ordered"`` (ignored with ``initial_state``).
            initial_state: ``{"spin": (N, N)}`` of +1/-1, shared by the batch.
            device: must be ``None`` (numpy only, see :meth:`Simulator.check_device`).
        Returns:
            ``{"spin": (B, T, N, N)}`` float64 of +1/-1.
        Raises:
            ValueError: times that are not whole numbers of sweeps, spins other than
                +1/-1 in ``initial_state``, or a ``device``.
        """
        self.check_device(device)
        sweeps = self._check_times(times).astype(np.int64)
        self.check_init(init)
        seeds = list(seeds)
        batch, n = len(seeds), grid.resolution
        temperature = np.broadcast_to(np.asarray(parameters["temperature"], np.float64),
                                      (batch,))
        start = None
        if initial_state is not None:
            start = np.asarray(initial_state["spin"], dtype=np.float64)
            if start.shape != grid.shape:
                raise ValueError(f"initial_state['spin'] has shape {start.shape}, expected "
                                 f"{grid.shape}")
            self.validate_initial_state({"spin": start})
            start = start.astype(np.int8)
        burn_in = self.burn_in_sweeps(grid)
        spin = np.empty((batch, len(sweeps), n, n))
        size = self.chunk_size(grid)
        for first in range(0, batch, size):
            chunk = slice(first, min(first + size, batch))
            rngs = [np.random.default_rng(seed) for seed in seeds[chunk]]
            if start is not None:
                state = np.broadcast_to(start, (len(rngs), n, n)).copy()
            else:
                state = np.stack([self.initial_spins(grid, rng, init) for rng in rngs])
            probability = -np.expm1(-2.0 / temperature[chunk])
            uniforms = np.empty((len(rngs), 3, n, n))
            done = -burn_in
            for index, target in enumerate(sweeps):
                for _ in range(int(target) - done):
                    for rng, out in zip(rngs, uniforms, strict=True):
                        rng.random(out=out)         # = rng.random((3, N, N)), in place
                    state = swendsen_wang_sweep(state, probability, uniforms)
                done = int(target)
                spin[chunk, index] = state
        return {"spin": spin}
