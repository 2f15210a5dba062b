"""``python -m benchmarks.lean_generator``: one tiny run of every part and its tables."""

import pytest

from benchmarks import lean_generator


@pytest.mark.slow   # every part at 32^2 and the 128^2 execution options (about 50 s)
def test_tiny_run_measures_every_part_and_states_the_load_it_ran_under():
    result = lean_generator.measure(resolutions=(32,), t_ends=(0.1,), repeats=1,
                                    compile_lean=False, trajectories=1)
    load = result["machine"]["load_average_start"]
    assert load is None or load >= 0
    assert {"speed", "execution_options", "end_to_end"} <= set(result)
    text = lean_generator.markdown(result)
    assert "1-minute load average at the start" in text
    assert "shared the cores)" not in text          # no claim the run did not measure
    for arch in ("default", "lean"):
        assert f"| 32 | {arch} |" in text
