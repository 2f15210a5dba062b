"""Training: exact resume, NaN guard, run-directory rules, validation score, CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch

from surrogate.checkpoint import CheckpointError, load_checkpoint
from surrogate.cli import main
from surrogate.train import TrainConfig, Trainer, TrainingDivergedError, physics_score, train
from tests._files import forget_option, last_checkpoints_agree

SAMPLE = "data/sample_navier_stokes2d.h5"
TINY = TrainConfig(steps=12, batch_size=8, width=8, noise_dim=16, log_every=3,
                   validate_every=6, sample_every=12, checkpoint_every=6, r1_interval=4)


def _losses(path):
    keep = ("step", "loss_d", "loss_g", "r1", "spectral_loss", "valid/score",
            "loss_d_temporal", "loss_g_temporal", "valid/vorticity/temporal")
    return [{k: v for k, v in json.loads(line).items() if k in keep}
            for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_training_straight(tmp_path):
    straight = train(SAMPLE, tmp_path / "a", TINY, progress=False)
    train(SAMPLE, tmp_path / "b", TINY, progress=False, steps=6)
    resumed = train(SAMPLE, tmp_path / "b", resume=True, progress=False, steps=12)
    assert straight["steps"] == resumed["steps"] == 12
    assert resumed["steps_this_run"] == 6
    a, b = last_checkpoints_agree(tmp_path / "a", tmp_path / "b")
    assert _losses(tmp_path / "a" / "metrics.jsonl") == _losses(tmp_path / "b" / "metrics.jsonl")
    assert a["best_step"] == b["best_step"]
    # a different seed gives different weights (the comparison above can fail)
    other = train(SAMPLE, tmp_path / "c", TrainConfig(**{**TINY.to_dict(), "seed": 1}),
                  progress=False)
    c = load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")
    assert other["steps"] == 12
    assert not torch.equal(a["generator"]["to_raw.weight"], c["generator"]["to_raw.weight"])


def test_ema_half_life_is_a_fraction_of_the_steps_seen():
    from surrogate.train import ema_beta
    default = TINY
    assert ema_beta(default, 1) == pytest.approx(2 / 11)
    assert ema_beta(default, 10_000) == 0.999                 # capped by ema_decay
    ramp = TrainConfig(**{**TINY.to_dict(), "ema_half_life_fraction": 0.05})
    for step in (20, 200, 2000):
        # after 0.05 * step steps the old weights count half: beta ** (0.05 step) = 1/2
        assert ema_beta(ramp, step) ** (0.05 * step) == pytest.approx(0.5)
    assert ema_beta(ramp, 100_000) == 0.999
    with pytest.raises(ValueError, match="ema_half_life_fraction"):
        TrainConfig(ema_half_life_fraction=1.5)


@pytest.mark.slow   # an option off by default; the default suite keeps the
# generic resume test (test_resume_gives_the_same_weights_as_training_straight)
def test_consistency_regularisation_trains_logs_and_resumes_exactly(tmp_path):
    config = TrainConfig(**{**TINY.to_dict(), "consistency_weight": 10.0,
                            "ema_half_life_fraction": 0.1})
    train(SAMPLE, tmp_path / "a", config, progress=False)
    train(SAMPLE, tmp_path / "b", config, progress=False, steps=6)
    train(SAMPLE, tmp_path / "b", resume=True, progress=False, steps=12)
    last_checkpoints_agree(tmp_path / "a", tmp_path / "b")
    lines = [json.loads(line) for line in
             (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    logged = [line for line in lines if "consistency" in line]
    # Navier–Stokes declares x-shifts and the point reflection: D is not invariant to them
    # untrained, so the penalty is positive, for both discriminators
    assert logged and all(line["consistency"] > 0 and line["consistency_temporal"] > 0
                          for line in logged)


@pytest.mark.slow   # an option off by default; the default suite keeps the
# generic resume test (test_resume_gives_the_same_weights_as_training_straight)
@pytest.mark.parametrize("envelope_multiplier", [1.0, 10.0])
def test_learning_rates_decay_linearly_and_an_interrupted_run_resumes_exactly(
        tmp_path, envelope_multiplier):
    config = TrainConfig(**{**TINY.to_dict(), "lr_decay_fraction": 0.5, "lr_generator": 1e-4,
                            "envelope_lr_multiplier": envelope_multiplier})
    straight = train(SAMPLE, tmp_path / "a", config, progress=False)
    assert straight["steps"] == 12
    # stopped after 6 of 12 steps (a kill after the checkpoint), then resumed
    trainer = Trainer(SAMPLE, tmp_path / "b", config, progress=False)
    factors = []
    for _ in range(6):
        factors.append(trainer.learning_rate_factor())
        trainer.train_step()
    trainer.save()
    assert factors == [1.0] * 6
    assert trainer.optimizer_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    trainer.step = 9
    assert trainer.learning_rate_factor() == pytest.approx(0.5)
    trainer.step = 12
    assert trainer.learning_rate_factor() == 0.0
    train(SAMPLE, tmp_path / "b", resume=True, progress=False)
    _, b = last_checkpoints_agree(tmp_path / "a", tmp_path / "b")
    # the last step ran at 1/6 of the rate: lr 1e-4 * (12 - 11) / 6
    assert b["optimizer_g"]["param_groups"][0]["lr"] == pytest.approx(1e-4 / 6)
    assert b["optimizer_d"]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 6)
    # the envelope's own group (multiplier != 1) decays alike, keeping its multiple
    assert [group["lr"] for group in b["optimizer_g"]["param_groups"][1:]] == (
        [pytest.approx(envelope_multiplier * 1e-4 / 6)] if envelope_multiplier != 1 else [])
    with pytest.raises(ValueError, match="lr_decay_fraction must be in"):
        TrainConfig(lr_decay_fraction=1.5)


def _envelope_names(trainer: Trainer) -> set[str]:
    return {f"envelope.{name}" for name, _ in trainer.generator.envelope.named_parameters()}


@pytest.mark.slow
def test_envelope_learning_rate_multiplier_scales_only_the_envelopes_adam_steps(tmp_path):
    """Adam's first step is ``lr * g / (|g| + eps)`` per weight: from the same weights and
    batch, the envelope's weights move ``multiplier`` times as far, every other weight
    the same; multiplier 1 keeps the single parameter group of earlier runs."""
    runs = {}
    for multiplier in (1.0, 10.0):
        config = dataclasses.replace(TINY, envelope_lr_multiplier=multiplier)
        trainer = Trainer(SAMPLE, tmp_path / str(multiplier), config, progress=False)
        before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
        trainer.train_step()
        after = trainer.generator.state_dict()
        runs[multiplier] = (trainer, {k: after[k] - before[k] for k in before})
    plain, scaled = runs[1.0][0], runs[10.0][0]
    assert len(plain.optimizer_g.param_groups) == 1
    groups = scaled.optimizer_g.param_groups
    assert [group["lr"] for group in groups] == [pytest.approx(2e-4), pytest.approx(2e-3)]
    envelope = _envelope_names(scaled)
    ids = {id(p) for p in groups[1]["params"]}
    named = dict(scaled.generator.named_parameters())
    assert {name for name, p in named.items() if id(p) in ids} == envelope
    assert sum(len(group["params"]) for group in groups) == len(named)
    moved = 0
    for name, step in runs[1.0][1].items():
        if name in envelope:
            assert step.abs().max() > 0, name
            torch.testing.assert_close(runs[10.0][1][name], 10 * step, rtol=1e-4, atol=1e-12)
            moved += 1
        else:
            torch.testing.assert_close(runs[10.0][1][name], step, rtol=1e-5, atol=1e-12)
    assert moved == len(envelope) == 2                     # the log-gain map's A and b
    with pytest.raises(ValueError, match="envelope_lr_multiplier must be a positive"):
        TrainConfig(envelope_lr_multiplier=0)


def test_run_directory_contents(tmp_path):
    summary = train(SAMPLE, tmp_path / "run", TINY, progress=False)
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["system"] == "navier_stokes2d"
    assert config["train"]["steps"] == 12
    assert set(config) >= {"model", "normalizer", "condition_encoder", "schema",
                           "data_parameter_ranges"}
    lines = _losses(run / "metrics.jsonl")
    assert [line["step"] for line in lines] == [3, 6, 9, 12]
    assert "valid/score" in lines[1]
    assert (run / "samples" / "step_000012.png").stat().st_size > 1000
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["step"] == summary["best_step"] in (6, 12)
    assert best["score"] == pytest.approx(summary["best_score"])


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    train(SAMPLE, tmp_path / "run", TINY, progress=False, steps=2)
    with pytest.raises(ValueError, match="already exists"):
        train(SAMPLE, tmp_path / "run", TINY, progress=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(SAMPLE, tmp_path / "empty", resume=True, progress=False)
    summary = train(SAMPLE, tmp_path / "run", TINY, progress=False, steps=3, overwrite=True)
    assert summary["steps"] == 3


def test_nan_loss_stops_with_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(SAMPLE, tmp_path / "run", TINY, progress=False)
    trainer.train_step()
    trainer.save()
    with torch.no_grad():
        trainer.generator.to_raw.weight.fill_(float("nan"))
    expected = r"last good checkpoint is .*last.pt \(step 1\)"
    with pytest.raises(TrainingDivergedError, match=expected):
        trainer.train_step()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 1


def _spy_on_generator(trainer: Trainer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record ``(noise, condition)`` of every generator call the trainer makes."""
    seen = []
    forward = trainer.g_forward

    def spy(noise, condition):
        seen.append((noise.detach().clone(), condition.detach().clone()))
        return forward(noise, condition)

    trainer.g_forward = spy
    return seen


@pytest.mark.slow
def test_mode_seeking_pairs_fakes_at_one_condition_with_distinct_latents(tmp_path):
    import dataclasses
    config = dataclasses.replace(TINY, mode_seeking_weight=0.5)
    trainer = Trainer(SAMPLE, tmp_path / "run", config, progress=False)
    seen = _spy_on_generator(trainer)
    metrics = trainer.train_step()
    noise, condition = seen[0]                     # the batch (then the temporal pairs)
    assert metrics["mode_seeking_loss"] > 0
    torch.testing.assert_close(condition[1::2], condition[0::2], rtol=0, atol=0)
    assert not torch.equal(noise[1::2], noise[0::2])
    # without a term that uses pairs (mode seeking, the spectral bias loss, the ensemble
    # discriminator), the fakes take the real batch's conditions one by one
    trainer = Trainer(SAMPLE, tmp_path / "plain",
                      dataclasses.replace(TINY, mode_seeking_weight=0.0,
                                          spectral_bias_weight=0.0, ensemble_weight=0.0),
                      progress=False)
    seen = _spy_on_generator(trainer)
    assert "mode_seeking_loss" not in trainer.train_step()
    assert not torch.equal(seen[0][1][1::2], seen[0][1][0::2])


