#!/usr/bin/env python3
"""Experiment (issue 3): the round-robin workload of `make bench` (bench model, shared system prompt,
2000-4000-token agents, pool of 4) on kvault alone, once per --idle-tokens value, to choose its default.
Prints first-turn and next-turn TTFT p50/p95 and the run's wall time per value.
Usage: bench/experiments/idle_limit_rr.py [AGENTS] [IDLE_TOKENS ...]   (default: 8 agents; -1 0 4096)
"""
import os
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvbench.suites.roundrobin import roundrobin
from kvbench.machine import transcript_header
transcript_header(__file__, sys.argv[1:])
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
model = os.path.expanduser("~/.cache/kvault/models/demo-bench-42.gguf")
kv = os.path.join(root, "build", "bin", "kvault")
agents = int(sys.argv[1]) if len(sys.argv) > 1 else 8
for idle in sys.argv[2:] or ("-1", "0", "4096"):
    argv = [kv, "serve", "--model", model, "--threads", "2", "--log-level", "warn", "--pool-tokens", "16384",
            "--resident-seqs", "4", "--parallel", "4", "--ctx-size", "4608", "--ram-cache", "1024", "--idle-tokens", idle]
    r = roundrobin(argv, f"kvault-idle{idle}", agents, 3, 1000, (2000, 4000), 16, 1, True)
    print(f"--idle-tokens {idle}: agents {agents} first turn p50 {r['cold_ttft_s']['p50']:.2f} p95 {r['cold_ttft_s']['p95']:.2f}"
          f" | next turns p50 {r['warm_ttft_s']['p50']:.2f} p95 {r['warm_ttft_s']['p95']:.2f}"
          f" | reused {r['warm_cached_fraction']:.0%} | total {r['total_s']['median']:.1f} s", flush=True)
