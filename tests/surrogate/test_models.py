"""Generator and discriminator: shapes, conditioning, gradients, symmetries, precision.

Small widths keep every test fast on a CPU; the sizing tests construct the default
models at 128 and 256 without running big batches.
"""

from __future__ import annotations

import json

import pytest
import torch

from surrogate.losses import discriminator_loss, generator_loss, r1_penalty, shell_index
from surrogate.models import (
    Discriminator,
    EnsembleDiscriminator,
    Generator,
    MinibatchStdDev,
    ModelConfig,
    pair_correlation,
    parameter_count,
    periodic_upsample2x,
)

CONDITION_DIM = 3


def _config(resolution: int = 16, raw_channels: int = 1, in_channels: int = 2,
            **options) -> ModelConfig:
    options.setdefault("width", 8)
    return ModelConfig.for_resolution(resolution, raw_channels, in_channels, CONDITION_DIM,
                                      **options)


def _perturbed_generator(config: ModelConfig) -> Generator:
    """An untrained generator (eval mode) with its weights moved off their initial values,
    so that a property holding by construction is not a property of the initialisation."""
    generator = Generator(config).eval()
    with torch.no_grad():
        for layer in generator.parameters():
            layer.add_(0.1 * torch.randn_like(layer))
    return generator


def _inputs(config: ModelConfig, batch: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, config.noise_dim, generator=generator)
    condition = torch.rand(batch, config.condition_dim, generator=generator) * 2 - 1
    fields = torch.randn(batch, config.in_channels, config.resolution, config.resolution,
                         generator=generator)
    return noise, condition, fields


