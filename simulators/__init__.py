"""Reference physics simulators and the HDF5 field-store format.

This package is the lower floor of the project: it never imports ``surrogate``.

>>> import simulators
>>> sim = simulators.get("diffusion")
>>> ds = sim.run({"diffusivity": 0.01}, resolution=32, t_end=1.0, n_snapshots=3, seed=0)
>>> ds["u"].dims
('time', 'x', 'y')
"""

from simulators.base import FieldSpec, Invariant, Parameter, Simulator
from simulators.grid import PeriodicGrid
from simulators.registry import available, get

__all__ = ["FieldSpec", "Invariant", "Parameter", "PeriodicGrid", "Simulator", "available", "get"]
