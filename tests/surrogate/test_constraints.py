"""surrogate.constraints: hard output heads keep the declared invariants for any raw input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import simulators
from simulators.base import FieldSpec, Invariant
from simulators.grid import PeriodicGrid
from simulators.store import StoreSchema
from surrogate.constraints import LOG_CLAMP, OutputHeads
from surrogate.data import FieldNormalizer, FieldTransform, declared_invariants
from tests._statistics import STATISTICS

N = 32


def _heads(system, box_size=None, dtype=torch.float32, init=None, times=(0.0,)):
    """Heads of ``system``'s schema; ``init=None`` leaves out init-specific invariants
    (Navier–Stokes' initial energy), ``"random"`` keeps them."""
    simulator = simulators.get(system)
    schema = StoreSchema.from_simulator(simulator, simulator.make_grid(N, box_size),
                                        np.asarray(times, dtype=float), init=init)
    normalizer = FieldNormalizer.from_statistics(schema.fields, schema.invariants,
                                                 STATISTICS[system])
    return OutputHeads.from_schema(schema, normalizer, dtype=dtype), schema


def _raw(heads, dtype=torch.float32, batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, heads.raw_channels, N, N, generator=generator,
                       dtype=torch.float64).to(dtype)


def _ns_violations(output, box_size):
    """(max|div u| / max|grad u|, max|w - curl u| / max|w|, max|<w>| / rms w), numpy."""
    grid = PeriodicGrid(N, box_size)
    array = output.detach().to(torch.float64).numpy()
    vorticity, velocity = array[:, 0], np.moveaxis(array[:, 1:3], 1, -1)
    gradient = np.stack([grid.gradient(velocity[..., 0]), grid.gradient(velocity[..., 1])])
    return (np.abs(grid.divergence(velocity)).max() / np.abs(gradient).max(),
            np.abs(vorticity - grid.curl(velocity)).max() / np.abs(vorticity).max(),
            np.abs(vorticity.mean(axis=(-2, -1))).max() / np.sqrt(np.mean(vorticity**2)))


@pytest.mark.parametrize(("dtype", "input_dtype", "tolerance"), [
    (torch.float32, torch.float32, 1e-5),
    (torch.float32, torch.float64, 1e-5),
    (torch.float32, torch.bfloat16, 1e-5),
    (torch.float64, torch.float64, 1e-12),
])
def test_navier_stokes_heads_are_divergence_free_and_curl_consistent(dtype, input_dtype,
                                                                     tolerance):
    heads, schema = _heads("navier_stokes2d", box_size=3.0, dtype=dtype)
    assert heads.heads == {"vorticity": "curl", "velocity": "stream_function"}
    assert heads.raw_channels == 1
    output = heads(_raw(heads, input_dtype))
    assert output.dtype == dtype and output.shape == (4, 3, N, N)
    divergence, curl, mean = _ns_violations(output, schema.box_size)
    # measured independently (numpy simulators.grid on the output)
    assert divergence < tolerance and curl < tolerance and mean < tolerance


def test_navier_stokes_heads_under_cpu_autocast_stay_float32_and_exact():
    heads, schema = _heads("navier_stokes2d")
    raw = _raw(heads)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        output = heads(raw.to(torch.bfloat16))
    assert output.dtype == torch.float32
    assert max(_ns_violations(output, schema.box_size)) < 1e-5


def test_stream_function_head_signs_and_units_on_an_exact_mode():
    # psi = sin(2 pi y / L) -> u = s (d psi/dy', -d psi/dx') = (s cos(2 pi y / L), 0),
    # w = du_y/dx - du_x/dy = s (2 pi / L) sin(2 pi y / L)
    box_size = 3.0
    heads, _ = _heads("navier_stokes2d", box_size=box_size, dtype=torch.float64)
    scale = heads.normalizer.transform("velocity").scale
    y = torch.arange(N, dtype=torch.float64) * box_size / N
    angle = (2 * math.pi * y / box_size).expand(N, N)                # [ix, iy]
    output = heads(torch.sin(angle).view(1, 1, N, N))[0]
    torch.testing.assert_close(output[1], scale * torch.cos(angle), rtol=0, atol=1e-13)
    torch.testing.assert_close(output[2], torch.zeros(N, N, dtype=torch.float64),
                               rtol=0, atol=1e-13)
    torch.testing.assert_close(output[0], scale * 2 * math.pi / box_size * torch.sin(angle),
                               rtol=0, atol=1e-12)
    # the Nyquist mode of an odd derivative is zero: a y-checkerboard gives no velocity
    checkerboard = torch.tensor([(-1.0) ** j for j in range(N)], dtype=torch.float64)
    assert heads(checkerboard.expand(1, 1, N, N)).abs().max() < 1e-12


def test_heads_gradients_flow_to_raw_inputs():
    for system in ("navier_stokes2d", "gaussian_random_field", "diffusion"):
        heads, _ = _heads(system)
        raw = _raw(heads).requires_grad_(True)
        weights = torch.randn(4, heads.channels, N, N, generator=torch.Generator().manual_seed(1))
        (heads(raw) * weights).sum().backward()
        assert raw.grad is not None and torch.isfinite(raw.grad).all()
        assert (raw.grad.abs().sum(dim=(0, 2, 3)) > 0).all(), system
        raw.grad = None
        heads.forward_normalised(raw).square().mean().backward()
        assert torch.isfinite(raw.grad).all() and raw.grad.abs().max() > 0


def test_gaussian_random_field_heads_zero_mean_delta_and_positive_density():
    heads, _ = _heads("gaussian_random_field")
    assert heads.heads == {"delta": "zero_mean", "density": "positive"}
    raw = _raw(heads)
    output = heads(raw)
    delta, density = output[:, 0], output[:, 1]
    assert delta.mean(dim=(-2, -1)).abs().max() < 1e-6 * delta.square().mean().sqrt()
    # density = exp(log_mean + log_std r), positive even for extreme raw values
    torch.testing.assert_close(density, torch.exp(-0.125 + 0.5 * raw[:, 1]))
    extreme = heads(100.0 * raw)[:, 1]
    assert (extreme > 0).all() and torch.isfinite(extreme).all()
    # through the normaliser, the density is back to the raw value (log space)
    torch.testing.assert_close(heads.forward_normalised(raw)[:, 1], raw[:, 1],
                               rtol=1e-5, atol=1e-5)


def test_diffusion_heads_are_pure_decode():
    heads, _ = _heads("diffusion")
    assert heads.heads == {"u": "free"} and heads.raw_channels == 1
    raw = _raw(heads)
    torch.testing.assert_close(heads(raw), heads.normalizer.decode(raw), rtol=0, atol=0)
    torch.testing.assert_close(heads.forward_normalised(raw), raw, rtol=1e-6, atol=1e-6)
    assert heads.state_dict() == {}


def test_bounded_one_sided_and_free_heads():
    fields = (FieldSpec("spin", "1", "spin"), FieldSpec("fraction", "1", "fraction"),
              FieldSpec("height", "m", "height above 1 m"),
              FieldSpec("depth", "m", "depth below 2 m"), FieldSpec("mass", "kg", "mass"),
              FieldSpec("wind", "m/s", "free vector", rank=1),
              FieldSpec("spin_of_wind", "1/s", "curl of the free vector"))
    invariants = (Invariant("discrete_values", "spin", values=(-1.0, 1.0)),
                  Invariant("bounded", "fraction", low=0.2, high=0.6),
                  Invariant("bounded", "height", low=1.0),
                  Invariant("bounded", "depth", high=2.0),
                  Invariant("conserved_mean", "mass"),
                  Invariant("curl_of", "spin_of_wind", of="wind"))
    statistics = {name: {"mean": 0.5, "std": 2.0, "rms": 2.0} for name in
                  ("spin", "fraction", "height", "depth", "mass", "wind", "spin_of_wind")}
    normalizer = FieldNormalizer.from_statistics(fields, invariants, statistics)
    heads = OutputHeads(fields, invariants, normalizer, box_size=2 * math.pi, resolution=N)
    assert heads.heads == {"spin": "bounded", "fraction": "bounded", "height": "lower_bound",
                           "depth": "upper_bound", "mass": "free", "wind": "free",
                           "spin_of_wind": "curl"}
    assert heads.raw_channels == 7 and heads.channels == 8
    raw = 20.0 * _raw(heads)
    output = heads(raw)
    spin, fraction, height, depth, mass = (output[:, i] for i in range(5))
    torch.testing.assert_close(spin, torch.tanh(raw[:, 0]))
    assert spin.abs().max() <= 1.0
    assert fraction.min() >= 0.2 and fraction.max() <= 0.6
    assert height.min() >= 1.0 and depth.max() <= 2.0
    torch.testing.assert_close(mass, 0.5 + 2.0 * raw[:, 4])      # conserved_mean: left free
    grid = PeriodicGrid(N)
    wind = np.moveaxis(output[:, 5:7].double().numpy(), 1, -1)
    np.testing.assert_allclose(output[:, 7].double().numpy(), grid.curl(wind),
                               atol=1e-5 * np.abs(output[:, 7].numpy()).max())


def test_snap_discrete_puts_spins_on_plus_minus_one_and_leaves_other_fields():
    fields = (FieldSpec("spin", "1", "spin"), FieldSpec("level", "1", "three levels"),
              FieldSpec("height", "m", "free"), FieldSpec("wind", "m/s", "vector", rank=1))
    invariants = (Invariant("discrete_values", "spin", values=(-1.0, 1.0)),
                  Invariant("discrete_values", "level", values=(2.0, 0.0, 1.0)))
    statistics = {name: {"mean": 0.0, "std": 1.0, "rms": 1.0}
                  for name in ("spin", "level", "height", "wind")}
    normalizer = FieldNormalizer.from_statistics(fields, invariants, statistics)
    heads = OutputHeads(fields, invariants, normalizer, box_size=2 * math.pi, resolution=N)
    output = heads(3.0 * _raw(heads))
    snapped = heads.snap_discrete(output)
    spin, level = output[:, 0], output[:, 1]
    torch.testing.assert_close(snapped[:, 0], torch.where(spin > 0, 1.0, -1.0))
    # three allowed values given out of order: nearest of 0, 1, 2 (the head spans [0, 2])
    torch.testing.assert_close(snapped[:, 1], torch.clamp(torch.round(level), 0.0, 2.0))
    assert set(torch.unique(snapped[:, 1]).tolist()) <= {0.0, 1.0, 2.0}
    torch.testing.assert_close(snapped[:, 2:], output[:, 2:], rtol=0, atol=0)
    # the Ising system's declared spins
    ising, _ = _heads("ising")
    assert set(torch.unique(ising.snap_discrete(ising(_raw(ising)))).tolist()) == {-1.0, 1.0}


def test_straight_through_gives_snapped_values_and_the_relaxations_gradient():
    """Forward: exactly :meth:`snap_discrete` (spins +-1, other channels bit-identical);
    backward: the gradient of the relaxed output, as if the snap were the identity."""
    fields = (FieldSpec("spin", "1", "spin"), FieldSpec("height", "m", "free"))
    invariants = (Invariant("discrete_values", "spin", values=(-1.0, 1.0)),)
    statistics = {name: {"mean": 0.0, "std": 1.0, "rms": 1.0} for name in ("spin", "height")}
    normalizer = FieldNormalizer.from_statistics(fields, invariants, statistics)
    heads = OutputHeads(fields, invariants, normalizer, box_size=2 * math.pi, resolution=N)
    raw = _raw(heads).requires_grad_(True)
    weights = torch.randn(raw.shape[0], 2, N, N, generator=torch.Generator().manual_seed(3))
    relaxed = heads(raw)
    (expected,) = torch.autograd.grad((weights * relaxed).sum(), raw)
    passed = heads.straight_through(heads(raw))
    assert torch.equal(passed.detach(), heads.snap_discrete(relaxed.detach()))
    assert set(torch.unique(passed[:, 0]).tolist()) == {-1.0, 1.0}
    assert torch.equal(passed[:, 1].detach(), relaxed[:, 1].detach())
    (gradient,) = torch.autograd.grad((weights * passed).sum(), raw)
    torch.testing.assert_close(gradient, expected, rtol=0, atol=0)
    assert gradient.abs().sum() > 0
    # what the discriminator reads: the encoded snapped values
    encoded = heads.forward_normalised(raw, straight_through=True)
    torch.testing.assert_close(normalizer.decode(encoded.detach())[:, 0], passed[:, 0].detach())
    # nothing to snap: the fields themselves
    flow, _ = _heads("navier_stokes2d")
    output = flow(_raw(flow))
    assert flow.straight_through(output) is output


def test_heads_refuse_wrong_shapes_and_inconsistent_declarations():
    heads, _ = _heads("navier_stokes2d")
    with pytest.raises(ValueError, match=r"raw output must have shape \(B, 1, 32, 32\)"):
        heads(torch.zeros(2, 3, N, N))
    with pytest.raises(ValueError, match="curl_of 'velocity'"):
        fields = (FieldSpec("vorticity", "1/s", "w"),)
        invariants = (Invariant("curl_of", "vorticity", of="velocity"),)
        normalizer = FieldNormalizer.from_statistics(fields, invariants,
                                                     {"vorticity": STATISTICS["navier_stokes2d"]
                                                      ["vorticity"]})
        OutputHeads(fields, invariants, normalizer, box_size=1.0, resolution=N)
    other, _ = _heads("diffusion")
    with pytest.raises(ValueError, match="do not match"):
        OutputHeads(simulators.get("navier_stokes2d").fields, (), other.normalizer, 1.0, N)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_heads_on_cuda_under_bf16_autocast():
    heads, schema = _heads("navier_stokes2d", init="random", times=np.linspace(0, 10, 11))
    heads = heads.to("cuda")
    raw = _raw(heads).to("cuda")
    condition = torch.zeros(4, 4, device="cuda")
    condition[:, -1] = -1.0                                        # t = 0
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        output = heads(raw.to(torch.bfloat16), condition)
    assert output.dtype == torch.float32 and output.device.type == "cuda"
    assert max(_ns_violations(output.cpu(), schema.box_size)) < 1e-5
    assert np.max(np.abs(_energy(output.cpu()) / 0.5 - 1)) < 1e-6


# ------------------------------------------------------------ energy amplitude head
def _energy(output):
    """E = <|u|^2>/2 per sample, float64, from the velocity channels (numpy)."""
    velocity = output[:, 1:3].detach().to(torch.float64).numpy()
    return 0.5 * np.mean(np.sum(velocity**2, axis=1), axis=(-2, -1))


def _time_condition(times, t_last, batch):
    """Condition vectors (B, 4) whose last entry encodes ``times`` over [0, t_last]."""
    condition = torch.zeros(batch, 4)
    condition[:, -1] = 2 * torch.as_tensor(times, dtype=torch.float32) / t_last - 1
    return condition


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_energy_head_fixes_the_initial_energy_for_any_untrained_output(dtype):
    heads, schema = _heads("navier_stokes2d", box_size=3.0, dtype=dtype, init="random",
                           times=np.linspace(0.0, 10.0, 11))
    assert heads.heads == {"vorticity": "curl", "velocity": "stream_function_energy"}
    assert heads.raw_channels == 2 and heads.needs_condition
    raw = 7.0 * _raw(heads, batch=16) + 3.0                 # far from a trained output
    output = heads(raw, _time_condition(np.zeros(16), 10.0, 16))
    energy = _energy(output)
    # the simulator's declared E(t = 0) = 0.5, to float32 round-off of the output
    assert np.max(np.abs(energy / 0.5 - 1)) < (1e-6 if dtype == torch.float32 else 1e-12)
    # the head keeps the exact constraints of the plain stream function
    assert max(_ns_violations(output, schema.box_size)) < (1e-5 if dtype == torch.float32
                                                           else 1e-12)


def test_energy_head_amplitude_follows_the_mean_of_its_second_channel_in_time():
    # E(t) = E_0 exp(a t / T), a = spatial mean of raw channel 1, T = t_last = 10
    heads, _ = _heads("navier_stokes2d", dtype=torch.float64, init="random",
                      times=np.linspace(0.0, 10.0, 11))
    raw = _raw(heads, dtype=torch.float64, batch=6)
    rate = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.0, -4.0], dtype=torch.float64)
    raw[:, 1] = raw[:, 1] - raw[:, 1].mean(dim=(-2, -1), keepdim=True) + rate[:, None, None]
    times = np.array([0.0, 1.0, 2.5, 5.0, 7.5, 10.0])
    energy = _energy(heads(raw, _time_condition(times, 10.0, 6)))
    np.testing.assert_allclose(energy, 0.5 * np.exp(rate.numpy() * times / 10.0), rtol=1e-6)
    # the shape is the stream function's: doubling psi leaves the output unchanged
    doubled = raw.clone()
    doubled[:, 0] *= 2.0
    torch.testing.assert_close(heads(doubled, _time_condition(times, 10.0, 6)),
                               heads(raw, _time_condition(times, 10.0, 6)))


