"""The pipeline's own cost: each stage from scratch, a no-op `dvc repro`, and a queue of two
experiments one and two at a time."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.timed_process import measured
from ift.errors import UserError
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


# Two learning rates per run of the queue, none repeated: a repeat would be restored from the run-cache.
QUEUED_RATES = {1: ("2e-3", "4e-3"), 2: ("3e-3", "5e-3")}
QUEUED_STEPS = 30  # shorter than the default's 339 steps; the same for both runs


def run_queue(copy: Path, env: dict, jobs: int) -> float:
    """Wall seconds of `dvc queue start -j jobs` until the two queued experiments have finished."""
    def dvc(*args: str) -> str:
        return subprocess.run(["dvc", *args], cwd=copy, env=env, capture_output=True, text=True, check=True).stdout

    dvc("exp", "run", "--queue", "-S", "train.learning_rate=" + ",".join(QUEUED_RATES[jobs]),
        "-S", f"train.max_steps={QUEUED_STEPS}")
    started = time.perf_counter()
    dvc("queue", "start", "-j", str(jobs))
    while any(state in (status := dvc("queue", "status")) for state in ("Queued", "Running")):
        time.sleep(1)
    seconds = time.perf_counter() - started
    if status.count("Success") != len(QUEUED_RATES[jobs]):
        raise UserError(f"queued experiments failed (-j {jobs}):\n{status}")
    dvc("queue", "remove", "--success")
    return seconds


def bench_queue(copy: Path) -> dict[str, Any]:
    """Two experiments queued and run two at a time against two run one after the other (the
    same queue with -j 1): the stages share the cores (ift.threads), so the two at a time should
    take about as long, not many times longer."""
    env = subprocess_env(copy)
    one_at_a_time = run_queue(copy, env, jobs=1)
    two_at_a_time = run_queue(copy, env, jobs=2)
    print(f"  queue of two: {one_at_a_time:.1f} s with -j 1, {two_at_a_time:.1f} s with -j 2",
          file=sys.stderr, flush=True)
    return {"experiments": 2, "train_max_steps": QUEUED_STEPS, "one_at_a_time_seconds": round(one_at_a_time, 2),
            "two_at_a_time_seconds": round(two_at_a_time, 2), "ratio": two_at_a_time / one_at_a_time}
