"""The validation score of a checkpoint: generated against held-out reference snapshots
(spectrum, W1, spread and temporal-change terms), from two latent draws, and the
score's own noise (see :func:`physics_score`, :func:`two_draw_score`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _snapshot_spectra(reference: np.ndarray, generated: np.ndarray, rank: int,
                      box_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(k, P_ref, P_gen)``: every snapshot's shell power, ``(S, n_shells)`` per side."""
    from surrogate.validation.spectra import field_power_spectrum

    k, p_ref = field_power_spectrum(reference, box_size, vector=bool(rank))
    _, p_gen = field_power_spectrum(generated, box_size, vector=bool(rank))
    return k, p_ref, p_gen


def _spectrum_error(k: np.ndarray, p_ref: np.ndarray, p_gen: np.ndarray) -> float:
    """The report's spectrum error of the two sides' sample-mean spectra."""
    from surrogate.validation.report import spectrum_summary

    return float(spectrum_summary(k, p_ref.mean(axis=0), p_gen.mean(axis=0))
                 ["rel_error_median"])


#: a third of a swept range holding fewer validation snapshots is left out of the
#: per-third spectrum term (one snapshot's spectrum is too noisy to judge a generator on)
MIN_SNAPSHOTS_PER_THIRD = 4


def range_thirds(parameters: np.ndarray) -> list[np.ndarray]:
    """Which third of each swept range every snapshot lies in.

    Args:
        parameters: ``(S, P)`` the snapshots' parameters on a linear scale (the condition
            encoding ``c`` in [-1, 1], in which a log-scaled parameter is already
            logarithmic).
    Returns:
        for each column taking >= 3 distinct values, an ``(S,)`` integer array: 0 (low
        end), 1 (middle), 2 (high end) of that column's ``[min, max]``, split as the
        report's ``range`` entry splits its conditions
        (:func:`surrogate.validation.report.summaries.range_third`).
    """
    from surrogate.validation.report.summaries import range_third

    return [np.array([range_third(value, low, high) for value in column])
            for _, column, low, high in _swept_columns(parameters)]


def _swept_columns(parameters: np.ndarray):
    """``(index, column, min, max)`` of each column of ``(S, P)`` ``parameters`` that is
    a swept range the thirds can split: finite, taking >= 3 distinct values."""
    parameters = np.asarray(parameters, dtype=np.float64).reshape(len(parameters), -1)
    for index, column in enumerate(parameters.T):
        if np.all(np.isfinite(column)) and np.unique(column).size >= 3:
            yield index, column, float(column.min()), float(column.max())


def unscored_thirds(train_parameters: np.ndarray, valid_parameters: np.ndarray
                    ) -> list[tuple[int, int, int, float, float]]:
    """The thirds of the training split's swept ranges that the validation score cannot see.

    The checkpoint score (:func:`physics_score` with ``thirds``) judges each third of a
    swept range only where >= :data:`MIN_SNAPSHOTS_PER_THIRD` validation snapshots lie
    in it; a random split can leave a whole end of a range without any (the Ising
    fidelity data's ordered end: 1 of 24 validation trajectories below T = 2.17), and the
    best checkpoint is then chosen blind to it.

    Args:
        train_parameters: ``(S_train, P)`` encoded parameters (the condition vector
            without its time entry) of the training snapshots.
        valid_parameters: ``(S_valid, P)`` the same for the validation snapshots.
    Returns:
        ``(column, third, snapshots, low, high)`` for each third (0 low end, 1 middle,
        2 high end of the column's training ``[min, max]``) of each column taking >= 3
        distinct training values that holds fewer than :data:`MIN_SNAPSHOTS_PER_THIRD`
        validation snapshots; ``low, high``: the third's bounds in the encoding.
    """
    from surrogate.validation.report.summaries import range_third

    valid_parameters = np.asarray(valid_parameters, dtype=np.float64)
    blind = []
    for column, _, low, high in _swept_columns(train_parameters):
        counts = np.bincount([range_third(value, low, high)
                              for value in valid_parameters[:, column]], minlength=3)
        for third in range(3):
            if counts[third] < MIN_SNAPSHOTS_PER_THIRD:
                blind.append((column, third, int(counts[third]),
                              low + (high - low) * third / 3,
                              low + (high - low) * (third + 1) / 3))
    return blind


def _thirds_spectrum_errors(k: np.ndarray, p_ref: np.ndarray, p_gen: np.ndarray,
                            thirds: Sequence[np.ndarray]) -> list[list[float]]:
    """Per swept parameter, the spectrum error (:func:`_spectrum_error`) of the snapshots
    in each of its thirds that holds >= :data:`MIN_SNAPSHOTS_PER_THIRD` (``p_ref``,
    ``p_gen``: the snapshots' shell power, :func:`_snapshot_spectra`)."""
    errors = []
    for third in thirds:
        per_third = [_spectrum_error(k, p_ref[third == index], p_gen[third == index])
                     for index in range(3)
                     if np.count_nonzero(third == index) >= MIN_SNAPSHOTS_PER_THIRD]
        if len(per_third) >= 2:
            errors.append(per_third)
    return errors


