#!/usr/bin/env python3
"""Experiment (issue 24): is kvault's next turn at a long context slower than llama-server's, and
is it the cold turn's block writes?

Per run, both servers run side by side (the resume suite's flags: one resident agent, a pool with
room for WORDS words), each with the same agent of WORDS words; only one computes at a time. Each
server takes the cold turn and, at once, the next one ("now": on kvault most of the cold turn's
blocks are still queued for the disk); the cold turns in the order kvault, llama-server on even
runs and the reverse on odd ones. Then, once kvault's /health shows no pending write and 2 s more,
TURNS more turns, alternating between the servers turn by turn ("later"): a short turn's time at
this context is dominated by attention, which memory and the machine's neighbours make noisy, so
pairs taken seconds apart compare the servers where pairs of whole runs minutes apart do not.
Each turn answers 1 token and computes the ~16 new prompt tokens; the counts are checked
(kvault: cache.computed_tokens; llama-server: timings.prompt_n).

  /usr/bin/python3 bench/experiments/next_turn_after_writes.py [WORDS=8000] [RUNS=2] [TURNS=12]
  KV=path/to/kvault KV_ARGS="--extra flags" ... to try another binary or flags.
Prints a header naming the machine, per run the "now" turns and the "later" pairs, then the
medians, ranges and kvault / llama-server ratios; manual, not part of `make bench`
(docs/architecture.md, "Not done yet").
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvbench.client import chat, get_json  # noqa: E402
from kvbench.machine import transcript_header  # noqa: E402
from kvbench.servers import Server, ensure_model, llama_tools  # noqa: E402
from kvbench.suites.resume import conversation, resume_kvault_argv  # noqa: E402
from kvbench.util import LONG, ROOT  # noqa: E402

words = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
n_later = int(sys.argv[3]) if len(sys.argv) > 3 else 12
kvault = os.environ.get("KV", os.path.join(ROOT, "build", "bin", "kvault"))
model = ensure_model(kvault, "bench")
threads = 2
kv_argv, pool = resume_kvault_argv(kvault, model, threads, words)
ls_argv = [os.path.join(llama_tools(), "llama-server"), "-m", model, "-t", str(threads), "-c", pool, "-np", "1",
           "--host", "127.0.0.1"]
transcript_header(__file__, (words, runs, n_later), f"bench model, {threads} threads, ")


def order(i):
    """Which server goes first: kvault on even i, llama-server on odd."""
    return ("kvault", "llama-server") if i % 2 == 0 else ("llama-server", "kvault")


def turn(name, srv, messages, timeout=600):
    """One turn: (seconds, prompt tokens computed)."""
    r, t = chat(srv.port, messages, 1, timeout=timeout)
    return t, (r["cache"]["computed_tokens"] if name == "kvault" else (r.get("timings") or {}).get("prompt_n"))


now = {"kvault": [], "llama-server": []}
later = {"kvault": [], "llama-server": []}
for run in range(runs):
    turns = conversation(words, 4100 + run, 2 + n_later)  # the resume suite's agent text, seeds of its own
    cache_dir = tempfile.mkdtemp(prefix="kvault-next-turn-")
    srvs = {}
    try:
        srvs["kvault"] = Server(kv_argv + ["--cache-dir", cache_dir] + os.environ.get("KV_ARGS", "").split(),
                                "kvault-next-turn")
        srvs["llama-server"] = Server(ls_argv, "llama-server-next-turn")
        for name in order(run):
            cold, _ = turn(name, srvs[name], turns[0], timeout=LONG)
            pending = get_json(srvs[name].port, "/health")["kv_store"]["pending_writes"] if name == "kvault" else 0
            t, n = turn(name, srvs[name], turns[1])
            now[name].append(t)
            print(f"run {run} {name}: cold {cold:.1f}s; now {t:.3f}s (computed {n} tokens"
                  + (f", {pending} block writes pending)" if name == "kvault" else ")"), flush=True)
        while get_json(srvs["kvault"].port, "/health")["kv_store"]["pending_writes"] > 0:
            time.sleep(0.2)
        time.sleep(2)
        line = []
        for i in range(n_later):
            pair = {}
            for name in order(i):
                pair[name] = turn(name, srvs[name], turns[2 + i])
            later["kvault"].append(pair["kvault"][0])
            later["llama-server"].append(pair["llama-server"][0])
            line.append(f"{pair['kvault'][0]:.2f}/{pair['llama-server'][0]:.2f}"
                        f" ({pair['kvault'][1]}/{pair['llama-server'][1]} tokens)")
        print(f"run {run} later, kvault/llama-server seconds: " + ", ".join(line), flush=True)
    finally:
        for s in srvs.values():
            s.stop()
        shutil.rmtree(cache_dir, ignore_errors=True)


def summary(label, d):
    ratios = [k / ls for k, ls in zip(d["kvault"], d["llama-server"])]
    print(f"{label}: kvault median {statistics.median(d['kvault']):.3f}s [{min(d['kvault']):.3f}-"
          f"{max(d['kvault']):.3f}], llama-server {statistics.median(d['llama-server']):.3f}s "
          f"[{min(d['llama-server']):.3f}-{max(d['llama-server']):.3f}]; kvault / llama-server per pair: median "
          f"{statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}], "
          f"{sum(x > 1 for x in ratios)} of {len(ratios)} pairs slower", flush=True)


summary("now", now)
summary("later", later)
