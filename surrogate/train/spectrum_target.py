"""The simulator's mean log shell power at each training condition: the target of the
spectral bias loss (:func:`surrogate.losses.spectral_bias_loss`).

A sweep holds one trajectory per condition, so the mean at a condition is estimated from
its neighbourhood in parameter space: for training trajectory ``j``, its ``K`` nearest
trajectories ``N_K(j)`` (``j`` included, and every trajectory at the K-th distance or
closer, so that repeated conditions all count; Euclidean distance of the encoded
parameters, each in [-1, 1]) at the same time::

    m(j, t, c, k) = mean_{j' in N_K(j)} y_j'(t, c, k),      y = log_shell_power(fields)

(:func:`surrogate.losses.log_shell_power`, in the normalised channels the generator is
trained in). Its sampling noise is ``Var y / K`` (for a Gaussian field ``psi'(n_k / 2) /
K``, about 0.2 in std at the lowest shell of a 32^2 grid for ``K = 8``); its smoothing
bias is the change of the mean log power across the neighbourhood, which is small when
the sweep is dense (the GRF quickstart's 320 training trajectories over a spectral-index
range of 2: ``K = 8`` neighbours span ~0.05 in the index, i.e. ~0.03 in ``y`` at the
highest shell, linear changes cancelling to first order). Log shell power is invariant
under shifts, the square's rotations and reflections and a sign flip, so the system's
symmetry augmentation does not change it.

With ``space="power"`` the table holds instead the log of the neighbourhood mean power,
``log mean_{j' in N_K(j)} exp(y_j'(t, c, k))``: the target of the loss on the mean shell
power (``space`` of :func:`surrogate.losses.spectral_bias_loss`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

from surrogate.losses import check_spectral_bias_space
from surrogate.train.scatter import log_power_table, nearest_time_index

__all__ = ["SpectrumTarget"]

#: neighbours averaged per training condition (``SpectrumTarget.from_dataset``)
DEFAULT_NEIGHBOURS = 8


class SpectrumTarget:
    """The table ``m(j, t, c, k)`` and a lookup by encoded condition.

    Args:
        mean: (n_trajectories, T, C, N // 2) the simulator's mean log shell power around
            each training trajectory, per time index, channel and shell.
        parameters: (n_trajectories, P) encoded parameters of the trajectories (P may be 0).
        times: (T,) encoded times (the condition's last entry) of the time indices.
        neighbour_distance: median distance to the K-th neighbour (encoded units),
            recorded for the log.
        space: ``"log"`` (``mean`` holds mean log powers) or ``"power"`` (logs of mean
            powers).
    """

    def __init__(self, mean: torch.Tensor, parameters: np.ndarray, times: torch.Tensor,
                 neighbour_distance: float = 0.0, space: str = "log") -> None:
        check_spectral_bias_space(space)
        parameters = np.asarray(parameters, dtype=np.float64)
        if (mean.ndim != 4 or parameters.ndim != 2 or parameters.shape[0] != mean.shape[0]
                or times.shape != (mean.shape[1],)):
            raise ValueError(f"mean must be (trajectories, T, C, shells), parameters "
                             f"(trajectories, P) and times (T,), got {tuple(mean.shape)}, "
                             f"{parameters.shape} and {tuple(times.shape)}")
        self.mean = mean.float()
        self.parameters = parameters
        self.times = times.float()
        self.neighbour_distance = neighbour_distance
        self.space = space
        self._tree = cKDTree(parameters) if parameters.shape[1] else None

    @classmethod
    def from_dataset(cls, dataset, neighbours: int = DEFAULT_NEIGHBOURS, eps: float = 1e-6,
                     chunk: int = 256, space: str = "log") -> SpectrumTarget:
        """Estimate ``m`` from a :class:`surrogate.data.SnapshotDataset` (the training
        split), reading every snapshot once; ``K = min(neighbours, trajectories)``, and
        every trajectory as far as the K-th nearest counts too (repeated conditions).
        ``space="power"`` averages ``exp(y)`` and takes the log of the mean.

        Raises:
            ValueError: no trajectory, ``neighbours < 1`` or an unknown ``space``.
        """
        check_spectral_bias_space(space)
        if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1:
            raise ValueError(f"neighbours must be a positive integer, got {neighbours!r}")
        n_trajectories = int(dataset.trajectories.size)
        if n_trajectories < 1:
            raise ValueError("the spectrum target needs >= 1 training trajectory")
        log_power, parameters, times = log_power_table(dataset, eps, chunk)

        def average(rows: torch.Tensor) -> torch.Tensor:
            """Mean of ``y`` over the first axis, or the log of the mean of ``exp(y)``."""
            if space == "log":
                return rows.mean(dim=0)
            return torch.logsumexp(rows, dim=0) - math.log(rows.shape[0])

        count = min(neighbours, n_trajectories)
        if parameters.shape[1] == 0:          # nothing swept: one condition, one mean
            mean = average(log_power).unsqueeze(0).expand_as(log_power).clone()
            return cls(mean, parameters, times, 0.0, space)
        tree = cKDTree(parameters)
        distances = np.asarray(tree.query(parameters, k=count)[0]).reshape(n_trajectories,
                                                                           count)
        radius = distances[:, -1]
        # every trajectory within the K-th distance: ties (repeated conditions) all count
        mean = torch.stack([average(log_power[torch.as_tensor(tree.query_ball_point(
            parameters[j], radius[j] * (1 + 1e-9) + 1e-12), dtype=torch.long)])
            for j in range(n_trajectories)])
        return cls(mean, parameters, times, float(np.median(radius)), space)

    def to(self, device: torch.device | str) -> SpectrumTarget:
        return SpectrumTarget(self.mean.to(device), self.parameters, self.times.to(device),
                              self.neighbour_distance, self.space)

    def rows(self, condition: torch.Tensor) -> torch.Tensor:
        """``m`` at each row's condition ``(B, P + 1)``: the nearest training trajectory's
        neighbourhood mean at the nearest tabulated time, (B, C, N // 2)."""
        time_index = nearest_time_index(condition, self.times)
        if self._tree is None:
            trajectory = torch.zeros_like(time_index)
        else:
            wanted = condition[:, :-1].detach().double().cpu().numpy()
            trajectory = torch.as_tensor(self._tree.query(wanted)[1], dtype=torch.long,
                                         device=time_index.device)
        return self.mean[trajectory, time_index]
