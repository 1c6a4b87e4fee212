"""`keep_freed_memory()`: glibc's malloc keeps the memory a training step frees for the next.

By default glibc maps each large block (a tensor of [labelled tokens x vocabulary] logits, say)
fresh from the kernel and unmaps it on free, so every step page-faults through those floats
anew. With no mmap and the trim threshold at its largest (2 GiB), large blocks come from the
heap and stay there: faster
steps at a higher resident peak (reports/performance.md has both). Written by hand because
mallopt is one libc call with no Python binding; `GLIBC_TUNABLES` does the same but must be
set before the process starts.
"""

from __future__ import annotations

import ctypes
import sys

# <malloc.h>'s parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
LARGEST_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap top before a trim


def keep_freed_memory() -> bool:
    """Tell glibc to serve large blocks from the heap and keep what they free (up to 2 GiB at the
    heap's top) for the next ones; False where the C library refuses (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library (its allocator, if preloaded)
    except AttributeError:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, LARGEST_TRIM_THRESHOLD) == 1


def keep_freed_memory_where_set(train_cfg) -> bool:
    """keep_freed_memory() where `train_cfg.keep_freed_memory` asks for it (the train stage, and the
    benchmarks that stand for it); False where it does not or the C library refuses."""
    return bool(train_cfg.keep_freed_memory) and keep_freed_memory()
