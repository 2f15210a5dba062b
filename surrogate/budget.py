"""Energy budget of generated trajectories: a training penalty for ``dE/dt = P - 2 nu Z``.

A system that declares the invariant ``energy_budget`` on a vector field ``u``
(``navier_stokes2d``'s velocity) obeys, per unit area of the periodic box,

    dE/dt = P - 2 nu Z,     E = <|u|^2>/2,  Z = <w^2>/2,  w = du_y/dx - du_x/dy,

with ``P = <F . u>`` the work of the body force (a Kolmogorov force
``F = (A sin(2 pi m_f y / L), 0)``; ``P = 0`` unforced). A generator that draws one
snapshot per call does not know this law: it holds only between snapshots of one
trajectory, i.e. of one latent ``z`` at two times. The trainer already generates such
pairs for the temporal discriminator, ``(G(z, c_a), G(z, c_b))`` with ``t_a < t_b``
consecutive snapshot times of the training file; :class:`EnergyBudget` measures each
pair's budget by the trapezoid rule,

    r = [ (E_b - E_a) / (t_b - t_a) - (P_a + P_b)/2 + nu (Z_a + Z_b) ]
        / sg[ nu (Z_a + Z_b) + |P_a + P_b|/2 ],

the residual relative to the size of the source and sink terms (``sg``: no gradient
through the denominator), and the penalty is ``mean(r^2)`` over the pairs
(``TrainConfig.budget_weight`` times it is added to the generator loss). The trapezoid
rule is exact for a linear ``E(t)`` and otherwise off by ``-(dt^3/12) E'''``; the same
residual of the *training* pairs (logged as ``energy_budget_real``) is that
discretisation floor, which a perfect surrogate would also show. The validation's check
(:func:`surrogate.validation.conservation.energy_budget_violation`) is the centred
difference over three snapshots, so a generator whose consecutive pairs close the
trapezoid budget fails it only by the same order of error as the simulator.

This is a penalty on *what* is generated, not a constraint the architecture guarantees
(as the ``initial_energy`` head guarantees ``E(0)``): the exact law couples the energy at
``t`` to the enstrophy at all earlier times, which a per-snapshot generator cannot see.

Parameters are read by name from the condition (:data:`simulators.base.ENERGY_BUDGET_VISCOSITY`,
:data:`~simulators.base.ENERGY_BUDGET_FORCING`), the names the validation reads; a
system whose declared parameter ranges allow a term no budget implements
(:data:`~simulators.base.ENERGY_BUDGET_UNSUPPORTED`) has no penalty.
"""

from __future__ import annotations

import math

import torch

from simulators.base import (
    ENERGY_BUDGET_FORCING,
    ENERGY_BUDGET_UNSUPPORTED,
    ENERGY_BUDGET_VISCOSITY,
)
from simulators.store import StoreSchema
from surrogate.constraints import OutputHeads, kinetic_energy
from surrogate.data import ConditionEncoder, channel_layout

__all__ = ["EnergyBudget", "energy_budget_unavailable"]


def energy_budget_unavailable(schema: StoreSchema, encoder: ConditionEncoder) -> str | None:
    """Why a file's system has no trainable energy budget, or ``None`` when it has one.

    Reasons: no ``energy_budget`` invariant declared; its field is not a generated vector
    field; the viscosity is not a parameter; a declared range allows a term no budget
    implements; only one of the two forcing parameters is declared.
    """
    declared = [inv for inv in schema.invariants if inv.kind == "energy_budget"]
    if not declared:
        return f"{schema.system} declares no energy_budget invariant"
    name = declared[0].field
    ranks = {spec.name: spec.rank for spec in schema.fields}
    if ranks.get(name) != 1:
        return f"energy_budget field {name!r} is not a generated vector field"
    bounds = dict(zip(encoder.names, zip(encoder.lows, encoder.highs, strict=True),
                      strict=True))
    if ENERGY_BUDGET_VISCOSITY not in bounds:
        return f"no viscosity parameter {ENERGY_BUDGET_VISCOSITY!r}"
    for term in ENERGY_BUDGET_UNSUPPORTED:
        if term in bounds and bounds[term] != (0.0, 0.0):
            return f"the {term} term of the energy budget is not implemented"
    present = [term in bounds for term in ENERGY_BUDGET_FORCING]
    if any(present) and not all(present):
        return f"forcing work needs both {' and '.join(ENERGY_BUDGET_FORCING)}"
    return None