def _to_discriminator_space(raw: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Stand-in for the physics heads + normaliser: a differentiable map to in_channels."""
    return torch.cat([raw, torch.tanh(raw)] * in_channels, dim=1)[:, :in_channels]


# ------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_output_shapes(resolution):
    torch.manual_seed(0)
    config = _config(resolution, raw_channels=1, in_channels=3)
    noise, condition, fields = _inputs(config, batch=2)
    raw = Generator(config)(noise, condition)
    logits = Discriminator(config)(fields, condition)
    assert raw.shape == (2, 1, resolution, resolution)
    assert raw.dtype == torch.float32
    assert logits.shape == (2,)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("resolution", [128, 256])
def test_default_channel_rule_at_large_resolutions(resolution):
    config = ModelConfig.for_resolution(resolution, 1, 3, 4)
    assert config.block_sizes[0] == 4 and config.block_sizes[-1] == resolution
    assert config.channels(resolution) == 32
    assert config.channels(resolution // 2) == 64
    assert config.channels(4) == config.channels(8) == 256                 # capped
    assert config.n_downsamplings == resolution.bit_length() - 3


def test_default_models_have_a_few_million_parameters_at_64():
    config = ModelConfig.for_resolution(64, 1, 3, 4)
    for model in (Generator(config), Discriminator(config)):
        assert 0.5e6 < parameter_count(model) < 5e6


def test_default_models_run_at_128():
    torch.manual_seed(0)
    config = ModelConfig.for_resolution(128, 1, 3, 4)
    noise, condition, fields = _inputs(config, batch=1)
    with torch.no_grad():
        raw = Generator(config).eval()(noise, condition)
        logits = Discriminator(config).eval()(fields, condition)
    assert raw.shape == (1, 1, 128, 128) and torch.isfinite(raw).all()
    assert logits.shape == (1,) and torch.isfinite(logits).all()


# ------------------------------------------------------------------------ conditioning
def test_generator_output_changes_with_condition_alone():
    torch.manual_seed(0)
    config = _config()
    generator = Generator(config)
    noise, condition, _ = _inputs(config, batch=2)
    other = condition.clone()
    other[:, 0] = -condition[:, 0]
    first = generator(noise, condition, pixel_noise=False)
    assert torch.equal(first, generator(noise, condition, pixel_noise=False))
    assert (first - generator(noise, other, pixel_noise=False)).abs().max() > 1e-3


def test_generator_output_changes_with_noise_alone():
    torch.manual_seed(0)
    config = _config()
    generator = Generator(config)
    noise, condition, _ = _inputs(config, batch=2)
    first = generator(noise, condition, pixel_noise=False)
    second = generator(torch.randn_like(noise), condition, pixel_noise=False)
    assert (first - second).abs().max() > 1e-3


def test_pixel_noise_changes_output_once_its_strength_is_nonzero():
    torch.manual_seed(0)
    config = _config()
    generator = Generator(config)
    noise, condition, _ = _inputs(config, batch=2)
    # Strengths start at zero (StyleGAN): the first draws are identical.
    assert torch.equal(generator(noise, condition), generator(noise, condition))
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("noise.strength"):
                parameter.fill_(0.5)
    assert (generator(noise, condition) - generator(noise, condition)).abs().max() > 1e-3


def test_discriminator_logit_depends_on_condition():
    torch.manual_seed(0)
    config = _config()
    discriminator = Discriminator(config).eval()
    _, condition, fields = _inputs(config, batch=2)
    with torch.no_grad():
        difference = discriminator(fields, condition) - discriminator(fields, -condition)
    assert difference.abs().max() > 1e-4


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("spectral_norm", [True, False])
def test_every_parameter_gets_a_gradient_in_one_gan_step(spectral_norm):
    """DDP needs every parameter in the graph; the embeddings must get real gradients."""
    torch.manual_seed(0)
    config = _config(raw_channels=1, in_channels=2, spectral_norm=spectral_norm,
                     spectral_branch=True)
    generator, discriminator = Generator(config), Discriminator(config)
    noise, condition, real = _inputs(config, batch=4)
    real.requires_grad_(True)
    fake = _to_discriminator_space(generator(noise, condition), config.in_channels)
    real_logits = discriminator(real, condition)
    loss_d = (discriminator_loss(real_logits, discriminator(fake.detach(), condition))
              + 0.5 * r1_penalty(real_logits, real))
    loss_d.backward()
    generator_loss(discriminator(fake, condition)).backward()
    for model in (generator, discriminator):
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("spectral_branch", [True, False])
def test_discriminator_is_invariant_under_coarse_periodic_shifts(spectral_branch):
    torch.manual_seed(0)
    config = _config(32, in_channels=2, spectral_branch=spectral_branch)
    discriminator = Discriminator(config).eval()
    _, condition, fields = _inputs(config, batch=4)
    step = 2**config.n_downsamplings                                    # 8 at N = 32
    with torch.no_grad():
        logits = discriminator(fields, condition)
        for shift in [(step, 0), (0, 3 * step), (2 * step, step)]:
            shifted = discriminator(fields.roll(shift, dims=(-2, -1)), condition)
            torch.testing.assert_close(shifted, logits, rtol=1e-5, atol=1e-5)


def test_spectral_branch_sees_only_the_power_spectrum():
    """Its logit ignores phases: any periodic shift and a sign flip leave it unchanged."""
    torch.manual_seed(0)
    config = _config(16, in_channels=2, spectral_branch=True)
    discriminator = Discriminator(config).eval()
    _, condition, fields = _inputs(config, batch=3)
    with torch.no_grad():
        embedding = discriminator.embedding(condition)
        logits = discriminator.spectral(fields, embedding)
        for transformed in (fields.roll((1, -3), dims=(-2, -1)), -fields):
            torch.testing.assert_close(discriminator.spectral(transformed, embedding), logits,
                                       rtol=1e-5, atol=1e-5)
        blurred = 0.5 * (fields + fields.roll(1, dims=-1))
        assert (discriminator.spectral(blurred, embedding) - logits).abs().max() > 1e-4


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_periodic_upsampling_commutes_with_shifts_and_keeps_the_mean(mode):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    up = periodic_upsample2x(x, mode)
    assert up.shape == (2, 3, 16, 16)
    torch.testing.assert_close(periodic_upsample2x(x.roll((1, -3), dims=(-2, -1)), mode),
                               up.roll((2, -6), dims=(-2, -1)))
    torch.testing.assert_close(up.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)))


# ------------------------------------------------------------------- minibatch stddev
def test_minibatch_stddev_is_exactly_zero_for_identical_samples():
    sample = torch.randn(1, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    for group_size, batch in [(4, 8), (3, 6), (4, 4)]:
        out = MinibatchStdDev(group_size)(sample.expand(batch, -1, -1, -1))
        assert out.shape == (batch, 6, 4, 4)
        assert torch.equal(out[:, -1], torch.zeros(batch, 4, 4))


def test_minibatch_stddev_groups_are_strided_and_positive():
    x = torch.zeros(4, 1, 2, 2)
    x[1] = 1.0                 # groups of 2 are {0, 2} (identical) and {1, 3} (different)
    feature = MinibatchStdDev(2)(x)[:, -1, 0, 0]
    assert feature[0] == feature[2] == 0.0
    assert feature[1] == feature[3] == pytest.approx(0.5, abs=1e-4)    # std of {1, 0}


# ------------------------------------------------------------------------ spectral norm
def test_spectral_norm_makes_largest_singular_value_one():
    torch.manual_seed(0)
    config = _config(spectral_norm=True)
    discriminator = Discriminator(config).train()
    _, condition, fields = _inputs(config, batch=4)
    with torch.no_grad():
        for _ in range(5):
            discriminator(fields, condition)
    checked = 0
    for module in discriminator.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            matrix = module.weight.detach().reshape(module.weight.shape[0], -1)
            sigma = torch.linalg.matrix_norm(matrix, ord=2).item()
            assert sigma == pytest.approx(1.0, rel=0.05)
            checked += 1
    assert checked > 10


# ---------------------------------------------------------------------- mixed precision
def test_generator_and_discriminator_run_under_bfloat16_autocast():
    torch.manual_seed(0)
    config = _config(32, in_channels=1, raw_channels=1)
    noise, condition, _ = _inputs(config, batch=4)
    generator, discriminator = Generator(config), Discriminator(config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = generator(noise, condition)
        logits = discriminator(raw, condition)
    assert raw.dtype == torch.float32 and torch.isfinite(raw).all()
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.slow   # torch.compile of both networks (5 s)
def test_models_compile_without_graph_breaks():
    torch.manual_seed(0)
    config = _config(16, raw_channels=2, in_channels=2)
    noise, condition, _ = _inputs(config, batch=2)
    generator = torch.compile(Generator(config), backend="eager", fullgraph=True)
    discriminator = torch.compile(Discriminator(config), backend="eager", fullgraph=True)
    discriminator(generator(noise, condition), condition).sum().backward()


# ---------------------------------------------------------------------- configuration
def test_config_round_trips_through_json_and_rebuilt_models_load_state_strictly():
    torch.manual_seed(0)
    config = _config(16, raw_channels=1, in_channels=3, spectral_norm=True,
                     spectral_branch=True, upsample_mode="nearest")
    rebuilt_config = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert rebuilt_config == config
    noise, condition, fields = _inputs(config, batch=2)
    for model_class, args, kwargs in [(Generator, (noise, condition), {"pixel_noise": False}),
                                      (Discriminator, (fields, condition), {})]:
        original = model_class(config).eval()
        rebuilt = model_class(rebuilt_config).eval()
        rebuilt.load_state_dict(original.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(*args, **kwargs), original(*args, **kwargs))


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"resolution": 48}, "power of two"),
     ({"resolution": 8}, "power of two"),
     ({"raw_channels": 0}, "raw_channels"),
     ({"mbstd_group_size": 0}, "mbstd_group_size"),
     ({"max_width": 4}, "max_width"),
     ({"upsample_mode": "bicubic"}, "upsample_mode"),
     ({"spectral_norm": 1}, "spectral_norm"),
     ({"noise_dim": 2.0}, "noise_dim")],
)
def test_invalid_config_values_raise_one_line_value_errors(changes, message):
    values = {**_config().to_dict(), **changes}
    with pytest.raises(ValueError, match=message) as info:
        ModelConfig(**values)
    assert "\n" not in str(info.value)


def test_from_dict_rejects_unknown_and_missing_keys():
    values = _config().to_dict()
    with pytest.raises(ValueError, match="unknown ModelConfig keys: colour"):
        ModelConfig.from_dict({**values, "colour": "blue"})
    del values["resolution"]
    with pytest.raises(ValueError, match="missing ModelConfig keys: resolution"):
        ModelConfig.from_dict(values)


def test_wrong_input_shapes_raise_value_errors():
    config = _config(in_channels=2)
    noise, condition, fields = _inputs(config, batch=2)
    with pytest.raises(ValueError, match="noise must have shape"):
        Generator(config)(noise[:, :-1], condition)
    with pytest.raises(ValueError, match="condition must have shape"):
        Generator(config)(noise, condition[:, :-1])
    with pytest.raises(ValueError, match="fields must have shape"):
        Discriminator(config)(fields[:, :1], condition)


# ------------------------------------------------------------------ a declared sign flip
@pytest.mark.parametrize("spectral_envelope", [False, True])
def test_a_sign_equivariant_generator_gives_exactly_opposite_fields_for_opposite_z0(
        spectral_envelope):
    from surrogate.models import latent_sign
    config = _config(negate=True, spectral_envelope=spectral_envelope)
    generator = _perturbed_generator(config)
    noise, condition, _ = _inputs(config, 6)
    flipped = noise.clone()
    flipped[:, 0] = -flipped[:, 0]
    with torch.no_grad():
        a = generator(noise, condition, pixel_noise=False)
        b = generator(flipped, condition, pixel_noise=False)
    assert torch.equal(a, -b)
    assert torch.equal(latent_sign(noise), -latent_sign(flipped))
    # without the switch the same pair gives unrelated fields (the test can fail)
    plain = Generator(_config(spectral_envelope=spectral_envelope)).eval()
    plain.load_state_dict(generator.state_dict())
    with torch.no_grad():
        c = plain(noise, condition, pixel_noise=False)
        d = plain(flipped, condition, pixel_noise=False)
    assert not torch.allclose(c, -d, atol=1e-3)
    # the two signs are drawn with probability 1/2 each: latents are standard normal
    draws = latent_sign(torch.randn(20000, config.noise_dim,
                                    generator=torch.Generator().manual_seed(1)))
    assert abs(float((draws > 0).float().mean()) - 0.5) < 0.015      # 4 sigma


# ------------------------------------------------------------- declared periodic shifts
@pytest.mark.parametrize(("shift_x", "shift_y"), [(True, True), (True, False), (False, True)])
def test_a_shift_equivariant_generator_is_the_plain_one_rolled_by_the_latent_shift(
        shift_x, shift_y):
    from surrogate.models import latent_shift, periodic_shift
    config = _config(shift_x=shift_x, shift_y=shift_y, spectral_envelope=True)
    generator = _perturbed_generator(config)
    plain = Generator(_config(spectral_envelope=True)).eval()
    plain.load_state_dict(generator.state_dict())
    noise, condition, _ = _inputs(config, 64)
    moved_noise, shifts = latent_shift(noise, config)
    with torch.no_grad():
        rolled = generator(noise, condition, pixel_noise=False)
        expected = plain(moved_noise, condition, pixel_noise=False)
    for sample in range(noise.shape[0]):
        shift = tuple(int(value) for value in shifts[sample])
        assert torch.equal(rolled[sample], torch.roll(expected[sample], shift, dims=(-2, -1)))
    assert torch.equal(periodic_shift(expected, shifts), rolled)
    # shifts only along the built-in axes, and not all zero (the test can fail)
    assert bool((shifts[:, 0] != 0).any()) is shift_x
    assert bool((shifts[:, 1] != 0).any()) is shift_y
    # the latent is changed only where a shift is read: z_1 for x, z_2 for y
    changed = (moved_noise != noise).any(dim=0)
    assert changed.tolist() == [False, shift_x, shift_y] + [False] * (config.noise_dim - 3)


def test_the_latent_shift_is_uniform_and_independent_of_the_latent_fed_on():
    from scipy import stats

    from surrogate.models import latent_shift
    config = _config(resolution=32, shift_x=True, shift_y=True)
    noise = torch.randn(64_000, config.noise_dim, generator=torch.Generator().manual_seed(3))
    moved, shifts = latent_shift(noise, config)
    for axis, index in ((0, 1), (1, 2)):
        counts = torch.bincount(shifts[:, axis], minlength=32).numpy()
        assert counts.shape == (32,)
        assert stats.chisquare(counts).pvalue > 1e-3           # uniform on 0 .. N-1
        fed_on = moved[:, index].double().numpy()
        assert stats.kstest(fed_on, "norm").pvalue > 1e-3     # still standard normal
        # the same law in each half of the shifts: the network cannot read the shift
        low = fed_on[shifts[:, axis].numpy() < 16]
        high = fed_on[shifts[:, axis].numpy() >= 16]
        assert stats.ks_2samp(low, high).pvalue > 1e-3
    # the shift is a function of the latent: the snapshots of one latent share it
    again = latent_shift(noise.clone(), config)[1]
    assert torch.equal(again, shifts)


def test_a_shift_equivariant_generator_puts_no_pattern_at_a_fixed_place():
    """The ensemble mean over latents at one condition is flat up to sampling noise, where
    the plain generator with the same weights keeps a fixed pattern."""
    torch.manual_seed(0)
    config = _config(resolution=16, shift_x=True, shift_y=True)
    generator = _perturbed_generator(config)
    plain = Generator(_config(resolution=16)).eval()
    plain.load_state_dict(generator.state_dict())
    samples = 4096
    noise = torch.randn(samples, config.noise_dim, generator=torch.Generator().manual_seed(5))
    condition = torch.full((samples, config.condition_dim), 0.3)
    with torch.no_grad():
        rolled = generator(noise, condition, pixel_noise=False)
        fixed = plain(noise, condition, pixel_noise=False)

    def pattern(fields):
        """Pixel std of the ensemble mean over the per-pixel std over samples."""
        mean = fields.mean(dim=0)
        return float((mean - mean.mean(dim=(-2, -1), keepdim=True)).std()
                     / fields.std(dim=0).mean())

    assert pattern(fixed) > 0.1          # the untrained generator has a template
    assert pattern(rolled) < 4 / samples**0.5


def test_shift_equivariance_needs_the_two_latent_coordinates_it_reads():
    with pytest.raises(ValueError, match="noise_dim must be >= 3"):
        _config(shift_x=True, noise_dim=2)


def test_negate_each_snapshot_draws_a_fresh_sign_per_forward_from_the_pixel_stream():
    """One latent decoded many times (as at several snapshot times): with
    ``negate_each_snapshot`` the outputs are +-(one field) with both signs about equally
    often, the same pixel-noise seed gives the same signs, and without pixel noise the
    sign is sign(z_0) again; with ``negate`` alone every copy has z_0's sign."""
    config = _config(negate=True, negate_each_snapshot=True)
    generator = _perturbed_generator(config)
    noise, condition, _ = _inputs(config, 1)
    many_noise, many_condition = noise.repeat(400, 1), condition.repeat(400, 1)
    with torch.no_grad():
        quiet = generator(many_noise, many_condition, pixel_noise=False)
        torch.manual_seed(3)
        first = generator(many_noise, many_condition)
        torch.manual_seed(3)
        again = generator(many_noise, many_condition)
    assert torch.equal(first, again)
    signs = (first * quiet).sum(dim=(1, 2, 3)).sign()
    assert 0.4 < float((signs < 0).float().mean()) < 0.6
    assert torch.equal(quiet, quiet[:1].expand_as(quiet))
    plain = Generator(_config(negate=True)).eval()
    plain.load_state_dict(generator.state_dict())
    with torch.no_grad():
        torch.manual_seed(3)
        kept = plain(many_noise, many_condition)
    assert bool(((kept * quiet).sum(dim=(1, 2, 3)) > 0).all())
    with pytest.raises(ValueError, match="needs negate"):
        _config(negate_each_snapshot=True)


def test_a_given_sign_replaces_the_drawn_one_and_is_checked():
    """``sign=`` (what a generation job passes to balance the signs): opposite signs give
    exactly opposite fields, with pixel noise too (a given sign draws nothing from the
    pixel stream), for both sign modes; refused for a generator without ``negate``, for
    a wrong shape and for a value other than +-1."""
    for each_snapshot in (False, True):
        config = _config(negate=True, negate_each_snapshot=each_snapshot)
        generator = _perturbed_generator(config)
        noise, condition, _ = _inputs(config, 4)
        sign = torch.tensor([1.0, -1.0, -1.0, 1.0])
        with torch.no_grad():
            torch.manual_seed(5)
            a = generator(noise, condition, sign=sign)
            torch.manual_seed(5)
            b = generator(noise, condition, sign=-sign[:, None])
            c = generator(noise, condition, pixel_noise=False, sign=sign)
            d = generator(noise, condition, pixel_noise=False, sign=torch.ones(4))
        assert torch.equal(a, -b)
        assert torch.equal(c * sign[:, None, None, None], d)
        assert not torch.allclose(c, d, atol=1e-3)       # the sign did change outputs
        with pytest.raises(ValueError, match="shape"):
            generator(noise, condition, sign=torch.ones(3))
        with pytest.raises(ValueError, match=r"only \+1 and -1"):
            generator(noise, condition, sign=torch.tensor([1.0, 0.5, -1.0, 1.0]))
    plain = Generator(_config()).eval()
    with pytest.raises(ValueError, match="not sign-equivariant"):
        plain(noise, condition, sign=sign)


def test_a_sign_invariant_discriminator_reads_x_and_minus_x_alike():
    config = _config(negate=True)
    discriminator = Discriminator(config).eval()
    _, condition, fields = _inputs(config, 4)
    with torch.no_grad():
        assert torch.allclose(discriminator(fields, condition),
                              discriminator(-fields, condition), atol=1e-6)
    plain = Discriminator(_config()).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(fields, condition), plain(-fields, condition),
                                  atol=1e-4)


