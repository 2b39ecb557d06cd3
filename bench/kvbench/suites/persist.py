"""persist: kvault's decode throughput with persistence on, with --no-persist, and with persistence
on plus a remote tier (--remote-cache, a redis-server on loopback: every block also written to
Redis) (1 and 8 agents) under a sustained load whose requests end at different times."""
import concurrent.futures
import time

from ..client import chat, get_json, wait_store_idle
from ..servers import Server
from ..util import log, rand_text, ratio, stats, text_of
from .fleet import Redis


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


def summarize(runs, e2e, n):
    """The row of n agents: medians on, off and with the remote tier; on / off and remote / on (the
    remote tier's own cost, beside the disk tier's), end to end."""
    on, off = stats(runs["on"][n]), stats(runs["off"][n])
    row = {"on": on, "off": off, "ratio": ratio(on["median"], off["median"]),
           "end_to_end": {m: stats(e2e[m][n]) for m in e2e if e2e[m][n]}}
    if runs.get("remote", {}).get(n):
        row["remote"] = stats(runs["remote"][n])
        row["remote_ratio"] = ratio(row["remote"]["median"], on["median"])
    log(f"persist agents={n}: on {on['median']:.1f} tok/s, off {off['median']:.1f} tok/s, ratio "
        + (f"{row['ratio']:.3f}" if row["ratio"] is not None else "—")
        + (f"; remote {row['remote']['median']:.1f} tok/s, remote / on {row['remote_ratio']:.3f}"
           if row.get("remote_ratio") is not None else ""))
    return row


def persist(kvault, model, threads, agents, reps, prompt_words, gen_tokens, turns=3):
    """kvault decode throughput with persistence (default), with --no-persist and with persistence
    plus a remote tier (a fresh redis-server per run), under a sustained load (see
    kvault_sustained); the three take turns, in a rotated order every rep, so that drift of a shared
    machine hits all alike."""
    modes = (("on", []), ("off", ["--no-persist"]), ("remote", None))
    runs = {m: {str(n): [] for n in agents} for m, _ in modes}
    e2e = {m: {str(n): [] for n in agents} for m, _ in modes}
    store, remote_store = {}, {}
    for rep in range(reps):
        for n in agents:
            for mode, extra in modes[rep % 3:] + modes[:rep % 3]:  # none always runs first
                redis = Redis(1024) if mode == "remote" else None
                try:
                    rate, end_to_end, health = kvault_sustained(
                        kvault, model, threads, n, prompt_words, gen_tokens, turns,
                        ["--remote-cache", redis.url] if redis else extra, rep)
                finally:
                    if redis:
                        redis.stop()
                runs[mode][str(n)].append(rate)
                e2e[mode][str(n)].append(end_to_end)
                ks = health.get("kv_store", {})
                if mode == "on":  # what persistence did during the last "on" run
                    store = {"agents": n, "blocks_saved": health.get("engine", {}).get("blocks_saved", 0),
                             "disk_bytes_written": ks.get("bytes_written", 0), "disk_blocks": ks.get("disk_blocks", 0)}
                elif mode == "remote":  # the remote tier did write: else the row measures nothing
                    rt = ks.get("remote") or {}
                    assert rt.get("state") == "up" and rt.get("writes", 0) > 0, rt
                    remote_store = {"agents": n, "writes": rt["writes"],
                                    "bytes_written": rt.get("bytes_written", 0)}
                else:
                    assert not ks.get("persistent", True), ks
                log(f"persist {mode} agents={n} rep={rep}: {rate:.1f} tok/s decode, {end_to_end:.1f} tok/s end to end")
    res = {n: summarize(runs, e2e, n) for n in map(str, agents)}
    return {"turns": turns, "agents": res, "store_on": store, "store_remote": remote_store}


def run(ctx):
    log(f"suite: persistence on / off, agents {ctx.persist_agents}")
    ctx.r["persist"] = persist(ctx.kvault, ctx.model, ctx.args.threads, ctx.persist_agents, ctx.reps,
                               ctx.prompt_words, ctx.gen_tokens, 2 if ctx.smoke else 3)
