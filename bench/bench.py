#!/usr/bin/env python3
"""kvault benchmark driver: kvault next to llama.cpp's own programs, same model, threads, machine.

  make bench        full run on the `bench` demo model (minutes); writes bench/results/latest.json
                    and docs/benchmarks.md
  make bench-smoke  the same code paths on the tiny model in seconds (part of `make test`);
                    writes to a temporary directory and checks the output's shape

Suites (see docs/benchmarks.md for what each measures):
  decode   aggregate decode throughput with 1, 2, 3, 4, 5, 8, 16 concurrent agents, next to
           llama-batched-bench (S_TG) and llama-bench (tg) on the same model and threads
  ttft     time to first token of a short request while another agent's 4K-token prompt is being
           prefilled, kvault vs llama-server
  resume   time to first token of an agent's next turn at 2K/4K/8K tokens of context: cold, while
           resident, after eviction (RAM tier), after a server restart (disk tier); llama-server
           cold, resident and after a restart, same prompts. --long adds 16K and 32K (a 32K
           repetition is ~50 min on 2 cores: `--resume-words 32000 --resume-reps 1
           --resume-accumulate` adds one repetition per run to the stored ones)
  index    rebuilding the disk index at start-up: `kvault cache stats` over a directory of N block
           files (N = 100,000)
  blockio  saving and restoring KV blocks with libllama's sequence-state API, by block size, and
           whether restored KV reproduces the original logits bit for bit (kvault-block-bench)
  roundrobin  many agents (8, 32; 128 with --long) with a shared system prompt and 2K-4K tokens of
           context each take turns, one request at a time, more agents than the pool holds:
           streamed time to first token per turn (cold first turn apart), kvault vs llama-server
           with its prompt cache (--cache-ram, --cache-reuse)
  memory   process RSS (VmRSS, VmHWM) and kvault's pool / RAM tier / disk tier with 1, 10, 100
           agents stored; llama-server's RSS at the same points
  persist  decode throughput with persistence on and with --no-persist (1 and 8 agents)

  --plots-only  regenerates the PNG plots (docs/img/) and docs/benchmarks.md from an existing
                results JSON without running anything

The drivers use only the Python standard library. The PNG plots need matplotlib (Debian:
python3-matplotlib), imported only when plots are made; a full run as root installs it with
apt-get, otherwise plots are skipped with a note. Numbers are medians of >= 3 repetitions after a
warm-up, with min and max; ratios kvault / llama.cpp are the headline because absolute times on
shared machines drift.
"""
import argparse
import atexit
import concurrent.futures
import datetime
import json
import importlib
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("KVAULT_DEPS_DIR", os.path.expanduser("~/.cache/kvault"))
WORDS = ("time person year way day thing man world life hand part child eye woman place work week case "
         "point government company number group problem fact river mountain garden window music letter "
         "market doctor station summer winter island forest engine signal bridge castle planet ocean").split()


def llama_tag():
    """The pinned llama.cpp release, read from scripts/deps.sh (the one place that pins it)."""
    with open(os.path.join(ROOT, "scripts", "deps.sh")) as f:
        m = re.search(r"^LLAMA_TAG=(\S+)$", f.read(), re.M)
    return m.group(1) if m else "unknown"