def _step_keeping_the_fakes(trainer: Trainer):
    """One training step; returns its metrics, the generator's (noise, condition) and
    the normalised fakes the generator phase saw."""
    seen = _spy_on_generator(trainer)
    fakes = []
    original = trainer.objective.generator

    def keep(d_forward, temporal, fake, *rest):
        fakes.append(fake.detach().clone())
        return original(d_forward, temporal, fake, *rest)

    trainer.objective.generator = keep
    metrics = trainer.train_step()
    noise, condition = seen[0]
    return metrics, noise, condition, fakes


def _resumes_exactly_and_older_runs_without(tmp_path, config: TrainConfig, option: str) -> None:
    """12 steps straight equal 6 + resume 6; a run from before ``option`` existed (its key
    dropped from config.json) resumes with the option at 0."""
    train(SAMPLE, tmp_path / "a", config, progress=False)
    train(SAMPLE, tmp_path / "b", config, progress=False, steps=6)
    train(SAMPLE, tmp_path / "b", resume=True, progress=False, steps=12)
    last_checkpoints_agree(tmp_path / "a", tmp_path / "b")
    train(SAMPLE, tmp_path / "old", dataclasses.replace(TINY, steps=6), progress=False)
    forget_option(tmp_path / "old", option)
    train(SAMPLE, tmp_path / "old", resume=True, progress=False, steps=12)
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    assert saved["train"][option] == 0.0


def test_template_penalty_pairs_fakes_and_logs_its_value(tmp_path):
    from surrogate.losses import template_penalty
    config = dataclasses.replace(TINY, mode_seeking_weight=0.0, template_weight=1.0)
    trainer = Trainer(SAMPLE, tmp_path / "one", config, progress=False)
    assert trainer.objective.zero_mean_axes == (-2,)       # Navier–Stokes: x-shifts
    metrics, noise, condition, fakes = _step_keeping_the_fakes(trainer)
    # pairs at one condition from distinct latents, made for the penalty alone
    torch.testing.assert_close(condition[1::2], condition[0::2], rtol=0, atol=0)
    assert not torch.equal(noise[1::2], noise[0::2])
    assert "mode_seeking_loss" not in metrics
    assert metrics["template_penalty"] == pytest.approx(
        float(template_penalty(fakes[0][0::2], fakes[0][1::2], (-2,))), rel=1e-6)


@pytest.mark.slow
def test_template_penalty_run_resumes_exactly_and_older_runs_resume_without_it(tmp_path):
    config = dataclasses.replace(TINY, mode_seeking_weight=0.0, template_weight=1.0)
    _resumes_exactly_and_older_runs_without(tmp_path, config, "template_weight")


def test_template_penalty_is_refused_where_no_symmetry_fixes_the_mean():
    from surrogate.data import FieldNormalizer
    from surrogate.train.objective import GANObjective
    config = dataclasses.replace(TINY, template_weight=1.0)
    with pytest.raises(ValueError, match="template_weight needs"):
        GANObjective(config, FieldNormalizer([]), None, contextlib.nullcontext,
                     torch.Generator(), None)
    with pytest.raises(ValueError, match="template_weight"):
        TrainConfig(template_weight=-1.0)


def test_spectral_scatter_loss_pairs_fakes_against_the_training_scatter(tmp_path):
    from surrogate.losses import spectral_scatter_loss
    from surrogate.train.scatter import ScatterTarget
    config = dataclasses.replace(TINY, mode_seeking_weight=0.0, spectral_scatter_weight=1.0)
    trainer = Trainer(SAMPLE, tmp_path / "one", config, progress=False)
    target = trainer.objective.scatter_target
    train_split = trainer.data.splits["train"]
    assert target.variance.shape == (train_split.n_times, 3, train_split.resolution // 2)
    torch.testing.assert_close(target.variance,
                               ScatterTarget.from_dataset(train_split).variance)
    metrics, noise, condition, fakes = _step_keeping_the_fakes(trainer)
    torch.testing.assert_close(condition[1::2], condition[0::2], rtol=0, atol=0)
    assert not torch.equal(noise[1::2], noise[0::2])
    assert metrics["spectral_scatter_loss"] == pytest.approx(float(spectral_scatter_loss(
        fakes[0][0::2], fakes[0][1::2], target.rows(condition[0::2]))), rel=1e-6)
    with pytest.raises(ValueError, match="spectral_scatter_weight"):
        TrainConfig(spectral_scatter_weight=-1.0)


@pytest.mark.slow
def test_spectral_scatter_run_resumes_exactly_and_older_runs_resume_without_it(tmp_path):
    config = dataclasses.replace(TINY, mode_seeking_weight=0.0, spectral_scatter_weight=1.0)
    _resumes_exactly_and_older_runs_without(tmp_path, config, "spectral_scatter_weight")


TEMPORAL = TrainConfig(**{**TINY.to_dict(), "temporal_weight": 1.0})   # the default


def test_temporal_discriminator_sees_consecutive_snapshots_of_one_latent(tmp_path):
    trainer = Trainer(SAMPLE, tmp_path / "run", TEMPORAL, progress=False)
    times = trainer.data.splits["train"].n_times
    assert trainer.temporal and times >= 2
    assert trainer.temporal_discriminator.config.in_channels == 2 * 3
    seen = _spy_on_generator(trainer)
    metrics = trainer.train_step()
    assert {"loss_d_temporal", "loss_g_temporal"} <= set(metrics)
    [_, (noise, condition)] = seen                 # the batch, then the pairs
    count = TEMPORAL.batch_size // 2
    assert noise.shape[0] == condition.shape[0] == 2 * count
    # one latent and one parameter set per pair; the second time is the next snapshot's
    torch.testing.assert_close(noise[:count], noise[count:], rtol=0, atol=0)
    torch.testing.assert_close(condition[:count, :-1], condition[count:, :-1], rtol=0, atol=0)
    encoded_times = np.unique(trainer.data.splits["train"].conditions[:, -1].numpy())
    assert encoded_times.size == times
    step = {float(a): float(b) for a, b in itertools.pairwise(encoded_times)}
    assert [step[float(t)] for t in condition[:count, -1]] == condition[count:, -1].tolist()
    # the real pairs are two consecutive snapshots of one trajectory, moved together
    real, condition_a, condition_b, _ = trainer._pair_batch()
    assert real.shape[1] == 6
    torch.testing.assert_close(condition_a[:, :-1], condition_b[:, :-1], rtol=0, atol=0)
    assert bool((condition_b[:, -1] > condition_a[:, -1]).all())


@pytest.mark.slow   # two more resumes (10 s); the default run's exact resume stays default
def test_temporal_run_resumes_exactly_and_logs_the_temporal_ratio(tmp_path):
    straight = train(SAMPLE, tmp_path / "a", TEMPORAL, progress=False)
    train(SAMPLE, tmp_path / "b", TEMPORAL, progress=False, steps=6)
    train(SAMPLE, tmp_path / "b", resume=True, progress=False, steps=12)
    last_checkpoints_agree(tmp_path / "a", tmp_path / "b",
                           ("generator", "discriminator", "temporal_discriminator",
                            "generator_ema"))
    assert straight["steps"] == 12
    lines = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text()
             .splitlines()]
    assert all(line["valid/vorticity/temporal"] > 0 for line in lines if "valid/score" in line)
    assert _losses(tmp_path / "a" / "metrics.jsonl") == _losses(tmp_path / "b" / "metrics.jsonl")
    # without the term: no temporal discriminator in the checkpoint, no temporal score
    plain = TrainConfig(**{**TINY.to_dict(), "temporal_weight": 0.0})
    train(SAMPLE, tmp_path / "c", plain, progress=False, steps=6)
    assert "temporal_discriminator" not in load_checkpoint(
        tmp_path / "c" / "checkpoints" / "last.pt")
    assert not any("valid/vorticity/temporal" in line for line in
                   (tmp_path / "c" / "metrics.jsonl").read_text().splitlines())
    # a run written before the option existed resumes as it was trained: without it
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    del config["train"]["temporal_weight"]
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    assert train(SAMPLE, tmp_path / "c", resume=True, progress=False, steps=9)["steps"] == 9
    # the option turned on by hand in config.json: a one-line refusal, not a crash
    config["train"]["temporal_weight"] = 1.0
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="without the temporal discriminator"):
        train(SAMPLE, tmp_path / "c", resume=True, progress=False, steps=12)


def test_a_file_with_one_snapshot_time_trains_without_the_temporal_discriminator(tmp_path):
    from simulators.sweep import SweepSpec, run_sweep
    data = run_sweep(SweepSpec("gaussian_random_field", 12, resolution=16,
                               ranges={"spectral_index": (2.0, 3.0)}), tmp_path / "grf.h5",
                     progress=False)
    trainer = Trainer(data, tmp_path / "run", TEMPORAL, progress=False)
    assert trainer.data.splits["train"].n_times == 1
    assert not trainer.temporal and trainer.temporal_discriminator is None
    assert "loss_d_temporal" not in trainer.train_step()
    assert not any(key.endswith("/temporal") for key in trainer.validate())


class _LatentOnly(torch.nn.Module):
    """A stand-in generator whose raw output is a fixed linear map of the latent alone."""

    def __init__(self, noise_dim: int, channels: int, n: int) -> None:
        super().__init__()
        self.basis = torch.randn(noise_dim, channels, n, n,
                                 generator=torch.Generator().manual_seed(5))

    def forward(self, noise, condition):
        return torch.einsum("bz,zcxy->bcxy", noise, self.basis)


class _PixelNoiseOnly(torch.nn.Module):
    """A stand-in generator whose raw output is per-pixel noise of torch's global stream."""

    def __init__(self, channels: int, n: int) -> None:
        super().__init__()
        self.shape = (channels, n, n)

    def forward(self, noise, condition):
        return torch.randn(noise.shape[0], *self.shape)


def test_the_scores_trajectories_share_latents_and_draw_fresh_pixel_noise(tmp_path):
    """The validation score's change in time is measured on trajectories made as
    ``surrogate generate`` makes them: one latent over the times (a generator of the
    latent alone changes only through its condition, here not at all) and fresh
    per-pixel noise per snapshot (a generator of pixel noise alone changes)."""
    from simulators.sweep import SweepSpec, run_sweep
    data = run_sweep(SweepSpec("diffusion", 16, resolution=16, n_snapshots=3),
                     tmp_path / "diffusion.h5", progress=False)
    trainer = Trainer(data, tmp_path / "run", TEMPORAL, progress=False)
    scorer, dataset = trainer.scorer, trainer.data.splits["valid"]
    indices = scorer.validation_indices(dataset, 8)
    real, condition = dataset.get_batch(indices)
    reference = scorer.physical(real)
    n, channels = trainer.data.schema.resolution, trainer.heads.raw_channels
    scorer.generator_ema = _LatentOnly(TEMPORAL.noise_dim, channels, n)
    frozen = scorer.increments(dataset, indices, reference, condition)["generated"]
    assert all(np.array_equal(change, np.zeros_like(change)) for change in frozen.values())
    scorer.generator_ema = _PixelNoiseOnly(channels, n)
    moving = scorer.increments(dataset, indices, reference, condition)["generated"]
    assert all(np.abs(change).mean() > 0.1 * np.abs(reference[name]).mean()
               for name, change in moving.items())


