#!/usr/bin/env python3
"""kvault beside llama-server at its best, measured from the client's side.

  make bench-peers   (or: python3 bench/peers.py [--suites decode,ttft,roundrobin])
                     writes bench/results/peers.json (every raw sample) and docs/peers.md

Every comparison runs both servers in the same run, on the same model, threads and prompts, with
the same Python streaming client, repetitions interleaved (kvault, llama-server, llama-server,
kvault, ...) so that drift on a shared machine hits both alike. Reported: medians of the
repetitions with min and max; ratios are the median of the per-repetition ratios. Two ways to add
to stored results, both on the same machine and settings only: `--accumulate` pools a decode
rerun's pairs with the stored ones, and `--rr-configs` runs some of a round-robin table's rows
(interleaved among themselves) and keeps the others, which the table marks as a separate run.

Suites:
  decode      aggregate streamed tokens/s over whole requests (prompt, first token, every chunk,
              the end) with 1, 8 and 16 concurrent agents: kvault --parallel N beside
              llama-server -np N (unified KV), same pool size
  ttft        time to first token of a short request while another agent's long prompt is being
              prefilled: kvault (256-token steps) beside llama-server at its defaults and with
              -b/-ub equal to kvault's step
  roundrobin  agents take turns, more than the pool holds, one request at a time; turn 0 cold,
              turn 1 from wherever each server keeps it, then both servers restart and turn 2
              measures the next turn after a restart. One table per agent count (--rr-agents) and
              agents' size (--rr-system, --rr-context; --rr-pool-tokens and --rr-budget-mib set the memory).
              Configurations (--rr-configs), each labelled: kvault (RAM budget + disk tier),
              kvault --no-persist (RAM budget only), llama-server at its default --cache-ram
              (8192 MiB), llama-server with kvault's RAM budget, llama-server at its defaults
              with the client saving and restoring each agent's slot file. The budget is stated
              in the output.
"""
import argparse
import concurrent.futures
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvbench.client import chat, chat_stream, post_json  # noqa: E402  (shared with bench.py)
from kvbench.machine import kvault_source_id, llama_source_hashes, llama_tag, machine, machine_desc  # noqa: E402
from kvbench.render import model_desc  # noqa: E402
from kvbench.results import load_json, save_json, write_outputs  # noqa: E402
from kvbench.servers import Server, ensure_model, llama_tools, model_meta, private_binaries  # noqa: E402
from kvbench.suites.roundrobin import rr_agents_prompts, rr_short  # noqa: E402
from kvbench.suites.ttft import ttft_under_prefill  # noqa: E402
from kvbench.util import ROOT, cached_share, int_list, log, percentile, rand_text, stats, text_of  # noqa: E402

SUITES = ("decode", "ttft", "roundrobin")


def llama_baseline():
    """The llama.cpp source both servers are built from: the bundle's tag is node-llama-cpp's, not
    an upstream release, so its commit and tree hashes name it."""
    hashes = {k: "unknown" if h is None else h for k, h in llama_source_hashes().items()}
    return {"bundle_tag": llama_tag(), "repo": "ggml-org/llama.cpp", **hashes}


def ratio_stats(kv, ls):
    """Paired ratios kvault / llama-server, one per interleaved repetition."""
    return stats([k / l for k, l in zip(kv, ls) if l > 0])


# ---- decode ------------------------------------------------------------------------------------

def merge_decode_row(old, new):
    """One agent count's row with the samples of an earlier run (old, may be None) and of this one.
    On the same machine every list is concatenated, the medians and the paired ratio recomputed,
    both runs' dates kept. An earlier run on another machine is not pooled (absolute tokens/s
    differ between CPUs): the row is this run's, and the earlier run's ratio is kept beside it."""
    if not old:
        return new
    if old.get("machine") != new.get("machine"):
        earlier = old.get("earlier_runs", []) + [{"date": old.get("date"), "machine": old.get("machine"),
                                                   "ratio": old["ratio"]}]
        return {**new, "earlier_runs": earlier}
    out = {"runs": old.get("runs") or [{k: old.get(k) for k in ("date", "machine")} | {"reps": old["ratio"]["n"]}]}
    out["runs"] = out["runs"] + [{k: new.get(k) for k in ("date", "machine")} | {"reps": new["ratio"]["n"]}]
    for name in ("kvault", "llama-server"):
        n_old, n_new = len(old[name]["tok_s"]), len(new[name]["tok_s"])
        keys = (set(old[name]) | set(new[name])) - {"median"}
        merged = {k: (old[name].get(k) or [None] * n_old) + (new[name].get(k) or [None] * n_new) for k in keys}
        out[name] = {**merged, "median": stats(merged["tok_s"])}
    out["ratio"] = ratio_stats(out["kvault"]["tok_s"], out["llama-server"]["tok_s"])
    out.update({k: new[k] for k in ("date", "machine") if k in new})
    if old.get("earlier_runs") or new.get("earlier_runs"):
        out["earlier_runs"] = old.get("earlier_runs", []) + new.get("earlier_runs", [])
    out["reps"] = out["ratio"]["n"]
    return out


