"""Train on synthetic, test on real: the scores of :func:`utility_scores` on arrays.

For each swept parameter ``p`` and the ``S`` test snapshots (targets ``y_s``, predicted
mean ``mu_s`` and standard deviation ``sigma_s``, encoded units of
:mod:`surrogate.validation.utility.snapshots`, where the declared range spans 2):

* ``rmse = sqrt(mean_s (mu_s - y_s)^2)``;
* ``coverage68 = mean_s [|mu_s - y_s| <= sigma_s]`` (nominal 68.27 %) and
  ``coverage95 = mean_s [|mu_s - y_s| <= 1.95996 sigma_s]`` (nominal 95 %): the fraction of
  test snapshots inside the central Gaussian interval;
* ``prior_std = sqrt(mean_s (y_s - mean(y))^2)``: the RMSE of the best constant guess,
  what a regressor that learned nothing from the fields scores.

Trainings (same :class:`RegressorConfig`, same seeds): on the real training set (TRTR:
``*_real``), on the generated set (TSTR: ``*_generated``; ``ratio = rmse_generated /
rmse_real``), and for every augmentation fraction ``f`` on the first ``ceil(f B)``
trajectories of one seeded permutation of the ``B`` real ones (nested subsets, kept in
file order, so ``f = 1`` is the real set itself) alone (``rmse_real_only``) and together
with the whole generated set (``rmse_with_generated``). With several seeds every score
is the mean over seeds of that seed's score (``ratio`` is the ratio of the means) and
``ratio_per_seed`` lists each seed's own ratio: how much of a ratio is the regressor's
training noise.

The floor (``floor``: a second simulator ensemble at the real set's conditions, the set
a perfect surrogate would generate): trained with the same seeds in place of the
generated set, it gives ``rmse_floor``, ``ratio_floor`` (``rmse_floor / rmse_real``),
``ratio_floor_per_seed`` and the floor's coverages, what the ratio reads when nothing
but sampling and training noise separates the two training sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulators.store import StoreSchema
from surrogate.validation.utility.regressor import RegressorConfig, train_regressor
from surrogate.validation.utility.snapshots import Snapshots

__all__ = ["DEFAULT_FRACTIONS", "MIN_TRAJECTORIES", "Z68", "Z95", "UtilityResult",
           "fraction_subsets", "regression_scores", "utility_scores"]

#: fractions of the real training trajectories in the augmentation study
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
#: fewest trajectories in any training set (every fraction's subset) and in the test set
MIN_TRAJECTORIES = 4
#: half-widths, in standard deviations, of the central 68.27 % and 95 % Gaussian intervals
Z68 = 1.0
Z95 = 1.959963984540054


def regression_scores(mean: np.ndarray, std: np.ndarray, targets: np.ndarray,
                      names: Sequence[str]) -> dict[str, dict[str, float]]:
    """RMSE, coverages and prior std per parameter (see the module docstring).

    Args:
        mean, std, targets: ``(S, P)`` arrays, encoded units (``S >= 1``).
        names: the ``P`` parameter names.
    Returns:
        ``{name: {"rmse", "coverage68", "coverage95", "prior_std"}}``.
    """
    mean, std, targets = (np.asarray(a, dtype=np.float64) for a in (mean, std, targets))
    if not (mean.shape == std.shape == targets.shape) or mean.ndim != 2 \
            or mean.shape[1] != len(names) or mean.shape[0] == 0:
        raise ValueError(f"mean, std and targets must have one shape (S >= 1, {len(names)}), "
                         f"got {mean.shape}, {std.shape}, {targets.shape}")
    error = np.abs(mean - targets)
    return {name: {"rmse": float(np.sqrt(np.mean(error[:, p] ** 2))),
                   "coverage68": float(np.mean(error[:, p] <= Z68 * std[:, p])),
                   "coverage95": float(np.mean(error[:, p] <= Z95 * std[:, p])),
                   "prior_std": float(np.std(targets[:, p]))}
            for p, name in enumerate(names)}


def fraction_subsets(trajectories: np.ndarray, fractions: Sequence[float], seed: int
                     ) -> dict[float, np.ndarray]:
    """Nested subsets of trajectory labels: ``{f: the first ceil(f B) of a seeded
    permutation, in ascending order}``.

    Raises:
        ValueError: a fraction outside ``(0, 1]`` or a subset smaller than
            :data:`MIN_TRAJECTORIES`.
    """
    labels = np.unique(trajectories)
    order = np.random.default_rng([seed, 0xA0C]).permutation(labels)
    subsets = {}
    for fraction in fractions:
        if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
            raise ValueError(f"augmentation fraction {fraction!r} is not in (0, 1]")
        count = math.ceil(fraction * labels.size - 1e-9)
        if count < MIN_TRAJECTORIES:
            raise ValueError(f"{fraction:.0%} of the {labels.size} real training trajectories "
                             f"is {count}, fewer than the {MIN_TRAJECTORIES} a training set "
                             f"needs (give >= {math.ceil(MIN_TRAJECTORIES / fraction)} "
                             f"trajectories or larger fractions)")
        subsets[float(fraction)] = np.sort(order[:count])
    return subsets


@dataclass
class UtilityResult:
    """What :func:`utility_scores` returns.

    Attributes:
        report: JSON-able ``{"parameters": {name: {rmse_real, rmse_generated, ratio,
            ratio_per_seed, coverage68_real, coverage68_generated, coverage95_real,
            coverage95_generated, prior_std}}, "augmentation": {name: [{fraction,
            rmse_real_only, rmse_with_generated}]}, "seeds", "regressor", "counts"}``;
            with a floor set each parameter also holds ``rmse_floor``, ``ratio_floor``,
            ``ratio_floor_per_seed``, ``coverage68_floor`` and ``coverage95_floor``, and
            the counts ``floor_trajectories`` and ``floor_snapshots``.
        predictions: ``{"real"|"generated"[|"floor"]: (targets, mean, std)}`` on the test
            set from the first seed's regressors, ``(S, P)`` each (for the figures).
    """

    report: dict[str, Any]
    predictions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


def _mean_over_seeds(per_seed: list[dict[str, dict[str, float]]]
                     ) -> dict[str, dict[str, float]]:
    return {name: {key: float(np.mean([scores[name][key] for scores in per_seed]))
                   for key in per_seed[0][name]} for name in per_seed[0]}


def utility_scores(real: Snapshots, generated: Snapshots, test: Snapshots, schema: StoreSchema,
                   *, config: RegressorConfig | None = None, seeds: Sequence[int] = (0,),
                   fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   progress: Callable[[str], None] | None = None,
                   floor: Snapshots | None = None) -> UtilityResult:
    """TRTR, TSTR, the augmentation study and the floor on arrays (module docstring).

    Args:
        real: the simulations to train on.
        generated: the generated fields at the real set's conditions.
        test: held-out simulations.
        schema: the fields' declarations (:func:`train_regressor`).
        config: the budget of every training (default :class:`RegressorConfig`).
        seeds: training seeds; scores are means over them.
        fractions: augmentation fractions in ``(0, 1]`` (empty: no augmentation study).
        progress: called with one line per training.
        floor: a second simulator ensemble at the real set's conditions, as many
            trajectories per condition as the generated set holds (``None``: no floor).
    Raises:
        ValueError: sets of other parameters, no seed, or a training or test set smaller
            than :data:`MIN_TRAJECTORIES` trajectories.
    """
    config = config or RegressorConfig()
    names = real.names
    sets = [("real training", real), ("generated", generated), ("test", test)] \
        + ([("floor", floor)] if floor is not None else [])
    if any(part.names != names for _, part in sets):
        raise ValueError("real, generated, test (and floor) snapshots infer other "
                         "parameters: " + ", ".join(str(part.names) for _, part in sets))
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("give at least one training seed")
    for label, part in sets:
        if part.n_trajectories < MIN_TRAJECTORIES:
            raise ValueError(f"the {label} set holds {part.n_trajectories} trajectories, "
                             f"fewer than the {MIN_TRAJECTORIES} the regressor needs")
    subsets = fraction_subsets(real.trajectory, fractions, seeds[0])
    report_lines = progress or (lambda line: None)

    def fit_and_score(label: str, data: Snapshots, seed: int):
        report_lines(f"seed {seed}: training on {label} ({data.n_trajectories} "
                     f"trajectories, {data.size} snapshots)")
        mean, std = train_regressor(data, schema, config, seed).predict(test)
        return regression_scores(mean, std, test.targets, names), (mean, std)

    real_scores, generated_scores, floor_scores = [], [], []
    augmentation: dict[float, dict[str, list]] = {f: {"alone": [], "with": []} for f in subsets}
    predictions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for seed in seeds:
        scores, (mean, std) = fit_and_score("the simulations (TRTR)", real, seed)
        real_scores.append(scores)
        predictions.setdefault("real", (test.targets, mean, std))
        scores, (mean, std) = fit_and_score("the generated fields (TSTR)", generated, seed)
        generated_scores.append(scores)
        predictions.setdefault("generated", (test.targets, mean, std))
        if floor is not None:
            scores, (mean, std) = fit_and_score("the second simulations (floor)", floor, seed)
            floor_scores.append(scores)
            predictions.setdefault("floor", (test.targets, mean, std))
        for fraction, subset in subsets.items():
            part = real.select(subset)
            alone = real_scores[-1] if part.size == real.size else \
                fit_and_score(f"{fraction:.0%} of the simulations", part, seed)[0]
            augmentation[fraction]["alone"].append(alone)
            augmentation[fraction]["with"].append(fit_and_score(
                f"{fraction:.0%} of the simulations + the generated fields",
                Snapshots.concatenate([part, generated]), seed)[0])
    real_mean, generated_mean = _mean_over_seeds(real_scores), _mean_over_seeds(generated_scores)
    floor_mean = _mean_over_seeds(floor_scores) if floor_scores else None
    parameters = {}
    for name in names:
        ours, theirs = real_mean[name], generated_mean[name]
        parameters[name] = {
            "rmse_real": ours["rmse"], "rmse_generated": theirs["rmse"],
            "ratio": _ratio(theirs["rmse"], ours["rmse"]),
            "ratio_per_seed": [_ratio(g[name]["rmse"], r[name]["rmse"])
                               for g, r in zip(generated_scores, real_scores, strict=True)],
            "coverage68_real": ours["coverage68"], "coverage68_generated": theirs["coverage68"],
            "coverage95_real": ours["coverage95"], "coverage95_generated": theirs["coverage95"],
            "prior_std": ours["prior_std"]}
        if floor_mean is not None:
            second = floor_mean[name]
            parameters[name].update({
                "rmse_floor": second["rmse"], "ratio_floor": _ratio(second["rmse"], ours["rmse"]),
                "ratio_floor_per_seed": [_ratio(f[name]["rmse"], r[name]["rmse"])
                                         for f, r in zip(floor_scores, real_scores,
                                                         strict=True)],
                "coverage68_floor": second["coverage68"],
                "coverage95_floor": second["coverage95"]})
    curves = {name: [{"fraction": fraction,
                      "rmse_real_only": _mean_over_seeds(entry["alone"])[name]["rmse"],
                      "rmse_with_generated": _mean_over_seeds(entry["with"])[name]["rmse"],
                      "real_trajectories": int(subsets[fraction].size)}
                     for fraction, entry in sorted(augmentation.items())]
              for name in names}
    report = {"parameters": parameters, "augmentation": curves, "seeds": seeds,
              "regressor": config.to_dict(),
              "counts": {"real_trajectories": real.n_trajectories,
                         "real_snapshots": real.size,
                         "generated_trajectories": generated.n_trajectories,
                         "generated_snapshots": generated.size,
                         "test_trajectories": test.n_trajectories,
                         "test_snapshots": test.size,
                         **({"floor_trajectories": floor.n_trajectories,
                             "floor_snapshots": floor.size} if floor is not None else {}),
                         "trainings": len(seeds) * (2 + (floor is not None) + sum(
                             2 - (subset.size == real.n_trajectories)
                             for subset in subsets.values()))}}
    return UtilityResult(report=report, predictions=predictions)
