"""``python -m surrogate`` runs the command line (also under ``torchrun``)."""

import sys

from surrogate.cli import main

if __name__ == "__main__":  # guard: spawned worker processes re-import this module
    sys.exit(main())
