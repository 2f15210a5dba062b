"""The Gaussian path for the lowest wavenumber shells (``ModelConfig.low_modes``): the
added field's shell power checked against numpy's FFT, the modes enumerated as
``shell_index`` bins them, identity at initialisation, sign and shift equivariance kept,
trained, resumed and recorded; bad settings refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surrogate.checkpoint import read_run_config
from surrogate.cli import main
from surrogate.generate import load_surrogate
from surrogate.losses import shell_index
from surrogate.models import (
    LOW_MODE_INITIAL_AMPLITUDE,
    LOW_MODE_LATENT_START,
    GaussianLowModes,
    Generator,
    ModelConfig,
    low_mode_wavenumbers,
)
from surrogate.train import TrainConfig, train
from surrogate.train.low_modes import calibrate_low_modes, fit_low_modes_to_conditions
from tests._files import last_checkpoints_agree

SAMPLE = "data/sample_navier_stokes2d.h5"


@pytest.mark.parametrize("shells", [1, 2, 3, 4])
def test_the_modes_are_half_of_each_shell_of_the_full_plane(shells):
    n = 32
    k = np.rint(np.fft.fftfreq(n) * n).astype(int)
    full = np.rint(np.hypot(k[:, None], k[None, :])).astype(int)
    modes = low_mode_wavenumbers(shells)
    assert len(set(modes)) == len(modes)
    for shell in range(1, shells + 1):
        ours = [m for m in modes if np.rint(np.hypot(*m)) == shell]
        assert 2 * len(ours) == int((full == shell).sum())       # one of each +-m pair
        assert all((-m_x, -m_y) not in modes for m_x, m_y in ours)
    # the binning agrees with the loss's shells (rfft2 half plane: m_y >= 0)
    rfft_shells = shell_index(n).numpy()
    for m_x, m_y in modes:
        assert rfft_shells[m_x % n, m_y] == np.rint(np.hypot(m_x, m_y))


def _shell_power(field: np.ndarray, n_shells: int) -> np.ndarray:
    """Summed |fft2|^2 per integer shell round(|k|), numpy, shells 0 .. n_shells."""
    n = field.shape[-1]
    k = np.fft.fftfreq(n) * n
    shells = np.rint(np.hypot(k[:, None], k[None, :])).astype(int)
    power = np.abs(np.fft.fft2(field)) ** 2
    return np.bincount(shells.ravel(), weights=power.ravel(), minlength=n_shells + 1)


def test_shells_1_to_k_hold_n4_sigma2_times_the_squared_latents_and_the_rest_is_untouched():
    """f = sqrt 2 sigma (a cos + b sin) per mode: |F(+-m)|^2 = N^4 sigma^2 (a^2 + b^2) / 2,
    so a shell's full-plane power is N^4 sigma_s^2 times the sum of its coefficients'
    squares, whatever the network put there; every mode outside shells 1 .. K (the mean
    included) keeps the network's value (numpy's FFT)."""
    n, shells, channels, embedding_dim = 32, 3, 2, 5
    module = GaussianLowModes(embedding_dim, channels, n, shells).double()
    sigma = torch.tensor([[0.7, -1.3, 0.25], [2.0, 0.5, 1.1]], dtype=torch.float64)
    with torch.no_grad():
        module.amplitude.bias.copy_(sigma.reshape(-1))
    batch = 3
    noise = torch.randn(batch, 4 + module.latent_dim, dtype=torch.float64)
    raw = 3.0 + torch.randn(batch, channels, n, n, dtype=torch.float64)
    with torch.no_grad():
        out = module(raw, noise, torch.zeros(batch, embedding_dim, dtype=torch.float64))
    xi = noise[:, -module.latent_dim:].reshape(batch, -1, 2).numpy()       # shared by r
    modes = low_mode_wavenumbers(shells)
    mode_shell = np.array([np.rint(np.hypot(*m)) for m in modes])
    k = np.fft.fftfreq(n) * n
    full_shells = np.rint(np.hypot(k[:, None], k[None, :])).astype(int)
    outside = (full_shells == 0) | (full_shells > shells)
    for b in range(batch):
        for r in range(channels):
            power = _shell_power(out[b, r].numpy(), shells)[1: shells + 1]
            expected = [n**4 * float(sigma[r, s - 1]) ** 2 * np.sum(xi[b, mode_shell == s] ** 2)
                        for s in range(1, shells + 1)]
            np.testing.assert_allclose(power, expected, rtol=1e-10)
            np.testing.assert_allclose(np.fft.fft2(out[b, r].numpy())[outside],
                                       np.fft.fft2(raw[b, r].numpy())[outside],
                                       rtol=0, atol=1e-9 * n * n)


def test_the_latent_coordinates_read_are_the_last_ones():
    module = GaussianLowModes(4, 1, 16, 1)
    noise = torch.randn(2, 20)
    raw = torch.randn(2, 1, 16, 16)
    embedding = torch.zeros(2, 4)
    changed = noise.clone()
    changed[:, : 20 - module.latent_dim] = torch.randn(2, 20 - module.latent_dim)
    torch.testing.assert_close(module(raw, noise, embedding), module(raw, changed, embedding))
    changed[:, -1] += 1.0
    assert not torch.allclose(module(raw, noise, embedding), module(raw, changed, embedding))


def test_an_untrained_generator_has_low_modes_of_amplitude_1_over_n_and_the_rest_its_own():
    """At initialisation sigma = 1 / N for every channel and shell (not 0, a stationary
    point); outside shells 1 .. K the output is the generator's without the path."""
    config = ModelConfig.for_resolution(32, 2, 3, 4, width=8, noise_dim=48)
    plain = Generator(config).eval()
    with_modes = Generator(ModelConfig(**{**config.to_dict(), "low_modes": 2})).eval()
    missing, unexpected = with_modes.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["low_modes.amplitude.bias", "low_modes.amplitude.weight"]
    assert not unexpected
    noise, condition = torch.randn(5, 48), torch.rand(5, 4) * 2 - 1
    torch.testing.assert_close(
        with_modes.low_modes.amplitudes(torch.randn(5, 128)),
        torch.full((5, 2, 2), LOW_MODE_INITIAL_AMPLITUDE / 32))
    with torch.no_grad():
        a = plain(noise, condition, pixel_noise=False).double().numpy()
        b = with_modes(noise, condition, pixel_noise=False).double().numpy()
    k = np.fft.fftfreq(32) * 32
    shells = np.rint(np.hypot(k[:, None], k[None, :])).astype(int)
    low = (shells >= 1) & (shells <= 2)
    a_hat, b_hat = np.fft.fft2(a), np.fft.fft2(b)
    np.testing.assert_allclose(b_hat[..., ~low], a_hat[..., ~low], rtol=0,
                               atol=1e-4 * np.abs(a_hat).max())
    xi = noise[:, -20:].reshape(5, 10, 2).numpy()
    for sample in range(5):
        for r in range(2):
            power = _shell_power(b[sample, r], 2)[1:3]
            expected = [32**4 / 32**2 * np.sum(xi[sample, :4] ** 2),
                        32**4 / 32**2 * np.sum(xi[sample, 4:] ** 2)]
            np.testing.assert_allclose(power, expected, rtol=1e-4)