def stream_round(port, n, rep, prompt_words, gen_tokens):
    """n agents stream at once; returns (aggregate tokens/s, per-request tokens/s list, tokens,
    the requests' times to first token, their decode rates after the first token)."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        futs = [ex.submit(chat_stream, port, [{"role": "user", "content": f"agent {rep}-{n}-{i}: " +
                                                 text_of(prompt_words, rep * 100 + n * 20 + i)}], gen_tokens)
                for i in range(n)]
        res = [f.result() for f in futs]
    wall = time.perf_counter() - t0
    tokens = sum(r["completion_tokens"] for r in res)
    return (tokens / wall, [r["completion_tokens"] / r["total_s"] for r in res], tokens, [r["ttft_s"] for r in res],
            [(r["completion_tokens"] - 1) / (r["total_s"] - r["ttft_s"]) for r in res
             if r["total_s"] > r["ttft_s"] and r["completion_tokens"] > 1])


def decode(kvault, ls_bin, model, threads, agents, reps, prompt_words, gen_tokens):
    out = {}
    for n in agents:
        kv_argv = [kvault, "serve", "--model", model, "--threads", str(threads), "--parallel", str(n),
                   "--resident-seqs", str(2 * n), "--pool-tokens", "16384", "--ctx-size", "4096",
                   "--log-level", "warn"]
        ls_argv = [ls_bin, "-m", model, "-t", str(threads), "-c", "16384", "-np", str(n), "-kvu",
                   "--host", "127.0.0.1"]
        servers = {"kvault": Server(kv_argv, "kvault"), "llama-server": Server(ls_argv, "llama-server")}
        row = {name: {"tok_s": [], "per_request_tok_s": [], "tokens": [], "ttft_s": [], "after_first_tok_s": []}
               for name in servers}
        try:
            for name, srv in servers.items():  # warm-up: first decode, first HTTP connection
                stream_round(srv.port, 1, 999, 20, 8)
            for rep in range(reps):
                order = list(servers) if rep % 2 == 0 else list(reversed(servers))
                for name in order:
                    agg, per, tokens, ttfts, after = stream_round(servers[name].port, n, rep, prompt_words,
                                                                  gen_tokens)
                    row[name]["tok_s"].append(agg)
                    row[name]["per_request_tok_s"].append(statistics.median(per))
                    row[name]["tokens"].append(tokens)
                    row[name]["ttft_s"].append(statistics.median(ttfts))  # where the round's time goes
                    row[name]["after_first_tok_s"].append(statistics.median(after) if after else None)
                    log(f"decode agents={n} rep={rep} {name}: {agg:.1f} tok/s ({tokens} tokens)")
        finally:
            for srv in servers.values():
                srv.stop()
        out[str(n)] = {**{name: {**v, "median": stats(v["tok_s"])} for name, v in row.items()},
                       "ratio": ratio_stats(row["kvault"]["tok_s"], row["llama-server"]["tok_s"])}
        log(f"decode agents={n}: kvault/llama-server {out[str(n)]['ratio']['median']:.2f}x")
    return {"config": {"prompt_words": prompt_words, "gen_tokens": gen_tokens, "pool_tokens": 16384,
                       "kvault_flags": "--parallel N --resident-seqs 2N --pool-tokens 16384 --ctx-size 4096",
                       "llama_server_flags": "-np N -c 16384 -kvu"}, "agents": out}


# ---- ttft during a long prefill ----------------------------------------------------------------

def ttft(kvault, ls_bin, model, threads, reps, long_words, short_words, step):
    configs = {
        "kvault": [kvault, "serve", "--model", model, "--threads", str(threads), "--parallel", "4",
                   "--pool-tokens", "16384", "--ctx-size", "8192", "--step-tokens", str(step), "--log-level", "warn"],
        "llama-server (defaults: -b 2048 -ub 512)": [ls_bin, "-m", model, "-t", str(threads), "-c", "16384",
                                                     "-np", "4", "-kvu", "--host", "127.0.0.1"],
        f"llama-server -b {step} -ub {step}": [ls_bin, "-m", model, "-t", str(threads), "-c", "16384", "-np", "4",
                                               "-kvu", "-b", str(step), "-ub", str(step), "--host", "127.0.0.1"],
    }
    raw = {name: {"alone_s": [], "during_prefill_s": []} for name in configs}
    long_tokens = 0
    for rep in range(reps):
        names = list(configs) if rep % 2 == 0 else list(reversed(configs))
        for name in names:
            r = ttft_under_prefill(configs[name], "kvault" if name == "kvault" else "llama-server",
                                     long_words, short_words, 1)
            raw[name]["alone_s"].append(r["alone_s"]["median"])
            raw[name]["during_prefill_s"].append(r["during_prefill_s"]["median"])
            long_tokens = r["long_prompt_tokens"]
    return {"config": {"long_words": long_words, "short_words": short_words, "kvault_step_tokens": step,
                       "long_prompt_tokens": long_tokens},
            "servers": {name: {**v, "median_alone_s": stats(v["alone_s"]),
                               "median_during_prefill_s": stats(v["during_prefill_s"])} for name, v in raw.items()}}


# ---- round robin with a restart ------------------------------------------------------------------

def rr_run(argv, name, n_agents, system_words, ctx_range, gen_tokens, agent_ids, rep, slots=0):
    """One run: turn 0 (cold) and turn 1 of every agent, then the server restarts (same cache
    directory) and turn 2 of every agent. Returns the requests with their TTFT. With `slots` > 0
    (llama-server with --slot-save-path) the client does what a careful llama-server user can: it
    pins agent a to slot a % slots, saves the slot to a file after each turn and restores it
    before the agent's next turn; the restore's time counts in that turn's TTFT."""
    convs = rr_agents_prompts(n_agents, system_words, ctx_range)
    cache_dir = tempfile.mkdtemp(prefix="kvault-peers-rr-")
    if name.startswith("kvault"):
        argv = argv + ["--cache-dir", cache_dir]
    elif slots:
        argv = argv + ["--slot-save-path", cache_dir + "/"]
    requests = []
    try:
        for turns in ((0, 1), (2,)):  # turns before the restart, then after it
            srv = Server(argv, name)
            try:
                chat(srv.port, "warm up " + text_of(20, 999), 4)
                for turn in turns:
                    for a in range(n_agents):
                        headers = {"X-Agent-Id": f"rr-{a}"} if agent_ids else None
                        restore_s, extra = 0.0, None
                        if slots:
                            extra = {"id_slot": a % slots}
                            if turn > 0:
                                _, restore_s = post_json(srv.port, f"/slots/{a % slots}?action=restore",
                                                           {"filename": f"rr-{a}.bin"})
                        res = chat_stream(srv.port, convs[a], gen_tokens, headers, extra=extra)
                        save_s = post_json(srv.port, f"/slots/{a % slots}?action=save",
                                             {"filename": f"rr-{a}.bin"})[1] if slots else 0.0
                        requests.append({"rep": rep, "turn": turn, "agent": a, "ttft_s": restore_s + res["ttft_s"],
                                         "restore_s": restore_s, "save_s": save_s,
                                         "prompt_tokens": res["prompt_tokens"], "cached_tokens": res["cached_tokens"]})
                        convs[a] = convs[a] + [
                            {"role": "assistant", "content": res["text"]},
                            {"role": "user", "content": f"Turn {turn + 1}, agent {a}: " +
                             rand_text(12, 50000 + a * 100 + turn)}]
                    ts = [q["ttft_s"] for q in requests if q["turn"] == turn]
                    log(f"{name} rr agents={n_agents} rep={rep} turn={turn}: TTFT p50 {percentile(ts, 50):.2f}s")
            finally:
                srv.stop()
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return requests


