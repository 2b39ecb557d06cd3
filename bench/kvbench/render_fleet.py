"""docs/benchmarks.md's fleet section: agents moved by a killed (then an added) server, kvault with
a shared Redis against llama-servers behind the same nginx."""
from .util import span


def fleet_section(r, image):
    f = r.get("fleet")
    if not f:
        return []
    c = f["config"]
    restarts = any(q["phase"] == "restarted" for q in f.get("kvault", {}).get("requests", []))
    lines = ["## A fleet: an instance dies, another joins" + (", one restarts" if restarts else ""), "",
             f"Two servers behind one nginx with kvault's deployed configuration (`deploy/nginx/kvault.conf`: "
             f"agents hashed consistently on `X-Agent-Id`, passive health checks, the next instance on a refused "
             f"connection). {c['agents']} agents with {c['context'][0]}–{c['context'][1]} tokens of context each "
             f"(a shared ~{c['system_words']}-word system prompt included) take turns in round-robin order, one "
             f"request at a time, {c['gen_tokens']} tokens answered: turn 1 is cold, turn 2 is on the agent's own "
             "server (**home**). Then one server is killed (SIGKILL): at turn 3 its agents **moved** to the other "
             "one (nginx's retry), the others **stayed**. Then a third server joins (nginx reloaded with it): at "
             "turn 4 the agents the ring gives it **joined** it. "
             + ("Last, one of the two live servers restarts (SIGTERM, then the same port and cache "
                "directory): at turn 5 the agents it kept **restarted** with it (kvault's come back from its disk, "
                "whose files may still be in the page cache; llama-server's are recomputed). " if restarts else "")
             + "kvault's instances share one Redis "
             f"(`--remote-cache`); each llama-server has only its own RAM cache. Same KV budgets: kvault "
             f"`{c['kvault_flags']}`, llama-server `{c['llama_server_flags']}`. Time to first token, streamed, "
             "through nginx, in seconds; p50 / p95 over every request of every repetition, then the median "
             f"[min–max] of the repetitions' own p50s; {len(set(q['rep'] for q in f['kvault']['requests']))} "
             f"repetitions, kvault and llama-server alternating; {c['date']}, {c['machine']}.", "",
             "| server | cold p50 / p95 | home p50 / p95 | moved p50 / p95 | moved / home (p50) | joined p50 / p95 "
             "| restarted p50 / p95 | prompt reused when moved |", "|---|---|---|---|---|---|---|---|"]
    for name in ("kvault", "llama-server"):
        s = f.get(name)
        if not s:
            continue

        def pp(phase):
            d = s.get(phase)
            if not d:
                return "–"
            runs = s.get(phase + "_p50_reps")
            extra = f" (runs {span(runs)})" if runs and runs["n"] > 1 else ""
            return f"{d['p50']:.2f} / {d['p95']:.2f}{extra}"

        ratio = (f"{s['moved']['p50'] / s['home']['p50']:.2f}×" if s.get("moved") and s.get("home") else "–")
        reused = f"{s['moved']['cached_fraction'] * 100:.0f} %" if s.get("moved") else "–"
        lines.append(f"| {name} | {pp('cold')} | {pp('home')} | {pp('moved')} | {ratio} | {pp('joined')} | {pp('restarted')} | {reused} |")
    k, ls = f.get("kvault"), f.get("llama-server")
    if k and ls and k.get("moved") and ls.get("moved"):
        lines += ["", f"A moved agent's next turn: kvault {ls['moved']['p50'] / k['moved']['p50']:.1f}× faster than "
                  "llama-server at the p50 (its prompt comes back from Redis; llama-server's is recomputed)."]
    if k and k.get("remote_load_mib_s"):
        lines += ["", f"Remote tier load rate on the surviving kvault instance (bytes read from Redis over the read "
                  f"path's time reading them, which includes verifying and copying): "
                  f"{span(k['remote_load_mib_s'], 0)} MiB/s"
                  + (f"; the disk tier's on the restarted instance, measured the same way: "
                     f"{span(k['disk_load_mib_s'], 0)} MiB/s." if k.get("disk_load_mib_s") else ".")]
    lines += ["", "Every request (agent, turn, phase, upstream, TTFT, cached tokens) is in the raw results "
              "(`fleet.SERVER.requests`).", ""]
    return lines
