"""json_safe: numpy and containers become plain JSON; the two non-finite policies."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from surrogate.jsonable import json_safe


def test_null_policy_gives_strict_json_with_undefined_numbers_as_null():
    value = {"a": np.array([[1.0, np.nan], [np.inf, -np.inf]], dtype=np.float32),
             2: (np.int64(3), np.float64(0.5), np.bool_(True)), "b": [math.nan, "x", None]}
    converted = json_safe(value)
    text = json.dumps(converted, allow_nan=False)                 # strict JSON: no NaN token
    assert json.loads(text) == {"a": [[1.0, None], [None, None]], "2": [3, 0.5, True],
                                "b": [None, "x", None]}
    assert type(converted["2"][0]) is int and type(converted["2"][2]) is bool


def test_text_policy_keeps_non_finite_numbers_bytes_and_other_objects_as_text():
    class Reference:
        def __str__(self) -> str:
            return "<HDF5 object reference>"

    value = {"n": np.float64(np.nan), "i": [math.inf, -math.inf], "b": np.array([b"u", b"\xff"]),
             "r": Reference(), "zero_d": np.array(2.5)}
    converted = json_safe(value, non_finite="text")
    assert converted == {"n": "nan", "i": ["inf", "-inf"], "b": ["u", "\ufffd"],
                         "r": "<HDF5 object reference>", "zero_d": 2.5}
    assert float(converted["n"]) != float(converted["n"])        # "nan" reads back as NaN
    assert [float(v) for v in converted["i"]] == [math.inf, -math.inf]


def test_null_policy_leaves_unknown_objects_for_json_to_refuse():
    marker = object()
    assert json_safe([marker])[0] is marker
    with pytest.raises(TypeError):
        json.dumps(json_safe({"bad": marker}))


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="non_finite"):
        json_safe(1.0, non_finite="zero")
