"""persist: kvault's decode throughput with persistence on and with --no-persist (1 and 8 agents)
under a sustained load whose requests end at different times."""
import concurrent.futures
import time

from ..client import chat, get_json, wait_store_idle
from ..servers import Server
from ..util import log, rand_text, ratio, stats, text_of


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
    """The row of n agents: medians on and off, their ratio, end to end."""
    on, off = stats(runs["on"][n]), stats(runs["off"][n])
    row = {"on": on, "off": off, "ratio": ratio(on["median"], off["median"]),
           "end_to_end": {"on": stats(e2e["on"][n]), "off": stats(e2e["off"][n])}}
    log(f"persist agents={n}: on {on['median']:.1f} tok/s, off {off['median']:.1f} tok/s, ratio "
        + (f"{row['ratio']:.3f}" if row["ratio"] is not None else "—"))
    return row


def persist(kvault, model, threads, agents, reps, prompt_words, gen_tokens, turns=3):
    """kvault decode throughput with persistence (default) and with --no-persist, under a sustained
    load (see kvault_sustained); the two alternate, in swapped order every other rep, so that drift
    of a shared machine hits both alike."""
    modes = (("on", []), ("off", ["--no-persist"]))
    runs = {m: {str(n): [] for n in agents} for m, _ in modes}
    e2e = {m: {str(n): [] for n in agents} for m, _ in modes}
    store = {}
    for rep in range(reps):
        for n in agents:
            for mode, extra in (modes if rep % 2 == 0 else modes[::-1]):  # neither always runs first
                rate, end_to_end, health = kvault_sustained(kvault, model, threads, n, prompt_words, gen_tokens,
                                                            turns, extra, rep)
                runs[mode][str(n)].append(rate)
                e2e[mode][str(n)].append(end_to_end)
                ks = health.get("kv_store", {})
                if mode == "on":  # what persistence did during the last "on" run
                    store = {"agents": n, "blocks_saved": health.get("engine", {}).get("blocks_saved", 0),
                             "disk_bytes_written": ks.get("bytes_written", 0), "disk_blocks": ks.get("disk_blocks", 0)}
                else:
                    assert not ks.get("persistent", True), ks
                log(f"persist {mode} agents={n} rep={rep}: {rate:.1f} tok/s decode, {end_to_end:.1f} tok/s end to end")
    res = {n: summarize(runs, e2e, n) for n in map(str, agents)}
    return {"turns": turns, "agents": res, "store_on": store}


def run(ctx):
    log(f"suite: persistence on / off, agents {ctx.persist_agents}")
    ctx.r["persist"] = persist(ctx.kvault, ctx.model, ctx.args.threads, ctx.persist_agents, ctx.reps,
                               ctx.prompt_words, ctx.gen_tokens, 2 if ctx.smoke else 3)
