#!/usr/bin/env python3
"""Experiment (issue 24): where a single stream's time per token goes, kvault beside llama-server.

Same servers and prompts as bench/peers.py's decode suite at 1 agent (bench model, ~110-token prompts,
128 tokens, temperature 0), repetitions interleaved. Per request it splits the client's time per token
after the first one into the server's own share and the rest (HTTP, streaming, the client):
  kvault        llama_decode time per generated token (/health engine.decode_only_seconds / _tokens),
                the rest of the client's time per token is kvault's loop (sampling, detokenising,
                queues, streaming) plus the client
  llama-server  its own timings.predicted_per_token_ms (its whole generation loop, decode included)
Usage: bench/experiments/single_stream_split.py [REPS]   (default 8)
Prints a header naming the machine, one line per request, then the medians, kvault's share outside
llama_decode per request, and the paired whole-request ratios; bench/results/single-stream-split.txt
is its stdout.
"""
import os
import statistics
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvbench.client import chat_stream, get_json  # noqa: E402
from kvbench.machine import transcript_header  # noqa: E402
from kvbench.servers import Server, ensure_model, llama_tools  # noqa: E402
from kvbench.util import ROOT, text_of  # noqa: E402

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 8
kvault = os.path.join(ROOT, "build", "bin", "kvault")
model = ensure_model(kvault, "bench")
threads = str(os.cpu_count())
servers = {
    "kvault": Server([kvault, "serve", "--model", model, "--threads", threads, "--parallel", "1", "--resident-seqs", "2",
                      "--pool-tokens", "16384", "--ctx-size", "4096", "--log-level", "warn"], "kvault"),
    "llama-server": Server([os.path.join(llama_tools(), "llama-server"), "-m", model, "-t", threads, "-c", "16384",
                            "-np", "1", "-kvu", "--host", "127.0.0.1"], "llama-server"),
}
transcript_header(__file__, (reps,), f"bench model, {threads} threads, ")
rows = {name: {"client_ms": [], "server_ms": [], "tok_s": []} for name in servers}
try:
    for name, srv in servers.items():
        chat_stream(srv.port, [{"role": "user", "content": "warm up " + text_of(20, 999)}], 8)
    for rep in range(reps):
        for name in (list(servers) if rep % 2 == 0 else list(reversed(servers))):
            port = servers[name].port
            before = get_json(port, "/health")["engine"] if name == "kvault" else None
            res = chat_stream(port, [{"role": "user", "content": f"agent {rep}-1-0: " + text_of(100, rep * 100 + 20)}],
                              128)
            n = res["completion_tokens"]
            client_ms = 1000 * (res["total_s"] - res["ttft_s"]) / max(1, n - 1)
            if name == "kvault":
                e = get_json(port, "/health")["engine"]
                server_ms = 1000 * (e["decode_only_seconds"] - before["decode_only_seconds"]) / max(
                    1, e["decode_only_tokens"] - before["decode_only_tokens"])
            else:
                server_ms = res["timings"].get("predicted_per_token_ms", float("nan"))
            rows[name]["client_ms"].append(client_ms)
            rows[name]["server_ms"].append(server_ms)
            rows[name]["tok_s"].append(n / res["total_s"])
            print(f"rep {rep} {name}: {n} tokens, {n / res['total_s']:.2f} tok/s whole request; after the first "
                  f"token {client_ms:.2f} ms/token at the client, {server_ms:.2f} ms/token "
                  f"{'in llama_decode' if name == 'kvault' else 'in its generation loop'}", flush=True)
finally:
    for srv in servers.values():
        srv.stop()
for name, v in rows.items():
    c, s = statistics.median(v["client_ms"]), statistics.median(v["server_ms"])
    print(f"{name}: median {statistics.median(v['tok_s']):.2f} tok/s; after the first token {c:.2f} ms/token at the "
          f"client, {s:.2f} in the server's {'llama_decode' if name == 'kvault' else 'generation loop'}, "
          f"{c - s:.2f} elsewhere")
k, ls = rows["kvault"], rows["llama-server"]
share = [100 * (c - s) / c for c, s in zip(k["client_ms"], k["server_ms"])]
print("kvault's time per token outside llama_decode, per request: " + ", ".join(f"{x:.1f} %" for x in share) +
      f"; median {statistics.median(share):.1f} %, {min(share):.1f}-{max(share):.1f} %")
pairs = [a / b for a, b in zip(k["tok_s"], ls["tok_s"])]
print("kvault / llama-server tok/s per pair: " + ", ".join(f"{x:.3f}" for x in pairs) +
      f"; median {statistics.median(pairs):.3f} ({min(pairs):.3f}-{max(pairs):.3f}), "
      f"{sum(x < 1 for x in pairs)} of {len(pairs)} below 1")
