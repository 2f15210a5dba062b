"""Training loop of the conditional GAN: CPU and CUDA, AMP, EMA, R1, DDP, exact resume.

One step (per replica; batch ``B`` split evenly over ``world_size`` replicas)::

    draw B trajectory/time indices of the training split (torch generator "data")
    real  = augment(normalised fields of those snapshots)     symmetry group of the system
    c     = their conditions (normalised parameters, time)
    fake  = heads(G(z, c))  -> normalised                      z ~ N(0, I) (generator "noise")
    L_D   = loss_D(D(real, c), D(fake.detach(), c))
            [+ (gamma / 2) * k * R1(real) every k-th step, lazy R1, Mescheder et al. 2018]
    L_G   = loss_G(D(fake, c)) + w_spec * spectral_loss(fake, real)
            [+ w_ms * mode_seeking_loss(pairs of fakes at one condition), when w_ms > 0:
             fakes 2i and 2i+1 then share the condition of real 2i, Mao et al. 2019]
            [+ w_t * loss_G(D_t([G(z', c_i), G(z', c_i+1)], c_i)), when w_t > 0 and the
             file has >= 2 times: B/2 pairs of consecutive snapshot times, one latent z'
             per pair; D_t, a second discriminator on the two snapshots stacked along
             channels, is trained like D on real pairs [x(t_i), x(t_i+1)] of one
             trajectory (one symmetry element per pair)]
    Adam steps on D (then D_t) then G; EMA of G's weights:
    theta_ema <- beta theta_ema + (1 - beta) theta with beta = min(ema_decay,
    (1 + step) / (10 + step)).

Fakes share the conditions of the real batch (the projection discriminator compares
like with like). Every random number comes from torch generators whose states go into
the checkpoint, so on the CPU ``N`` steps, a stop and ``--resume`` for ``N`` more give the
same weights as ``2N`` steps straight (tested). Validation every ``validate_every`` steps
generates the held-out (``valid`` split) conditions with the EMA generator and scores
them with the validation library: ``score = mean over fields of (median spectrum
relative error over resolved shells + W1 / std + spread term [+ |ln temporal
change ratio|])`` (the spread of two latents at each condition against each reference
snapshot's nearest training neighbour, its term the log distance outside [0.8, 1.25]
and 0 inside: a collapsed generator cannot be the best checkpoint; with D_t, the
change between consecutive times of one latent against that
of one simulated trajectory, see :func:`physics_score`), averaged over two latent
draws whose half-difference is logged as the score's own noise (``valid/score_noise``,
:func:`two_draw_score`); the best score's EMA generator is kept as
``checkpoints/best.pt``. A NaN/Inf loss stops the run with a
one-line message naming the last good checkpoint.

On CUDA: bf16 autocast for G and D (``amp``), TF32 matmuls/convolutions (``tf32``),
optional ``torch.compile`` (R1 then runs through the uncompiled discriminator: compiled
graphs do not support double backward). Launched with ``torchrun --nproc_per_node=K -m
surrogate train ...`` the replicas train data-parallel: every replica draws the same
global index/noise stream and keeps its own slice of the batch (sharded reading), and
gradients are averaged with ``all_reduce`` after each backward (the same arithmetic as
``DistributedDataParallel``; NCCL on GPUs, gloo on CPUs); only rank 0 writes files.
"""

from surrogate.devices import autocast_dtype, resolve_device
from surrogate.train.config import RUN_FORMAT, TrainConfig
from surrogate.train.entry import train, train_restarts
from surrogate.train.objective import GANObjective, GeneratedPairs
from surrogate.train.scatter import ScatterTarget
from surrogate.train.scoring import physics_score, score_noise_summary, two_draw_score
from surrogate.train.spectrum_target import SpectrumTarget
from surrogate.train.spread_control import SpreadController
from surrogate.train.state import read_metrics
from surrogate.train.trainer import (
    Trainer,
    TrainingDivergedError,
    UnscoredRangeWarning,
    build_models,
    check_sign_equivariance,
    ema_beta,
)

__all__ = ["RUN_FORMAT", "GANObjective", "GeneratedPairs", "ScatterTarget", "SpectrumTarget",
           "SpreadController", "TrainConfig", "Trainer", "TrainingDivergedError",
           "UnscoredRangeWarning", "autocast_dtype", "build_models",
           "check_sign_equivariance", "ema_beta", "physics_score", "read_metrics",
           "resolve_device", "score_noise_summary", "train", "train_restarts",
           "two_draw_score"]
