#!/usr/bin/env python3
"""Every metric the Grafana dashboard (deploy/grafana/kvault.json) queries is one kvault emits.

Starts a real redis-server and the real kvault binary with --remote-cache (so that the remote
tier's series exist), sends one chat request (so that the per-API histograms have series), reads
GET /metrics, and checks each kvault_* name in the dashboard's PromQL (panel targets and template
queries): a metric family /metrics declares (# TYPE), or a histogram family's _bucket, _sum or
_count series. It checks its own checker first: a misspelled name and a suffix on a counter must
be reported.

  grafana_metrics_test.py --kvault build/bin/kvault --model tiny.gguf \
      --dashboard deploy/grafana/kvault.json --tmp build/test-tmp/grafana

Standard library only.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

NAME = re.compile(r"\bkvault_[A-Za-z0-9_:]*")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expressions(dashboard):
    """Every PromQL string in the dashboard: panel targets (nested rows too) and template queries."""
    out = []

    def walk_panels(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk_panels(p.get("panels", []))

    walk_panels(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if isinstance(q, str) and v.get("type") == "query":
            out.append((f"variable {v.get('name')}", q))
    return out


def families(metrics_text):
    """{family name: type} from the exposition's # TYPE lines."""
    out = {}
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            out[name] = kind.strip()
    return out


def unknown_names(exprs, fams):
    """(where, name) for each kvault_* name in `exprs` that /metrics does not emit."""
    bad = []
    for where, expr in exprs:
        for name in NAME.findall(expr):
            kind = fams.get(name)
            if kind is not None and kind != "histogram":
                continue  # a counter or gauge, by its own name
            base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
            if base is not None and fams.get(base) == "histogram":
                continue  # a histogram's series
            bad.append((where, name))
    return bad


def self_test():
    fams = {"kvault_a_total": "counter", "kvault_h_seconds": "histogram", "kvault_g": "gauge"}
    good = [("p", 'rate(kvault_a_total[5m]) + kvault_g + rate(kvault_h_seconds_bucket{le="1"}[1m])'),
            ("p", "kvault_h_seconds_sum / kvault_h_seconds_count")]
    assert unknown_names(good, fams) == [], unknown_names(good, fams)
    for wrong in ["kvault_a_totl", "kvault_a_total_bucket", "kvault_h_seconds", "kvault_h_second_bucket", "kvault_gg"]:
        found = unknown_names([("p", f"sum(rate({wrong}[5m]))")], fams)
        assert found == [("p", wrong)], f"the checker missed {wrong}: {found}"


def wait_http(url, timeout, proc):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kvault", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()

    self_test()
    with open(args.dashboard) as f:
        dashboard = json.load(f)
    exprs = expressions(dashboard)
    names = {n for _, e in exprs for n in NAME.findall(e)}
    assert len(names) >= 20, f"the dashboard names only {len(names)} kvault metrics: {sorted(names)}"
    assert any("by (instance" in e for _, e in exprs), "no per-instance panel (by instance)"

    redis = shutil.which("redis-server")
    if not redis:
        sys.exit("redis-server not found: make deps installs it")
    os.makedirs(args.tmp, exist_ok=True)
    work = tempfile.mkdtemp(prefix="grafana-", dir=args.tmp)
    redis_port, port = free_port(), free_port()
    log = open(os.path.join(work, "server.log"), "w")
    procs = []
    try:
        procs.append(subprocess.Popen([redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", work], stdout=log, stderr=log))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVAULT_")}
        server = subprocess.Popen([args.kvault, "serve", "--model", args.model, "--port", str(port),
                                   "--data-dir", os.path.join(work, "data"),
                                   "--remote-cache", f"redis://127.0.0.1:{redis_port}"],
                                  stdout=log, stderr=log, env=env)
        procs.append(server)
        origin = f"http://127.0.0.1:{port}"
        wait_http(origin + "/health", 60, server)
        body = json.dumps({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}).encode()
        req = urllib.request.Request(origin + "/v1/chat/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
        with urllib.request.urlopen(origin + "/metrics", timeout=10) as r:
            text = r.read().decode()
        fams = families(text)
        assert fams.get("kvault_kv_remote_up") == "gauge", "the remote tier's metrics are missing"
        bad = unknown_names(exprs, fams)
        if bad:
            for where, name in bad:
                print(f"FAIL: panel '{where}' queries {name}, which /metrics does not emit", file=sys.stderr)
            sys.exit(1)
        print(f"ok: {len(names)} metric names in {len(exprs)} expressions, all emitted by /metrics")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
        log.close()


if __name__ == "__main__":
    main()
