"""Adversarial losses, R1 and the radial spectrum / spectral loss against hand-made truth.

Truth: loss values computed by hand for small logits, the exact input gradient of a
linear discriminator, Parseval's theorem, single Fourier modes, brute-force mode counts
over the full Fourier plane and the numpy estimator of :mod:`surrogate.validation`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from surrogate.losses import (
    condition_order,
    consistency_penalty,
    discriminator_loss,
    generator_loss,
    log_shell_power,
    mode_seeking_loss,
    r1_penalty,
    radial_power_spectrum,
    radial_shell_counts,
    shell_index,
    spectral_bias_loss,
    spectral_loss,
    spectral_scatter_loss,
    template_penalty,
)
from surrogate.models import Discriminator, ModelConfig
from surrogate.validation import power_spectrum

REAL = torch.tensor([2.0, -0.5])
FAKE = torch.tensor([0.5, -3.0])


def _softplus(t: float) -> float:
    return math.log1p(math.exp(t))


def _random_fields(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _periodic_blur(fields: torch.Tensor, passes: int) -> torch.Tensor:
    """``passes`` applications of the periodic 1-2-1 (binomial) filter along both axes."""
    for _ in range(passes):
        for dim in (-2, -1):
            fields = 0.25 * (fields.roll(1, dim) + 2.0 * fields + fields.roll(-1, dim))
    return fields


# ------------------------------------------------------------------------- adversarial
def test_hinge_losses_match_hand_computation():
    # D: mean(relu(1 - [2, -0.5])) + mean(relu(1 + [0.5, -3])) = (0 + 1.5)/2 + (1.5 + 0)/2
    assert discriminator_loss(REAL, FAKE, "hinge").item() == pytest.approx(1.5)
    # G: -mean([0.5, -3]) = 1.25
    assert generator_loss(FAKE, "hinge").item() == pytest.approx(1.25)


def test_nonsaturating_losses_match_hand_computation():
    expected_d = (_softplus(-2.0) + _softplus(0.5)) / 2 + (_softplus(0.5) + _softplus(-3.0)) / 2
    expected_g = (_softplus(-0.5) + _softplus(3.0)) / 2
    assert discriminator_loss(REAL, FAKE, "nonsaturating").item() == pytest.approx(expected_d)
    assert generator_loss(FAKE, "nonsaturating").item() == pytest.approx(expected_g)


def test_nonsaturating_loss_is_finite_for_huge_logits():
    huge = torch.tensor([1e4, -1e4])
    assert torch.isfinite(discriminator_loss(huge, -huge, "nonsaturating"))
    assert torch.isfinite(generator_loss(huge, "nonsaturating"))


def test_losses_are_float32_for_bfloat16_logits():
    loss = discriminator_loss(REAL.bfloat16(), FAKE.bfloat16(), "hinge")
    assert loss.dtype == torch.float32


@pytest.mark.parametrize("call", [lambda: discriminator_loss(REAL, FAKE, "wasserstein"),
                                  lambda: generator_loss(FAKE, "lsgan")])
def test_unknown_loss_kind_is_a_one_line_value_error(call):
    with pytest.raises(ValueError, match="unknown adversarial loss kind") as info:
        call()
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------- R1
def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    weight = torch.nn.Parameter(_random_fields((1, 2, 8, 8), seed=1))
    inputs = _random_fields((5, 2, 8, 8), seed=2).requires_grad_(True)
    logits = (weight * inputs).sum(dim=(1, 2, 3))          # D(x) = sum(w * x)
    penalty = r1_penalty(logits, inputs)
    expected = weight.detach().square().sum()
    torch.testing.assert_close(penalty, expected, rtol=1e-6, atol=0.0)
    penalty.backward()                                     # d|w|^2/dw = 2 w
    torch.testing.assert_close(weight.grad, 2.0 * weight.detach(), rtol=1e-6, atol=0.0)


def test_r1_gradient_reaches_discriminator_parameters():
    torch.manual_seed(0)
    config = ModelConfig.for_resolution(16, 1, 2, 3, width=8, spectral_norm=False)
    discriminator = Discriminator(config)
    real = _random_fields((4, 2, 16, 16)).requires_grad_(True)
    condition = torch.rand(4, 3) * 2 - 1
    penalty = r1_penalty(discriminator(real, condition), real)
    penalty.backward()
    grads = {name: p.grad for name, p in discriminator.named_parameters()}
    assert grads["from_fields.weight"] is not None
    assert grads["from_fields.weight"].abs().sum() > 0
    assert grads["embedding.hidden.weight"].abs().sum() > 0


def test_r1_needs_inputs_that_require_grad():
    inputs = torch.ones(2, 1, 4, 4)
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(inputs.sum(dim=(1, 2, 3)), inputs)


# ------------------------------------------------------------------ radial spectrum
@pytest.mark.parametrize("n", [8, 16, 32])
def test_shell_counts_match_brute_force_over_the_full_plane(n):
    m = np.rint(np.fft.fftfreq(n) * n)
    radius = np.hypot(*np.meshgrid(m, m, indexing="ij"))
    expected = [np.count_nonzero((radius >= i - 0.5) & (radius < i + 0.5))
                for i in range(1, n // 2 + 1)]
    np.testing.assert_array_equal(radial_shell_counts(n).numpy(), expected)


@pytest.mark.parametrize("m", [1, 3, 7, 8])
@pytest.mark.parametrize("axis", ["x", "y"])
def test_single_cosine_mode_puts_all_power_in_its_shell(m, axis):
    n = 16
    coordinate = torch.arange(n, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * m * coordinate / n)
    field = wave[:, None].expand(n, n) if axis == "x" else wave[None, :].expand(n, n)
    power = radial_power_spectrum(field.float().reshape(1, 1, n, n))[0, 0]
    counts = radial_shell_counts(n)
    total = 1.0 if m == n // 2 else 0.5                    # mean(cos^2), Nyquist: cos^2 = 1
    assert power[m - 1].item() == pytest.approx(total / counts[m - 1].item(), rel=1e-5)
    others = torch.cat([power[: m - 1], power[m:]])
    assert others.abs().max().item() < 1e-9


def test_shell_sums_obey_parseval_for_a_field_without_mean_or_corner_modes():
    n = 32
    spectrum = torch.fft.rfft2(_random_fields((3, 2, n, n), seed=3).double())
    m_x = torch.fft.fftfreq(n, d=1.0 / n).reshape(n, 1)
    m_y = torch.arange(n // 2 + 1).reshape(1, -1)
    radius = torch.sqrt(m_x**2 + m_y**2)
    keep = (radius >= 0.5) & (radius < n // 2 + 0.5)       # drop m = 0 and the corners
    fields = torch.fft.irfft2(spectrum * keep, s=(n, n)).float()
    power = radial_power_spectrum(fields)                  # (3, 2, n/2)
    shell_sum = (power * radial_shell_counts(n)).sum(dim=-1)
    torch.testing.assert_close(shell_sum, fields.square().mean(dim=(-2, -1)), rtol=1e-5,
                               atol=0.0)


def test_white_noise_has_flat_spectrum_at_one_over_n_squared():
    n = 64
    power = radial_power_spectrum(_random_fields((64, 1, n, n), seed=4))
    mean_level = (power.mean(dim=(0, 1)) * n**2)           # per shell, 64 samples
    # Shell i averages ~2 pi i * 64 exponential variables: relative error << 10 %.
    assert mean_level[2:].sub(1.0).abs().max().item() < 0.1
    assert mean_level.mean().item() == pytest.approx(1.0, abs=0.02)


def test_radial_spectrum_is_validation_spectrum_over_box_area():
    n, box = 32, 2.5
    fields = _random_fields((2, 3, n, n), seed=5)
    _, reference = power_spectrum(fields.double().numpy(), box)
    np.testing.assert_allclose(radial_power_spectrum(fields).numpy() * box**2, reference,
                               rtol=2e-5)


def test_radial_spectrum_is_float32_under_bfloat16_autocast():
    fields = _random_fields((2, 1, 16, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        power = radial_power_spectrum(fields.bfloat16())
    assert power.dtype == torch.float32
    assert power.shape == (2, 1, 8)


# ------------------------------------------------------------------------ spectral loss
def test_spectral_loss_is_zero_for_identical_batches():
    fields = _random_fields((4, 2, 32, 32))
    assert spectral_loss(fields, fields.clone()).item() == 0.0


def test_spectral_loss_grows_with_blur():
    real = _random_fields((4, 2, 32, 32), seed=6)
    mild = spectral_loss(_periodic_blur(real, 1), real).item()
    strong = spectral_loss(_periodic_blur(real, 3), real).item()
    assert 0.0 < mild < strong


def test_spectral_loss_is_invariant_under_periodic_shifts():
    real = _random_fields((4, 2, 32, 32), seed=7)
    fake = _periodic_blur(_random_fields((4, 2, 32, 32), seed=8), 1)
    loss = spectral_loss(fake, real)
    shifted = spectral_loss(fake.roll((5, -11), dims=(-2, -1)), real.roll(3, dims=-1))
    torch.testing.assert_close(shifted, loss, rtol=1e-5, atol=1e-7)


def test_spectral_loss_gradient_is_finite_and_nonzero():
    real = _random_fields((2, 1, 16, 16), seed=9)
    fake = _periodic_blur(_random_fields((2, 1, 16, 16), seed=10), 1).requires_grad_(True)
    spectral_loss(fake, real).backward()
    assert torch.isfinite(fake.grad).all()
    assert fake.grad.abs().sum() > 0


def test_condition_order_is_numpy_lexsort_with_the_first_entry_first():
    generator = torch.Generator().manual_seed(3)
    condition = torch.randint(0, 3, (40, 3), generator=generator).float()
    expected = np.lexsort(condition.numpy().T[::-1])       # lexsort's last key is primary
    assert condition_order(condition).tolist() == expected.tolist()


def test_conditional_spectral_loss_sees_a_bias_that_cancels_in_the_pooled_batch():
    # a smooth field at condition -1 and a rough one at +1; the generator swaps them:
    # pooled over the batch the spectra agree exactly, per condition they do not
    smooth = _periodic_blur(_random_fields((4, 1, 32, 32), seed=11), 3)
    rough = _random_fields((4, 1, 32, 32), seed=12)
    condition = torch.tensor([[-1.0, 0.0]] * 4 + [[1.0, 0.0]] * 4)
    real = torch.cat([smooth, rough])
    fake = torch.cat([rough, smooth])
    pooled = spectral_loss(fake, real)
    assert pooled.item() == pytest.approx(0.0, abs=1e-10)
    conditional = spectral_loss(fake, real, groups=2, fake_condition=condition,
                                real_condition=condition)
    assert conditional.item() > 1.0
    # the batch order does not matter, only the conditions
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    shuffled = spectral_loss(fake[order], real, groups=2, fake_condition=condition[order],
                             real_condition=condition)
    torch.testing.assert_close(shuffled, conditional)
    # and the right fields at the right conditions score zero
    assert spectral_loss(real.clone(), real, groups=2, fake_condition=condition,
                         real_condition=condition).item() == 0.0


def test_conditional_spectral_loss_rejects_bad_groups():
    fields = torch.zeros(4, 1, 16, 16)
    with pytest.raises(ValueError, match=r"groups must be in 1 \.\. 4"):
        spectral_loss(fields, fields, groups=5, fake_condition=torch.zeros(4, 2),
                      real_condition=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="needs both conditions"):
        spectral_loss(fields, fields, groups=2)


def test_spectral_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must agree"):
        spectral_loss(torch.zeros(2, 1, 16, 16), torch.zeros(2, 2, 16, 16))


def test_mode_seeking_loss_is_the_latent_to_field_distance_ratio():
    torch.manual_seed(0)
    fake_a = torch.randn(4, 2, 8, 8)
    noise_a, noise_b = torch.zeros(4, 16), torch.full((4, 16), 2.0)
    # fields that differ by exactly 0.5 everywhere: ratio |2| / (|0.5| + eps), eps = 1e-5
    value = mode_seeking_loss(fake_a, fake_a + 0.5, noise_a, noise_b)
    assert math.isclose(float(value), 2.0 / (0.5 + 1e-5), rel_tol=1e-6)


def test_mode_seeking_loss_punishes_a_generator_that_ignores_its_latent():
    noise_a, noise_b = torch.randn(4, 16), torch.randn(4, 16)
    field = torch.randn(4, 1, 8, 8)
    collapsed = mode_seeking_loss(field, field.clone(), noise_a, noise_b)
    diverse = mode_seeking_loss(field, torch.randn(4, 1, 8, 8), noise_a, noise_b)
    assert float(collapsed) > 1e4 * float(diverse)
    # its gradient pushes the two fields apart
    moving = field.clone() + 0.01 * torch.randn_like(field)
    moving.requires_grad_(True)
    mode_seeking_loss(moving, field, noise_a, noise_b).backward()
    step = moving.detach() - 1e-3 * moving.grad
    assert (step - field).abs().mean() > (moving.detach() - field).abs().mean()


def test_mode_seeking_loss_rejects_unpaired_shapes():
    with pytest.raises(ValueError, match="pairs of equal shapes"):
        mode_seeking_loss(torch.zeros(4, 1, 8, 8), torch.zeros(3, 1, 8, 8),
                          torch.zeros(4, 2), torch.zeros(4, 2))


# --------------------------------------------------------- consistency regularisation
def _shift(fields, cells):
    return torch.roll(fields, shifts=cells, dims=-1)


def test_consistency_penalty_vanishes_with_its_gradient_for_an_invariant_discriminator():
    # D(x) = w . mean over the grid of tanh(a x): invariant under every periodic shift
    weights = torch.tensor([0.7, -1.3], requires_grad=True)
    gain = torch.tensor(1.5, requires_grad=True)

    def invariant(x):
        return (torch.tanh(gain * x).mean(dim=(-2, -1)) * weights).sum(dim=1)

    x = torch.randn(6, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    penalty = consistency_penalty(invariant(x), invariant(_shift(x, 5)))
    penalty.backward()
    assert penalty.item() == pytest.approx(0.0, abs=1e-12)
    assert weights.grad.abs().max() < 1e-10 and gain.grad.abs() < 1e-10


def test_consistency_penalty_gradient_is_the_analytic_one_for_a_position_dependent_d():
    # D(x) = sum_p v_p x_p (a linear D that sees positions): D(x) - D(T x) = v . (x - T x),
    # penalty = mean_b (v . d_b)^2, gradient 2 mean_b (v . d_b) d_b with d_b = x_b - T x_b
    v = torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v.requires_grad_(True)
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)

    def linear(fields):
        return (fields * v).sum(dim=(1, 2, 3))

    moved = _shift(x, 3)
    penalty = consistency_penalty(linear(x), linear(moved))
    penalty.backward()
    difference = (x - moved)[:, 0]
    projection = (difference * v.detach()[0]).sum(dim=(-2, -1))
    assert penalty.item() == pytest.approx(float(projection.square().mean()), rel=1e-6)
    expected = 2 * (projection[:, None, None] * difference).mean(dim=0)
    # the penalty is computed in float32 by design: agreement to float32 round-off
    torch.testing.assert_close(v.grad[0].double(), expected, rtol=1e-5,
                               atol=1e-6 * float(expected.abs().max()))
    assert penalty.item() > 0
    with pytest.raises(ValueError, match="differ in shape"):
        consistency_penalty(linear(x), linear(moved)[:2])


# ------------------------------------------------------------------ template penalty
def _pattern(n: int = 32, seed: int = 0) -> torch.Tensor:
    """A smooth random periodic field (1, 1, n, n), unit rms."""
    generator = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(n) * n
    amplitude = 1.0 / (1.0 + k[:, None] ** 2 + k[None, :] ** 2)
    spectrum = amplitude * torch.randn(n, n, generator=generator, dtype=torch.complex64)
    field = torch.fft.ifft2(spectrum).real
    return (field / field.square().mean().sqrt()).view(1, 1, n, n)


def test_template_penalty_reads_the_shared_fraction_of_a_fixed_pattern_plus_noise():
    # x_i = a m + e_i with |m| = |e| per pixel (unit rms): E<x1,x2> / |x|^2 = a^2 / (a^2 + 1)
    torch.manual_seed(0)
    pattern = _pattern()
    for scale in (0.0, 0.5, 1.0, 2.0):
        first = scale * pattern + torch.randn(4000, 1, 32, 32)
        second = scale * pattern + torch.randn(4000, 1, 32, 32)
        expected = scale ** 2 / (scale ** 2 + 1)
        assert float(template_penalty(first, second, ())) == pytest.approx(expected, abs=0.01)


def test_template_penalty_is_zero_for_a_shift_invariant_ensemble_and_one_for_a_template():
    # the same field at random periodic shifts (a shift-invariant ensemble: every sample
    # looks like the template) against the template itself
    pattern = _pattern(seed=1)
    generator = torch.Generator().manual_seed(2)
    shifts = torch.randint(32, (2, 2000, 2), generator=generator)
    first, second = (torch.cat([torch.roll(pattern, (int(a), int(b)), dims=(-2, -1))
                                for a, b in shifts[i]]) for i in range(2))
    assert abs(float(template_penalty(first, second, (-2, -1)))) < 0.01
    same = pattern.expand(8, 1, 32, 32)
    assert float(template_penalty(same, same, (-2, -1))) == pytest.approx(1.0, abs=1e-5)


def test_template_penalty_centres_only_along_the_declared_shift_axes():
    # a profile m(y) shared by every sample (the response to a forcing that depends on y,
    # as in Navier–Stokes, shift-invariant along x only): centred along x it is gone
    torch.manual_seed(3)
    profile = torch.sin(2 * math.pi * 4 * torch.arange(32) / 32).view(1, 1, 1, 32)
    first = 3 * profile + torch.randn(2000, 2, 32, 32)
    second = 3 * profile + torch.randn(2000, 2, 32, 32)
    assert abs(float(template_penalty(first, second, (-2,)))) < 0.01
    assert float(template_penalty(first, second, ())) > 0.7          # 4.5 / 5.5 uncentred
    # a constant offset per sample is removed by centring on both axes
    offset = torch.randn(2000, 2, 1, 1) * 10
    noisy = torch.randn(2000, 2, 32, 32)
    assert abs(float(template_penalty(noisy + offset, torch.randn(2000, 2, 32, 32) + offset,
                                      (-2, -1)))) < 0.01


def test_template_penalty_gradient_removes_the_shared_pattern():
    # fields m + e_i with a learnable m: gradient descent on the penalty drives the part of
    # m that varies in space to 0 (its mean, which the centring removes, stays: the
    # declared shifts say nothing about it)
    torch.manual_seed(4)
    shared = (2 * _pattern(seed=5) + 1.5).requires_grad_(True)
    optimizer = torch.optim.SGD([shared], lr=50.0)

    def varying() -> float:
        field = shared.detach()
        return float((field - field.mean()).square().mean())

    start, mean = varying(), float(shared.detach().mean())
    for _ in range(200):
        loss = template_penalty(shared + torch.randn(64, 1, 32, 32),
                                shared + torch.randn(64, 1, 32, 32), (-2, -1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert varying() < 0.05 * start
    assert float(shared.detach().mean()) == pytest.approx(mean, abs=1e-4)


def test_template_penalty_rejects_unpaired_shapes_and_other_axes():
    with pytest.raises(ValueError, match="equal"):
        template_penalty(torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8), ())
    with pytest.raises(ValueError, match="centre_axes"):
        template_penalty(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), (1,))


# ------------------------------------------------------------- spectral scatter
def _gaussian_fields(generator: torch.Generator, count: int, n: int = 32,
                     slope: float = 3.0) -> torch.Tensor:
    """(count, 1, n, n) Gaussian random fields with P(k) ~ k^-slope."""
    m = torch.fft.fftfreq(n, d=1.0 / n)
    k = torch.sqrt(m[:, None] ** 2 + m[None, :] ** 2).clamp_min(1.0)
    white = torch.randn(count, 1, n, n, generator=generator)
    return torch.fft.ifft2(k ** (-slope / 2) * torch.fft.fft2(white)).real


def _gaussian_log_power_variance(n: int = 32) -> torch.Tensor:
    """psi'(n_k / 2): the variance of a Gaussian field's log shell power, (1, 1, n // 2)."""
    counts = radial_shell_counts(n).double()
    return torch.special.polygamma(1, counts / 2).float().reshape(1, 1, -1)


def test_spectral_scatter_loss_sits_at_its_minimum_for_gaussian_fields_on_average():
    """With the true scatter as target, log mean_i r_i averages psi(n/2) - log(n/2): the
    loss's offset removes the small-sample bias, so the mean deviation is ~0."""
    generator = torch.Generator().manual_seed(0)
    pairs, n = 8, 32
    target = _gaussian_log_power_variance(n).expand(pairs, 1, -1)
    offset = torch.special.digamma(torch.tensor(pairs / 2)) - math.log(pairs / 2)
    deviations = []
    for _ in range(300):
        a, b = (_gaussian_fields(generator, pairs, n) for _ in range(2))
        difference = log_shell_power(a) - log_shell_power(b)
        ratio = (difference.square() / (2 * target)).mean(dim=0)
        deviations.append(torch.log(ratio) - offset)
    # shells 2 .. n/2 - 1: >= 12 modes, no self-conjugate ones; shell 1 (8 modes) has a
    # skewed log power, its mean deviation is ~0.15 (documented in the loss)
    deviation = torch.stack(deviations)[:, 0, 1:-1]
    # per shell: 300 draws of a deviation of std ~0.53 (sqrt psi'(4)) -> standard error
    # ~0.03, over the 14 shells ~0.008; 0.04 (5 standard errors) is a minimum within 2 %
    # of the true std
    assert float(deviation.mean().abs()) < 0.04
    assert float(deviation.mean(dim=0).abs().max()) < 0.12
    loss = spectral_scatter_loss(a, b, target)
    assert 0.0 < float(loss) < 1.0


def test_spectral_scatter_loss_removes_a_random_amplitude_and_restores_a_pinned_scatter():
    """Gradient descent on a learnable per-sample log-amplitude spread s (fields times
    exp(s xi)) drives s to ~0; on a learnable mix between each sample and a copy pinned to
    the mean spectrum it restores the free samples."""
    generator = torch.Generator().manual_seed(1)
    pairs, n = 16, 32
    target = _gaussian_log_power_variance(n).expand(pairs, 1, -1)
    spread = torch.tensor(0.5, requires_grad=True)
    optimiser = torch.optim.Adam([spread], lr=0.02)
    for _ in range(150):
        a, b = (_gaussian_fields(generator, pairs, n) for _ in range(2))
        xi_a, xi_b = (torch.randn(pairs, 1, 1, 1, generator=generator) for _ in range(2))
        loss = spectral_scatter_loss(a * torch.exp(spread * xi_a),
                                     b * torch.exp(spread * xi_b), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert abs(float(spread.detach())) < 0.1
    # a sample pinned to the ensemble's shell powers: every |F(m)| rescaled per shell
    shells = shell_index(n)
    mean_power = float(n) ** 2 * radial_power_spectrum(_gaussian_fields(generator, 4096, n)
                                                       ).mean(dim=0)

    def pinned(fields: torch.Tensor) -> torch.Tensor:
        power = float(n) ** 2 * radial_power_spectrum(fields)           # (B, 1, n // 2)
        gain = torch.sqrt(mean_power / power)
        corners = int(shells.max()) - n // 2                           # shells > n // 2
        table = torch.cat([torch.ones_like(gain[..., :1]), gain,
                           torch.ones_like(gain[..., :1]).expand(-1, -1, corners)], dim=-1)
        return torch.fft.irfft2(torch.fft.rfft2(fields) * table[..., shells], s=(n, n))

    mix = torch.tensor(0.9, requires_grad=True)
    optimiser = torch.optim.Adam([mix], lr=0.02)
    for _ in range(150):
        a, b = (_gaussian_fields(generator, pairs, n) for _ in range(2))
        weight = mix.clamp(0.0, 1.0)
        loss = spectral_scatter_loss((1 - weight) * a + weight * pinned(a),
                                     (1 - weight) * b + weight * pinned(b), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(mix.detach()) < 0.35


def test_spectral_scatter_loss_skips_unscattered_shells():
    a = torch.randn(4, 2, 16, 16)
    # a target of 0 everywhere (nothing scatters): no shell is compared
    assert float(spectral_scatter_loss(a, torch.randn(4, 2, 16, 16), torch.zeros(4, 2, 8))) == 0


# ------------------------------------------------------------- spectral bias
def _mean_log_power(slope: float, n: int = 32, count: int = 4096, seed: int = 7
                    ) -> torch.Tensor:
    """E[log_shell_power] of Gaussian fields with P ~ k^-slope from a large ensemble,
    (1, 1, n // 2)."""
    fields = _gaussian_fields(torch.Generator().manual_seed(seed), count, n, slope)
    return log_shell_power(fields).mean(dim=0, keepdim=True)


def test_spectral_bias_loss_averages_the_squared_conditional_bias_whatever_the_scatter():
    """E[(y_a - m)(y_b - m)] = (E y - m)^2: ~0 for samples of the target's law, also
    when each sample carries a random amplitude (more scatter, same mean log power);
    the squared shift of the mean log power for a wrong slope."""
    generator = torch.Generator().manual_seed(3)
    pairs, n = 8, 32
    target = _mean_log_power(3.0).expand(pairs, 1, -1)
    wrong = _mean_log_power(3.4, seed=8)
    expected = float((wrong - target[:1]).square().mean())          # ~0.1
    right, scattered, shifted = [], [], []
    for _ in range(300):
        a, b = (_gaussian_fields(generator, pairs, n) for _ in range(2))
        right.append(float(spectral_bias_loss(a, b, target)))
        xi_a, xi_b = (torch.randn(pairs, 1, 1, 1, generator=generator) for _ in range(2))
        scattered.append(float(spectral_bias_loss(a * torch.exp(0.5 * xi_a),
                                                  b * torch.exp(0.5 * xi_b), target)))
        c, d = (_gaussian_fields(generator, pairs, n, 3.4) for _ in range(2))
        shifted.append(float(spectral_bias_loss(c, d, target)))
    # one batch: std ~ psi'(n_k/2) / sqrt(pairs * shells) ~ 0.02; 300 batches -> ~0.0012
    assert abs(np.mean(right)) < 0.005
    assert abs(np.mean(scattered)) < 0.01 < expected / 5
    assert np.mean(shifted) == pytest.approx(expected, rel=0.1)
    # a squared deviation of one sample would have rewarded pinning: it reads Var y
    one_sample = float((log_shell_power(a) - target).square().mean())
    assert one_sample > 10 * abs(np.mean(right))


def test_spectral_bias_loss_learns_a_slope_that_follows_the_condition():
    """A generator whose slope is ``3 + alpha (c - 3)`` at conditions c = 2.5 and 3.5
    starts right on average over c (alpha = 0.2) and wrong at each end; descent on the
    bias loss brings alpha to 1."""
    generator = torch.Generator().manual_seed(4)
    pairs, n = 8, 32
    conditions = torch.tensor([2.5, 3.5]).repeat(pairs // 2)
    means = {c: _mean_log_power(c, seed=int(10 * c)) for c in (2.5, 3.5)}
    target = torch.cat([means[float(c)] for c in conditions])
    alpha = torch.tensor(0.2, requires_grad=True)
    optimiser = torch.optim.Adam([alpha], lr=0.03)
    m = torch.fft.fftfreq(n, d=1.0 / n)
    k = torch.sqrt(m[:, None] ** 2 + m[None, :] ** 2).clamp_min(1.0)

    def fields():
        slope = (3.0 + alpha * (conditions - 3.0)).reshape(-1, 1, 1, 1)
        white = torch.randn(pairs, 1, n, n, generator=generator)
        return torch.fft.ifft2(k ** (-slope / 2) * torch.fft.fft2(white)).real

    for _ in range(150):
        loss = spectral_bias_loss(fields(), fields(), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(alpha.detach()) == pytest.approx(1.0, abs=0.1)


def _phase_only(fields: torch.Tensor) -> torch.Tensor:
    """The fields with every Fourier amplitude set to its white-noise mean ``n`` (unit
    variance white noise has ``E|F|^2 = n^2``) and the phases kept: the mean shell power
    of white noise in every sample, no scatter."""
    transform = torch.fft.fft2(fields)
    return torch.fft.ifft2(fields.shape[-1] * transform / transform.abs()).real


def test_spectral_bias_loss_in_power_space_matches_the_mean_power_not_the_mean_log():
    """White noise (``P`` flat) has shell power ``M Gamma(nu) / nu`` per sample, ``nu =
    n_k / 2`` independent modes: ``E[y] = log M + psi(nu) - log nu``. Samples whose every
    mode sits at its mean power (random phases) have ``y = log M`` exactly: the
    power-space loss reads ~0 for them, the log-space loss the squared Jensen gap
    ``(log nu - psi(nu))^2`` (0.017 at shell 1), what a generator whose lowest shells
    scatter too little pays until it lowers its power. Fields of the target's law read ~0
    in both spaces; fields scaled by 0.9 read ``(0.81 - 1)^2`` in power space."""
    generator = torch.Generator().manual_seed(5)
    pairs, n, shells = 32, 32, slice(0, 15)   # the last shell holds self-conjugate modes
    ensemble = log_shell_power(_gaussian_fields(generator, 8192, n, slope=0.0))
    targets = {"log": ensemble.mean(dim=0, keepdim=True).expand(pairs, 1, -1),
               "power": (torch.logsumexp(ensemble, dim=0, keepdim=True)
                         - math.log(ensemble.shape[0])).expand(pairs, 1, -1)}
    nu = radial_shell_counts(n).double() / 2
    gap = (torch.log(nu) - torch.special.digamma(nu))[shells]
    right, scaled = [], []
    for _ in range(50):
        a, b = (_gaussian_fields(generator, pairs, n, slope=0.0) for _ in range(2))
        right.append(float(spectral_bias_loss(a, b, targets["power"], space="power")))
        scaled.append(float(spectral_bias_loss(0.9 * a, 0.9 * b, targets["power"],
                                               space="power")))
    # one batch: std ~0.005 (32 pairs x 16 shells of products of std ~0.3); 50 -> 0.0007
    assert abs(np.mean(right)) < 0.004
    assert np.mean(scaled) == pytest.approx((0.81 - 1.0) ** 2, rel=0.1)
    # per shell, the pinned fields' deviation from each target: the Jensen gap from the
    # mean log, ~0 from the log mean power, each within the noise of the ensemble's
    # estimate of the target (standard error sqrt(psi'(nu) / 8192): 0.006 at shell 1)
    pinned_a, pinned_b = _phase_only(a), _phase_only(b)
    pinned = log_shell_power(pinned_a)
    standard_error = torch.sqrt(torch.special.polygamma(1, nu) / ensemble.shape[0])[shells]
    from_log = (pinned - targets["log"]).mean(dim=(0, 1))[shells].double()
    from_power = (pinned - targets["power"]).mean(dim=(0, 1))[shells].double()
    assert float(((from_log - gap).abs() / standard_error).max()) < 4
    assert float((from_power.abs() / standard_error).max()) < 4
    # the losses on them: no bias in power space, the mean squared gap in log space
    pinned_log = float(spectral_bias_loss(pinned_a, pinned_b, targets["log"], space="log"))
    pinned_power = float(spectral_bias_loss(pinned_a, pinned_b, targets["power"],
                                            space="power"))
    assert pinned_log == pytest.approx(float(gap.square().sum()) / (n // 2), rel=0.15)
    assert abs(pinned_power) < 1e-3 < pinned_log / 2
    with pytest.raises(ValueError, match="unknown spectral bias space"):
        spectral_bias_loss(a, b, targets["log"], space="linear")


def test_power_space_deviation_is_linear_in_log_power_above_four_times_the_target():
    """A target that claims the upper shells are empty (a steep spectrum's tail at the
    eps floor): white noise there holds ~1e6 times the target's power. expm1 would give a
    deviation of ~1e6 and a loss of ~1e12; continued linearly in log P above P/M = 4
    (slope 4, as expm1 has there) it is 3 + 4 (log 1e6 - log 4) ~ 53, and descent on
    the loss still lowers that power."""
    generator = torch.Generator().manual_seed(9)
    pairs, n = 8, 32
    white = log_shell_power(_gaussian_fields(generator, 4096, n, slope=0.0))
    target = (torch.logsumexp(white, dim=0, keepdim=True) - math.log(4096)).expand(pairs, 1, -1)
    empty = target.clone()
    empty[..., 8:] -= math.log(1e6)
    scale = torch.tensor(1.0, requires_grad=True)
    a, b = (_gaussian_fields(generator, pairs, n, slope=0.0) for _ in range(2))
    loss = spectral_bias_loss(scale * a, scale * b, empty, space="power")
    expected_tail = 3.0 + 4.0 * (math.log(1e6) - math.log(4.0))
    assert float(loss.detach()) == pytest.approx(expected_tail ** 2 * 8 / 16, rel=0.05)
    loss.backward()
    assert float(scale.grad) > 0                        # lowering the power lowers the loss
    # below 4x the deviation is the exact relative one: twice the power reads (2 - 1)^2
    doubled = float(spectral_bias_loss(math.sqrt(2) * a, math.sqrt(2) * b, target,
                                       space="power"))
    assert doubled == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize("loss, target_name", [(spectral_bias_loss, "target_mean"),
                                               (spectral_scatter_loss, "target_variance")])
def test_paired_shell_losses_reject_bad_shapes(loss, target_name):
    a = torch.randn(4, 2, 16, 16)
    with pytest.raises(ValueError, match="pairs of equal"):
        loss(a, a[:3], torch.ones(4, 2, 8))
    with pytest.raises(ValueError, match=f"{target_name} must have shape"):
        loss(a, a, torch.ones(4, 2, 7))
