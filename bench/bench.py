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
           cold, resident, after a restart, and after a restart with the client's slot file
           restored (--slot-save-path), same prompts. --long adds 16K and 32K (a 32K
           repetition is ~1 h on 2 cores: `--resume-words 32000 --resume-reps 1
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
  fleet    two servers behind the deployed nginx, 32 agents of ~3K tokens taking turns; one server
           killed, a third added, the survivor restarted: next-turn TTFT of the agents that moved,
           kvault instances sharing one Redis vs llama-servers; Redis and disk load rates
  persist  decode throughput with persistence on, with --no-persist, and with persistence plus a
           remote tier (redis-server on loopback) (1 and 8 agents)

  --plots-only  regenerates the PNG plots (docs/img/) and docs/benchmarks.md from an existing
                results JSON without running anything

The drivers use only the Python standard library. The PNG plots need matplotlib (Debian:
python3-matplotlib), imported only when plots are made; a full run as root installs it with
apt-get, otherwise plots are skipped with a note. Numbers are medians of >= 3 repetitions after a
warm-up, with min and max; ratios kvault / llama.cpp are the headline because absolute times on
shared machines drift.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvbench.cli import main  # noqa: E402  (the drivers: bench/kvbench/)

if __name__ == "__main__":
    main(__doc__)