def test_physics_score_temporal_term_punishes_snapshots_independent_in_time():
    generator = torch.Generator().manual_seed(2)
    draw = lambda: torch.randn(16, 32, 32, generator=generator).numpy()  # noqa: E731
    start, change = draw(), 0.1 * draw()
    ranks = {"f": 0}

    def score(generated_change):
        return physics_score({"f": start}, {"f": start}, ranks, 1.0, increments={
            "reference": {"f": change}, "generated": {"f": generated_change}})

    assert score(change)["f/temporal"] == 1.0 and score(change)["score"] == 0.0
    # two independent draws at consecutive times: a change of the size of the field
    independent = score(draw() - draw())
    assert independent["f/temporal"] == pytest.approx(10 * math.sqrt(2), rel=0.05)
    assert independent["score"] == pytest.approx(math.log(independent["f/temporal"]))
    frozen = score(np.zeros_like(change))
    assert frozen["f/temporal"] == 0.0 and frozen["score"] == pytest.approx(math.log(1e3))


def test_physics_score_is_zero_for_identical_and_positive_for_scaled_fields():
    generator = torch.Generator().manual_seed(0)
    fields = torch.randn(16, 32, 32, generator=generator).numpy()
    assert physics_score({"f": fields}, {"f": fields}, {"f": 0}, 1.0)["score"] == 0.0
    score = physics_score({"f": fields}, {"f": 1.5 * fields}, {"f": 0}, 1.0)
    assert score["f/spectrum"] == pytest.approx(1.25, rel=1e-9)
    assert score["score"] > 1.25


def test_physics_score_w1_of_a_sign_symmetric_system_ignores_the_drawn_signs():
    """+-1 spins whose snapshots drew other signs: unsymmetrised, W1 is the difference of
    the net magnetisations; symmetrised (the system declares ``negate``) it is 0, and a
    magnitude error (0.6 s) still counts."""
    rng = np.random.default_rng(1)
    spins = np.where(rng.random((8, 16, 16)) < 0.9, 1.0, -1.0)         # m = 0.8 each
    signs = np.array([1, 1, 1, 1, 1, 1, -1, -1], dtype=float)[:, None, None]
    redrawn = signs * spins
    plain = physics_score({"spin": spins}, {"spin": redrawn}, {"spin": 0}, 1.0)
    m_ref, m_gen = spins.mean(), redrawn.mean()
    assert plain["spin/w1"] == pytest.approx(abs(m_ref - m_gen) / spins.std(), rel=1e-3)
    symmetric = physics_score({"spin": spins}, {"spin": redrawn}, {"spin": 0}, 1.0,
                              sign_symmetric=True)
    assert symmetric["spin/w1"] == pytest.approx(0.0, abs=1e-12)
    soft = physics_score({"spin": spins}, {"spin": 0.6 * redrawn}, {"spin": 0}, 1.0,
                         sign_symmetric=True)
    assert soft["spin/w1"] == pytest.approx(0.4, rel=1e-6)


@pytest.mark.parametrize(("system", "equivariant", "expected"), [
    ("ising", True, True), ("ising", False, False), ("gaussian_random_field", True, False)])
def test_the_score_symmetrises_w1_only_for_a_generator_that_draws_the_sign(system, equivariant,
                                                                          expected):
    """Without the built-in sign the balance of the signs is the generator's to learn, and
    the score's plain W1 is what watches it."""
    from types import SimpleNamespace

    from surrogate.train.heldout import HeldOutScorer
    data = SimpleNamespace(schema=SimpleNamespace(system=system))
    config = TrainConfig(sign_equivariant=equivariant)
    scorer = HeldOutScorer(data, None, None, config, torch.device("cpu"), None, False)
    assert scorer.sign_symmetric is expected


def test_physics_score_spread_term_punishes_a_generator_that_ignores_its_latent():
    generator = torch.Generator().manual_seed(1)
    draw = lambda: torch.randn(16, 32, 32, generator=generator).numpy()  # noqa: E731
    reference, neighbours, generated, second = draw(), draw(), draw(), draw()
    ranks = {"f": 0}
    healthy = physics_score({"f": reference}, {"f": generated}, ranks, 1.0,
                            pairs={"generated": {"f": second}, "reference": {"f": neighbours}})
    # independent white-noise pairs on both sides: mean |a - b| agree to sampling error
    assert healthy["f/spread"] == pytest.approx(1.0, abs=0.02)
    collapsed = physics_score({"f": reference}, {"f": generated}, ranks, 1.0,
                              pairs={"generated": {"f": generated},
                                     "reference": {"f": neighbours}})
    assert collapsed["f/spread"] == 0.0
    # a spread inside [0.8, 1.25] costs nothing; the collapse costs |ln 1e-3|
    no_spread = physics_score({"f": reference}, {"f": generated}, ranks, 1.0)
    assert healthy["score"] == pytest.approx(no_spread["score"], abs=1e-12)
    assert collapsed["score"] == pytest.approx(no_spread["score"] + math.log(1e3))

    def with_spread(fraction):
        return physics_score({"f": reference}, {"f": generated}, ranks, 1.0, pairs={
            "generated": {"f": generated + fraction * (second - generated)},
            "reference": {"f": neighbours}})

    half = with_spread(0.5)
    assert half["f/spread"] == pytest.approx(0.5 * healthy["f/spread"])
    # outside the band: the log distance to its nearer edge, ln(0.8 / spread) below
    assert half["score"] - no_spread["score"] == pytest.approx(math.log(0.8 / half["f/spread"]))
    assert with_spread(0.85)["score"] == pytest.approx(no_spread["score"], abs=1e-12)
    double = with_spread(2.0)
    assert double["score"] - no_spread["score"] == pytest.approx(
        math.log(double["f/spread"] / 1.25))


def test_validation_logs_the_spread_and_compares_with_training_neighbours(tmp_path):
    trainer = Trainer(SAMPLE, tmp_path / "run", TINY, progress=False)
    scores = trainer.validate()
    for name in ("vorticity", "velocity"):
        assert scores[f"{name}/spread"] > 0
    valid = trainer.data.splits["valid"]
    scorer = trainer.scorer
    neighbours = scorer.neighbour_snapshots(valid, scorer.validation_indices(valid, 8))
    reference, _ = trainer.generate_like(valid, 8, 0)
    # same times; neighbours come from training trajectories, so they differ
    assert neighbours["vorticity"].shape == reference["vorticity"].shape
    assert not np.array_equal(neighbours["vorticity"], reference["vorticity"])


