"""python -m benchmarks.timed_process CMD...: run CMD, print its wall seconds, peak RSS (KiB), exit code.

A process of its own because getrusage(RUSAGE_CHILDREN) reports the largest child a
process ever waited for: measured from the benchmark itself, every command would report
the largest one before it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from ift.errors import UserError


def measured(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB of the largest process) of a command."""
    here = str(Path(__file__).resolve().parents[1])  # this `benchmarks` package, wherever cwd is
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "benchmarks.timed_process", *cmd], cwd=cwd, env=env,
                            capture_output=True, text=True)
    seconds, max_rss_kib, code = result.stdout.strip().splitlines()[-1].split()
    if int(code) != 0:
        raise UserError(f"`{' '.join(cmd)}` failed in {cwd}: {result.stderr.strip()[-500:]}")
    return float(seconds), int(max_rss_kib) / 1024


def main(cmd: list[str]) -> None:
    start = time.perf_counter()
    code = subprocess.run(cmd).returncode
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(round(time.perf_counter() - start, 3), rss, code)


if __name__ == "__main__":
    main(sys.argv[1:])
