"""The sections of docs/benchmarks.md about agents over time: resuming one (resume), many taking
turns (roundrobin) and many stored (memory)."""
import json
import os

from .suites.roundrobin import rr_short
from .util import ROOT, span


def resume_section(r, image):
    """Resuming an agent: next-turn time to first token by where its KV is."""
    rs = r.get("resume")
    if not rs:
        return []
    slot_rows = any(ls.get("restart_slot") for ls in rs.get("llama-server", {}).values())
    lines = ["## Resuming an agent: next-turn time to first token", "",
             "An agent with a long conversation sends its next turn (a few new tokens; 1 token answered). "
             "kvault: cold (nothing cached), while its sequence is resident, after other agents pushed it "
             "out of the pool (restored from the RAM tier), and after a server restart (restored from "
             "disk; the file pages may still be in the OS page cache), and after a restart with its block "
             "files evicted from the page cache (`posix_fadvise(DONTNEED)`: read from the disk itself). "
             "llama-server: cold, resident (`cache_prompt`), after a restart (it keeps nothing)"
             + (", and after a restart where its client saved the slot to a file after the resident turn and "
                "restores it before the next (`--slot-save-path`, `POST /slots/0?action=save|restore`: what a "
                "careful llama-server user can do; the restore's time counts in the turn's; rows measured before "
                "this was recorded show —)" if slot_rows else "")
             + ". Both servers have the same KV pool size. Seconds, median [min–max].", "",
             "| context tokens | kvault cold | resident | RAM | restart | restart, from the disk itself | "
             "cold / restart | llama-server cold | resident | restart |" + (" restart + slot file restored |" if slot_rows else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if slot_rows else "")]
    lines += resume_rows(rs, slot_rows) + resume_notes(rs)
    lines.append("")
    lines += image("resume", "Next-turn TTFT vs context tokens, by path")
    return lines


def resume_rows(rs, slot_rows):
    """One row per context size, kvault's paths beside llama-server's."""
    def cell(v):
        return span(v) if v else "—"
    rows = []
    for n, kv in sorted(rs["kvault"].items(), key=lambda e: int(e[0])):
        ls = rs.get("llama-server", {}).get(n, {})
        speedup = kv["cold"]["median"] / kv["restart"]["median"]
        reps_note = f" ({kv['cold']['n']} of 3 repetitions so far)" if kv["cold"]["n"] < 3 else ""
        rows.append(f"| {n}{reps_note} | {cell(kv['cold'])} | {cell(kv['resident'])} | {cell(kv['ram'])} | "
                    f"{cell(kv['restart'])} | {cell(kv.get('disk'))} | {speedup:.0f}× | {cell(ls.get('cold'))} | "
                    f"{cell(ls.get('resident'))} | {cell(ls.get('restart'))} |"
                    + (f" {cell(ls.get('restart_slot'))} |" if slot_rows else ""))
    return rows


def resume_notes(rs):
    """Rows kept without raw samples, the pool sizes, rows from different runs, load throughput."""
    lines = []
    runs = {}  # (date, machine) -> context sizes measured in that run
    for n in sorted(rs["kvault"], key=int):
        runs.setdefault((rs.get("dates", {}).get(n), rs.get("machines", {}).get(n)), []).append(n)
    no_raw = [n for n in sorted(rs["kvault"], key=int) if n not in rs.get("raw", {})]
    if no_raw:
        lines += ["", f"Rows without raw samples in the results file ({', '.join(no_raw)} tokens: measured "
                  "before the driver kept them; only their median, min and max are stored). A rerun of "
                  "`bench.py --suites resume` replaces them with rows that keep every sample."]
    if any(int(n) > 9000 for n in rs["kvault"]):
        lines += ["", "Up to 8K tokens both servers have a 16,384-token KV pool (kvault `--ctx-size 12288`); "
                  "a run with larger sizes gives both 40,960 (kvault `--ctx-size 36864`) for all its sizes."]
    if len(runs) > 1:
        lines += ["", "Rows from different runs: " + "; ".join(
            f"{', '.join(ns)} tokens on {d or 'date not recorded'} ({mach or 'machine not recorded'})"
            for (d, mach), ns in runs.items()) + "."]
    slots = [(n, ls) for n, ls in sorted(rs.get("llama-server", {}).items(), key=lambda e: int(e[0]))
             if ls.get("restart_slot")]
    if slots:
        lines += ["", "llama-server's slot files: " + "; ".join(
            f"{n} tokens: saving took {span(ls['slot_save'])} s, the restored slot covered "
            f"{ls['slot_reused']['median'] * 100:.0f} % of the next prompt" for n, ls in slots) + "."]
    loads = [(n, kv["load_mb_s"]) for n, kv in sorted(rs["kvault"].items(), key=lambda e: int(e[0]))
             if kv.get("load_mb_s")]
    if loads:
        d = rs.get("disk") or {}
        lines += ["", "Load throughput from the disk itself (block bytes read / the I/O thread's time fetching "
                  "them, which includes verifying the checksum and copying into RAM-tier memory; `/health` "
                  "`kv_store.bytes_read` and `fetch_seconds`): " +
                  "; ".join(f"{n} tokens {span(v, 0, ' MB/s')}" for n, v in loads) +
                  (f". The disk's own sequential read, same run: {d['read_mb_s']:.0f} MB/s "
                   f"({d['size_mb']} MB file, page cache dropped first)." if d else ".")]
    return lines