class EnergyBudget:
    """The energy budget of pairs of generated snapshots (module docstring).

    Args:
        heads: the output heads (box, grid, spectral curl, dtype of the maths).
        encoder: the condition encoder (physical parameters and times of a condition).
        field: the vector field of the ``energy_budget`` invariant.
        fields: the declared fields in schema order (the channel layout).
    """

    def __init__(self, heads: OutputHeads, encoder: ConditionEncoder, field: str,
                 fields) -> None:
        self.heads = heads
        self.encoder = encoder
        self.field = field
        layout = {name: channels for name, _, channels in channel_layout(fields)}
        self.channels = layout[field]
        self.forced = all(term in encoder.names for term in ENERGY_BUDGET_FORCING)

    @classmethod
    def from_schema(cls, schema: StoreSchema, heads: OutputHeads,
                    encoder: ConditionEncoder) -> EnergyBudget:
        """The budget of a file's system; ``ValueError`` (naming why) when it has none
        (:func:`energy_budget_unavailable`)."""
        reason = energy_budget_unavailable(schema, encoder)
        if reason is not None:
            raise ValueError(f"no energy budget to train on: {reason}")
        field = next(inv.field for inv in schema.invariants if inv.kind == "energy_budget")
        return cls(heads, encoder, field, schema.fields)

    def terms(self, fields: torch.Tensor, condition: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(E, Z, P)`` per snapshot, each ``(B,)``, in the heads' dtype.

        Args:
            fields: physical fields ``(B, C, N, N)`` in the channel layout.
            condition: their conditions ``(B, P + 1)``.
        Returns:
            energy (length^2/time^2), enstrophy (1/time^2), forcing work
            (length^2/time^3; zeros when the system declares no forcing).
        """
        parameters, _ = self.encoder.decode_tensor(condition.to(self.heads.dtype))
        return self._terms(fields, parameters)

    def _terms(self, fields: torch.Tensor, parameters: dict[str, torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`terms` from the decoded physical parameters ``{name: (B,)}``."""
        velocity = fields[:, self.channels].to(self.heads.dtype)
        energy = kinetic_energy(velocity)
        enstrophy = 0.5 * self.heads.curl(velocity).square().mean(dim=(-2, -1))
        work = torch.zeros_like(energy)
        if self.forced:
            amplitude, wavenumber = (parameters[name] for name in ENERGY_BUDGET_FORCING)
            n = self.heads.resolution
            y = torch.arange(n, device=fields.device, dtype=self.heads.dtype) / n  # y / L
            force = amplitude[:, None] * torch.sin(2 * math.pi * wavenumber[:, None] * y)
            work = (velocity[:, 0] * force[:, None, :]).mean(dim=(-2, -1))
        return energy, enstrophy, work

    def relative_residual(self, fields_a: torch.Tensor, fields_b: torch.Tensor,
                          condition_a: torch.Tensor, condition_b: torch.Tensor
                          ) -> torch.Tensor:
        """Trapezoid-rule residual ``r`` of each pair (module docstring), shape ``(B,)``.

        Args:
            fields_a, fields_b: physical fields ``(B, C, N, N)`` of one latent (or one
                simulated trajectory) at the earlier and the later time.
            condition_a, condition_b: their conditions ``(B, P + 1)``; same parameters,
                ``t_b > t_a``.
        """
        dtype = self.heads.dtype
        parameters_a, time_a = self.encoder.decode_tensor(condition_a.to(dtype))
        parameters_b, time_b = self.encoder.decode_tensor(condition_b.to(dtype))
        energy_a, enstrophy_a, work_a = self._terms(fields_a, parameters_a)
        energy_b, enstrophy_b, work_b = self._terms(fields_b, parameters_b)
        nu = parameters_a[ENERGY_BUDGET_VISCOSITY]
        step = time_b - time_a
        if bool((step <= 0).any()):
            raise ValueError("the energy budget needs t_b > t_a for every pair")
        dissipation = nu * (enstrophy_a + enstrophy_b)
        forcing = 0.5 * (work_a + work_b)
        residual = (energy_b - energy_a) / step - forcing + dissipation
        scale = (dissipation + forcing.abs()).detach()
        return residual / (scale + torch.finfo(dtype).tiny)

    def penalty(self, fields_a: torch.Tensor, fields_b: torch.Tensor,
                condition_a: torch.Tensor, condition_b: torch.Tensor) -> torch.Tensor:
        """``mean(r^2)`` over the pairs (a scalar; gradients flow to the fields)."""
        return self.relative_residual(fields_a, fields_b, condition_a, condition_b
                                      ).square().mean()
