"""swap: back on model A after model B was served: kvault swaps models (A's cache stays on disk)
where llama-server is restarted with the other model."""
import json
import os
import shutil
import tempfile
import time
import urllib.request

from ..client import chat, llama_cached_fraction, post_json
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
    """One repetition on llama-server (cold on A, restarted with B, restarted with A), appended to
    l; then A once more with the client's slot save/restore (--slot-save-path: slot 0 saved to a
    file after the first turn on A, restored after the restart with A, the restore's time counted
    in the next turn's)."""
    slot_dir = tempfile.mkdtemp(prefix="kvault-bench-swap-slots-")
    ls = [os.path.join(tools, "llama-server"), "-t", str(threads), "-c", "16384", "-np", "1", "--host", "127.0.0.1",
          "--slot-save-path", slot_dir + "/"]
    try:
        srv = Server(ls + ["-m", model_a], "llama-server")
        try:
            l["cold_s"].append(chat(srv.port, turn1, 1)[1])
            l["slot_save_s"].append(post_json(srv.port, "/slots/0?action=save", {"filename": "agent-a.bin"})[1])
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
        srv = Server(ls + ["-m", model_a], "llama-server")  # the same, with A's slot file restored
        try:
            restored, restore_s = post_json(srv.port, "/slots/0?action=restore", {"filename": "agent-a.bin"})
            assert restored.get("n_restored", 0) > 0, restored
            r, t = chat(srv.port, turn2, 1)
            l["slot_next_turn_s"].append(restore_s + t)
            l["slot_reused"].append(llama_cached_fraction(r))
        finally:
            srv.stop()
    finally:
        shutil.rmtree(slot_dir, ignore_errors=True)


def swap(kvault, model_a, model_b, tools, threads, words, reps):
    """Back on model A after model B was served: kvault swaps (A's cache stays on disk) where
    llama-server is restarted with the other model."""
    k = {"swap_s": [], "next_turn_s": [], "cold_s": [], "on_demand_load_s": []}
    l = {"restart_s": [], "next_turn_s": [], "cold_s": [], "slot_save_s": [], "slot_next_turn_s": [], "slot_reused": []}
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
            log(f"llama-server swap rep={rep}: restart {l['restart_s'][-1]:.2f}s next turn {l['next_turn_s'][-1]:.2f}s, "
                f"with the slot file {l['slot_next_turn_s'][-1]:.2f}s ({l['slot_reused'][-1] * 100:.0f} % reused)")
    out = {"tokens": tokens, "kvault": {p: stats(v) for p, v in k.items()}, "kvault_samples": k,
           "budgets": {"kvault": "--pool-tokens 16384 --ctx-size 12288 --max-loaded-models 1",
                       "llama-server": "-c 16384 -np 1 --slot-save-path DIR"}}
    if tools:
        out["llama-server"] = {p: stats(v) for p, v in l.items()}
        out["llama-server_samples"] = l
    return out


def run(ctx):
    log("suite: model swap")
    ctx.r["swap"] = swap(ctx.kvault, ctx.model, ensure_model(ctx.kvault, ctx.size, 43), ctx.tools, ctx.args.threads,
                         200 if ctx.smoke else 4000, ctx.reps)