def roundrobin_section(r, image):
    """Many agents taking turns (round robin)."""
    rr = r.get("roundrobin")
    if not (rr and rr.get("runs")):
        return []
    runs = rr["runs"]
    c = runs[sorted(runs, key=int)[0]]["config"]
    lines = ["## Many agents taking turns (round robin)", "",
             f"N agents share a ~{c['system_words']}-word system prompt; each has {c['context'][0]}–"
             f"{c['context'][1]} tokens of context in all (system prompt included). They take turns in "
             f"round-robin order, one request at a time, {c['turns']} turns each: every turn appends the "
             f"previous answer and a short new user message; {c['gen_tokens']} tokens answered, greedy. "
             "The pool holds only a few agents, the same KV memory for both servers: kvault "
             f"`{c['kvault_flags']}` (agents named by `X-Agent-Id`), llama-server `{c['llama_server_flags']}` "
             "(its prompt cache: idle slots are saved to a RAM cache of the same size as kvault's RAM tier; "
             "nothing goes to disk). **Read this table with its budget**: llama-server's default "
             "`--cache-ram` is 8192 MiB, eight times the budget here; at ~50 MiB per agent it would hold "
             "these agents at its defaults, so at its defaults the gap at 32 and 128 agents is expected to "
             "close. docs/peers.md compares both at llama-server's defaults, with llama-server's slot "
             "save/restore and at equal budgets, one table per agent count and agents' size (each says how "
             "large its agents are)" + peers_same_agents(r, c) + " Time to first token from the streamed answer (the first chunk that "
             "carries text). The first turn is cold for every agent (both servers reuse the shared system "
             "prompt's KV where they can); the next turns find the agent's KV in the pool, RAM or disk, "
             "or recompute it. Seconds; p50 / p95 over all requests of the run. Runs per agent count: "
             + ", ".join(f"{n}: {runs[n].get('config', {}).get('reps', 1)}" for n in sorted(runs, key=int))
             + "; where more than one, the requests of all runs are pooled, each run's own p50 follows in "
             "brackets, and the whole run is the median [min–max].", "",
             "| agents | server | mean prompt tokens | first turn (cold) p50 / p95 | next turns p50 / p95 | "
             "prompt tokens reused on next turns | whole run (s) |", "|---|---|---|---|---|---|---|"]
    lines += roundrobin_rows(runs) + roundrobin_notes(r, runs)
    lines += ["", "Every request's TTFT, turn and cached tokens are in the raw results (`roundrobin.runs.N.SERVER."
              "requests`).", ""]
    lines += image("roundrobin", "Round-robin TTFT distribution per agent count, kvault vs llama-server")
    return lines


