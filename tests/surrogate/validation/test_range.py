"""The report's ``range`` entry on hand-made spectra: thirds, weights, borders, floors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from surrogate.validation.report import (
    attach_floor,
    end_over_middle,
    range_summary,
    range_third,
)

K = np.arange(1.0, 9.0)              # 8 shells


def _condition(value: float, reference: tuple[float, int], generated: tuple[float, int],
               name: str = "index") -> dict:
    """A condition whose every snapshot has the flat spectrum ``level`` on each side:
    ``(level, snapshots)``, stored as the sum over snapshots."""
    return {"parameters": {name: value},
            "spectra": {"f": {side: (np.full(K.size, level * count), count)
                              for side, (level, count) in (("reference", reference),
                                                           ("generated", generated))}}}


LINEAR = [SimpleNamespace(name="index", log_scale=False)]


def test_unequal_samples_per_condition_are_not_an_error():
    """Two conditions of one third, power 1 and 4, generated exactly right but with 1 and
    7 samples where the reference has 4 and 4: the third reads 0 (pooling the generated
    snapshots instead would read (1 + 28) / 8 / 2.5 - 1 = 0.45)."""
    conditions = [_condition(1.0, (1.0, 4), (1.0, 1)), _condition(1.1, (4.0, 4), (4.0, 7)),
                  _condition(2.0, (2.0, 4), (2.0, 4)), _condition(3.0, (3.0, 4), (3.0, 4))]
    entry = range_summary(conditions, LINEAR, K)["index"]
    low_end = entry["thirds"]["low end"]
    assert low_end["conditions"] == 2 and low_end["values"] == [1.0, 1.1]
    assert low_end["fields"]["f"]["spectrum_rel_error_median"] == pytest.approx(0, abs=1e-12)
    np.testing.assert_allclose(low_end["fields"]["f"]["ratio"], 1.0, rtol=1e-12)


def test_a_wrong_end_and_its_ratio_to_the_middle():
    conditions = [_condition(v, (1.0, 2), (g, 2)) for v, g in
                  ((1.0, 1.1), (2.0, 1.05), (2.5, 1.05), (4.0, 1.5))]
    entry = range_summary(conditions, LINEAR, K)["index"]
    errors = {label: third["fields"]["f"]["spectrum_rel_error_median"]
              for label, third in entry["thirds"].items()}
    assert errors == pytest.approx({"low end": 0.1, "middle": 0.05, "high end": 0.5})
    assert entry["end_over_middle"]["f"] == pytest.approx(10.0)
    assert (entry["low"], entry["high"], entry["log_scale"]) == (1.0, 4.0, False)


def test_log_scaled_parameter_uses_thirds_of_its_log():
    values = np.geomspace(1e-3, 1e-2, 6)          # log positions 0, 0.2, ..., 1
    conditions = [_condition(float(v), (1.0, 1), (1.0, 1), name="nu") for v in values]
    declared = [SimpleNamespace(name="nu", log_scale=True)]
    entry = range_summary(conditions, declared, K)["nu"]
    assert entry["log_scale"] is True
    assert [entry["thirds"][label]["conditions"] for label in entry["thirds"]] == [2, 2, 2]
    # the same values on linear thirds: 5 of 6 below 4e-3
    linear = range_summary(conditions, [SimpleNamespace(name="nu", log_scale=False)], K)
    assert linear["nu"]["thirds"]["low end"]["conditions"] == 4


def test_an_empty_middle_and_a_constant_parameter():
    conditions = [{"parameters": {"index": v, "amplitude": 0.2},
                   "spectra": _condition(v, (1.0, 1), (1.2, 1))["spectra"]}
                  for v in (1.0, 1.1, 1.2, 3.9, 4.0)]
    declared = [*LINEAR, SimpleNamespace(name="amplitude", log_scale=False)]
    result = range_summary(conditions, declared, K)
    assert list(result) == ["index"]                 # a constant parameter has no range
    middle = result["index"]["thirds"]["middle"]
    assert middle["conditions"] == 0 and middle["values"] is None
    assert math.isnan(middle["fields"]["f"]["spectrum_rel_error_median"])
    assert result["index"]["end_over_middle"]["f"] is None


def test_evenly_spaced_values_split_evenly_at_the_borders():
    assert [range_third(v, 1.63, 3.81) for v in np.linspace(1.63, 3.81, 7)] == \
        [0, 0, 1, 1, 2, 2, 2]
    assert [range_third(v, 1.0, 4.0, log_scale=True) for v in np.geomspace(1, 4, 4)] == \
        [0, 1, 2, 2]
    assert [range_third(v, 1.0, 4.0) for v in (0.5, 1.0, 1.99, 2.0, 2.99, 3.0, 4.0, 5.0)] == \
        [0, 0, 0, 1, 1, 2, 2, 2]
    # log scale: the thirds of [1e-3, 1e-2] in ln p meet at 10^-2.667 and 10^-2.333
    assert [range_third(v, 1e-3, 1e-2, log_scale=True) for v in (2.1e-3, 2.2e-3, 4.7e-3)] \
        == [0, 1, 2]
    assert range_third(4.7e-3, 1e-3, 1e-2) == 1        # the same value, linear thirds


def test_end_over_middle_is_undefined_without_a_middle_or_an_end():
    assert end_over_middle({"low end": 0.3, "middle": 0.1, "high end": None}) == \
        pytest.approx(3.0)
    assert end_over_middle({"low end": 0.3, "middle": 0.0, "high end": 0.2}) is None
    assert end_over_middle({"low end": math.nan, "middle": 0.1, "high end": None}) is None


def _report_with_range(conditions: list[dict]) -> dict:
    return {"range": range_summary(conditions, LINEAR, K), "checks": [], "fields": {},
            "conservation": {}, "frechet_physics_distance": 1.0, "passed": True,
            "failures": []}


def test_floor_goes_to_the_same_third_only_when_it_holds_the_same_conditions():
    generated = [_condition(v, (1.0, 2), (g, 2)) for v, g in
                 ((1.0, 1.3), (2.0, 1.0), (2.5, 1.0), (4.0, 2.0))]
    floor = [_condition(v, (1.0, 2), (g, 2)) for v, g in
             ((1.0, 1.01), (2.0, 1.02), (2.5, 1.02), (4.0, 1.03))]
    report = _report_with_range(generated)
    attach_floor(report, {"report": _report_with_range(floor), "source": "file",
                          "path": "floor.h5", "counts": {}})
    thirds = report["range"]["index"]["thirds"]
    assert [thirds[label]["fields"]["f"]["floor"] for label in thirds] == \
        pytest.approx([0.01, 0.02, 0.03])
    assert report["range"]["index"]["end_over_middle_floor"]["f"] == pytest.approx(1.5)
    # a floor whose middle third holds other conditions: no floor for any third
    shifted = _report_with_range([floor[0], floor[1], floor[3]])
    report = _report_with_range(generated)
    attach_floor(report, {"report": shifted, "source": "file", "path": "floor.h5",
                          "counts": {}})
    thirds = report["range"]["index"]["thirds"]
    assert all(thirds[label]["fields"]["f"]["floor"] is None for label in thirds)
    assert report["range"]["index"]["end_over_middle_floor"] == {"f": None}
