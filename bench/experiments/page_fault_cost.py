#!/usr/bin/env python3
"""Experiment (issue 4): what fresh memory costs a restored block, the reason kvault recycles block
buffers and faults in one context's worth at start (kvstore/buffer_recycler, docs/architecture.md,
"Memory for blocks").

Per repetition: map MIB MiB of fresh anonymous memory and write it once (memset: every 4 KiB page
faulted in, then written), write it again (the same bytes, pages already there), and read a MIB MiB
file from the page cache into it (what a restore from the disk tier copies, once the file is
cached). Prints per-page and per-MiB times, the medians over the repetitions and the ratio of a
first write (fault included) to a read from the page cache.

  /usr/bin/python3 bench/experiments/page_fault_cost.py [MIB=256] [REPS=5]
"""
import ctypes
import mmap
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvbench.machine import transcript_header  # noqa: E402

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
size, page = mib << 20, mmap.PAGESIZE
pages_per_mib = (1 << 20) // page
libc = ctypes.CDLL(None)
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
transcript_header(__file__, (mib, reps), f"page {page} B, no huge pages; ")

fd, path = tempfile.mkstemp(prefix="kvault-pagefault-", dir=os.path.expanduser("~/.cache"))
try:
    chunk = os.urandom(1 << 20)
    for _ in range(mib):
        assert os.write(fd, chunk) == len(chunk)
    os.fsync(fd)
    first, again, cached = [], [], []
    for rep in range(reps):
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(mmap.MADV_NOHUGEPAGE)  # 4 KiB pages, whatever the THP mode
        anchor = ctypes.c_char.from_buffer(m)
        addr = ctypes.addressof(anchor)
        t0 = time.perf_counter()
        libc.memset(addr, rep + 1, size)  # faults in every page
        t1 = time.perf_counter()
        libc.memset(addr, rep + 2, size)  # the same pages, now present
        t2 = time.perf_counter()
        os.lseek(fd, 0, os.SEEK_SET)
        view, done = memoryview(m), 0
        while done < size:  # a read from the page cache into present pages
            n = os.readv(fd, [view[done:]])
            assert n > 0, "the file is shorter than expected"
            done += n
        t3 = time.perf_counter()
        view.release()
        del anchor
        m.close()
        first.append((t1 - t0) / mib * 1e3)
        again.append((t2 - t1) / mib * 1e3)
        cached.append((t3 - t2) / mib * 1e3)
        print(f"rep {rep}: first write {first[-1]:.3f} ms/MiB ({first[-1] * 1e3 / pages_per_mib:.2f} us/page), "
              f"again {again[-1]:.3f} ms/MiB, read from the page cache {cached[-1]:.3f} ms/MiB", flush=True)
finally:
    os.close(fd)
    os.unlink(path)

f, a, c = (statistics.median(x) for x in (first, again, cached))
per_page = (f - a) * 1e3 / pages_per_mib
print(f"medians of {reps}: first write {f:.3f} ms/MiB [{min(first):.3f}-{max(first):.3f}], of which faulting "
      f"~{f - a:.3f} ms/MiB (~{per_page:.2f} us per {page // 1024} KiB page); write again {a:.3f} ms/MiB; read "
      f"from the page cache {c:.3f} ms/MiB [{min(cached):.3f}-{max(cached):.3f}]; first write / page-cache read "
      f"{f / c:.1f}x")
