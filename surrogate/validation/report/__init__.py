"""Compare a generated field-store file with a reference one; decide whether it passes.

:func:`validate_files` streams both files once per pass, one trajectory in memory at a
time, and fills the report whose keys README.md's Validation section lists
(:func:`write_report` writes it as ``report.json`` + ``report.md`` + PNG figures).
What is compared, per field (a vector field's one-point statistics pool its two
components; its spectrum is the sum of the component spectra, i.e. twice the
kinetic-energy spectrum; its morphology uses ``|u|``):

* **spectrum**: mean power spectrum over all matched snapshots of each file (the
  generated side's mean at each condition weighted by the reference's snapshots there,
  :func:`.summaries.condition_weighted_spectra`, so that unequal numbers of generated
  samples per condition do not read as an error), relative
  error per shell ``(P_gen - P_ref) / P_ref`` over the *resolved* shells (those whose
  reference power exceeds ``RESOLVED_POWER_FLOOR`` times the largest shell power:
  dealiased or round-off-level shells carry no physics), its median and max, and the
  low/mid/high band summary of :func:`surrogate.validation.band_summary`;
  its **scatter** (``spectrum.scatter``): the within-condition std of one snapshot's log
  shell power, ``log P_s(t, k)``, pooled over the conditions with >= 2 trajectories on
  each side (:class:`.accumulators.LogPowerScatter`), generated over reference per time
  and resolved shell; ``ratio`` is the median, ``bands`` the low/mid/high medians. For a
  Gaussian random field the reference's value is ``sqrt(psi'(n_k / 2))`` whatever the
  spectrum (``n_k`` modes in shell ``k``); a generator whose samples carry, e.g., a
  random spectral slope has the right mean spectrum and a ratio > 1. Reported and
  given a floor; not gated by default (``spectrum_scatter_ratio_min`` / ``_max``);
* **pdf**: histograms on common edges, W1 over the reference std and the two-sample KS
  p-value on at most ``MAX_POOLED_VALUES`` values per file (a fixed stride through
  the stream); for a system that declares a global sign symmetry (``negate``, e.g.
  Ising) of the laws symmetrised over the sign (``sign_symmetrised``;
  :func:`.summaries.one_point_values`, :func:`.summaries.one_point_w1`): the sign
  balance of a finite ensemble is sampling noise there, judged instead by
  **sign_balance** (:func:`.summaries.sign_balance`: the difference of the net means
  over the noise of fairly drawn signs, a z-score, gated by ``sign_balance_z_max``) and
  the mode coverage;
* **moments**: mean, std, skewness, excess kurtosis of all values (exact running sums
  in float64 around the reference mean);
* **correlation**: the isotropic auto-covariance ``xi(r)`` averaged over snapshots;
* **minkowski**: mean area fraction, boundary length and Euler characteristic densities
  at the reference mean and mean +- one std;
* **spread_ratio**: ensemble spread ``mean over pixels and times of std over samples``
  of generated over reference, per condition (groups with >= 2 trajectories in both
  files), summarised by the median over groups. A Sobol sweep holds one reference
  trajectory per condition; when the generated file holds >= 2 samples per condition the
  reference's spread at a condition is then estimated from its nearest other reference
  condition (``|x_b - x_b'| / sqrt(2)``: the ensemble std if the two conditions were the
  same, and larger by the difference that the parameter change makes, so collapse is
  judged conservatively), each side's mean-of-std corrected by ``c4(n)`` for its number
  of samples; the median normalised distance of those pairs is reported. When neither
  applies the spread is taken across all matched trajectories at each time. The report
  says which in ``spread_basis`` (``per_condition``, ``nearest_reference_neighbour``,
  ``across_conditions``);
* **spread_aligned_ratio** (not gated; a diagnostic): the same per-condition ratio after
  every trajectory of a condition was rolled into register with its first one (the
  periodic shift of largest cross-correlation,
  :class:`surrogate.validation.statistics.AlignedEnsembleSpread`), median over the
  conditions; ``None`` without per-condition groups. Samples that are one pattern at
  different places read 0 here while their plain spread can look healthy, which is what
  a generator with built-in shifts (``shift_equivariant``) needs watching for;
* **temporal_change_ratio** (files with >= 2 snapshot times): ``mean |f(t_i+1) - f(t_i)|``
  over consecutive snapshots of each generated trajectory (one latent) over the same
  for the reference trajectories. A generator that draws each time independently of
  the others changes too much between snapshots (> 1; with snapshots far apart
  compared with the decorrelation time the reference changes as much); one that
  ignores time, or keeps one frozen field, too little (< 1). Conservation budgets over
  time (energy) fail for the same reason; this ratio names the cause for every field.

Files are compared *per condition* (:mod:`surrogate.validation.conditions`): every
metric above is also computed for each reference condition with its matched generated
trajectories (``per_condition``), and the overall numbers pool the matched trajectories
only. **range** (:func:`range_summary`) splits the conditions into thirds of every
swept parameter's range and compares the pooled spectra within each third, with the
larger end's error over the middle's (``end_over_middle``): a generator right on average
over the range can be wrong at both ends, which the pooled spectrum hides and one
condition's few samples are too noisy to show. **conservation** runs
:func:`surrogate.validation.check_invariants_streaming` on both files' matched
trajectories; **conservation_series** holds the per-time invariant
series of :func:`surrogate.validation.observables.invariant_series`; **observables**
compares system observables (energy, enstrophy, ...); **frechet_physics_distance** is
:func:`surrogate.validation.features.frechet_physics_distance` on per-snapshot physics
features, next to the same distance between two halves of the reference.

``passed`` is true when every gated check in ``checks`` passes (a check whose value is
undefined, e.g. a spread with a single sample, is listed in ``not_evaluated``); the thresholds
(:data:`DEFAULT_THRESHOLDS`, documented in :data:`THRESHOLD_DOCS`) are overridable from
a TOML file of the same flat keys (``inf`` or ``0`` disables a maximum / minimum).

One idea per module; every public name is re-exported here:

* :mod:`.thresholds`: :data:`DEFAULT_THRESHOLDS`, :data:`THRESHOLD_DOCS`,
  :func:`load_thresholds` (the TOML overrides), :func:`resolve_thresholds`;
* :mod:`.inputs`: opening the files, refusing incompatible ones, reading a trajectory
  (NaN/Inf refused with trajectory and time);
* :mod:`.accumulators`: what one side (reference or generated) accumulates while the
  files stream, over all compared trajectories and at one condition;
* :mod:`.summaries`: the report's entries formed from the accumulators
  (:func:`spectrum_summary` and the others);
* :mod:`.gates`: each number against its threshold, the verdict;
* :mod:`.floor`: the noise floor written beside every gated number (:func:`attach_floor`);
* :mod:`.engine`: :func:`validate_files`, :func:`noise_floor` and the streaming
  comparison, :class:`ValidationResult`;
* :mod:`.writer`: :func:`write_report` (``report.json`` + ``report.md`` + figures; the
  figures and the page are drawn by :mod:`surrogate.validation.plots`).

NaN and infinities are written as ``null`` (:func:`json_safe`, from
:mod:`surrogate.jsonable`): "this metric is undefined here".
"""

from surrogate.jsonable import json_safe
from surrogate.validation.report.engine import (
    REPORT_VERSION,
    ValidationResult,
    noise_floor,
    validate_files,
)
from surrogate.validation.report.floor import attach_floor
from surrogate.validation.report.summaries import (
    RANGE_THIRDS,
    end_over_middle,
    range_summary,
    range_third,
    spectrum_summary,
)
from surrogate.validation.report.thresholds import (
    DEFAULT_THRESHOLDS,
    THRESHOLD_DOCS,
    load_thresholds,
    resolve_thresholds,
)
from surrogate.validation.report.writer import write_report

__all__ = ["DEFAULT_THRESHOLDS", "RANGE_THIRDS", "REPORT_VERSION", "THRESHOLD_DOCS",
           "ValidationResult", "attach_floor", "end_over_middle", "json_safe",
           "load_thresholds", "noise_floor", "range_summary", "range_third",
           "resolve_thresholds", "spectrum_summary", "validate_files", "write_report"]