# ------------------------------------------------------------------ ensemble discriminator
def test_pair_correlation_equals_the_sum_over_shifts_written_out():
    generator = torch.Generator().manual_seed(3)
    first = torch.randn(2, 2, 8, 8, generator=generator, dtype=torch.float64) + 0.7
    second = torch.randn(2, 2, 8, 8, generator=generator, dtype=torch.float64) - 0.2
    a = first - first.mean(dim=(2, 3), keepdim=True)
    b = second - second.mean(dim=(2, 3), keepdim=True)
    expected = torch.empty_like(a)
    for i in range(8):
        for j in range(8):        # b(x + s): b rolled back by s
            moved = b.roll((-i, -j), dims=(2, 3))
            expected[:, :, i, j] = (a * moved).sum(dim=(2, 3))
    expected /= (a.square().sum(dim=(2, 3)) * b.square().sum(dim=(2, 3))).sqrt()[..., None, None]
    torch.testing.assert_close(pair_correlation(first, second).double(), expected,
                               rtol=0, atol=1e-6)


def test_pair_correlation_peaks_at_one_at_the_shift_of_a_copy():
    generator = torch.Generator().manual_seed(4)
    first = torch.randn(3, 2, 16, 16, generator=generator)
    shifts = [(3, 5), (0, 11), (15, 0)]
    second = torch.stack([2.5 * field.roll(shift, dims=(1, 2)) + 1.0
                          for field, shift in zip(first, shifts, strict=True)])
    rho = pair_correlation(first, second)
    for sample, (i, j) in enumerate(shifts):
        torch.testing.assert_close(rho[sample, :, i, j], torch.ones(2), rtol=0, atol=1e-5)
        rest = rho[sample].clone()
        rest[:, i, j] = 0
        assert rest.abs().max() < 0.5            # independent pixels: |rho| ~ 1 / N
    independent = pair_correlation(first, torch.randn(3, 2, 16, 16, generator=generator))
    assert independent.abs().max() < 0.5


