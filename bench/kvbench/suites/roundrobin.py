"""roundrobin: many agents (8, 32; 128 with --long) with a shared system prompt and 2K-4K tokens of
context each take turns, one request at a time, more agents than the pool holds: streamed time to
first token per turn (cold first turn apart), kvault vs llama-server with its prompt cache
(--cache-ram, --cache-reuse)."""
import os
import random
import statistics
import time

from ..client import chat, chat_stream
from ..machine import machine_desc
from ..servers import Server
from ..util import cached_share, dist, log, percentile, rand_text, stats, text_of


def rr_agents_prompts(n_agents, system_words, ctx_range):
    """Each agent's first turn: the shared system prompt, then its own notes so that the whole is
    ctx_range[0]..ctx_range[1] words (~tokens on the demo models), spread evenly over the agents."""
    system = "You are one of many agents working on a shared project. " + rand_text(system_words, 1)
    lo, hi = ctx_range
    order = list(range(n_agents))
    random.Random(7).shuffle(order)  # lengths spread evenly, neighbours in turn order differ
    out = []
    for a in range(n_agents):
        total = lo + (hi - lo) * order[a] // max(1, n_agents - 1)
        own = max(10, total - system_words)
        out.append([{"role": "system", "content": system},
                    {"role": "user", "content": f"Agent {a} here. My notes so far: " + rand_text(own, 10000 + a)}])
    return out


def rr_short(label):
    """The configuration name (bench/peers.py's RR_CONFIGS) of a row of its round-robin tables,
    which are stored under their labels."""
    if label.startswith("kvault"):
        return "kvault-no-persist" if "--no-persist" in label else "kvault"
    if "slot save" in label:
        return "llama-server-slots"
    return "llama-server" if "defaults" in label else "llama-server-budget"


def one_run(srv, rep, convs, turns, gen_tokens, agent_ids, requests, name):
    """Every agent's turns in round-robin order on a started server; appends to requests."""
    n_agents = len(convs)
    for turn in range(turns):
        for a in range(n_agents):
            headers = {"X-Agent-Id": f"rr-{a}"} if agent_ids else None
            res = chat_stream(srv.port, convs[a], gen_tokens, headers)
            requests.append({"rep": rep, "turn": turn, "agent": a, "ttft_s": res["ttft_s"],
                             "total_s": res["total_s"], "prompt_tokens": res["prompt_tokens"],
                             "cached_tokens": res["cached_tokens"]})
            convs[a] = convs[a] + [
                {"role": "assistant", "content": res["text"]},
                {"role": "user", "content": f"Turn {turn + 1}, agent {a}: " + rand_text(12, 50000 + a * 100 + turn)}]
        warm = [q["ttft_s"] for q in requests if q["rep"] == rep and q["turn"] == turn]
        log(f"{name} roundrobin agents={n_agents} rep={rep} turn={turn}: TTFT p50 "
            f"{percentile(warm, 50):.2f}s p95 {percentile(warm, 95):.2f}s")


def summary(requests, totals, reps):
    """The distributions the results keep, next to every request."""
    cold = [q for q in requests if q["turn"] == 0]
    warm = [q for q in requests if q["turn"] > 0]
    def p50_per_run(qs):  # each run's own p50: their spread says how repeatable the run is
        per = [percentile([q["ttft_s"] for q in qs if q["rep"] == rep], 50) for rep in range(reps)
               if any(q["rep"] == rep for q in qs)]
        return stats(per) if per else None
    return {"total_s": stats(totals), "cold_ttft_s": dist([q["ttft_s"] for q in cold]),
            "warm_ttft_s": dist([q["ttft_s"] for q in warm]),
            "cold_p50_runs": p50_per_run(cold), "warm_p50_runs": p50_per_run(warm),
            "warm_cached_fraction": cached_share(warm),
            "mean_prompt_tokens": statistics.fmean(q["prompt_tokens"] for q in requests),
            "requests": requests}


def roundrobin(argv, name, n_agents, turns, system_words, ctx_range, gen_tokens, reps, agent_ids):
    """Agents take turns in round-robin order, one request at a time: turn 0 of every agent (cold),
    then turn 1 of every agent, ... Each turn appends the previous answer and a short new user
    message. Streamed TTFT of every request, and the whole run's wall time."""
    requests, totals = [], []
    for rep in range(reps):
        convs = rr_agents_prompts(n_agents, system_words, ctx_range)
        srv = Server(argv, name)
        try:
            chat(srv.port, "warm up " + text_of(20, 999), 4)
            t0 = time.perf_counter()
            one_run(srv, rep, convs, turns, gen_tokens, agent_ids, requests, name)
            totals.append(time.perf_counter() - t0)
        finally:
            srv.stop()
    return summary(requests, totals, reps)


def run(ctx):
    log(f"suite: round robin, agents {ctx.rr_agents}")
    args, threads = ctx.args, str(ctx.args.threads)
    rr = ctx.r.get("roundrobin") if not ctx.smoke else None
    rr = rr or {"runs": {}}
    kv_flags = ["--pool-tokens", str(ctx.rr_pool), "--resident-seqs", str(ctx.rr_slots), "--parallel",
                str(ctx.rr_slots), "--ctx-size", str(ctx.rr_ctx), "--ram-cache", str(args.rr_ram_mib)]
    ls_flags = ["-c", str(ctx.rr_pool), "-np", str(ctx.rr_slots), "-kvu", "--cache-ram", str(args.rr_ram_mib),
                "--cache-reuse", "256"]
    common = (args.rr_turns, ctx.rr_system, ctx.rr_context, ctx.rr_gen, args.rr_reps)
    for n in ctx.rr_agents:
        config = {"system_words": ctx.rr_system, "context": list(ctx.rr_context), "turns": args.rr_turns,
                  "gen_tokens": ctx.rr_gen, "reps": args.rr_reps, "kvault_flags": " ".join(kv_flags),
                  "llama_server_flags": " ".join(ls_flags), "date": ctx.r["machine"]["date"],
                  "machine": machine_desc(ctx.r["machine"])}
        one = {"config": config}
        kv_argv = [ctx.kvault, "serve", "--model", ctx.model, "--threads", threads, "--log-level", "warn", *kv_flags]
        one["kvault"] = roundrobin(kv_argv, "kvault-rr", n, *common, True)
        if ctx.tools:
            ls_argv = [os.path.join(ctx.tools, "llama-server"), "-m", ctx.model, "-t", threads,
                       "--host", "127.0.0.1", *ls_flags]
            one["llama-server"] = roundrobin(ls_argv, "llama-server", n, *common, False)
        rr["runs"][str(n)] = one
    ctx.r["roundrobin"] = rr
