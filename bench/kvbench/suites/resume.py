"""resume: time to first token of an agent's next turn at 2K/4K/8K tokens of context (16K and 32K
with --long): cold, while resident, after eviction (RAM tier), after a server restart (disk tier,
page cache kept and dropped); llama-server cold, resident and after a restart, same prompts, and
after a restart with the client's slot save/restore (--slot-save-path: the slot saved to a file
after the resident turn, restored before the next; the restore counts in its time)."""
import os
import shutil
import tempfile

from ..client import chat, get_json, llama_cached_fraction, post_json
from ..machine import disk_bandwidth, drop_from_page_cache, machine_desc
from ..servers import Server
from ..util import CACHE, LONG, int_list, log, stats, text_of


def resume_kvault_argv(kvault, model, threads, max_words):
    """The resume suite's kvault server (one agent at a time, one resident sequence) and its pool
    size: room for the longest context measured."""
    pool, ctx = ("40960", "36864") if max_words > 8000 else ("16384", "12288")
    return [kvault, "serve", "--model", model, "--threads", str(threads), "--parallel", "1", "--resident-seqs", "1",
            "--pool-tokens", pool, "--ctx-size", ctx, "--log-level", "warn"], pool


def conversation(words, rep, n_turns=4):
    """An agent's turns (four by default): each adds the previous answer and a new question."""
    base = f"agent {words}-{rep}: " + text_of(words, 3000 + rep)
    turns, msgs = [], [{"role": "user", "content": base}]
    for t in range(n_turns):
        turns.append(list(msgs))
        msgs += [{"role": "assistant", "content": f"answer {t}"}, {"role": "user", "content": f"question {t + 1}"}]
    return turns


def kvault_rep(kvault_argv, turns, k):
    """One repetition on kvault, appended to k; returns the context's prompt tokens."""
    cache_dir = tempfile.mkdtemp(prefix="kvault-bench-resume-")
    argv = kvault_argv + ["--cache-dir", cache_dir]
    srv = Server(argv, "kvault-resume")
    try:
        r, t = chat(srv.port, turns[0], 1, timeout=LONG)
        tokens = r["usage"]["prompt_tokens"]
        k["cold"].append(t)
        r, t = chat(srv.port, turns[1], 1)
        k["resident"].append(t)
        chat(srv.port, "another agent pushes this one out of the pool", 1)  # --resident-seqs 1
        r, t = chat(srv.port, turns[2], 1)
        assert r["cache"]["ram_tokens"] > 0, r["cache"]
        k["ram"].append(t)
    finally:
        srv.stop()
    srv = Server(argv, "kvault-resume")
    try:
        r, t = chat(srv.port, turns[3], 1, timeout=LONG)
        assert r["cache"]["disk_tokens"] > 0, r["cache"]
        k["restart"].append(t)
    finally:
        srv.stop()
    # Once more, with the block files out of the OS page cache: read from the disk itself.
    # Load throughput: what the I/O thread read over its time fetching (read, check, copy).
    drop_from_page_cache(cache_dir)
    srv = Server(argv, "kvault-resume")
    try:
        r, t = chat(srv.port, turns[3], 1, timeout=LONG)
        assert r["cache"]["disk_tokens"] > 0, r["cache"]
        k["disk"].append(t)
        ks = get_json(srv.port, "/health")["kv_store"]
        k["load_mb_s"].append(ks["bytes_read"] / 1e6 / max(ks["fetch_seconds"], 1e-9))
    finally:
        srv.stop()
        shutil.rmtree(cache_dir, ignore_errors=True)
    return tokens


def llama_server_rep(server_argv, turns, l):
    """One repetition on llama-server (cold, resident, after a restart; after a restart with the
    slot saved to a file after the resident turn and restored before the next, the restore's time
    counted in the turn's), appended to l."""
    slot_dir = tempfile.mkdtemp(prefix="kvault-bench-slots-")
    argv = server_argv + ["--slot-save-path", slot_dir + "/"]
    try:
        srv = Server(argv, "llama-server")
        try:
            l["cold"].append(chat(srv.port, turns[0], 1, timeout=LONG)[1])
            l["resident"].append(chat(srv.port, turns[1], 1)[1])
            l["slot_save"].append(post_json(srv.port, "/slots/0?action=save", {"filename": "agent.bin"})[1])
        finally:
            srv.stop()
        srv = Server(argv, "llama-server")
        try:
            l["restart"].append(chat(srv.port, turns[3], 1, timeout=LONG)[1])
        finally:
            srv.stop()
        srv = Server(argv, "llama-server")
        try:
            restored, restore_s = post_json(srv.port, "/slots/0?action=restore", {"filename": "agent.bin"})
            assert restored.get("n_restored", 0) > 0, restored
            r, t = chat(srv.port, turns[3], 1, timeout=LONG)
            l["restart_slot"].append(restore_s + t)
            l["slot_reused"].append(llama_cached_fraction(r))
        finally:
            srv.stop()
    finally:
        shutil.rmtree(slot_dir, ignore_errors=True)