def test_pair_correlation_of_large_scales_ignores_fine_noise_added_to_one_pattern():
    generator = torch.Generator().manual_seed(5)
    n = 32
    coarse = torch.randn(2, 1, 8, 8, generator=generator)
    pattern = torch.fft.irfft2(torch.fft.rfft2(coarse), s=(n, n)) * 16     # shells <= 4
    fine = torch.randn(2, 1, n, n, generator=generator)
    keep = shell_index(n) > 8
    fine = torch.fft.irfft2(torch.fft.rfft2(fine) * keep, s=(n, n))        # shells > 8
    fine *= 3 * pattern.std() / fine.std()                  # 9x the pattern's energy
    first = pattern + fine
    second = pattern.roll((7, 20), dims=(2, 3)) + fine.roll((3, 1), dims=(2, 3)).flip(2)
    full = pair_correlation(first, second)
    large = pair_correlation(first, second, max_wavenumber=8)
    assert full.amax(dim=(1, 2, 3)).max() < 0.2            # the noise hides the copy
    torch.testing.assert_close(large[:, 0, 7, 20], torch.ones(2), rtol=0, atol=1e-5)
    # low-passing is the filter written out: the same as correlating filtered fields
    lowpass = shell_index(n) <= 8
    filtered = [torch.fft.irfft2(torch.fft.rfft2(x) * lowpass, s=(n, n))
                for x in (first, second)]
    torch.testing.assert_close(large, pair_correlation(*filtered), rtol=0, atol=1e-6)


