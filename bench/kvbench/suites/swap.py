"""swap: back on model A after model B was served: kvault swaps models (A's cache stays on disk)
where llama-server is restarted with the other model."""
import json
import os
import shutil
import tempfile
import time
import urllib.request

from ..client import chat
from ..servers import Server, ensure_model
from ..util import log, stats, text_of


def kvault_rep(kvault, model_a, model_b, threads, turn1, turn2, k):
    """One repetition on kvault, appended to k; returns the conversation's prompt tokens."""
    cache_dir = tempfile.mkdtemp(prefix="kvault-bench-swap-")
    argv = [kvault, "serve", "--model", model_a, "--model-id", "a", "--models", f"b={model_b}",
            "--max-loaded-models", "1", "--admin-key", "bench", "--threads", str(threads), "--pool-tokens", "16384",
            "--ctx-size", "12288", "--cache-dir", cache_dir, "--log-level", "warn"]
    srv = Server(argv, "kvault-swap")
    try:
        r, t = chat(srv.port, turn1, 1, {"model": "a"})
        tokens = r["usage"]["prompt_tokens"]
        k["cold_s"].append(t)
        t0 = time.time()
        chat(srv.port, "a question for the other model", 1, {"model": "b"})  # loads b, unloads a
        k["on_demand_load_s"].append(time.time() - t0)
        t0 = time.time()
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/admin/models/swap",
                                     data=json.dumps({"model": "a"}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer bench"})
        with urllib.request.urlopen(req, timeout=600) as resp:
            json.load(resp)
        k["swap_s"].append(time.time() - t0)
        r, t = chat(srv.port, turn2, 1, {"model": "a"})
        assert r["cache"]["disk_tokens"] > 0, r["cache"]
        k["next_turn_s"].append(t)
    finally:
        srv.stop()
        shutil.rmtree(cache_dir, ignore_errors=True)
    return tokens


def llama_server_rep(tools, model_a, model_b, threads, turn1, turn2, l):
    """One repetition on llama-server (cold on A, restarted with B, restarted with A), appended to l."""
    ls = [os.path.join(tools, "llama-server"), "-t", str(threads), "-c", "16384", "-np", "1", "--host", "127.0.0.1"]
    srv = Server(ls + ["-m", model_a], "llama-server")
    try:
        l["cold_s"].append(chat(srv.port, turn1, 1)[1])
    finally:
        srv.stop()
    srv = Server(ls + ["-m", model_b], "llama-server")
    srv.stop()
    t0 = time.time()
    srv = Server(ls + ["-m", model_a], "llama-server")
    l["restart_s"].append(time.time() - t0)
    try:
        l["next_turn_s"].append(chat(srv.port, turn2, 1)[1])
    finally:
        srv.stop()


def swap(kvault, model_a, model_b, tools, threads, words, reps):
    """Back on model A after model B was served: kvault swaps (A's cache stays on disk) where
    llama-server is restarted with the other model."""
    k = {"swap_s": [], "next_turn_s": [], "cold_s": [], "on_demand_load_s": []}
    l = {"restart_s": [], "next_turn_s": [], "cold_s": []}
    tokens = 0
    for rep in range(reps):
        base = f"swap agent {rep}: " + text_of(words, 5000 + rep)
        turn1 = [{"role": "user", "content": base}]
        turn2 = turn1 + [{"role": "assistant", "content": "noted"}, {"role": "user", "content": "and next?"}]
        tokens = kvault_rep(kvault, model_a, model_b, threads, turn1, turn2, k)
        log(f"kvault swap {tokens} tokens rep={rep}: cold {k['cold_s'][-1]:.2f}s swap {k['swap_s'][-1]:.2f}s "
            f"next turn {k['next_turn_s'][-1]:.2f}s")
        if tools:
            llama_server_rep(tools, model_a, model_b, threads, turn1, turn2, l)
            log(f"llama-server swap rep={rep}: restart {l['restart_s'][-1]:.2f}s next turn {l['next_turn_s'][-1]:.2f}s")
    out = {"tokens": tokens, "kvault": {p: stats(v) for p, v in k.items()}}
    if tools:
        out["llama-server"] = {p: stats(v) for p, v in l.items()}
    return out


def run(ctx):
    log("suite: model swap")
    ctx.r["swap"] = swap(ctx.kvault, ctx.model, ensure_model(ctx.kvault, ctx.size, 43), ctx.tools, ctx.args.threads,
                         200 if ctx.smoke else 4000, ctx.reps)
