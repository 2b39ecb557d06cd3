#!/usr/bin/env python3
"""Experiment (issue 3): decode throughput at 8 agents when finished conversations stay resident in the pool.

Runs kvault on the bench model with --resident-seqs 8 (= --parallel: no idle sequences accumulate) and 32
(each rep leaves 8 more idle conversations in the pool), 4 reps of 8 agents x 128 tokens each, and prints decode
tok/s per rep with the pool blocks in use. Usage: bench/experiments/idle_residents.py [RESIDENT[:IDLE_TOKENS[:PARALLEL]] ...]
(IDLE_TOKENS: kvault's --idle-tokens, default -1, no limit; PARALLEL: --parallel, default 8).
"""
import concurrent.futures
import os
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvbench.client import chat, get_json
from kvbench.servers import Server
from kvbench.util import text_of
from kvbench.machine import transcript_header
transcript_header(__file__, sys.argv[1:])
model = os.path.expanduser("~/.cache/kvault/models/demo-bench-42.gguf")
kv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin", "kvault")
for arg in sys.argv[1:] or ("8", "32"):
    resident, _, rest = arg.partition(":")
    idle, _, parallel = rest.partition(":")
    idle, parallel = idle or "-1", parallel or "8"
    srv = Server([kv, "serve", "--model", model, "--threads", "2", "--parallel", parallel, "--resident-seqs", resident, "--idle-tokens", idle,
                        "--pool-tokens", "16384", "--ctx-size", "8192", "--log-level", "warn", "--no-persist"], "kvault")
    try:
        chat(srv.port, "warm up " + text_of(20, 999), 8)
        rates = []
        for rep in range(4):
            before = get_json(srv.port, "/health")["engine"]
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                futs = [ex.submit(chat, srv.port, f"agent {rep}-{i}: " + text_of(100, rep * 100 + i), 128) for i in range(8)]
                [f.result() for f in futs]
            after = get_json(srv.port, "/health")
            e = after["engine"]
            r = (e["decode_only_tokens"] - before["decode_only_tokens"]) / (e["decode_only_seconds"] - before["decode_only_seconds"]); avg = (e["decode_only_tokens"] - before["decode_only_tokens"]) / max(1, e["decode_only_steps"] - before["decode_only_steps"])
            rates.append(r)
            print(f"resident-seqs {resident} idle-tokens {idle} parallel {parallel} rep {rep}: {r:.1f} tok/s, avg decode batch {avg:.2f}, evictions {after['pool']['evictions']}, pool blocks used {after['pool']['blocks_used']}, idle {after['pool']['idle_sequences']}", flush=True)
    finally:
        srv.stop()
