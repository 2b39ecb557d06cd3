"""What a result was measured on: the machine (CPU, vector extensions, memory, kernel), the pinned
llama.cpp source, and the disk under the cache directory."""
import datetime
import os
import platform
import re
import shutil
import subprocess
import time

from .util import CACHE, ROOT


def llama_tag():
    """The pinned llama.cpp release, read from scripts/deps.sh (the one place that pins it)."""
    with open(os.path.join(ROOT, "scripts", "deps.sh")) as f:
        m = re.search(r"^LLAMA_TAG=(\S+)$", f.read(), re.M)
    return m.group(1) if m else "unknown"


def llama_source_hashes():
    """The pinned llama.cpp source's full commit and tree hashes (None where git cannot tell): the
    bundle's tag is node-llama-cpp's, not an upstream release, and the bundle is one squashed commit,
    so these hashes name it."""
    src = os.path.join(CACHE, f"llama.cpp-{llama_tag()}")
    return {name: git(src, "rev-parse", ref) for name, ref in (("commit", "HEAD"), ("tree", "HEAD^{tree}"))}


def git(repo, *args):
    """git's stripped output in `repo`, or None where git cannot answer (no git, not a checkout)."""
    try:
        return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def kvault_source_id():
    """What kvault was built from: the git tree hash of src/ and CMakeLists.txt, with "+modified"
    when either differs from the commit (None outside a git checkout). Bench-only changes keep it,
    so runs of one build compare; a changed engine does not."""
    trees = [git(ROOT, "rev-parse", f"HEAD:{p}") for p in ("src", "CMakeLists.txt")]
    dirty = git(ROOT, "status", "--porcelain", "--", "src", "CMakeLists.txt")
    if None in trees or dirty is None:
        return None
    return "/".join(t[:12] for t in trees) + ("+modified" if dirty else "")


def llama_source_ids():
    """The pinned llama.cpp source's commit and tree hashes, short, for the markdown."""
    return ", ".join(f"{name} `{h[:12]}`" if h is not None else f"{name} unknown"
                     for name, h in llama_source_hashes().items())


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    disk = shutil.disk_usage(CACHE)
    return {"cpu": cpu, "isa": cpu_isa(), "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "kernel": platform.release(), "disk_free_gib": round(disk.free / 2**30, 1),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def cpu_isa():
    """The vector extensions llama.cpp's CPU kernels choose between: machines sold under one name (e.g.
    "AMD EPYC") differ here, and so do the speeds and the random bench model's answers."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    names = (("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16"), ("amx_tile", "AMX"),
             ("avx2", "AVX2"), ("fma", "FMA"), ("f16c", "F16C"))
    have = [name for flag, name in names if flag in flags]
    return " ".join(have) or "no AVX2"


def machine_desc(m):
    """One line naming the machine a suite ran on."""
    if not m:
        return "machine not recorded"
    return (f"{m['cpu']} ({m['isa']}), {m['cores']} cores, "
            f"{m['memory_gib']} GiB, Linux {m['kernel']}")


def transcript_header(script, args=(), extra=""):
    """Prints and returns the first line of an experiment's transcript (bench/results/*.txt): the
    script under bench/experiments/ and its arguments, the machine, what the script adds in `extra`
    (ending in "; " or ", "), and the date. The docs quote those transcripts, so the line names
    the machine each figure came from."""
    m = machine()
    line = (f"bench/experiments/{os.path.basename(script)} {' '.join(str(a) for a in args)}; "
            f"{machine_desc(m)}; {extra}{m['date']}")
    print(line, flush=True)
    return line


def drop_from_page_cache(directory):
    """Evicts every file below `directory` from the OS page cache (no root needed)."""
    for root, _, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def disk_bandwidth(directory, size_mb=256):
    """Sequential write (fsync'd) and read (page cache dropped first) of one file, MB/s."""
    path = os.path.join(directory, "kvault-disk-probe.bin")
    chunk = os.urandom(1 << 20)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size_mb):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    write = size_mb / (time.perf_counter() - t0)
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    t0 = time.perf_counter()
    while os.read(fd, 1 << 20):
        pass
    read = size_mb / (time.perf_counter() - t0)
    os.close(fd)
    os.remove(path)
    return {"write_mb_s": write, "read_mb_s": read, "size_mb": size_mb}
