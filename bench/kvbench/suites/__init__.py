"""The suites of bench.py, one module each, in the order a run measures them. Each module has
`run(ctx)`, which measures its suite and stores it in ctx.r under its name (ctx: see cli.Run)."""
from . import blockio, decode, fleet, index, memory, persist, resume, roundrobin, swap, ttft

MODULES = {"decode": decode, "ttft": ttft, "resume": resume, "swap": swap, "index": index, "blockio": blockio,
           "roundrobin": roundrobin, "fleet": fleet, "memory": memory, "persist": persist}