RR_CONFIGS = ("kvault", "kvault-no-persist", "llama-server", "llama-server-budget", "llama-server-slots")
RR_DEFAULT_SYSTEM, RR_DEFAULT_CONTEXT = 500, (1000, 1500)  # words: the agents of `make bench-peers`


def rr_default_agents(c):
    """Whether the round-robin table with settings `c` runs the default agents."""
    return c.get("system_words") == RR_DEFAULT_SYSTEM and list(c.get("context_words", [])) == list(RR_DEFAULT_CONTEXT)


def rr_key(c):
    """The results key of the round-robin table with settings `c`: its agent count, followed by the
    agents' size in words where they are not the default agents (one table per count and size)."""
    if rr_default_agents(c):
        return str(c["agents"])
    return f"{c['agents']}@{c['system_words']}+{c['context_words'][0]}-{c['context_words'][1]}"


def rr_title(c):
    """The heading of the table with settings `c`: its agent count, and the agents' size where they
    are not the default agents."""
    if rr_default_agents(c):
        return f"{c['agents']} agents"
    return (f"{c['agents']} agents of {c['context_words'][0]}–{c['context_words'][1]} words "
            f"({c['system_words']}-word system prompt)")


def rr_order(run):
    """Tables in order: the default agents first, then by agents' size, each by agent count."""
    c = run["config"]
    return (not rr_default_agents(c), list(c["context_words"]), c["system_words"], c["agents"])


