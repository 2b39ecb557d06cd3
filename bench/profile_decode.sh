#!/usr/bin/env bash
# Where a single stream's time goes inside kvault: perf samples every thread of a kvault server
# while one client streams a 128-token answer, and prints the share of the samples spent in
# llama.cpp/ggml compute, in sampling, in kvault's own code and the HTTP layer, and in the kernel.
# Needs `perf` (Debian: linux-perf) and the bench model (make bench makes it).
#   bench/profile_decode.sh [kvault binary] [model]   -> bench/results/profile-decode.txt
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KVAULT="${1:-$ROOT/build/bin/kvault}"
MODEL="${2:-${KVAULT_DEPS_DIR:-$HOME/.cache/kvault}/models/demo-bench-42.gguf}"
OUT="$ROOT/bench/results/profile-decode.txt"
command -v perf >/dev/null || { echo "profile_decode: perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
work=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$KVAULT" serve --model "$MODEL" --threads "$(nproc)" --parallel 1 --resident-seqs 2 --pool-tokens 16384 \
  --ctx-size 4096 --log-level warn --port "$port" --cache-dir "$work/cache" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "localhost:$port/health" >/dev/null && break; sleep 0.2; done
curl -sf "localhost:$port/health" >/dev/null || { echo "profile_decode: the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
stream() {
  python3 - "$port" "$1" <<'EOF'
import sys, time
import json, urllib.request
port, seed = int(sys.argv[1]), int(sys.argv[2])
words = "time person year way day thing man world life hand part child eye woman place work".split()
body = {"messages": [{"role": "user", "content": " ".join(words[(seed + i * 7) % len(words)] for i in range(100))}],
        "max_tokens": 128, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
t0, n = time.perf_counter(), 0
with urllib.request.urlopen(req) as r:
    for line in r:
        if line.startswith(b"data:") and b"usage" in line and b'"completion_tokens"' in line:
            n = json.loads(line[5:])["usage"]["completion_tokens"]
print(f"{n} tokens in {time.perf_counter() - t0:.2f} s")
EOF
}
stream 1 >/dev/null  # warm-up
perf record -F 999 -g -p "$pid" -o "$work/perf.data" -- sleep 600 >/dev/null 2>&1 &
perf_pid=$!
sleep 1
run=$(stream 2)
kill -INT $perf_pid; wait $perf_pid 2>/dev/null || true
perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null >"$work/report.txt"
python3 - "$work/report.txt" "$run" >"$OUT" <<'EOF'
import re, sys
groups = {"llama.cpp / ggml compute": 0.0, "sampling": 0.0, "kvault, HTTP, JSON, libc": 0.0, "kernel": 0.0}
top = []
for line in open(sys.argv[1]):
    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    top.append(f"{pct:5.2f}%  {dso:12.12s} {sym[:90]}")
    if kind == "k":
        groups["kernel"] += pct
    elif "sampler" in sym:
        groups["sampling"] += pct
    elif (sym.startswith(("ggml", "llama", "(anonymous namespace)::tinygemm", "__expf", "__powf", "gomp_"))
          or "ggml" in sym or dso.startswith("libgomp")):  # OpenMP: ggml's worker threads
        groups["llama.cpp / ggml compute"] += pct
    else:
        groups["kvault, HTTP, JSON, libc"] += pct
print(f"single stream, {sys.argv[2]}; on-CPU perf samples of every kvault thread (waits are not seen):")
for k, v in groups.items():
    print(f"  {k:28s} {v:5.1f}%")
print("top symbols:")
for line in top[:25]:
    print("  " + line)
EOF
cat "$OUT"
