"""``surrogate utility``: the utility scores of three field-store files.

:func:`utility_files` reads the real training file (REF), the generated file (GEN,
generated at REF's conditions: ``surrogate generate RUN --like REF``) and held-out
simulations (TEST), and optionally the floor file (REF2: REF's conditions simulated
again with other seeds, ``surrogate simulate --like REF --seed S``), checks them against
each other, and runs :func:`surrogate.validation.utility.scores.utility_scores` on their
snapshots.

What it infers: every *swept* parameter of REF (one whose values differ between REF's
trajectories), encoded over its declared range by REF's
:class:`surrogate.data.ConditionEncoder`. Every trajectory of each file is used (REF's
and TEST's own train/valid/test split is ignored: the files are the split).

Refused, with one line naming the file (:class:`simulators.store.FieldStoreError`, a
``ValueError``): a missing, unfinished or empty file; files of other systems, fields,
grids or parameter sets; a GEN, REF2 or TEST whose non-swept parameters differ from
REF's values; GEN or REF2 snapshot times other than REF's, TEST times outside REF's; a
GEN or REF2 with no trajectory within
:data:`~surrogate.validation.conditions.DEFAULT_MATCH_DISTANCE` of some REF condition;
a REF2 that is REF or was simulated with REF's seed; fewer trajectories than the regressor needs
(:data:`~surrogate.validation.utility.scores.MIN_TRAJECTORIES` per training set, every
augmentation fraction included, and in TEST); more snapshot data than
:data:`MAX_SNAPSHOT_BYTES`. Warned about (``report["warnings"]``): TEST conditions
that are also training conditions (the test is then not held out), GEN or REF2
trajectories at no REF condition (left out of the training), a REF2 of another size
than GEN's matched trajectories.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from simulators.store import FieldStore, FieldStoreError, require_complete
from surrogate.data import ConditionEncoder
from surrogate.validation.conditions import DEFAULT_MATCH_DISTANCE, group_conditions
from surrogate.validation.utility.regressor import RegressorConfig
from surrogate.validation.utility.scores import (
    DEFAULT_FRACTIONS,
    MIN_TRAJECTORIES,
    UtilityResult,
    fraction_subsets,
    utility_scores,
)
from surrogate.validation.utility.snapshots import read_snapshots

__all__ = ["MAX_SNAPSHOT_BYTES", "SAME_CONDITION", "UTILITY_VERSION", "utility_files"]

UTILITY_VERSION = 1
#: largest float32 snapshot data of the three files together held in memory
MAX_SNAPSHOT_BYTES = 8 * 2**30
#: normalised parameter distance below which two conditions are the same condition
SAME_CONDITION = 1e-6

ROLES = {"real": "real training", "generated": "generated", "test": "test",
         "floor": "floor"}


def _open(path: str | os.PathLike, role: str) -> FieldStore:
    """A finished, non-empty field-store file; ``role`` names it in errors."""
    path = Path(path)
    if not path.exists():
        raise FieldStoreError(f"{path}: {role} file not found")
    store = FieldStore(path)
    try:
        if store.n_trajectories == 0:
            raise FieldStoreError(f"{path}: {role} file holds no trajectories")
        require_complete(store, f"{path} ({role} file)")
    except BaseException:
        store.close()
        raise
    return store


def _check_layout(reference: FieldStore, other: FieldStore, role: str) -> None:
    """Refuse ``other`` unless its system, fields, grid and parameters are REF's."""
    where = f"{other.path} ({role} file)"
    checks = (
        ("system", reference.system, other.system),
        ("fields", [(s.name, s.rank) for s in reference.schema.fields],
         [(s.name, s.rank) for s in other.schema.fields]),
        ("resolution", reference.resolution, other.resolution),
        ("parameters", reference.parameter_names, other.parameter_names),
    )
    for what, ours, theirs in checks:
        if ours != theirs:
            raise FieldStoreError(f"{where}: {what} {theirs} differ from the real training "
                                  f"file's {ours} ({reference.path})")
    if not math.isclose(reference.box_size, other.box_size, rel_tol=1e-9):
        raise FieldStoreError(f"{where}: box_size {other.box_size:g} differs from the real "
                              f"training file's {reference.box_size:g}")


def _swept(store: FieldStore) -> list[str]:
    values = store.parameters()
    return [name for name in store.parameter_names if np.ptp(values[name]) > 0]


