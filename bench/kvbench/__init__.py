"""kvault's benchmark drivers as a package (standard library only; matplotlib optional, for plots).

  util        paths, logging, prompt text, statistics
  machine     the machine, the llama.cpp source, the disk under the cache
  client      the HTTP client: chat (whole and streamed), JSON GET/POST
  servers     a server process on a free port, the demo models, private copies of the binaries
  suites/     one module per suite of `bench.py`: what it measures and its `run(ctx)`
  results     the results JSON (load, save, per-suite stamps) and writing every output
  plots       the PNG plots (matplotlib, imported only when plots are made)
  render, render_agents   docs/benchmarks.md, one small function per section
  smoke       the checks of `bench.py --smoke`
  cli         `bench.py`'s command line and the order of a run

bench/bench.py is the entry point; bench/peers.py and the experiments import from here.
"""