def test_pair_correlation_of_a_constant_channel_is_zero_with_finite_gradients():
    first = torch.ones(1, 1, 8, 8, requires_grad=True)
    second = torch.randn(1, 1, 8, 8, requires_grad=True)
    rho = pair_correlation(first, second)
    assert torch.equal(rho, torch.zeros_like(rho))
    rho.sum().backward()
    assert torch.isfinite(first.grad).all() and torch.isfinite(second.grad).all()
    with pytest.raises(ValueError, match="one shape"):
        pair_correlation(first, second[:, :, :4])


def _ensemble_config(**options) -> ModelConfig:
    return _config(16, in_channels=4, **options)              # pairs of C = 2


def test_the_ensemble_discriminator_sees_a_copy_at_any_shift_through_its_branch():
    torch.manual_seed(0)
    discriminator = EnsembleDiscriminator(_ensemble_config()).eval()
    plain = Discriminator(_ensemble_config()).eval()
    plain.load_state_dict({name: value for name, value in discriminator.state_dict().items()
                           if not name.startswith("correlation.")})
    generator = torch.Generator().manual_seed(1)
    first = torch.randn(4, 2, 16, 16, generator=generator)
    condition = torch.zeros(4, CONDITION_DIM)
    independent = torch.cat([first, torch.randn(4, 2, 16, 16, generator=generator)], dim=1)
    branch = {}
    with torch.no_grad():
        for shift in [(5, 9), (2, 13)]:
            copies = torch.cat([first, first.roll(shift, dims=(2, 3))], dim=1)
            branch[shift] = discriminator(copies, condition) - plain(copies, condition)
        branch["independent"] = discriminator(independent, condition) \
            - plain(independent, condition)
    # the branch reads a copy alike wherever it lies, and not as an independent pair
    torch.testing.assert_close(branch[(5, 9)], branch[(2, 13)], rtol=1e-5, atol=1e-5)
    assert (branch[(5, 9)] - branch["independent"]).abs().min() > 1e-3


