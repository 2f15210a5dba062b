"""Networks of the conditional GAN: condition embedding, generator, discriminator.

Conventions: fields are channels-first float32 tensors ``(B, C, N, N)`` on the periodic
square (``N`` a power of two, 16 .. 1024); the condition ``c`` is ``(B, condition_dim)``
in ``[-1, 1]`` (physical parameters normalised to their ranges, plus snapshot time).
The generator returns ``raw_channels`` unconstrained channels; the physics output heads
(:mod:`surrogate.constraints`) and the normaliser turn them into the ``in_channels``
normalised fields that the discriminator judges.

Architecture (references next to each layer's docstring):

* :class:`ConditionEmbedding` -- MLP ``c -> e``; G and D each own one.
* :class:`Generator` -- StyleGAN-like (Karras et al. 2019, 2020): a mapping MLP turns
  the pixel-normalised noise and the embedding into ``w``; the style ``s = [w, e]``
  drives a linear layer to a 4x4 feature map, then at every resolution 4 .. N:
  (periodic 2x upsampling,) 3x3 circular convolutions, each followed by an AdaIN-style
  normalisation whose scale and shift are affine maps of ``s`` (so the condition enters
  every layer at every resolution), per-pixel noise with learned strength and
  LeakyReLU(0.2); a final 1x1 convolution gives the raw channels. Resize-convolutions,
  no transposed convolutions (no checkerboard, Odena et al. 2016).
  With ``ModelConfig.arch = "lean"`` the same style path drives thin stages up to N / 4
  only, and a sub-pixel convolution (pixel shuffle, Shi et al. 2016) makes the N x N
  raw channels: about 50x fewer FLOPs at N = 128 (see the class docstring); the
  trainer gives it fresh per-pixel noise on the raw channels at full resolution
  (``ModelConfig.output_noise``), its only source of fine-scale randomness.
  With ``ModelConfig.spectral_envelope`` the raw channels then pass a conditional
  isotropic filter (:class:`SpectralEnvelope`): one gain per channel and integer
  wavenumber shell, a function of the condition only, so the mean spectrum at each
  condition is one linear map away from the condition embedding.
* :class:`Discriminator` -- residual (StyleGAN2's "resnet" D) with circular padding and
  2x2 average pooling down to 4x4, optional spectral normalisation of every weight
  (Miyato et al. 2018), minibatch standard deviation (Karras et al. 2018/2020), global
  sum pooling, a linear logit plus the projection term ``<V e, h>`` (Miyato & Koyama
  2018) and, optionally, a spectral branch reading the radially averaged log power
  spectrum of the input (Durall et al. 2020 use the spectrum to expose up-sampling
  artefacts).
* :class:`EnsembleDiscriminator` -- the same network reading two samples at one
  condition stacked on channels, plus a branch reading the largest, smallest and RMS
  values of their normalised circular cross-correlation (:func:`pair_correlation`): a
  pair that is one pattern at two places has a peak of 1, wherever the shift is.

Symmetry: every convolution pads circularly and the only spatial reductions are 2x2
average pooling and global pooling, so ``D`` is exactly invariant under periodic shifts
by multiples of ``2 ** config.n_downsamplings`` pixels, and the generator commutes with
the periodic domain (no seams at the borders). D therefore cannot see a pattern that
every latent of one condition puts at the same place; ``ModelConfig.shift_x`` /
``shift_y`` roll each output by a latent-drawn shift so that no place is special.

Initialisation: weights of convolutions and linear layers are drawn from
``N(0, gain^2 / fan_in)`` with ``gain = sqrt(2 / (1 + 0.2^2))`` before a LeakyReLU(0.2)
(He et al. 2015) and ``gain = 1`` before a linear use (styles, outputs, projections);
biases start at 0, noise strengths at 0 (StyleGAN). With spectral norm the scale of the
initial weight does not matter, only its direction.

Mixed precision: everything runs under bf16 autocast; the normalisations, the minibatch
statistics and the spectra are computed in float32, and both networks return float32.
DDP: in training mode (``pixel_noise=True``) every parameter takes part in every forward.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _apply_spectral_norm

from surrogate.losses import radial_power_spectrum, shell_average_matrix, shell_index

__all__ = [
    "ARCHS",
    "LOW_MODE_INITIAL_AMPLITUDE",
    "LOW_MODE_LATENT_START",
    "SHIFT_LATENT_INDEX",
    "UPSAMPLE_MODES",
    "ConditionEmbedding",
    "Discriminator",
    "EnsembleDiscriminator",
    "GaussianLowModes",
    "Generator",
    "MinibatchStdDev",
    "ModelConfig",
    "SpectralEnvelope",
    "latent_shift",
    "low_mode_wavenumbers",
    "mbstd_group",
    "pair_correlation",
    "parameter_count",
    "periodic_shift",
    "periodic_upsample2x",
    "same_model",
]

LEAKY_SLOPE = 0.2
_LRELU_GAIN = math.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2))
_NORM_EPS = 1e-5          # instance-norm variance floor
_MBSTD_EPS = 1e-8         # minibatch-stddev variance floor
_SPECTRAL_FLOOR = 1e-6    # floor of the white-noise-relative spectrum seen by D's branch
UPSAMPLE_MODES = ("bilinear", "nearest")
#: generator architectures (``ModelConfig.arch``): the StyleGAN-like network computing at
#: every resolution up to ``N``, and the lean one computing up to ``N / 4`` (see
#: :class:`Generator`)
ARCHS = ("default", "lean")
#: side ratio of the lean generator's output to its finest feature map (pixel shuffle)
LEAN_UPSCALE = 4
#: fewest feature channels of a lean generator stage
LEAN_MIN_CHANNELS = 4
#: bound on |log gain| of the spectral envelope (a factor e^6 ~ 400 in amplitude)
ENVELOPE_LOG_GAIN_MAX = 6.0
_MIN_RESOLUTION, _MAX_RESOLUTION = 16, 1024


# ------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class ModelConfig:
    """Sizes and switches of the generator and discriminator (JSON-able, plain types).

    Channel rule: the feature maps at spatial size ``r`` have
    ``channels(r) = min(max_width, base_width * resolution / r)`` channels, i.e.
    ``base_width`` at full resolution, doubling at every halving, capped at
    ``max_width``. G and D use the same rule (D mirrors G).

    Attributes:
        resolution: side ``N`` of the square fields, a power of two in 16 .. 1024.
        raw_channels: unconstrained channels the generator outputs (before the heads).
        in_channels: normalised field channels the discriminator reads.
        condition_dim: length of the condition vector (parameters + time).
        noise_dim: length of the latent noise vector ``z``.
        embedding_dim: width of the condition embedding and of the mapping output ``w``.
        base_width: channels at full resolution.
        max_width: cap on the channels at coarse resolutions.
        spectral_norm: spectral normalisation of every D weight (Miyato et al. 2018).
        mbstd_group_size: samples per minibatch-stddev group (the largest divisor of the
            batch size not above it is used; 1 makes the extra feature map zero).
        spectral_branch: D also reads the radially averaged log power spectrum.
        upsample_mode: ``"bilinear"`` (periodic, smoother spectra) or ``"nearest"``.
        negate: the system's law is invariant under ``f -> -f`` of every field (declared
            symmetry ``negate``, e.g. Ising spins in zero field), built in: G is
            sign-equivariant, ``G(z) = s G(z')`` with ``s = sign(z_0)`` and ``z' = (|z_0|,
            z_1, ...)``, so the latents ``z`` and ``(-z_0, z_1, ...)`` give exactly opposite
            raw outputs and each sign is drawn with probability 1/2 whatever the weights;
            D is sign-invariant, ``D(x) = (D'(x) + D'(-x)) / 2``. Exact in physical space
            when the normalisation has no offset and the output heads are odd (the
            trainer checks both).
        negate_each_snapshot: with ``negate``, the sign ``s`` is drawn afresh, +-1 with
            probability 1/2, at every forward with pixel noise, from the pixel noise's
            random stream, instead of ``sign(z_0)``: the snapshots of one latent at
            several times then have independent signs, as the trajectories of a system
            declaring ``negate_each_snapshot`` do (Ising under Swendsen-Wang; one sign per
            latent made every trained generator keep, or always flip, the sign between
            snapshots, where the simulator flips half the time). Without pixel noise the
            sign stays ``sign(z_0)``. Checkpoints written before the key existed have it
            off.
        arch: generator architecture, ``"default"`` or ``"lean"`` (:class:`Generator`;
            the discriminator is the same for both). A checkpoint written before the key
            existed holds a ``"default"`` generator.
        spectral_envelope: the generator's raw channels pass a conditional isotropic
            filter, a gain per channel and wavenumber shell set by the condition alone
            (:class:`SpectralEnvelope`; identity at initialisation). Checkpoints written
            before the key existed have none.
        output_noise: fresh Gaussian noise per pixel and raw channel, times a learned
            strength per raw channel (zero at initialisation), is added to the raw
            channels at full resolution, before the envelope (:class:`_PixelNoise`): the
            stochastic fine scales of a generator whose feature maps stop at ``N / 4``
            (the lean one, for which the trainer sets it), shaped by the envelope.
            Checkpoints written before the key existed have none.
        shift_x, shift_y: the system's law is invariant under periodic shifts along x
            (array axis -2) / y (axis -1) (declared symmetries ``shift``, ``shift_x``,
            ``shift_y``), built in: every output is rolled by a whole-cell shift drawn
            uniformly from ``0 .. N-1`` along each such axis, read off the latent
            (:func:`latent_shift`: ``z_1`` for x, ``z_2`` for y), so the snapshots of one
            latent share their shift and the generated law is exactly shift-invariant
            whatever the weights. A pattern the generator puts at a fixed place for
            every latent of one condition (which a discriminator with circular padding
            and global pooling cannot see) then lands at a uniformly random place, as in
            the simulations. Checkpoints written before the keys existed have neither.
        low_modes: ``K``, the number of lowest wavenumber shells (1 .. K) whose Fourier
            modes are Gaussian by construction (:class:`GaussianLowModes`): on every raw
            channel the network's content in those shells is replaced by a coefficient
            per independent mode read off its own latent coordinates times a
            conditional amplitude, so the largest scales -- a few modes a sample, which
            a convolutional generator makes with too little power and scatter -- have
            a Gaussian field's law. 0 (the default, and
            checkpoints written before the key existed): none.
    """

    resolution: int
    raw_channels: int
    in_channels: int
    condition_dim: int
    noise_dim: int = 64
    embedding_dim: int = 128
    base_width: int = 32
    max_width: int = 256
    spectral_norm: bool = True
    mbstd_group_size: int = 4
    spectral_branch: bool = True
    upsample_mode: str = "bilinear"
    negate: bool = False
    negate_each_snapshot: bool = False
    arch: str = "default"
    spectral_envelope: bool = False
    output_noise: bool = False
    shift_x: bool = False
    shift_y: bool = False
    low_modes: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            expected = {"bool": bool, "str": str}.get(str(field.type), int)
            if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"ModelConfig.{field.name} must be an int, got {value!r}")
            if expected is not int and not isinstance(value, expected):
                raise ValueError(
                    f"ModelConfig.{field.name} must be a {expected.__name__}, got {value!r}"
                )
        n = self.resolution
        if not (_MIN_RESOLUTION <= n <= _MAX_RESOLUTION and n & (n - 1) == 0):
            raise ValueError(
                f"ModelConfig.resolution must be a power of two in {_MIN_RESOLUTION}.."
                f"{_MAX_RESOLUTION}, got {n}"
            )
        if self.low_modes < 0 or self.low_modes > self.resolution // 4:
            raise ValueError(f"ModelConfig.low_modes must be in 0..{self.resolution // 4} "
                             f"(N / 4), got {self.low_modes}")
        if self.low_modes:
            needed = 2 * len(low_mode_wavenumbers(self.low_modes))
            if self.noise_dim < needed + LOW_MODE_LATENT_START:
                raise ValueError(
                    f"ModelConfig.low_modes = {self.low_modes} reads {needed} latent "
                    f"coordinates (2 x {needed // 2} modes) after the first "
                    f"{LOW_MODE_LATENT_START}: noise_dim must be >= "
                    f"{needed + LOW_MODE_LATENT_START}, got {self.noise_dim}")
        for name in ("raw_channels", "in_channels", "condition_dim", "noise_dim",
                     "embedding_dim", "base_width", "mbstd_group_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_width < self.base_width:
            raise ValueError(
                f"ModelConfig.max_width ({self.max_width}) must be >= base_width "
                f"({self.base_width})"
            )
        if self.upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(
                f"ModelConfig.upsample_mode must be one of {UPSAMPLE_MODES}, "
                f"got {self.upsample_mode!r}"
            )
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.negate_each_snapshot and not self.negate:
            raise ValueError("ModelConfig.negate_each_snapshot needs negate")
        if (self.shift_x or self.shift_y) and self.noise_dim < 3:
            raise ValueError("ModelConfig.shift_x / shift_y read z_1 and z_2: noise_dim must "
                             f"be >= 3, got {self.noise_dim}")

    @classmethod
    def for_resolution(cls, resolution: int, raw_channels: int, in_channels: int,
                       condition_dim: int, width: int = 32, **options: Any) -> ModelConfig:
        """The default sizes for ``resolution``: ``base_width = width``, cap ``8 * width``.

        With ``width = 32`` that is 32 channels at ``N``, 64 at ``N / 2``, 128 at ``N / 4``
        and 256 at ``N / 8`` and coarser: G / D have about 2.8 M / 1.3 M parameters at
        N = 32, 4.2 M / 2.6 M at 64 and 5.7 M / 3.8 M at 128 (3 input channels, spectral
        branch on). ``options`` sets any other field (e.g. ``spectral_branch=False``).
        """
        options.setdefault("max_width", 8 * width)
        return cls(resolution=resolution, raw_channels=raw_channels, in_channels=in_channels,
                   condition_dim=condition_dim, base_width=width, **options)

    @property
    def n_downsamplings(self) -> int:
        """Number of 2x steps between ``resolution`` and the 4x4 base, ``log2(N) - 2``."""
        return self.resolution.bit_length() - 3

    @property
    def block_sizes(self) -> tuple[int, ...]:
        """Spatial sizes of the generator stages, ``(4, 8, ..., N)``."""
        return tuple(4 * 2**i for i in range(self.n_downsamplings + 1))

    def channels(self, size: int) -> int:
        """Feature channels at spatial size ``size`` (a stage size, 4 .. N)."""
        return min(self.max_width, self.base_width * self.resolution // size)

    @property
    def lean_block_sizes(self) -> tuple[int, ...]:
        """Spatial sizes of the lean generator's stages, ``(4, 8, ..., N / 4)``."""
        return self.block_sizes[:-2]

    def lean_channels(self, size: int) -> int:
        """Feature channels of the lean generator at stage size ``size`` (4 .. N / 4):
        ``max(4, 8 * base_width / size)``, i.e. ``2 * base_width`` at 4x4, halving at every
        doubling of the side down to a floor of 4, whatever ``N`` (64, 32, 16, 8 at 4, 8,
        16, 32 for ``base_width = 32``): every stage costs about the same and the finest
        maps are thin."""
        return max(LEAN_MIN_CHANNELS, 8 * self.base_width // size)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields (ints, bools, strs), for a checkpoint's JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ``ValueError``."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {', '.join(unknown)}")
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"missing ModelConfig keys: {', '.join(missing)}")
        return cls(**data)


