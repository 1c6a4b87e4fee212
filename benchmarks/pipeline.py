"""The pipeline's own cost: each stage from scratch, a no-op `dvc repro`, and a queue of two
experiments one and two at a time."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def dvc(repo: Path, env: dict, *args: str, check: bool = True) -> str:
    """`dvc args` in `repo`; its stdout."""
    return subprocess.run(["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, check=check).stdout


@contextmanager
def queue_started(repo: Path, env: dict, jobs: int) -> Iterator[None]:
    """`dvc queue start -j jobs`; on leaving the block, no worker is left behind.

    `dvc queue start` returns at once, but leaves a process that waits for the workers with the
    caller's stdout and stderr: given pipes, a caller reading them would wait for it too. And a
    worker told to shut down while it is busy can stay idle after the queue is done (a race in
    dvc's workers, seen in CI): the workers left are stopped (`dvc queue stop`), else killed.
    """
    start = subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=repo, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if start.returncode != 0:
        raise UserError(f"{repo}: `dvc queue start -j {jobs}` failed (exit code {start.returncode})")
    try:
        yield
    finally:
        stop_queue_workers(repo, env)


def queue_done(repo: Path, env: dict, timeout: float = 900) -> str:
    """`dvc queue status` once nothing is queued or running (within `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while any(state in (status := dvc(repo, env, "queue", "status")) for state in ("Queued", "Running")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{repo}: the queue is not done after {timeout:.0f} s:\n{status}")
        time.sleep(1)
    return status


def stop_queue_workers(repo: Path, env: dict, grace: float = 30) -> None:
    """`dvc queue stop`, then kill what is left of the queue's processes in `repo` after `grace` s."""
    import psutil

    dvc(repo, env, "queue", "stop", check=False)

    def of_the_queue(process: psutil.Process) -> bool:  # `dvc queue start`'s process and `dvc exp queue-worker`s
        try:
            words = process.cmdline()
            return (process.pid != os.getpid() and any(word.startswith("queue") for word in words)
                    and Path(process.cwd()) == repo.resolve())
        except psutil.Error:
            return False

    left = [process for process in psutil.process_iter() if of_the_queue(process)]
    _, alive = psutil.wait_procs(left, timeout=grace)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=10)


def run_queue(copy: Path, env: dict, jobs: int) -> float:
    """Wall seconds of `dvc queue start -j jobs` until the two queued experiments have finished."""
    dvc(copy, env, "exp", "run", "--queue", "-S", "train.learning_rate=" + ",".join(QUEUED_RATES[jobs]),
        "-S", f"train.max_steps={QUEUED_STEPS}")
    started = time.perf_counter()
    with queue_started(copy, env, jobs):
        status = queue_done(copy, env)
        seconds = time.perf_counter() - started
    if status.count("Success") != len(QUEUED_RATES[jobs]):
        raise UserError(f"queued experiments failed (-j {jobs}):\n{status}")
    dvc(copy, env, "queue", "remove", "--success")
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
