"""Peak resident memory of a measured child process (shared by the memory benchmarks).

Measurements run in a fresh ``python -c`` child so that the parent's allocations (data
files written for the benchmark, imported modules) are not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def peak_megabytes() -> float:
    """This process's peak resident set size in MiB (VmHWM kB / 1024).

    Linux procfs: ``VmHWM`` is this process image's own peak; ``getrusage``'s ``ru_maxrss``
    would include the parent's RSS at fork time (Linux keeps it across ``execve``), so it
    is only the fallback where ``/proc/self/status`` does not exist.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter (``sys.argv[1:] = args``); its last stdout line
    must be a JSON object, which is returned. ``peak_megabytes`` is importable there."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    output = subprocess.run([sys.executable, "-c", code, *args], check=True,
                            capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])