def same_model(saved: Any, config: ModelConfig) -> bool:
    """Whether a checkpoint's ``model`` dict describes ``config`` (keys added since it was
    written take their defaults)."""
    try:
        return ModelConfig.from_dict(dict(saved)) == config
    except (TypeError, ValueError):
        return False


def parameter_count(module: nn.Module) -> int:
    """Number of trainable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- layers
def _init_weight(layer: nn.Conv2d | nn.Linear, gain: float) -> None:
    """``weight ~ N(0, gain^2 / fan_in)``, ``bias = 0`` (He et al. 2015)."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, mean=0.0, std=gain / math.sqrt(fan_in))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _conv(in_channels: int, out_channels: int, kernel_size: int, gain: float,
          spectral_norm: bool = False, bias: bool = True) -> nn.Module:
    """``kernel_size`` x ``kernel_size`` convolution with circular ("same") padding."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                     padding_mode="circular", bias=bias)
    _init_weight(conv, gain)
    return _apply_spectral_norm(conv) if spectral_norm else conv


def _linear(in_features: int, out_features: int, gain: float, spectral_norm: bool = False,
            bias: bool = True) -> nn.Module:
    """Fully connected layer, initialised as described in the module docstring."""
    linear = nn.Linear(in_features, out_features, bias=bias)
    _init_weight(linear, gain)
    return _apply_spectral_norm(linear) if spectral_norm else linear


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE)


def _check_condition(condition: Tensor, config: ModelConfig) -> None:
    if condition.ndim != 2 or condition.shape[1] != config.condition_dim:
        raise ValueError(
            f"condition must have shape (B, {config.condition_dim}), "
            f"got {tuple(condition.shape)}"
        )


def periodic_upsample2x(x: Tensor, mode: str = "bilinear") -> Tensor:
    """Upsample (B, C, n, n) -> (B, C, 2n, 2n) treating both axes as periodic.

    ``"nearest"`` repeats every pixel 2x2. ``"bilinear"`` interpolates with
    ``align_corners=False`` weights (3/4, 1/4) across the periodic boundary: the input is
    padded circularly by one pixel, interpolated and cropped, so no output pixel uses
    clamped edge values. Both commute with periodic shifts (a shift by ``s`` in, ``2 s``
    out).
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsampling mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    padded = F.pad(x, (1, 1, 1, 1), mode="circular")
    upsampled = F.interpolate(padded, scale_factor=2.0, mode="bilinear", align_corners=False)
    return upsampled[..., 2:-2, 2:-2]


