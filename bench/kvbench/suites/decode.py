"""decode: aggregate decode throughput with 1, 2, 3, 4, 5, 8, 16 concurrent agents, next to
llama-batched-bench (S_TG) and llama-bench (tg) on the same model and threads."""
import concurrent.futures
import json
import os
import subprocess
import time

from ..client import chat, get_json
from ..servers import Server
from ..util import gpu_flags, log, stats, text_of


def kvault_decode(kvault, model, threads, agents, reps, prompt_words, gen_tokens, extra=(), health_out=None,
                  seed_base=0):
    srv = Server([kvault, "serve", "--model", model, "--threads", str(threads), "--parallel", str(max(agents)),
                  "--resident-seqs", str(max(agents) * 2), "--pool-tokens", "16384", "--ctx-size", "8192",
                  "--log-level", "warn", *extra], "kvault")
    try:
        chat(srv.port, "warm up " + text_of(20, 999), 8)
        out = {}
        for n in agents:
            rates, e2e = [], []
            for rep in range(reps):
                rate, end_to_end, gen = decode_round(srv.port, n, seed_base + rep, prompt_words, gen_tokens)
                rates.append(rate)
                e2e.append(end_to_end)
                log(f"kvault decode agents={n} rep={rep}: {rates[-1]:.1f} tok/s decode, {e2e[-1]:.1f} tok/s "
                    f"end to end ({gen} tokens generated)")
            out[str(n)] = {**stats(rates), "end_to_end": stats(e2e)}
        if health_out is not None:
            health_out.update(get_json(srv.port, "/health"))
        return out
    finally:
        srv.stop()


def decode_round(port, n, seed, prompt_words, gen_tokens):
    """n agents at once, one request each; returns (decode-only tokens/s from /health, end-to-end
    generated tokens/s, tokens generated)."""
    before = get_json(port, "/health")["engine"]
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        futs = [ex.submit(chat, port, f"agent {seed}-{n}-{i}: " + text_of(prompt_words, seed * 100 + n * 20 + i),
                          gen_tokens)
                for i in range(n)]
        results = [f.result() for f in futs]
    after = get_json(port, "/health")["engine"]
    tokens = after["decode_only_tokens"] - before["decode_only_tokens"]
    secs = after["decode_only_seconds"] - before["decode_only_seconds"]
    gen = sum(r[0]["usage"]["completion_tokens"] for r in results)
    return (tokens / secs if secs > 0 else 0.0), gen / (time.perf_counter() - t0), gen


def llama_bench_tg(tools, model, threads, reps, gen_tokens):
    cmd = [os.path.join(tools, "llama-bench"), "-m", model, "-p", "0", "-n", str(gen_tokens), "-t", str(threads),
           "-r", str(reps), "-o", "json", *gpu_flags("llama-bench")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    data = json.loads(res.stdout)
    samples = data[0]["samples_ts"]
    return {"cmd": " ".join(cmd), **stats(samples)}


def batched_bench(tools, model, threads, agents, reps, prompt_tokens, gen_tokens):
    cmd = [os.path.join(tools, "llama-batched-bench"), "-m", model, "-c", "16384", "-b", "2048", "-ub", "512",
           "-npp", str(prompt_tokens), "-ntg", str(gen_tokens), "-npl", ",".join(map(str, agents)), "-t",
           str(threads), "-kvu", "--output-format", "jsonl", *gpu_flags("llama-batched-bench")]
    per = {str(n): [] for n in agents}
    for _ in range(reps):
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        for line in (res.stdout + res.stderr).splitlines():
            line = line.strip()
            if line.startswith("{") and "speed_tg" in line:
                row = json.loads(line)
                per[str(row["pl"])].append(row["speed_tg"])
    return {"cmd": " ".join(cmd), **{n: stats(v) for n, v in per.items() if v}}


def decode_suite(kvault, tools, model, threads, agents, reps, prompt_words, gen_tokens):
    """kvault and llama.cpp's tools take turns, back to back for each agent count (kvault with N agents,
    then llama-batched-bench -npl N, ~30 s apart), so that the machine's drift (these are shared
    machines: speeds wander by 30 % within minutes) hits both alike; the ratios are taken per pair
    and their median over the repetitions reported."""
    kv, det, single, bb, tg = {str(n): [] for n in agents}, [], [], {str(n): [] for n in agents}, []
    e2e = {str(n): [] for n in agents}
    bb_cmd = tg_cmd = None
    for rep in range(reps):
        log(f"decode rep {rep}")
        for n in agents:
            k = kvault_decode(kvault, model, threads, [n], 1, prompt_words, gen_tokens, seed_base=rep)
            kv[str(n)].append(k[str(n)]["median"])
            e2e[str(n)].append(k[str(n)]["end_to_end"]["median"])
            if tools:
                b = batched_bench(tools, model, threads, [n], 1, prompt_words + 30, gen_tokens)
                bb_cmd = b["cmd"].replace(f"-npl {n} ", "-npl N ")
                if str(n) in b:
                    bb[str(n)].append(b[str(n)]["median"])
        # Single stream: kvault, llama-bench tg and kvault --deterministic back to back (~30 s), so
        # that the paired ratio compares like machine states (drift over minutes is larger than the
        # differences measured here).
        single.append(kvault_decode(kvault, model, threads, [1], 1, prompt_words, gen_tokens,
                                    seed_base=rep)["1"]["median"])
        if tools:
            t = llama_bench_tg(tools, model, threads, 1, gen_tokens)
            tg_cmd = t["cmd"]
            tg.append(t["median"])
        det.append(kvault_decode(kvault, model, threads, [1], 1, prompt_words, gen_tokens, ["--deterministic"],
                                 seed_base=rep)["1"]["median"])
    d = {"kvault": {n: {**stats(v), "end_to_end": stats(e2e[n])} for n, v in kv.items()},
         "kvault_single": {"1": stats(single)}, "kvault_deterministic_single": {"1": stats(det)},
         "interleaved": "per-count"}
    if tools:
        d["batched_bench"] = {"cmd": bb_cmd, **{n: stats(v) for n, v in bb.items() if v}}
        d["llama_bench_tg"] = {"cmd": tg_cmd, **stats(tg)}
        d["paired_ratio"] = {n: stats([a / b for a, b in zip(kv[n], bb[n])]) for n in kv if bb[n]}
        d["paired_ratio_single"] = {"default": stats([a / b for a, b in zip(single, tg)]),
                                    "deterministic": stats([a / b for a, b in zip(det, tg)])}
    return d


def run(ctx):
    log("suite: decode throughput")
    ctx.r["decode"] = decode_suite(ctx.kvault, ctx.tools, ctx.model, ctx.args.threads, ctx.agents, ctx.reps,
                                   ctx.prompt_words, ctx.gen_tokens)