def test_every_low_mode_parameter_gets_a_gradient():
    config = ModelConfig.for_resolution(16, 1, 2, 3, width=8, noise_dim=16, low_modes=1)
    generator = Generator(config)
    out = generator(torch.randn(4, 16), torch.rand(4, 3) * 2 - 1)
    (out * torch.randn_like(out)).sum().backward()
    for name, parameter in generator.low_modes.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_sign_and_shift_equivariance_hold_with_the_low_modes():
    config = ModelConfig.for_resolution(16, 1, 1, 2, width=8, noise_dim=24, low_modes=2,
                                        negate=True, shift_x=True, shift_y=True)
    generator = Generator(config).eval()
    with torch.no_grad():
        generator.low_modes.amplitude.weight.normal_(0.0, 1.0)
        generator.low_modes.amplitude.bias.normal_(0.0, 1.0)
        noise, condition = torch.randn(6, 24), torch.rand(6, 2) * 2 - 1
        flipped = noise.clone()
        flipped[:, 0] = -flipped[:, 0]
        a = generator(noise, condition, pixel_noise=False)
        b = generator(flipped, condition, pixel_noise=False)
    torch.testing.assert_close(b, -a)
    assert a.abs().max() > 0


def test_config_round_trips_and_bad_settings_are_refused():
    config = ModelConfig.for_resolution(32, 2, 3, 4, low_modes=2)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = {key: value for key, value in config.to_dict().items() if key != "low_modes"}
    assert Generator(ModelConfig.from_dict(old)).low_modes is None
    with pytest.raises(ValueError, match=r"low_modes must be in 0\.\.8"):
        ModelConfig.for_resolution(32, 2, 3, 4, low_modes=9)
    # 2 x 10 modes = 20 coordinates after the first 3, whatever the raw channels
    needed = 2 * len(low_mode_wavenumbers(2)) + LOW_MODE_LATENT_START
    assert needed == 23
    ModelConfig.for_resolution(32, 2, 3, 4, noise_dim=23, low_modes=2)
    with pytest.raises(ValueError, match="noise_dim must be >= 23, got 22"):
        ModelConfig.for_resolution(32, 2, 3, 4, noise_dim=22, low_modes=2)
    with pytest.raises(ValueError, match="low_modes must be an integer >= 0"):
        TrainConfig(low_modes=-1)


