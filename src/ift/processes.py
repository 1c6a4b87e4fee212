"""Several training processes: the train stage under torchrun's launcher, and who writes outputs.

The launcher is torchrun's own (torch.distributed.run, in this process, with --standalone:
a rendezvous on a free local port, so concurrent experiments never collide). On GPUs each
process drives one device (DDP over NCCL); on CPUs the processes share the cores (gloo),
each with its share of the threads. Multi-node runs start the stage under torchrun
themselves (docs/reference.md); the stage then only joins.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import torch

from ift.errors import LAUNCHER_ENV, UserError

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    """This process is one of a torchrun job's workers (torchrun sets these for each)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """How many training processes run together (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """How many of those run on this machine."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its machine (0 without a launcher): on GPUs, its device."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_local_main_process() -> bool:
    """The first process on this machine (it owns the machine's checkpoint directory)."""
    return local_rank() == 0


def is_main_process() -> bool:
    """Rank 0 (or no launcher at all): the one process that writes outputs and reports."""
    return int(os.environ.get("RANK", "0")) == 0


def threads_per_process(processes: int) -> int:
    """CPU threads for each of `processes` processes sharing this job's threads (at least 1)."""
    return max(1, torch.get_num_threads() // processes)


def run_under_torchrun(processes: int, script: str, args: list[str]) -> None:
    """Run `script args` as `processes` workers under torchrun; a failed worker is a UserError.

    OMP_NUM_THREADS, when set, is left to the user; torchrun would otherwise set it to 1.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_process(processes)))
    if not torch.cuda.is_available():
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo's own interface choice is unreliable
    os.environ[LAUNCHER_ENV] = str(os.getpid())
    # Its banners, and its own report of a failed worker: the worker prints its error in one line.
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
    log.info("training in %d processes under torchrun (%s threads each)", processes, os.environ["OMP_NUM_THREADS"])
    try:
        run(parse_args(["--standalone", "--nproc-per-node", str(processes), "--max-restarts", "0",
                        script, *args]))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        message = failure.error_file_data.get("message")
        if failure.exitcode > 0 and isinstance(message, str) and message not in ("", "<NONE>"):  # run_main's line
            raise UserError(f"{message} (training process {rank} of {processes})") from None
        raise UserError(f"training process {rank} of {processes} ended ({failure.message}); no outputs were "
                        "written: rerun `dvc repro` to resume from the last checkpoint") from None


def leave_process_group() -> None:
    """In a worker, at its end: wait for the other workers, then close the process group.

    A worker that exits with the group open can abort as Python shuts down (SIGABRT: gloo's
    threads still hold tensors), which fails a run that had finished. No-op in one process.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_with_launcher() -> None:
    """In a worker: end this process if its launcher dies (a killed stage leaves no training behind).

    A thread that polls: a SIGKILLed launcher cannot stop its workers itself.
    """
    parent = os.environ.get(LAUNCHER_ENV)
    if parent is None:
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1)
        print("error: the training launcher ended; stopping this worker", file=sys.stderr, flush=True)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="ift-launcher-watch").start()
