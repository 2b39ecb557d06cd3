"""fleet: two servers behind one nginx (deploy/nginx/kvault.conf, rendered by scripts/fleet.sh:
agents hashed consistently on X-Agent-Id), N agents taking turns; then one server is killed and
the agents it served move to the other: their next turn's time to first token, against the turn
before it on their own server. kvault's instances share one Redis (--remote-cache); llama-server's
have nothing to share (their moved agents recompute). Then a third server joins and the agents
the hash ring gives it move again. Last, the live server holding more agents restarts (gracefully,
same port and cache directory): its agents' next turn comes from its disk (kvault) or is recomputed.
Repetitions alternate kvault and llama-server."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from ..client import chat_stream, get_json
from ..machine import machine_desc
from ..servers import Server, free_port
from ..util import ROOT, cached_share, dist, log, percentile, rand_text, stats
from .roundrobin import rr_agents_prompts


class Redis:
    """redis-server on a free loopback port, run as an LRU cache, no persistence."""

    def __init__(self, maxmemory_mib):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="kvault-bench-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--maxmemory", f"{maxmemory_mib}mb", "--maxmemory-policy", "allkeys-lru",
             "--logfile", os.path.join(self.dir, "redis.log")])
        wait_port(self.port, self.proc, "redis-server")
        self.url = f"redis://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx:
    """nginx on a free loopback port with the deployed configuration (only its upstreams, listen
    address and access log rewritten, by `scripts/fleet.sh nginx-conf`)."""

    def __init__(self, upstream_ports):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="kvault-bench-nginx-")
        self.render(upstream_ports)
        self.proc = subprocess.Popen(["nginx", "-p", self.dir + "/", "-c", os.path.join(self.dir, "nginx.conf"),
                                      "-g", "daemon off;"], stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, "nginx")

    def render(self, upstream_ports):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "fleet.sh"), "nginx-conf", self.dir, str(self.port),
                        *[f"127.0.0.1:{p}" for p in upstream_ports]], check=True, capture_output=True)

    def reload(self, upstream_ports):
        """New upstreams; returns once the new workers serve (the access log is reopened by them)."""
        self.render(upstream_ports)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # nginx starts new workers and lets the old ones finish; no request is in flight here

    def upstream_of(self, agent, n):
        """The upstream that answered the agent's n-th request (1-based), from the access log, which
        nginx writes as it finalises the request (a moment after the client has the answer)."""
        deadline = time.time() + 5
        while True:
            with open(os.path.join(self.dir, "logs", "access.log")) as f:
                lines = [line for line in f if f'agent="{agent}"' in line]
            if len(lines) >= n or time.time() > deadline:
                break
            time.sleep(0.02)
        if len(lines) < n:
            return None
        value = lines[n - 1].split(" upstream=")[1].split(" upstream_status=")[0]
        return value.split(",")[-1].strip()  # "A, B": A failed, B answered

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_port(port, proc, name, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port}")


def turn(nginx, convs, a, t, gen_tokens):
    agent = f"fleet-{a}"
    res = chat_stream(nginx.port, convs[a], gen_tokens, {"X-Agent-Id": agent})
    convs[a] = convs[a] + [{"role": "assistant", "content": res["text"]},
                           {"role": "user", "content": f"Turn {t + 1}, agent {a}: " + rand_text(12, 70000 + a * 100 + t)}]
    return {"agent": a, "turn": t, "upstream": nginx.upstream_of(agent, t + 1), "ttft_s": res["ttft_s"],
            "prompt_tokens": res["prompt_tokens"], "cached_tokens": res["cached_tokens"]}


def fleet_rep(kind, argv_of, ctx, rep):
    """One repetition for one server kind: turns 0 (cold) and 1 (home) on two servers; server 0
    killed (the one with more agents), turn 2 (its agents moved); a third server joins, turn 3 (the
    agents it takes moved); the busier live server restarts, turn 4 (its agents restarted)."""
    c = ctx.fleet
    redis = Redis(c["redis_mib"]) if kind == "kvault" else None
    cache_dirs = [tempfile.mkdtemp(prefix="kvault-bench-fleet-cache-") for _ in range(3)]
    servers = [Server(argv_of(i, redis, cache_dirs[i]), f"{kind}-fleet-{i}") for i in range(2)]
    index = {s.port: i for i, s in enumerate(servers)}  # each server's argv and cache directory
    nginx = Nginx([s.port for s in servers])
    convs = rr_agents_prompts(c["agents"], c["system_words"], c["context"])
    reqs = []
    try:
        for t in range(2):
            reqs += [turn(nginx, convs, a, t, c["gen_tokens"]) | {"phase": "cold" if t == 0 else "home"}
                     for a in range(c["agents"])]
        home = {q["agent"]: q["upstream"] for q in reqs if q["turn"] == 1}
        # The server with more agents dies (the hash ring need not split them evenly).
        victim = max(servers, key=lambda s: sum(1 for u in home.values() if u == f"127.0.0.1:{s.port}"))
        servers.remove(victim)
        servers.insert(0, victim)
        killed = f"127.0.0.1:{victim.port}"
        victim.proc.kill()
        victim.proc.wait()
        for a in range(c["agents"]):
            q = turn(nginx, convs, a, 2, c["gen_tokens"])
            reqs.append(q | {"phase": "moved" if home[a] == killed else "stayed"})
        remote = None
        if redis:  # what the surviving instance read from Redis, and how fast
            h = get_json(servers[1].port, "/health")
            rt = h["kv_store"]["remote"]
            remote = {"bytes_read": rt["bytes_read"], "hits": rt["hits"], "fetch_seconds": rt.get("fetch_seconds")}
        servers.append(Server(argv_of(2, redis, cache_dirs[2]), f"{kind}-fleet-2"))
        index[servers[-1].port] = 2
        before = {q["agent"]: q["upstream"] for q in reqs if q["turn"] == 2}
        nginx.reload([s.port for s in servers[1:]])
        for a in range(c["agents"]):
            q = turn(nginx, convs, a, 3, c["gen_tokens"])
            reqs.append(q | {"phase": "joined" if q["upstream"] != before[a] else "stayed"})
        # The live server holding more agents restarts gracefully on its port with its cache
        # directory (a deploy, a reboot): nginx keeps its agents on it; kvault's come back from its
        # disk (the files may still be in the page cache), llama-server's are recomputed. (The
        # busier one, so that a small run never restarts a server the ring left empty.)
        at_turn3 = {q["agent"]: q["upstream"] for q in reqs if q["turn"] == 3}
        k = max((1, 2), key=lambda j: sum(1 for u in at_turn3.values() if u == f"127.0.0.1:{servers[j].port}"))
        survivor = servers[k]
        i = index[survivor.port]
        survivor.stop()
        servers[k] = Server(argv_of(i, redis, cache_dirs[i]), f"{kind}-fleet-{i}", port=survivor.port)
        restarted = f"127.0.0.1:{survivor.port}"
        for a in range(c["agents"]):
            q = turn(nginx, convs, a, 4, c["gen_tokens"])
            assert q["upstream"] and "," not in q["upstream"], q  # nginx moved no one off the restarted server
            reqs.append(q | {"phase": "restarted" if q["upstream"] == restarted == at_turn3[a] else "stayed"})
        if redis:  # what the restarted instance read from its disk, and how fast
            ks = get_json(servers[k].port, "/health")["kv_store"]
            remote = (remote or {}) | {"disk_bytes_read": ks["bytes_read"],
                                       "disk_fetch_seconds": ks.get("disk_fetch_seconds")}
    finally:
        nginx.stop()
        for s in servers:  # the killed one too
            s.stop()
        if redis:
            redis.stop()
        for d in cache_dirs:
            shutil.rmtree(d, ignore_errors=True)
    for q in reqs:
        q["rep"] = rep
    moved = [q["ttft_s"] for q in reqs if q["phase"] == "moved"]
    log(f"{kind} fleet rep={rep}: home p50 {percentile([q['ttft_s'] for q in reqs if q['phase'] == 'home'], 50):.2f}s, "
        f"moved ({len(moved)}) p50 {percentile(moved, 50) if moved else float('nan'):.2f}s")
    return reqs, remote


def summary(reqs, remotes):
    out = {"requests": reqs}
    for phase in ("cold", "home", "moved", "stayed", "joined", "restarted"):
        qs = [q for q in reqs if q["phase"] == phase]
        out[phase] = dist([q["ttft_s"] for q in qs])
        if qs:
            out[phase]["cached_fraction"] = cached_share(qs)
        per_rep = [percentile([q["ttft_s"] for q in qs if q["rep"] == r], 50)
                   for r in sorted({q["rep"] for q in qs})]
        out[phase + "_p50_reps"] = stats(per_rep) if per_rep else None
    rates = [r["bytes_read"] / r["fetch_seconds"] / 2**20 for r in remotes
             if r and r.get("fetch_seconds") and r["bytes_read"]]
    if rates:
        out["remote_load_mib_s"] = stats(rates)
    rates = [r["disk_bytes_read"] / r["disk_fetch_seconds"] / 2**20 for r in remotes
             if r and r.get("disk_fetch_seconds") and r.get("disk_bytes_read")]
    if rates:
        out["disk_load_mib_s"] = stats(rates)
    return out


def run(ctx):
    args = ctx.args
    smoke = ctx.smoke
    c = ctx.fleet = {
        "agents": args.fleet_agents or (6 if smoke else 32),
        "context": [150, 250] if smoke else [int(x) for x in (args.fleet_context or "2500-3500").split("-")],
        "system_words": 60 if smoke else 500,
        "gen_tokens": 8 if smoke else 16,
        "pool_tokens": 2048 if smoke else 16384,
        "slots": 2 if smoke else 4,
        "ram_mib": 1024,
        "redis_mib": 512 if smoke else 8192,
    }
    ctx_size = 1024 if smoke else 8192
    threads = str(args.threads)
    kv_flags = ["--pool-tokens", str(c["pool_tokens"]), "--resident-seqs", str(c["slots"]), "--parallel",
                str(c["slots"]), "--ctx-size", str(ctx_size), "--ram-cache", str(c["ram_mib"])]
    ls_flags = ["-c", str(c["pool_tokens"]), "-np", str(c["slots"]), "-kvu", "--cache-ram", str(c["ram_mib"])]
    c.update({"kvault_flags": " ".join(kv_flags) + " --remote-cache redis://… (one Redis, allkeys-lru, "
              f"{c['redis_mib']} MiB)", "llama_server_flags": " ".join(ls_flags),
              "date": ctx.r["machine"]["date"], "machine": machine_desc(ctx.r["machine"])})
    log(f"suite: fleet, {c['agents']} agents, 2 servers behind nginx, then one killed, one added, one restarted")

    def kvault_argv(i, redis, cache_dir):
        return [ctx.kvault, "serve", "--model", ctx.model, "--threads", threads, "--log-level", "warn", *kv_flags,
                "--remote-cache", redis.url, "--cache-dir", cache_dir]

    def llama_argv(i, redis, cache_dir):
        return [os.path.join(ctx.tools, "llama-server"), "-m", ctx.model, "-t", threads, "--host", "127.0.0.1",
                *ls_flags]

    kinds = [("kvault", kvault_argv)] + ([("llama-server", llama_argv)] if ctx.tools else [])
    reqs = {k: [] for k, _ in kinds}
    remotes = []
    for rep in range(ctx.reps):  # interleaved: kvault, llama-server, kvault, ...
        for kind, argv_of in kinds:
            got, remote = fleet_rep(kind, argv_of, ctx, rep)
            reqs[kind] += got
            if remote:
                remotes.append(remote)
    ctx.r["fleet"] = {"config": c, **{k: summary(v, remotes if k == "kvault" else []) for k, v in reqs.items()}}