def physics_score(reference: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray],
                  ranks: Mapping[str, int], box_size: float, *,
                  pairs: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                  increments: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                  sign_symmetric: bool = False,
                  thirds: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """Validation score of generated vs reference snapshots (lower is better).

    Per field: ``spectrum`` = median over resolved shells of ``|P_gen / P_ref - 1|`` of
    the sample-mean spectra (as in the report), ``w1`` = Wasserstein-1 of the pooled
    values over the reference std (with ``sign_symmetric``, a generator built with a
    declared global sign symmetry, of the symmetrised laws, as in the report:
    :func:`surrogate.validation.report.summaries.one_point_w1`; for Ising spins the
    plain term is the difference of the two sets' net magnetisations, which the sampling
    of signs alone sets); with ``pairs``, ``spread`` = the within-condition
    spread ratio ``mean |g - g'| / mean |x - x'|`` (``g, g'``: two latents at one
    condition; ``x, x'``: a reference snapshot and its nearest-parameter neighbour at the
    same time, an upper estimate of the reference's spread, as in the report's
    ``nearest_reference_neighbour`` basis) and the term ``ln(low / spread)`` below,
    ``ln(spread / high)`` above the band :data:`SPREAD_BAND` ``= (low, high) = (0.8,
    1.25)`` and 0 inside it, which a generator that ignores its latent (spread 0) makes
    large. Inside the band the score does not rank spreads: the neighbour basis is biased
    (it adds the parameter step between neighbours to the reference's spread, so even
    a perfect generator reads below 1 by an amount that depends on the sweep's density),
    and a plain ``|ln spread|`` chose checkpoints whose spectra were worse, e.g. a
    Navier-Stokes run's step 500 (spread 0.93 / 0.99, validation spectrum 0.11) over
    its step 1,000 (0.81 / 0.93, 0.076; held-out test spectrum 0.12 against 0.049).
    With ``increments``,
    ``temporal`` = ``mean |g(t_i+1) - g(t_i)| / mean |x(t_i+1) - x(t_i)|`` (one latent /
    one simulated trajectory over consecutive snapshot times) and the term
    ``|ln temporal|``: snapshots generated independently of one another at each time
    change too much between times (ratio > 1), a generator that ignores time too little.
    With ``thirds`` (:func:`range_thirds` of the snapshots' parameters), the spectrum
    term is ``(spectrum + spectrum_thirds) / 2``, where ``spectrum_thirds`` = the mean
    over the swept parameters of the mean over the thirds of each range of the spectrum
    error of that third's snapshots (thirds holding >= :data:`MIN_SNAPSHOTS_PER_THIRD`;
    a parameter with fewer than two such thirds is left out, and without any the pooled
    ``spectrum`` alone is the term); ``spectrum_worst_third`` is logged beside it. The
    pooled spectrum weights every snapshot by its power, so the conditions whose fields
    carry little power at the resolved wavenumbers (an ordered Ising phase, a viscous
    Navier-Stokes flow) hardly enter it: an Ising generator whose ordered third read 0.78
    in the report (2-5x the simulator's power at every k > 0) scored 0.07-0.10 pooled
    on validation. The per-third errors alone rest on a third of the snapshots each and
    chose worse checkpoints than the pooled term about as often as better ones; half of
    each is what the benchmarks measured (README, Benchmarks).
    ``score`` = mean over fields of ``spectrum + w1 [+ spread term] [+ |ln temporal|]``
    (the temporal basis is the same trajectory, exact, so it keeps the plain log).

    Args:
        reference, generated: ``{field: (S, N, N[, 2])}`` physical snapshots at the same
            conditions.
        ranks: ``{field: 0 or 1}``.
        box_size: side ``L`` of the periodic square.
        pairs: ``{"generated": second generated set at the same conditions,
            "reference": the reference snapshots' neighbours}``, same layout.
        increments: ``{"generated": g(t_i+1) - g(t_i), "reference": x(t_i+1) - x(t_i)}``,
            ``{field: (S', N, N[, 2])}`` (any number ``S'`` of consecutive pairs).
        thirds: per swept parameter, ``(S,)`` the third (0, 1, 2) of its range each
            snapshot lies in (:func:`range_thirds`).
    """
    from surrogate.validation.report.summaries import one_point_w1
    out: dict[str, float] = {}
    total = 0.0
    for name, values in reference.items():
        spectra = _snapshot_spectra(values, generated[name], ranks[name], box_size)
        spectrum = _spectrum_error(*spectra)
        w1 = one_point_w1(generated[name].ravel(), values.ravel(), sign_symmetric)
        w1 = 0.0 if math.isnan(w1) else w1
        out[f"{name}/spectrum"] = spectrum
        out[f"{name}/w1"] = w1
        errors = _thirds_spectrum_errors(*spectra, thirds) if thirds else []
        if errors:
            by_third = float(np.mean([np.mean(per_third) for per_third in errors]))
            out[f"{name}/spectrum_thirds"] = by_third
            out[f"{name}/spectrum_worst_third"] = float(max(map(max, errors)))
            spectrum = (spectrum + by_third) / 2
        total += spectrum + w1
        if pairs is not None:
            # two samples per condition: the report's ensemble spread ratio
            # (statistics.spread_ratio), std over 2 samples = |a - b| / sqrt(2) per pixel
            ratio = _spread_ratio(np.stack([generated[name], pairs["generated"][name]]),
                                  np.stack([values, pairs["reference"][name]]))
            if ratio is not None:
                out[f"{name}/spread"] = ratio
                total += _band_penalty(ratio, *SPREAD_BAND)
        if increments is not None:
            ratio = _mean_abs_ratio(increments["generated"][name],
                                    increments["reference"][name])
            if ratio is not None:
                out[f"{name}/temporal"] = ratio
                total += _log_ratio_penalty(ratio)
    out["score"] = total / max(len(reference), 1)
    return out


