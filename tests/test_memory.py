import os
import subprocess
import sys

import pytest

# A child process allocates, touches and frees 256 MiB through libc, then prints how much of it
# is still resident: the setting is process-wide, so it runs apart from the test process.
CHILD = """
import ctypes, ctypes.util, os, sys
from types import SimpleNamespace
from ift.memory import keep_freed_memory, keep_freed_memory_where_set
mode = sys.argv[1]
if mode == "keep":
    kept = keep_freed_memory()
elif mode.startswith("where_set="):  # a train config's keep_freed_memory
    kept = keep_freed_memory_where_set(SimpleNamespace(keep_freed_memory=mode.endswith("true")))
else:
    kept = None
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
page = os.sysconf("SC_PAGE_SIZE")
def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2**20
before = resident_mib()
block = libc.malloc(256 * 2**20)
ctypes.memset(block, 1, 256 * 2**20)
libc.free(block)
print(kept, round(resident_mib() - before))
"""


def freed_but_resident_mib(mode: str) -> tuple[str, int]:
    # glibc's own defaults: no malloc settings from the environment
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, env=env)
    kept, resident = done.stdout.split()
    return kept, int(resident)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_keep_freed_memory_keeps_a_freed_large_block_resident_where_glibc_would_unmap_it():
    assert freed_but_resident_mib("default") == ("None", 0)  # glibc's default: mmap, unmapped on free
    kept, resident = freed_but_resident_mib("keep")
    assert kept == "True" and resident >= 250


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_a_train_config_decides_whether_freed_memory_is_kept():
    assert freed_but_resident_mib("where_set=false") == ("False", 0)  # glibc's defaults left alone
    kept, resident = freed_but_resident_mib("where_set=true")
    assert kept == "True" and resident >= 250