def peers_same_agents(r, c):
    """What docs/peers.md's round-robin tables of agents made like this table's (the same model,
    system prompt and context sizes: for a given agent count, the same prompts) measured, from
    bench/results/peers.json: a clause ending the sentence that points there, then a sentence per
    table with the next turns of the configurations it ran. A smoke run's table has none."""
    try:
        with open(os.path.join(ROOT, "bench", "results", "peers.json")) as f:
            peer_runs = json.load(f).get("roundrobin", {}).get("runs", {})
    except (OSError, ValueError):
        peer_runs = {}
    matches = sorted((run for run in peer_runs.values()
                      if run.get("config", {}).get("system_words") == c["system_words"]
                      and run["config"].get("context_words") == list(c["context"])
                      and run["config"].get("model") == r.get("model")), key=lambda run: run["config"]["agents"])
    if r.get("smoke") or not matches:
        return ("" if "--cache-ram" not in c["llama_server_flags"] else
                "; this table's workload has not been run with llama-server's default") + "."
    tables = " and ".join(f"{run['config']['agents']}-agent" for run in matches)
    out = (f"; its {tables} table{'s' if len(matches) > 1 else ''} run{'' if len(matches) > 1 else 's'} agents "
           "made the same way (the same system prompt and context sizes), with a restart and budgets of "
           f"{'their' if len(matches) > 1 else 'its'} own.")
    picks = (("kvault", "on kvault"), ("llama-server", "on llama-server at its defaults"),
             ("llama-server-budget", "on llama-server with kvault's RAM budget ({} MiB)"),
             ("kvault-no-persist", "on kvault with that budget and no disk tier"))
    for run in matches:
        pc = run["config"]
        rows = {rr_short(name): v for name, v in run["servers"].items()}
        cells = [f"{rows[short]['next_turn_p50_runs']['median']:.2f} s {label.format(pc['ram_budget_mib'])}"
                 for short, label in picks if short in rows]
        if cells:
            out += (f" There, with {pc['agents']} agents, the next turn takes (p50, median of {pc['reps']} runs) "
                    + ", ".join(cells[:-1]) + (" and " if len(cells) > 1 else "") + cells[-1] + ".")
    return out


def roundrobin_rows(runs):
    """One row per agent count and server."""
    def pp(v, runs_p50=None):
        if not v:
            return "—"
        spread = (f" (each run's p50: {runs_p50['min']:.2f}–{runs_p50['max']:.2f})"
                  if runs_p50 and runs_p50["n"] > 1 else "")
        return f"{v['p50']:.2f} / {v['p95']:.2f}{spread}"
    def total(t):
        return f"{t['median']:.1f}" + (f" [{t['min']:.1f}–{t['max']:.1f}]" if t.get("n", 1) > 1 else "")
    rows = []
    for n in sorted(runs, key=int):
        for server in ("kvault", "llama-server"):
            v = runs[n].get(server)
            if not v:
                continue
            rows.append(f"| {n} | {server} | {v['mean_prompt_tokens']:.0f} | "
                        f"{pp(v['cold_ttft_s'], v.get('cold_p50_runs'))} | "
                        f"{pp(v['warm_ttft_s'], v.get('warm_p50_runs'))} | {v['warm_cached_fraction'] * 100:.0f}% | "
                        f"{total(v['total_s'])} |")
    return rows


def roundrobin_notes(r, runs):
    """llama-server / kvault per agent count, rows from separate runs or machines, 128 agents."""
    lines = []
    faster = []
    for n in sorted(runs, key=int):
        k, l = runs[n].get("kvault"), runs[n].get("llama-server")
        if k and l and k["warm_ttft_s"] and l["warm_ttft_s"]:
            faster.append(f"{n} agents {l['warm_ttft_s']['p50'] / k['warm_ttft_s']['p50']:.1f}× "
                          f"(p95 {l['warm_ttft_s']['p95'] / k['warm_ttft_s']['p95']:.1f}×)")
    if faster:
        flags = runs[sorted(runs, key=int)[0]].get("config", {}).get("llama_server_flags", "").split()
        cache = f" at `--cache-ram {flags[flags.index('--cache-ram') + 1]}`" if "--cache-ram" in flags[:-1] else ""
        lines += ["", f"Next-turn TTFT p50, llama-server{cache} / kvault: " + "; ".join(faster) + "."]
    dates = {n: runs[n].get("config", {}).get("date") for n in runs}
    if len(set(dates.values())) > 1:  # rows measured in different runs (each pair in one run)
        lines += ["", "Measured in separate runs, each kvault row next to its llama-server row: " +
                  "; ".join(f"{n} agents {dates[n]}" for n in sorted(runs, key=int)) + "."]
    machines = {n: runs[n].get("config", {}).get("machine") for n in runs}
    if len(set(machines.values())) > 1:
        lines += ["", "Machines: " + "; ".join(f"{n} agents on {machines[n] or 'a machine not recorded'}"
                                               for n in sorted(runs, key=int)) + "."]
    note = rr_note(runs)
    if note and not r.get("smoke"):
        lines += ["", note]
    return lines


