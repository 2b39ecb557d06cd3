#!/usr/bin/env python3
"""Does kvault's next turn right after a long cold turn pay for that turn's block writes?

Per repetition, two fresh servers (the resume suite's flags) and two agents of WORDS words: cold
turn, then the next turn sent at once ("now", most of the cold turn's blocks still queued for the
disk) or after /health's pending_writes reached 0 plus 2 s ("idle"). Prints both per repetition.
Manual experiment, not part of `make bench` (docs/architecture.md, "Not done yet").

  /usr/bin/python3 bench/next_turn_after_writes.py [WORDS=8000] [REPS=3]
  KV=path/to/kvault KV_ARGS="--extra flags" ... to try another binary or flags.
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvbench.client import chat, get_json  # noqa: E402
from kvbench.servers import Server, ensure_model  # noqa: E402
from kvbench.suites.resume import resume_kvault_argv  # noqa: E402
from kvbench.util import LONG, ROOT, text_of  # noqa: E402

words = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
kvault = os.environ.get("KV", os.path.join(ROOT, "build", "bin", "kvault"))
model = ensure_model(kvault, "bench")


def turns(seed):
    first = [{"role": "user", "content": f"agent {seed}: " + text_of(words, seed)}]
    return first, first + [{"role": "assistant", "content": "answer 0"}, {"role": "user", "content": "question 1"}]


for rep in range(reps):
    res = {}
    for i, mode in enumerate(("now", "idle")):
        d = tempfile.mkdtemp(prefix="kvault-next-turn-")
        argv, _ = resume_kvault_argv(kvault, model, 2, words)
        argv += ["--cache-dir", d]
        srv = Server(argv + os.environ.get("KV_ARGS", "").split(), "kvault-next-turn")
        try:
            first, second = turns(7000 + 2 * rep + i)
            _, cold = chat(srv.port, first, 1, timeout=LONG)
            t0 = time.time()
            if mode == "idle":
                while get_json(srv.port, "/health")["kv_store"]["pending_writes"] > 0:
                    time.sleep(0.2)
                time.sleep(2)
            waited = time.time() - t0
            pending = get_json(srv.port, "/health")["kv_store"]["pending_writes"]
            _, t = chat(srv.port, second, 1)
            res[mode] = (cold, waited, t, pending)
        finally:
            srv.stop()
            shutil.rmtree(d, ignore_errors=True)
    print(f"rep {rep}: " + "  ".join(f"{m}: cold {c:.1f}s waited {w:.1f}s next {t:.3f}s (pending writes {p})"
                                      for m, (c, w, t, p) in res.items()), flush=True)