def roundrobin(kvault, ls_bin, model, threads, n_agents, reps, system_words, ctx_range, gen_tokens, budget_mib,
               slots, pool_tokens, only=RR_CONFIGS):
    """Every configuration (those named in `only`, RR_CONFIGS' short names) `reps` times, interleaved."""
    ctx = -(-(ctx_range[1] * 2 + 3 * 60 + gen_tokens + 256) // 256) * 256
    kv = [kvault, "serve", "--model", model, "--threads", str(threads), "--log-level", "warn",
          "--pool-tokens", str(pool_tokens), "--resident-seqs", str(slots), "--parallel", str(slots),
          "--ctx-size", str(ctx)]
    ls = [ls_bin, "-m", model, "-t", str(threads), "--host", "127.0.0.1", "-c", str(pool_tokens), "-np", str(slots),
          "-kvu"]
    every = {  # short name: (label, argv, kvault?, slots the client saves and restores)
        "kvault": (f"kvault --ram-cache {budget_mib} (+ disk tier)", kv + ["--ram-cache", str(budget_mib)], True, 0),
        "kvault-no-persist": (f"kvault --ram-cache {budget_mib} --no-persist",
                              kv + ["--ram-cache", str(budget_mib), "--no-persist"], True, 0),
        "llama-server": ("llama-server defaults (--cache-ram 8192)", ls, False, 0),
        "llama-server-budget": (f"llama-server --cache-ram {budget_mib}", ls + ["--cache-ram", str(budget_mib)], False,
                                0),
        "llama-server-slots": ("llama-server defaults + slot save/restore by the client", ls, False, slots),
    }
    configs = {label: rest for short, (label, *rest) in every.items() if short in only}
    reqs = {name: [] for name in configs}
    for rep in range(reps):
        names = list(configs) if rep % 2 == 0 else list(reversed(configs))
        for name in names:
            argv, is_kv, slot_files = configs[name]
            reqs[name] += rr_run(argv, "kvault-rr" if is_kv else "llama-server", n_agents, system_words, ctx_range,
                                 gen_tokens, is_kv, rep, slot_files)

    def per_run_p50(qs, turn):
        return stats([percentile([q["ttft_s"] for q in qs if q["rep"] == r and q["turn"] == turn], 50)
                        for r in range(reps)])

    out = {}
    for name, qs in reqs.items():
        argv = configs[name][0]
        out[name] = {"flags": " ".join(a for a in argv[argv.index(model) + 1:] if a != "127.0.0.1" and a != "--host") +
                     (" --slot-save-path DIR" if configs[name][2] else ""),
                     "cold_p50_runs": per_run_p50(qs, 0), "next_turn_p50_runs": per_run_p50(qs, 1),
                     "after_restart_p50_runs": per_run_p50(qs, 2),
                     "next_turn_cached_fraction": cached_share(q for q in qs if q["turn"] == 1),
                     "after_restart_cached_fraction": cached_share(q for q in qs if q["turn"] == 2),
                     "mean_prompt_tokens": statistics.fmean(q["prompt_tokens"] for q in qs),
                     "requests": qs}
    return {"config": {"agents": n_agents, "reps": reps, "system_words": system_words, "context_words": list(ctx_range),
                       "gen_tokens": gen_tokens, "ram_budget_mib": budget_mib, "pool_tokens": pool_tokens,
                       "slots": slots},
            "servers": out}


def rr_runs(stored, earlier_run):
    """The stored round-robin results as {key: run} (rr_key). Results written when one agent count was
    stored (a single run at the top level) become that count's run, dated by the suite's run."""
    if not stored:
        return {}
    if "runs" in stored:
        return dict(stored["runs"])
    dated = {k: earlier_run[k] for k in ("date", "machine") if k in earlier_run}
    run = {**dated, **{k: v for k, v in stored.items() if k != "reps"}}
    return {rr_key(stored["config"]): run}


def rr_merge_refusal(r, config, only, machine_now):
    """Why a run of the configurations `only` with `config` on `machine_now` may not be stored
    beside the rows kept from the stored run of that agent count and agents' size (None when it may): kept rows must
    come from the same machine, settings, model, threads, llama.cpp tree and kvault source."""
    old = r.get("roundrobin", {}).get("runs", {}).get(rr_key(config))
    if set(only) == set(RR_CONFIGS) or not old:
        return None
    head = (f"--rr-configs runs some rows of the table of {rr_title(config)}, whose other rows were measured "
            f"{{}}: run every configuration, or set --out-json elsewhere")
    if old.get("machine") != machine_now:
        return head.format(f"on another machine ({old.get('machine')}; this run: {machine_now})")
    differ = sorted(k for k in set(old["config"]) | set(config) if old["config"].get(k) != config.get(k))
    if differ:
        return head.format("with other settings (" + "; ".join(
            f"{k}: {old['config'].get(k)} there, {config.get(k)} now" for k in differ) + ")")
    return None


def migrate_results(r):
    """Brings results written by earlier versions of this script to the current layout, in place:
    one round-robin run stored at the top level becomes its agent count's dated run; each run's
    config names the model, threads and llama.cpp tree (those of the stored results, which the run
    that wrote them measured with) and the kvault source (unknown: None). Returns the earlier run
    ({date, reps, machine}) that suites stored without their own run record were measured in."""
    earlier_run = ({"date": r["machine"]["date"], "reps": None, "machine": machine_desc(r["machine"])}
                   if r.get("machine") else {})
    if r.get("roundrobin") and "runs" not in r["roundrobin"]:  # one run stored the old way: date it now
        r["roundrobin"] = {"runs": rr_runs(r["roundrobin"], r.get("suite_runs", {}).get("roundrobin") or earlier_run)}
    r.get("suite_runs", {}).pop("roundrobin", None)  # its runs are dated one by one
    for run in r.get("roundrobin", {}).get("runs", {}).values():
        run.pop("reps", None)  # (the repetitions are in its config)
        run["config"].setdefault("threads", r.get("threads"))
        run["config"].setdefault("model", r.get("model"))
        run["config"].setdefault("llama_cpp_tree", r.get("llama_cpp", {}).get("tree"))
        run["config"].setdefault("kvault_source", None)
    if r.get("roundrobin"):  # tables keyed by agent count alone: keyed by count and agents' size
        runs = r["roundrobin"]["runs"].values()
        r["roundrobin"]["runs"] = {rr_key(run["config"]): run for run in runs}
        assert len(r["roundrobin"]["runs"]) == len(runs), "two stored round-robin tables with one key"
    return earlier_run


def store_rr_run(r, run, only):
    """Stores `run` (one agent count, the configurations `only`) in the results `r`: each agent count
    and agents' size is its own table, so other tables are kept; a run of every configuration
    replaces its table, a run of some keeps the other rows of a table with the same settings and
    machine, each row dated by its own run."""
    runs = rr_runs(r.get("roundrobin"), {})
    n = rr_key(run["config"])
    old = runs.get(n)
    if (old and old["config"] == run["config"] and old.get("machine") == run["machine"]
            and set(only) != set(RR_CONFIGS)):
        for row in old["servers"].values():
            row.setdefault("date", old.get("date"))
            row.setdefault("machine", old.get("machine"))
        for row in run["servers"].values():
            row.update({"date": run["date"], "machine": run["machine"]})
        run["servers"] = {**old["servers"], **run["servers"]}
    r["roundrobin"] = {"runs": {**runs, n: run}}


# ---- output ------------------------------------------------------------------------------------

def rerender_benchmarks():
    """docs/benchmarks.md's round-robin section quotes the tables here that run its own agents:
    renders it again from bench/results/latest.json (its plots as they are)."""
    latest = os.path.join(ROOT, "bench", "results", "latest.json")
    if os.path.exists(latest):
        write_outputs(load_json(latest), None, os.path.join(ROOT, "docs", "benchmarks.md"), set(), False, False)


def span(s, digits=2, unit=""):
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def render(r):
    base = r["llama_cpp"]
    lines = ["# kvault beside llama-server", "",
             "Generated by `bench/peers.py` from `bench/results/peers.json` (raw samples there); do not edit.",
             "", f"Latest run's machine: {machine_desc(r['machine'])}. Model: {r['model']} ({model_desc(r)}), "
             f"{r['threads']} threads for both servers. llama.cpp: {base['repo']} as bundled by "
             f"node-llama-cpp (bundle tag {base['bundle_tag']}, commit `{base['commit'][:12]}`, tree "
             f"`{base['tree'][:12]}`); llama-server built from the same tree by bench/build-llama-tools.sh.",
             "", "Each section's run: " + "".join(
                 f"{k} {v['date']} ({str(v['reps']) + ' repetitions, ' if v.get('reps') else ''}{v['machine']}); "
                 for k, v in r.get("suite_runs", {}).items() if k != "roundrobin") +
             "agents taking turns: one run per table, dated and placed in it. `peers.json` keeps every sample. "
             "Repetitions interleave the servers (A, B, B, A, ...). Cells: median (min–max) of the "
             "repetitions; ratios are kvault / llama-server per repetition, then their median.", ""]
    if "decode" in r:
        d = r["decode"]
        c = d["config"]
        lines += ["## Decode throughput seen by clients", "",
                  f"N agents stream at once (~{c['prompt_words'] + 10}-token prompts, {c['gen_tokens']} tokens "
                  f"each, temperature 0): all tokens received / wall time of the whole round, by the same Python "
                  f"client. kvault `{c['kvault_flags']}`; llama-server `{c['llama_server_flags']}`.", "",
                  "Where the time goes: each request's time to its first token (the prompt's share) and its "
                  "tokens/s after it (decoding), medians over the round's requests, then over the repetitions "
                  "(rows measured before these were recorded show —).", "",
                  "| agents | kvault tok/s | llama-server tok/s | kvault / llama-server | first token kvault / "
                  "llama-server s | per request after the first token kvault / llama-server tok/s |",
                  "|---|---|---|---|---|---|"]

        def both(row, key, digits):
            k = [v for v in row["kvault"].get(key) or [] if v is not None]
            ls = [v for v in row["llama-server"].get(key) or [] if v is not None]
            if not (k and ls):
                return "—"
            return f"{statistics.median(k):.{digits}f} / {statistics.median(ls):.{digits}f}"

        for n, row in d["agents"].items():
            lines.append(f"| {n} | {span(row['kvault']['median'], 1)} | {span(row['llama-server']['median'], 1)} | "
                         f"{span(row['ratio'], 3)}× ({row['ratio']['n']} pairs"
                         f"{', ' + str(len(row['runs'])) + ' runs' if row.get('runs') else ''}) | {both(row, 'ttft_s', 2)} | "
                         f"{both(row, 'after_first_tok_s', 2)} |")
        runs = [f"{n} agents: " + ", ".join(f"{u['date']} ({u['reps']} pairs)" for u in row["runs"])
                for n, row in d["agents"].items() if row.get("runs")]
        if runs:
            lines += ["", "Rows that add up several runs on this machine (`--accumulate`; the first-token and "
                      "after-first-token columns cover the runs that recorded them): " + "; ".join(runs) + "."]
        earlier = [f"{n} agents {span(u['ratio'], 3)}× ({u['ratio']['n']} pairs, {u['date']})"
                   for n, row in d["agents"].items() for u in row.get("earlier_runs", [])]
        machines = sorted({u["machine"] for row in d["agents"].values() for u in row.get("earlier_runs", [])})
        if earlier:
            lines += ["", "Earlier runs on another machine (" + "; ".join(machines) + "), not pooled with the rows "
                      "above, kvault / llama-server: " + "; ".join(earlier) + "."]
        lines.append("")
    if "ttft" in r:
        t = r["ttft"]
        c = t["config"]
        lines += ["## First token while another agent's long prompt is prefilled", "",
                  f"A {c['short_words'] + 4}-word request alone, and one second after a {c['long_prompt_tokens']}-token "
                  f"prompt started (seconds to a 1-token answer). kvault runs {c['kvault_step_tokens']}-token steps.", "",
                  "| server | alone | during the long prefill |", "|---|---|---|"]
        for name, v in t["servers"].items():
            lines.append(f"| {name} | {span(v['median_alone_s'])} s | {span(v['median_during_prefill_s'])} s |")
        lines.append("")
    if "roundrobin" in r:
        runs = rr_runs(r["roundrobin"], r.get("suite_runs", {}).get("roundrobin", {}))
        lines += ["## Agents taking turns, and after a restart", "",
                  "Agents (a shared system prompt and their own notes) take turns one request at a time, 16 tokens "
                  "answered; both servers hold a few sequences in one KV pool, more agents than that, so most "
                  "agents come back from a cache below it. The equal-budget rows give llama-server kvault's RAM "
                  "budget; kvault's disk tier comes on top of it: that is the difference between the kvault rows "
                  "with and without `--no-persist` of one run. Turn 0 is cold; turn 1 is the next turn; then each "
                  "server restarts and turn 2 is the next turn after the restart. The slot save/restore row is what a careful llama-server user "
                  "can do: the client pins agent a to slot a mod the slot count, saves the slot to a file after "
                  "each turn (`POST /slots/ID?action=save`) and restores it before the agent's next turn; the "
                  "restore counts in that turn's TTFT. Pinned to a slot, a cold turn reuses nothing, not even the "
                  "shared system prompt: with a unified KV cache llama-server saves every idle slot to its RAM "
                  "prompt cache and clears it whenever another request starts (`--cache-idle-slots`, on by "
                  "default), and a request naming its slot (`id_slot`) takes that slot as it is, without "
                  "looking in the prompt cache; only a request llama-server places itself is served from it "
                  "(tools/server/server-context.cpp, `get_available_slot`). kvault's requests carry "
                  "`X-Agent-Id` (which names the agent and lets kvault prefetch its blocks); llama-server has no "
                  "such header. The restart is a graceful stop and start, and the files read after it (kvault's "
                  "blocks, llama-server's slot files) may still be in the OS page cache for both. Cells: p50 TTFT "
                  "of each run, median (min–max) over the runs; share of the prompt reused in parentheses.", ""]
        for run in sorted(runs.values(), key=rr_order):
            c = run["config"]
            when = f"; {run['date']}, {run['machine']}" if run.get("date") else ""
            if c.get("kvault_source"):
                when += f"; kvault source `{c['kvault_source']}` (git trees of src/ and CMakeLists.txt)"
            missing = [k for k in RR_CONFIGS if k not in {rr_short(name) for name in run["servers"]}]
            kept = any(v.get("date") and v["date"] != run.get("date") for v in run["servers"].values())
            lines += [f"### {rr_title(c)}", "",
                      f"A shared {c['system_words']}-word system prompt, {c['context_words'][0]}–"
                      f"{c['context_words'][1]} words each; {c['slots']} sequences in a {c['pool_tokens']}-token "
                      f"KV pool; kvault's RAM budget {c['ram_budget_mib']} MiB; {c['reps']} runs{when}" +
                      ("; rows marked with another date are a separate run on the same machine and settings, "
                       "interleaved among themselves, not with the others" if kept else "") +
                      (f"; not run at this agent count: {', '.join(missing)}" if missing else "") + ".", "",
                      "| configuration | flags | cold turn | next turn | next turn after a restart |",
                      "|---|---|---|---|---|"]
            for name, v in sorted(run["servers"].items(), key=lambda e: RR_CONFIGS.index(rr_short(e[0]))):
                if v.get("date") and v["date"] != run.get("date"):  # a row kept from an earlier run
                    name += f" (measured {v['date']})"
                lines.append(f"| {name} | `{v['flags']}` | {span(v['cold_p50_runs'])} s | "
                             f"{span(v['next_turn_p50_runs'])} s ({v['next_turn_cached_fraction']:.0%}) | "
                             f"{span(v['after_restart_p50_runs'])} s ({v['after_restart_cached_fraction']:.0%}) |")
            lines.append("")
    return "\n".join(lines)


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kvault", default=os.path.join(ROOT, "build", "bin", "kvault"))
    ap.add_argument("--model-size", default="bench")
    ap.add_argument("--decode-agents", default="1,8,16")
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--long-words", type=int, default=4000)
    ap.add_argument("--rr-agents", type=int, default=8)
    ap.add_argument("--rr-context", default="-".join(map(str, RR_DEFAULT_CONTEXT)), help="words per agent, MIN-MAX")
    ap.add_argument("--rr-system", type=int, default=RR_DEFAULT_SYSTEM, help="words of the shared system prompt")
    ap.add_argument("--rr-budget-mib", type=int, default=64, help="RAM budget of the equal-budget rows")
    ap.add_argument("--rr-pool-tokens", type=int, default=8192,
                    help="KV pool of both servers in tokens (kvault --pool-tokens, llama-server -c); 4 sequences")
    ap.add_argument("--rr-configs", default=",".join(RR_CONFIGS),
                    help="roundrobin: the configurations to run (default all: " + ",".join(RR_CONFIGS) + "); with "
                         "the same settings as the stored run of that agent count and agents' size, the other "
                         "rows are kept")
    ap.add_argument("--out-json", default=os.path.join(ROOT, "bench", "results", "peers.json"))
    ap.add_argument("--out-md", default=os.path.join(ROOT, "docs", "peers.md"))
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--accumulate", action="store_true",
                    help="decode: add this run's samples to the stored row of each agent count measured (same "
                         "settings) instead of replacing it; the row then lists every run's date")
    return ap


