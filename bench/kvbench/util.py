"""Shared basics of the benchmark drivers: repository paths, logging, prompt text, statistics."""
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("KVAULT_DEPS_DIR", os.path.expanduser("~/.cache/kvault"))
WORDS = ("time person year way day thing man world life hand part child eye woman place work week case "
         "point government company number group problem fact river mountain garden window music letter "
         "market doctor station summer winter island forest engine signal bridge castle planet ocean").split()
LONG = 3 * 3600  # seconds: a cold 32K-token prefill takes 18-20 min on 2 cores
# bench.py's suites, in the order a run measures them
SUITES = ("decode", "ttft", "resume", "swap", "index", "blockio", "roundrobin", "fleet", "memory", "persist")


# GPU runs (scripts/gpu-check.sh): KVBENCH_GPU_LAYERS=N offloads N layers (-1: all) in every
# program a suite starts, kvault and llama.cpp's alike, with flash attention on in both (kvault
# always uses it where the model allows). Unset: each program's own defaults, as on CPU.
GPU_LAYERS = os.environ.get("KVBENCH_GPU_LAYERS")


def gpu_flags(program):
    """The offload flags for `program` (kvault*, llama-server, llama-bench, llama-batched-bench)."""
    if GPU_LAYERS is None:
        return []
    n = int(GPU_LAYERS)
    if program.startswith("kvault"):
        return ["--gpu-layers", str(n)]
    ngl = str(999 if n < 0 else n)
    if program == "llama-bench":
        return ["-ngl", ngl, "-fa", "1"]
    return ["-ngl", ngl, "-fa", "on"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def text_of(n_words, seed):
    return " ".join(WORDS[(seed * 7 + i * 13 + i // len(WORDS)) % len(WORDS)] for i in range(n_words))


def rand_text(n_words, seed):
    """n_words words drawn at random (seeded): unlike text_of, two seeds share no long runs, so a
    server cannot reuse shifted chunks of one agent's KV for another's."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def percentile(values, q):
    """q-th percentile (0-100), linear between the closest ranks."""
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def dist(values):
    """A distribution of many single measurements (one per request)."""
    if not values:
        return None
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "mean": statistics.fmean(values),
            "min": min(values), "max": max(values), "n": len(values)}


def cached_share(requests):
    """The share of the prompt tokens of these requests (dicts with prompt_tokens and cached_tokens)
    that the server took from its cache."""
    requests = list(requests)
    return sum(q["cached_tokens"] for q in requests) / max(1, sum(q["prompt_tokens"] for q in requests))


def ratio(a, b):
    return a / b if b else None


def span(v, digits=2, unit=""):
    """A summary as 'median unit [min–max]'."""
    return f"{v['median']:.{digits}f}{unit} [{v['min']:.{digits}f}–{v['max']:.{digits}f}]"


def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]