class ConditionEmbedding(nn.Module):
    """Condition MLP ``c (B, condition_dim) -> e (B, embedding_dim)``.

    ``Linear -> LeakyReLU(0.2) -> Linear``; linear output so that it can serve both as a
    style input (G) and as the projection embedding of a projection discriminator (D).
    """

    def __init__(self, condition_dim: int, embedding_dim: int, spectral_norm: bool = False):
        super().__init__()
        self.hidden = _linear(condition_dim, embedding_dim, _LRELU_GAIN, spectral_norm)
        self.output = _linear(embedding_dim, embedding_dim, 1.0, spectral_norm)

    def forward(self, condition: Tensor) -> Tensor:
        """(B, condition_dim) -> (B, embedding_dim)."""
        return self.output(_lrelu(self.hidden(condition)))


class _ModulatedNorm(nn.Module):
    """AdaIN (Huang & Belongie 2017; StyleGAN): ``(1 + a(s)) * IN(x) + b(s)``.

    ``IN`` normalises each channel of each sample over space (float32 statistics);
    ``a, b`` are per-channel affine maps of the style vector ``s`` (FiLM, Perez et al.
    2018), so the condition and the latent set the scale and offset of every channel.
    """

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.affine = _linear(style_dim, 2 * channels, 1.0)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """x (B, C, H, W), style (B, style_dim) -> (B, C, H, W) in x's dtype."""
        scale, shift = self.affine(style).float()[:, :, None, None].chunk(2, dim=1)
        x32 = x.float()
        # two-pass variance of the centred values: as accurate as torch.var_mean and
        # about 15x faster on CPUs (var_mean's Welford reduction is not vectorised there)
        centred = x32 - x32.mean(dim=(2, 3), keepdim=True)
        var = centred.square().mean(dim=(2, 3), keepdim=True)
        normalised = centred * torch.rsqrt(var + _NORM_EPS)
        return (normalised * (1.0 + scale) + shift).to(x.dtype)


class _PixelNoise(nn.Module):
    """Adds ``strength[c] * n(x)`` with ``n ~ N(0, 1)`` per pixel, shared over channels
    (or, with ``per_channel``, drawn independently for every channel).

    StyleGAN's stochastic-variation input: it lets the generator draw small-scale
    detail without spending latent capacity. ``strength`` starts at zero.
    """

    def __init__(self, channels: int, per_channel: bool = False):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.per_channel = per_channel

    def forward(self, x: Tensor, enabled: bool) -> Tensor:
        if not enabled:
            return x
        b, c, h, w = x.shape
        noise = torch.randn(b, c if self.per_channel else 1, h, w, device=x.device,
                            dtype=x.dtype)
        return x + self.strength.to(x.dtype) * noise


class _StyledActivation(nn.Module):
    """``LeakyReLU(PixelNoise(AdaIN(x, s)))`` on (B, C, H, W)."""

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.norm = _ModulatedNorm(channels, style_dim)
        self.noise = _PixelNoise(channels)

    def forward(self, x: Tensor, style: Tensor, pixel_noise: bool) -> Tensor:
        return _lrelu(self.noise(self.norm(x, style), pixel_noise))


class _StyledConv(nn.Module):
    """3x3 circular convolution (no bias: AdaIN sets the offset) + styled activation."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, 3, _LRELU_GAIN, bias=False)
        self.activation = _StyledActivation(out_channels, style_dim)

    def forward(self, x: Tensor, style: Tensor, pixel_noise: bool) -> Tensor:
        return self.activation(self.conv(x), style, pixel_noise)


class _UpBlock(nn.Module):
    """Generator stage: periodic 2x upsampling, then two styled 3x3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, mode: str):
        super().__init__()
        self.mode = mode
        self.conv1 = _StyledConv(in_channels, out_channels, style_dim)
        self.conv2 = _StyledConv(out_channels, out_channels, style_dim)

    def forward(self, x: Tensor, style: Tensor, pixel_noise: bool) -> Tensor:
        """(B, C_in, n, n) -> (B, C_out, 2n, 2n)."""
        x = periodic_upsample2x(x, self.mode)
        return self.conv2(self.conv1(x, style, pixel_noise), style, pixel_noise)


def _bilinear_taps(factor: int) -> Tensor:
    """(factor, 3) weights of the taps ``(-1, 0, +1)`` of periodic bilinear ``factor`` x
    upsampling (``align_corners=False``): output sub-pixel ``a`` sits at the offset
    ``o = (a + 1/2) / factor - 1/2`` (input pixels) from its input pixel, weights
    ``(-o, 1 + o, 0)`` for ``o < 0`` and ``(0, 1 - o, o)`` otherwise."""
    offsets = (torch.arange(factor, dtype=torch.float64) + 0.5) / factor - 0.5
    taps = torch.zeros(factor, 3, dtype=torch.float64)
    taps[:, 0] = (-offsets).clamp(min=0)
    taps[:, 2] = offsets.clamp(min=0)
    taps[:, 1] = 1.0 - offsets.abs()
    return taps


