"""Adversarial losses, the R1 gradient penalty and a spectral loss for the conditional GAN.

Notation: ``D(x, c)`` is the discriminator logit (a real number, no sigmoid) of fields
``x`` under condition ``c``; ``G(z, c)`` the generator followed by its physics output
heads and the normaliser. Every loss below is averaged over the batch and computed in
float32 whatever the autocast dtype of the logits.

Adversarial losses (``kind``):

``"hinge"`` (Lim & Ye 2017; Miyato et al. 2018, SN-GAN)::

    L_D = E_real[ max(0, 1 - D(x)) ] + E_fake[ max(0, 1 + D(G(z))) ]
    L_G = -E_fake[ D(G(z)) ]

``"nonsaturating"`` (Goodfellow et al. 2014, the "-log D" trick; StyleGAN2's choice),
written with ``softplus(t) = log(1 + exp(t))`` so that it never evaluates ``log(0)``::

    L_D = E_real[ softplus(-D(x)) ] + E_fake[ softplus(D(G(z))) ]
        = -E_real[ log sigmoid(D(x)) ] - E_fake[ log(1 - sigmoid(D(G(z)))) ]
    L_G = E_fake[ softplus(-D(G(z))) ] = -E_fake[ log sigmoid(D(G(z))) ]

R1 penalty (Mescheder et al. 2018, "Which training methods for GANs do actually
converge?")::

    R1 = E_real[ |grad_x D(x, c)|^2 ]        (squared L2 norm over all of C, N, N)

added to the discriminator loss as ``(gamma / 2) * R1``. *Lazy regularisation*
(Karras et al. 2020, StyleGAN2, section 4): evaluate it only every ``k`` discriminator
steps (``k = 16`` there) and multiply it by ``k`` so that its average strength is
unchanged: ``L_D += (gamma / 2) * k * R1`` on those steps. (StyleGAN2 also rescales
Adam's learning rate and betas by ``k / (k + 1)``; that is the training loop's business.)

Balanced consistency regularisation (Zhao et al. 2021, "Improved consistency
regularization for GANs"; bCR)::

    CR = E[ (D(x, c) - D(T x, c))^2 ]        T: a random declared symmetry of the system

on real *and* generated fields, added to the discriminator loss as ``lambda * (CR_real
+ CR_fake)``: the discriminator is taught that a declared symmetry of the physics does
not change realism (:func:`consistency_penalty`).

Spectral loss: see :func:`spectral_loss`; the radial power spectrum it compares is
:func:`radial_power_spectrum`, also used by the discriminator's spectral branch. The
spectral scatter loss (:func:`spectral_scatter_loss`) compares how much one sample's
log shell power fluctuates at a condition with the simulator's (:func:`log_shell_power`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSS_KINDS",
    "SPECTRAL_BIAS_SPACES",
    "check_spectral_bias_space",
    "condition_order",
    "consistency_penalty",
    "discriminator_loss",
    "generator_loss",
    "log_shell_power",
    "mode_seeking_loss",
    "r1_penalty",
    "radial_power_spectrum",
    "radial_shell_counts",
    "shell_average_matrix",
    "shell_index",
    "spectral_bias_loss",
    "spectral_loss",
    "spectral_scatter_loss",
    "template_penalty",
]

LOSS_KINDS = ("hinge", "nonsaturating")

#: what :func:`spectral_bias_loss` matches at each condition: the mean log shell power
#: or the mean shell power
SPECTRAL_BIAS_SPACES = ("log", "power")


def check_spectral_bias_space(space: str) -> None:
    """Raise ``ValueError`` naming ``space`` unless it is one of
    :data:`SPECTRAL_BIAS_SPACES`."""
    if space not in SPECTRAL_BIAS_SPACES:
        raise ValueError(f"unknown spectral bias space {space!r} (choose from "
                         f"{', '.join(SPECTRAL_BIAS_SPACES)})")


# ------------------------------------------------------------------ radial power spectrum
def _integer_wavenumbers(n: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Integer wavenumbers ``(m_x, m_y)`` of the rfft2 half plane, shapes (n, 1), (1, n//2+1).

    ``m_x`` runs over ``[-n/2, n/2)`` in FFT order, ``m_y`` over ``0 .. n/2``.
    """
    m_x = torch.fft.fftfreq(n, d=1.0 / n, device=device).round().reshape(n, 1)
    m_y = torch.arange(n // 2 + 1, device=device, dtype=torch.float32).reshape(1, -1)
    return m_x, m_y


def shell_index(n: int, device: torch.device | None = None) -> Tensor:
    """Integer wavenumber shell ``round(|m|)`` of every rfft2 mode of an ``n x n`` field,
    shape ``(n, n // 2 + 1)``, int64 (``m`` in grid units, :func:`_integer_wavenumbers`):
    0 for the mean, ``i`` for ``|m|`` in ``[i - 1/2, i + 1/2)``, up to ``round(n / sqrt 2)``
    in the corners. The shells of :func:`radial_power_spectrum` (1 .. n // 2) and of the
    generator's spectral envelope (all of them)."""
    m_x, m_y = _integer_wavenumbers(n, device)
    # |m|^2 is an integer and (i + 1/2)^2 is not, so there are no rounding ties.
    return torch.floor(torch.sqrt(m_x**2 + m_y**2) + 0.5).long()


def _shell_weights(n: int, device: torch.device | None = None) -> Tensor:
    """Full-plane mode count of every rfft2 mode in every shell, shape (n * (n//2+1), n//2).

    Entry ``[j, i - 1]`` is the multiplicity of the ``j``-th (flattened) rfft2 mode in
    the full Fourier plane if that mode lies in shell ``i`` (``|m|`` in ``[i - 1/2,
    i + 1/2)``), else 0. The multiplicity is 1 for the columns ``m_y = 0`` and
    ``m_y = n/2`` (their mirror modes ``-m`` are in the same column) and 2 for every
    other column (which stands for ``m`` and its conjugate ``-m``).
    """
    shell = shell_index(n, device).reshape(-1, 1).to(torch.float32)
    multiplicity = torch.full((1, n // 2 + 1), 2.0, device=device)
    multiplicity[0, 0] = 1.0
    multiplicity[0, -1] = 1.0
    multiplicity = multiplicity.expand(n, -1).reshape(-1, 1)
    shells = torch.arange(1, n // 2 + 1, device=device, dtype=torch.float32).reshape(1, -1)
    return (shell == shells).to(torch.float32) * multiplicity


def radial_shell_counts(n: int) -> Tensor:
    """Number of full-plane Fourier modes in each shell ``i = 1 .. n // 2``, shape (n // 2,).

    Shell ``i`` holds the integer wavenumbers ``m`` (grid units, ``m_x, m_y`` in
    ``[-n/2, n/2)``) with ``|m|`` in ``[i - 1/2, i + 1/2)``; float32 counts.
    """
    if n < 4 or n % 2:
        raise ValueError(f"n must be an even number >= 4, got {n}")
    return _shell_weights(n).sum(dim=0)


def shell_average_matrix(n: int, device: torch.device | None = None) -> Tensor:
    """Matrix ``A`` of shape (n * (n//2+1), n//2) with ``P = mode_power.flatten(-2) @ A``.

    ``A[j, i - 1]`` = multiplicity of rfft2 mode ``j`` / number of full-plane modes of
    shell ``i``, so the product averages ``|FFT|^2`` over the full-plane modes of each
    shell. Modules that call :func:`radial_power_spectrum` at a fixed ``n`` keep it as a
    buffer and pass it in, so it is not rebuilt on every call.
    """
    weights = _shell_weights(n, device)
    return weights / weights.sum(dim=0, keepdim=True)


def radial_power_spectrum(fields: Tensor, shell_matrix: Tensor | None = None) -> Tensor:
    """Shell-averaged power spectrum of every channel of every sample.

    Normalisation (the FFT is the unnormalised forward transform ``F(m) = sum_x f(x)
    exp(-2 pi i m.x / N)``)::

        P_i = (1 / n_i) sum_{m in shell i} |F(m)|^2 / N^4,      i = 1 .. N // 2

    where the sum runs over the full Fourier plane (``m`` and ``-m`` both counted) and
    ``n_i`` is the number of modes of shell ``i`` (:func:`radial_shell_counts`). Shells
    are in integer grid wavenumbers, ``|m|`` in ``[i - 1/2, i + 1/2)``. By Parseval
    ``sum_{all m} |F(m)|^2 / N^4 = mean_x f^2``, so ``sum_i n_i P_i`` is the part of
    ``mean_x f^2`` carried by the shells: all of it except the mean (``m = 0``, excluded)
    and the "corner" modes ``|m| >= N/2 + 1/2`` (dropped, as in
    :func:`surrogate.validation.power_spectrum`). A unit-variance white-noise field has
    ``E[P_i] = 1 / N^2`` at every shell. The shells and weights are those of
    :func:`surrogate.validation.power_spectrum`, whose values are these times ``L^2``.

    Output index ``i - 1`` holds shell ``i``: a single Fourier mode ``cos(2 pi m x / N)``
    puts all its power in ``P[..., m - 1]``.

    Computed in float32 with autocast disabled (FFTs do not take bfloat16) and
    differentiable. Under CUDA TF32 matmuls the shell averaging is accurate to ~1e-3
    relative, plenty for losses and discriminator features.

    Args:
        fields: (B, C, N, N) real tensor, ``N`` even and ``>= 4``; any float dtype.
        shell_matrix: optional precomputed :func:`shell_average_matrix` ``(N)`` on the
            fields' device.
    Returns:
        (B, C, N // 2) float32 tensor of shell powers [field^2].
    """
    if fields.ndim != 4 or fields.shape[-1] != fields.shape[-2]:
        raise ValueError(f"fields must have shape (B, C, N, N), got {tuple(fields.shape)}")
    n = fields.shape[-1]
    if n < 4 or n % 2:
        raise ValueError(f"fields need an even side N >= 4, got N = {n}")
    if shell_matrix is None:
        shell_matrix = shell_average_matrix(n, fields.device)
    with torch.autocast(device_type=fields.device.type, enabled=False):
        spectrum = torch.fft.rfft2(fields.float(), dim=(-2, -1))
        mode_power = (spectrum.real.square() + spectrum.imag.square()) / float(n) ** 4
        return mode_power.flatten(start_dim=-2) @ shell_matrix


# ------------------------------------------------------------------------ adversarial
def _check_kind(kind: str) -> None:
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown adversarial loss kind {kind!r}; expected one of {LOSS_KINDS}")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, kind: str = "hinge") -> Tensor:
    """Discriminator loss ``L_D`` (module docstring), a float32 scalar.

    Args:
        real_logits: (B,) logits ``D(x, c)`` of reference fields.
        fake_logits: (B',) logits ``D(G(z, c), c)`` of generated fields (detached from G
            by the caller).
        kind: ``"hinge"`` or ``"nonsaturating"``.
    """
    _check_kind(kind)
    real, fake = real_logits.float(), fake_logits.float()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_loss(fake_logits: Tensor, kind: str = "hinge") -> Tensor:
    """Generator adversarial loss ``L_G`` (module docstring), a float32 scalar.

    Args:
        fake_logits: (B,) logits ``D(G(z, c), c)`` of generated fields.
        kind: ``"hinge"`` or ``"nonsaturating"``.
    """
    _check_kind(kind)
    fake = fake_logits.float()
    if kind == "hinge":
        return -fake.mean()
    return F.softplus(-fake).mean()


def r1_penalty(real_logits: Tensor, real_inputs: Tensor) -> Tensor:
    """R1 penalty ``mean_b |grad_x D(x_b, c_b)|^2`` on real fields, a float32 scalar.

    ``real_inputs`` must require grad and ``real_logits`` must have been computed from
    it. The gradient is taken of ``sum_b D(x_b)``, which equals the per-sample gradients
    when samples do not interact; the minibatch-stddev layer couples the samples of a
    group slightly (as in StyleGAN2, which computes R1 the same way). The graph is kept
    (``create_graph=True``) so the penalty can be backpropagated into D's parameters.

    Usage: ``loss_d += (gamma / 2) * r1_penalty(...)`` every step, or
    ``(gamma / 2) * k * r1_penalty(...)`` every ``k``-th step (lazy regularisation).
    For accuracy run the penalised D pass without bf16 autocast, and through the
    *uncompiled* discriminator module (it shares the parameters of its
    ``torch.compile`` wrapper): compiled graphs do not support double backward.

    Args:
        real_logits: (B,) logits of ``real_inputs``.
        real_inputs: (B, C, N, N) reference fields with ``requires_grad=True``.
    """
    if not real_inputs.requires_grad:
        raise ValueError("real_inputs must require grad: call requires_grad_(True) before D")
    (gradient,) = torch.autograd.grad(
        outputs=real_logits.sum(), inputs=real_inputs, create_graph=True
    )
    return gradient.float().square().flatten(start_dim=1).sum(dim=1).mean()


# ---------------------------------------------------------------------------- spectral
def consistency_penalty(logits: Tensor, transformed_logits: Tensor) -> Tensor:
    """``E[(D(x) - D(T x))^2]`` of one batch's logits ``(B,)`` or ``(B, 1)`` and the logits
    of the same fields under a symmetry ``T`` (bCR, module docstring), in float32.

    Gradients flow through both logits; it is zero, with zero gradient, for a
    discriminator that is invariant under ``T``.
    """
    if logits.shape != transformed_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and transformed logits "
                         f"{tuple(transformed_logits.shape)} differ in shape")
    return (logits.float() - transformed_logits.float()).square().mean()


def condition_order(condition: Tensor) -> Tensor:
    """Indices that sort a batch of condition vectors ``(B, P + 1)`` lexicographically
    (by the first entry, ties by the second, ...), shape ``(B,)``."""
    if condition.ndim != 2:
        raise ValueError(f"condition must have shape (B, P + 1), got {tuple(condition.shape)}")
    order = torch.arange(condition.shape[0], device=condition.device)
    for column in reversed(range(condition.shape[1])):
        order = order[torch.sort(condition[order, column], stable=True).indices]
    return order


def spectral_loss(fake: Tensor, real: Tensor, eps: float = 1e-6, groups: int = 1,
                  fake_condition: Tensor | None = None, real_condition: Tensor | None = None
                  ) -> Tensor:
    """Mean squared log-ratio of the batch-mean radial power spectra, a float32 scalar.

    With ``P`` from :func:`radial_power_spectrum` (shape (B, C, N/2)) and the batch means
    ``P_fake(c, i) = mean_b P[b, c, i]`` (same for real)::

        L_spec = mean_{c, i} ( log(N^2 P_fake(c, i) + eps) - log(N^2 P_real(c, i) + eps) )^2

    ``N^2 P`` is the spectrum relative to white noise (1 at every shell for a
    unit-variance white-noise field), so ``eps`` is a floor in those units: shells with
    less than ``eps`` times the white-noise power of a unit-variance field are not
    resolved by the loss. It is zero for identical batches, invariant under periodic
    shifts and independent of the batch sizes. Usage: ``loss_g += lambda_spec * L_spec``
    with ``lambda_spec`` of order 0.1-1 for O(1)-normalised fields; pass the real batch
    of the same conditions (it is not differentiated through if detached).

    *Conditional form* (``groups = G > 1``): pooled over a batch of mixed conditions, a
    spectrum with too much small-scale power at one end of a parameter range and too
    little at the other averages out. Each batch is then sorted by its conditions
    (:func:`condition_order`: lexicographically, so by the first parameter) and cut into
    ``G`` consecutive groups of (nearly) equal size, the ``g``-th fake group facing the
    ``g``-th real group (the same quantile of the conditions), and
    ``L_spec = mean_g L_spec(fake_g, real_g)``: the spectrum is matched where the
    conditions are alike. Smaller groups resolve the conditions better and add the
    sampling variance of a group's mean spectrum to the loss (``Var / group size``), which
    pulls the generator's spectra toward their conditional mean.

    Args:
        fake: (B, C, N, N) generated fields.
        real: (B', C, N, N) reference fields.
        eps: spectral floor relative to the white-noise level, > 0.
        groups: ``G``, 1 (pooled) to ``min(B, B')``.
        fake_condition, real_condition: (B, P + 1) and (B', P + 1) conditions of the two
            batches; required when ``groups > 1``.
    """
    if fake.shape[1:] != real.shape[1:]:
        raise ValueError(
            f"fake and real must agree in (C, N, N), got {tuple(fake.shape)} and "
            f"{tuple(real.shape)}"
        )
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if not 1 <= groups <= min(fake.shape[0], real.shape[0]):
        raise ValueError(f"groups must be in 1 .. {min(fake.shape[0], real.shape[0])} "
                         f"(the batch sizes), got {groups}")
    n = fake.shape[-1]
    matrix = shell_average_matrix(n, fake.device)
    white = float(n) ** 2
    fake_spectra = radial_power_spectrum(fake, matrix)
    real_spectra = radial_power_spectrum(real, matrix)
    if groups > 1:
        if fake_condition is None or real_condition is None:
            raise ValueError("the conditional spectral loss (groups > 1) needs both "
                             "conditions")
        fake_spectra = fake_spectra[condition_order(fake_condition)]
        real_spectra = real_spectra[condition_order(real_condition)]
    losses = []                                # one group (the whole batch) when pooled
    for fake_group, real_group in zip(torch.tensor_split(fake_spectra, groups),
                                      torch.tensor_split(real_spectra, groups), strict=True):
        log_fake = torch.log(white * fake_group.mean(dim=0) + eps)
        log_real = torch.log(white * real_group.mean(dim=0) + eps)
        losses.append((log_fake - log_real).square().mean())
    return torch.stack(losses).mean()


# ---------------------------------------------------------------------------- diversity
def mode_seeking_loss(fake_a: Tensor, fake_b: Tensor, noise_a: Tensor, noise_b: Tensor,
                      eps: float = 1e-5) -> Tensor:
    """Mode-seeking term of Mao et al. 2019 (MSGAN, CVPR), a float32 scalar.

    ``fake_a[i]`` and ``fake_b[i]`` are generated at the *same* condition from latents
    ``noise_a[i]`` and ``noise_b[i]``::

        L_ms = mean_i |z_a - z_b|_1 / mean_i |G(c, z_a) - G(c, z_b)|_1      (per element)

    A generator that ignores its latent (mode collapse: the same field for every ``z`` at a
    condition) makes the denominator small and ``L_ms`` large; ``loss_g += lambda_ms *
    L_ms``. Minimising the ratio rewards distinct outputs for distinct latents; the
    adversarial loss keeps them realistic.

    Args:
        fake_a, fake_b: (B, C, N, N) fields, same conditions row by row.
        noise_a, noise_b: (B, Z) their latents.
        eps: floor of the denominator.
    """
    if fake_a.shape != fake_b.shape or noise_a.shape != noise_b.shape:
        raise ValueError("mode_seeking_loss needs pairs of equal shapes, got "
                         f"{tuple(fake_a.shape)}, {tuple(fake_b.shape)} and "
                         f"{tuple(noise_a.shape)}, {tuple(noise_b.shape)}")
    fields = (fake_a.float() - fake_b.float()).abs().mean()
    latents = (noise_a.float() - noise_b.float()).abs().mean()
    return latents / (fields + eps)


def template_penalty(fake_a: Tensor, fake_b: Tensor, centre_axes: tuple[int, ...],
                     eps: float = 1e-6) -> Tensor:
    """Shared-pattern ("template") penalty of a conditional generator, a float32 scalar.

    ``fake_a[i]`` and ``fake_b[i]`` are generated at the *same* condition from independent
    latents. For a system whose distribution is invariant under the shifts along
    ``centre_axes`` (declared symmetries), the ensemble mean at a condition is constant
    along those axes, so the fields centred on their mean along them,
    ``g = x - mean_axes(x)``, have ensemble mean zero at every pixel. A generator that
    instead draws every latent around one fixed pattern ``m(p)`` (a partial mode
    collapse the adversarial loss cannot see from single samples: each sample looks
    real, the ensemble is too narrow) has ``E[g] = m != 0``. Per pair and channel::

        cos_i = <g_a, g_b> / (|g_a| |g_b|)          (sums over the N x N pixels)
        L_tmpl = mean_{i, channels} cos_i

    For independent latents ``E[cos] = |E[g / |g|]|^2 >= 0``, zero exactly when the
    normalised fields have no shared pattern, which is what the declared symmetry
    requires: the penalty's minimum is the physical answer (no target to tune, unlike
    :func:`mode_seeking_loss`, which rewards distance without a bound). The estimate of
    one pair is noisy but unbiased, so stochastic gradients minimise the expectation.
    With ``centre_axes = ()`` nothing is subtracted: for a system with a declared sign
    symmetry (``negate``) the whole ensemble mean is zero.

    Args:
        fake_a, fake_b: (B, C, N, N) fields, same conditions row by row.
        centre_axes: spatial dimensions (of ``-2`` = x, ``-1`` = y) along which the
            system is shift-invariant; the fields are centred along them.
        eps: floor of the norms (``torch.nn.functional.cosine_similarity``).
    """
    if fake_a.shape != fake_b.shape or fake_a.ndim != 4:
        raise ValueError("template_penalty needs pairs of equal (B, C, N, N) shapes, got "
                         f"{tuple(fake_a.shape)} and {tuple(fake_b.shape)}")
    if any(axis not in (-2, -1) for axis in centre_axes):
        raise ValueError(f"centre_axes must be among (-2, -1), got {centre_axes}")
    a, b = fake_a.float(), fake_b.float()
    if centre_axes:
        a = a - a.mean(dim=centre_axes, keepdim=True)
        b = b - b.mean(dim=centre_axes, keepdim=True)
    return F.cosine_similarity(a.flatten(-2), b.flatten(-2), dim=-1, eps=eps).mean()


# -------------------------------------------------------------- spectral scatter
def log_shell_power(fields: Tensor, eps: float = 1e-6, shell_matrix: Tensor | None = None
                    ) -> Tensor:
    """``log(N^2 P_i + eps)`` per sample, channel and shell, shape (B, C, N // 2), float32.

    ``P`` is :func:`radial_power_spectrum`; ``N^2 P`` is the power relative to a
    unit-variance white-noise field and ``eps`` its floor (as in :func:`spectral_loss`).
    Differences of it between samples do not depend on an affine normalisation of the
    channel (a scale cancels, an offset lives in the excluded mean).
    """
    n = fields.shape[-1]
    return torch.log(float(n) ** 2 * radial_power_spectrum(fields, shell_matrix) + eps)


def _check_shell_pairs(loss: str, fake_a: Tensor, fake_b: Tensor, target: Tensor,
                       target_name: str) -> None:
    """Pairs of equal ``(n, C, N, N)`` shapes and a per-shell target ``(n, C, N // 2)``."""
    if fake_a.shape != fake_b.shape or fake_a.ndim != 4:
        raise ValueError(f"{loss} needs pairs of equal (n, C, N, N) shapes, got "
                         f"{tuple(fake_a.shape)} and {tuple(fake_b.shape)}")
    expected = (*fake_a.shape[:2], fake_a.shape[-1] // 2)
    if tuple(target.shape) != expected:
        raise ValueError(f"{target_name} must have shape {expected}, got "
                         f"{tuple(target.shape)}")


def spectral_bias_loss(fake_a: Tensor, fake_b: Tensor, target_mean: Tensor,
                       eps: float = 1e-6, space: str = "log") -> Tensor:
    """Squared bias of the generated log shell power (or shell power) at each condition,
    unbiased by pairs.

    ``fake_a[i]`` and ``fake_b[i]`` are generated at one condition from independent
    latents, ``y = log_shell_power(.)`` (:func:`log_shell_power`) and ``m_i`` the
    simulator's mean of ``y`` at row ``i``'s condition and time (``target_mean[i]``, e.g.
    :class:`surrogate.train.spectrum_target.SpectrumTarget`). Per channel ``c`` and
    shell ``k``::

        L_bias = mean_{i, c, k} (y_a,i - m_i) (y_b,i - m_i)

    The two latents are independent given the condition, so ``E[L_bias] = mean_{c, k}
    E_i[(mu_gen(c_i) - m_i)^2]`` exactly, with ``mu_gen(c)`` the generator's mean log
    power at condition ``c``: the squared bias of the conditional spectrum, whatever the
    distribution of ``y`` and with no term in the generated scatter (a squared
    difference of one sample would add ``Var y`` and reward samples pinned to the mean).
    Where a pooled or grouped spectral loss (:func:`spectral_loss`) lets errors of
    opposite sign at different conditions cancel, this one sees each condition. One
    batch's value is noisy and may be negative; its expectation is >= 0.

    With ``space="power"`` the deviations are relative ones of the shell power itself,
    ``r = exp(y - m) - 1 = P_gen / M - 1`` with ``m = log M`` the log of the simulator's
    mean power ``M`` at the condition (continued linearly in ``y`` above ``P_gen / M =
    4``, :data:`POWER_DEVIATION_CAP`, so that a shell the simulator leaves empty does not
    dominate), so that ``E[L_bias] = mean_{c, k} E_i[(E P_gen(c_i)
    / M_i - 1)^2]``: the relative squared bias of the mean spectrum, which the report's
    pooled spectra compare. The two targets differ where the generated per-sample
    scatter differs from the simulator's: ``E[log P] = log E[P] - Var(log P) / 2`` to
    second order, so a generator whose lowest shells (a few modes, ``Var(log P)`` ~0.3
    on a 32^2 grid) scatter too little meets the log target with too little mean power.

    Args:
        fake_a, fake_b: (n, C, N, N) pairs, same conditions row by row.
        target_mean: (n, C, N // 2) per row, the simulator's mean of ``y`` (``"log"``)
            or the log of its mean of ``exp(y)`` (``"power"``).
        eps: the spectral floor of :func:`log_shell_power`.
        space: ``"log"`` or ``"power"`` (:data:`SPECTRAL_BIAS_SPACES`).
    """
    _check_shell_pairs("spectral_bias_loss", fake_a, fake_b, target_mean, "target_mean")
    check_spectral_bias_space(space)
    target = target_mean.float()
    deviation_a = log_shell_power(fake_a.float(), eps) - target
    deviation_b = log_shell_power(fake_b.float(), eps) - target
    if space == "power":
        deviation_a, deviation_b = _power_deviation(deviation_a), _power_deviation(deviation_b)
    return (deviation_a * deviation_b).mean()


#: above P / M = exp(POWER_DEVIATION_CAP) the power-space deviation grows linearly in log P
POWER_DEVIATION_CAP = math.log(4.0)


def _power_deviation(log_ratio: Tensor) -> Tensor:
    """``P / M - 1 = expm1(log_ratio)`` up to ``P / M = 4``, continued linearly in
    ``log_ratio`` beyond (value and slope continuous): a shell where the simulator has
    almost no power (the far tail of a steep spectrum, at the eps floor) would otherwise
    give deviations of 1e4-1e5 for an untrained generator and a loss of 1e9 (measured on
    Navier-Stokes). A sample of the simulator's law exceeds 4 times its mean shell power
    with probability ~1e-4 at the lowest shell of a 32^2 grid (a Gamma(4) variable above
    16 times its mean over 4), so near the target the deviation is the exact one."""
    capped = torch.clamp(log_ratio, max=POWER_DEVIATION_CAP)
    return torch.expm1(capped) + math.exp(POWER_DEVIATION_CAP) * (log_ratio - capped)


def spectral_scatter_loss(fake_a: Tensor, fake_b: Tensor, target_variance: Tensor,
                          eps: float = 1e-6, min_variance: float = 1e-8) -> Tensor:
    """Within-condition scatter of one sample's log shell power against the simulator's.

    ``fake_a[i]`` and ``fake_b[i]`` are generated at the same condition from independent
    latents; ``y = log_shell_power(.)`` (:func:`log_shell_power`) and ``v_i`` the
    simulator's within-condition variance of ``y`` at row ``i``'s condition and time
    (``target_variance[i]``, e.g. :class:`surrogate.train.scatter.ScatterTarget`). Per
    channel ``c`` and shell ``k``::

        r_i = (y_a,i - y_b,i)^2 / (2 v_i)          E r_i = var_gen / var_sim
        L_scatter = mean_{c, k} ( log mean_i r_i - (psi(n / 2) - log(n / 2)) )^2

    over the ``n`` pairs. For a generator whose samples scatter as the simulator's and
    near-Gaussian ``y`` (a shell power is a mean of many exponentials), ``r_i`` are
    chi-square with one degree of freedom, ``mean_i r_i`` is ``chi^2_n / n`` and ``E log
    mean_i r_i = psi(n / 2) - log(n / 2)``: the offset makes the loss's minimum the right
    scatter rather than a biased one (for a Gaussian field to ~2 % in std over the shells of
    >= 12 modes; the lowest shell, 8 modes, has a skewed log power and its minimum sits ~7 %
    low in std). A generator whose samples carry a random spectral
    slope or amplitude (the right mean spectrum, each sample wrong) has ``mean_i r_i >
    1``; one that pins every sample to the mean spectrum ``< 1``. Shells where the
    simulator does not scatter (``v < min_variance``, e.g. an empty or constant shell)
    are left out.

    Args:
        fake_a, fake_b: (n, C, N, N) pairs, same conditions row by row.
        target_variance: (n, C, N // 2) the simulator's variance of ``y`` per row.
        eps: the spectral floor of :func:`log_shell_power`.
        min_variance: shells with a smaller target variance in any row are left out.
    """
    _check_shell_pairs("spectral_scatter_loss", fake_a, fake_b, target_variance,
                       "target_variance")
    pairs = fake_a.shape[0]
    difference = log_shell_power(fake_a, eps) - log_shell_power(fake_b, eps)
    target = target_variance.float()
    resolved = (target >= min_variance).all(dim=0)                       # (C, shells)
    ratio = (difference.square() / (2.0 * target.clamp_min(min_variance))).mean(dim=0)
    offset = (torch.special.digamma(torch.tensor(pairs / 2.0))
              - torch.log(torch.tensor(pairs / 2.0))).to(ratio.device)
    deviation = torch.log(ratio[resolved] + 1e-12) - offset
    if deviation.numel() == 0:
        return ratio.sum() * 0.0
    return deviation.square().mean()