def test_validation_score_is_the_mean_of_two_latent_draws_with_its_noise(tmp_path):
    from surrogate.train import score_noise_summary, two_draw_score
    first = {"score": 0.5, "f/spectrum": 0.2}
    second = {"score": 0.3, "f/spectrum": 0.1}
    assert two_draw_score(first, second) == pytest.approx(
        {"score": 0.4, "f/spectrum": 0.15, "score_noise": 0.1})
    # the trainer: the logged noise is half the difference of two real draws, i.e. > 0 for
    # an untrained generator and small against the score itself
    trainer = Trainer(SAMPLE, tmp_path / "run", TINY, progress=False)
    scores = trainer.validate()
    assert 0 < scores["score_noise"] < scores["score"]
    summary = score_noise_summary([{"step": 1, "valid/score": 1.0, "valid/score_noise": 0.1},
                                   {"step": 2, "loss_d": 0.5},
                                   {"step": 3, "valid/score": 0.7, "valid/score_noise": 0.3},
                                   {"step": 4, "valid/score": math.inf},
                                   {"step": 5, "valid/score": 0.8, "valid/score_noise": 0.2}])
    assert summary == pytest.approx({"score_noise_median": 0.2, "score_change_median": 0.2})
    assert score_noise_summary([]) == {"score_noise_median": None, "score_change_median": None}
    # the log as written, its last line cut short by a killed run
    from surrogate.train import read_metrics
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "valid/score": 1.0}\n{"step": 2, "loss_d": 0.5}\n{"step": 3, "va')
    assert read_metrics(log) == [{"step": 1, "valid/score": 1.0}, {"step": 2, "loss_d": 0.5}]
    assert read_metrics(tmp_path / "absent.jsonl") == []


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["train", SAMPLE, "-o", str(tmp_path / "r"), "--steps", "0", "-q"]) == 2
    assert "steps must be a positive integer" in capsys.readouterr().err
    assert main(["train", SAMPLE, "-o", str(tmp_path / "r"), "--loss", "wgan", "-q"]) == 2
    assert "unknown loss 'wgan'" in capsys.readouterr().err
    assert main(["train", SAMPLE, "-o", str(tmp_path / "r"), "--spectral-bias-space",
                 "linear", "-q"]) == 2
    assert "unknown spectral_bias_space 'linear'" in capsys.readouterr().err
    assert main(["train", "missing.h5", "-o", str(tmp_path / "r"), "-q"]) == 2
    assert "missing.h5" in capsys.readouterr().err
    assert main(["train", SAMPLE, "-o", str(tmp_path / "r"), "--device", "cuda:7", "-q"]) == 2
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_cli_train_then_resume(tmp_path, capsys):
    args = ["train", SAMPLE, "-o", str(tmp_path / "r"), "--steps", "4", "--batch-size", "8",
            "--width", "8", "--validate-every", "2", "-q"]
    assert main(args) == 0
    assert "trained 4 steps on cpu" in capsys.readouterr().out
    assert main(["train", SAMPLE, "-o", str(tmp_path / "r"), "--resume", "--steps", "6",
                 "-q"]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    assert main(["train", SAMPLE, "-o", str(tmp_path / "r"), "--resume", "--width", "16",
                 "-q"]) == 2
    assert "only --steps may change" in capsys.readouterr().err


def test_overwrite_with_bad_input_keeps_the_old_run(tmp_path, capsys):
    train(SAMPLE, tmp_path / "run", TINY, progress=False, steps=2)
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", "missing.h5", "-o", str(tmp_path / "run"), "--overwrite", "-q"]) == 2
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before
    assert (tmp_path / "run" / "metrics.jsonl").exists()


def test_resume_cannot_go_back_and_broken_configs_are_one_line_errors(tmp_path, capsys):
    train(SAMPLE, tmp_path / "run", TINY, progress=False, steps=4)
    assert main(["train", SAMPLE, "-o", str(tmp_path / "run"), "--resume", "--steps", "2",
                 "-q"]) == 2
    assert "already at step 4" in capsys.readouterr().err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    del config["normalizer"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    assert main(["train", SAMPLE, "-o", str(tmp_path / "run"), "--resume", "-q"]) == 2
    assert "missing normalizer" in capsys.readouterr().err


# ------------------------------------------------------------------ built-in sign symmetry
@pytest.fixture(scope="module")
def ising_file(tmp_path_factory):
    from simulators.sweep import SweepSpec, run_sweep
    spec = SweepSpec(system="ising", n_trajectories=8, resolution=16, t_end=10.0,
                     n_snapshots=2, ranges={"temperature": (1.5, 3.5)})
    return run_sweep(spec, tmp_path_factory.mktemp("ising") / "ising.h5", progress=False)


@pytest.mark.slow
def test_ising_trains_sign_equivariant_and_generates_both_signs_in_pairs(ising_file, tmp_path):
    import numpy as np

    from surrogate.generate import load_surrogate
    summary = train(ising_file, tmp_path / "run", TINY, progress=False)
    assert summary["steps"] == 12
    model = load_surrogate(tmp_path / "run", device="cpu")
    # Ising declares negate_each_snapshot too: the sign is drawn per snapshot
    assert model.model_config.negate and model.model_config.negate_each_snapshot
    noise = torch.randn(16, model.model_config.noise_dim, generator=torch.Generator()
                        .manual_seed(0))
    flipped = noise.clone()
    flipped[:, 0] *= -1
    condition = np.zeros((16, model.model_config.condition_dim), dtype=np.float32)
    with torch.no_grad():                      # without pixel noise: s = sign(z_0)
        raw = model.generator(noise, torch.as_tensor(condition), pixel_noise=False)
        raw_flipped = model.generator(flipped, torch.as_tensor(condition), pixel_noise=False)
    assert torch.equal(raw, -raw_flipped)
    torch.manual_seed(1)
    spins = model.sample(condition, noise)
    torch.manual_seed(1)                       # the same pixel stream: the same signs
    same = model.sample(condition, flipped)
    assert set(np.unique(spins)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(spins, same)
    # one latent at one condition, decoded 64 times: both signs, as snapshots of one
    # trajectory at several times
    repeated = model.sample(np.repeat(condition[:1], 64, axis=0), noise[:1].repeat(64, 1))
    reference = np.sign((repeated * repeated[:1]).sum(axis=(1, 2, 3)))
    assert 10 < int((reference < 0).sum()) < 54
    # switched off, the networks do not carry the symmetry
    off = TrainConfig(**{**TINY.to_dict(), "sign_equivariant": False})
    train(ising_file, tmp_path / "off", off, progress=False)
    assert not load_surrogate(tmp_path / "off", device="cpu").model_config.negate


@pytest.mark.parametrize("straight_through", [True, False])
def test_straight_through_shows_the_discriminator_spins_of_plus_minus_one(
        ising_file, tmp_path, straight_through):
    """With ``straight_through`` D reads generated spins exactly +-1, as it reads real
    ones; without, the tanh relaxation, inside (-1, 1) wherever it is not saturated.
    The generator trains either way (its weights move); config.json records the
    choice."""
    config = TrainConfig(**{**TINY.to_dict(), "steps": 2, "straight_through": straight_through,
                            "temporal_weight": 0.0})
    trainer = Trainer(ising_file, tmp_path / "run", config, device="cpu", progress=False)
    seen = []

    def record(module, inputs):
        # the generator phase's fakes: the only inputs with a graph back to G
        if inputs[0].grad_fn is not None:
            seen.append(trainer.data.normalizer.decode(inputs[0].detach().double()))

    trainer.discriminator.register_forward_pre_hook(record)
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    trainer.run()
    assert len(seen) == 2                                # one per step
    fakes = torch.cat(seen)
    if straight_through:
        assert set(torch.unique(fakes).tolist()) == {-1.0, 1.0}
    else:                             # float32 tanh reaches +-1 only where saturated
        assert (fakes.abs() < 1.0).any()
    assert any(not torch.equal(a, b.detach()) for a, b in
               zip(before, trainer.generator.parameters(), strict=True))
    assert json.loads((tmp_path / "run" / "config.json").read_text()
                      )["train"]["straight_through"] is straight_through


def test_a_system_whose_heads_are_not_odd_cannot_take_the_sign_symmetry(tmp_path):
    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.train import check_sign_equivariance
    path = run_sweep(SweepSpec(system="gaussian_random_field", n_trajectories=8,
                               resolution=16), tmp_path / "grf.h5", progress=False)
    trainer = Trainer(path, tmp_path / "run", TINY, device="cpu", progress=False)
    assert not trainer.model_config.negate            # GRF declares no negate
    with pytest.raises(ValueError, match=r"density.*cannot represent"):   # log-normalised
        check_sign_equivariance(trainer.heads, trainer.data.normalizer)


def test_shift_equivariance_builds_the_declared_shift_axes(tmp_path):
    """Navier-Stokes declares shifts along x only (its forcing varies along y); a
    Gaussian random field declares both; the paired losses see the fakes rolled back."""
    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.models import Generator, latent_shift
    config = TrainConfig(**{**TINY.to_dict(), "shift_equivariant": True})
    flow = Trainer(SAMPLE, tmp_path / "ns", config, device="cpu", progress=False)
    assert (flow.model_config.shift_x, flow.model_config.shift_y) == (True, False)
    grf = run_sweep(SweepSpec(system="gaussian_random_field", n_trajectories=8,
                              resolution=16), tmp_path / "grf.h5", progress=False)
    trainer = Trainer(grf, tmp_path / "grf", config, device="cpu", progress=False)
    assert (trainer.model_config.shift_x, trainer.model_config.shift_y) == (True, True)
    off = Trainer(grf, tmp_path / "off", TINY, device="cpu", progress=False)
    assert (off.model_config.shift_x, off.model_config.shift_y) == (False, False)
    assert off.objective.unshift is None
    plain = Generator(off.model_config).eval()
    plain.load_state_dict(trainer.generator.state_dict())
    noise = torch.randn(6, config.noise_dim, generator=torch.Generator().manual_seed(2))
    condition = torch.zeros(6, trainer.model_config.condition_dim)
    with torch.no_grad():
        rolled = trainer.generator.eval()(noise, condition, pixel_noise=False)
        expected = plain(latent_shift(noise, trainer.model_config)[0], condition,
                         pixel_noise=False)
    assert not torch.equal(rolled, expected)
    assert torch.equal(trainer.objective.unshift(rolled, noise), expected)


def test_neighbour_batches_fill_each_minibatch_stddev_group_with_neighbours(tmp_path):
    """Every minibatch-stddev group of a real batch holds one snapshot time and a
    trajectory with its nearest neighbours in the encoded parameters."""
    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.data import neighbour_groups
    from surrogate.models import MinibatchStdDev, mbstd_group
    config = TrainConfig(**{**TINY.to_dict(), "neighbour_batches": True})
    flow = run_sweep(SweepSpec("navier_stokes2d", n_trajectories=24, resolution=16,
                               t_end=0.5, n_snapshots=3, ranges={"nu": (1e-3, 1e-2)}),
                     tmp_path / "flow.h5", progress=False)
    trainer = Trainer(flow, tmp_path / "run", config, device="cpu", progress=False)
    train_split = trainer.data.splits["train"]
    group = mbstd_group(config.batch_size, trainer.model_config.mbstd_group_size)
    n_groups = config.batch_size // group
    assert group >= 2 and n_groups >= 2 and train_split.trajectories.size > 2 * group
    points = train_split.conditions.numpy()[:: train_split.n_times, :-1]
    expected = {tuple(sorted(row)) for row in neighbour_groups(points, group)}
    for _ in range(5):
        state = trainer.data_generator.get_state()
        indices = trainer._neighbour_indices()
        trainer.data_generator.set_state(state)
        _, condition, _ = trainer._batch()
        assert condition.shape == (config.batch_size, points.shape[1] + 1)
        for member in range(n_groups):                 # MinibatchStdDev's grouping
            positions = indices[member::n_groups].numpy()
            assert len(set(positions % train_split.n_times)) == 1          # one time
            assert tuple(sorted(positions // train_split.n_times)) in expected
            assert (condition[member::n_groups, -1] == condition[member, -1]).all()
    # the layout is the one the discriminator's layer groups by: images that are the
    # snapshot time read an exactly zero minibatch stddev (a shuffled batch does not)
    times = condition[:, -1].reshape(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    assert torch.equal(MinibatchStdDev(group)(times)[:, -1], torch.zeros(len(times), 4, 4))
    shuffled = times[torch.randperm(len(times), generator=torch.Generator().manual_seed(1))]
    assert MinibatchStdDev(group)(shuffled)[:, -1].abs().max() > 0


@pytest.mark.slow   # an option off by default
def test_a_run_with_neighbour_batches_resumes_exactly(tmp_path):
    config = TrainConfig(**{**TINY.to_dict(), "neighbour_batches": True})
    train(SAMPLE, tmp_path / "a", config, progress=False)
    train(SAMPLE, tmp_path / "b", config, progress=False, steps=6)
    train(SAMPLE, tmp_path / "b", resume=True, progress=False, steps=12)
    last_checkpoints_agree(tmp_path / "a", tmp_path / "b")
    assert json.loads((tmp_path / "a" / "config.json").read_text()
                      )["train"]["neighbour_batches"] is True


def test_ensemble_pairs_stack_the_fakes_of_one_condition():
    from surrogate.train.objective import ensemble_pairs
    fake = torch.arange(5 * 2 * 4 * 4, dtype=torch.float32).reshape(5, 2, 4, 4)
    condition = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3)
    together, together_condition = ensemble_pairs(fake, condition, 4)
    assert together.shape == (2, 4, 4, 4)
    assert torch.equal(together[1, :2], fake[2]) and torch.equal(together[1, 2:], fake[3])
    assert torch.equal(together_condition, condition[[0, 2]])


@pytest.mark.slow
def test_the_ensemble_discriminator_reads_neighbouring_trajectories_at_one_time(tmp_path):
    """Real ensemble pairs: a training snapshot and the same time of the nearest other
    trajectory (without augmentation the halves are those snapshots exactly); the
    step logs the third discriminator's losses; off, nothing of it is built."""
    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.data import neighbour_groups
    flow = run_sweep(SweepSpec("navier_stokes2d", n_trajectories=24, resolution=16,
                               t_end=0.5, n_snapshots=3, ranges={"nu": (1e-3, 1e-2)}),
                     tmp_path / "flow.h5", progress=False)
    config = TrainConfig(**{**TINY.to_dict(), "ensemble_weight": 1.0, "augment": False,
                            "ensemble_spread_target": 0.0})
    trainer = Trainer(flow, tmp_path / "run", config, device="cpu", progress=False)
    train_split = trainer.data.splits["train"]
    times = train_split.n_times
    points = train_split.conditions.numpy()[::times, :-1]
    nearest = neighbour_groups(points, 2)[:, 1]
    state = trainer.data_generator.get_state()
    first = torch.randint(len(train_split), (config.batch_size // 2,),
                          generator=trainer.data_generator)
    trainer.data_generator.set_state(state)
    together, condition, difference = trainer._ensemble_batch()
    partner = nearest[first.numpy() // times] * times + first.numpy() % times
    channels = together.shape[1] // 2
    torch.testing.assert_close(together[:, :channels], train_split.get_batch(first.numpy())[0])
    torch.testing.assert_close(together[:, channels:], train_split.get_batch(partner)[0])
    torch.testing.assert_close(difference, (together[:, :channels] - together[:, channels:])
                               .square().mean())
    torch.testing.assert_close(condition, train_split.get_batch(first.numpy())[1])
    assert (nearest != np.arange(len(nearest))).all()
    metrics = trainer.train_step()
    assert {"loss_d_ensemble", "loss_g_ensemble"} <= set(metrics)
    assert "ensemble_discriminator" in trainer._state()
    off = Trainer(flow, tmp_path / "off", TrainConfig(**{**TINY.to_dict(),
                                                         "ensemble_weight": 0.0}),
                  device="cpu", progress=False)
    assert off.ensemble_discriminator is None and "loss_d_ensemble" not in off.train_step()


@pytest.mark.slow   # an option off by default
def test_an_ensemble_run_resumes_exactly_and_refuses_a_run_without_it(tmp_path):
    config = TrainConfig(**{**TINY.to_dict(), "ensemble_weight": 1.0})
    train(SAMPLE, tmp_path / "a", config, progress=False)
    train(SAMPLE, tmp_path / "b", config, progress=False, steps=6)
    train(SAMPLE, tmp_path / "b", resume=True, progress=False, steps=12)
    last_checkpoints_agree(tmp_path / "a", tmp_path / "b",
                           ("generator", "discriminator", "generator_ema",
                            "ensemble_discriminator"))
    plain = tmp_path / "plain"                       # the term off (on by default)
    train(SAMPLE, plain, TrainConfig(**{**TINY.to_dict(), "steps": 6, "ensemble_weight": 0.0}),
          progress=False)
    saved = json.loads((plain / "config.json").read_text())
    saved["train"]["ensemble_weight"] = 1.0
    (plain / "config.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="without the ensemble discriminator"):
        train(SAMPLE, plain, resume=True, progress=False, steps=12)


@pytest.mark.parametrize(("target", "on_from"),
                         [(100.0, 4), pytest.param(1e-6, None, marks=pytest.mark.slow)])
def test_a_spread_target_applies_the_ensemble_term_as_far_as_the_spread_is_short(
        tmp_path, target, on_from):
    """A target no generator reaches turns the term fully on at the first adjustment
    (step 4: TINY's 12 steps ramp 0 -> 1 in one adjustment) and keeps it; one every
    generator exceeds keeps it off (the ensemble discriminator still trains)."""
    config = TrainConfig(**{**TINY.to_dict(), "ensemble_weight": 0.5,
                            "ensemble_spread_target": target})
    trainer = Trainer(SAMPLE, tmp_path / "run", config, device="cpu", progress=False)
    for step in range(1, 9):
        metrics = trainer.train_step()
        on = on_from is not None and step >= on_from
        assert metrics["ensemble_strength"] == (1.0 if on else 0.0)
        assert ("loss_g_ensemble" in metrics) == on and "loss_d_ensemble" in metrics
        assert math.isnan(metrics["ensemble_spread_ratio"]) == (step < 4)
    assert 0 < metrics["ensemble_spread_ratio"] < 100
    assert trainer._state()["spread_control"]["strength"] == (1.0 if on_from else 0.0)


def test_the_ensemble_term_is_on_by_default_where_it_applies(tmp_path):
    """Auto (``None``): 0.3 with a spread target of 0.9 where a replica's batch holds
    pairs and the training split >= 2 trajectories, written resolved to config.json; 0
    with a batch of 1; an explicit 0 turns it off."""
    assert TrainConfig().ensemble_weight is None
    assert TrainConfig().ensemble_spread_target == 0.9
    trainer = Trainer(SAMPLE, tmp_path / "run", TINY, device="cpu", progress=False)
    assert trainer.config.ensemble_weight == 0.3 and trainer.spread_control is not None
    assert trainer.spread_control.target == 0.9
    trainer._write_config()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["ensemble_weight"] == 0.3
    single = Trainer(SAMPLE, tmp_path / "single",
                     TrainConfig(**{**TINY.to_dict(), "batch_size": 1}), device="cpu",
                     progress=False)
    assert single.config.ensemble_weight == 0.0 and single.ensemble_discriminator is None
    off = Trainer(SAMPLE, tmp_path / "off", TrainConfig(**{**TINY.to_dict(),
                                                           "ensemble_weight": 0.0}),
                  device="cpu", progress=False)
    assert off.ensemble_discriminator is None and off.spread_control is None
    with pytest.raises(ValueError, match="ensemble_spread_target must be a number >= 0"):
        TrainConfig(ensemble_weight=0.3, ensemble_spread_target=-1.0)


def test_auto_and_explicit_ensemble_weights_read_one_rule_for_a_lone_training_trajectory(
        tmp_path):
    """A one-trajectory file trains on it alone: no real pair partner exists, so auto
    turns the term off and an explicit weight is refused, naming the count."""
    from simulators.sweep import SweepSpec, run_sweep
    path = run_sweep(SweepSpec(system="gaussian_random_field", n_trajectories=1,
                               resolution=16), tmp_path / "grf.h5", progress=False)
    auto = Trainer(path, tmp_path / "auto", TINY, device="cpu", progress=False)
    assert auto.data.splits["train"].trajectories.size == 1
    assert auto.config.ensemble_weight == 0.0 and auto.ensemble_discriminator is None
    explicit = TrainConfig(**{**TINY.to_dict(), "ensemble_weight": 0.3})
    with pytest.raises(ValueError, match=r"ensemble_weight needs >= 2 training "
                                         r"trajectories, the training split has 1"):
        Trainer(path, tmp_path / "explicit", explicit, device="cpu", progress=False)


@pytest.mark.slow   # an option off by default
def test_a_spread_target_run_resumes_exactly_and_refuses_a_run_without_it(tmp_path):
    config = TrainConfig(**{**TINY.to_dict(), "ensemble_weight": 0.5,
                            "ensemble_spread_target": 0.9, "steps": 14})
    train(SAMPLE, tmp_path / "a", config, progress=False)
    train(SAMPLE, tmp_path / "b", config, progress=False, steps=6)    # mid-interval
    train(SAMPLE, tmp_path / "b", resume=True, progress=False, steps=14)
    a, b = last_checkpoints_agree(tmp_path / "a", tmp_path / "b",
                                  ("generator", "discriminator", "generator_ema",
                                   "ensemble_discriminator"))
    assert a["spread_control"] == b["spread_control"]
    plain = tmp_path / "plain"
    train(SAMPLE, plain, TrainConfig(**{**TINY.to_dict(), "ensemble_weight": 0.5,
                                        "ensemble_spread_target": 0.0, "steps": 6}),
          progress=False)
    saved = json.loads((plain / "config.json").read_text())
    saved["train"]["ensemble_spread_target"] = 0.9
    (plain / "config.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="without a spread target"):
        train(SAMPLE, plain, resume=True, progress=False, steps=12)


def test_neighbour_batches_and_the_ensemble_need_groups_of_two(tmp_path):
    config = TrainConfig(**{**TINY.to_dict(), "neighbour_batches": True, "batch_size": 7})
    with pytest.raises(ValueError, match="minibatch-stddev groups of >= 2"):
        Trainer(SAMPLE, tmp_path / "run", config, device="cpu", progress=False)
    single = TrainConfig(**{**TINY.to_dict(), "ensemble_weight": 1.0, "batch_size": 1})
    with pytest.raises(ValueError, match="ensemble_weight needs a batch of >= 2"):
        Trainer(SAMPLE, tmp_path / "single", single, device="cpu", progress=False)


@pytest.mark.slow
def test_a_shift_equivariant_run_resumes_exactly(tmp_path):
    config = TrainConfig(**{**TINY.to_dict(), "shift_equivariant": True})
    straight = train(SAMPLE, tmp_path / "a", config, progress=False)
    train(SAMPLE, tmp_path / "b", config, progress=False, steps=6)
    train(SAMPLE, tmp_path / "b", resume=True, progress=False, steps=12)
    assert straight["steps"] == 12
    a, _ = last_checkpoints_agree(tmp_path / "a", tmp_path / "b")
    assert (a["model"]["shift_x"], a["model"]["shift_y"]) == (True, False)


@pytest.mark.slow
def test_a_run_written_before_the_shift_option_resumes_without_it(tmp_path):
    run = tmp_path / "run"
    train(SAMPLE, run, TrainConfig(**{**TINY.to_dict(), "steps": 6}), progress=False)
    # what an older version wrote: no shift_equivariant option, no shift model keys
    forget_option(run, "shift_equivariant")
    forget_option(run, "shift_x")
    forget_option(run, "shift_y")
    summary = train(SAMPLE, run, resume=True, progress=False, steps=12)
    assert summary["steps"] == 12
    model = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert (model["shift_x"], model["shift_y"]) == (False, False)


@pytest.mark.slow   # a resume of a run from before an option
def test_a_run_written_before_the_sign_option_resumes_without_it(ising_file, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(**{**TINY.to_dict(), "sign_equivariant": False, "steps": 6})
    train(ising_file, run, config, progress=False)
    # what an older version wrote: no sign_equivariant option, no negate model key
    forget_option(run, "sign_equivariant")
    forget_option(run, "negate")
    summary = train(ising_file, run, resume=True, progress=False, steps=12)
    assert summary["steps"] == 12
    assert load_checkpoint(run / "checkpoints" / "last.pt")["model"]["negate"] is False


@pytest.mark.slow   # a resume of a run from before an option
def test_a_sign_equivariant_run_from_before_the_per_snapshot_sign_resumes_with_one_sign(
        ising_file, tmp_path):
    """A run written before ``negate_each_snapshot`` existed (one sign per latent) resumes
    with the generator it was built with, not the one today's Ising declaration gives."""
    run = tmp_path / "run"
    train(ising_file, run, dataclasses.replace(TINY, steps=6), progress=False)
    assert json.loads((run / "config.json").read_text())["model"]["negate_each_snapshot"]
    forget_option(run, "negate_each_snapshot")
    assert train(ising_file, run, resume=True, progress=False, steps=12)["steps"] == 12
    model = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert model["negate"] is True and model["negate_each_snapshot"] is False


@pytest.mark.slow
def test_restarts_keep_the_best_scored_run(tmp_path):
    from surrogate.generate import generate
    from surrogate.train import train_restarts
    run = tmp_path / "run"
    config = TrainConfig(steps=4, batch_size=8, width=8, noise_dim=16, validate_every=2,
                         validation_samples=16, seed=4)
    summary = train_restarts(SAMPLE, run, config, 2, device="cpu", progress=False)
    listing = json.loads((run / "restarts.json").read_text())
    scores = {entry["seed"]: entry["best_score"] for entry in listing["restarts"]}
    assert sorted(scores) == [4, 5]
    assert listing["kept_seed"] == summary["kept_seed"] == min(scores, key=scores.get)
    assert len(set(scores.values())) == 2                  # two different draws
    kept = run / "restarts" / f"seed_{listing['kept_seed']}"
    assert (run / "checkpoints" / "best.pt").read_bytes() == \
        (kept / "checkpoints" / "best.pt").read_bytes()
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == \
        listing["kept_seed"]
    # RUN is a run like any other
    assert generate(run, tmp_path / "g.h5", parameters={"nu": 3e-3}, n=2).exists()


@pytest.mark.slow   # three screened seeds and a straight run (9 s); --restarts stays default
def test_screened_restarts_continue_only_the_best_seed_to_the_run_trained_straight(
        tmp_path):
    """``--restarts 2 --screen-steps 5``: every seed trains 5 of 8 steps, the best
    validation score so far picks the seed, and only it goes on; it then equals the same
    seed trained straight: weights, best checkpoint (the mean of the last 2 validated
    generators carried over the stop) and metrics. The stop is no checkpoint step, so
    the run must save there, and it keeps the full run's schedule: the learning rate
    decays over the total, which a run of 5 steps would not have."""
    from surrogate.train import train_restarts
    run = tmp_path / "run"
    config = dataclasses.replace(TINY, steps=8, validate_every=2, checkpoint_every=3,
                                 validation_samples=16, average_checkpoints=2,
                                 lr_decay_fraction=0.5, seed=4)
    summary = train_restarts(SAMPLE, run, config, 2, device="cpu", progress=False,
                             screen_steps=5)
    listing = json.loads((run / "restarts.json").read_text())
    assert listing["screen_steps"] == 5
    screened = {entry["seed"]: entry["screen_score"] for entry in listing["restarts"]}
    assert sorted(screened) == [4, 5] and len(set(screened.values())) == 2
    kept = listing["kept_seed"]
    assert kept == min(screened, key=screened.get)
    for entry in listing["restarts"]:
        last = load_checkpoint(run / "restarts" / f"seed_{entry['seed']}" / "checkpoints"
                               / "last.pt")
        assert entry["steps"] == last["step"] == (8 if entry["seed"] == kept else 5)
        assert entry["screen_step"] <= 4                  # validations at steps 2 and 4
    assert listing["seconds"] == pytest.approx(sum(e["seconds"] for e in listing["restarts"]))
    straight = train(SAMPLE, tmp_path / "straight", dataclasses.replace(config, seed=kept),
                     progress=False)
    last_checkpoints_agree(tmp_path / "straight", run / "restarts" / f"seed_{kept}")
    last_checkpoints_agree(tmp_path / "straight", run)
    best = [load_checkpoint(path / "checkpoints" / "best.pt")
            for path in (tmp_path / "straight", run)]
    assert best[0]["step"] == best[1]["step"] and best[0]["score"] == best[1]["score"]
    for name in best[0]["generator_ema"]:
        assert torch.equal(best[0]["generator_ema"][name], best[1]["generator_ema"][name])

    def logged(path):
        return [{k: v for k, v in json.loads(line).items() if k != "images_per_second"}
                for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert logged(tmp_path / "straight") == logged(run)
    assert listing["restarts"][kept - 4]["best_score"] == straight["best_score"]
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 8
    assert summary["kept_seed"] == kept and summary["steps"] == 8
    assert summary["steps_this_run"] == 8
    # a stop the run has passed trains nothing: refused
    with pytest.raises(ValueError, match="already at step 8; stopping at step 8"):
        train(SAMPLE, tmp_path / "straight", resume=True, progress=False, stop_at=8)
    with pytest.raises(ValueError, match="stop_at must be a positive integer, got 0"):
        train(SAMPLE, tmp_path / "other", config, progress=False, stop_at=0)


def test_the_command_line_passes_the_screen_and_prints_every_seed(tmp_path, capsys,
                                                                  monkeypatch):
    import surrogate.train
    calls = []

    def fake_restarts(data, run, config, restarts, **options):
        calls.append((restarts, options["screen_steps"], config.steps))
        entries = [{"seed": seed, "steps": steps, "best_score": score, "best_step": step,
                    "screen_score": screen, "screen_step": 250}
                   for seed, steps, score, step, screen in
                   ((0, 500, 0.41, 250, 0.41), (1, 2000, 0.23, 1750, 0.30),
                    (2, 500, 1.42, 500, 1.42))]
        return {"restarts": entries, "kept_seed": 1, "screen_steps": 500, "steps": 2000,
                "device": "cpu", "images_per_second": 1.0, "best_score": 0.23,
                "best_step": 1750, "run_dir": str(run), "world_size": 1}

    monkeypatch.setattr(surrogate.train, "train_restarts", fake_restarts)
    assert main(["train", SAMPLE, "-o", str(tmp_path / "run"), "--restarts", "3",
                 "--screen-steps", "500", "--steps", "2000", "-q"]) == 0
    assert calls == [(3, 500, 2000)]
    printed = capsys.readouterr().out.splitlines()
    assert printed[:3] == [
        "seed 0: screened at step 500: best validation score 0.41 at step 250; best "
        "validation score 0.41 at step 250",
        "seed 1: screened at step 500: best validation score 0.3 at step 250; best "
        "validation score 0.23 at step 1750 (kept)",
        "seed 2: screened at step 500: best validation score 1.42 at step 250; best "
        "validation score 1.42 at step 500"]


def test_bad_restarts_are_one_line_errors_and_write_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", SAMPLE, "-o", str(run), "--restarts", "0", "-q"]) == 2
    assert "restarts must be a positive integer" in capsys.readouterr().err
    assert not run.exists()
    assert main(["train", SAMPLE, "-o", str(run), "--restarts", "2", "--resume", "-q"]) == 2
    assert "--restarts trains afresh" in capsys.readouterr().err
    for screen in ("0", "12", "5"):             # validate_every 6, steps 12: 6 .. 11
        assert main(["train", SAMPLE, "-o", str(run), "--restarts", "2", "--steps", "12",
                     "--validate-every", "6", "--screen-steps", screen, "-q"]) == 2
        assert "screen_steps must be an integer from validate_every (6) to steps - 1 (11)" \
            in capsys.readouterr().err
    assert main(["train", SAMPLE, "-o", str(run), "--screen-steps", "6", "-q"]) == 2
    assert "--screen-steps chooses among --restarts K seeds" in capsys.readouterr().err
    assert not run.exists()


def test_spectral_loss_groups_are_checked_against_the_batch(tmp_path):
    with pytest.raises(ValueError, match="spectral_loss_groups must be a positive integer"):
        TrainConfig(spectral_loss_groups=0)
    config = TrainConfig(**{**TINY.to_dict(), "spectral_loss_groups": 9})
    with pytest.raises(ValueError, match="spectral_loss_groups 9 exceeds the batch of 8"):
        Trainer(SAMPLE, tmp_path / "run", config, progress=False)


@pytest.mark.slow
def test_keep_validated_keeps_every_validated_ema_generator(tmp_path):
    """``keep_validated``: one ``ema_step_NNNNNN.pt`` per validation, in best.pt's layout;
    best.pt equals the kept file of its step, generation reads any of them, and
    ``--overwrite`` removes them with the rest of the old run."""
    from surrogate.generate import generate
    config = dataclasses.replace(TINY, steps=6, validate_every=2, keep_validated=True)
    summary = train(SAMPLE, tmp_path / "run", config, progress=False)
    checkpoints = tmp_path / "run" / "checkpoints"
    kept = sorted(path.name for path in checkpoints.glob("ema_step_*.pt"))
    assert kept == ["ema_step_000002.pt", "ema_step_000004.pt", "ema_step_000006.pt"]
    best = load_checkpoint(checkpoints / "best.pt")
    same = load_checkpoint(checkpoints / f"ema_step_{summary['best_step']:06d}.pt")
    assert best["step"] == same["step"] == summary["best_step"]
    for name, tensor in best["generator_ema"].items():
        assert torch.equal(tensor, same["generator_ema"][name])
    out = generate(tmp_path / "run", tmp_path / "g.h5", parameters={"nu": 1e-3}, n=1,
                   checkpoint="ema_step_000002.pt")
    assert out.exists()
    # average:K: the last K kept generators' weights, each the mean of the K files
    from surrogate.generate import load_surrogate
    averaged = load_surrogate(tmp_path / "run", "average:2", device="cpu")
    four, six = (load_checkpoint(checkpoints / f"ema_step_00000{step}.pt")["generator_ema"]
                 for step in (4, 6))
    assert averaged.step == 6 and averaged.checkpoint == "average:2"
    differs = 0
    for name, tensor in averaged.generator.state_dict().items():
        if tensor.is_floating_point():
            expected = (four[name].double() + six[name].double()) / 2
            torch.testing.assert_close(tensor.double(), expected, rtol=1e-6, atol=1e-7)
            differs += not torch.equal(four[name], six[name])
        else:
            assert torch.equal(tensor, six[name])
    assert differs > 0                      # the two kept generators are not the same
    assert generate(tmp_path / "run", tmp_path / "a.h5", parameters={"nu": 1e-3}, n=1,
                    checkpoint="average:3").exists()
    for spec, message in (("average:1", "K >= 2"), ("average:x", "K >= 2"),
                          ("average:4", "keeps 3 validated generators")):
        with pytest.raises(CheckpointError, match=message):
            load_surrogate(tmp_path / "run", spec, device="cpu")
    assert main(["generate", str(tmp_path / "run"), "-o", str(tmp_path / "b.h5"), "--set",
                 "nu=0.001", "-n", "1", "--checkpoint", "average:4", "-q"]) == 2
    assert not (tmp_path / "b.h5").exists()
    train(SAMPLE, tmp_path / "run", dataclasses.replace(TINY, steps=2), progress=False,
          overwrite=True)
    assert not list(checkpoints.glob("ema_step_*.pt"))


def _valid_lines(run):
    """The validation records of the metrics lines (a run stopped early also logs its
    losses at its last step)."""
    return [{key: value for key, value in line.items()
             if key == "step" or key.startswith("valid/")}
            for line in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "valid/score" in line]


@pytest.mark.slow   # a training with four validations (11 s)
def test_average_checkpoints_scores_the_mean_of_the_last_validated_generators(tmp_path):
    """``average_checkpoints = K``: the training is the one without it (weights, scores);
    from the K-th validation on, the mean of the last K validated EMA generators is scored
    (logged ``valid/average_score``, the score of that mean recomputed here from the kept
    files); best.pt is the lowest-scored candidate; an interrupted run resumes exactly."""
    from surrogate.checkpoint import average_generator_states
    base = dataclasses.replace(TINY, steps=8, validate_every=2, checkpoint_every=2,
                               keep_validated=True, average_checkpoints=0)
    train(SAMPLE, tmp_path / "plain", base, progress=False)
    config = dataclasses.replace(base, average_checkpoints=2)
    summary = train(SAMPLE, tmp_path / "avg", config, progress=False)
    last_checkpoints_agree(tmp_path / "plain", tmp_path / "avg")
    plain, lines = _valid_lines(tmp_path / "plain"), _valid_lines(tmp_path / "avg")
    assert [line["valid/score"] for line in lines] == [line["valid/score"] for line in plain]
    assert "valid/average_score" not in lines[0]             # one generator: nothing to average
    averages = {line["step"]: line["valid/average_score"] for line in lines[1:]}
    assert sorted(averages) == [4, 6, 8]
    checkpoints = tmp_path / "avg" / "checkpoints"
    trainer = Trainer(SAMPLE, tmp_path / "avg", config, resume=True, progress=False)
    for step, logged in averages.items():
        states = [load_checkpoint(checkpoints / f"ema_step_{s:06d}.pt") for s in (step - 2, step)]
        trainer.generator_ema.load_state_dict(average_generator_states(states)["generator_ema"])
        assert trainer.validate()["score"] == logged
    singles = {line["step"]: line["valid/score"] for line in lines}
    best = load_checkpoint(checkpoints / "best.pt")
    assert summary["best_score"] == best["score"] == min([*singles.values(), *averages.values()])
    if best.get("averaged_steps"):
        assert best["averaged_steps"] == [best["step"] - 2, best["step"]]
        assert best["score"] == averages[best["step"]]
    else:
        assert best["score"] == singles[best["step"]]
    # stopped after 4 steps, resumed: the remembered generators travel in last.pt
    train(SAMPLE, tmp_path / "resumed", config, progress=False, steps=4)
    assert len(load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
               ["validated_ema"]) == 2
    train(SAMPLE, tmp_path / "resumed", resume=True, progress=False, steps=8)
    assert _valid_lines(tmp_path / "resumed") == lines
    with pytest.raises(ValueError, match="average_checkpoints"):
        TrainConfig(average_checkpoints=-1)


@pytest.mark.slow
def test_an_averaged_generator_that_scores_best_becomes_best_pt(tmp_path, monkeypatch):
    """Scripted scores (single, then average, per validation): the average of steps 2 and 4
    scores lowest, so best.pt holds the mean weights with its averaged steps; the EMA
    generator is restored after each averaged scoring."""
    scripted = iter([1.0, 0.9, 0.5, 0.8, 0.95, 0.7, 0.6])
    monkeypatch.setattr(Trainer, "validate", lambda self: {"score": next(scripted)})
    config = dataclasses.replace(TINY, steps=8, validate_every=2, checkpoint_every=2,
                                 keep_validated=True, average_checkpoints=2)
    summary = train(SAMPLE, tmp_path / "run", config, progress=False)
    checkpoints = tmp_path / "run" / "checkpoints"
    best = load_checkpoint(checkpoints / "best.pt")
    assert summary["best_score"] == best["score"] == 0.5 and summary["best_step"] == 4
    assert best["averaged_steps"] == [2, 4] and best["step"] == 4
    two, four = (load_checkpoint(checkpoints / f"ema_step_00000{s}.pt")["generator_ema"]
                 for s in (2, 4))
    for name, tensor in best["generator_ema"].items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor.double(), (two[name].double()
                                                         + four[name].double()) / 2)
    # the last kept generator is the EMA itself, not the average scored before it was saved
    last = load_checkpoint(checkpoints / "last.pt")["generator_ema"]
    eight = load_checkpoint(checkpoints / "ema_step_000008.pt")["generator_ema"]
    assert all(torch.equal(last[name], eight[name]) for name in last)
    lines = _valid_lines(tmp_path / "run")
    assert [line.get("valid/average_score") for line in lines] == [None, 0.5, 0.95, 0.6]


@pytest.mark.slow   # resume of a run from before the option (6 s)
def test_average_checkpoints_is_on_by_default_and_older_runs_resume_without_it(tmp_path):
    assert TrainConfig().average_checkpoints == 4
    config = dataclasses.replace(TINY, steps=8, validate_every=2, checkpoint_every=2)
    train(SAMPLE, tmp_path / "new", config, progress=False)
    assert [("valid/average_score" in line) for line in _valid_lines(tmp_path / "new")] \
        == [False, False, False, True]                  # from the 4th validation on
    train(SAMPLE, tmp_path / "old", config, progress=False, steps=4)
    forget_option(tmp_path / "old", "average_checkpoints")   # as an older version wrote it
    train(SAMPLE, tmp_path / "old", resume=True, progress=False, steps=8)
    saved = json.loads((tmp_path / "old" / "config.json").read_text())["train"]
    assert saved["average_checkpoints"] == 0             # recorded as it ran
    assert not any("valid/average_score" in line for line in _valid_lines(tmp_path / "old"))


def test_scatter_target_of_a_gaussian_field_sweep_is_the_trigamma_of_the_mode_counts(tmp_path):
    """Nearest neighbours of a dense GRF sweep estimate the within-condition variance of
    the log shell power, psi'(n_k / 2) whatever the spectral index; with nothing swept
    every pair is one condition; rows() picks each row's time."""
    from scipy.special import polygamma

    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.data import load_training_data
    from surrogate.losses import radial_shell_counts
    from surrogate.train.scatter import ScatterTarget
    path = run_sweep(SweepSpec(system="gaussian_random_field", resolution=32,
                               n_trajectories=240, ranges={"spectral_index": (2.0, 3.0)}),
                     tmp_path / "grf.h5", progress=False)
    target = ScatterTarget.from_dataset(load_training_data(path).splits["train"])
    expected = np.sqrt(polygamma(1, radial_shell_counts(32).numpy() / 2))[:-1]
    for channel in range(target.variance.shape[1]):
        measured = target.variance[0, channel, :-1].sqrt().numpy()
        # ~190 neighbour pairs: the std of each shell's estimate is ~5 %
        np.testing.assert_allclose(measured, expected, rtol=0.2)
        assert abs(np.median(measured / expected) - 1) < 0.06
    assert target.neighbour_distance < 0.05
    one = run_sweep(SweepSpec(system="gaussian_random_field", resolution=32, n_trajectories=40,
                              fixed={"spectral_index": 2.5}), tmp_path / "one.h5",
                    progress=False)
    fixed = ScatterTarget.from_dataset(load_training_data(one).splits["train"])
    assert fixed.neighbour_distance == 0.0
    table = ScatterTarget(torch.arange(3.0).reshape(3, 1, 1).expand(3, 2, 4),
                          torch.tensor([-1.0, 0.0, 1.0]))
    rows = table.rows(torch.tensor([[0.3, 0.9], [0.3, -0.8], [0.1, 0.2]]))
    assert rows[:, 0, 0].tolist() == [2.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="variance must be"):
        ScatterTarget(torch.ones(3, 2), torch.ones(3))


def test_spectrum_target_follows_the_spectral_index_of_a_gaussian_field_sweep(tmp_path):
    """The neighbourhood mean of log shell power at two spectral indices differs as fresh
    simulations at those indices do, and as P ~ k^-n says: by -(n2 - n1) log k (the
    normalisation cancels in the difference); with nothing swept it is the mean over all
    trajectories; rows() picks the nearest trajectory and time."""
    from scipy.special import polygamma

    from simulators import get as get_simulator
    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.data import load_training_data
    from surrogate.losses import log_shell_power, radial_shell_counts
    from surrogate.train import SpectrumTarget
    path = run_sweep(SweepSpec(system="gaussian_random_field", resolution=32,
                               n_trajectories=240, ranges={"spectral_index": (2.0, 3.0)}),
                     tmp_path / "grf.h5", progress=False)
    data = load_training_data(path)
    target = SpectrumTarget.from_dataset(data.splits["train"])
    assert target.neighbour_distance < 0.1                    # 8 of ~190 over [-1, 1]
    encoded = torch.from_numpy(data.encoder.encode({"amplitude": 0.1, "spectral_index":
                                                    np.array([2.2, 2.8])}, 0.0))
    rows = target.rows(encoded)                                # (2, 2 channels, 16)
    simulator = get_simulator("gaussian_random_field")
    grid = simulator.make_grid(32)
    fresh = {}
    for index in (2.2, 2.8):
        fields = simulator.simulate({"amplitude": np.full(128, 0.1),
                                     "spectral_index": np.full(128, index)}, grid,
                                    np.array([0.0]), list(range(5000, 5128)))
        fresh[index] = log_shell_power(torch.from_numpy(fields["delta"][:, :1])).mean(0)
    counts = radial_shell_counts(32).double().numpy()
    # std of the difference: two means of 8 (target) and two of 128 (fresh)
    sigma = np.sqrt(polygamma(1, counts / 2) * (2 / 8 + 2 / 128))
    measured = (rows[1, 0] - rows[0, 0]).double().numpy()
    independent = (fresh[2.8][0] - fresh[2.2][0]).double().numpy()
    assert np.all(np.abs(measured - independent)[:-1] < 4 * sigma[:-1])
    k = np.arange(1, 17, dtype=float)
    slope = np.polyfit(np.log(k[1:-1]), measured[1:-1], 1)[0]
    assert slope == pytest.approx(-0.6, abs=0.1)
    one = run_sweep(SweepSpec(system="gaussian_random_field", resolution=32, n_trajectories=40,
                              fixed={"spectral_index": 2.5}), tmp_path / "one.h5",
                    progress=False)
    train_split = load_training_data(one).splits["train"]
    fixed = SpectrumTarget.from_dataset(train_split)
    everything = log_shell_power(train_split.get_batch(np.arange(len(train_split)))[0])
    torch.testing.assert_close(fixed.mean[5, 0], everything.mean(0).float())
    # the power space: the log of the mean power, at or above the mean log (Jensen)
    power = SpectrumTarget.from_dataset(train_split, space="power")
    torch.testing.assert_close(power.mean[5, 0],
                               torch.log(torch.exp(everything.double()).mean(0)).float())
    assert power.space == "power" and power.to("cpu").space == "power"
    swept_power = SpectrumTarget.from_dataset(data.splits["train"], space="power")
    assert bool(torch.all(swept_power.mean >= target.mean - 1e-5))
    with pytest.raises(ValueError, match="unknown spectral bias space"):
        SpectrumTarget.from_dataset(train_split, space="linear")
    table = SpectrumTarget(torch.arange(6.0).reshape(2, 3, 1, 1).expand(2, 3, 2, 4),
                           np.array([[-0.5], [0.5]]), torch.tensor([-1.0, 0.0, 1.0]))
    picked = table.rows(torch.tensor([[0.4, 0.9], [-0.9, -0.8], [0.1, 0.2]]))
    assert picked[:, 0, 0].tolist() == [5.0, 0.0, 4.0]
    with pytest.raises(ValueError, match="mean must be"):
        SpectrumTarget(torch.ones(3, 2), np.zeros((3, 0)), torch.ones(3))
    with pytest.raises(ValueError, match="neighbours must be"):
        SpectrumTarget.from_dataset(train_split, neighbours=0)


@pytest.mark.parametrize("space", ["log", "power"])
def test_spectral_bias_loss_pairs_fakes_against_the_neighbourhood_mean(tmp_path, space):
    from surrogate.losses import spectral_bias_loss
    config = dataclasses.replace(TINY, mode_seeking_weight=0.0, spectral_bias_weight=1.0,
                                 spectral_bias_space=space)
    trainer = Trainer(SAMPLE, tmp_path / "one", config, progress=False)
    assert trainer.objective.spectrum_target.space == space
    metrics, noise, condition, fakes = _step_keeping_the_fakes(trainer)
    torch.testing.assert_close(condition[1::2], condition[0::2], rtol=0, atol=0)
    assert not torch.equal(noise[1::2], noise[0::2])
    target = trainer.objective.spectrum_target.rows(condition[0::2])
    assert metrics["spectral_bias_loss"] == pytest.approx(
        float(spectral_bias_loss(fakes[0][0::2], fakes[0][1::2], target, space=space)),
        rel=1e-6)


@pytest.mark.slow
def test_spectral_bias_run_resumes_exactly_and_older_runs_resume_without_it(tmp_path):
    config = dataclasses.replace(TINY, spectral_bias_weight=1.0)
    _resumes_exactly_and_older_runs_without(tmp_path, config, "spectral_bias_weight")


def test_range_thirds_splits_each_swept_column_as_the_report_splits_its_range():
    from surrogate.train.scoring import range_thirds
    from surrogate.validation.report.summaries import range_third
    even = np.linspace(-1.0, 1.0, 9)
    constant = np.zeros(9)
    two_values = np.where(np.arange(9) < 4, -1.0, 1.0)
    rng = np.random.default_rng(3)
    scattered = rng.uniform(-0.7, 0.4, 9)
    thirds = range_thirds(np.stack([even, constant, two_values, scattered], axis=1))
    assert len(thirds) == 2                       # the constant and two-valued columns
    assert thirds[0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    low, high = scattered.min(), scattered.max()
    assert thirds[1].tolist() == [range_third(v, low, high) for v in scattered]


def _amplitude_ladder(n_per_third: int = 6):
    """White-noise snapshots whose amplitude grows tenfold from the low third of a swept
    parameter to the others: the low third carries 1 % of the power."""
    rng = np.random.default_rng(4)
    parameter = np.repeat([-1.0, 0.0, 1.0], n_per_third)
    amplitude = np.where(parameter < -0.5, 0.1, 1.0)[:, None, None]
    fields = amplitude * rng.standard_normal((parameter.size, 16, 16))
    return parameter, fields


def test_the_per_third_spectrum_term_sees_an_error_confined_to_a_quiet_third():
    """Twice the amplitude in the low third only: 4x its power there (error 3), which
    the pooled spectrum, dominated by the loud thirds, hardly sees."""
    from surrogate.train.scoring import range_thirds
    parameter, reference = _amplitude_ladder()
    generated = reference * np.where(parameter < -0.5, 2.0, 1.0)[:, None, None]
    thirds = range_thirds(parameter[:, None])
    pooled = physics_score({"f": reference}, {"f": generated}, {"f": 0}, 1.0)
    by_third = physics_score({"f": reference}, {"f": generated}, {"f": 0}, 1.0,
                             thirds=thirds)
    assert pooled["f/spectrum"] < 0.05
    assert by_third["f/spectrum"] == pooled["f/spectrum"]          # still logged
    assert by_third["f/spectrum_worst_third"] == pytest.approx(3.0, rel=1e-9)
    assert by_third["f/spectrum_thirds"] == pytest.approx(1.0, rel=1e-9)
    # the spectrum term: half the pooled error, half the mean over the thirds
    assert by_third["score"] - pooled["score"] == pytest.approx(
        (1.0 - pooled["f/spectrum"]) / 2, rel=1e-9)
    identical = physics_score({"f": reference}, {"f": reference}, {"f": 0}, 1.0,
                              thirds=thirds)
    assert identical["score"] == 0.0 and identical["f/spectrum_thirds"] == 0.0


def test_a_third_with_too_few_snapshots_is_left_out_of_the_per_third_term():
    from surrogate.train.scoring import MIN_SNAPSHOTS_PER_THIRD, range_thirds
    parameter, reference = _amplitude_ladder()
    keep = np.ones(parameter.size, dtype=bool)
    keep[:6 - (MIN_SNAPSHOTS_PER_THIRD - 1)] = False      # low third: one snapshot short
    parameter, reference = parameter[keep], reference[keep]
    generated = reference * np.where(parameter < -0.5, 2.0, 1.0)[:, None, None]
    score = physics_score({"f": reference}, {"f": generated}, {"f": 0}, 1.0,
                          thirds=range_thirds(parameter[:, None]))
    assert score["f/spectrum_thirds"] == 0.0 and score["f/spectrum_worst_third"] == 0.0
    # with only one third left there is no range to judge: the pooled term
    lone = physics_score({"f": reference}, {"f": generated}, {"f": 0}, 1.0,
                         thirds=[np.ones(parameter.size, dtype=int)])
    assert "f/spectrum_thirds" not in lone


def test_the_validation_score_takes_the_thirds_only_when_on(tmp_path):
    """The trainer's scorer splits its validation snapshots by their swept parameter; the
    two scores of one generator differ by exactly the spectrum terms."""
    from simulators.sweep import SweepSpec, run_sweep
    data = run_sweep(SweepSpec("gaussian_random_field", 160, resolution=16,
                               ranges={"spectral_index": (1.5, 3.5)}),
                     tmp_path / "grf.h5", progress=False)
    trainer = Trainer(data, tmp_path / "run", TINY, progress=False)
    by_third = trainer.validate()                          # on by default
    trainer.scorer.config = dataclasses.replace(TINY, score_range_thirds=False)
    pooled = trainer.validate()
    fields = [spec.name for spec in trainer.data.schema.fields]
    assert not any(key.endswith("spectrum_thirds") for key in pooled)
    assert all(f"{name}/spectrum_thirds" in by_third for name in fields)
    difference = np.mean([by_third[f"{name}/spectrum_thirds"] - pooled[f"{name}/spectrum"]
                          for name in fields]) / 2
    assert by_third["score"] - pooled["score"] == pytest.approx(difference, rel=1e-9)


@pytest.mark.slow
def test_score_range_thirds_is_on_by_default_and_older_runs_resume_without_it(tmp_path):
    assert TrainConfig().score_range_thirds is True
    config = dataclasses.replace(TINY, steps=4, validate_every=2, checkpoint_every=2)
    train(SAMPLE, tmp_path / "old", config, progress=False, steps=2)
    forget_option(tmp_path / "old", "score_range_thirds")     # as an older version wrote it
    train(SAMPLE, tmp_path / "old", resume=True, progress=False, steps=4)
    saved = json.loads((tmp_path / "old" / "config.json").read_text())["train"]
    assert saved["score_range_thirds"] is False                # recorded as it ran


def test_unscored_thirds_names_each_third_of_the_training_range_without_validation():
    from surrogate.train.scoring import MIN_SNAPSHOTS_PER_THIRD, unscored_thirds
    train_parameters = np.stack([np.linspace(-1.0, 0.5, 30), np.zeros(30)], axis=1)
    even = np.repeat([-0.9, -0.25, 0.4], MIN_SNAPSHOTS_PER_THIRD)
    assert unscored_thirds(train_parameters, np.stack([even, np.zeros(even.size)], 1)) == []
    # one snapshot short in the low third, none in the middle; the constant column is
    # not a swept range
    high = np.r_[np.full(MIN_SNAPSHOTS_PER_THIRD - 1, -0.9), np.full(9, 0.4)]
    blind = unscored_thirds(train_parameters, np.stack([high, np.zeros(high.size)], 1))
    assert [entry[:3] for entry in blind] == [(0, 0, MIN_SNAPSHOTS_PER_THIRD - 1), (0, 1, 0)]
    assert blind[0][3:] == pytest.approx((-1.0, -0.5)) and blind[1][3:] == pytest.approx(
        (-0.5, 0.0))


def test_a_training_whose_validation_misses_an_end_of_the_range_says_so(tmp_path):
    """A stratified sweep validates every third; the same file with its validation
    trajectories moved to the top of the range warns, naming the two thirds left blind
    in physical units (the log-scaled range's own thirds)."""
    import h5py

    from simulators.sweep import SweepSpec, run_sweep
    from surrogate.train import UnscoredRangeWarning
    data = run_sweep(SweepSpec("gaussian_random_field", 240, resolution=16,
                               ranges={"spectral_index": (1.5, 3.5)},
                               split_layout="stratified"),
                     tmp_path / "grf.h5", progress=False)
    logged = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnscoredRangeWarning)
        Trainer(data, tmp_path / "even", TINY, progress=False, log=logged.append)
    assert logged == []
    with h5py.File(data, "r+") as handle:
        index = handle["scalars/spectral_index"][...]
        split = handle["split"][...]
        valid = split == 1
        top = np.argsort(index)[::-1]
        top = top[split[top] != 2][:valid.sum()]          # the highest non-test ones
        split[valid] = 0
        split[top] = 1
        handle["split"][...] = split
        low, high = index[split == 0].min(), index[split == 0].max()
    with pytest.warns(UnscoredRangeWarning) as caught:
        Trainer(data, tmp_path / "top", TINY, progress=False, log=logged.append)
    lines = [str(item.message) for item in caught]
    assert logged == lines and len(lines) == 2
    assert lines[0].startswith("validation split: the low end of spectral_index's training "
                               f"range ({low:.4g} to {low + (high - low) / 3:.4g}")
    assert "the middle of spectral_index" in lines[1] and "stratified" in lines[1]
