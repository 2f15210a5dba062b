"""Registry: simulator name -> class.

``available()`` lists the names; ``get(name, **options)`` builds a simulator. Options
are numerical settings of that system's constructor (e.g. a CFL number), never
physical parameters, which go to ``run``.
"""

from __future__ import annotations

from typing import Any

from simulators.base import Simulator
from simulators.diffusion import Diffusion
from simulators.gaussian_random_field import GaussianRandomField
from simulators.gray_scott import GrayScott
from simulators.ising import Ising
from simulators.navier_stokes2d import NavierStokes2D

_SYSTEMS: dict[str, type[Simulator]] = {
    cls.name: cls for cls in (Diffusion, GaussianRandomField, NavierStokes2D, Ising, GrayScott)
}


def available() -> list[str]:
    """Names of the registered simulators, sorted."""
    return sorted(_SYSTEMS)


def get(name: str, **options: Any) -> Simulator:
    """Build the simulator registered as ``name``.

    Raises:
        ValueError: if ``name`` is not registered (the message lists the known names).
    """
    try:
        cls = _SYSTEMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown system {name!r} (available: {', '.join(available())})") from None
    return cls(**options)