def _check_fixed(reference: FieldStore, other: FieldStore, swept: Sequence[str],
                 role: str) -> None:
    """``other``'s non-swept parameters must hold REF's (constant) values."""
    parameters = reference.schema.parameters
    fixed = [p for p in parameters if p.name not in swept]
    if not fixed:
        return
    ours = {p.name: reference.parameters()[p.name][:1] for p in fixed}
    theirs = other.parameters()
    for parameter in fixed:
        z_ours = group_conditions([parameter], ours, {parameter.name: theirs[parameter.name]},
                                  max_distance=SAME_CONDITION).generated
        if np.any(z_ours < 0):
            bad = theirs[parameter.name][np.flatnonzero(z_ours < 0)[0]]
            raise FieldStoreError(f"{other.path} ({role} file): parameter {parameter.name!r} "
                                  f"= {bad:g}, but the real training file holds it at "
                                  f"{ours[parameter.name][0]:g} (only swept parameters "
                                  f"are inferred: {', '.join(swept)})")


def _check_times(reference: FieldStore, other: FieldStore, role: str) -> None:
    if (reference.times.shape != other.times.shape
            or not np.allclose(reference.times, other.times, rtol=1e-6, atol=1e-12)):
        raise FieldStoreError(f"{other.path} ({role} file): snapshot times "
                              f"{np.round(other.times, 6).tolist()} differ from the real "
                              f"training file's {np.round(reference.times, 6).tolist()}")


def _matched(reference: FieldStore, other: FieldStore, role: str) -> tuple[np.ndarray, int]:
    """Trajectories of GEN (or of the floor file) at some REF condition, and how many of
    its trajectories are not.

    Raises:
        FieldStoreError: a REF condition without any trajectory of ``other``.
    """
    groups = group_conditions(reference.schema.parameters, reference.parameters(),
                              other.parameters(), max_distance=DEFAULT_MATCH_DISTANCE)
    covered = np.zeros(groups.n_groups, dtype=bool)
    covered[groups.generated[groups.generated >= 0]] = True
    if not covered.all():
        how = (f"generate at them with `surrogate generate RUN --like {reference.path}`"
               if role == ROLES["generated"] else
               f"simulate them with `surrogate simulate --like {reference.path} --seed S`")
        raise FieldStoreError(
            f"{other.path} ({role} file): no trajectory within "
            f"{DEFAULT_MATCH_DISTANCE:g} (normalised) of {int(np.sum(~covered))} of the "
            f"{groups.n_groups} real training conditions; {how}")
    matched = np.flatnonzero(groups.generated >= 0)
    return matched, int(other.n_trajectories - matched.size)


def _test_overlap(reference: FieldStore, generated: FieldStore, matched: np.ndarray,
                  test: FieldStore) -> tuple[int, int]:
    """``(test conditions equal to a training condition, test conditions)``."""
    parameters = reference.schema.parameters
    training = {name: np.concatenate([values, generated.parameters()[name][matched]])
                for name, values in reference.parameters().items()}
    groups = group_conditions(parameters, test.parameters(), training,
                              max_distance=SAME_CONDITION)
    shared = np.unique(groups.generated[groups.generated >= 0])
    return int(shared.size), groups.n_groups


def _check_floor_independent(reference: FieldStore, floor: FieldStore) -> None:
    """Refuse a floor that is REF itself or REF's simulations again (same master seed):
    it would read a ratio of exactly 1 that no perfect surrogate could."""
    same_file = os.path.samefile(reference.path, floor.path)
    ours, theirs = reference.provenance(), floor.provenance()
    simulated = all(str(p.get("producer", "")).startswith("simulator:") for p in (ours, theirs))
    same_seed = simulated and ours.get("seed") is not None \
        and str(ours["seed"]) == str(theirs.get("seed"))
    if same_file or same_seed:
        raise FieldStoreError(
            f"{floor.path} (floor file): "
            + ("it is the real training file" if same_file else
               f"simulated with the real training file's seed {ours['seed']}")
            + f"; simulate an independent one with `surrogate simulate --like "
              f"{reference.path} --seed S`")


def _check_counts(reference: FieldStore, matched: np.ndarray, test: FieldStore,
                  fractions: Sequence[float], seed: int, floor: FieldStore | None = None,
                  floor_matched: np.ndarray | None = None) -> None:
    counts = [(reference.path, reference.n_trajectories, "real training"),
              ("the generated file", matched.size, "generated"),
              (test.path, test.n_trajectories, "test")]
    if floor is not None and floor_matched is not None:
        counts.append((floor.path, floor_matched.size, "floor"))
    for path, count, role in counts:
        if count < MIN_TRAJECTORIES:
            raise FieldStoreError(f"{path}: {count} {role} trajectories, fewer than the "
                                  f"{MIN_TRAJECTORIES} the regressor needs")
    try:
        fraction_subsets(np.arange(reference.n_trajectories), fractions, seed)
    except ValueError as error:
        raise FieldStoreError(f"{reference.path}: {error}") from None
    extra = 0 if floor_matched is None else floor_matched.size
    snapshots = (reference.n_trajectories + matched.size + extra) * reference.times.size \
        + test.n_trajectories * test.times.size
    channels = sum(1 + spec.rank for spec in reference.schema.fields)
    size = snapshots * channels * reference.resolution**2 * 4
    if size > MAX_SNAPSHOT_BYTES:
        raise FieldStoreError(f"{reference.path}: the files hold {size / 2**30:.1f} GiB "
                              f"of snapshots, more than the {MAX_SNAPSHOT_BYTES / 2**30:g} GiB "
                              f"the utility reads into memory; use fewer trajectories")