def test_energy_head_gradients_reach_shape_and_amplitude_channels():
    heads, _ = _heads("navier_stokes2d", init="random", times=np.linspace(0.0, 10.0, 11))
    raw = _raw(heads).requires_grad_(True)
    condition = _time_condition(np.array([0.0, 2.0, 5.0, 10.0]), 10.0, 4)
    weights = torch.randn(4, heads.channels, N, N, generator=torch.Generator().manual_seed(1))
    (heads(raw, condition) * weights).sum().backward()
    assert torch.isfinite(raw.grad).all()
    assert raw.grad[:, 0].abs().sum() > 0
    # the amplitude channel only acts through E(t): no gradient at t = 0, some later
    assert raw.grad[0, 1].abs().max() == 0 and raw.grad[1:, 1].abs().min() > 0


def test_energy_head_needs_the_condition_and_a_time_range():
    heads, _ = _heads("navier_stokes2d", init="random", times=np.linspace(0.0, 1.0, 3))
    with pytest.raises(ValueError, match="need the condition"):
        heads(_raw(heads))
    with pytest.raises(ValueError, match="time_range"):
        OutputHeads(heads.fields, heads.invariants, heads.normalizer, 2 * math.pi, N)


def test_energy_invariant_applies_to_the_random_init_only():
    simulator = simulators.get("navier_stokes2d")
    kinds = {init: [i.kind for i in simulator.invariants_for(init)]
             for init in ("random", "taylor_green", None)}
    assert "initial_energy" in kinds["random"]
    assert "initial_energy" not in kinds["taylor_green"] and "initial_energy" not in kinds[None]
    heads, _ = _heads("navier_stokes2d", init="taylor_green")
    assert heads.heads["velocity"] == "stream_function" and not heads.needs_condition