def two_draw_score(first: Mapping[str, float], second: Mapping[str, float]
                   ) -> dict[str, float]:
    """The validation score of one checkpoint from two latent draws, and its noise.

    Every entry is the mean of the two draws' :func:`physics_score` entries (the same
    reference snapshots, two independent latent sets), and ``score_noise`` =
    ``|score_1 - score_2| / 2`` estimates the standard error of that mean: the part of
    the score that the sampling of latents alone moves. Differences between
    checkpoints of the order of ``score_noise`` are not evidence that one is better.
    """
    out = {key: (first[key] + second[key]) / 2 for key in first if key in second}
    out["score_noise"] = abs(first["score"] - second["score"]) / 2
    return out


def score_noise_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Median score noise and median change of the score between consecutive
    validations, from the training log's ``valid/score`` and ``valid/score_noise``
    entries (``None`` when fewer than two validations, or none with a finite score)."""
    scores = [(r["valid/score"], r.get("valid/score_noise")) for r in records
              if "valid/score" in r and r["valid/score"] is not None
              and math.isfinite(r["valid/score"])]
    noise = [n for _, n in scores if n is not None and math.isfinite(n)]
    changes = [abs(b[0] - a[0]) for a, b in itertools.pairwise(scores)]
    return {"score_noise_median": float(np.median(noise)) if noise else None,
            "score_change_median": float(np.median(changes)) if changes else None}


#: spread ratios the validation score does not rank (the fidelity benchmark's target band)
SPREAD_BAND = (0.8, 1.25)

#: score term of a spread or temporal ratio of exactly 0 (|ln 1e-3|: a total collapse,
#: or a field frozen in time)
_ZERO_RATIO_PENALTY = -math.log(1e-3)


def _mean_abs_ratio(generated: np.ndarray, reference: np.ndarray) -> float | None:
    """``mean |generated| / mean |reference|`` (None when the reference is all zero)."""
    scale = float(np.mean(np.abs(reference)))
    return float(np.mean(np.abs(generated))) / scale if scale > 0 else None


def _spread_ratio(generated: np.ndarray, reference: np.ndarray) -> float | None:
    """:func:`surrogate.validation.statistics.spread_ratio` over the leading axis of
    ``(2, S, ...)`` stacks, each pair of samples at one condition (None when the
    reference pairs are identical everywhere)."""
    from surrogate.validation.statistics import spread_ratio
    if np.array_equal(reference[0], reference[1]):      # zero reference spread
        return None
    size = generated.shape[1]
    return spread_ratio(generated.reshape(2, size, -1), reference.reshape(2, size, -1))


def _band_penalty(ratio: float, low: float, high: float) -> float:
    """``ln(low / ratio)`` below ``low``, ``ln(ratio / high)`` above ``high``, 0 between
    (:data:`_ZERO_RATIO_PENALTY` for a ratio of 0)."""
    if ratio <= 0:
        return _ZERO_RATIO_PENALTY
    return max(0.0, math.log(low / ratio), math.log(ratio / high))


def _log_ratio_penalty(ratio: float) -> float:
    """``|ln ratio|``, or :data:`_ZERO_RATIO_PENALTY` for a ratio of 0."""
    return abs(math.log(ratio)) if ratio > 0 else _ZERO_RATIO_PENALTY