def test_the_ensemble_discriminator_keeps_the_one_sample_symmetries():
    torch.manual_seed(0)
    config = _ensemble_config(spectral_branch=True)
    discriminator = EnsembleDiscriminator(config).eval()
    _, condition, pairs = _inputs(config, batch=4)
    step = 2**config.n_downsamplings
    with torch.no_grad():
        logits = discriminator(pairs, condition)
        shifted = discriminator(pairs.roll((step, 2 * step), dims=(-2, -1)), condition)
        turned = discriminator(pairs.rot90(1, dims=(-2, -1)), condition)
        branch = discriminator.correlation(
            pair_correlation(pairs[:, :2], pairs[:, 2:]), discriminator.embedding(condition))
        turned_branch = discriminator.correlation(
            pair_correlation(pairs[:, :2].rot90(1, dims=(-2, -1)),
                             pairs[:, 2:].rot90(1, dims=(-2, -1))),
            discriminator.embedding(condition))
    torch.testing.assert_close(shifted, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(turned_branch, branch, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(turned, logits, atol=1e-4)   # the convolutions see rotations
    signed = EnsembleDiscriminator(_ensemble_config(negate=True)).eval()
    with torch.no_grad():
        torch.testing.assert_close(signed(pairs, condition), signed(-pairs, condition),
                                   rtol=1e-5, atol=1e-5)
        assert not torch.allclose(discriminator(pairs, condition),
                                  discriminator(-pairs, condition), atol=1e-4)


def test_the_ensemble_discriminator_checks_its_pairs():
    with pytest.raises(ValueError, match="even"):
        EnsembleDiscriminator(_config(16, in_channels=3))
    discriminator = EnsembleDiscriminator(_ensemble_config())
    with pytest.raises(ValueError, match=r"\(B, 4, 16, 16\)"):
        discriminator(torch.zeros(2, 6, 16, 16), torch.zeros(2, CONDITION_DIM))
    assert discriminator.correlation.hidden1.weight.shape[1] == 6     # 3 features x C


def test_the_ensemble_discriminator_has_finite_r1_gradients_for_constant_pairs():
    """Two constant fields (a cold Ising sample) have a correlation map of zeros; the R1
    penalty differentiates the logits twice through it."""
    torch.manual_seed(0)
    discriminator = EnsembleDiscriminator(_ensemble_config())
    pairs = torch.ones(4, 4, 16, 16)
    pairs[:, 2:] *= -1
    pairs.requires_grad_(True)
    logits = discriminator(pairs, torch.zeros(4, CONDITION_DIM))
    penalty = r1_penalty(logits, pairs)
    penalty.backward()
    assert torch.isfinite(penalty)
    assert all(torch.isfinite(p.grad).all() for p in discriminator.parameters()
               if p.grad is not None)