def memory_section(r, image):
    """Memory with many stored agents."""
    mem = r.get("memory")
    if not mem:
        return []
    c = mem["config"]
    ls_rows = {row["agents"]: row for row in mem.get("llama-server") or []}
    lines = ["## Memory with many stored agents", "",
             f"Agents 1, 2, … each send one turn of ~{c['words']} distinct words (a few tokens answered); "
             "after each step, the server's resident memory from `/proc/PID/status` (VmRSS now, VmHWM its "
             "peak, RssAnon its anonymous part: heap, KV pool, RAM tier; the rest is the mapped model file) "
             "and kvault's tiers from `/health` once its disk writes are done. kvault "
             f"`{c['kvault_flags']}`: the RAM tier is bounded by `--ram-cache`, older blocks live on disk "
             f"only. llama-server for reference: `{c['llama_server_flags']}`. Goal: kvault's memory flat "
             "as the number of stored agents grows. MiB.", "",
             "| agents stored | kvault RSS | peak | anon | RAM tier | disk tier | pool blocks used | "
             "llama-server RSS | peak | anon |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += memory_rows(mem["kvault"], ls_rows)
    lines += ["", memory_growth(mem["kvault"], ls_rows), ""]
    lines += image("memory", "RSS and KV tiers vs stored agents")
    return lines


def memory_rows(kv_rows, ls_rows):
    """One row per step: kvault's memory and tiers beside llama-server's memory."""
    def mib(v):
        return f"{v:.0f}" if v is not None else "—"
    rows = []
    for row in kv_rows:
        l = ls_rows.get(row["agents"], {})
        st, pool = row.get("store", {}), row.get("pool", {})
        rows.append(f"| {row['agents']} | {mib(row['VmRSS'])} | {mib(row['VmHWM'])} | {mib(row.get('RssAnon'))} | "
                    f"{st.get('ram_bytes', 0) / 2**20:.1f} | {st.get('disk_bytes', 0) / 2**20:.1f} | "
                    f"{pool.get('blocks_used', '—')} / {pool.get('blocks_total', '—')} | {mib(l.get('VmRSS'))} | "
                    f"{mib(l.get('VmHWM'))} | {mib(l.get('RssAnon'))} |")
    return rows


def memory_growth(kv_rows, ls_rows):
    """What kvault's memory and tiers grew by from the first agent stored to the last."""
    k0, k1 = kv_rows[1] if len(kv_rows) > 1 else kv_rows[0], kv_rows[-1]
    def grew(key):
        return (k1.get("store", {}).get(key, 0) - k0.get("store", {}).get(key, 0)) / 2**20
    return (f"kvault from {k0['agents']} to {k1['agents']} agents stored: RSS {k1['VmRSS'] - k0['VmRSS']:+.1f} MiB, "
            f"RAM tier {grew('ram_bytes'):+.1f} MiB, disk tier {grew('disk_bytes'):+.1f} MiB" +
            (f"; llama-server RSS {ls_rows[k1['agents']]['VmRSS'] - ls_rows[k0['agents']]['VmRSS']:+.1f} MiB"
             if k0["agents"] in ls_rows and k1["agents"] in ls_rows else "") + ".")


def rr_note(runs):
    """Why 128 agents are missing from the round robin, when they are."""
    if "128" in runs:
        return None
    return ("128 agents are opt-in (`bench.py --suites roundrobin --long`, or `--rr-agents 128`): on this "
            "machine's 2 cores the bench model prefills ~250 tokens/s, so 128 agents' cold first turns alone "
            "take ~17 min per server, and llama-server, whose RAM cache then holds only a fraction of the "
            "agents, recomputes most next turns: estimated ~25 min for kvault and ~55 min for llama-server.")
