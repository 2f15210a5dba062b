"""The lean generator (``ModelConfig.arch = "lean"``): FLOP bound, exact physics heads,
sign equivariance, sub-pixel output, training, exact resume and checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import simulators
from simulators.grid import PeriodicGrid
from simulators.store import StoreSchema
from surrogate.checkpoint import load_checkpoint
from surrogate.cli import main
from surrogate.constraints import OutputHeads
from surrogate.data import ConditionEncoder, FieldNormalizer, n_channels
from surrogate.flops import generator_flops
from surrogate.generate import load_surrogate
from surrogate.models import (
    LEAN_UPSCALE,
    Generator,
    ModelConfig,
    _SubPixelOutput,
    latent_sign,
    same_model,
)
from surrogate.train import TrainConfig, train
from tests._files import forget_option, last_checkpoints_agree
from tests._statistics import STATISTICS

SAMPLE = "data/sample_navier_stokes2d.h5"
N = 32


def _heads(system: str, resolution: int = N, times=(0.0, 5.0)):
    simulator = simulators.get(system)
    schema = StoreSchema.from_simulator(simulator, simulator.make_grid(resolution),
                                        np.asarray(times, dtype=float), init="random")
    normalizer = FieldNormalizer.from_statistics(schema.fields, schema.invariants,
                                                 STATISTICS[system])
    heads = OutputHeads.from_schema(schema, normalizer, dtype=torch.float64)
    return heads, schema, ConditionEncoder.from_schema(schema)


def _lean(heads, schema, encoder, width: int = 8, **options) -> Generator:
    """A lean generator as the trainer builds it (with its full-resolution output noise)
    with its weights moved off their initial values."""
    options.setdefault("output_noise", True)
    config = ModelConfig.for_resolution(schema.resolution, heads.raw_channels,
                                        n_channels(schema.fields), encoder.dim, width=width,
                                        arch="lean", **options)
    torch.manual_seed(0)
    generator = Generator(config).eval()
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return generator


def _latents(config: ModelConfig, batch: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, config.noise_dim, generator=generator)
    condition = torch.rand(batch, config.condition_dim, generator=generator) * 2 - 1
    return noise, condition


def _analytic_flops(config: ModelConfig) -> int:
    """2 x multiply-adds of every convolution and linear layer of ``Generator(config)``,
    from the architecture's description (independent of the FLOP counter)."""
    lean = config.arch == "lean"
    sizes = config.lean_block_sizes if lean else config.block_sizes
    channels = config.lean_channels if lean else config.channels
    e, style = config.embedding_dim, 2 * config.embedding_dim
    macs = config.condition_dim * e + e * e                      # condition embedding
    macs += (config.noise_dim + e) * e + e * e                   # mapping
    macs += style * channels(4) * 16                             # input layer
    styled = [channels(4), channels(4)] + [channels(s) for s in sizes[1:] for _ in (0, 1)]
    macs += sum(style * 2 * c for c in styled)                   # AdaIN scales and shifts
    macs += 9 * channels(4) ** 2 * 16                            # 3x3 conv at 4x4
    for size in sizes[1:]:
        macs += 9 * (channels(size // 2) + channels(size)) * channels(size) * size**2
    finest = sizes[-1]
    if lean:
        macs += 9 * channels(finest) * config.raw_channels * LEAN_UPSCALE**2 * finest**2
    else:
        macs += channels(finest) * config.raw_channels * finest**2
    return 2 * macs


# ---------------------------------------------------------------------------- FLOPs
def test_lean_generator_costs_at_most_40_mflop_per_128_navier_stokes_field():
    heads, schema, encoder = _heads("navier_stokes2d", resolution=128)
    width = TrainConfig().width                      # what `surrogate train --arch lean` builds
    lean = ModelConfig.for_resolution(128, heads.raw_channels, n_channels(schema.fields),
                                      encoder.dim, width=width, arch="lean")
    flops = generator_flops(lean, heads)
    assert flops <= 40e6
    # the counter counts exactly the convolutions and linear layers (heads' FFTs: nothing)
    assert flops == _analytic_flops(lean) == generator_flops(lean)
    # the default generator of the measured 39x (width 16), counted the same way
    default = ModelConfig.for_resolution(128, heads.raw_channels, n_channels(schema.fields),
                                         encoder.dim, width=16)
    default_flops = generator_flops(default)
    assert default_flops == _analytic_flops(default)
    assert 0.8e9 < default_flops < 0.95e9 and default_flops > 40 * flops


def test_flop_count_is_linear_in_width_squared_not_in_the_weights():
    heads, schema, encoder = _heads("navier_stokes2d")
    config = _lean(heads, schema, encoder, width=16).config
    torch.manual_seed(123)                          # other weights: the same count
    assert generator_flops(config) == generator_flops(config) == _analytic_flops(config)
    with pytest.raises(ValueError, match="raw channels"):
        generator_flops(ModelConfig(**{**config.to_dict(), "raw_channels": 3}), heads)


# ------------------------------------------------------------------- physics heads
def _violations(output: np.ndarray, grid: PeriodicGrid) -> tuple[float, float, float]:
    """Navier–Stokes output (B, 3, N, N): relative max |div u|, max |w - curl u| and
    max |<w>|, measured with numpy (simulators.grid)."""
    vorticity, velocity = output[:, 0], np.moveaxis(output[:, 1:3], 1, -1)
    gradient = np.stack([grid.gradient(velocity[..., 0]), grid.gradient(velocity[..., 1])])
    return (np.abs(grid.divergence(velocity)).max() / np.abs(gradient).max(),
            np.abs(vorticity - grid.curl(velocity)).max() / np.abs(vorticity).max(),
            np.abs(vorticity.mean(axis=(-2, -1))).max() / np.sqrt(np.mean(vorticity**2)))


@pytest.mark.parametrize("spectral_envelope", [False, True])
def test_navier_stokes_fields_of_the_lean_generator_keep_every_invariant(spectral_envelope):
    heads, schema, encoder = _heads("navier_stokes2d")
    assert heads.heads == {"vorticity": "curl", "velocity": "stream_function_energy"}
    generator = _lean(heads, schema, encoder, spectral_envelope=spectral_envelope)
    noise, condition = _latents(generator.config, 6)
    condition[:3, -1] = -1.0                                      # t = 0: E = E_0 exactly
    with torch.no_grad():
        fields = heads(generator(noise, condition).double(), condition).numpy()
    assert fields.shape == (6, 3, N, N) and np.all(np.isfinite(fields))
    divergence, curl, mean = _violations(fields, PeriodicGrid(N, schema.box_size))
    assert divergence < 1e-12 and curl < 1e-12 and mean < 1e-12
    energy = 0.5 * (fields[:, 1:3] ** 2).sum(axis=1).mean(axis=(-2, -1))
    initial = next(i.value for i in schema.invariants if i.kind == "initial_energy")
    np.testing.assert_allclose(energy[:3], initial, rtol=1e-10)
    assert np.abs(energy[3:] - initial).max() > 1e-6 * initial     # the check can fail


@pytest.mark.parametrize("spectral_envelope", [False, True])
@pytest.mark.parametrize("system", ["gaussian_random_field", "gray_scott", "ising"])
def test_scalar_heads_keep_their_bounds_and_means_with_the_lean_generator(system,
                                                                          spectral_envelope):
    heads, schema, encoder = _heads(system)
    generator = _lean(heads, schema, encoder, spectral_envelope=spectral_envelope)
    noise, condition = _latents(generator.config, 4)
    with torch.no_grad():
        raw = 30.0 * generator(noise, condition).double()        # far into the tails
        fields = heads.snap_discrete(heads(raw, condition)).numpy()
    assert np.all(np.isfinite(fields))
    for index, spec in enumerate(schema.fields):
        field = fields[:, index]
        for invariant in schema.invariants:
            if invariant.field != spec.name:
                continue
            if invariant.kind == "zero_mean":
                assert np.abs(field.mean(axis=(-2, -1))).max() < 1e-12 * np.abs(field).max()
            if invariant.kind == "bounded":
                assert invariant.low is None or field.min() >= invariant.low
                assert invariant.high is None or field.max() <= invariant.high
            if invariant.kind == "discrete_values":
                assert set(np.unique(field)) <= set(invariant.values)
                assert len(np.unique(field)) == 2


# ------------------------------------------------------------------- architecture
def test_lean_generator_has_no_wide_full_resolution_layer_and_its_outputs_vary():
    heads, schema, encoder = _heads("navier_stokes2d", resolution=64)
    generator = _lean(heads, schema, encoder, width=16)
    config = generator.config
    assert config.lean_block_sizes == (4, 8, 16)
    assert [config.lean_channels(s) for s in config.lean_block_sizes] == [32, 16, 8]
    assert [block.conv2.conv.weight.shape[0] for block in generator.blocks] == [16, 8]
    noise, condition = _latents(config, 4)
    with torch.no_grad():
        a = generator(noise, condition)
        b = generator(noise, condition.flip(0))
        c = generator(noise.flip(0), condition)
    assert a.shape == (4, heads.raw_channels, 64, 64) and a.dtype == torch.float32
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_sub_pixel_output_starts_as_periodic_bilinear_upsampling_and_commutes_with_shifts():
    torch.manual_seed(0)
    layer = _SubPixelOutput(5, 2, 4)
    x = torch.randn(3, 5, 8, 8, dtype=torch.float64)
    layer = layer.double()
    weight = layer.conv.weight.detach().reshape(2, 16, 5, 3, 3)
    projection = weight[:, 0].sum(dim=(-2, -1))                 # the taps of a sub-pixel sum to 1
    low = torch.einsum("rc,bcij->brij", projection, x)
    padded = F.pad(low, (1, 1, 1, 1), mode="circular")
    expected = F.interpolate(padded, scale_factor=4.0, mode="bilinear",
                             align_corners=False)[..., 4:-4, 4:-4]
    with torch.no_grad():
        out = layer(x)
        # the weights were rounded to float32 when the layer was made (eps 6e-8 per tap)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        layer.conv.weight.add_(0.1 * torch.randn_like(layer.conv.weight))
        shifted = layer(torch.roll(x, shifts=(1, -2), dims=(-2, -1)))
        torch.testing.assert_close(shifted, torch.roll(layer(x), shifts=(4, -8),
                                                       dims=(-2, -1)))
        assert not torch.allclose(layer(x), expected, atol=1e-3)


def test_every_lean_parameter_gets_a_gradient():
    heads, schema, encoder = _heads("navier_stokes2d")
    generator = _lean(heads, schema, encoder).train()
    noise, condition = _latents(generator.config, 4)
    float_heads = OutputHeads.from_schema(schema, heads.normalizer)
    fields = float_heads(generator(noise, condition), condition)
    fields.square().mean().backward()
    missing = [name for name, p in generator.named_parameters()
               if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing and len(list(generator.parameters())) > 20


@pytest.mark.parametrize("spectral_envelope", [False, True])
def test_lean_generator_gives_exactly_opposite_fields_for_opposite_z0_when_negate(
        spectral_envelope):
    heads, schema, encoder = _heads("ising")
    generator = _lean(heads, schema, encoder, negate=True, spectral_envelope=spectral_envelope)
    noise, condition = _latents(generator.config, 6)
    flipped = noise.clone()
    flipped[:, 0] = -flipped[:, 0]
    with torch.no_grad():
        a = generator(noise, condition, pixel_noise=False)
        b = generator(flipped, condition, pixel_noise=False)
        assert torch.equal(a, -b)
        assert torch.equal(heads(-a.double(), condition), -heads(a.double(), condition))
    assert torch.equal(latent_sign(noise), -latent_sign(flipped))
    plain = Generator(ModelConfig(**{**generator.config.to_dict(), "negate": False})).eval()
    plain.load_state_dict(generator.state_dict())
    with torch.no_grad():
        c = plain(noise, condition, pixel_noise=False)
        d = plain(flipped, condition, pixel_noise=False)
    assert not torch.allclose(c, -d, atol=1e-3)


# ---------------------------------------------------------------------- configuration
def test_arch_round_trips_and_a_config_without_it_is_the_default_generator():
    heads, schema, encoder = _heads("navier_stokes2d")
    lean = _lean(heads, schema, encoder).config
    assert ModelConfig.from_dict(json.loads(json.dumps(lean.to_dict()))) == lean
    old = {key: value for key, value in lean.to_dict().items() if key != "arch"}
    assert ModelConfig.from_dict(old).arch == "default"
    assert same_model(old, ModelConfig(**{**lean.to_dict(), "arch": "default"}))
    assert not same_model(old, lean)
    with pytest.raises(ValueError, match="arch must be one of") as info:
        ModelConfig(**{**lean.to_dict(), "arch": "wide"})
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown arch 'wide'"):
        TrainConfig(arch="wide")
    # a lean state dict does not fit a default generator of the same sizes
    default = Generator(ModelConfig(**{**lean.to_dict(), "arch": "default"}))
    with pytest.raises(RuntimeError):
        default.load_state_dict(Generator(lean).state_dict())


# ----------------------------------------------------------------- training, resume
SHORT = TrainConfig(steps=4, batch_size=4, width=8, noise_dim=16, log_every=1,
                    validate_every=4, checkpoint_every=2, sample_every=1000, r1_interval=2,
                    validation_samples=8, temporal_weight=0.0)


def test_lean_run_trains_resumes_exactly_and_its_checkpoint_records_the_arch(tmp_path):
    lean = TrainConfig(**{**SHORT.to_dict(), "arch": "lean", "steps": 3})
    train(SAMPLE, tmp_path / "straight", lean, progress=False)
    train(SAMPLE, tmp_path / "split", lean, progress=False, steps=2)
    assert train(SAMPLE, tmp_path / "split", resume=True, progress=False,
                 steps=3)["steps_this_run"] == 1
    a, b = last_checkpoints_agree(tmp_path / "straight", tmp_path / "split")
    assert a["model"]["arch"] == "lean" and a["step"] == b["step"] == 3
    assert a["model"]["output_noise"] is True            # the trainer's lean generator
    assert torch.all(a["generator"]["output_noise.strength"] != 0)   # it learned to use it
    saved = json.loads((tmp_path / "split" / "config.json").read_text())
    assert saved["train"]["arch"] == saved["model"]["arch"] == "lean"
    initial = Generator(ModelConfig.from_dict(a["model"])).state_dict()
    assert not torch.equal(initial["to_raw.conv.weight"], a["generator"]["to_raw.conv.weight"])
    model = load_surrogate(tmp_path / "straight", "last", device="cpu")
    assert model.model_config.arch == "lean"
    noise = torch.randn(2, model.model_config.noise_dim)
    fields = model.sample(np.zeros((2, model.encoder.dim), dtype=np.float32), noise)
    assert fields.shape == (2, 3, 32, 32) and np.all(np.isfinite(fields))


def test_cli_takes_the_arch_and_refuses_an_unknown_one_writing_nothing(tmp_path, capsys):
    fast = ["--steps", "1", "--batch-size", "4", "--width", "8", "--validate-every", "1",
            "--sample-every", "1", "-q"]
    assert main(["train", SAMPLE, "-o", str(tmp_path / "bad"), "--arch", "wide", *fast]) == 2
    assert "unknown arch 'wide'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["train", SAMPLE, "-o", str(tmp_path / "run"), "--arch", "lean", *fast]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["arch"] == saved["model"]["arch"] == "lean"


@pytest.mark.slow
def test_a_run_written_before_the_arch_option_loads_and_resumes_as_default(tmp_path):
    run = tmp_path / "old"
    train(SAMPLE, run, SHORT, progress=False, steps=2)
    forget_option(run, "arch")      # as a run of an older version has none
    model = load_surrogate(run, "best", device="cpu")
    assert model.model_config.arch == "default"
    assert "to_raw.weight" in model.generator.state_dict()
    assert train(SAMPLE, run, resume=True, progress=False, steps=3)["steps"] == 3
    assert load_checkpoint(run / "checkpoints" / "last.pt")["model"]["arch"] == "default"


@pytest.mark.slow
def test_a_lean_run_written_before_the_output_noise_resumes_without_it(tmp_path,
                                                                       monkeypatch):
    """A lean run of an older version (no full-resolution output noise, no key) loads
    and resumes as it was built."""
    import surrogate.train.trainer as trainer_module
    build = ModelConfig.for_resolution

    def without_noise(*args, **options):
        return build(*args, **{**options, "output_noise": False})

    run = tmp_path / "old"
    lean = TrainConfig(**{**SHORT.to_dict(), "arch": "lean"})
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module.ModelConfig, "for_resolution", without_noise)
        train(SAMPLE, run, lean, progress=False, steps=2)
    forget_option(run, "output_noise")
    assert train(SAMPLE, run, resume=True, progress=False, steps=3)["steps"] == 3
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["model"]["output_noise"] is False
    assert not any(name.startswith("output_noise") for name in state["generator"])
    model = load_surrogate(run, "last", device="cpu")
    assert model.model_config.arch == "lean" and model.generator.output_noise is None


def test_output_noise_adds_independent_noise_per_raw_channel_only_with_pixel_noise():
    """The raw channels of two forwards differ by the output noise alone (the other
    noise inputs at zero strength): independent per channel, strength times N(0, 1)."""
    heads, schema, encoder = _heads("navier_stokes2d")
    config = ModelConfig.for_resolution(N, heads.raw_channels, n_channels(schema.fields),
                                        encoder.dim, width=8, arch="lean",
                                        output_noise=True)
    torch.manual_seed(0)
    generator = Generator(config).eval()
    strength = torch.tensor([0.5, 2.0])[:heads.raw_channels]
    with torch.no_grad():
        generator.output_noise.strength.copy_(strength.reshape(1, -1, 1, 1))
    noise, condition = _latents(config, 64)
    with torch.no_grad():
        quiet = generator(noise, condition, pixel_noise=False)
        difference = generator(noise, condition) - quiet
    assert torch.equal(generator(noise, condition, pixel_noise=False), quiet)
    std = difference.std(dim=(0, 2, 3))
    torch.testing.assert_close(std, strength, rtol=0.02, atol=0.0)
    correlation = torch.corrcoef(difference.transpose(0, 1).reshape(heads.raw_channels, -1))
    assert abs(float(correlation[0, 1])) < 0.02
