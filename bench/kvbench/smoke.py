"""The checks of `bench.py --smoke` (part of `make test`): every suite it ran produced its section,
with the shape a real run has; no timing assertions."""


def check_blockio(ctx, r):
    assert all(row["logits_identical"] for row in r["blockio"]["sizes"]), r["blockio"]


def check_decode(ctx, r):
    assert all(v["median"] > 0 for v in r["decode"]["kvault"].values()), r["decode"]


def check_ttft(ctx, r):
    assert r["ttft"]["kvault"]["during_prefill_s"]["median"] > 0


def check_roundrobin(ctx, r):
    args = ctx.args
    for n in ctx.rr_agents:
        k = r["roundrobin"]["runs"][str(n)]["kvault"]
        assert len(k["requests"]) == n * args.rr_turns * args.rr_reps, k["requests"]
        assert all(q["ttft_s"] > 0 and q["prompt_tokens"] > 0 for q in k["requests"]), k["requests"]
        assert k["warm_cached_fraction"] > 0.5, k["warm_cached_fraction"]  # next turns reuse their KV


def check_memory(ctx, r):
    rows = r["memory"]["kvault"]
    assert [row["agents"] for row in rows] == [0] + ctx.mem_agents, rows
    assert all(row["VmRSS"] > 0 for row in rows), rows
    assert rows[-1]["store"]["disk_bytes"] > 0, rows[-1]  # the agents' blocks reached disk


def check_persist(ctx, r):
    p = r["persist"]
    assert all(v["on"]["median"] > 0 and v["off"]["median"] > 0 for v in p["agents"].values()), p
    assert p["store_on"]["disk_bytes_written"] > 0, p["store_on"]  # "on" did write to disk
    assert all(v["remote"]["median"] > 0 for v in p["agents"].values()), p  # the remote tier's row ran
    assert p["store_remote"]["bytes_written"] > 0, p["store_remote"]  # and wrote to Redis


def check_fleet(ctx, r):
    k = r["fleet"]["kvault"]
    n = ctx.fleet["agents"]
    # cold, home, after the kill, after the join, after the restart
    assert len(k["requests"]) == 5 * n * ctx.reps, k["requests"]
    assert k["moved"] and k["moved"]["n"] > 0, k  # the killed server's agents moved
    assert k["moved"]["cached_fraction"] > 0.5, k["moved"]  # and resumed from Redis
    assert k["restarted"] and k["restarted"]["cached_fraction"] > 0.5, k["restarted"]  # from its disk
    assert k.get("disk_load_mib_s") and k.get("remote_load_mib_s"), k.keys()
    assert all(q["upstream"] for q in k["requests"]), k["requests"]


CHECKS = (("blockio", check_blockio), ("decode", check_decode), ("ttft", check_ttft),
          ("roundrobin", check_roundrobin), ("fleet", check_fleet), ("memory", check_memory), ("persist", check_persist))
TITLES = (("roundrobin", "## Many agents taking turns"), ("fleet", "## A fleet"), ("memory", "## Memory with many stored"),
          ("persist", "## Persistence cost"))


def check(ctx):
    """The driver produced every section it should; prints the one-line verdict ctest reads."""
    r, suites = ctx.r, ctx.suites
    for key in suites:
        assert key in r, key
    for key, fn in CHECKS:
        if key in suites:
            fn(ctx, r)
    with open(ctx.out_md) as f:
        md = f.read()
    for key, title in TITLES:
        assert key not in suites or title in md, title
    print("bench-smoke: 1 passed, 0 failed")
