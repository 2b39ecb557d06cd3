"""index: rebuilding the disk index at start-up: `kvault cache stats` over a directory of N block
files (N = 100,000)."""
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time

from ..util import log, stats


def index_scan(kvault, n_files, reps):
    """Seconds to scan a cache directory of n_files block files (what a restart does)."""
    root = tempfile.mkdtemp(prefix="kvault-bench-index-")
    model_dir = os.path.join(root, "0" * 32)
    rng = random.Random(7)
    for _ in range(n_files):
        key = "%032x" % rng.getrandbits(128)
        d = os.path.join(model_dir, key[:2])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, key + ".safetensors"), "wb") as f:
            f.write(b"x" * 64)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = subprocess.run([kvault, "cache", "stats", "--cache-dir", root], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        assert f"blocks: {n_files}" in out.stdout, out.stdout
    shutil.rmtree(root, ignore_errors=True)
    log(f"index scan of {n_files} files: {statistics.median(times):.2f}s")
    return {"files": n_files, "seconds": stats(times)}


def run(ctx):
    log("suite: index rebuild")
    ctx.r["index"] = index_scan(ctx.kvault, 1000 if ctx.smoke else 100000, ctx.reps)
