"""Test configuration: silent NaNs fail tests, outputs go to temporary directories."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _strict_floating_point():
    """Invalid operations, division by zero and overflow raise (py-pde's habit)."""
    old = np.seterr(all="raise", under="ignore")
    yield
    np.seterr(**old)
