"""The conditional spectral envelope of the generator (``ModelConfig.spectral_envelope``):
an exact per-shell filter checked against numpy's FFT, identity at initialisation, a
function of the condition alone, shift-equivariant, trained, resumed and recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surrogate.checkpoint import load_checkpoint
from surrogate.cli import main
from surrogate.generate import load_surrogate
from surrogate.losses import shell_index
from surrogate.models import (
    ENVELOPE_LOG_GAIN_MAX,
    Generator,
    ModelConfig,
    SpectralEnvelope,
)
from surrogate.train import TrainConfig, train
from tests._files import forget_option, last_checkpoints_agree

SAMPLE = "data/sample_navier_stokes2d.h5"


def _numpy_shells(n: int) -> np.ndarray:
    """round(|k|) on numpy's full fft2 grid (k in grid units), shape (n, n)."""
    k = np.fft.fftfreq(n) * n
    return np.rint(np.hypot(k[:, None], k[None, :])).astype(int)


def _shell_power(field: np.ndarray, shells: np.ndarray) -> np.ndarray:
    """Summed |fft2|^2 per shell of a real field (n, n), with numpy."""
    power = np.abs(np.fft.fft2(field)) ** 2
    return np.bincount(shells.ravel(), weights=power.ravel())


@pytest.mark.parametrize("n", [16, 32, 64])
def test_shell_index_is_the_rounded_wavenumber_modulus(n):
    shells = shell_index(n).numpy()
    assert shells.shape == (n, n // 2 + 1)
    np.testing.assert_array_equal(shells, _numpy_shells(n)[:, : n // 2 + 1])
    assert shells.max() == round(n / np.sqrt(2))


def test_envelope_multiplies_each_shell_power_by_exp_2g_exactly():
    n, channels, embedding_dim = 32, 2, 5
    envelope = SpectralEnvelope(embedding_dim, channels, n).double()
    rng = np.random.default_rng(0)
    log_gain = rng.uniform(-4.0, 4.0, size=(channels, envelope.n_shells))
    with torch.no_grad():      # bias only: gains are G tanh(b / G), whatever e
        envelope.log_gain.bias.copy_(torch.from_numpy(log_gain.ravel()))
    fields = rng.standard_normal((3, channels, n, n))
    embedding = torch.from_numpy(rng.standard_normal((3, embedding_dim)))
    with torch.no_grad():
        out = envelope(torch.from_numpy(fields), embedding).numpy()
    expected_gain = ENVELOPE_LOG_GAIN_MAX * np.tanh(log_gain / ENVELOPE_LOG_GAIN_MAX)
    shells = _numpy_shells(n)
    for b in range(3):
        for c in range(channels):
            ratio = _shell_power(out[b, c], shells) / _shell_power(fields[b, c], shells)
            np.testing.assert_allclose(ratio, np.exp(2 * expected_gain[c]), rtol=1e-10)
            # the whole field, not only its shell powers: numpy's filter of the input
            reference = np.fft.ifft2(np.fft.fft2(fields[b, c])
                                     * np.exp(expected_gain[c])[shells])
            np.testing.assert_allclose(out[b, c], reference.real, atol=1e-10)
            assert np.abs(reference.imag).max() < 1e-10        # a real field stays real
    # shell 0 is the mean: scaled, nothing else
    np.testing.assert_allclose(out.mean(axis=(-2, -1)),
                               fields.mean(axis=(-2, -1)) * np.exp(expected_gain[:, 0]),
                               rtol=1e-10)


def test_gains_are_bounded_and_set_by_the_condition_alone():
    torch.manual_seed(0)
    envelope = SpectralEnvelope(4, 1, 16)
    with torch.no_grad():
        envelope.log_gain.weight.normal_(0.0, 50.0)            # far into the tanh's tails
    embedding = torch.randn(6, 4)
    gains = envelope.gains(embedding)
    assert gains.shape == (6, 1, envelope.n_shells)
    assert gains.abs().max() <= ENVELOPE_LOG_GAIN_MAX
    assert gains.abs().max() > 0.9 * ENVELOPE_LOG_GAIN_MAX
    # two fields at one condition pass the same filter; the filter commutes with shifts
    fields = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    same = embedding[:1].expand(2, 4)
    out = envelope.double()(fields, same.double())
    for b in range(2):
        ratio = (torch.fft.rfft2(out[b, 0]) / torch.fft.rfft2(fields[b, 0])).abs()
        if b == 0:
            first = ratio
        torch.testing.assert_close(ratio, first)
    shifted = envelope(torch.roll(fields, (3, -5), dims=(-2, -1)), same.double())
    torch.testing.assert_close(shifted, torch.roll(out, (3, -5), dims=(-2, -1)))


def test_a_generator_with_an_untrained_envelope_is_the_generator_without_one():
    config = ModelConfig.for_resolution(32, 2, 3, 4, width=8, noise_dim=16)
    plain = Generator(config).eval()
    with_envelope = Generator(ModelConfig(**{**config.to_dict(),
                                             "spectral_envelope": True})).eval()
    missing, unexpected = with_envelope.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["envelope.log_gain.bias", "envelope.log_gain.weight"]
    assert not unexpected
    noise, condition = torch.randn(5, 16), torch.rand(5, 4) * 2 - 1
    with torch.no_grad():
        a = plain(noise, condition, pixel_noise=False)
        b = with_envelope(noise, condition, pixel_noise=False)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * float(a.abs().max()))
        # moved off zero, the envelope changes the output, differently per condition
        with_envelope.envelope.log_gain.weight.normal_(0.0, 0.5)
        c = with_envelope(noise, condition, pixel_noise=False)
        d = with_envelope(noise, condition.flip(0), pixel_noise=False)
    assert not torch.allclose(c, a, atol=1e-3) and not torch.allclose(c, d, atol=1e-3)


def test_every_envelope_parameter_gets_a_gradient():
    config = ModelConfig.for_resolution(16, 1, 2, 3, width=8, noise_dim=8,
                                        spectral_envelope=True)
    generator = Generator(config)
    out = generator(torch.randn(4, 8), torch.rand(4, 3) * 2 - 1)
    (out.square().mean()).backward()
    for name, parameter in generator.envelope.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_config_round_trips_and_a_config_without_the_key_has_no_envelope():
    config = ModelConfig.for_resolution(32, 2, 3, 4, spectral_envelope=True)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = {key: value for key, value in config.to_dict().items()
           if key != "spectral_envelope"}
    assert ModelConfig.from_dict(old).spectral_envelope is False
    assert Generator(ModelConfig.from_dict(old)).envelope is None
    with pytest.raises(ValueError, match="spectral_envelope must be a bool"):
        ModelConfig(**{**config.to_dict(), "spectral_envelope": 1})


SHORT = TrainConfig(steps=3, batch_size=4, width=8, noise_dim=16, log_every=1,
                    validate_every=3, checkpoint_every=2, sample_every=1000, r1_interval=2,
                    validation_samples=8, temporal_weight=0.0, spectral_envelope=True)


@pytest.mark.slow
def test_an_envelope_run_trains_resumes_exactly_and_records_the_option(tmp_path):
    train(SAMPLE, tmp_path / "straight", SHORT, progress=False)
    train(SAMPLE, tmp_path / "split", SHORT, progress=False, steps=2)
    train(SAMPLE, tmp_path / "split", resume=True, progress=False, steps=3)
    a, _ = last_checkpoints_agree(tmp_path / "straight", tmp_path / "split")
    assert a["model"]["spectral_envelope"] is True
    assert a["generator"]["envelope.log_gain.weight"].abs().max() > 0     # it trained
    saved = json.loads((tmp_path / "split" / "config.json").read_text())
    assert saved["train"]["spectral_envelope"] is saved["model"]["spectral_envelope"] is True
    model = load_surrogate(tmp_path / "straight", "last", device="cpu")
    assert model.generator.envelope is not None
    fields = model.sample(np.zeros((2, model.encoder.dim), dtype=np.float32),
                          torch.randn(2, model.model_config.noise_dim))
    assert fields.shape == (2, 3, 32, 32) and np.all(np.isfinite(fields))


@pytest.mark.slow
def test_the_envelope_is_on_by_default_and_the_cli_switches_it_off(tmp_path):
    assert TrainConfig().spectral_envelope is True
    fast = ["--steps", "1", "--batch-size", "4", "--width", "8", "--validate-every", "1",
            "--sample-every", "1", "-q", "--temporal-weight", "0"]
    assert main(["train", SAMPLE, "-o", str(tmp_path / "on"), *fast]) == 0
    assert main(["train", SAMPLE, "-o", str(tmp_path / "off"), "--no-spectral-envelope",
                 *fast]) == 0
    for name, expected in (("on", True), ("off", False)):
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["train"]["spectral_envelope"] is expected
        assert saved["model"]["spectral_envelope"] is expected


@pytest.mark.slow
def test_a_run_written_before_the_option_loads_and_resumes_without_an_envelope(tmp_path):
    run = tmp_path / "old"
    old = TrainConfig(**{**SHORT.to_dict(), "spectral_envelope": False})
    train(SAMPLE, run, old, progress=False, steps=2)
    forget_option(run, "spectral_envelope")      # as a run of an older version has none
    assert load_surrogate(run, "best", device="cpu").generator.envelope is None
    assert train(SAMPLE, run, resume=True, progress=False, steps=3)["steps"] == 3
    assert load_checkpoint(run / "checkpoints" / "last.pt")["model"]["spectral_envelope"] \
        is False