def main():
    ap = build_parser()
    args = ap.parse_args()
    if not set(args.rr_configs.split(",")) <= set(RR_CONFIGS):
        ap.error(f"--rr-configs: known configurations are {','.join(RR_CONFIGS)}")
    r = {}
    if os.path.exists(args.out_json):  # a partial run replaces only the suites it ran
        r = load_json(args.out_json)
    default_paths = args.out_json == ap.get_default("out_json") and args.out_md == ap.get_default("out_md")
    if args.render_only:
        with open(args.out_md, "w") as f:
            f.write(render(r) + "\n")
        if default_paths:
            rerender_benchmarks()
        return
    suites = args.suites.split(",")
    assert set(suites) <= set(SUITES), suites
    kvault = private_binaries(args.kvault, "kvault-peers-bin-")  # a private copy: rebuilds do not disturb a run
    model = ensure_model(args.kvault, args.model_size)
    ls_bin = os.path.join(llama_tools(), "llama-server")
    meta = model_meta(kvault, model)
    # Suites stored before runs were recorded per suite were measured on the machine of the run
    # that wrote them: keep that with them before this run's machine replaces it.
    earlier_run = migrate_results(r)
    rr_only = args.rr_configs.split(",")
    rr_lo, rr_hi = int_list(args.rr_context.replace("-", ","))
    rr_config = {"agents": args.rr_agents, "reps": args.reps, "system_words": args.rr_system,
                 "context_words": [rr_lo, rr_hi], "gen_tokens": 16, "ram_budget_mib": args.rr_budget_mib,
                 "pool_tokens": args.rr_pool_tokens, "slots": 4, "threads": args.threads, "model": os.path.basename(model),
                 "llama_cpp_tree": llama_baseline().get("tree"), "kvault_source": kvault_source_id()}
    refusal = rr_merge_refusal(r, rr_config, rr_only, machine_desc(machine()))
    if "roundrobin" in suites and refusal:
        ap.error(refusal)
    for suite in SUITES:
        if suite == "roundrobin":
            continue
        if suite in r and earlier_run and suite not in r.get("suite_runs", {}):
            r.setdefault("suite_runs", {})[suite] = dict(earlier_run)
    r.update({"machine": machine(), "model": os.path.basename(model), "model_desc": meta["description"],
              "model_params": meta.get("n_params"),
              "threads": args.threads, "llama_cpp": llama_baseline()})

    def save():
        for suite in suites:  # each suite this run measured: when, where, how often
            if suite in r and suite != "roundrobin":  # its runs, one per agent count, are dated themselves
                r.setdefault("suite_runs", {})[suite] = {"date": r["machine"]["date"],
                                                         "reps": None if args.accumulate and suite == "decode" else args.reps,
                                                         "machine": machine_desc(r["machine"])}
        save_json(args.out_json, r, indent=1)
        with open(args.out_md, "w") as f:
            f.write(render(r) + "\n")

    if "decode" in suites:
        log("peers: decode")
        d = decode(kvault, ls_bin, model, args.threads, int_list(args.decode_agents), args.reps, 100,
                   args.gen_tokens)
        for row in d["agents"].values():  # each row says when, where and how often it was measured
            row.update({"date": r["machine"]["date"], "machine": machine_desc(r["machine"]), "reps": args.reps})
        if args.accumulate and r.get("decode", {}).get("config") != d["config"]:
            log("--accumulate: no stored decode rows with these settings; this run's rows replace them")
        if r.get("decode", {}).get("config") == d["config"]:  # a rerun of some agent counts keeps the others
            if args.accumulate:  # or adds its samples to theirs
                for row in r["decode"]["agents"].values():  # rows stored before rows were dated: the suite's
                    run = r.get("suite_runs", {}).get("decode") or earlier_run
                    row.setdefault("date", run.get("date"))
                    row.setdefault("machine", run.get("machine"))
                d["agents"] = {n: merge_decode_row(r["decode"]["agents"].get(n), row) for n, row in d["agents"].items()}
            d["agents"] = {**r["decode"]["agents"], **d["agents"]}
        d["agents"] = dict(sorted(d["agents"].items(), key=lambda e: int(e[0])))
        r["decode"] = d
        save()
    if "ttft" in suites:
        log("peers: ttft")
        r["ttft"] = ttft(kvault, ls_bin, model, args.threads, args.reps, args.long_words, 20, 256)
        save()
    if "roundrobin" in suites:
        log("peers: roundrobin")
        run = roundrobin(kvault, ls_bin, model, args.threads, args.rr_agents, args.reps, args.rr_system,
                         (rr_lo, rr_hi), 16, args.rr_budget_mib, 4, args.rr_pool_tokens, rr_only)
        assert run["config"].items() <= rr_config.items(), (run["config"], rr_config)
        run.update({"config": rr_config, "date": r["machine"]["date"], "machine": machine_desc(r["machine"])})
        store_rr_run(r, run, rr_only)
        save()
        if default_paths:
            rerender_benchmarks()


if __name__ == "__main__":
    main()