def _old_heads_decode(transform, raw):
    """The heads' decode as it was written in constraints.py before it became the
    normaliser's (``FieldTransform.decode``): kept to check the outputs did not change."""
    if transform.kind == "log":
        return torch.exp(torch.clamp(raw * transform.scale + transform.offset,
                                     min=-LOG_CLAMP, max=LOG_CLAMP))
    return raw * transform.scale + transform.offset


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_heads_decode_is_the_normalisers_and_bit_identical_to_the_old_formula(dtype):
    transforms = [FieldTransform("density", 0, "log", -0.125, 0.5),
                  FieldTransform("wide", 0, "log", 3.0, 40.0),   # exponents past +-LOG_CLAMP
                  FieldTransform("delta", 0, "scale", 0.0, 4.0),
                  FieldTransform("spin", 0, "bounds", 0.5, 1.5),
                  FieldTransform("u", 0, "standard", 1.0, 0.7),
                  FieldTransform("velocity", 1, "scale", 0.0, 0.8)]
    fields = [FieldSpec(t.name, "1", t.name, rank=t.rank) for t in transforms]
    normalizer = FieldNormalizer(transforms)
    heads = OutputHeads(fields, [Invariant("bounded", "density", low=0.0)], normalizer,
                        2 * math.pi, N, dtype=dtype)
    assert heads.heads == {"density": "positive", "wide": "free", "delta": "free",
                           "spin": "free", "u": "free", "velocity": "free"}
    assert {t.kind for t in transforms} == {"log", "scale", "bounds", "standard"}
    raw = 3.0 * _raw(heads, dtype=dtype, batch=8, seed=5)
    exponent = raw[:, 1] * 40.0 + 3.0
    assert exponent.max() > LOG_CLAMP and exponent.min() < -LOG_CLAMP   # the clamp acts
    expected = torch.cat([_old_heads_decode(t, raw[:, channel])
                          for t, (_, _, channel) in zip(transforms, heads.layout, strict=True)],
                         dim=1)
    output = heads(raw)
    assert output.dtype == dtype and torch.equal(output, expected)
    assert torch.isfinite(output).all() and (output[:, :2] > 0).all()
    for transform, (name, _, channel) in zip(transforms, heads.layout, strict=True):
        part = raw[:, channel]
        assert torch.equal(heads._decode(name, part), _old_heads_decode(transform, part))
        # without the clamp it is the normaliser's decode of that field
        assert torch.equal(normalizer.decode_field(name, part), normalizer.decode(raw)[:, channel])
    # where the clamp does not act, the heads' decode is exactly FieldNormalizer.decode
    inside = raw.clone()
    inside[:, 1] = inside[:, 1].clamp(-1.0, 1.0)
    assert torch.equal(heads(inside), normalizer.decode(inside))


