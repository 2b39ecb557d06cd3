"""bench.py's command line and the order of a run: the arguments, the settings they imply (a smoke
run's are tiny), private copies of the binaries, then each suite asked for, saved as it finishes,
and the outputs."""
import argparse
import os
import tempfile

from . import results, smoke
from .machine import llama_tag, machine
from .servers import ensure_model, llama_tools, model_meta, private_binaries
from .suites import MODULES
from .util import ROOT, SUITES, int_list


def build_parser(description):
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model, seconds; output to a temp dir")
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--exact-reps", action="store_true",
                    help="use --reps as given, even below 3 (short GPU checks; rows then rest on fewer samples)")
    ap.add_argument("--model-size", default=None,
                    help="demo model shape (kvault model make-demo --size; default bench, tiny with --smoke; "
                         "8b for GPUs)")
    ap.add_argument("--kvault", default=os.path.join(ROOT, "build", "bin", "kvault"))
    ap.add_argument("--out-json", default=None)
    ap.add_argument("--out-md", default=None)
    ap.add_argument("--plots-only", action="store_true",
                    help="run nothing: regenerate the plots and the markdown from the results JSON (--out-json)")
    ap.add_argument("--no-plots", action="store_true", help="no PNG plots")
    ap.add_argument("--long", action="store_true",
                    help="roundrobin also with 128 agents (about 80 min on 2 cores); resume also at 16K and 32K "
                         "tokens of context (hours: cold prefill is quadratic)")
    ap.add_argument("--decode-agents", default=None, help="decode: concurrent agent counts (default 1,2,3,4,5,8,16)")
    ap.add_argument("--resume-words", default=None,
                    help="resume: the conversations' sizes in words, about one token each (default 2000,4000,8000; "
                         "also 16000,32000 with --long); rows for other sizes are kept from earlier runs")
    ap.add_argument("--resume-reps", type=int, default=None,
                    help="resume: repetitions in this run (default: --reps); fewer than 3 only with "
                         "--resume-accumulate, which adds them to the samples of earlier runs")
    ap.add_argument("--resume-accumulate", action="store_true",
                    help="resume: add this run's samples of each size to those stored for it from earlier runs "
                         "on the same machine (every repetition is checkpointed; a row says how many it has)")
    ap.add_argument("--rr-agents", default=None, help="roundrobin agent counts (default 8,32; 8,32,128 with --long)")
    ap.add_argument("--rr-context", default=None,
                    help="roundrobin: each agent's context in tokens, system prompt included, MIN-MAX (default 2000-4000)")
    ap.add_argument("--rr-system", type=int, default=None, help="roundrobin: shared system prompt, words (default 1000)")
    ap.add_argument("--rr-turns", type=int, default=3, help="roundrobin: turns per agent (the first is cold)")
    ap.add_argument("--rr-gen", type=int, default=None, help="roundrobin: max_tokens per turn (default 16)")
    ap.add_argument("--rr-reps", type=int, default=1, help="roundrobin: runs per agent count (requests pooled)")
    ap.add_argument("--rr-pool-tokens", type=int, default=None,
                    help="roundrobin: KV pool of both servers in tokens (default 16384: ~4 agents)")
    ap.add_argument("--rr-ram-mib", type=int, default=1024,
                    help="roundrobin: kvault --ram-cache and llama-server --cache-ram, MiB")
    ap.add_argument("--fleet-agents", type=int, default=None, help="fleet: agents (default 32; 6 with --smoke)")
    ap.add_argument("--fleet-context", default=None,
                    help="fleet: each agent's context in tokens, MIN-MAX (default 2500-3500)")
    ap.add_argument("--mem-agents", default=None, help="memory: agents stored at each step (default 1,10,100)")
    ap.add_argument("--mem-words", type=int, default=None, help="memory: words of each agent's turn (default 300)")
    ap.add_argument("--mem-ram-mib", type=int, default=None,
                    help="memory: kvault --ram-cache and llama-server --cache-ram, MiB (default 64)")
    ap.add_argument("--persist-agents", default=None, help="persist: concurrent agents (default 1,8)")
    return ap


def parse(description):
    """The arguments and the set of suites to run (exits with a usage error on a bad combination)."""
    ap = build_parser(description)
    args = ap.parse_args()
    if args.resume_reps is not None and args.resume_reps < 3 and not args.resume_accumulate:
        ap.error("--resume-reps below 3 needs --resume-accumulate (a row is the median of >= 3 repetitions)")
    suites = set(args.suites.split(","))
    unknown = suites - set(SUITES)
    if unknown:
        ap.error(f"unknown suites {sorted(unknown)}; known: {','.join(SUITES)}")
    return args, suites