def utility_files(train_real: str | os.PathLike, generated: str | os.PathLike,
                  test: str | os.PathLike, *, config: RegressorConfig | None = None,
                  seeds: Sequence[int] = (0,), fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  progress: Callable[[str], None] | None = None,
                  floor: str | os.PathLike | None = None) -> UtilityResult:
    """TRTR, TSTR and the augmentation study of three files (see the module docstring),
    and the floor from a fourth.

    Args:
        train_real: REF, the simulations a downstream model would be trained on.
        generated: GEN, generated at REF's conditions.
        test: TEST, held-out simulations.
        config, seeds, fractions, progress: as for :func:`utility_scores`.
        floor: REF2, a second simulation of REF's conditions with other seeds
            (``surrogate simulate --like REF --seed S``), checked like GEN; best with as
            many trajectories per condition as GEN (otherwise a warning says so).
    Returns:
        :class:`UtilityResult` whose report adds ``version``, ``train_real``,
        ``generated``, ``test``, ``floor`` (paths as given; ``floor`` None without
        one), ``system``, ``swept`` (per parameter: declared range, log scale, units)
        and ``warnings`` to the scores.
    Raises:
        FieldStoreError: bad input (see the module docstring), before any training.
    """
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("give at least one training seed")
    stores: list[FieldStore] = []
    roles = [(train_real, "real"), (generated, "generated"), (test, "test")] \
        + ([(floor, "floor")] if floor is not None else [])
    try:
        for path, role in roles:
            stores.append(_open(path, ROLES[role]))
        reference, generated_store, test_store = stores[:3]
        floor_store = stores[3] if floor is not None else None
        for store, role in zip(stores[1:], [role for _, role in roles[1:]], strict=True):
            _check_layout(reference, store, ROLES[role])
        swept = _swept(reference)
        if not swept:
            raise FieldStoreError(f"{reference.path}: no parameter varies between its "
                                  f"trajectories: nothing to infer")
        for store, role in zip(stores[1:], [role for _, role in roles[1:]], strict=True):
            _check_fixed(reference, store, swept, ROLES[role])
        _check_times(reference, generated_store, ROLES["generated"])
        matched, unmatched = _matched(reference, generated_store, ROLES["generated"])
        floor_matched, floor_unmatched = None, 0
        if floor_store is not None:
            _check_floor_independent(reference, floor_store)
            _check_times(reference, floor_store, ROLES["floor"])
            floor_matched, floor_unmatched = _matched(reference, floor_store, ROLES["floor"])
        _check_counts(reference, matched, test_store, fractions, seeds[0], floor_store,
                      floor_matched)
        warnings = []
        shared, conditions = _test_overlap(reference, generated_store, matched, test_store)
        if shared:
            warnings.append(f"{shared} of the {conditions} test conditions are also training "
                            f"conditions: the test is not held out for them")
        if unmatched:
            warnings.append(f"{unmatched} generated trajectories lie at no real training "
                            f"condition and were left out")
        if floor_unmatched:
            warnings.append(f"{floor_unmatched} floor trajectories lie at no real training "
                            f"condition and were left out")
        if floor_matched is not None and floor_matched.size != matched.size:
            warnings.append(f"the floor set holds {floor_matched.size} trajectories at the "
                            f"training conditions and the generated set {matched.size}: the "
                            f"floor ratio is of a training set of another size")
        encoder = ConditionEncoder.from_schema(reference.schema)
        real_snapshots = read_snapshots(reference, encoder, swept)
        generated_snapshots = read_snapshots(generated_store, encoder, swept, matched)
        test_snapshots = read_snapshots(test_store, encoder, swept)
        floor_snapshots = None if floor_store is None else \
            read_snapshots(floor_store, encoder, swept, floor_matched)
        schema = reference.schema
    finally:
        for store in stores:
            store.close()
    result = utility_scores(real_snapshots, generated_snapshots, test_snapshots, schema,
                            config=config, seeds=seeds, fractions=fractions,
                            progress=progress, floor=floor_snapshots)
    declared = {p.name: p for p in schema.parameters}
    result.report = {
        "version": UTILITY_VERSION, "train_real": str(train_real),
        "generated": str(generated), "test": str(test),
        "floor": None if floor is None else str(floor), "system": schema.system,
        "swept": {name: {"low": declared[name].low, "high": declared[name].high,
                         "log_scale": bool(declared[name].log_scale),
                         "units": declared[name].units} for name in swept},
        **result.report, "warnings": warnings}
    return result
