"""The worker's collector policy, run in a child process (it changes process-wide state)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import gc
from streams import memory

memory.after_batch()
assert gc.get_freeze_count() == 0, "untouched unless the worker takes charge"
with memory.counting():
    assert gc.isenabled(), "untouched unless the worker takes charge"
memory.configure_gc()
with memory.counting():            # a batch being counted
    assert not gc.isenabled()
    kept = [[i] for i in range(30_000)]
    assert gc.get_count()[0] >= 30_000, "no collection ran during the batch"
    frozen = gc.get_freeze_count()
assert gc.isenabled()
# Frozen as the batch ends, before the collector is back on: the next allocations
# start no young collection over the batch's objects.
assert gc.get_freeze_count() >= frozen + 30_000, "what the batch kept is frozen"
assert gc.get_count()[0] < 100, gc.get_count()
gc.disable()
with memory.counting():
    pass
assert not gc.isenabled(), "a collector disabled before stays disabled"
gc.enable()
del kept
assert gc.get_threshold() == memory.GC_THRESHOLDS

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a          # a cycle, still referenced
memory.after_batch()
assert gc.get_freeze_count() > 0, "what a batch leaves behind is frozen"
frozen = gc.get_freeze_count()
del a, b                         # now cyclic garbage, frozen: invisible to collections
assert gc.collect() == 0 or gc.get_freeze_count() == frozen
freed = memory.full_collection()
assert freed >= 2, freed          # the periodic full collection frees it
assert gc.get_freeze_count() > 0  # and freezes the survivors again
before = gc.get_freeze_count()
with memory.collector_paused():   # a state rebuild
    assert not gc.isenabled()
    built = [[i] for i in range(50_000)]
    assert gc.get_count()[0] >= 50_000, "no collection ran during the rebuild"
assert gc.isenabled()
assert gc.get_freeze_count() >= before + 50_000, "what the rebuild built is frozen"
gc.disable()
with memory.collector_paused():
    pass
assert not gc.isenabled(), "a collector disabled before stays disabled"
gc.enable()
memory.release_memory()           # glibc malloc_trim, or nothing elsewhere
print("ok")
"""


def test_batches_count_without_collections_freeze_and_the_full_collection_frees_cycles() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_memory_is_released_after_a_batch_at_most_every_quarter_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams import memory

    released: list[float] = []
    now = [1000.0]
    monkeypatch.setattr(memory, "_managed", True)
    monkeypatch.setattr(memory, "_released_at", 0.0)
    monkeypatch.setattr(memory, "release_memory", lambda: released.append(now[0]))
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(memory.gc, "freeze", lambda: None)
    for _ in range(10):  # 10 batches 0.125 s apart
        memory.after_batch()
        now[0] += 0.125
    assert released == [1000.0, 1000.25, 1000.5, 1000.75, 1001.0]


HEAPS = r"""
import ctypes, os, sys, tempfile, threading
from streams import memory

if sys.argv[1] == "one":
    memory.one_heap()
libc = ctypes.CDLL("libc.so.6")
libc.fdopen.restype = ctypes.c_void_p
libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
kept = []
def allocate():
    kept.extend(bytearray(4000) for _ in range(1000))  # above pymalloc: glibc's blocks
t = threading.Thread(target=allocate)
t.start(); t.join()
with tempfile.TemporaryFile() as f:
    fp = libc.fdopen(os.dup(f.fileno()), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    f.seek(0)
    print(f.read().count(b"<heap nr="))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heaps")
def test_one_heap_keeps_a_threads_allocations_in_the_main_heap() -> None:
    def heaps(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", HEAPS, mode], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert heaps("default") >= 2  # the thread got a heap of its own: what one_heap stops
    assert heaps("one") == 1
