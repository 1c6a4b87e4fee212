"""The pipeline's own cost: each stage from scratch, a no-op `dvc repro`, and the tutorial's process."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.timed_process import measured
from ift.verify import subprocess_env

STAGES = ("fetch", "hydrate", "baseline_eval", "train", "tuned_eval", "publish")


def bench_pipeline(copy: Path) -> dict[str, Any]:
    """Per-stage wall time and peak memory of the default pipeline from scratch; a no-op repro."""
    env = subprocess_env(copy)
    stages = {}
    for stage in STAGES:
        seconds, peak = measured(["dvc", "repro", "--single-item", stage], copy, env)
        stages[stage] = {"seconds": seconds, "peak_rss_mib": round(peak, 1)}
        print(f"  {stage}: {seconds:.1f} s, peak {peak:.0f} MiB", file=sys.stderr, flush=True)
    noop = [measured(["dvc", "repro"], copy, env)[0] for _ in range(3)]
    return {"pipeline_seconds": sum(s["seconds"] for s in stages.values()),
            "noop_repro_seconds": statistics.median(noop), "stages": stages}


def bench_whole_process(copy: Path, repeats: int = 3) -> dict[str, Any]:
    """Wall time of the tutorial's loop as a process vs `dvc repro -f -s tuned_eval` (medians, alternated)."""
    env = subprocess_env(copy)
    tutorial, ours = [], []
    for _ in range(repeats):
        tutorial.append(measured([sys.executable, "-m", "benchmarks.tutorial"], copy, env)[0])
        ours.append(measured(["dvc", "repro", "--force", "--single-item", "tuned_eval"], copy, env)[0])
    return {"tutorial_process_seconds": statistics.median(tutorial),
            "tuned_eval_repro_seconds": statistics.median(ours),
            "speedup": statistics.median(tutorial) / statistics.median(ours)}
