"""Is generated data good for science? Train on synthetic, test on real.

A small periodic CNN regressor infers every swept physical parameter (encoded over its
declared range, log space for a log-scaled one) from one snapshot and its time, with a
Gaussian error bar, trained by the Gaussian negative log-likelihood. Trained the same
way on simulations (TRTR) and on generated fields at the same conditions (TSTR), and on
fractions of the simulations with and without the generated fields added, it is tested
on held-out simulations; the ratio of the test RMSEs says how much a downstream model
loses by learning from the surrogate (Esteban et al. 2017, arXiv:1706.02633; Ravuri &
Vinyals 2019, the Classification Accuracy Score, arXiv:1905.10887).

* :mod:`~surrogate.validation.utility.snapshots`: :class:`Snapshots`, the examples
  (fields, time, encoded targets), from arrays or a field store;
* :mod:`~surrogate.validation.utility.regressor`: :class:`ParameterRegressor`,
  :class:`RegressorConfig`, :func:`train_regressor`;
* :mod:`~surrogate.validation.utility.scores`: :func:`regression_scores` (RMSE,
  coverage, prior std) and :func:`utility_scores` (the Python API on arrays);
* :mod:`~surrogate.validation.utility.files`: :func:`utility_files` (three field-store
  files, checked against each other: ``surrogate utility``);
* :mod:`~surrogate.validation.utility.page`: :func:`write_utility` (``utility.json``,
  ``utility.md``, figures).
"""

from surrogate.validation.utility.files import utility_files
from surrogate.validation.utility.page import write_utility
from surrogate.validation.utility.regressor import (
    FittedRegressor,
    ParameterRegressor,
    RegressorConfig,
    train_regressor,
)
from surrogate.validation.utility.scores import (
    DEFAULT_FRACTIONS,
    MIN_TRAJECTORIES,
    UtilityResult,
    regression_scores,
    utility_scores,
)
from surrogate.validation.utility.snapshots import Snapshots, read_snapshots

__all__ = ["DEFAULT_FRACTIONS", "MIN_TRAJECTORIES", "FittedRegressor", "ParameterRegressor",
           "RegressorConfig", "Snapshots", "UtilityResult", "read_snapshots",
           "regression_scores", "train_regressor", "utility_files", "utility_scores",
           "write_utility"]