SHORT = TrainConfig(steps=3, batch_size=4, width=8, noise_dim=48, log_every=1,
                    validate_every=3, checkpoint_every=2, sample_every=1000, r1_interval=2,
                    validation_samples=8, temporal_weight=0.0, low_modes=2)


@pytest.mark.slow
def test_a_low_mode_run_trains_resumes_exactly_and_records_the_option(tmp_path):
    train(SAMPLE, tmp_path / "straight", SHORT, progress=False)
    train(SAMPLE, tmp_path / "split", SHORT, progress=False, steps=2)
    train(SAMPLE, tmp_path / "split", resume=True, progress=False, steps=3)
    a, _ = last_checkpoints_agree(tmp_path / "straight", tmp_path / "split")
    assert a["model"]["low_modes"] == 2
    assert a["generator"]["low_modes.amplitude.weight"].abs().max() > 0     # it trained
    saved = json.loads((tmp_path / "split" / "config.json").read_text())
    assert saved["train"]["low_modes"] == saved["model"]["low_modes"] == 2
    model = load_surrogate(tmp_path / "straight", "last", device="cpu")
    fields = model.sample(np.zeros((2, model.encoder.dim), dtype=np.float32),
                          torch.randn(2, model.model_config.noise_dim))
    assert fields.shape == (2, 3, 32, 32) and np.all(np.isfinite(fields))


