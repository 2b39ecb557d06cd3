"""ttft: time to first token of a short request while another agent's 4K-token prompt is being
prefilled, kvault vs llama-server."""
import concurrent.futures
import os
import time

from ..client import chat
from ..servers import Server
from ..util import log, stats, text_of


def ttft_under_prefill(argv, name, long_words, short_words, reps):
    """Latency of a 1-token answer to a short prompt, alone and while a long prompt is prefilling."""
    srv = Server(argv, name)
    try:
        chat(srv.port, "warm up", 4)
        alone, loaded, long_tokens = [], [], 0
        for rep in range(reps):
            _, t = chat(srv.port, f"short {rep}: " + text_of(short_words, 500 + rep), 1)
            alone.append(t)
            with concurrent.futures.ThreadPoolExecutor(2) as ex:
                big = ex.submit(chat, srv.port, f"long {rep}: " + text_of(long_words, 700 + rep), 1)
                time.sleep(1.0)  # the long prompt is now being prefilled
                _, t = chat(srv.port, f"short busy {rep}: " + text_of(short_words, 800 + rep), 1)
                loaded.append(t)
                long_resp, long_t = big.result()
                long_tokens = long_resp["usage"]["prompt_tokens"]
            log(f"{name} ttft rep={rep}: alone {alone[-1]:.2f}s, during {long_tokens}-token prefill "
                f"{loaded[-1]:.2f}s (long request {long_t:.1f}s)")
        return {"alone_s": stats(alone), "during_prefill_s": stats(loaded), "long_prompt_tokens": long_tokens}
    finally:
        srv.stop()


def run(ctx):
    log("suite: ttft under prefill")
    threads = str(ctx.args.threads)
    kv_argv = [ctx.kvault, "serve", "--model", ctx.model, "--threads", threads, "--parallel", "4",
               "--pool-tokens", "16384", "--ctx-size", "8192", "--log-level", "warn"]
    t = {"kvault": ttft_under_prefill(kv_argv, "kvault", ctx.long_words, ctx.short_words, ctx.reps)}
    if ctx.tools:
        ls_argv = [os.path.join(ctx.tools, "llama-server"), "-m", ctx.model, "-t", threads, "-c", "16384",
                   "-np", "4", "-kvu", "--host", "127.0.0.1"]
        t["llama-server"] = ttft_under_prefill(ls_argv, "llama-server", ctx.long_words, ctx.short_words, ctx.reps)
    ctx.r["ttft"] = t