def resume(kvault_argv, server_argv, contexts, reps, on_rep):
    """Next-turn latency (1 token answered) by where the agent's KV is. After each repetition,
    on_rep(tokens, kvault, llama_server) gets this run's samples so far (lists by path) for that
    context size: a long run checkpoints there."""
    for words in contexts:
        k = {"cold": [], "resident": [], "ram": [], "restart": [], "disk": [], "load_mb_s": []}
        l = {"cold": [], "resident": [], "restart": [], "slot_save": [], "restart_slot": [], "slot_reused": []}
        for rep in range(reps):
            turns = conversation(words, rep)
            tokens = kvault_rep(kvault_argv, turns, k)
            log(f"kvault resume {tokens} tokens rep={rep}: cold {k['cold'][-1]:.2f}s resident {k['resident'][-1]:.2f}s "
                f"ram {k['ram'][-1]:.2f}s restart {k['restart'][-1]:.2f}s from disk {k['disk'][-1]:.2f}s "
                f"({k['load_mb_s'][-1]:.0f} MB/s)")
            if server_argv:
                llama_server_rep(server_argv, turns, l)
                log(f"llama-server resume rep={rep}: cold {l['cold'][-1]:.2f}s resident {l['resident'][-1]:.2f}s "
                    f"restart {l['restart'][-1]:.2f}s, with the slot file {l['restart_slot'][-1]:.2f}s "
                    f"({l['slot_reused'][-1] * 100:.0f} % reused; saving it took {l['slot_save'][-1]:.2f}s)")
            on_rep(str(tokens), k, l if server_argv else None)


class Rows:
    """The suite's rows in the results, one per context size. Sizes this run does not measure keep
    their earlier rows (each row is dated). With --resume-accumulate a size's samples are added to
    those stored from earlier runs on the same machine (a 32K repetition takes ~1 h here: three
    runs can make up one row)."""

    def __init__(self, ctx):
        self.ctx = ctx
        rs = ctx.r.get("resume") if not ctx.smoke else None
        rs = rs or {"kvault": {}, "llama-server": {}}
        ctx.r["resume"] = self.rs = rs
        self.raw, self.earlier = rs.setdefault("raw", {}), {}
        self.machine = machine_desc(ctx.r["machine"])

    def start(self, tokens):
        """The samples this run adds to (none unless accumulating)."""
        old = self.raw.get(tokens)
        keep = (self.ctx.args.resume_accumulate and old and self.rs["machines"].get(tokens) == self.machine
                and old.get("kvault"))
        return old if keep else {"kvault": {}, "llama-server": {}, "dates": []}

    def rep_done(self, tokens, k, l):
        """A repetition of `tokens` finished: the row becomes the earlier samples and this run's."""
        rs = self.rs
        if tokens not in self.earlier:
            self.earlier[tokens] = self.start(tokens)
        e = self.earlier[tokens]
        both = {"kvault": {p: e["kvault"].get(p, []) + v for p, v in k.items()},
                "llama-server": {p: e["llama-server"].get(p, []) + v for p, v in (l or {}).items()},
                "dates": e["dates"] + [self.ctx.r["machine"]["date"]]}
        self.raw[tokens] = both
        rs["kvault"][tokens] = {p: stats(v) for p, v in both["kvault"].items() if v}
        if l:
            rs.setdefault("llama-server", {})[tokens] = {p: stats(v) for p, v in both["llama-server"].items() if v}
        rs.setdefault("dates", {})[tokens] = ", ".join(dict.fromkeys(both["dates"]))
        rs.setdefault("machines", {})[tokens] = self.machine
        self.ctx.checkpoint("resume")


def run(ctx):
    log("suite: resume")
    args = ctx.args
    # --long adds 16K and 32K contexts (cold prefill of 32K tokens alone takes tens of minutes here).
    contexts = int_list(args.resume_words) if args.resume_words else (
        [200] if ctx.smoke else [2000, 4000, 8000] + ([16000, 32000] if args.long else []))
    kv_argv, pool = resume_kvault_argv(ctx.kvault, ctx.model, args.threads, max(contexts))
    ls_argv = None
    if ctx.tools:
        ls_argv = [os.path.join(ctx.tools, "llama-server"), "-m", ctx.model, "-t", str(args.threads), "-c", pool,
                   "-np", "1", "--host", "127.0.0.1"]
    rows = Rows(ctx)
    resume(kv_argv, ls_argv, contexts, ctx.reps if args.resume_reps is None else args.resume_reps, rows.rep_done)
    rows.rs["disk"] = disk_bandwidth(CACHE, 16 if ctx.smoke else 256)