def test_the_cli_refuses_a_latent_too_small_for_the_low_modes(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", SAMPLE, "-o", str(run), "--steps", "1", "--width", "8",
                 "--low-modes", "2", "--noise-dim", "16", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "noise_dim must be >= 23" in err[0]
    assert not run.exists()


def test_calibration_finds_the_factor_that_made_the_real_fields():
    """Fields made by the same generator with its amplitude 4x (a factor on the grid,
    same latents) are matched by exactly that factor; the map's weights stay zero."""
    config = ModelConfig.for_resolution(16, 1, 1, 2, width=8, noise_dim=24, low_modes=2)
    generator = Generator(config).eval()
    condition = torch.rand(16, 2) * 2 - 1
    noise = torch.randn(16, 24, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        generator.low_modes.amplitude.bias.mul_(4.0)
        real = generator(noise, condition, pixel_noise=False)
        generator.low_modes.amplitude.bias.div_(4.0)
    result = calibrate_low_modes(generator, lambda raw, c: raw, real, condition, seed=7)
    assert result["factor"] == 4.0
    assert result["generated_power_after"] == pytest.approx(result["real_power"], rel=1e-5)
    assert result["generated_power_before"] == pytest.approx(result["real_power"] / 16,
                                                             rel=0.05)
    torch.testing.assert_close(generator.low_modes.amplitude.bias,
                               torch.full((2,), 4.0 * LOW_MODE_INITIAL_AMPLITUDE / 16))
    assert generator.low_modes.amplitude.weight.abs().max() == 0
    with pytest.raises(ValueError, match="needs a generator with low_modes"):
        calibrate_low_modes(Generator(ModelConfig.for_resolution(16, 1, 1, 2, width=8)),
                            lambda raw, c: raw, real, condition, seed=7)


def test_the_fit_per_condition_recovers_an_amplitude_that_changes_with_the_condition():
    """Real fields: Gaussian shells 1 and 2 of amplitudes sigma_s(c) = sigma_0 exp(alpha_s
    c), alpha = (0.6, -0.4), over c in [-1, 1] (the two shells move in opposite
    directions, so no single factor matches both). After the global factor the
    generator's amplitude is the same at every c (off by up to exp(0.6) at the ends);
    after the fit per condition it is sigma_s(c) to within 10 % at every c, read off the
    amplitude map itself (the generated shells are sigma times the latent's modes
    exactly), including conditions the fit never saw. 2,048 samples: with 512 the
    chi-square scatter of the real shells alone moves the ends by up to 11 %."""
    n, samples = 16, 2048
    config = ModelConfig.for_resolution(n, 1, 1, 2, width=8, noise_dim=40, low_modes=2)
    torch.manual_seed(0)
    generator = Generator(config).eval()
    module = generator.low_modes
    draw = torch.Generator().manual_seed(3)
    condition = torch.stack([torch.rand(samples, generator=draw) * 2 - 1,
                             torch.zeros(samples)], dim=1)
    alpha, sigma_0 = torch.tensor([0.6, -0.4]), 0.05

    def true_sigma(c: torch.Tensor) -> torch.Tensor:               # (B, 2 shells)
        return sigma_0 * torch.exp(alpha * c[:, :1])

    coefficients = torch.randn(samples, module.latent_dim, generator=draw).reshape(
        samples, -1, 2) * true_sigma(condition)[:, module.mode_shells, None]
    real = (coefficients.reshape(samples, -1) @ module.basis.float()).reshape(
        samples, 1, n, n)

    def identity(raw, c):
        return raw

    calibrate_low_modes(generator, identity, real[:128], condition[:128], seed=5)
    grid = torch.stack([torch.linspace(-1, 1, 41), torch.zeros(41)], dim=1)

    def amplitude_ratio() -> torch.Tensor:
        with torch.no_grad():
            return module.amplitudes(generator.embedding(grid))[:, 0] / true_sigma(grid)

    before = amplitude_ratio()
    assert before.max() / before.min() > 2.5       # one factor cannot follow both shells
    result = fit_low_modes_to_conditions(generator, identity, real, condition, seed=5)
    after = amplitude_ratio()
    assert (after - 1).abs().max() < 0.1, after
    assert result["mismatch_before"] > 1.5 > 1.1 > result["mismatch_after"]
    with pytest.raises(ValueError, match="needs a generator with low_modes"):
        fit_low_modes_to_conditions(Generator(ModelConfig.for_resolution(16, 1, 1, 2, width=8)),
                                    identity, real, condition, seed=5)


@pytest.mark.slow
def test_a_fresh_training_starts_at_the_data_power_and_a_resumed_one_is_not_recalibrated(
        tmp_path):
    from surrogate.train.trainer import Trainer
    messages: list[str] = []
    trainer = Trainer(SAMPLE, tmp_path / "run", SHORT, progress=False, log=messages.append)
    calibration = trainer.low_mode_calibration
    ratio = calibration["generated_power_after"] / calibration["real_power"]
    assert abs(np.log(ratio)) <= np.log(2) / 4     # the factors' grid: 2^(1/8) in amplitude
    assert any(message.startswith("low modes: amplitude x") for message in messages)
    assert calibration["mismatch_after"] < calibration["mismatch_before"]
    assert read_run_config(tmp_path / "run")["low_mode_calibration"] == calibration
    plain = Trainer(SAMPLE, tmp_path / "plain", TrainConfig(**{**SHORT.to_dict(),
                                                               "low_modes": 0}),
                    progress=False)
    assert plain.low_mode_calibration is None
    assert "low_mode_calibration" not in read_run_config(tmp_path / "plain")
    train(SAMPLE, tmp_path / "resumed", SHORT, progress=False, steps=2)
    resumed = Trainer(SAMPLE, tmp_path / "resumed", SHORT, resume=True, progress=False)
    assert resumed.low_mode_calibration is None
