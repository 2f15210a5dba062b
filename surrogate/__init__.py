"""Learned surrogates of the reference simulators and their physics validation.

Upper floor of the project: ``surrogate`` imports ``simulators``, never the reverse.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("physics-surrogate")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
