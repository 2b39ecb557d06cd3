#!/usr/bin/env bash
# Benchmark driver. Not written yet: it belongs to the benchmarks issue (kvault vs llama-server,
# same model and threads, ratios as the headline). Failing loudly beats printing numbers that no
# benchmark produced.
echo "make bench: no benchmarks yet (see the benchmarks issue); nothing was measured." >&2
exit 1
