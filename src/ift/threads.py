"""CPU threads when several jobs share the machine: each takes its share of the cores.

Two torch processes that each use every core slow each other down many times over (their
threads spin for cores the other holds). A job is a DVC queue worker (`dvc queue start -j N`
runs one experiment per worker) or a stage of ours running outside any worker. Alone, a
stage keeps torch's default, so a lone run's floats stay as they were; OMP_NUM_THREADS,
when set, always wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
STAGE_SCRIPTS = ("fetch.py", "hydrate.py", "evaluate.py", "train.py")


def _is_queue_worker(cmdline: list[str]) -> bool:
    return "queue-worker" in cmdline and any(Path(part).name == "dvc" for part in cmdline[:2])


def _is_stage(cmdline: list[str]) -> bool:
    return any(Path(part).name in STAGE_SCRIPTS and Path(part).parent.name == "stages" for part in cmdline[1:3])


def concurrent_jobs(processes: list[tuple[int, int, list[str]]], me: int) -> int:
    """How many jobs share the machine, this one included, from (pid, parent pid, cmdline) rows.

    A stage under a queue worker, or under another stage (torchrun's workers), is part of
    that job.
    """
    parents = {pid: ppid for pid, ppid, _ in processes}
    workers = {pid for pid, _, cmdline in processes if _is_queue_worker(cmdline)}
    stages = {pid for pid, _, cmdline in processes if _is_stage(cmdline)} | {me}

    def inside(pid: int, group: set[int]) -> bool:
        seen = set()
        while pid in parents and pid not in seen:
            seen.add(pid)
            pid = parents[pid]
            if pid in group:
                return True
        return False

    lone_stages = {pid for pid in stages if not inside(pid, workers) and not inside(pid, stages)}
    return max(1, len(workers) + len(lone_stages))


def _processes() -> list[tuple[int, int, list[str]]]:
    import psutil

    rows = []
    for process in psutil.process_iter(["pid", "ppid", "cmdline"]):
        info = process.info
        rows.append((info["pid"], info["ppid"], info["cmdline"] or []))
    return rows


def share_cores() -> int:
    """Set torch's thread count to this job's share of the cores; return the thread count."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    jobs = concurrent_jobs(_processes(), os.getpid())
    if jobs > 1:
        threads = max(1, torch.get_num_threads() // jobs)
        torch.set_num_threads(threads)
        log.info("%d jobs share this machine: %d of its threads for this one (OMP_NUM_THREADS overrides)",
                 jobs, threads)
    return torch.get_num_threads()
