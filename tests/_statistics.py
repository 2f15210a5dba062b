"""Hand-made field statistics per system, as a store's ``stats/`` group would hold them:
what the output-head and generator tests build normalisers from without a file."""

import numpy as np

STATISTICS = {
    "navier_stokes2d": {"vorticity": {"mean": 0.0, "std": 4.0, "rms": 4.0},
                        "velocity": {"mean": np.zeros(2), "std": np.ones(2), "rms": 0.8}},
    "gaussian_random_field": {"delta": {"mean": 0.0, "std": 0.5, "rms": 0.5},
                              "density": {"mean": 1.0, "std": 0.6, "rms": 1.2,
                                          "log_mean": -0.125, "log_std": 0.5}},
    "diffusion": {"u": {"mean": 0.01, "std": 0.7, "rms": 0.7}},
    "gray_scott": {"u": {"mean": 0.6, "std": 0.2, "rms": 0.63},
                   "v": {"mean": 0.2, "std": 0.1, "rms": 0.22}},
    "ising": {"spin": {"mean": 0.0, "std": 1.0, "rms": 1.0}},
}