class _SubPixelOutput(nn.Module):
    """Raw channels at ``f`` times the side of the finest feature map (sub-pixel
    convolution, Shi et al. 2016): a 3x3 circular convolution to ``R f^2`` channels, then
    pixel shuffle, (B, C, n, n) -> (B, R f^2, n, n) -> (B, R, f n, f n); output pixel
    ``(f i + a, f j + b)`` of raw channel ``r`` is convolution channel ``r f^2 + a f + b``
    at ``(i, j)``. Periodic: circular padding and a reshape, so shifting the input by
    ``s`` pixels shifts the output by ``f s``.

    Initialisation (the idea of Aitken et al. 2017, with a bilinear kernel): weight
    ``[r f^2 + a f + b, c, u, v] = P[r, c] t[a, u] t[b, v]`` with ``P ~ N(0, 1 / C)`` and
    ``t`` the taps of :func:`_bilinear_taps`, bias 0: the untrained layer is exactly the
    periodic bilinear ``f`` x upsampling of the 1x1 projection ``P x`` (smooth, no
    sub-pixel checkerboard); training changes every sub-pixel's kernel freely.
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(in_channels, out_channels * factor**2, 3, padding=1,
                              padding_mode="circular")
        projection = torch.randn(out_channels, in_channels, dtype=torch.float64)
        projection /= math.sqrt(in_channels)
        taps = _bilinear_taps(factor)
        kernel = torch.einsum("rc,au,bv->rabcuv", projection, taps, taps)
        with torch.no_grad():
            self.conv.weight.copy_(kernel.reshape(out_channels * factor**2, in_channels, 3, 3))
            self.conv.bias.zero_()

    @property
    def weight(self) -> Tensor:
        """The convolution's weight ``(R f^2, C, 3, 3)``."""
        return self.conv.weight

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, n, n) -> (B, R, f n, f n)."""
        y = self.conv(x)
        batch, channels, height, width = y.shape
        f = self.factor
        # F.pixel_shuffle's permutation, written out: half its time on CPUs
        return (y.view(batch, channels // f**2, f, f, height, width)
                .permute(0, 1, 4, 2, 5, 3)
                .reshape(batch, channels // f**2, height * f, width * f))


# ---------------------------------------------------------------------------- generator
class SpectralEnvelope(nn.Module):
    """Conditional isotropic filter of the raw channels (``ModelConfig.spectral_envelope``).

    For raw channel ``r`` of one sample with condition embedding ``e`` (B, E):

        ``x_hat_r(k) <- exp(g_r(|k|; e)) x_hat_r(k)``,
        ``g_r(s; e) = G tanh((A e + b)_{r, s} / G)``,  ``G = ENVELOPE_LOG_GAIN_MAX``,

    one log-gain per channel and integer shell ``s = round(|k|)``
    (:func:`surrogate.losses.shell_index`;
    ``S = round(N / sqrt 2) + 1`` shells), computed from the condition alone -- never the
    latent -- so it carries the part of the spectrum that the condition fixes (e.g. the
    viscous cut-off of a flow, which moves with ``nu`` and time) while the convolutional
    network supplies the random phases and the scatter about it. The gain is real,
    positive and even in ``k``, so a real field stays real, the mean (shell 0) is scaled
    and nothing is shifted; the map is linear in ``x``, so it commutes with the sign of a
    sign-equivariant generator and with every periodic shift, and the physics heads that
    follow keep their invariants exactly. ``A`` and ``b`` start at zero: the envelope is
    the identity at initialisation. Costs one ``rfft2`` and one ``irfft2`` of the raw
    channels (float32, outside autocast) and ``E R S`` multiply-adds.
    """

    def __init__(self, embedding_dim: int, channels: int, resolution: int):
        super().__init__()
        self.register_buffer("shells", shell_index(resolution), persistent=False)
        self.n_shells = int(self.shells.max()) + 1
        self.channels = channels
        self.log_gain = nn.Linear(embedding_dim, channels * self.n_shells)
        nn.init.zeros_(self.log_gain.weight)
        nn.init.zeros_(self.log_gain.bias)

    def gains(self, embedding: Tensor) -> Tensor:
        """Log-gains ``g`` (B, channels, S) of embeddings (B, E), in the layer's dtype
        (float32 also under autocast)."""
        with torch.autocast(device_type=embedding.device.type, enabled=False):
            weight = self.log_gain.weight
            raw = self.log_gain(embedding.to(weight.dtype))
        return ENVELOPE_LOG_GAIN_MAX * torch.tanh(
            raw.reshape(-1, self.channels, self.n_shells) / ENVELOPE_LOG_GAIN_MAX)

    def forward(self, raw: Tensor, embedding: Tensor) -> Tensor:
        """Raw channels (B, channels, N, N) and embeddings (B, E) -> filtered
        (B, channels, N, N), float32 (float64 for a float64 input)."""
        dtype = torch.float64 if raw.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=raw.device.type, enabled=False):
            gain = torch.exp(self.gains(embedding).to(dtype))[..., self.shells]
            spectrum = torch.fft.rfft2(raw.to(dtype), dim=(-2, -1))
            return torch.fft.irfft2(spectrum * gain, s=tuple(raw.shape[-2:]), dim=(-2, -1))


#: latent coordinates 0 .. 2 carry the sign and the shifts; the Gaussian low modes read
#: theirs from the end of the latent and never reach below this index
LOW_MODE_LATENT_START = 3
#: initial low-mode amplitude ``sigma`` in units of ``1 / N`` (:class:`GaussianLowModes`)
LOW_MODE_INITIAL_AMPLITUDE = 1.0


def mode_shell(mode: tuple[int, int]) -> int:
    """The shell ``round(|m|)`` of integer mode numbers ``m = (m_x, m_y)``, halves rounded
    up as :func:`surrogate.losses.shell_index` bins them."""
    return math.floor(math.hypot(*mode) + 0.5)


def low_mode_wavenumbers(shells: int) -> list[tuple[int, int]]:
    """The independent Fourier modes of the shells ``1 .. shells``: integer mode numbers
    ``(m_x, m_y)`` with ``round(|m|)`` in ``1 .. shells`` (the shells of
    :func:`surrogate.losses.shell_index`), one of each conjugate pair ``+-m`` (``m_y > 0``,
    or ``m_y = 0`` and ``m_x > 0``), ordered by shell, then ``m_x``, then ``m_y``.
    4 modes in shell 1, 6 in shell 2, 8 in shell 3 (a real field of these modes has
    twice as many real degrees of freedom: a cosine and a sine each)."""
    reach = shells + 1
    modes = [(m_x, m_y) for m_x in range(-reach, reach + 1) for m_y in range(0, reach + 1)
             if (m_y > 0 or m_x > 0) and 1 <= mode_shell((m_x, m_y)) <= shells]
    return sorted(modes, key=lambda m: (mode_shell(m), m))


class GaussianLowModes(nn.Module):
    """Gaussian lowest wavenumber shells (``ModelConfig.low_modes = K``).

    A sample of a statistically homogeneous Gaussian field has, at every mode ``m``, a
    coefficient ``a_m cos(m.x') + b_m sin(m.x')`` with ``a_m, b_m`` independent normal
    of variance ``P(|m|)``: at the lowest shells of a small grid (4 independent modes
    at ``|m| ~ 1``) the shell power of one sample scatters by a chi-square law with 8
    degrees of freedom, and a convolutional generator, which makes its largest scales
    from a 4x4 map, draws them with too little power and too little of that scatter
    (GRF surrogates: 0.84--0.92 of the simulator's power at ``|m| = 1``). This module
    replaces the modes of shells ``1 .. K`` of raw channel ``r`` (of one sample with
    condition embedding ``e`` (B, E) and latent ``z`` (B, noise_dim)) by

        ``sum_j sigma_{r, s_j}(e) sqrt(2) (xi_{j,0} cos(m_j.x') + xi_{j,1} sin(m_j.x'))``,

    over the independent modes ``m_j`` of those shells (:func:`low_mode_wavenumbers`;
    ``x' = 2 pi (i, j) / N`` on the grid): the network's own content there is projected
    out (the basis is orthogonal, ``<b_j, b_k> = N^2 delta_jk``), every other mode,
    the mean included, is left as it was. The coefficients ``xi`` are the last ``2 M``
    coordinates of ``z`` (``M`` modes; standard normal, so these shells are Gaussian
    with power ``N^4 sigma^2`` per mode pair, set by ``sigma`` alone, whatever the
    weights), one draw shared by the ``R`` raw channels: the channels' largest scales
    are then fully correlated, each with its own signed amplitude, as two fields of one
    system are (a GRF's density is a function of its contrast; with a draw per channel
    the discriminator won outright within 250 GRF steps). ``sigma_{r, s}(e) = (A e +
    b)_{r, s}`` is a
    linear map of the embedding, starting at ``A = 0``, ``b = 1 / N``
    (:data:`LOW_MODE_INITIAL_AMPLITUDE` times ``1 / N``: the amplitude of one mode of a
    white field of unit variance). Not zero: the generated law is even in ``sigma``
    (``xi`` and ``-xi`` are equally likely), so ``sigma = 0`` is a stationary point of
    every loss. (An earlier form added the Gaussian field to the network's, starting at
    zero: its amplitude stayed at 0.001--0.005 over 2,000 GRF steps, and at 0.005--0.009
    after 250 steps started at ``1 / N``: the network kept making the modes.) The
    coordinates are read from the latent, not drawn afresh, so the snapshots of one
    latent share their large scales, and the network, which sees the same ``z``, can
    build the rest of the field around them. The projection and the added modes have
    zero mean and are linear, ``sign(z_0)`` and the shifts read off ``z_1, z_2`` are
    left alone (:data:`LOW_MODE_LATENT_START`), so the heads' invariants, sign
    equivariance and shift equivariance hold as without it. What it gives up: the
    lowest shells are independent of the rest of the field (right for a Gaussian field;
    a coherent structure's large scales lose their phase coupling to its small ones).
    Cost: ``2 R 2 M N^2`` multiply-adds per sample. The trainer starts the amplitude at
    the training data's power in each shell as a function of the condition, weights of
    the map included (:mod:`surrogate.train.low_modes`).
    """

    def __init__(self, embedding_dim: int, channels: int, resolution: int, shells: int):
        super().__init__()
        modes = low_mode_wavenumbers(shells)
        index = torch.arange(resolution, dtype=torch.float64) * (2 * math.pi / resolution)
        phase = torch.stack([m_x * index[:, None] + m_y * index[None, :] for m_x, m_y in modes])
        basis = math.sqrt(2) * torch.stack([phase.cos(), phase.sin()], dim=1)  # (M, 2, N, N)
        # float64, cast to the input's dtype at use: exact also for a float64 forward
        self.register_buffer("basis", basis.reshape(-1, resolution * resolution),
                             persistent=False)
        self.register_buffer("mode_shells", torch.tensor(
            [mode_shell(m) - 1 for m in modes]), persistent=False)
        self.channels = channels
        self.shells = shells
        self.amplitude = nn.Linear(embedding_dim, channels * shells)
        nn.init.zeros_(self.amplitude.weight)
        nn.init.constant_(self.amplitude.bias, LOW_MODE_INITIAL_AMPLITUDE / resolution)

    @property
    def latent_dim(self) -> int:
        """Latent coordinates read, ``2 M`` (the last ones of ``z``): one per basis row."""
        return self.basis.shape[0]

    def amplitudes(self, embedding: Tensor) -> Tensor:
        """``sigma`` (B, channels, K) of embeddings (B, E), float32 also under autocast."""
        with torch.autocast(device_type=embedding.device.type, enabled=False):
            weight = self.amplitude.weight
            return self.amplitude(embedding.to(weight.dtype)).reshape(
                -1, self.channels, self.shells)

    def forward(self, raw: Tensor, noise: Tensor, embedding: Tensor) -> Tensor:
        """Raw channels (B, channels, N, N), the latent (B, noise_dim) as drawn and the
        embeddings (B, E) -> raw channels with shells 1 .. K replaced by the Gaussian
        modes, float32 (float64 for a float64 input)."""
        dtype = torch.float64 if raw.dtype == torch.float64 else torch.float32
        batch = raw.shape[0]
        with torch.autocast(device_type=raw.device.type, enabled=False):
            xi = noise[:, -self.latent_dim:].to(dtype).reshape(
                batch, 1, -1, 2)                                     # (B, 1, M, 2)
            sigma = self.amplitudes(embedding).to(dtype)[..., self.mode_shells]  # (B, R, M)
            coefficients = (xi * sigma[..., None]).reshape(batch, self.channels, -1)
            basis = self.basis.to(dtype)                             # (2M, N*N)
            flat = raw.to(dtype).reshape(batch, self.channels, -1)
            own = flat @ basis.T / flat.shape[-1]                     # the network's modes
            return (flat + (coefficients - own) @ basis).reshape(raw.shape)


class Generator(nn.Module):
    """Conditional generator ``(z, c) -> raw fields``, of architecture ``config.arch``.

    Data flow (shapes for batch B, ``E = embedding_dim``, ``C_r`` the channels at stage
    size ``r``):

    1. ``z`` (B, noise_dim) is pixel-normalised (``z / rms(z)``, StyleGAN);
       ``e = embed(c)`` (B, E).
    2. Mapping MLP (2 layers, LeakyReLU): ``w = f([z, e])`` (B, E); style
       ``s = [w, e]`` (B, 2E) -- the embedding is passed on directly as well, so the
       condition reaches every modulated layer unmixed.
    3. ``Linear(s)`` -> (B, C_4, 4, 4), styled activation, one styled 3x3 conv.
    4. For each later stage size r: periodic 2x upsampling + two styled 3x3 convs (C_r).
    5. Output layer -> (B, raw_channels, N, N), returned as float32; with
       ``config.low_modes``, its lowest shells replaced by Gaussian modes read off
       ``z`` (:class:`GaussianLowModes`); with ``config.spectral_envelope`` filtered by
       :class:`SpectralEnvelope` of ``e``.
    6. With ``config.shift_x`` / ``shift_y``, rolled by the whole-cell shift read off
       ``z`` (:func:`latent_shift`, before step 1 replaces the coordinates it reads);
       with ``config.negate``, multiplied by the global sign.

    A "styled" layer is AdaIN modulated by ``s`` + per-pixel noise + LeakyReLU(0.2).
    Steps 1-2 (the style and condition path) are the same for both architectures:

    * ``"default"`` (StyleGAN-like, Karras et al. 2019): stages r = 4, 8, ..., N with
      ``C_r = config.channels(r)``, output a 1x1 conv. Its cost grows with the full
      resolution: at N = 128, width 16 (channels 128, 128, 128, 64, 32, 16 at 4 .. 128)
      it is 0.88 GFLOP per field.
    * ``"lean"``: stages r = 4, 8, ..., N / 4 with ``C_r = config.lean_channels(r)``
      (widths falling with resolution: ``2 * base_width`` at 4x4, halving at every
      doubling of the side, at least 4), and the output a sub-pixel layer
      (:class:`_SubPixelOutput`): one 3x3 conv to ``16 raw_channels`` channels at N / 4
      and a 4x pixel shuffle, so nothing but the raw channels ever has the full
      resolution (with ``config.output_noise``, as the trainer builds it, fresh noise
      per pixel and raw channel is added there: the per-pixel noise of the stages
      stops at N / 4). FLOPs per field (``torch.utils.flop_counter``: 2 per multiply-add of
      the convolutions and matrix products, :func:`surrogate.flops.generator_flops`),
      width 32, 2 raw channels: 11.5 M at N = 64, 17.4 M at 128 (channels 64, 32, 16, 8
      at 4, 8, 16, 32), 25.7 M at 256. At N = 128 the 3x3 convolutions,
      ``2 * 9 * C_in * C_out * r^2`` each, are 1.2 M at 4x4 and 2.4 M + 1.2 M at each
      later stage (channels halve as the side doubles, so every stage costs the same),
      the output layer 4.7 M, the linear layers (input, styles, mapping, embedding)
      0.9 M. The count grows roughly as ``base_width^2``.

    The physics output heads turn either network's raw channels into fields that keep
    the declared invariants exactly, so the architecture changes nothing of the physics.
    Both keep the module names ``embedding``, ``mapping``, ``input``, ``input_activation``,
    ``input_conv``, ``blocks``, ``to_raw`` (``to_raw.weight`` is the output weight),
    ``output_noise`` (full-resolution noise on the raw channels, or ``None`` without
    ``config.output_noise``), ``low_modes`` (a :class:`GaussianLowModes`, or ``None``
    without ``config.low_modes``) and ``envelope`` (a :class:`SpectralEnvelope`, or
    ``None`` without ``config.spectral_envelope``).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        width = config.embedding_dim
        style_dim = 2 * width
        lean = config.arch == "lean"
        sizes = config.lean_block_sizes if lean else config.block_sizes
        channels = config.lean_channels if lean else config.channels
        base = channels(4)
        self.embedding = ConditionEmbedding(config.condition_dim, width)
        self.mapping = nn.Sequential(
            _linear(config.noise_dim + width, width, _LRELU_GAIN),
            nn.LeakyReLU(LEAKY_SLOPE),
            _linear(width, width, _LRELU_GAIN),
            nn.LeakyReLU(LEAKY_SLOPE),
        )
        self.input = _linear(style_dim, base * 16, 1.0)
        self.input_activation = _StyledActivation(base, style_dim)
        self.input_conv = _StyledConv(base, base, style_dim)
        self.blocks = nn.ModuleList(
            _UpBlock(channels(size // 2), channels(size), style_dim, config.upsample_mode)
            for size in sizes[1:]
        )
        finest = channels(sizes[-1])
        self.to_raw = (_SubPixelOutput(finest, config.raw_channels, LEAN_UPSCALE) if lean
                       else _conv(finest, config.raw_channels, 1, 1.0))
        self.output_noise = (_PixelNoise(config.raw_channels, per_channel=True)
                             if config.output_noise else None)
        self.envelope = (SpectralEnvelope(width, config.raw_channels, config.resolution)
                         if config.spectral_envelope else None)
        self.low_modes = (GaussianLowModes(width, config.raw_channels, config.resolution,
                                           config.low_modes)
                          if config.low_modes else None)

    def forward(self, noise: Tensor, condition: Tensor, pixel_noise: bool = True,
                sign: Tensor | None = None) -> Tensor:
        """Generate raw output channels.

        Args:
            noise: (B, noise_dim) latent, standard normal.
            condition: (B, condition_dim) normalised condition in [-1, 1].
            pixel_noise: draw fresh per-pixel noise (training and sampling); False
                switches it off for deterministic outputs (then the noise strengths take
                no part in the forward: do not train that way under DDP).
            sign: (B,) or (B, 1) of +-1, the global sign ``s`` of each output of a
                sign-equivariant generator (``negate``), given instead of drawn: the
                caller can then balance the signs over a whole job
                (:func:`surrogate.generate.balanced_signs`). ``None`` draws them as
                documented in :class:`ModelConfig`. Refused for a generator without
                ``negate``.
        Returns:
            (B, raw_channels, N, N) float32, unconstrained.
        """
        config = self.config
        if noise.ndim != 2 or noise.shape[1] != config.noise_dim:
            raise ValueError(
                f"noise must have shape (B, {config.noise_dim}), got {tuple(noise.shape)}"
            )
        _check_condition(condition, config)
        drawn = noise
        if sign is not None:
            sign = _check_sign(sign, noise, config)
        elif config.negate and config.negate_each_snapshot and pixel_noise:
            # one fair sign per sample, from the pixel noise's stream
            sign = (torch.randint(0, 2, (noise.shape[0], 1), device=noise.device)
                    * 2 - 1).to(noise.dtype)
        elif config.negate:
            sign = latent_sign(noise)
        if config.negate:
            noise = torch.cat([noise[:, :1].abs(), noise[:, 1:]], dim=1)
        shifts = None
        if config.shift_x or config.shift_y:
            noise, shifts = latent_shift(noise, config)
        z = noise * torch.rsqrt(noise.square().mean(dim=1, keepdim=True) + 1e-8)
        embedding = self.embedding(condition)
        w = self.mapping(torch.cat([z, embedding], dim=1))
        style = torch.cat([w, embedding], dim=1)
        x = self.input(style).reshape(noise.shape[0], -1, 4, 4)
        x = self.input_activation(x, style, pixel_noise)
        x = self.input_conv(x, style, pixel_noise)
        for block in self.blocks:
            x = block(x, style, pixel_noise)
        raw = self.to_raw(x).float()
        if self.output_noise is not None:
            raw = self.output_noise(raw, pixel_noise)
        if self.low_modes is not None:
            raw = self.low_modes(raw, drawn, embedding)
        if self.envelope is not None:
            raw = self.envelope(raw, embedding)
        if shifts is not None:
            raw = periodic_shift(raw, shifts)
        return raw if sign is None else raw * sign[:, :, None, None]


def _check_sign(sign: Tensor, noise: Tensor, config: ModelConfig) -> Tensor:
    """``sign`` as (B, 1) in ``noise``'s dtype and device, or ``ValueError`` naming the
    problem (a generator without ``negate``, a wrong shape, a value other than +-1)."""
    if not config.negate:
        raise ValueError("sign given to a generator that is not sign-equivariant "
                         "(its model has negate off)")
    batch = noise.shape[0]
    if tuple(sign.shape) not in ((batch,), (batch, 1)):
        raise ValueError(f"sign must have shape ({batch},) or ({batch}, 1), "
                         f"got {tuple(sign.shape)}")
    sign = sign.reshape(batch, 1).to(device=noise.device, dtype=noise.dtype)
    if not bool(((sign == 1) | (sign == -1)).all()):
        raise ValueError("sign must hold only +1 and -1")
    return sign


#: latent coordinates that carry the x and y shifts of a shift-equivariant generator
SHIFT_LATENT_INDEX = (1, 2)
#: the uniform fraction fed back as a latent is kept this far from 0 and 1 (float64)
_FRACTION_MARGIN = 1e-12


def latent_shift(noise: Tensor, config: ModelConfig) -> tuple[Tensor, Tensor]:
    """Whole-cell shifts of a shift-equivariant generator, read off the latent.

    For each built-in shift axis ``a`` (``config.shift_x``: a = 0, x; ``config.shift_y``:
    a = 1, y) with latent coordinate ``k = SHIFT_LATENT_INDEX[a]``: ``u = Phi(z_k)`` is
    uniform on (0, 1) (``Phi`` the standard normal CDF), ``N u = s + r`` with the shift
    ``s = floor(N u)`` uniform on ``0 .. N-1`` and the fraction ``r`` uniform on [0, 1)
    and independent of ``s``; ``z_k`` is replaced by ``Phi^-1(r)``, again standard
    normal, so the network's input carries no information about the shift (it cannot
    learn to undo it) and the latent keeps its law. Computed in float64.

    Args:
        noise: (B, noise_dim) latent.
        config: the generator's :class:`ModelConfig` (resolution ``N``, shift axes).
    Returns:
        ``(noise', shifts)``: the latent with ``z_k`` replaced, same dtype; shifts (B, 2)
        int64 in cells along (x, y), 0 along an axis without the symmetry.
    """
    n = config.resolution
    columns = list(noise.unbind(dim=1))
    shifts = torch.zeros(noise.shape[0], 2, dtype=torch.int64, device=noise.device)
    for axis, built_in in enumerate((config.shift_x, config.shift_y)):
        if not built_in:
            continue
        index = SHIFT_LATENT_INDEX[axis]
        scaled = torch.special.ndtr(columns[index].double()) * n
        cell = scaled.floor().clamp(0, n - 1)
        fraction = (scaled - cell).clamp(_FRACTION_MARGIN, 1 - _FRACTION_MARGIN)
        columns[index] = torch.special.ndtri(fraction).to(noise.dtype)
        shifts[:, axis] = cell.to(torch.int64)
    return torch.stack(columns, dim=1), shifts


def periodic_shift(fields: Tensor, shifts: Tensor) -> Tensor:
    """Roll each sample on the periodic grid: ``f'[i, j] = f[(i - s_x) mod N, (j - s_y)
    mod N]`` for fields (B, C, N, N) and integer shifts (B, 2); same shape and dtype
    (a gather: differentiable, one index per sample)."""
    size, channels, n, n_y = fields.shape
    index = torch.arange(n, device=fields.device)
    rows = (index.view(1, n, 1) - shifts[:, 0].view(size, 1, 1)) % n
    columns = (index.view(1, 1, n_y) - shifts[:, 1].view(size, 1, 1)) % n_y
    flat = (rows * n_y + columns).view(size, 1, n * n_y).expand(size, channels, n * n_y)
    return fields.reshape(size, channels, n * n_y).gather(2, flat).view(fields.shape)


def latent_sign(noise: Tensor) -> Tensor:
    """The global sign ``s = sign(z_0)`` (``+1`` at 0) of a sign-equivariant generator,
    shape (B, 1), in ``noise``'s dtype."""
    return torch.where(noise[:, :1] >= 0, 1.0, -1.0).to(noise.dtype)


# ------------------------------------------------------------------------ discriminator
def mbstd_group(batch: int, group_size: int) -> int:
    """Samples per minibatch-stddev group for a batch of ``batch``: the largest divisor of
    ``batch`` not above ``group_size`` (:class:`MinibatchStdDev`; sample ``b`` is in
    group ``b mod (batch / g)``)."""
    return next(g for g in range(min(group_size, batch), 0, -1) if batch % g == 0)


class MinibatchStdDev(nn.Module):
    """Minibatch standard deviation layer (Karras et al. 2018; StyleGAN2 variant).

    The batch B is split into groups of ``g`` samples (``g`` = the largest divisor of B
    not above ``group_size``; sample ``b`` is in group ``b mod (B / g)``). For each group
    the standard deviation over its ``g`` samples of every feature ``(c, y, x)`` is
    averaged over ``c, y, x`` to one number, broadcast to an extra feature map of every
    sample of the group: (B, C, H, W) -> (B, C + 1, H, W). It lets D see the diversity
    of a batch and so penalise mode collapse.

    The statistic is ``sqrt(var + eps) - sqrt(eps)`` with ``eps = 1e-8``, evaluated as
    ``var / (sqrt(var + eps) + sqrt(eps))``: the gradient stays finite at zero variance
    and the feature is exactly zero for identical samples (the variance is computed
    after subtracting the group's first sample, so it is exactly zero then). Computed in
    float32.
    """

    def __init__(self, group_size: int):
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        group = mbstd_group(batch, self.group_size)
        n_groups = batch // group
        y = x.float().reshape(group, n_groups, *x.shape[1:])
        y = y - y[:1]
        y = y - y.mean(dim=0, keepdim=True)
        var = y.square().mean(dim=0)                                    # (n_groups, C, H, W)
        std = var / (torch.sqrt(var + _MBSTD_EPS) + math.sqrt(_MBSTD_EPS))
        feature = std.mean(dim=(1, 2, 3))                               # (n_groups,)
        feature = feature.reshape(1, n_groups, 1, 1, 1).expand(group, -1, 1, height, width)
        return torch.cat([x, feature.reshape(batch, 1, height, width).to(x.dtype)], dim=1)


class _DownBlock(nn.Module):
    """Residual D stage (StyleGAN2 "resnet" D): (B, C_in, n, n) -> (B, C_out, n/2, n/2).

    ``main = avgpool(lrelu(conv3(lrelu(conv3(x)))))``,
    ``skip = conv1(avgpool(x))`` (no bias), output ``(main + skip) / sqrt(2)``.
    """

    def __init__(self, in_channels: int, out_channels: int, spectral_norm: bool):
        super().__init__()
        self.conv1 = _conv(in_channels, in_channels, 3, _LRELU_GAIN, spectral_norm)
        self.conv2 = _conv(in_channels, out_channels, 3, _LRELU_GAIN, spectral_norm)
        self.skip = _conv(in_channels, out_channels, 1, 1.0, spectral_norm, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        main = F.avg_pool2d(_lrelu(self.conv2(_lrelu(self.conv1(x)))), 2)
        skip = self.skip(F.avg_pool2d(x, 2))
        return (main + skip) * math.sqrt(0.5)


class _FeatureBranch(nn.Module):
    """The head of a discriminator branch that reads a feature vector of its input:
    two LeakyReLU layers ``features (B, F) -> h (B, width)`` and the logit
    ``linear(h) + <V e, h>`` (projection on the shared condition embedding ``e``, so it
    judges the features *given* the condition)."""

    def __init__(self, n_features: int, width: int, embedding_dim: int,
                 spectral_norm: bool):
        super().__init__()
        self.hidden1 = _linear(n_features, width, _LRELU_GAIN, spectral_norm)
        self.hidden2 = _linear(width, width, _LRELU_GAIN, spectral_norm)
        self.output = _linear(width, 1, 1.0, spectral_norm)
        self.projection = _linear(embedding_dim, width, 1.0, spectral_norm, bias=False)

    def head(self, features: Tensor, embedding: Tensor) -> Tensor:
        """features (B, F), embedding (B, E) -> (B,) logits."""
        h = _lrelu(self.hidden2(_lrelu(self.hidden1(features))))
        return self.output(h).squeeze(1) + (self.projection(embedding) * h).sum(dim=1)


class _SpectralBranch(_FeatureBranch):
    """Conditional logit from the radially averaged log power spectrum of D's input.

    Features: ``log10(N^2 P_i + 1e-6)`` for every channel and shell ``i = 1 .. N/2``
    (``P`` from :func:`surrogate.losses.radial_power_spectrum`, float32; ``N^2 P`` is 1
    for unit-variance white noise), flattened to ``(B, C * N/2)``; then the
    :class:`_FeatureBranch` head.
    """

    def __init__(self, in_channels: int, resolution: int, width: int, embedding_dim: int,
                 spectral_norm: bool):
        super().__init__(in_channels * (resolution // 2), width, embedding_dim,
                         spectral_norm)
        self.register_buffer("shell_matrix", shell_average_matrix(resolution),
                             persistent=False)

    def forward(self, fields: Tensor, embedding: Tensor) -> Tensor:
        """fields (B, C, N, N), embedding (B, E) -> (B,) logits."""
        n = fields.shape[-1]
        power = radial_power_spectrum(fields, self.shell_matrix)
        features = torch.log10(power * float(n * n) + _SPECTRAL_FLOOR).flatten(start_dim=1)
        return self.head(features, embedding)


class Discriminator(nn.Module):
    """Projection discriminator ``(fields, c) -> logits`` (B,).

    Data flow (``C_r = config.channels(r)``):

    1. 1x1 conv + LeakyReLU: (B, in_channels, N, N) -> (B, C_N, N, N).
    2. Residual stages N -> N/2 -> ... -> 4 (:class:`_DownBlock`).
    3. Minibatch stddev (+1 channel), 3x3 circular conv + LeakyReLU -> (B, C_4, 4, 4).
    4. Global sum pooling -> ``h`` (B, C_4).
    5. ``logit = w.h + b + <V e, h>`` with ``e = embed(c)`` (projection, Miyato & Koyama
       2018), plus the spectral branch's logit when ``config.spectral_branch``.

    With ``config.spectral_norm`` every convolution and linear layer (embedding,
    projection and spectral branch included) is spectrally normalised by one power
    iteration per training-mode forward (``torch.nn.utils.parametrizations``).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        sn = config.spectral_norm
        top = config.channels(4)
        self.embedding = ConditionEmbedding(config.condition_dim, config.embedding_dim, sn)
        self.from_fields = _conv(config.in_channels, config.channels(config.resolution), 1,
                                 _LRELU_GAIN, sn)
        self.blocks = nn.ModuleList(
            _DownBlock(config.channels(size), config.channels(size // 2), sn)
            for size in reversed(config.block_sizes[1:])
        )
        self.mbstd = MinibatchStdDev(config.mbstd_group_size)
        self.final_conv = _conv(top + 1, top, 3, _LRELU_GAIN, sn)
        self.output = _linear(top, 1, 1.0, sn)
        self.projection = _linear(config.embedding_dim, top, 1.0, sn, bias=False)
        self.spectral = (
            _SpectralBranch(config.in_channels, config.resolution, config.embedding_dim,
                            config.embedding_dim, sn)
            if config.spectral_branch else None
        )

    def forward(self, fields: Tensor, condition: Tensor) -> Tensor:
        """Logits of ``fields`` under ``condition``.

        Args:
            fields: (B, in_channels, N, N) normalised fields.
            condition: (B, condition_dim) normalised condition.
        Returns:
            (B,) float32 logits (no sigmoid).
        """
        config = self.config
        expected = (config.in_channels, config.resolution, config.resolution)
        if fields.ndim != 4 or tuple(fields.shape[1:]) != expected:
            raise ValueError(
                f"fields must have shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(fields.shape)}"
            )
        _check_condition(condition, config)
        if config.negate:               # blind to the global sign: (D'(x) + D'(-x)) / 2
            return 0.5 * (self._logits(fields, condition) + self._logits(-fields, condition))
        return self._logits(fields, condition)

    def _logits(self, fields: Tensor, condition: Tensor) -> Tensor:
        embedding = self.embedding(condition)
        x = _lrelu(self.from_fields(fields))
        for block in self.blocks:
            x = block(x)
        x = _lrelu(self.final_conv(self.mbstd(x)))
        h = x.float().sum(dim=(2, 3))
        logits = self.output(h).squeeze(1) + (self.projection(embedding) * h).sum(dim=1)
        if self.spectral is not None:
            logits = logits + self.spectral(fields, embedding)
        return logits.float()


def pair_correlation(first: Tensor, second: Tensor, max_wavenumber: int | None = None,
                     eps: float = 1e-12) -> Tensor:
    """Normalised circular cross-correlation of two fields, channel by channel.

    ``rho_k(s) = sum_x a_k(x) b_k(x + s) / (||a_k|| ||b_k||)`` with ``a_k``, ``b_k`` the
    ``k``-th channels minus their means, for every periodic shift ``s`` (the FFT's
    ``irfft2(conj(A) B)``). Values lie in ``[-1, 1]``; ``rho_k(s) = 1`` exactly where
    ``b_k`` is ``a_k`` rolled by ``s`` (up to an offset and a positive factor), while two
    independent fields of correlation area ``A`` (pixels) give ``|rho| ~ sqrt(A) / N``.
    A constant channel (no variance) gives 0. With ``max_wavenumber`` both fields are
    first low-passed to the wavenumber shells ``round(|m|) <= max_wavenumber``
    (:func:`surrogate.losses.shell_index`, grid units): the correlation of their large
    scales, which independent fine-scale noise added to one pattern does not lower.

    Args:
        first, second: (B, C, N, N) fields.
        max_wavenumber: the largest shell kept (``None``: all).
        eps: floor of ``||a_k||^2 ||b_k||^2`` (keeps constant channels finite).
    Returns:
        (B, C, N, N) float32, ``rho[..., i, j]`` at the shift ``s = (i, j)``.
    """
    if first.shape != second.shape or first.ndim != 4:
        raise ValueError(f"pair_correlation needs two (B, C, N, N) tensors of one shape, "
                         f"got {tuple(first.shape)} and {tuple(second.shape)}")
    a = first.float()
    b = second.float()
    if max_wavenumber is not None:
        keep = shell_index(a.shape[-1], a.device) <= max_wavenumber
        a = torch.fft.irfft2(torch.fft.rfft2(a) * keep, s=a.shape[2:])
        b = torch.fft.irfft2(torch.fft.rfft2(b) * keep, s=b.shape[2:])
    a = a - a.mean(dim=(2, 3), keepdim=True)
    b = b - b.mean(dim=(2, 3), keepdim=True)
    cross = torch.fft.irfft2(torch.fft.rfft2(a).conj() * torch.fft.rfft2(b),
                             s=a.shape[2:])
    norm = (a.square().sum(dim=(2, 3)) * b.square().sum(dim=(2, 3))).clamp_min(eps).sqrt()
    return cross / norm[:, :, None, None]


class _CorrelationBranch(_FeatureBranch):
    """Conditional logit from the correlation map of a pair (:func:`pair_correlation`).

    Features per channel ``k``: ``max_s rho_k(s)``, ``-min_s rho_k(s)`` and the root
    mean square of ``rho_k`` over the ``N^2`` shifts (as ``sqrt(ms + 1e-8) - 1e-4``,
    differentiable twice at a map of zeros), ``(B, 3C)`` -- functions of the
    map that no shift, rotation or reflection of the pair changes, nor where its peak
    lies; then the :class:`_FeatureBranch` head.
    """

    def __init__(self, channels: int, width: int, embedding_dim: int, spectral_norm: bool):
        super().__init__(3 * channels, width, embedding_dim, spectral_norm)

    def forward(self, correlation: Tensor, embedding: Tensor) -> Tensor:
        """correlation (B, C, N, N), embedding (B, E) -> (B,) logits."""
        flat = correlation.flatten(start_dim=2)
        mean_square = flat.square().mean(dim=2)
        # sqrt(ms + eps) - sqrt(eps) (as MinibatchStdDev): 0 with finite gradients, also
        # the second ones of R1, for a map that is exactly 0 (a constant Ising field)
        rms = mean_square / (torch.sqrt(mean_square + _MBSTD_EPS) + math.sqrt(_MBSTD_EPS))
        features = torch.cat([flat.amax(dim=2), -flat.amin(dim=2), rms], dim=1)
        return self.head(features, embedding)


class EnsembleDiscriminator(Discriminator):
    """Discriminator of two samples at one condition: ``(pairs (B, 2C, N, N), c) ->
    logits`` (B,).

    The :class:`Discriminator` of the stacked pair ``[a, b]`` (``a = pairs[:, :C]``)
    plus a correlation branch (:class:`_CorrelationBranch`) that reads the pair's
    correlation map ``rho(a, b)`` (:func:`pair_correlation`) of the scales
    ``|m| <= N / 4`` (:attr:`max_wavenumber`) through its largest, smallest and
    root-mean-square values. The convolutions see a few pixels around each place, so
    on their own two samples that are one pattern at two places (which the simulator's
    independent initial fields never give) look as independent as two real ones; the
    branch sees the peak of height 1 at their relative shift, wherever it lies. It
    reads the large scales only, so that the generator cannot lower the peak by adding
    independent fine-scale noise to one shared pattern (on Gray–Scott a full-band map
    cost twice the spectrum error in the highest wavenumber band). Its features are
    unchanged by any shift, rotation, reflection or joint sign of the pair, so the
    one-sample discriminator's exact symmetries (periodic shifts by multiples of
    ``2 ** n_downsamplings``, ``negate``) hold for the whole.

    Args:
        config: the one-sample model configuration with ``in_channels = 2C`` (the pair).
    """

    def __init__(self, config: ModelConfig):
        if config.in_channels % 2:
            raise ValueError(f"an ensemble discriminator reads pairs: in_channels must be "
                             f"even (2C), got {config.in_channels}")
        super().__init__(config)
        self.correlation = _CorrelationBranch(config.in_channels // 2, config.channels(4),
                                              config.embedding_dim, config.spectral_norm)
        #: the largest wavenumber shell of the correlation map (grid units)
        self.max_wavenumber = config.resolution // 4

    def forward(self, fields: Tensor, condition: Tensor) -> Tensor:
        """Logits of the pairs ``fields`` (B, 2C, N, N) under ``condition`` (B, P+1)."""
        logits = super().forward(fields, condition)          # checks shapes
        half = self.config.in_channels // 2
        correlation = pair_correlation(fields[:, :half], fields[:, half:],
                                       self.max_wavenumber)
        return logits + self.correlation(correlation, self.embedding(condition)).float()
