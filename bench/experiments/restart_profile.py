#!/usr/bin/env python3
"""Experiment (issue 4): where a resumed turn spends its time — resident, then after a restart (from disk) —
with the server's own timings (queue_ms = waiting for the I/O thread's block reads), cache counts and /health
counters. Usage: bench/experiments/restart_profile.py [WORDS] [drop]   (drop: drop the page cache before the
restart; needs root). PERF=1 also records `perf record -g` of the restarted server into ./perf.data.
"""
import os, sys, time, subprocess, shutil, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvbench.client import chat, get_json
from kvbench.servers import Server
from kvbench.util import text_of
from kvbench.machine import transcript_header
transcript_header(__file__, sys.argv[1:])
words = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
model = os.path.expanduser("~/.cache/kvault/models/demo-bench-42.gguf")
kv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin", "kvault")
cache = tempfile.mkdtemp(prefix="rp-cache-")
argv = [kv, "serve", "--model", model, "--threads", "2", "--parallel", "1", "--resident-seqs", "1", "--pool-tokens", "16384",
        "--ctx-size", "12288", "--log-level", "info", "--cache-dir", cache]
base = "agent: " + text_of(words, 3000)
turns, msgs = [], [{"role": "user", "content": base}]
for t in range(4):
    turns.append(list(msgs))
    msgs += [{"role": "assistant", "content": f"answer {t}"}, {"role": "user", "content": f"question {t + 1}"}]
def show(tag, r, t):
    print(f"{tag}: wall {t:.3f}s timings {r.get('timings')} cache {r.get('cache')}", flush=True)
srv = Server(argv, "kvault-rp")
r, t = chat(srv.port, turns[0], 1); show("cold", r, t)
r, t = chat(srv.port, turns[1], 1); show("resident", r, t)
r, t = chat(srv.port, turns[1], 1); show("resident-same", r, t)
h = get_json(srv.port, "/health"); print("engine", {k: v for k, v in h["engine"].items() if "restore" in k or "save" in k})
srv.stop()
if len(sys.argv) > 2 and sys.argv[2] == "drop":
    subprocess.run(["sync"]); open("/proc/sys/vm/drop_caches", "w").write("3\n")
srv = Server(argv, "kvault-rp")
perf = None
if os.environ.get("PERF"):
    perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", "perf.data", "-p", str(srv.proc.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
r, t = chat(srv.port, turns[3], 1); show("restart", r, t)
if perf:
    perf.send_signal(2); perf.wait()
h = get_json(srv.port, "/health"); print("engine", {k: v for k, v in h["engine"].items() if "restore" in k or "save" in k})
print("kv_store", {k: v for k, v in h["kv_store"].items() if k not in ("persistence",)})
srv.stop()
print("log", srv.log.name)
shutil.rmtree(cache, ignore_errors=True)
