"""Hard physics output heads: raw generator channels -> fields that keep the invariants.

The generator produces ``raw_channels`` unconstrained channels ``(B, R, N, N)``;
:class:`OutputHeads` turns them into physical fields ``(B, C, N, N)`` in the channel
layout of :func:`surrogate.data.channel_layout` (schema order; a scalar field 1 channel,
a vector field 2), choosing one head per field from the invariants the simulator
declares (``Simulator.invariants``), so that the invariant holds *exactly* (to
round-off) for every output, trained or not:

* vector field declared ``divergence_free`` (1 raw channel, a stream function
  ``psi``): ``u = s (d psi/dy', -d psi/dx')``, the curl of ``psi``, so ``div u = 0``
  (head ``"stream_function"``);
* vector field declared ``divergence_free`` and ``initial_energy`` ``E_0`` (2 raw
  channels, ``psi`` and ``r``): the stream function's velocity ``u_psi`` gives the
  *shape*, a conditional amplitude the kinetic energy,
  ``u = u_psi sqrt(E(t) / E_psi)`` with ``E_psi = <|u_psi|^2>/2`` and
  ``E(t) = E_0 exp(a t / T)``, where ``a = <r>`` is the spatial mean of the second raw
  channel (a function of the latent and the condition, so the energy's distribution
  is learned), ``t`` the snapshot's physical time and ``T = max(|t_first|, |t_last|)``
  the time scale of the training file. At ``t = 0``, ``E = E_0`` exactly for every
  latent, trained or not (head ``"stream_function_energy"``; it needs the condition,
  whose last entry encodes ``t``, see :class:`surrogate.data.ConditionEncoder`);
* scalar field declared ``curl_of`` a generated vector field ``v`` (no raw channel):
  ``w = dv_y/dx - dv_x/dy``, the spectral curl of the generated ``v``, hence zero mean
  as well (head ``"curl"``);
* ``discrete_values``, or ``bounded`` with ``low`` and ``high`` (1 raw channel):
  ``f = mid + half tanh(r)``, i.e. ``low + (high - low) sigmoid(2 r)``, inside
  ``(low, high)`` (head ``"bounded"``); for ``discrete_values`` this is the training
  relaxation, and :meth:`OutputHeads.snap_discrete` puts sampled fields on the allowed
  values;
* ``bounded`` with ``low = 0`` only, i.e. positive (1 raw channel):
  ``f = exp(log_mean + log_std r)``, the normaliser's ``"log"`` decode, the exponent
  clamped to ``[-LOG_CLAMP, LOG_CLAMP]`` (head ``"positive"``; without log statistics
  it is treated as the next case);
* other one-sided ``bounded`` (1 raw channel): ``low + softplus(d(r) - low)`` or
  ``high - softplus(high - d(r))`` (heads ``"lower_bound"``, ``"upper_bound"``);
* scalar ``zero_mean`` (1 raw channel): ``d(r) - <d(r)>``, the spatial mean removed
  (head ``"zero_mean"``);
* anything else (1 raw channel, 2 for a vector): ``d(r)``, identity in normalised space
  (head ``"free"``).

Here ``d`` is :meth:`surrogate.data.FieldNormalizer.decode` of the field, ``s`` the
vector field's physical scale (its normaliser ``scale``, the rms of the components), and
``x' = 2 pi x / L``, ``y' = 2 pi y / L`` dimensionless coordinates on the box of side
``L`` (``d/dx' = (L / 2 pi) d/dx``; in Fourier space ``i m`` with ``m`` the integer mode
number), so the raw stream function ``psi`` is dimensionless and a ``psi`` of unit
amplitude at mode number ``m`` gives a velocity of amplitude ``s m``, whatever the
resolution. When a field declares several invariants the first case that applies wins
(e.g. vorticity: ``curl_of`` before ``zero_mean``).

``conserved_mean`` is not enforced: the conserved value is the mean of the trajectory's
initial state, which a per-snapshot generator does not know; such fields are left free
(and checked by the validation instead). ``energy_budget`` is not a per-snapshot
constraint either. A divergence-free periodic field is ``curl psi`` plus a uniform
mean flow; the head generates no mean flow (the reference systems have none).

Spectral maths: derivatives are multiplications by ``i k`` on ``torch.fft.rfft2``
spectra (numpy's convention, as in :mod:`simulators.grid`), with the Nyquist mode of
every odd derivative set to zero, so that derivatives of real fields are real and the
discrete ``div u = d_x d_y psi - d_y d_x psi`` cancels mode by mode: ``div u = 0`` and
``w = curl u`` to round-off of the computing dtype. All of it runs in float32 (or the
``dtype`` given) with autocast disabled, whatever the input dtype (bf16 under mixed
precision): FFTs in reduced precision would break the constraints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from simulators.base import FieldSpec, Invariant
from simulators.store import StoreSchema
from surrogate.data import FieldNormalizer, channel_layout, declared_invariants, n_channels

__all__ = ["HEAD_KINDS", "LOG_CLAMP", "OutputHeads", "kinetic_energy"]

#: head names (see the module docstring's table)
HEAD_KINDS = ("stream_function", "stream_function_energy", "curl", "bounded", "positive",
              "lower_bound", "upper_bound", "zero_mean", "free")
#: the log of a positive field is clamped to ``[-LOG_CLAMP, LOG_CLAMP]`` before ``exp``, so
#: that the output stays finite and strictly positive in float32 (``exp`` overflows above
#: ~88.7 and underflows to 0 below ~-103); real data sit far inside
LOG_CLAMP = 80.0


def kinetic_energy(velocity: torch.Tensor) -> torch.Tensor:
    """Kinetic energy per unit area ``E = <|u|^2>/2`` of each sample (the torch twin of
    :func:`surrogate.validation.conservation.kinetic_energy`, channels first).

    Args:
        velocity: ``(B, 2, N, N)``, length/time.
    Returns:
        ``(B,)``, length^2/time^2, in the input's dtype.
    """
    return 0.5 * velocity.square().sum(dim=1).mean(dim=(-2, -1))


class OutputHeads(nn.Module):
    """Raw generator output ``(B, R, N, N)`` -> constrained physical fields ``(B, C, N, N)``.

    See the module docstring for the heads. The module has no learnable parameters and
    an empty ``state_dict``.

    Args:
        fields: declared fields, in schema order (fixes the output channel layout).
        invariants: declared invariants (choose the heads).
        normalizer: field transforms (scales of the heads; :meth:`forward_normalised`).
        box_size: side ``L`` of the periodic box (length units).
        resolution: grid points per side ``N``.
        dtype: floating type of the outputs and of the spectral maths (default float32,
            also under mixed precision; float64 for exactness checks).
        time_range: ``(t_first, t_last)`` of the condition's time entry (the training
            file's first and last snapshot times); needed by the
            ``"stream_function_energy"`` head only.

    Attributes:
        raw_channels: ``R``, the channels the generator must produce.
        raw_layout: ``[(field, head kind, raw channel slice)]`` in schema order
            (``curl`` heads take an empty slice).
        heads: ``{field: head kind}``.
    """

    def __init__(self, fields: Sequence[FieldSpec], invariants: Sequence[Invariant],
                 normalizer: FieldNormalizer, box_size: float, resolution: int, *,
                 dtype: torch.dtype = torch.float32,
                 time_range: tuple[float, float] | None = None) -> None:
        super().__init__()
        names = [(spec.name, spec.rank) for spec in fields]
        if names != [(t.name, t.rank) for t in normalizer.transforms]:
            raise ValueError(f"normaliser fields {normalizer.field_names} do not match the "
                             f"declared fields {[name for name, _ in names]}")
        if not (math.isfinite(box_size) and box_size > 0):
            raise ValueError(f"box_size must be positive, got {box_size!r}")
        if resolution < 2:
            raise ValueError(f"resolution must be at least 2, got {resolution!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        self.fields = tuple(fields)
        self.invariants = tuple(invariants)
        self.normalizer = normalizer
        self.box_size = float(box_size)
        self.resolution = int(resolution)
        self.dtype = dtype
        self.layout = channel_layout(self.fields)
        self.channels = n_channels(self.fields)
        self.heads = {spec.name: self._choose(spec) for spec in self.fields}
        self.time_range = None if time_range is None else tuple(float(t) for t in time_range)
        if self.needs_condition and (self.time_range is None or not all(
                math.isfinite(t) for t in self.time_range)):
            raise ValueError("the stream_function_energy head needs the finite time_range "
                             f"of the condition, got {time_range!r}")
        self.raw_layout: list[tuple[str, str, slice]] = []
        start = 0
        for spec in self.fields:
            kind = self.heads[spec.name]
            width = {"stream_function": 1, "stream_function_energy": 2,
                     "curl": 0}.get(kind, 1 + spec.rank)
            self.raw_layout.append((spec.name, kind, slice(start, start + width)))
            start += width
        self.raw_channels = start
        self._mode_tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_schema(cls, schema: StoreSchema, normalizer: FieldNormalizer, *,
                    dtype: torch.dtype = torch.float32) -> OutputHeads:
        """Heads for a file's (or simulator's) schema: fields, invariants, box, grid and
        the time range of its snapshots."""
        times = schema.times
        return cls(schema.fields, schema.invariants, normalizer, schema.box_size,
                   schema.resolution, dtype=dtype,
                   time_range=(float(times[0]), float(times[-1])))

    @property
    def needs_condition(self) -> bool:
        """Whether :meth:`forward` needs the condition (a head that reads the time)."""
        return "stream_function_energy" in self.heads.values()

    # ------------------------------------------------------------------- choice
    def _declared(self, name: str) -> dict[str, Invariant]:
        """``{kind: Invariant}`` of field ``name``, first declaration of a kind winning:
        :func:`surrogate.data.declared_invariants`, the normaliser's reading too."""
        return declared_invariants(name, self.invariants)

    def _allowed_values(self, name: str) -> tuple[float, ...]:
        """The declared ``discrete_values`` of field ``name`` (empty if none)."""
        discrete = self._declared(name).get("discrete_values")
        return tuple(discrete.values) if discrete is not None and discrete.values else ()

    def _choose(self, spec: FieldSpec) -> str:
        declared = self._declared(spec.name)
        if spec.rank == 1:
            if "divergence_free" not in declared:
                return "free"
            return ("stream_function_energy" if "initial_energy" in declared
                    else "stream_function")
        if "curl_of" in declared:
            source = declared["curl_of"].of
            ranks = {f.name: f.rank for f in self.fields}
            if ranks.get(source) != 1:
                raise ValueError(f"field {spec.name!r} is declared curl_of {source!r}, which "
                                 f"is not a generated vector field")
            return "curl"
        bounded = declared.get("bounded")
        if self._allowed_values(spec.name) or \
                (bounded is not None and bounded.low is not None and bounded.high is not None):
            return "bounded"
        if bounded is not None and bounded.low == 0 and bounded.high is None \
                and self.normalizer.transform(spec.name).kind == "log":
            return "positive"
        if bounded is not None and bounded.low is not None and bounded.high is None:
            return "lower_bound"
        if bounded is not None and bounded.high is not None and bounded.low is None:
            return "upper_bound"
        if "zero_mean" in declared:
            return "zero_mean"
        return "free"

    def _bounds(self, name: str) -> tuple[float | None, float | None]:
        allowed = self._allowed_values(name)
        if allowed:
            return float(min(allowed)), float(max(allowed))
        bounded = self._declared(name)["bounded"]
        return bounded.low, bounded.high

    # ------------------------------------------------------------------ forward
    def _decode(self, name: str, raw: torch.Tensor) -> torch.Tensor:
        """Normaliser decode of one field's raw channels
        (:meth:`surrogate.data.FieldNormalizer.decode_field`), the exponent of a ``log``
        field clamped to ``[-LOG_CLAMP, LOG_CLAMP]``."""
        return self.normalizer.decode_field(name, raw, log_clamp=LOG_CLAMP)

    def _derivative_factors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(i m_x, i m_y)``: factors of ``d/dx'``, ``d/dy'`` on rfft2 spectra.

        ``m`` are the integer mode numbers (``k = 2 pi m / L``) with the Nyquist mode
        ``m = -N/2`` set to zero; shapes ``(N, 1)`` and ``(1, N // 2 + 1)``, complex of
        :attr:`dtype`. Made once per device (kept out of ``state_dict`` and out of
        ``Module.to``, which could round them to a low-precision dtype).
        """
        if device not in self._mode_tables:
            n = self.resolution
            modes_x = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
            modes_y = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)
            if n % 2 == 0:
                modes_x[n // 2] = 0.0
                modes_y[n // 2] = 0.0
            factors = tuple(torch.complex(torch.zeros_like(m), m).to(device=device,
                                                                       dtype=self.dtype.to_complex())
                            for m in (modes_x.view(n, 1), modes_y.view(1, -1)))
            self._mode_tables[device] = factors
        return self._mode_tables[device]

    def _spectral_derivative(self, spectrum: torch.Tensor, axis: str) -> torch.Tensor:
        """``d/dx'`` or ``d/dy'`` (dimensionless coordinates) of an rfft2 spectrum."""
        factor_x, factor_y = self._derivative_factors(spectrum.device)
        return spectrum * (factor_x if axis == "x" else factor_y)

    def _curl_spectrum(self, u_x_hat: torch.Tensor, u_y_hat: torch.Tensor) -> torch.Tensor:
        """rfft2 spectrum of ``w = du_y/dx - du_x/dy`` from those of ``u_x``, ``u_y``."""
        to_length = 2 * math.pi / self.box_size          # d/dx = (2 pi / L) d/dx'
        return to_length * (self._spectral_derivative(u_y_hat, "x")
                            - self._spectral_derivative(u_x_hat, "y"))

    def curl(self, velocity: torch.Tensor) -> torch.Tensor:
        """Spectral curl ``w = du_y/dx - du_x/dy`` of physical vector fields.

        The arithmetic of the ``"curl"`` head (Nyquist mode of each derivative zeroed),
        in :attr:`dtype` with autocast off; differentiable.

        Args:
            velocity: ``(B, 2, N, N)``, components ``(u_x, u_y)``, length/time.
        Returns:
            ``(B, N, N)``, 1/time.
        """
        n = self.resolution
        if velocity.ndim != 4 or velocity.shape[1] != 2 \
                or tuple(velocity.shape[-2:]) != (n, n):
            raise ValueError(f"velocity must have shape (B, 2, {n}, {n}), "
                             f"got {tuple(velocity.shape)}")
        with torch.autocast(device_type=velocity.device.type, enabled=False):
            spectra = torch.fft.rfft2(velocity.to(self.dtype), dim=(-2, -1))
            curl_hat = self._curl_spectrum(spectra[:, 0], spectra[:, 1])
            return torch.fft.irfft2(curl_hat, s=(n, n), dim=(-2, -1))

    def forward(self, raw: torch.Tensor, condition: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Raw channels ``(B, raw_channels, N, N)`` -> physical fields ``(B, C, N, N)``.

        ``condition`` ``(B, P + 1)`` is the generator's condition (only its last entry,
        the encoded time, is read); required when :attr:`needs_condition`. The output
        has dtype :attr:`dtype` (float32 by default) whatever the input dtype; gradients
        flow to ``raw``.
        """
        if raw.ndim != 4 or raw.shape[1] != self.raw_channels \
                or tuple(raw.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(f"raw output must have shape (B, {self.raw_channels}, "
                             f"{self.resolution}, {self.resolution}), got {tuple(raw.shape)}")
        times = None
        if self.needs_condition:
            if condition is None or condition.ndim != 2 or condition.shape[0] != raw.shape[0]:
                raise ValueError(f"the {', '.join(self.heads)} heads need the condition "
                                 f"(B={raw.shape[0]}, P + 1), got "
                                 f"{None if condition is None else tuple(condition.shape)}")
            times = self.physical_time(condition)
        with torch.autocast(device_type=raw.device.type, enabled=False):
            return self._forward(raw.to(self.dtype), times)

    def physical_time(self, condition: torch.Tensor) -> torch.Tensor:
        """Snapshot times ``(B,)`` (time units) from the condition's last entry,
        ``t = t_first + (c_t + 1) / 2 (t_last - t_first)``, in :attr:`dtype`."""
        first, last = self.time_range
        fraction = (condition[:, -1].to(self.dtype).clamp(-1.0, 1.0) + 1.0) / 2.0
        return first + fraction * (last - first)

    def _energy_factor(self, name: str, part: torch.Tensor, velocity: torch.Tensor,
                       times: torch.Tensor) -> torch.Tensor:
        """``sqrt(E(t) / E_psi)`` per sample, shape ``(B, 1, 1, 1)``, of a
        ``stream_function_energy`` head (module docstring); ``velocity`` is ``u_psi``
        ``(B, 2, N, N)`` and ``part`` the head's raw channels ``(B, 2, N, N)``."""
        value = float(self._declared(name)["initial_energy"].value)
        shape_energy = kinetic_energy(velocity)
        scale = self.normalizer.transform(name).scale
        time_scale = max(abs(t) for t in self.time_range) or 1.0
        exponent = torch.clamp(part[:, 1].mean(dim=(-2, -1)) * (times / time_scale),
                               min=-LOG_CLAMP, max=LOG_CLAMP)
        target = value * torch.exp(exponent)
        return torch.sqrt(target / (shape_energy + 1e-12 * scale * scale))[:, None, None, None]

    def _forward(self, raw: torch.Tensor, times: torch.Tensor | None) -> torch.Tensor:
        n = self.resolution
        outputs: dict[str, torch.Tensor] = {}
        spectra: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}   # vector: (û_x, û_y)
        for name, kind, channel in self.raw_layout:
            part = raw[:, channel]
            if kind in ("stream_function", "stream_function_energy"):
                scale = self.normalizer.transform(name).scale
                psi_hat = torch.fft.rfft2(part[:, 0], dim=(-2, -1))
                u_hat = (scale * self._spectral_derivative(psi_hat, "y"),
                         -scale * self._spectral_derivative(psi_hat, "x"))
                velocity = torch.stack([torch.fft.irfft2(c, s=(n, n), dim=(-2, -1))
                                        for c in u_hat], dim=1)
                if kind == "stream_function_energy":
                    factor = self._energy_factor(name, part, velocity, times)
                    velocity = velocity * factor
                    u_hat = tuple(c * factor[:, 0] for c in u_hat)
                spectra[name] = u_hat
                outputs[name] = velocity
            elif kind == "free":
                outputs[name] = self._decode(name, part)
            elif kind == "bounded":
                low, high = self._bounds(name)
                outputs[name] = (low + high) / 2 + (high - low) / 2 * torch.tanh(part)
            elif kind == "positive":
                outputs[name] = self._decode(name, part)
            elif kind == "lower_bound":
                low = self._bounds(name)[0]
                outputs[name] = low + functional.softplus(self._decode(name, part) - low)
            elif kind == "upper_bound":
                high = self._bounds(name)[1]
                outputs[name] = high - functional.softplus(high - self._decode(name, part))
            elif kind == "zero_mean":
                decoded = self._decode(name, part)
                outputs[name] = decoded - decoded.mean(dim=(-2, -1), keepdim=True)
        for name, kind, _ in self.raw_layout:
            if kind != "curl":
                continue
            source = self._declared(name)["curl_of"].of
            if source not in spectra:
                vector = outputs[source]
                spectra[source] = (torch.fft.rfft2(vector[:, 0], dim=(-2, -1)),
                                   torch.fft.rfft2(vector[:, 1], dim=(-2, -1)))
            curl_hat = self._curl_spectrum(*spectra[source])
            outputs[name] = torch.fft.irfft2(curl_hat, s=(n, n), dim=(-2, -1))[:, None]
        return torch.cat([outputs[spec.name] for spec in self.fields], dim=1)

    def snap_discrete(self, fields: torch.Tensor) -> torch.Tensor:
        """Physical fields ``(B, C, N, N)`` with every ``discrete_values`` field replaced by
        its nearest allowed value (ties to the lower); other channels are unchanged.

        Used when *sampling* (``surrogate generate``): the ``"bounded"`` head trains on the
        open interval ``(min, max)`` (a differentiable relaxation), and the snapped output
        is a valid configuration (e.g. Ising spins exactly +-1), so ``discrete_values``
        holds exactly in generated files. Not differentiable; not used in training.
        """
        out = fields.clone()
        for name, _, channels in self.layout:
            values = self._allowed_values(name)
            if values:
                allowed = torch.tensor(sorted(values), dtype=fields.dtype,
                                       device=fields.device)
                nearest = (out[:, channels, ..., None] - allowed).abs().argmin(dim=-1)
                out[:, channels] = allowed[nearest]
        return out

    def straight_through(self, fields: torch.Tensor) -> torch.Tensor:
        """:meth:`snap_discrete` with the straight-through gradient (Bengio, Léonard &
        Courville 2013): the value is the snapped field exactly (``discrete_values``
        fields on their allowed values, other channels unchanged), the gradient is that of
        the relaxation ``fields`` (identity): ``snap(f) + (f - f.detach())``.

        What the discriminators see of generated discrete fields with
        ``TrainConfig.straight_through``: a relaxed spin in ``(-1, 1)`` is never exactly
        +-1, so a discriminator shown relaxed fakes can tell them from real spins by
        ``|s| < 1`` alone; snapped, fakes and reals take the same values and differ
        only in how the spins are arranged.
        """
        if not any(self._allowed_values(name) for name, _, _ in self.layout):
            return fields
        return self.snap_discrete(fields).detach() + (fields - fields.detach())

    def forward_normalised(self, raw: torch.Tensor, condition: torch.Tensor | None = None,
                           *, straight_through: bool = False) -> torch.Tensor:
        """``normalizer.encode(forward(raw, condition))``: what the discriminator sees of
        fakes (discrete fields through :meth:`straight_through` when asked).

        Real data go through the same :meth:`FieldNormalizer.encode`, so real and fake
        are compared through one transform.
        """
        fields = self(raw, condition)
        return self.normalizer.encode(self.straight_through(fields) if straight_through
                                      else fields)

    def extra_repr(self) -> str:
        heads = ", ".join(f"{name}: {kind}" for name, kind in self.heads.items())
        return f"raw_channels={self.raw_channels}, N={self.resolution}, {heads}"
