"""The ensemble term's strength set by the measured spread
(:mod:`surrogate.train.spread_control`)."""

import math

import pytest
import torch

from surrogate.train.spread_control import SpreadController, pair_mean_square_difference


def test_the_pair_difference_of_independent_samples_is_twice_their_variance():
    """E|a - b|^2 = 2 sigma^2 for independent samples, so the square root of the ratio
    of two such means is the ratio of the standard deviations (the report's spread
    ratio)."""
    generator = torch.Generator().manual_seed(0)
    narrow = 0.7 * torch.randn(64, 4, 32, 32, generator=generator)
    wide = 1.3 * torch.randn(64, 4, 32, 32, generator=generator)
    assert float(pair_mean_square_difference(wide)) == pytest.approx(2 * 1.3 ** 2, rel=0.01)
    ratio = math.sqrt(pair_mean_square_difference(narrow) / pair_mean_square_difference(wide))
    assert ratio == pytest.approx(0.7 / 1.3, rel=0.01)
    same = torch.cat([wide[:, :2], wide[:, :2]], dim=1)      # two identical halves
    assert float(pair_mean_square_difference(same)) == 0.0


def test_the_strength_moves_one_step_per_interval_towards_the_target():
    control = SpreadController(0.9, steps=1000, interval=4, ramp=0.1)   # 0 -> 1 in 100
    assert control.change == pytest.approx(0.04)
    for _ in range(3):
        control.observe(0.25, 1.0)                      # r = 0.5 < 0.9
        assert not control.adjust() and control.strength == 0.0
    control.observe(0.25, 1.0)
    assert control.adjust()
    assert control.ratio == pytest.approx(0.5) and control.strength == pytest.approx(0.04)
    for _ in range(100):                                # clipped at 1
        control.observe(0.25, 1.0)
        control.adjust()
    assert control.strength == 1.0
    for _ in range(4):                                  # r = sqrt(4 / 2) > 0.9: down
        control.observe(1.0, 0.5)
    control.adjust()
    assert control.ratio == pytest.approx(math.sqrt(2)) and control.strength == pytest.approx(0.96)
    for _ in range(4 * 100):                            # clipped at 0
        control.observe(1.0, 0.5)
        control.adjust()
    assert control.strength == 0.0


def test_the_ratio_is_the_ratio_of_the_interval_sums_and_the_state_round_trips():
    control = SpreadController(0.9, steps=40, interval=2, ramp=0.5)
    assert control.change == pytest.approx(0.1)
    control.observe(1.0, 1.0)
    control.observe(0.0, 3.0)                           # sums 1 and 4: r = 0.5
    control.adjust()
    assert control.ratio == pytest.approx(0.5)
    control.observe(0.3, 0.4)                           # half an interval
    copy = SpreadController(0.9, steps=40, interval=2, ramp=0.5)
    copy.load_state_dict(control.state_dict())
    for each in (control, copy):
        each.observe(0.1, 0.2)
        each.adjust()
    assert copy.state_dict() == control.state_dict()
    assert control.ratio == pytest.approx(math.sqrt(0.4 / 0.6))


@pytest.mark.parametrize("target", [0.0, -1.0, math.nan])
def test_a_target_must_be_positive(target):
    with pytest.raises(ValueError, match="spread target"):
        SpreadController(target, steps=10)


def test_aligned_pairs_read_one_pattern_at_two_places_as_no_difference():
    """min_s |a - T_s b|^2 by brute force over every shift equals the FFT form; a pair
    that is one field rolled reads 0 aligned along the rolled axes only."""
    generator = torch.Generator().manual_seed(1)
    first = torch.randn(3, 2, 8, 8, generator=generator, dtype=torch.float64)
    second = torch.randn(3, 2, 8, 8, generator=generator, dtype=torch.float64)
    brute = torch.stack([torch.stack([(first - torch.roll(second, (sx, sy), (-2, -1)))
                                      .square().mean(dim=(1, 2, 3))
                                      for sy in range(8)]) for sx in range(8)])  # (8, 8, 3)
    together = torch.cat([first, second], dim=1)
    for shift_x, shift_y, minimum in ((True, True, brute.amin(dim=(0, 1))),
                                      (True, False, brute[:, 0].amin(dim=0)),
                                      (False, True, brute[0].amin(dim=0)),
                                      (False, False, brute[0, 0])):
        assert float(pair_mean_square_difference(together, shift_x, shift_y)) == \
            pytest.approx(float(minimum.mean()), rel=1e-5)
    rolled = torch.cat([first, torch.roll(first, (3, 5), (-2, -1))], dim=1)
    assert float(pair_mean_square_difference(rolled, True, True)) == pytest.approx(0, abs=1e-5)
    assert float(pair_mean_square_difference(rolled, True, False)) > 0.5
    assert float(pair_mean_square_difference(rolled)) > 0.5
