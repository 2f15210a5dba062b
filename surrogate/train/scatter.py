"""The simulator's within-condition scatter of one snapshot's log shell power: the target
of the spectral scatter loss (:func:`surrogate.losses.spectral_scatter_loss`).

A sweep holds one trajectory per condition, so the scatter at a condition cannot be read
from repeated simulations. It is estimated from nearest neighbours in parameter space:
for each training trajectory ``j`` and its nearest other trajectory ``j'`` (Euclidean
distance of the encoded parameters, each in [-1, 1]) at the same time::

    v(t, c, k) = mean_j (y_j(t, c, k) - y_j'(t, c, k))^2 / 2

with ``y = log_shell_power(fields)`` (:func:`surrogate.losses.log_shell_power`). For two
samples of one condition this is the within-condition variance; a neighbour at a
slightly different condition adds the squared change of the mean log power between the
two, ``(d mean y / d p . dp)^2 / 2``, negligible when the sweep is dense (GRF, 400
trajectories over its range: ~0.5 % of the scatter at the highest shell). ``v`` is
pooled over the conditions (one value per time, channel and shell): the loss compares
it with the generated scatter pooled over the batch's conditions. Log shell power is
invariant under shifts, the square's rotations and reflections and a sign flip, so the
system's symmetry augmentation does not change it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from surrogate.losses import log_shell_power

__all__ = ["ScatterTarget", "log_power_table", "nearest_time_index"]


def log_power_table(dataset, eps: float = 1e-6, chunk: int = 256
                    ) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Every snapshot's log shell power (:func:`surrogate.losses.log_shell_power`) of a
    :class:`surrogate.data.SnapshotDataset`, read once in chunks.

    Returns ``(log_power, parameters, times)``: float64 ``(n_trajectories, T, C, N // 2)``,
    the encoded parameters of each trajectory ``(n_trajectories, P)`` (float64 numpy)
    and the encoded times ``(T,)``.
    """
    n_trajectories, n_times = int(dataset.trajectories.size), dataset.n_times
    parts = []
    with torch.no_grad():
        for start in range(0, len(dataset), chunk):
            fields, _ = dataset.get_batch(np.arange(start, min(start + chunk, len(dataset))))
            parts.append(log_shell_power(fields, eps).double())
    log_power = torch.cat(parts).reshape(n_trajectories, n_times, *parts[0].shape[1:])
    conditions = dataset.conditions.reshape(n_trajectories, n_times, -1)
    return (log_power, conditions[:, 0, :-1].double().numpy(),
            conditions[0, :, -1].clone())


def nearest_time_index(condition: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """For conditions ``(B, P + 1)``: the index of the nearest tabulated encoded time
    ``times (T,)`` to each row's time (its last entry), ``(B,)`` long."""
    return (condition[:, -1:].float() - times.reshape(1, -1)).abs().argmin(dim=1)


class ScatterTarget:
    """The table ``v(t, c, k)`` and a lookup by encoded condition.

    Args:
        variance: (T, C, N // 2) the simulator's within-condition variance of the log
            shell power per time index, channel and shell.
        times: (T,) the encoded times (the condition's last entry) of the time indices.
        neighbour_distance: median distance of the neighbour pairs (encoded units),
            recorded for the log.
    """

    def __init__(self, variance: torch.Tensor, times: torch.Tensor,
                 neighbour_distance: float = 0.0) -> None:
        if variance.ndim != 3 or times.shape != (variance.shape[0],):
            raise ValueError(f"variance must be (T, C, shells) and times (T,), got "
                             f"{tuple(variance.shape)} and {tuple(times.shape)}")
        self.variance = variance.float()
        self.times = times.float()
        self.neighbour_distance = neighbour_distance

    @classmethod
    def from_dataset(cls, dataset, eps: float = 1e-6, chunk: int = 256) -> ScatterTarget:
        """Estimate ``v`` from a :class:`surrogate.data.SnapshotDataset` (the training
        split), reading every snapshot once.

        Raises:
            ValueError: fewer than 2 trajectories.
        """
        n_trajectories = int(dataset.trajectories.size)
        if n_trajectories < 2:
            raise ValueError("the spectral scatter target needs >= 2 training trajectories, "
                             f"got {n_trajectories}")
        log_power, parameters, times = log_power_table(dataset, eps, chunk)
        if parameters.shape[1] == 0:         # nothing swept: every pair is one condition
            neighbour = np.roll(np.arange(n_trajectories), 1)
            distance = np.zeros(n_trajectories)
        else:
            distances, indices = cKDTree(parameters).query(parameters, k=2)
            own = indices[:, 0] == np.arange(n_trajectories)
            # equal conditions may list the other trajectory first
            neighbour = np.where(own, indices[:, 1], indices[:, 0])
            distance = np.where(own, distances[:, 1], distances[:, 0])
        difference = log_power - log_power[torch.from_numpy(neighbour)]
        variance = difference.square().mean(dim=0) / 2.0
        return cls(variance, times, float(np.median(distance)))

    def to(self, device: torch.device | str) -> ScatterTarget:
        return ScatterTarget(self.variance.to(device), self.times.to(device),
                             self.neighbour_distance)

    def rows(self, condition: torch.Tensor) -> torch.Tensor:
        """``v`` at each row's time (the nearest tabulated encoded time), (B, C, N // 2)."""
        return self.variance[nearest_time_index(condition, self.times)]