def test_a_kind_declared_twice_is_read_the_first_way_by_normaliser_and_heads():
    fields = [FieldSpec("a", "1", "a")]
    invariants = [Invariant("bounded", "a", low=0.0, high=1.0),
                  Invariant("bounded", "a", low=-2.0, high=2.0)]
    assert declared_invariants("a", invariants) == {"bounded": invariants[0]}
    normalizer = FieldNormalizer.from_statistics(
        fields, invariants, {"a": {"mean": 0.4, "std": 0.2, "rms": 0.5}})
    # [0, 1] (the first declaration) onto [-1, 1]; the last one would give offset 0, scale 2
    assert normalizer.transform("a") == FieldTransform("a", 0, "bounds", 0.5, 0.5)
    heads = OutputHeads(fields, invariants, normalizer, 2 * math.pi, N)
    assert heads.heads == {"a": "bounded"} and heads._bounds("a") == (0.0, 1.0)
    raw = 10.0 * _raw(heads, batch=8)
    output = heads(raw)
    assert output.min() >= 0.0 and output.max() <= 1.0 and output.max() - output.min() > 0.99
    # the heads' range is the normaliser's: normalised outputs fill [-1, 1]
    normalised = heads.forward_normalised(raw)
    assert normalised.abs().max() <= 1.0 and normalised.abs().max() > 0.99