def plots_only(args):
    """Nothing measured: the plots and the markdown again, from the results JSON."""
    out_json = args.out_json or os.path.join(ROOT, "bench", "results", "latest.json")
    out_md = args.out_md or os.path.join(ROOT, "docs", "benchmarks.md")
    results.write_outputs(results.load_json(out_json), None, out_md, set(), True, True)


class Run:
    """One run's settings, what it found (model, llama.cpp tools) and its results `r`: the context
    each suite's run(ctx) reads."""

    def __init__(self, args, suites):
        smoke = self.smoke = args.smoke
        self.args, self.suites = args, suites
        self.size = args.model_size or ("tiny" if smoke else "bench")
        self.agents = int_list(args.decode_agents) if args.decode_agents else (
            [1, 2, 4] if smoke else [1, 2, 3, 4, 5, 8, 16])
        self.prompt_words, self.gen_tokens = (20, 16) if smoke else (100, 128)
        self.long_words, self.short_words = (300, 10) if smoke else (4000, 20)
        self.reps = 1 if smoke else (max(1, args.reps) if args.exact_reps else max(3, args.reps))
        self.out_json = args.out_json or (os.path.join(tempfile.mkdtemp(prefix="kvault-bench-"), "results.json")
                                          if smoke else os.path.join(ROOT, "bench", "results", "latest.json"))
        self.out_md = args.out_md or (os.path.join(os.path.dirname(self.out_json), "benchmarks.md") if smoke
                                      else os.path.join(ROOT, "docs", "benchmarks.md"))
        self.roundrobin_settings(args)
        self.mem_agents = int_list(args.mem_agents) if args.mem_agents else ([1, 3, 6] if smoke else [1, 10, 100])
        self.mem_words = args.mem_words or (40 if smoke else 300)
        self.mem_ram = args.mem_ram_mib or (1 if smoke else 64)
        self.persist_agents = int_list(args.persist_agents) if args.persist_agents else ([2] if smoke else [1, 8])
        self.r = {}

    def roundrobin_settings(self, args):
        smoke = self.smoke
        self.rr_agents = int_list(args.rr_agents) if args.rr_agents else (
            [4] if smoke else [8, 32] + ([128] if args.long else []))
        self.rr_context = tuple(int_list((args.rr_context or ("150-250" if smoke else "2000-4000")).replace("-", ",")))
        assert len(self.rr_context) == 2 and self.rr_context[0] <= self.rr_context[1], "--rr-context MIN-MAX"
        self.rr_system = args.rr_system if args.rr_system is not None else (60 if smoke else 1000)
        self.rr_gen = args.rr_gen or (8 if smoke else 16)
        self.rr_pool = args.rr_pool_tokens or (1024 if smoke else 16384)
        self.rr_slots = 2 if smoke else 4
        # an agent's longest request, rounded up
        self.rr_ctx = -(-(self.rr_context[1] + args.rr_turns * 60 + self.rr_gen + 256) // 256) * 256

    def checkpoint(self, suite):
        results.checkpoint(self.r, suite, self.suites, self.out_json)


def prepare(ctx):
    """The binaries, the model, llama.cpp's tools (not for a smoke run) and the results this run
    adds to (a partial run updates only the suites it runs)."""
    args = ctx.args
    # the block I/O suite's program is copied with kvault
    ctx.kvault = args.kvault = private_binaries(args.kvault, "kvault-bench-bin-", ("kvault-block-bench",))
    ctx.model = ensure_model(ctx.kvault, ctx.size)
    ctx.tools = None if ctx.smoke else llama_tools()
    meta = model_meta(ctx.kvault, ctx.model)
    desc, n_params = meta["description"], meta.get("n_params")
    if not ctx.smoke and os.path.exists(ctx.out_json):
        ctx.r = results.load_json(ctx.out_json)
    ctx.r.update({"smoke": ctx.smoke, "machine": machine(), "model": os.path.basename(ctx.model),
                  "model_desc": desc, "model_params": n_params, "threads": args.threads, "llama_tag": llama_tag(),
                  "prompt_tokens": ctx.prompt_words + 30, "gen_tokens": ctx.gen_tokens,
                  "short_words": ctx.short_words, "gpu_layers": os.environ.get("KVBENCH_GPU_LAYERS")})


def main(description=None):
    args, suites = parse(description)
    if args.plots_only:
        plots_only(args)
        return
    ctx = Run(args, suites)
    prepare(ctx)
    for name in SUITES:  # each suite is saved as soon as it is done
        if name in suites:
            MODULES[name].run(ctx)
        ctx.checkpoint(name)
    # plots: a full run may install matplotlib; a smoke run draws them only if it is there already
    results.write_outputs(ctx.r, ctx.out_json, ctx.out_md, suites, not args.no_plots, not ctx.smoke)
    if ctx.smoke:  # the smoke run checks that the driver produced every section it should
        smoke.check(ctx)
