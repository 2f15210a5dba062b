"""Checkpoints: atomic, weights_only, exact random-state round trips, crafted pickles refused."""

from __future__ import annotations

import math
import os
import pickle

import pytest
import torch

from surrogate.checkpoint import (
    CheckpointError,
    average_generator_states,
    capture_rng_state,
    load_checkpoint,
    read_run_config,
    restore_rng_state,
    save_checkpoint,
    write_run_config,
)


def test_round_trip_of_state_dicts_and_plain_values(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(),
                                               "optimizer": optimizer.state_dict(),
                                               "step": 7, "score": 0.25, "note": "x"})
    state = load_checkpoint(path)
    assert state["step"] == 7 and state["note"] == "x"
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(state["model"])
    for a, b in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(a, b)
    again = torch.optim.Adam(restored.parameters(), lr=1e-3)
    again.load_state_dict(state["optimizer"])
    assert again.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]          # no temp files left


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_a_crafted_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"format": 1, "payload": _Payload()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)


def test_missing_foreign_and_truncated_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint of this package"):
        load_checkpoint(foreign)
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.ones(1000)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)


def test_failed_write_keeps_the_old_file(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1})

    class Unsaveable:
        pass
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises
        save_checkpoint(path, {"step": 2, "bad": Unsaveable()})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_rng_states_round_trip_exactly_through_a_weights_only_file(tmp_path):
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state(generator)})
    first = (torch.rand(3), torch.rand(3, generator=generator))
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], generator)
    second = (torch.rand(3), torch.rand(3, generator=generator))
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    with pytest.raises(CheckpointError, match="generator states"):
        restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])


def test_run_config_round_trip_and_errors(tmp_path):
    write_run_config(tmp_path, {"system": "navier_stokes2d", "fields": ["a", "b"]})
    assert read_run_config(tmp_path)["fields"] == ["a", "b"]
    with pytest.raises(CheckpointError, match="not a training run directory"):
        read_run_config(tmp_path / "nothing")
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_run_config(tmp_path)
    with pytest.raises(ValueError):
        write_run_config(tmp_path, {"x": float("nan")})


def test_average_of_generator_states():
    """Floating weights: the mean (by hand, in float64); integer buffers and the other
    entries: the last state's; the score is NaN; generators that differ are refused."""
    first = {"generator_ema": {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)},
             "step": 2, "score": 0.5, "model": {"width": 8}}
    second = {"generator_ema": {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)},
              "step": 4, "score": 0.25, "model": {"width": 8}}
    averaged = average_generator_states([first, second])
    assert torch.equal(averaged["generator_ema"]["w"], torch.tensor([2.0, 4.0]))
    assert averaged["generator_ema"]["w"].dtype == torch.float32
    assert torch.equal(averaged["generator_ema"]["n"], torch.tensor(7))
    assert averaged["step"] == 4 and averaged["model"] == {"width": 8}
    assert math.isnan(averaged["score"]) and averaged["averaged_steps"] == [2, 4]
    assert torch.equal(first["generator_ema"]["w"], torch.tensor([1.0, 2.0]))   # untouched
    other = {"generator_ema": {"w": torch.zeros(3), "n": torch.tensor(1)}}
    with pytest.raises(CheckpointError, match="different generators"):
        average_generator_states([first, other])
    extra = {"generator_ema": {**second["generator_ema"], "b": torch.zeros(1)}}
    with pytest.raises(CheckpointError, match="different generators"):
        average_generator_states([first, extra])
    with pytest.raises(CheckpointError, match="no checkpoints"):
        average_generator_states([])