def llama_source_ids():
    """The pinned llama.cpp source's commit and tree hashes (the bundle is one squashed commit)."""
    src = os.path.join(CACHE, f"llama.cpp-{llama_tag()}")
    ids = []
    for name, ref in (("commit", "HEAD"), ("tree", "HEAD^{tree}")):
        try:
            ids.append(f"{name} `" + subprocess.run(["git", "-C", src, "rev-parse", ref], check=True,
                                                   capture_output=True, text=True).stdout.strip()[:12] + "`")
        except (OSError, subprocess.CalledProcessError):
            ids.append(f"{name} unknown")
    return ", ".join(ids)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_of(n_words, seed):
    return " ".join(WORDS[(seed * 7 + i * 13 + i // len(WORDS)) % len(WORDS)] for i in range(n_words))


def rand_text(n_words, seed):
    """n_words words drawn at random (seeded): unlike text_of, two seeds share no long runs, so a
    server cannot reuse shifted chunks of one agent's KV for another's."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def post_json(port, path, body, timeout=600, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        data = json.loads(r.read())
    return data, time.perf_counter() - t0


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.loads(r.read())


LONG = 3 * 3600  # seconds: a cold 32K-token prefill takes ~17 min on 2 cores


def chat(port, content, max_tokens, extra=None, headers=None, timeout=600):
    """`content`: the user's message, or a whole list of messages."""
    messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
    body.update(extra or {})
    return post_json(port, "/v1/chat/completions", body, headers=headers, timeout=timeout)


def chat_stream(port, messages, max_tokens, headers=None, timeout=600, extra=None):
    """A streamed chat completion (OpenAI server-sent events). Time to first token: until the first
    chunk that carries generated text, a tool call or a finish reason (a role-only opening chunk does
    not count: a server may send it before the prompt is processed). Returns a dict with ttft_s,
    total_s, the answer's text, prompt / completion tokens and the prompt tokens reused from a cache
    (usage.prompt_tokens_details.cached_tokens, or llama-server's timings.cache_n)."""
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **(extra or {})}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    t0 = time.perf_counter()
    ttft, text, usage, timings = None, [], {}, {}
    with urllib.request.urlopen(req, timeout=timeout) as r:
        for raw in r:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            for ch in ev.get("choices") or []:
                delta = ch.get("delta") or {}
                if ttft is None and (delta.get("content") or delta.get("tool_calls") or ch.get("finish_reason")):
                    ttft = time.perf_counter() - t0
                if delta.get("content"):
                    text.append(delta["content"])
            usage = ev.get("usage") or usage
            timings = ev.get("timings") or timings
    total = time.perf_counter() - t0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None:
        cached = timings.get("cache_n", 0)
    return {"ttft_s": ttft if ttft is not None else total, "total_s": total, "text": "".join(text),
            "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
            "cached_tokens": cached or 0}


class Server:
    """A server process (kvault or llama-server) on a free loopback port."""

    def __init__(self, argv, name, health="/health"):
        self.port = free_port()
        self.cache_dir = None
        if name.startswith("kvault") and "--cache-dir" not in argv:  # its own KV cache directory, not the user's
            self.cache_dir = tempfile.mkdtemp(prefix="kvault-bench-cache-")
            argv = argv + ["--cache-dir", self.cache_dir]
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv + ["--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{health}", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become healthy")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.cache_dir:  # the temporary cache directory this object made (GBs after the bigger suites)
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def memory(self):
        """The process's resident memory from /proc/<pid>/status, MiB: VmRSS (now), VmHWM (peak),
        RssAnon (heap and anonymous maps: KV pool, RAM tier) and RssFile (mapped files: the model)."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) / 1024  # kB
        return out


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
    """One line naming the machine a suite ran on; "isa" is missing from results before 2026-12-01."""
    if not m:
        return "machine not recorded"
    return (f"{m['cpu']} ({m.get('isa', 'vector extensions not recorded')}), {m['cores']} cores, "
            f"{m['memory_gib']} GiB, Linux {m['kernel']}")


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
                before = get_json(srv.port, "/health")["engine"]
                t0 = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(n) as ex:
                    futs = [ex.submit(chat, srv.port, f"agent {seed_base + rep}-{n}-{i}: " +
                                      text_of(prompt_words, (seed_base + rep) * 100 + n * 20 + i), gen_tokens)
                            for i in range(n)]
                    results = [f.result() for f in futs]
                after = get_json(srv.port, "/health")["engine"]
                tokens = after["decode_only_tokens"] - before["decode_only_tokens"]
                secs = after["decode_only_seconds"] - before["decode_only_seconds"]
                rates.append(tokens / secs if secs > 0 else 0.0)
                gen = sum(r[0]["usage"]["completion_tokens"] for r in results)
                e2e.append(gen / (time.perf_counter() - t0))
                log(f"kvault decode agents={n} rep={rep}: {rates[-1]:.1f} tok/s decode, {e2e[-1]:.1f} tok/s "
                    f"end to end ({gen} tokens generated)")
            out[str(n)] = {**stats(rates), "end_to_end": stats(e2e)}
        if health_out is not None:
            health_out.update(get_json(srv.port, "/health"))
        return out
    finally:
        srv.stop()


def llama_bench_tg(tools, model, threads, reps, gen_tokens):
    cmd = [os.path.join(tools, "llama-bench"), "-m", model, "-p", "0", "-n", str(gen_tokens), "-t", str(threads),
           "-r", str(reps), "-o", "json"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    data = json.loads(res.stdout)
    samples = data[0]["samples_ts"]
    return {"cmd": " ".join(cmd), **stats(samples)}


def batched_bench(tools, model, threads, agents, reps, prompt_tokens, gen_tokens):
    cmd = [os.path.join(tools, "llama-batched-bench"), "-m", model, "-c", "16384", "-b", "2048", "-ub", "512",
           "-npp", str(prompt_tokens), "-ntg", str(gen_tokens), "-npl", ",".join(map(str, agents)), "-t",
           str(threads), "-kvu", "--output-format", "jsonl"]
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


def ttft_under_prefill(argv, name, long_words, short_words, reps):
    """Latency of a 1-token answer to a short prompt, alone and while a long prompt is prefilling."""
    srv = Server(argv, name)
    try:
        chat(srv.port, "warm up", 4)
        alone, loaded, long_tokens = [], [], 0
        for rep in range(reps):
            _, t = chat(srv.port, f"short {rep}: " + text_of(short_words, 500 + rep), 1)
            alone.append(t)
            with concurrent.futures.ThreadPoolExecutor(2) as ex:
                big = ex.submit(chat, srv.port, f"long {rep}: " + text_of(long_words, 700 + rep), 1)
                time.sleep(1.0)  # the long prompt is now being prefilled
                _, t = chat(srv.port, f"short busy {rep}: " + text_of(short_words, 800 + rep), 1)
                loaded.append(t)
                long_resp, long_t = big.result()
                long_tokens = long_resp["usage"]["prompt_tokens"]
            log(f"{name} ttft rep={rep}: alone {alone[-1]:.2f}s, during {long_tokens}-token prefill "
                f"{loaded[-1]:.2f}s (long request {long_t:.1f}s)")
        return {"alone_s": stats(alone), "during_prefill_s": stats(loaded), "long_prompt_tokens": long_tokens}
    finally:
        srv.stop()


def resume_kvault_argv(kvault, model, threads, max_words):
    """The resume suite's kvault server (one agent at a time, one resident sequence) and its pool
    size: room for the longest context measured."""
    pool, ctx = ("40960", "36864") if max_words > 8000 else ("16384", "12288")
    return [kvault, "serve", "--model", model, "--threads", str(threads), "--parallel", "1", "--resident-seqs", "1",
            "--pool-tokens", pool, "--ctx-size", ctx, "--log-level", "warn"], pool


def resume(kvault_argv, server_argv, contexts, reps, on_rep):
    """Next-turn latency (1 token answered) by where the agent's KV is. After each repetition,
    on_rep(tokens, kvault, llama_server) gets this run's samples so far (lists by path) for that
    context size: a long run checkpoints there."""
    for words in contexts:
        k = {"cold": [], "resident": [], "ram": [], "restart": [], "disk": [], "load_mb_s": []}
        l = {"cold": [], "resident": [], "restart": []}
        tokens = 0
        for rep in range(reps):
            base = f"agent {words}-{rep}: " + text_of(words, 3000 + rep)
            # A conversation: each turn adds the previous answer and a new question.
            turns, msgs = [], [{"role": "user", "content": base}]
            for t in range(4):
                turns.append(list(msgs))
                msgs += [{"role": "assistant", "content": f"answer {t}"}, {"role": "user", "content": f"question {t + 1}"}]
            cache_dir = tempfile.mkdtemp(prefix="kvault-bench-resume-")
            argv = kvault_argv + ["--cache-dir", cache_dir]
            srv = Server(argv, "kvault-resume")
            try:
                r, t = chat(srv.port, turns[0], 1, timeout=LONG)
                tokens = r["usage"]["prompt_tokens"]
                k["cold"].append(t)
                r, t = chat(srv.port, turns[1], 1)
                k["resident"].append(t)
                chat(srv.port, "another agent pushes this one out of the pool", 1)  # --resident-seqs 1
                r, t = chat(srv.port, turns[2], 1)
                assert r["cache"]["ram_tokens"] > 0, r["cache"]
                k["ram"].append(t)
            finally:
                srv.stop()
            srv = Server(argv, "kvault-resume")
            try:
                r, t = chat(srv.port, turns[3], 1, timeout=LONG)
                assert r["cache"]["disk_tokens"] > 0, r["cache"]
                k["restart"].append(t)
            finally:
                srv.stop()
            # Once more, with the block files out of the OS page cache: read from the disk itself.
            # Load throughput: what the I/O thread read over its time fetching (read, check, copy).
            drop_from_page_cache(cache_dir)
            srv = Server(argv, "kvault-resume")
            try:
                r, t = chat(srv.port, turns[3], 1, timeout=LONG)
                assert r["cache"]["disk_tokens"] > 0, r["cache"]
                k["disk"].append(t)
                ks = get_json(srv.port, "/health")["kv_store"]
                k["load_mb_s"].append(ks["bytes_read"] / 1e6 / max(ks["fetch_seconds"], 1e-9))
            finally:
                srv.stop()
                shutil.rmtree(cache_dir, ignore_errors=True)
            log(f"kvault resume {tokens} tokens rep={rep}: cold {k['cold'][-1]:.2f}s resident {k['resident'][-1]:.2f}s "
                f"ram {k['ram'][-1]:.2f}s restart {k['restart'][-1]:.2f}s from disk {k['disk'][-1]:.2f}s "
                f"({k['load_mb_s'][-1]:.0f} MB/s)")
            if server_argv:
                srv = Server(server_argv, "llama-server")
                try:
                    l["cold"].append(chat(srv.port, turns[0], 1, timeout=LONG)[1])
                    l["resident"].append(chat(srv.port, turns[1], 1)[1])
                finally:
                    srv.stop()
                srv = Server(server_argv, "llama-server")
                try:
                    l["restart"].append(chat(srv.port, turns[3], 1, timeout=LONG)[1])
                finally:
                    srv.stop()
                log(f"llama-server resume rep={rep}: cold {l['cold'][-1]:.2f}s resident {l['resident'][-1]:.2f}s "
                    f"restart {l['restart'][-1]:.2f}s")
            on_rep(str(tokens), k, l if server_argv else None)


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
        log(f"kvault swap {tokens} tokens rep={rep}: cold {k['cold_s'][-1]:.2f}s swap {k['swap_s'][-1]:.2f}s "
            f"next turn {k['next_turn_s'][-1]:.2f}s")
        if tools:
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
            log(f"llama-server swap rep={rep}: restart {l['restart_s'][-1]:.2f}s next turn {l['next_turn_s'][-1]:.2f}s")
    out = {"tokens": tokens, "kvault": {p: stats(v) for p, v in k.items()}}
    if tools:
        out["llama-server"] = {p: stats(v) for p, v in l.items()}
    return out


def rr_agents_prompts(n_agents, system_words, ctx_range):
    """Each agent's first turn: the shared system prompt, then its own notes so that the whole is
    ctx_range[0]..ctx_range[1] words (~tokens on the demo models), spread evenly over the agents."""
    system = "You are one of many agents working on a shared project. " + rand_text(system_words, 1)
    lo, hi = ctx_range
    order = list(range(n_agents))
    random.Random(7).shuffle(order)  # lengths spread evenly, neighbours in turn order differ
    out = []
    for a in range(n_agents):
        total = lo + (hi - lo) * order[a] // max(1, n_agents - 1)
        own = max(10, total - system_words)
        out.append([{"role": "system", "content": system},
                    {"role": "user", "content": f"Agent {a} here. My notes so far: " + rand_text(own, 10000 + a)}])
    return out


def roundrobin(argv, name, n_agents, turns, system_words, ctx_range, gen_tokens, reps, agent_ids):
    """Agents take turns in round-robin order, one request at a time: turn 0 of every agent (cold),
    then turn 1 of every agent, ... Each turn appends the previous answer and a short new user
    message. Streamed TTFT of every request, and the whole run's wall time."""
    requests, totals = [], []
    for rep in range(reps):
        convs = rr_agents_prompts(n_agents, system_words, ctx_range)
        srv = Server(argv, name)
        try:
            chat(srv.port, "warm up " + text_of(20, 999), 4)
            t0 = time.perf_counter()
            for turn in range(turns):
                for a in range(n_agents):
                    headers = {"X-Agent-Id": f"rr-{a}"} if agent_ids else None
                    res = chat_stream(srv.port, convs[a], gen_tokens, headers)
                    requests.append({"rep": rep, "turn": turn, "agent": a, "ttft_s": res["ttft_s"],
                                     "total_s": res["total_s"], "prompt_tokens": res["prompt_tokens"],
                                     "cached_tokens": res["cached_tokens"]})
                    convs[a] = convs[a] + [
                        {"role": "assistant", "content": res["text"]},
                        {"role": "user", "content": f"Turn {turn + 1}, agent {a}: " + rand_text(12, 50000 + a * 100 + turn)}]
                warm = [q["ttft_s"] for q in requests if q["rep"] == rep and q["turn"] == turn]
                log(f"{name} roundrobin agents={n_agents} rep={rep} turn={turn}: TTFT p50 "
                    f"{percentile(warm, 50):.2f}s p95 {percentile(warm, 95):.2f}s")
            totals.append(time.perf_counter() - t0)
        finally:
            srv.stop()
    cold = [q for q in requests if q["turn"] == 0]
    warm = [q for q in requests if q["turn"] > 0]
    def p50_per_run(qs):  # each run's own p50: their spread says how repeatable the run is
        per = [percentile([q["ttft_s"] for q in qs if q["rep"] == rep], 50) for rep in range(reps)
               if any(q["rep"] == rep for q in qs)]
        return stats(per) if per else None
    return {"total_s": stats(totals), "cold_ttft_s": dist([q["ttft_s"] for q in cold]),
            "warm_ttft_s": dist([q["ttft_s"] for q in warm]),
            "cold_p50_runs": p50_per_run(cold), "warm_p50_runs": p50_per_run(warm),
            "warm_cached_fraction": (sum(q["cached_tokens"] for q in warm) / max(1, sum(q["prompt_tokens"] for q in warm))),
            "mean_prompt_tokens": statistics.fmean(q["prompt_tokens"] for q in requests),
            "requests": requests}


def wait_store_idle(port, timeout=60):
    """Until kvault's KV store has no pending disk writes; returns /health."""
    deadline = time.time() + timeout
    while True:
        h = get_json(port, "/health")
        if h.get("kv_store", {}).get("pending_writes", 0) == 0 or time.time() > deadline:
            return h
        time.sleep(0.2)


def memory(argv, name, steps, words, is_kvault):
    """RSS after storing 1, 10, 100, ... agents (each one turn of `words` distinct words), and kvault's
    pool and KV store from /health at the same points."""
    srv = Server(argv, name)
    rows = []
    try:
        chat(srv.port, "warm up " + text_of(20, 999), 4)
        stored = 0
        for target in [0] + list(steps):
            while stored < target:
                headers = {"X-Agent-Id": f"mem-{stored}"} if is_kvault else None
                chat(srv.port, f"Agent {stored} memo: " + rand_text(words, 20000 + stored), 4, headers=headers)
                stored += 1
            row = {"agents": target, **srv.memory()}
            if is_kvault:
                h = wait_store_idle(srv.port)
                ks, pool = h["kv_store"], h["pool"]
                row["store"] = {k: ks[k] for k in ("ram_blocks", "ram_bytes", "disk_blocks", "disk_bytes")}
                row["pool"] = {k: pool[k] for k in ("blocks_used", "blocks_total", "idle_sequences", "evictions")}
                row.update(srv.memory())  # after the writes settled
            rows.append(row)
            log(f"{name} memory agents={target}: RSS {row['VmRSS']:.0f} MiB (peak {row['VmHWM']:.0f}, anon "
                f"{row.get('RssAnon', 0):.0f})" + (f", RAM tier {row['store']['ram_bytes'] / 2**20:.1f} MiB, disk "
                                                  f"{row['store']['disk_bytes'] / 2**20:.1f} MiB" if is_kvault else ""))
        return rows
    finally:
        srv.stop()


def kvault_sustained(kvault, model, threads, agents, prompt_words, gen_tokens, turns, extra, seed):
    """Each of `agents` clients sends `turns` requests one after another, with answer lengths that
    differ between clients, so that requests end at different times and the KV blocks of a finished
    request are saved while the others decode. Returns decode-only tokens/s (from /health, as in the
    decode suite), end-to-end generated tokens/s, and the final /health."""
    srv = Server([kvault, "serve", "--model", model, "--threads", str(threads), "--parallel", str(agents),
                  "--resident-seqs", str(agents * 2), "--pool-tokens", "16384", "--ctx-size", "4096",
                  "--log-level", "warn", *extra], "kvault-persist")
    try:
        chat(srv.port, "warm up " + text_of(20, 999), 8)

        def client(i):
            gen = 0
            for t in range(turns):
                max_tokens = max(1, gen_tokens // 2 + (gen_tokens // 2) * ((i + t) % 3) // 2)
                prompt = f"persist agent {seed}-{i}-{t}: " + rand_text(prompt_words, 70000 + seed * 1000 + i * 10 + t)
                r, _ = chat(srv.port, prompt, max_tokens, headers={"X-Agent-Id": f"persist-{seed}-{i}"})
                gen += r["usage"]["completion_tokens"]
            return gen

        before = get_json(srv.port, "/health")["engine"]
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(agents) as ex:
            gen = sum(ex.map(client, range(agents)))
        wall = time.perf_counter() - t0
        health = wait_store_idle(srv.port)
        after = health["engine"]
        tokens = after["decode_only_tokens"] - before["decode_only_tokens"]
        secs = after["decode_only_seconds"] - before["decode_only_seconds"]
        return (tokens / secs if secs > 0 else 0.0), gen / wall, health
    finally:
        srv.stop()


def persist(kvault, model, threads, agents, reps, prompt_words, gen_tokens, turns=3):
    """kvault decode throughput with persistence (default) and with --no-persist, under a sustained
    load (see kvault_sustained); the two alternate, in swapped order every other rep, so that drift
    of a shared machine hits both alike."""
    modes = (("on", []), ("off", ["--no-persist"]))
    runs = {m: {str(n): [] for n in agents} for m, _ in modes}
    e2e = {m: {str(n): [] for n in agents} for m, _ in modes}
    store = {}
    for rep in range(reps):
        for n in agents:
            for mode, extra in (modes if rep % 2 == 0 else modes[::-1]):  # neither always runs first
                rate, end_to_end, health = kvault_sustained(kvault, model, threads, n, prompt_words, gen_tokens,
                                                            turns, extra, rep)
                runs[mode][str(n)].append(rate)
                e2e[mode][str(n)].append(end_to_end)
                ks = health.get("kv_store", {})
                if mode == "on":  # what persistence did during the last "on" run
                    store = {"agents": n, "blocks_saved": health.get("engine", {}).get("blocks_saved", 0),
                             "disk_bytes_written": ks.get("bytes_written", 0), "disk_blocks": ks.get("disk_blocks", 0)}
                else:
                    assert not ks.get("persistent", True), ks
                log(f"persist {mode} agents={n} rep={rep}: {rate:.1f} tok/s decode, {end_to_end:.1f} tok/s end to end")
    res = {}
    for n in map(str, agents):
        on, off = stats(runs["on"][n]), stats(runs["off"][n])
        res[n] = {"on": on, "off": off, "ratio": ratio(on["median"], off["median"]),
                  "end_to_end": {"on": stats(e2e["on"][n]), "off": stats(e2e["off"][n])}}
        log(f"persist agents={n}: on {on['median']:.1f} tok/s, off {off['median']:.1f} tok/s, ratio "
            + (f"{res[n]['ratio']:.3f}" if res[n]["ratio"] is not None else "—"))
    return {"turns": turns, "agents": res, "store_on": store}


def index_scan(kvault, n_files, reps):
    """Seconds to scan a cache directory of n_files block files (what a restart does)."""
    import random
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


def block_io(kvault, model, threads, context):
    exe = os.path.join(os.path.dirname(kvault), "kvault-block-bench")
    res = subprocess.run([exe, model, str(context), str(threads)], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    for row in rows[1:]:
        log(f"block io {row['block_tokens']}: save {row['save_ms_per_block']:.3f} ms/block, "
            f"load {row['load_ms_per_block']:.3f} ms/block, identical={row['logits_identical']}")
    return {"cmd": f"kvault-block-bench MODEL {context} {threads}", "prefill": rows[0], "sizes": rows[1:]}


def ensure_model(kvault, size, seed=42):
    path = os.path.join(CACHE, "models", f"demo-{size}-{seed}.gguf")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        log(f"generating the {size} demo model at {path}")
        subprocess.run([kvault, "model", "make-demo", "--size", size, "--out", path, "--seed", str(seed)], check=True)
    return path


def model_desc(r):
    """llama.cpp's description of the model ("llama 1B F16": its size class), with the real
    parameter count when the results have it."""
    n = r.get("model_params")
    if not n:
        return r["model_desc"]
    return f"llama.cpp describes it as “{r['model_desc']}”; {n / 1e6:.0f}M parameters"


def ratio(a, b):
    return a / b if b else None


def span(v, digits=2, unit=""):
    """A summary as 'median unit [min–max]'."""
    return f"{v['median']:.{digits}f}{unit} [{v['min']:.{digits}f}–{v['max']:.{digits}f}]"


SUITES = ("decode", "ttft", "resume", "swap", "index", "blockio", "roundrobin", "memory", "persist")
PLOTS = {"decode": "decode-throughput.png", "resume": "resume-ttft.png", "roundrobin": "roundrobin-ttft.png",
         "memory": "memory-rss.png"}


def load_pyplot(allow_install):
    """matplotlib's pyplot (Agg backend), or None. Imported only here: the drivers need nothing
    beyond the standard library. When allowed (a full run as root), installs python3-matplotlib."""
    def attempt():
        try:
            importlib.invalidate_caches()
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            return plt
        except ImportError:
            return None
    plt = attempt()
    if plt is None and allow_install and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("matplotlib is missing: apt-get install -y python3-matplotlib (for the plots)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-matplotlib"]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
        plt = attempt()
    if plt is None:
        log("plots skipped: matplotlib is not importable by " + sys.executable +
            " (Debian: apt-get install python3-matplotlib and run with /usr/bin/python3; or pip install matplotlib)")
    return plt


def plot_decode(plt, d):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    def line(series, label, style):
        xs = sorted((int(n) for n in series if n.isdigit()))
        if not xs:
            return
        med = [series[str(n)]["median"] for n in xs]
        err = [[m - series[str(n)]["min"] for n, m in zip(xs, med)], [series[str(n)]["max"] - m for n, m in zip(xs, med)]]
        ax.errorbar(xs, med, yerr=err, fmt=style, capsize=3, label=label)
    line(d["kvault"], "kvault (decode steps)", "o-")
    if d.get("batched_bench"):
        line({n: v for n, v in d["batched_bench"].items() if n != "cmd"}, "llama-batched-bench S_TG", "s--")
    e2e = {n: v["end_to_end"] for n, v in d["kvault"].items() if v.get("end_to_end")}
    if e2e:
        line(e2e, "kvault end to end (incl. prefill, HTTP)", "^:")
    if d.get("llama_bench_tg"):
        ax.plot([1], [d["llama_bench_tg"]["median"]], "kx", markersize=9, label="llama-bench tg")
    if d.get("kvault_deterministic_single", {}).get("1"):
        ax.plot([1], [d["kvault_deterministic_single"]["1"]["median"]], "D", label="kvault --deterministic")
    elif d.get("kvault_fast_single", {}).get("1"):  # results from before 2026-11-28 (deterministic default)
        ax.plot([1], [d["kvault_fast_single"]["1"]["median"]], "D", label="kvault --no-deterministic")
    ax.set_xscale("log", base=2)
    xs = sorted(int(n) for n in d["kvault"])
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrent agents")
    ax.set_ylabel("aggregate decode tokens/s")
    ax.set_title("Decode throughput vs agents")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_resume(plt, rs):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {"cold": "tab:gray", "resident": "tab:green", "ram": "tab:blue", "restart": "tab:red"}
    names = {"kvault": {"cold": "cold", "resident": "resident", "ram": "RAM tier", "restart": "restart (disk)"},
             "llama-server": {"cold": "cold", "resident": "resident (cache_prompt)", "restart": "restart (recomputed)"}}
    for server, fmt in (("kvault", "o-"), ("llama-server", "s--")):
        data = rs.get(server) or {}
        xs = sorted(int(n) for n in data)
        for path in ("cold", "resident", "ram", "restart"):
            pts = [(x, data[str(x)][path]) for x in xs if data[str(x)].get(path)]
            if not pts:
                continue
            med = [v["median"] for _, v in pts]
            err = [[m - v["min"] for m, (_, v) in zip(med, pts)], [v["max"] - m for m, (_, v) in zip(med, pts)]]
            ax.errorbar([x for x, _ in pts], med, yerr=err, fmt=fmt, color=colors[path], capsize=3,
                        label=f"{server} {names[server][path]}", alpha=1.0 if server == "kvault" else 0.55)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted(int(n) for n in rs.get("kvault", {}))
    ax.set_xticks(ticks, [str(x) for x in ticks])
    ax.set_xlabel("context tokens")
    ax.set_ylabel("next-turn time to first token (s)")
    ax.set_title("Resuming an agent: TTFT by where its KV is")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_roundrobin(plt, rr):
    runs = rr.get("runs") or {}
    ns = sorted(runs, key=int)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    colors = {"kvault": "tab:blue", "llama-server": "tab:orange"}
    for ax, (title, cold) in zip(axes, (("next turns (turn ≥ 2)", False), ("first turn (cold)", True))):
        handles = {}
        for i, n in enumerate(ns):
            for j, server in enumerate(("kvault", "llama-server")):
                res = runs[n].get(server)
                if not res:
                    continue
                vals = [q["ttft_s"] for q in res["requests"] if (q["turn"] == 0) == cold]
                if not vals:
                    continue
                b = ax.boxplot([vals], positions=[i * 3 + j], widths=0.8, patch_artist=True, whis=(5, 95),
                               showfliers=True, flierprops={"markersize": 3})
                for patch in b["boxes"]:
                    patch.set_facecolor(colors[server])
                    patch.set_alpha(0.6)
                handles[server] = b["boxes"][0]
        ax.set_xticks([i * 3 + 0.5 for i in range(len(ns))], [f"{n} agents" for n in ns])
        ax.set_xlim(-1, 3 * len(ns) - 1)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        if handles:
            ax.legend(list(handles.values()), list(handles), fontsize=8)
    axes[0].set_ylabel("time to first token (s); whiskers p5–p95")
    fig.suptitle("Round robin: agents take turns, more agents than the pool holds")
    fig.tight_layout()
    return fig


def plot_memory(plt, mem):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for server, color in (("kvault", "tab:blue"), ("llama-server", "tab:orange")):
        rows = mem.get(server) or []
        if not rows:
            continue
        xs = [max(row["agents"], 0.5) for row in rows]  # 0 agents drawn at 0.5 on the log axis
        ax.plot(xs, [row["VmRSS"] for row in rows], "o-", color=color, label=f"{server} RSS")
        if all("RssAnon" in row for row in rows):
            ax.plot(xs, [row["RssAnon"] for row in rows], "s--", color=color, alpha=0.7, label=f"{server} RssAnon")
        if server == "kvault" and all("store" in row for row in rows):
            ax.plot(xs, [row["store"]["ram_bytes"] / 2**20 for row in rows], "^:", color="tab:green",
                    label="kvault RAM tier")
            ax.plot(xs, [row["store"]["disk_bytes"] / 2**20 for row in rows], "v:", color="tab:gray",
                    label="kvault disk tier (not RSS)")
    ax.set_xscale("log")
    xs = sorted({row["agents"] for rows in (mem.get("kvault") or [], mem.get("llama-server") or []) for row in rows})
    ax.set_xticks([max(x, 0.5) for x in xs], [str(x) for x in xs])
    ax.set_xlabel("agents stored")
    ax.set_ylabel("MiB")
    ax.set_title("Memory as stored agents grow")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def make_plots(r, img_dir, allow_install):
    """PNGs for the suites present in r, into img_dir; returns {suite: path} of those made."""
    wanted = {k: f for k, f in (("decode", plot_decode), ("resume", plot_resume), ("roundrobin", plot_roundrobin),
                                 ("memory", plot_memory)) if r.get(k)}
    if not wanted:
        return {}
    plt = load_pyplot(allow_install)
    if plt is None:
        return {}
    os.makedirs(img_dir, exist_ok=True)
    made = {}
    for key, fn in wanted.items():
        path = os.path.join(img_dir, PLOTS[key])
        try:
            fig = fn(plt, r[key])
            fig.savefig(path, dpi=100, metadata={"Software": None})
            plt.close(fig)
            made[key] = path
        except Exception as e:  # a plot must never cost the results
            log(f"plot {key} failed: {e!r}")
    log(f"plots written: {', '.join(made.values()) or 'none'}")
    return made


def render_markdown(r, images=None):
    """images: {suite: path relative to the markdown file} of plots to show."""
    images = images or {}
    def image(key, alt):
        return [f"![{alt}]({images[key]})", ""] if key in images else []
    m = r["machine"]
    lines = ["# Benchmarks", "",
             f"Generated by `make bench` ({'smoke run, tiny model' if r['smoke'] else 'full run'}) on "
             f"{m['date']}: {machine_desc(m)}.",
             f"Model: `{r['model']}` ({model_desc(r)}), {r['threads']} threads. llama.cpp {r['llama_tag']} (the "
             "tag of node-llama-cpp's bundle, not an upstream release: " + llama_source_ids() + "), built "
             "from the same source as kvault.",
             "Each figure is the median of the repetitions, with [min–max]. These machines are shared and noisy: "
             "read the ratios, not the absolute numbers. `bench.py --suites …` reruns single suites into the "
             "same results; the date above is the latest run's" +
             (": " + ", ".join(f"{k} {v}" for k, v in sorted(r.get("suite_dates", {}).items())) + "."
              if r.get("suite_dates") else "."), ""]
    # Suites kept from a run on another machine are named, with the machine they ran on.
    other = {k: r.get("suite_machines", {}).get(k) for k in r.get("suite_dates", {}) if k in r}
    other = {k: v for k, v in other.items() if v != machine_desc(m)}
    if other:
        lines += ["Measured on another machine than the one above (same kind, but a different CPU changes "
                  "speeds): " + "; ".join(f"{k}: {v or 'machine not recorded'}" for k, v in sorted(other.items())) +
                  ". Compare the ratios within a table, not absolute figures across tables.", ""]
    missing = [k for k in SUITES if k not in r]
    if missing and not r.get("smoke"):
        lines += ["Not in these results yet: " + ", ".join(missing) + " (`bench.py --suites " + ",".join(missing) +
                  "` adds them).", ""]
    d = r.get("decode")
    if d:
        lines += ["## Decode throughput with concurrent agents", "",
                  f"Each agent sends a different ~{r['prompt_tokens']}-token prompt and generates {r['gen_tokens']} "
                  "tokens (greedy). kvault: tokens per second over engine steps that carry no prompt tokens "
                  "(pure decode), from `/health`. llama-batched-bench: S_TG with a unified KV cache "
                  "(`-kvu`). Goal: ≥ 0.95× at 8 agents; single stream ≥ 0.97× of llama-bench tg. Both sides "
                  "time llama.cpp's decode (kvault's steps call `llama_decode`): this table shows that kvault's "
                  "batches and pool cost llama.cpp nothing, not what a client sees; the client-side comparison "
                  "with llama-server (same streaming client, whole requests) is in docs/peers.md." +
                  (" The tools take turns back to back: for each agent count N, a fresh kvault server with "
                   "`--parallel N`, then llama-batched-bench `-npl N` (~30 s apart), so that the machine's drift "
                   "hits both; the ratio is the median of the per-pair ratios [min–max]."
                   if d.get("interleaved") == "per-count" else
                   " The tools take turns: each repetition runs kvault (a fresh server, all agent counts), then "
                   "llama-batched-bench and llama-bench, so that the machine's drift hits both; the ratio is the "
                   "median of the per-repetition ratios [min–max]." if d.get("interleaved") else ""), "",
                  "| agents | kvault decode tok/s | llama-batched-bench S_TG tok/s | ratio | kvault end to end tok/s "
                  "(incl. prefill, HTTP) |", "|---|---|---|---|---|"]
        paired = d.get("paired_ratio", {})
        for n, k in d["kvault"].items():
            b = d.get("batched_bench", {}).get(n)
            bt = span(b, 1) if b else "—"
            pr = paired.get(n)
            rt = (f"{pr['median']:.2f}× [{pr['min']:.2f}–{pr['max']:.2f}]" if pr else
                  f"{ratio(k['median'], b['median']):.2f}×" if b else "—")
            e = k.get("end_to_end")
            et = f"{e['median']:.1f}" if e else "—"
            lines.append(f"| {n} | {span(k, 1)} | {bt} | {rt} | {et} |")
        tg = d.get("llama_bench_tg")
        if tg:
            k1 = d["kvault"].get("1")
            fast = d.get("kvault_fast_single", {}).get("1")
            ps = d.get("paired_ratio_single") or {}
            def single(key, value):
                p = ps.get(key)
                return f"**{p['median']:.2f}×** [{p['min']:.2f}–{p['max']:.2f}]" if p else f"**{ratio(value, tg['median']):.2f}×**"
            det = d.get("kvault_deterministic_single", {}).get("1")
            if det:
                k1 = d.get("kvault_single", {}).get("1") or k1
                lines += ["", f"Single stream, measured back to back (kvault, llama-bench, kvault `--deterministic`; "
                          f"~30 s) in each repetition: llama-bench tg{r['gen_tokens']} {span(tg, 1, ' tok/s')}; "
                          f"kvault (default) {k1['median']:.1f} tok/s: {single('default', k1['median'])}; "
                          "kvault `--deterministic` "
                          f"{det['median']:.1f} tok/s: {single('deterministic', det['median'])}. Deterministic mode "
                          "(opt-in) never submits a one-token batch or a step with one output row, so that llama.cpp "
                          "uses the same matmul kernels as for batches (a step of 2 tokens costs ~1.5× a step of 1 "
                          "here); that is its cost in single-stream speed (docs/architecture.md, \"Exactness\")."]
            else:  # results from before 2026-11-28, when deterministic mode was the default
                lines += ["", f"Single stream: llama-bench tg{r['gen_tokens']} {span(tg, 1, ' tok/s')}; kvault (deterministic) "
                          f"{k1['median']:.1f} tok/s: {single('deterministic', k1['median'])}" +
                          (f"; kvault `--no-deterministic` {fast['median']:.1f} tok/s: "
                           f"{single('no_deterministic', fast['median'])}." if fast else ".")]
        lines += ["", "Commands: `" + d.get("batched_bench", {}).get("cmd", "(not run)") + "`; `" +
                  (tg or {}).get("cmd", "(not run)") + "`.", ""]
        lines += image("decode", "Decode throughput vs concurrent agents")
    t = r.get("ttft")
    if t:
        lines += ["## Time to first token while another agent's long prompt is prefilled", "",
                  f"A short prompt (~{r['short_words']} words, 1 token answered) alone, and 1 s after another agent "
                  f"sent a {t['kvault']['long_prompt_tokens']}-token prompt. kvault splits prefill into "
                  "`--step-tokens` chunks that share each step with other requests; llama-server processes "
                  "prompts in `--batch-size` (2048) chunks.", "",
                  "| server | alone (s) | during the long prefill (s) |", "|---|---|---|"]
        for name, v in t.items():
            a, l = v["alone_s"], v["during_prefill_s"]
            lines.append(f"| {name} | {span(a)} | {span(l)} |")
        lines.append("")
    rs = r.get("resume")
    if rs:
        lines += ["## Resuming an agent: next-turn time to first token", "",
                  "An agent with a long conversation sends its next turn (a few new tokens; 1 token answered). "
                  "kvault: cold (nothing cached), while its sequence is resident, after other agents pushed it "
                  "out of the pool (restored from the RAM tier), and after a server restart (restored from "
                  "disk; the file pages may still be in the OS page cache), and after a restart with its block "
                  "files evicted from the page cache (`posix_fadvise(DONTNEED)`: read from the disk itself). "
                  "llama-server: cold, resident (`cache_prompt`), after a restart (it keeps nothing). Seconds, "
                  "median [min–max].", "",
                  "| context tokens | kvault cold | resident | RAM | restart | restart, from the disk itself | "
                  "cold / restart | llama-server cold | resident | restart |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for n, kv in sorted(rs["kvault"].items(), key=lambda e: int(e[0])):
            ls = rs.get("llama-server", {}).get(n, {})
            def cell(v):
                return span(v) if v else "—"
            speedup = kv["cold"]["median"] / kv["restart"]["median"]
            reps_note = f" ({kv['cold']['n']} of 3 repetitions so far)" if kv["cold"]["n"] < 3 else ""
            lines.append(f"| {n}{reps_note} | {cell(kv['cold'])} | {cell(kv['resident'])} | {cell(kv['ram'])} | "
                         f"{cell(kv['restart'])} | {cell(kv.get('disk'))} | {speedup:.0f}× | {cell(ls.get('cold'))} | "
                         f"{cell(ls.get('resident'))} | {cell(ls.get('restart'))} |")
        runs = {}  # (date, machine) -> context sizes measured in that run
        for n in sorted(rs["kvault"], key=int):
            runs.setdefault((rs.get("dates", {}).get(n), rs.get("machines", {}).get(n)), []).append(n)
        no_raw = [n for n in sorted(rs["kvault"], key=int) if n not in rs.get("raw", {})]
        if no_raw:
            lines += ["", f"Rows without raw samples in the results file ({', '.join(no_raw)} tokens: measured "
                      "before the driver kept them; only their median, min and max are stored). A rerun of "
                      "`bench.py --suites resume` replaces them with rows that keep every sample."]
        if any(int(n) > 9000 for n in rs["kvault"]):
            lines += ["", "Up to 8K tokens both servers have a 16,384-token KV pool (kvault `--ctx-size 12288`); "
                      "a run with larger sizes gives both 40,960 (kvault `--ctx-size 36864`) for all its sizes."]
        if len(runs) > 1:
            lines += ["", "Rows from different runs: " + "; ".join(
                f"{', '.join(ns)} tokens on {d or 'date not recorded'} ({mach or 'machine not recorded'})"
                for (d, mach), ns in runs.items()) + "."]
        loads = [(n, kv["load_mb_s"]) for n, kv in sorted(rs["kvault"].items(), key=lambda e: int(e[0]))
                 if kv.get("load_mb_s")]
        if loads:
            d = rs.get("disk") or {}
            lines += ["", "Load throughput from the disk itself (block bytes read / the I/O thread's time fetching "
                      "them, which includes verifying the checksum and copying into RAM-tier memory; `/health` "
                      "`kv_store.bytes_read` and `fetch_seconds`): " +
                      "; ".join(f"{n} tokens {span(v, 0, ' MB/s')}" for n, v in loads) +
                      (f". The disk's own sequential read, same run: {d['read_mb_s']:.0f} MB/s "
                       f"({d['size_mb']} MB file, page cache dropped first)." if d else ".")]
        lines.append("")
        lines += image("resume", "Next-turn TTFT vs context tokens, by path")
    rr = r.get("roundrobin")
    if rr and rr.get("runs"):
        runs = rr["runs"]
        c = runs[sorted(runs, key=int)[0]]["config"]
        def pp(v, runs_p50=None):
            if not v:
                return "—"
            spread = (f" (each run's p50: {runs_p50['min']:.2f}–{runs_p50['max']:.2f})"
                      if runs_p50 and runs_p50["n"] > 1 else "")
            return f"{v['p50']:.2f} / {v['p95']:.2f}{spread}"
        def total(t):
            return f"{t['median']:.1f}" + (f" [{t['min']:.1f}–{t['max']:.1f}]" if t.get("n", 1) > 1 else "")
        lines += ["## Many agents taking turns (round robin)", "",
                  f"N agents share a ~{c['system_words']}-word system prompt; each has {c['context'][0]}–"
                  f"{c['context'][1]} tokens of context in all (system prompt included). They take turns in "
                  f"round-robin order, one request at a time, {c['turns']} turns each: every turn appends the "
                  f"previous answer and a short new user message; {c['gen_tokens']} tokens answered, greedy. "
                  "The pool holds only a few agents, the same KV memory for both servers: kvault "
                  f"`{c['kvault_flags']}` (agents named by `X-Agent-Id`), llama-server `{c['llama_server_flags']}` "
                  "(its prompt cache: idle slots are saved to a RAM cache of the same size as kvault's RAM tier; "
                  "nothing goes to disk). **Read this table with its budget**: llama-server's default "
                  "`--cache-ram` is 8192 MiB, eight times the budget here; at ~50 MiB per agent it would hold "
                  "these agents at its defaults, so the gap at 32 and 128 agents is expected to be the budget, "
                  "not the engine (not yet measured at that scale with the default). "
                  "docs/peers.md compares both at llama-server's defaults, at equal budgets and with "
                  "llama-server's slot save/restore. Time to first token from the streamed answer (the first chunk that "
                  "carries text). The first turn is cold for every agent (both servers reuse the shared system "
                  "prompt's KV where they can); the next turns find the agent's KV in the pool, RAM or disk, "
                  "or recompute it. Seconds; p50 / p95 over all requests of the run. Runs per agent count: "
                  + ", ".join(f"{n}: {runs[n].get('config', {}).get('reps', 1)}" for n in sorted(runs, key=int))
                  + "; where more than one, the requests of all runs are pooled, each run's own p50 follows in "
                  "brackets, and the whole run is the median [min–max].", "",
                  "| agents | server | mean prompt tokens | first turn (cold) p50 / p95 | next turns p50 / p95 | "
                  "prompt tokens reused on next turns | whole run (s) |", "|---|---|---|---|---|---|---|"]
        for n in sorted(runs, key=int):
            for server in ("kvault", "llama-server"):
                v = runs[n].get(server)
                if not v:
                    continue
                lines.append(f"| {n} | {server} | {v['mean_prompt_tokens']:.0f} | "
                             f"{pp(v['cold_ttft_s'], v.get('cold_p50_runs'))} | "
                             f"{pp(v['warm_ttft_s'], v.get('warm_p50_runs'))} | {v['warm_cached_fraction'] * 100:.0f}% | "
                             f"{total(v['total_s'])} |")
        faster = []
        for n in sorted(runs, key=int):
            k, l = runs[n].get("kvault"), runs[n].get("llama-server")
            if k and l and k["warm_ttft_s"] and l["warm_ttft_s"]:
                faster.append(f"{n} agents {l['warm_ttft_s']['p50'] / k['warm_ttft_s']['p50']:.1f}× "
                              f"(p95 {l['warm_ttft_s']['p95'] / k['warm_ttft_s']['p95']:.1f}×)")
        if faster:
            lines += ["", "Next-turn TTFT p50, llama-server / kvault: " + "; ".join(faster) + "."]
        dates = {n: runs[n].get("config", {}).get("date") for n in runs}
        if len(set(dates.values())) > 1:  # rows measured in different runs (each pair in one run)
            lines += ["", "Measured in separate runs, each kvault row next to its llama-server row: " +
                      "; ".join(f"{n} agents {dates[n]}" for n in sorted(runs, key=int)) + "."]
        machines = {n: runs[n].get("config", {}).get("machine") for n in runs}
        if len(set(machines.values())) > 1:
            lines += ["", "Machines: " + "; ".join(f"{n} agents on {machines[n] or 'a machine not recorded'}"
                                                   for n in sorted(runs, key=int)) + "."]
        note = rr_note(runs)
        if note and not r.get("smoke"):
            lines += ["", note]
        lines += ["", "Every request's TTFT, turn and cached tokens are in the raw results (`roundrobin.runs.N.SERVER."
                  "requests`).", ""]
        lines += image("roundrobin", "Round-robin TTFT distribution per agent count, kvault vs llama-server")
    mem = r.get("memory")
    if mem:
        c = mem["config"]
        ls_rows = {row["agents"]: row for row in mem.get("llama-server") or []}
        lines += ["## Memory with many stored agents", "",
                  f"Agents 1, 2, … each send one turn of ~{c['words']} distinct words (a few tokens answered); "
                  "after each step, the server's resident memory from `/proc/PID/status` (VmRSS now, VmHWM its "
                  "peak, RssAnon its anonymous part: heap, KV pool, RAM tier; the rest is the mapped model file) "
                  "and kvault's tiers from `/health` once its disk writes are done. kvault "
                  f"`{c['kvault_flags']}`: the RAM tier is bounded by `--ram-cache`, older blocks live on disk "
                  f"only. llama-server for reference: `{c['llama_server_flags']}`. Goal: kvault's memory flat "
                  "as the number of stored agents grows. MiB.", "",
                  "| agents stored | kvault RSS | peak | anon | RAM tier | disk tier | pool blocks used | "
                  "llama-server RSS | peak | anon |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in mem["kvault"]:
            l = ls_rows.get(row["agents"], {})
            st, pool = row.get("store", {}), row.get("pool", {})
            def mib(v):
                return f"{v:.0f}" if v is not None else "—"
            lines.append(f"| {row['agents']} | {mib(row['VmRSS'])} | {mib(row['VmHWM'])} | {mib(row.get('RssAnon'))} | "
                         f"{st.get('ram_bytes', 0) / 2**20:.1f} | {st.get('disk_bytes', 0) / 2**20:.1f} | "
                         f"{pool.get('blocks_used', '—')} / {pool.get('blocks_total', '—')} | {mib(l.get('VmRSS'))} | "
                         f"{mib(l.get('VmHWM'))} | {mib(l.get('RssAnon'))} |")
        k0, k1 = mem["kvault"][1] if len(mem["kvault"]) > 1 else mem["kvault"][0], mem["kvault"][-1]
        def grew(key):
            return (k1.get("store", {}).get(key, 0) - k0.get("store", {}).get(key, 0)) / 2**20
        lines += ["", f"kvault from {k0['agents']} to {k1['agents']} agents stored: RSS {k1['VmRSS'] - k0['VmRSS']:+.1f} MiB, "
                  f"RAM tier {grew('ram_bytes'):+.1f} MiB, disk tier {grew('disk_bytes'):+.1f} MiB" +
                  (f"; llama-server RSS {ls_rows[k1['agents']]['VmRSS'] - ls_rows[k0['agents']]['VmRSS']:+.1f} MiB"
                   if k0["agents"] in ls_rows and k1["agents"] in ls_rows else "") + ".", ""]
        lines += image("memory", "RSS and KV tiers vs stored agents")
    ps = r.get("persist")
    if ps:
        lines += ["## Persistence cost: decode throughput with and without the disk tier", "",
                  f"N agents each send {ps.get('turns', 3)} requests one after another (a ~{r['prompt_tokens']}-token "
                  f"prompt each; {r['gen_tokens'] // 2}–{r['gen_tokens']} tokens answered, the length differing "
                  "between agents so that requests end at different times and a finished request's KV blocks "
                  "are written while the others decode), on kvault with persistence (the default: blocks go "
                  "to disk asynchronously) and with `--no-persist` (RAM tier only); the two alternate (which goes first swaps every rep). "
                  "Decode tokens/s over steps with no prompt tokens, from `/health` as in the decode suite. "
                  "Goal: on / off ≥ 0.97.", "",
                  "| agents | persistence on tok/s | `--no-persist` tok/s | on / off | end to end on / off tok/s |",
                  "|---|---|---|---|---|"]
        for n, v in ps["agents"].items():
            e = v.get("end_to_end", {})
            et = f"{e['on']['median']:.1f} / {e['off']['median']:.1f}" if e else "—"
            rt = f"**{v['ratio']:.3f}×**" if v.get("ratio") is not None else "—"
            lines.append(f"| {n} | {span(v['on'], 1)} | {span(v['off'], 1)} | {rt} | {et} |")
        so = ps.get("store_on")
        if so:
            lines += ["", f"The last persistent run ({so['agents']} agents): {so['blocks_saved']} blocks saved, "
                      f"{so['disk_bytes_written'] / 2**20:.1f} MiB written to disk."]
        lines.append("")
    sw = r.get("swap")
    if sw:
        k, l = sw["kvault"], sw.get("llama-server", {})
        def cell(v):
            return span(v) if v else "—"
        lines += ["## Model swap: back on a model after another one was served", "",
                  f"An agent's {sw['tokens']}-token conversation on model A; then model B is served (one model "
                  "loaded at a time); then the agent's next turn on A (1 token answered). kvault: "
                  "`--max-loaded-models 1`, B loaded on demand by its first request, then "
                  "`POST /admin/models/swap` back to A; A's KV blocks stayed on disk. llama-server: restarted with "
                  "B, then restarted with A (it keeps no cache). Seconds, median [min–max].", "",
                  "| | kvault | llama-server |", "|---|---|---|",
                  f"| first turn on A (cold) | {cell(k['cold_s'])} | {cell(l.get('cold_s'))} |",
                  f"| serving B: on-demand load + B's first (short) request | {cell(k['on_demand_load_s'])} | — |",
                  f"| back to A: swap / restart | {cell(k['swap_s'])} | {cell(l.get('restart_s'))} |",
                  f"| A's next turn after that | {cell(k['next_turn_s'])} | {cell(l.get('next_turn_s'))} |"]
        if l:
            total_k = k["swap_s"]["median"] + k["next_turn_s"]["median"]
            total_l = l["restart_s"]["median"] + l["next_turn_s"]["median"]
            lines += ["", f"Back on A and answered: kvault {total_k:.2f} s, llama-server {total_l:.2f} s "
                      f"({total_l / total_k:.1f}× longer)."]
        lines.append("")
    b = r.get("blockio")
    if b:
        p = b["prefill"]
        lines += ["## Saving and restoring KV blocks", "",
                  f"`{b['cmd']}`: a {p['prefill_tokens']}-token sequence (prefilled in {p['prefill_ms']:.0f} ms, "
                  f"{p['prefill_tokens'] / p['prefill_ms'] * 1000:.0f} tokens/s) cut into blocks; each block shared "
                  "into a scratch sequence and serialised with `llama_state_seq_get_data` (save), then deserialised "
                  "and shared into a new sequence (load), all in memory. \"Identical\": the next token's logits "
                  "from the restored sequence equal the original's bit for bit.", "",
                  "| block tokens | bytes/block | save ms/block | save MB/s | load ms/block | load MB/s | identical |",
                  "|---|---|---|---|---|---|---|"]
        for row in b["sizes"]:
            lines.append(f"| {row['block_tokens']} | {row['bytes_per_block']} | {row['save_ms_per_block']:.3f} | "
                         f"{row['save_mb_s']:.0f} | {row['load_ms_per_block']:.3f} | {row['load_mb_s']:.0f} | "
                         f"{'yes' if row['logits_identical'] else 'NO'} |")
        dk = b.get("disk")
        if dk:
            lines += ["", f"The disk under the cache directory, same run: sequential write {dk['write_mb_s']:.0f} MB/s "
                      f"(fsync'd), read {dk['read_mb_s']:.0f} MB/s (page cache dropped first), {dk['size_mb']} MB file."]
        lines.append("")
    ix = r.get("index")
    if ix:
        v = ix["seconds"]
        lines += ["## Restart: rebuilding the disk index", "",
                  f"`kvault cache stats` over a cache directory of {ix['files']:,} block files (the same scan a "
                  f"server does at start-up: directory walk and index by key and age; a server also removes temp files, of which there are none here): "
                  f"{span(v, 2, ' s')}.", ""]
    lines += ["Raw results: `bench/results/latest.json`.", ""]
    return "\n".join(lines)


def rr_note(runs):
    if "128" in runs:
        return None
    return ("128 agents are opt-in (`bench.py --suites roundrobin --long`, or `--rr-agents 128`): on this "
            "machine's 2 cores the bench model prefills ~250 tokens/s, so 128 agents' cold first turns alone "
            "take ~17 min per server, and llama-server, whose RAM cache then holds only a fraction of the "
            "agents, recomputes most next turns: estimated ~25 min for kvault and ~55 min for llama-server.")


def write_outputs(r, out_json, out_md, rerun, plots, allow_install):
    """The JSON, the plots (for suites in r; into img/ next to the markdown) and the markdown."""
    if out_json:
        os.makedirs(os.path.dirname(out_json), exist_ok=True)
        with open(out_json, "w") as f:
            json.dump(r, f, indent=2)
    md_dir = os.path.dirname(os.path.abspath(out_md))
    img_dir = os.path.join(md_dir, "img")
    made = make_plots(r, img_dir, allow_install) if plots else {}
    images = {}
    for key, name in PLOTS.items():
        path = made.get(key)
        # a plot of an earlier run stays shown for a suite this run did not redo
        if path is None and key not in rerun and os.path.exists(os.path.join(img_dir, name)):
            path = os.path.join(img_dir, name)
        if path and r.get(key):
            images[key] = os.path.relpath(path, md_dir)
    os.makedirs(md_dir, exist_ok=True)
    with open(out_md, "w") as f:
        f.write(render_markdown(r, images))
    log(f"wrote {out_json or '(results unchanged)'} and {out_md}")


def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model, seconds; output to a temp dir")
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kvault", default=os.path.join(ROOT, "build", "bin", "kvault"))
    ap.add_argument("--out-json", default=None)
    ap.add_argument("--out-md", default=None)
    ap.add_argument("--plots-only", action="store_true",
                    help="run nothing: regenerate the plots and the markdown from the results JSON (--out-json)")
    ap.add_argument("--no-plots", action="store_true", help="no PNG plots")
    ap.add_argument("--long", action="store_true",
                    help="roundrobin also with 128 agents (about 80 min on 2 cores); resume also at 16K and 32K "
                         "tokens of context (hours: cold prefill is quadratic)")
    ap.add_argument("--decode-agents", default=None, help="decode: concurrent agent counts (default 1,2,3,4,5,8,16)")
    ap.add_argument("--resume-words", default=None,
                    help="resume: the conversations' sizes in words, about one token each (default 2000,4000,8000; "
                         "also 16000,32000 with --long); rows for other sizes are kept from earlier runs")
    ap.add_argument("--resume-reps", type=int, default=None,
                    help="resume: repetitions in this run (default: --reps); fewer than 3 only with "
                         "--resume-accumulate, which adds them to the samples of earlier runs")
    ap.add_argument("--resume-accumulate", action="store_true",
                    help="resume: add this run's samples of each size to those stored for it from earlier runs "
                         "on the same machine (every repetition is checkpointed; a row says how many it has)")
    ap.add_argument("--rr-agents", default=None, help="roundrobin agent counts (default 8,32; 8,32,128 with --long)")
    ap.add_argument("--rr-context", default=None,
                    help="roundrobin: each agent's context in tokens, system prompt included, MIN-MAX (default 2000-4000)")
    ap.add_argument("--rr-system", type=int, default=None, help="roundrobin: shared system prompt, words (default 1000)")
    ap.add_argument("--rr-turns", type=int, default=3, help="roundrobin: turns per agent (the first is cold)")
    ap.add_argument("--rr-gen", type=int, default=None, help="roundrobin: max_tokens per turn (default 16)")
    ap.add_argument("--rr-reps", type=int, default=1, help="roundrobin: runs per agent count (requests pooled)")
    ap.add_argument("--rr-pool-tokens", type=int, default=None,
                    help="roundrobin: KV pool of both servers in tokens (default 16384: ~4 agents)")
    ap.add_argument("--rr-ram-mib", type=int, default=1024,
                    help="roundrobin: kvault --ram-cache and llama-server --cache-ram, MiB")
    ap.add_argument("--mem-agents", default=None, help="memory: agents stored at each step (default 1,10,100)")
    ap.add_argument("--mem-words", type=int, default=None, help="memory: words of each agent's turn (default 300)")
    ap.add_argument("--mem-ram-mib", type=int, default=None,
                    help="memory: kvault --ram-cache and llama-server --cache-ram, MiB (default 64)")
    ap.add_argument("--persist-agents", default=None, help="persist: concurrent agents (default 1,8)")
    args = ap.parse_args()
    if args.resume_reps is not None and args.resume_reps < 3 and not args.resume_accumulate:
        ap.error("--resume-reps below 3 needs --resume-accumulate (a row is the median of >= 3 repetitions)")
    suites = set(args.suites.split(","))
    unknown = suites - set(SUITES)
    if unknown:
        ap.error(f"unknown suites {sorted(unknown)}; known: {','.join(SUITES)}")

    smoke = args.smoke
    if args.plots_only:
        out_json = args.out_json or os.path.join(ROOT, "bench", "results", "latest.json")
        out_md = args.out_md or os.path.join(ROOT, "docs", "benchmarks.md")
        with open(out_json) as f:
            r = json.load(f)
        write_outputs(r, None, out_md, set(), True, True)
        return

    size = "tiny" if smoke else "bench"
    agents = int_list(args.decode_agents) if args.decode_agents else ([1, 2, 4] if smoke else [1, 2, 3, 4, 5, 8, 16])
    prompt_words, gen_tokens = (20, 16) if smoke else (100, 128)
    long_words, short_words = (300, 10) if smoke else (4000, 20)
    reps = 1 if smoke else max(3, args.reps)
    out_json = args.out_json or (os.path.join(tempfile.mkdtemp(prefix="kvault-bench-"), "results.json") if smoke
                                 else os.path.join(ROOT, "bench", "results", "latest.json"))
    out_md = args.out_md or (os.path.join(os.path.dirname(out_json), "benchmarks.md") if smoke
                             else os.path.join(ROOT, "docs", "benchmarks.md"))
    rr_agents = int_list(args.rr_agents) if args.rr_agents else ([4] if smoke else [8, 32] + ([128] if args.long else []))
    rr_context = tuple(int_list((args.rr_context or ("150-250" if smoke else "2000-4000")).replace("-", ",")))
    assert len(rr_context) == 2 and rr_context[0] <= rr_context[1], "--rr-context MIN-MAX"
    rr_system = args.rr_system if args.rr_system is not None else (60 if smoke else 1000)
    rr_gen = args.rr_gen or (8 if smoke else 16)
    rr_pool = args.rr_pool_tokens or (1024 if smoke else 16384)
    rr_slots = 2 if smoke else 4
    rr_ctx = -(-(rr_context[1] + args.rr_turns * 60 + rr_gen + 256) // 256) * 256  # an agent's longest request, rounded up
    mem_agents = int_list(args.mem_agents) if args.mem_agents else ([1, 3, 6] if smoke else [1, 10, 100])
    mem_words = args.mem_words or (40 if smoke else 300)
    mem_ram = args.mem_ram_mib or (1 if smoke else 64)
    persist_agents = int_list(args.persist_agents) if args.persist_agents else ([2] if smoke else [1, 8])
    # A private copy of the binary: rebuilding build/ while a run goes on (hours) neither breaks it
    # (the file is briefly not executable while it is linked) nor mixes two versions in one run.
    bin_dir = tempfile.mkdtemp(prefix="kvault-bench-bin-")
    atexit.register(shutil.rmtree, bin_dir, True)
    os.makedirs(os.path.join(bin_dir, "bin"))
    shutil.copy2(args.kvault, os.path.join(bin_dir, "bin", "kvault"))
    block_bench = os.path.join(os.path.dirname(os.path.abspath(args.kvault)), "kvault-block-bench")
    if os.path.exists(block_bench):  # the block I/O suite's program
        shutil.copy2(block_bench, os.path.join(bin_dir, "bin", "kvault-block-bench"))
    share = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.kvault))), "share")
    if os.path.isdir(share):  # the vocabulary `model make-demo` reads
        os.symlink(share, os.path.join(bin_dir, "share"))
    args.kvault = os.path.join(bin_dir, "bin", "kvault")
    model = ensure_model(args.kvault, size)
    tools = None
    if not smoke:
        tools = subprocess.run(["bash", os.path.join(ROOT, "bench", "build-llama-tools.sh")], check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1]
    info_srv = Server([args.kvault, "serve", "--model", model, "--log-level", "warn", "--pool-tokens", "4096"],
                      "kvault-info")
    meta = get_json(info_srv.port, "/v1/models")["data"][0]["meta"]
    desc, n_params = meta["description"], meta.get("n_params")
    info_srv.stop()

    r = {}
    if not smoke and os.path.exists(out_json):  # a partial run updates only the suites it ran
        with open(out_json) as f:
            r = json.load(f)
    r.update({"smoke": smoke, "machine": machine(), "model": os.path.basename(model), "model_desc": desc,
              "model_params": n_params, "threads": args.threads, "llama_tag": llama_tag(),
              "prompt_tokens": prompt_words + 30, "gen_tokens": gen_tokens, "short_words": short_words})

    def checkpoint(suite):
        """Stamps `suite` (when this run measured it) and saves the JSON: a run that fails or is
        stopped later keeps the suites it finished (`bench.py --plots-only` redraws the markdown)."""
        if suite not in suites or suite not in r:
            return
        r.setdefault("suite_dates", {})[suite] = r["machine"]["date"]
        r.setdefault("suite_machines", {})[suite] = machine_desc(r["machine"])
        os.makedirs(os.path.dirname(out_json), exist_ok=True)
        with open(out_json + ".tmp", "w") as f:
            json.dump(r, f, indent=2)
        os.replace(out_json + ".tmp", out_json)

    if "decode" in suites:
        log("suite: decode throughput")
        d = decode_suite(args.kvault, tools, model, args.threads, agents, reps, prompt_words, gen_tokens)
        r["decode"] = d
    checkpoint("decode")
    if "ttft" in suites:
        log("suite: ttft under prefill")
        kv_argv = [args.kvault, "serve", "--model", model, "--threads", str(args.threads), "--parallel", "4",
                   "--pool-tokens", "16384", "--ctx-size", "8192", "--log-level", "warn"]
        t = {"kvault": ttft_under_prefill(kv_argv, "kvault", long_words, short_words, reps)}
        if tools:
            ls_argv = [os.path.join(tools, "llama-server"), "-m", model, "-t", str(args.threads), "-c", "16384",
                       "-np", "4", "-kvu", "--host", "127.0.0.1"]
            t["llama-server"] = ttft_under_prefill(ls_argv, "llama-server", long_words, short_words, reps)
        r["ttft"] = t

    checkpoint("ttft")
    if "resume" in suites:
        log("suite: resume")
        # --long adds 16K and 32K contexts (cold prefill of 32K tokens alone takes tens of minutes here).
        contexts = int_list(args.resume_words) if args.resume_words else (
            [200] if smoke else [2000, 4000, 8000] + ([16000, 32000] if args.long else []))
        kv_argv, pool = resume_kvault_argv(args.kvault, model, args.threads, max(contexts))
        ls_argv = None
        if tools:
            ls_argv = [os.path.join(tools, "llama-server"), "-m", model, "-t", str(args.threads), "-c", pool,
                       "-np", "1", "--host", "127.0.0.1"]
        # Context sizes this run does not measure keep their earlier rows (each row is dated). With
        # --resume-accumulate a size's samples are added to those stored from earlier runs on the
        # same machine (a 32K repetition takes ~50 min here: three runs can make up one row).
        rs = r.get("resume") if not smoke else None
        rs = rs if rs and "kvault" in rs else {"kvault": {}, "llama-server": {}}
        for tokens in rs["kvault"]:  # rows from before rows were dated: the suite's date and machine
            rs.setdefault("dates", {}).setdefault(tokens, r.get("suite_dates", {}).get("resume"))
            rs.setdefault("machines", {}).setdefault(tokens, r.get("suite_machines", {}).get("resume"))
        r["resume"] = rs
        raw, earlier = rs.setdefault("raw", {}), {}
        this_machine = machine_desc(r["machine"])
        def rep_done(tokens, k, l):
            if tokens not in earlier:  # the samples this run adds to (none unless accumulating)
                old = raw.get(tokens)
                earlier[tokens] = old if (args.resume_accumulate and old and rs["machines"].get(tokens) == this_machine
                                          and old.get("kvault")) else {"kvault": {}, "llama-server": {}, "dates": []}
            e = earlier[tokens]
            both = {"kvault": {p: e["kvault"].get(p, []) + v for p, v in k.items()},
                    "llama-server": {p: e["llama-server"].get(p, []) + v for p, v in (l or {}).items()},
                    "dates": e["dates"] + [r["machine"]["date"]]}
            raw[tokens] = both
            rs["kvault"][tokens] = {p: stats(v) for p, v in both["kvault"].items() if v}
            if l:
                rs.setdefault("llama-server", {})[tokens] = {p: stats(v) for p, v in both["llama-server"].items() if v}
            rs.setdefault("dates", {})[tokens] = ", ".join(dict.fromkeys(both["dates"]))
            rs.setdefault("machines", {})[tokens] = this_machine
            checkpoint("resume")
        resume(kv_argv, ls_argv, contexts, reps if args.resume_reps is None else args.resume_reps, rep_done)
        rs["disk"] = disk_bandwidth(CACHE, 16 if smoke else 256)
    checkpoint("resume")
    if "swap" in suites:
        log("suite: model swap")
        r["swap"] = swap(args.kvault, model, ensure_model(args.kvault, size, 43), tools, args.threads,
                         200 if smoke else 4000, reps)
    checkpoint("swap")
    if "index" in suites:
        log("suite: index rebuild")
        r["index"] = index_scan(args.kvault, 1000 if smoke else 100000, reps)
    checkpoint("index")
    if "blockio" in suites:
        log("suite: block save/load")
        r["blockio"] = block_io(args.kvault, model, args.threads, 512 if smoke else 4096)
        r["blockio"]["disk"] = disk_bandwidth(CACHE, 16 if smoke else 256)
    checkpoint("blockio")
    if "roundrobin" in suites:
        log(f"suite: round robin, agents {rr_agents}")
        rr = r.get("roundrobin") if not smoke else None
        rr = rr if rr and "runs" in rr else {"runs": {}}
        kv_flags = ["--pool-tokens", str(rr_pool), "--resident-seqs", str(rr_slots), "--parallel", str(rr_slots),
                    "--ctx-size", str(rr_ctx), "--ram-cache", str(args.rr_ram_mib)]
        ls_flags = ["-c", str(rr_pool), "-np", str(rr_slots), "-kvu", "--cache-ram", str(args.rr_ram_mib),
                    "--cache-reuse", "256"]
        for n in rr_agents:
            config = {"system_words": rr_system, "context": list(rr_context), "turns": args.rr_turns,
                      "gen_tokens": rr_gen, "reps": args.rr_reps, "kvault_flags": " ".join(kv_flags),
                      "llama_server_flags": " ".join(ls_flags), "date": r["machine"]["date"],
                      "machine": machine_desc(r["machine"])}
            run = {"config": config}
            kv_argv = [args.kvault, "serve", "--model", model, "--threads", str(args.threads), "--log-level", "warn",
                       *kv_flags]
            run["kvault"] = roundrobin(kv_argv, "kvault-rr", n, args.rr_turns, rr_system, rr_context, rr_gen,
                                       args.rr_reps, True)
            if tools:
                ls_argv = [os.path.join(tools, "llama-server"), "-m", model, "-t", str(args.threads),
                           "--host", "127.0.0.1", *ls_flags]
                run["llama-server"] = roundrobin(ls_argv, "llama-server", n, args.rr_turns, rr_system, rr_context,
                                                 rr_gen, args.rr_reps, False)
            rr["runs"][str(n)] = run
        r["roundrobin"] = rr
    checkpoint("roundrobin")
    if "memory" in suites:
        log(f"suite: memory with {mem_agents} agents stored")
        kv_flags = ["--pool-tokens", "8192", "--resident-seqs", "8", "--ctx-size", "4096", "--ram-cache", str(mem_ram)]
        ls_flags = ["-c", "8192", "-np", "8", "-kvu", "--cache-ram", str(mem_ram)]
        mem = {"config": {"words": mem_words, "steps": mem_agents, "kvault_flags": " ".join(kv_flags),
                          "llama_server_flags": " ".join(ls_flags)}}
        mem["kvault"] = memory([args.kvault, "serve", "--model", model, "--threads", str(args.threads),
                                "--log-level", "warn", *kv_flags], "kvault-mem", mem_agents, mem_words, True)
        if tools:
            mem["llama-server"] = memory([os.path.join(tools, "llama-server"), "-m", model, "-t", str(args.threads),
                                          "--host", "127.0.0.1", *ls_flags], "llama-server", mem_agents, mem_words,
                                         False)
        r["memory"] = mem
    checkpoint("memory")
    if "persist" in suites:
        log(f"suite: persistence on / off, agents {persist_agents}")
        r["persist"] = persist(args.kvault, model, args.threads, persist_agents, reps, prompt_words, gen_tokens,
                               2 if smoke else 3)

    checkpoint("persist")
    # plots: a full run may install matplotlib; a smoke run draws them only if it is there already
    write_outputs(r, out_json, out_md, suites, not args.no_plots, not smoke)
    if smoke:  # the smoke run checks that the driver produced every section it should
        for key in suites:
            assert key in r, key
        if "blockio" in suites:
            assert all(row["logits_identical"] for row in r["blockio"]["sizes"]), r["blockio"]
        if "decode" in suites:
            assert all(v["median"] > 0 for v in r["decode"]["kvault"].values()), r["decode"]
        if "ttft" in suites:
            assert r["ttft"]["kvault"]["during_prefill_s"]["median"] > 0
        if "roundrobin" in suites:
            for n in rr_agents:
                k = r["roundrobin"]["runs"][str(n)]["kvault"]
                assert len(k["requests"]) == n * args.rr_turns * args.rr_reps, k["requests"]
                assert all(q["ttft_s"] > 0 and q["prompt_tokens"] > 0 for q in k["requests"]), k["requests"]
                assert k["warm_cached_fraction"] > 0.5, k["warm_cached_fraction"]  # next turns reuse their KV
        if "memory" in suites:
            rows = r["memory"]["kvault"]
            assert [row["agents"] for row in rows] == [0] + mem_agents, rows
            assert all(row["VmRSS"] > 0 for row in rows), rows
            assert rows[-1]["store"]["disk_bytes"] > 0, rows[-1]  # the agents' blocks reached disk
        if "persist" in suites:
            p = r["persist"]
            assert all(v["on"]["median"] > 0 and v["off"]["median"] > 0 for v in p["agents"].values()), p
            assert p["store_on"]["disk_bytes_written"] > 0, p["store_on"]  # "on" did write to disk
        with open(out_md) as f:
            md = f.read()
        for key, title in (("roundrobin", "## Many agents taking turns"), ("memory", "## Memory with many stored"),
                           ("persist", "## Persistence cost")):
            assert key not in suites or title in md, title
        print("bench-smoke: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
