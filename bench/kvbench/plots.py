"""The PNG plots of docs/benchmarks.md (docs/img/), one function per suite. matplotlib is imported
only here and only when plots are made: the drivers need nothing beyond the standard library."""
import importlib
import os
import shutil
import subprocess
import sys

from .util import log

PLOTS = {"decode": "decode-throughput.png", "resume": "resume-ttft.png", "roundrobin": "roundrobin-ttft.png",
         "memory": "memory-rss.png"}


def load_pyplot(allow_install):
    """matplotlib's pyplot (Agg backend), or None. Imported only here: the drivers need nothing
    beyond the standard library. When allowed (a full run as root), installs python3-matplotlib."""
    def attempt():
        try:
            importlib.invalidate_caches()
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            return plt
        except ImportError:
            return None
    plt = attempt()
    if plt is None and allow_install and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("matplotlib is missing: apt-get install -y python3-matplotlib (for the plots)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-matplotlib"]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
        plt = attempt()
    if plt is None:
        log("plots skipped: matplotlib is not importable by " + sys.executable +
            " (Debian: apt-get install python3-matplotlib and run with /usr/bin/python3; or pip install matplotlib)")
    return plt


def plot_decode(plt, d):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    def line(series, label, style):
        xs = sorted((int(n) for n in series if n.isdigit()))
        if not xs:
            return
        med = [series[str(n)]["median"] for n in xs]
        err = [[m - series[str(n)]["min"] for n, m in zip(xs, med)], [series[str(n)]["max"] - m for n, m in zip(xs, med)]]
        ax.errorbar(xs, med, yerr=err, fmt=style, capsize=3, label=label)
    line(d["kvault"], "kvault (decode steps)", "o-")
    if d.get("batched_bench"):
        line({n: v for n, v in d["batched_bench"].items() if n != "cmd"}, "llama-batched-bench S_TG", "s--")
    e2e = {n: v["end_to_end"] for n, v in d["kvault"].items() if v.get("end_to_end")}
    if e2e:
        line(e2e, "kvault end to end (incl. prefill, HTTP)", "^:")
    if d.get("llama_bench_tg"):
        ax.plot([1], [d["llama_bench_tg"]["median"]], "kx", markersize=9, label="llama-bench tg")
    if d.get("kvault_deterministic_single", {}).get("1"):
        ax.plot([1], [d["kvault_deterministic_single"]["1"]["median"]], "D", label="kvault --deterministic")
    ax.set_xscale("log", base=2)
    xs = sorted(int(n) for n in d["kvault"])
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrent agents")
    ax.set_ylabel("aggregate decode tokens/s")
    ax.set_title("Decode throughput vs agents")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_resume(plt, rs):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {"cold": "tab:gray", "resident": "tab:green", "ram": "tab:blue", "restart": "tab:red",
              "restart_slot": "tab:purple"}
    names = {"kvault": {"cold": "cold", "resident": "resident", "ram": "RAM tier", "restart": "restart (disk)"},
             "llama-server": {"cold": "cold", "resident": "resident (cache_prompt)", "restart": "restart (recomputed)",
                              "restart_slot": "restart + slot file"}}
    for server, fmt in (("kvault", "o-"), ("llama-server", "s--")):
        data = rs.get(server) or {}
        xs = sorted(int(n) for n in data)
        for path in names[server]:
            pts = [(x, data[str(x)][path]) for x in xs if data[str(x)].get(path)]
            if not pts:
                continue
            med = [v["median"] for _, v in pts]
            err = [[m - v["min"] for m, (_, v) in zip(med, pts)], [v["max"] - m for m, (_, v) in zip(med, pts)]]
            ax.errorbar([x for x, _ in pts], med, yerr=err, fmt=fmt, color=colors[path], capsize=3,
                        label=f"{server} {names[server][path]}", alpha=1.0 if server == "kvault" else 0.55)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted(int(n) for n in rs.get("kvault", {}))
    ax.set_xticks(ticks, [str(x) for x in ticks])
    ax.set_xlabel("context tokens")
    ax.set_ylabel("next-turn time to first token (s)")
    ax.set_title("Resuming an agent: TTFT by where its KV is")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_roundrobin(plt, rr):
    runs = rr.get("runs") or {}
    ns = sorted(runs, key=int)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    colors = {"kvault": "tab:blue", "llama-server": "tab:orange"}
    for ax, (title, cold) in zip(axes, (("next turns (turn ≥ 2)", False), ("first turn (cold)", True))):
        handles = {}
        for i, n in enumerate(ns):
            for j, server in enumerate(("kvault", "llama-server")):
                res = runs[n].get(server)
                if not res:
                    continue
                vals = [q["ttft_s"] for q in res["requests"] if (q["turn"] == 0) == cold]
                if not vals:
                    continue
                b = ax.boxplot([vals], positions=[i * 3 + j], widths=0.8, patch_artist=True, whis=(5, 95),
                               showfliers=True, flierprops={"markersize": 3})
                for patch in b["boxes"]:
                    patch.set_facecolor(colors[server])
                    patch.set_alpha(0.6)
                handles[server] = b["boxes"][0]
        ax.set_xticks([i * 3 + 0.5 for i in range(len(ns))], [f"{n} agents" for n in ns])
        ax.set_xlim(-1, 3 * len(ns) - 1)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        if handles:
            ax.legend(list(handles.values()), list(handles), fontsize=8)
    axes[0].set_ylabel("time to first token (s); whiskers p5–p95")
    fig.suptitle("Round robin: agents take turns, more agents than the pool holds")
    fig.tight_layout()
    return fig


