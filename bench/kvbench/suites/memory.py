"""memory: process RSS (VmRSS, VmHWM) and kvault's pool / RAM tier / disk tier with 1, 10, 100
agents stored; llama-server's RSS at the same points."""
import os

from ..client import chat, wait_store_idle
from ..servers import Server
from ..util import log, rand_text, text_of


def measure(srv, target, is_kvault):
    """One row: the process's memory and, for kvault, its tiers once the disk writes settled."""
    row = {"agents": target, **srv.memory()}
    if is_kvault:
        h = wait_store_idle(srv.port)
        ks, pool = h["kv_store"], h["pool"]
        row["store"] = {k: ks[k] for k in ("ram_blocks", "ram_bytes", "disk_blocks", "disk_bytes")}
        row["pool"] = {k: pool[k] for k in ("blocks_used", "blocks_total", "idle_sequences", "evictions")}
        row.update(srv.memory())  # after the writes settled
    return row


def memory(argv, name, steps, words, is_kvault):
    """RSS after storing 1, 10, 100, ... agents (each one turn of `words` distinct words), and kvault's
    pool and KV store from /health at the same points."""
    srv = Server(argv, name)
    rows = []
    try:
        chat(srv.port, "warm up " + text_of(20, 999), 4)
        stored = 0
        for target in [0] + list(steps):
            while stored < target:
                headers = {"X-Agent-Id": f"mem-{stored}"} if is_kvault else None
                chat(srv.port, f"Agent {stored} memo: " + rand_text(words, 20000 + stored), 4, headers=headers)
                stored += 1
            row = measure(srv, target, is_kvault)
            rows.append(row)
            log(f"{name} memory agents={target}: RSS {row['VmRSS']:.0f} MiB (peak {row['VmHWM']:.0f}, anon "
                f"{row.get('RssAnon', 0):.0f})" + (f", RAM tier {row['store']['ram_bytes'] / 2**20:.1f} MiB, disk "
                                                  f"{row['store']['disk_bytes'] / 2**20:.1f} MiB" if is_kvault else ""))
        return rows
    finally:
        srv.stop()


def run(ctx):
    log(f"suite: memory with {ctx.mem_agents} agents stored")
    threads = str(ctx.args.threads)
    kv_flags = ["--pool-tokens", "8192", "--resident-seqs", "8", "--ctx-size", "4096", "--ram-cache", str(ctx.mem_ram)]
    ls_flags = ["-c", "8192", "-np", "8", "-kvu", "--cache-ram", str(ctx.mem_ram)]
    mem = {"config": {"words": ctx.mem_words, "steps": ctx.mem_agents, "kvault_flags": " ".join(kv_flags),
                      "llama_server_flags": " ".join(ls_flags)}}
    mem["kvault"] = memory([ctx.kvault, "serve", "--model", ctx.model, "--threads", threads,
                            "--log-level", "warn", *kv_flags], "kvault-mem", ctx.mem_agents, ctx.mem_words, True)
    if ctx.tools:
        mem["llama-server"] = memory([os.path.join(ctx.tools, "llama-server"), "-m", ctx.model, "-t", threads,
                                      "--host", "127.0.0.1", *ls_flags], "llama-server", ctx.mem_agents,
                                     ctx.mem_words, False)
    ctx.r["memory"] = mem
