"""blockio: saving and restoring KV blocks with libllama's sequence-state API, by block size, and
whether restored KV reproduces the original logits bit for bit (kvault-block-bench), next to the
disk's own sequential bandwidth."""
import json
import os
import subprocess

from ..machine import disk_bandwidth
from ..util import CACHE, log


def block_io(kvault, model, threads, context):
    exe = os.path.join(os.path.dirname(kvault), "kvault-block-bench")
    res = subprocess.run([exe, model, str(context), str(threads)], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    for row in rows[1:]:
        log(f"block io {row['block_tokens']}: save {row['save_ms_per_block']:.3f} ms/block, "
            f"load {row['load_ms_per_block']:.3f} ms/block, identical={row['logits_identical']}")
    return {"cmd": f"kvault-block-bench MODEL {context} {threads}", "prefill": rows[0], "sizes": rows[1:]}


def run(ctx):
    log("suite: block save/load")
    ctx.r["blockio"] = block_io(ctx.kvault, ctx.model, ctx.args.threads, 512 if ctx.smoke else 4096)
    ctx.r["blockio"]["disk"] = disk_bandwidth(CACHE, 16 if ctx.smoke else 256)