def plot_memory(plt, mem):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for server, color in (("kvault", "tab:blue"), ("llama-server", "tab:orange")):
        rows = mem.get(server) or []
        if not rows:
            continue
        xs = [max(row["agents"], 0.5) for row in rows]  # 0 agents drawn at 0.5 on the log axis
        ax.plot(xs, [row["VmRSS"] for row in rows], "o-", color=color, label=f"{server} RSS")
        if all("RssAnon" in row for row in rows):
            ax.plot(xs, [row["RssAnon"] for row in rows], "s--", color=color, alpha=0.7, label=f"{server} RssAnon")
        if server == "kvault" and all("store" in row for row in rows):
            ax.plot(xs, [row["store"]["ram_bytes"] / 2**20 for row in rows], "^:", color="tab:green",
                    label="kvault RAM tier")
            ax.plot(xs, [row["store"]["disk_bytes"] / 2**20 for row in rows], "v:", color="tab:gray",
                    label="kvault disk tier (not RSS)")
    ax.set_xscale("log")
    xs = sorted({row["agents"] for rows in (mem.get("kvault") or [], mem.get("llama-server") or []) for row in rows})
    ax.set_xticks([max(x, 0.5) for x in xs], [str(x) for x in xs])
    ax.set_xlabel("agents stored")
    ax.set_ylabel("MiB")
    ax.set_title("Memory as stored agents grow")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def make_plots(r, img_dir, allow_install):
    """PNGs for the suites present in r, into img_dir; returns {suite: path} of those made."""
    wanted = {k: f for k, f in (("decode", plot_decode), ("resume", plot_resume), ("roundrobin", plot_roundrobin),
                                 ("memory", plot_memory)) if r.get(k)}
    if not wanted:
        return {}
    plt = load_pyplot(allow_install)
    if plt is None:
        return {}
    os.makedirs(img_dir, exist_ok=True)
    made = {}
    for key, fn in wanted.items():
        path = os.path.join(img_dir, PLOTS[key])
        try:
            fig = fn(plt, r[key])
            fig.savefig(path, dpi=100, metadata={"Software": None})
            plt.close(fig)
            made[key] = path
        except Exception as e:  # a plot must never cost the results
            log(f"plot {key} failed: {e!r}")
    log(f"plots written: {', '.join(made.values()) or 'none'}")
    return made
