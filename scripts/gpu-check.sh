#!/usr/bin/env bash
# kvault on an NVIDIA GPU in one prepared script (issue 28): builds kvault and llama.cpp's reference
# programs with CUDA for the GPU's own architecture, makes the demo models, runs the unit and
# integration tests with full offload, then short GPU decode, resume and block save/load suites
# (bench/kvbench) against llama-batched-bench / llama-bench / llama-server: same model, same
# offload, flash attention on in both. Results and logs go under $OUT.
#
#   scripts/gpu-check.sh prepare   here, with internet: packs into .gpu-carry/ (git-ignored) what the
#                                  GPU machine cannot fetch: the pinned llama.cpp source, the two
#                                  vocabularies kvault uses, and Debian's .debs of CLI11, spdlog,
#                                  fmt, xxHash and GoogleTest (unpacked there only where missing)
#   scripts/gpu-check.sh           the check itself (on the GPU machine: the `run` tool with
#                                  carry [".gpu-carry"]; see docs/benchmarks.md, "GPU")
#
# Steps, each timed, logged and skippable (SKIP_<STEP>=1; STEPS=a,b,c runs those, in that order;
# default: all, as listed):
#   deps         unpack the carried llama.cpp source and, where headers are missing (or
#                FORCE_DEBS=1), the carried .debs into $WORK/prefix
#   build        configure (CUDA for `nvidia-smi --query-gpu=compute_cap` only, all cores, ccache
#                where present) and build kvault, its tests, kvault-block-bench and llama.cpp's
#                llama-bench, llama-batched-bench and llama-server in the same tree (ggml once;
#                SKIP_TOOLS=1 leaves the last three out, KVAULT_LLAMA_TOOLS_DIR names built ones)
#   models       the suites' model (MODEL_SIZE; default 8b: n_embd 4096, 32 layers, GQA 8, F16,
#                random weights, ~15 GB); the tests make their tiny model themselves
#   unit         ctest: the unit tests (UNIT_TESTS: a -R regex; engine tests offload the tiny model)
#   integration  ctest: the integration tests (INTEGRATION_TESTS: a -R regex; full offload)
#   health       /health of a server with the suites' model: offload, devices and their memory
#   decode       bench: decode at DECODE_AGENTS (1,8,32) vs llama-batched-bench, llama-bench tg
#   resume       bench: restart-resume vs cold TTFT at RESUME_WORDS (8000,32000) vs llama-server
#   blockio      bench: block save/load between device and host (kvault-block-bench)
#
# Environment: OUT (results; default ./gpu-check-out), CPU_ONLY=1 (a dry run without CUDA: a CPU
# build in BUILD_DIR, the tiny model, tiny suites, no offload flags unless GPU_LAYERS is set),
# BUILD_DIR (default build-gpu; build-cpu-check with CPU_ONLY), JOBS (default all cores),
# GPU_LAYERS (default -1: all), MODEL_SIZE, DECODE_AGENTS, RESUME_WORDS, BENCH_REPS (1),
# STEP_TIMEOUT (seconds per step, default 540), TOTAL_BUDGET (seconds for the whole run: a step
# gets at most what is left, one that would start with under 30 s is skipped; default none), WORK (logs, the llama.cpp source, the .debs'
# files, the models; default build-gpu-work, git-ignored, so kept between calls on a warm machine).
#
# On a machine lent for 10 minutes a call (15 in all, its start included) the steps do not fit one
# call: first `STEPS=deps,build,models TOTAL_BUDGET=570 scripts/gpu-check.sh`, then at once, while
# the machine is warm and build-gpu/ and build-gpu-work/ are still there,
# `STEPS=deps,health,resume,decode,blockio,unit,integration TOTAL_BUDGET=570 scripts/gpu-check.sh`
# (the figures first: the tests are what a CPU run already covers best).
#
# What comes back from the GPU machine is at most 8 files: $OUT holds summary.json (each step's
# seconds and exit status, the GPU, the build's flags), bench.json and bench.md (the suites'
# results, in bench.py's format), health.json (/health of a fully offloaded kvault), and
# logs.tar.gz (every step's log).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
LLAMA_TAG=$(sed -n 's/^LLAMA_TAG=//p' scripts/deps.sh)
CARRY="$ROOT/.gpu-carry"

# ---- prepare (here, with internet) -----------------------------------------------------------
if [ "${1:-}" = prepare ]; then
  set -e
  src="${KVAULT_DEPS_DIR:-$HOME/.cache/kvault}/llama.cpp-$LLAMA_TAG"
  [ -f "$src/.kvault-ok" ] || bash scripts/deps.sh
  rm -rf "$CARRY" && mkdir -p "$CARRY/debs"
  (cd "$src" && git archive --format=tar --prefix="llama.cpp-$LLAMA_TAG/" HEAD -- . ':!models' ':!docs' ':!media' |
    gzip -1 >"$CARRY/llama.cpp.tar.gz")
  (cd "$src" && tar -czf "$CARRY/vocab.tar.gz" --transform "s,^,llama.cpp-$LLAMA_TAG/," \
    models/ggml-vocab-llama-bpe.gguf models/ggml-vocab-qwen2.gguf)
  (cd "$CARRY/debs" && apt-get download -q libcli11-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 \
    libxxhash-dev libxxhash0 libgtest-dev libgmock-dev >/dev/null)
  du -sh "$CARRY"/* "$CARRY"/debs/* | sed 's/^/gpu-check: /'
  exit 0
fi

# ---- settings ----------------------------------------------------------------------------------
OUT="${OUT:-$ROOT/gpu-check-out}"
CPU_ONLY="${CPU_ONLY:-0}"
JOBS="${JOBS:-$(nproc)}"
STEP_TIMEOUT="${STEP_TIMEOUT:-540}"
WORK="${WORK:-$ROOT/build-gpu-work}"  # git-ignored (/build*/): kept between calls on a warm machine
BENCH_REPS="${BENCH_REPS:-1}"
if [ "$CPU_ONLY" = 1 ]; then
  GPU_LAYERS="${GPU_LAYERS:-}"  # unset: no offload flags anywhere (set it to try them on the CPU)
  BUILD_DIR="${BUILD_DIR:-build-cpu-check}"
  MODEL_SIZE="${MODEL_SIZE:-tiny}"
  DECODE_AGENTS="${DECODE_AGENTS:-1,2}"
  RESUME_WORDS="${RESUME_WORDS:-200}"
else
  GPU_LAYERS="${GPU_LAYERS:--1}"
  BUILD_DIR="${BUILD_DIR:-build-gpu}"
  MODEL_SIZE="${MODEL_SIZE:-8b}"
  DECODE_AGENTS="${DECODE_AGENTS:-1,8,32}"
  RESUME_WORDS="${RESUME_WORDS:-8000,32000}"
fi
LOGS="$WORK/logs"
mkdir -p "$OUT"
export KVAULT_DEPS_DIR="${KVAULT_DEPS_DIR:-$WORK/deps}"  # bench/kvbench: models and llama.cpp here
LLAMA_SRC="$KVAULT_DEPS_DIR/llama.cpp-$LLAMA_TAG"
STEPS_JSON="$WORK/steps.jsonl"

say() { echo "[gpu-check $(date +%H:%M:%S)] $*"; }

wanted() {  # wanted STEP: not skipped by SKIP_<STEP>=1
  local var="SKIP_${1^^}"
  [ "${!var:-0}" != 1 ]
}

step() {  # step NAME: run_NAME in a fresh copy of this script under STEP_TIMEOUT, logged to
  # $LOGS/NAME.log; its seconds and exit status recorded.
  local name="$1"
  if ! wanted "$name"; then
    say "$name: skipped"
    echo "{\"step\":\"$name\",\"skipped\":true}" >>"$STEPS_JSON"
    return 0
  fi
  local limit="$STEP_TIMEOUT" left
  if [ "${TOTAL_BUDGET:-0}" -gt 0 ]; then  # the whole run's seconds: a step gets what is left of them
    left=$((TOTAL_BUDGET - SECONDS - 15))
    if [ "$left" -lt 30 ]; then
      say "$name: skipped, out of time (TOTAL_BUDGET=$TOTAL_BUDGET)"
      echo "{\"step\":\"$name\",\"skipped\":\"out of time\"}" >>"$STEPS_JSON"
      return 0
    fi
    [ "$left" -lt "$limit" ] && limit="$left"
  fi
  say "$name: start, at most ${limit}s (log: $LOGS/$name.log)"
  local t0 rc
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" bash "$0" __step "$name" >"$LOGS/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  echo "{\"step\":\"$name\",\"rc\":$rc,\"seconds\":$secs}" >>"$STEPS_JSON"
  if [ "$rc" = 0 ]; then say "$name: ok in ${secs}s"; else
    say "$name: FAILED (exit $rc) in ${secs}s; its log ends:"
    tail -n 25 "$LOGS/$name.log" | sed 's/^/    /'
  fi
  return 0
}

# ---- the GPU -------------------------------------------------------------------------------------
ARCH=""
GPU_DESC="none (CPU_ONLY=1)"
if [ "$CPU_ONLY" != 1 ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    say "no NVIDIA GPU visible (nvidia-smi); CPU_ONLY=1 runs the CPU dry run"
    exit 2
  fi
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' ')
  ARCH="${cap/./}"  # 9.0 -> 90
  GPU_DESC=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n1)
fi

PREFIX="$WORK/prefix"
if [ -d "$PREFIX/usr" ]; then  # the unpacked .debs (deps): CMake packages, headers, libraries
  export CMAKE_PREFIX_PATH="$PREFIX/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export CPATH="$PREFIX/usr/include${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
CMAKE_FLAGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release "-DKVAULT_LLAMA_SOURCE_DIR=$LLAMA_SRC" -DKVAULT_LLAMA_TOOLS=ON
             -DKVAULT_USE_SYSTEM_LLAMA=OFF)
[ "$CPU_ONLY" != 1 ] && CMAKE_FLAGS+=(-DKVAULT_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH")
KVAULT="$ROOT/$BUILD_DIR/bin/kvault"
export KVAULT_LLAMA_TOOLS_DIR="${KVAULT_LLAMA_TOOLS_DIR:-$ROOT/$BUILD_DIR/bin}"
MODEL="$KVAULT_DEPS_DIR/models/demo-$MODEL_SIZE-42.gguf"  # where bench/kvbench looks for it
# The suites' offload flags (bench/kvbench/util.py); unset: every program's defaults, as make bench.
if [ -n "$GPU_LAYERS" ]; then export KVBENCH_GPU_LAYERS="$GPU_LAYERS"; else unset KVBENCH_GPU_LAYERS; fi
BENCH=(python3 bench/bench.py --kvault "$KVAULT" --threads "$JOBS" --model-size "$MODEL_SIZE" --exact-reps
       --reps "$BENCH_REPS" --no-plots --out-json "$OUT/bench.json" --out-md "$OUT/bench.md")

# ---- the steps (each runs in its own copy of this script: `bash gpu-check.sh __step NAME`) --------
run_deps() {
  if [ ! -f "$LLAMA_SRC/.kvault-ok" ]; then
    mkdir -p "$KVAULT_DEPS_DIR"
    if [ -f "$CARRY/llama.cpp.tar.gz" ]; then
      tar -xzf "$CARRY/llama.cpp.tar.gz" -C "$KVAULT_DEPS_DIR" || return 1
      tar -xzf "$CARRY/vocab.tar.gz" -C "$KVAULT_DEPS_DIR" || return 1
      touch "$LLAMA_SRC/.kvault-ok"
    elif [ -f "$HOME/.cache/kvault/llama.cpp-$LLAMA_TAG/.kvault-ok" ]; then
      ln -sfn "$HOME/.cache/kvault/llama.cpp-$LLAMA_TAG" "$LLAMA_SRC"
    else
      echo "no llama.cpp source: run 'scripts/gpu-check.sh prepare' here and carry .gpu-carry" >&2
      return 1
    fi
  fi
  echo "llama.cpp: $LLAMA_SRC"
  # The headers kvault needs; any missing: unpack the carried .debs (Debian 12's) into $PREFIX.
  local missing=0 h d tool
  for h in CLI/CLI.hpp spdlog/spdlog.h fmt/format.h xxhash.h gtest/gtest.h gmock/gmock.h; do
    [ -f "/usr/include/$h" ] || { echo "missing /usr/include/$h"; missing=1; }
  done
  [ "${FORCE_DEBS:-0}" = 1 ] && missing=1  # tests the .debs where the headers are installed
  if [ "$missing" = 1 ]; then
    ls "$CARRY"/debs/*.deb >/dev/null || return 1
    mkdir -p "$PREFIX"
    for d in "$CARRY"/debs/*.deb; do dpkg-deb -x "$d" "$PREFIX" || return 1; done
    echo "unpacked $(find "$CARRY/debs" -name '*.deb' | wc -l) .debs into $PREFIX"
  fi
  for tool in cmake ninja g++ python3 ccache nvcc; do
    printf '%-8s %s\n' "$tool" "$(command -v "$tool" || echo missing)"
  done
  if [ "$CPU_ONLY" != 1 ]; then nvidia-smi; fi
}

run_build() {
  set -e
  [ -f "$BUILD_DIR/build.ninja" ] || cmake -S . -B "$BUILD_DIR" "${CMAKE_FLAGS[@]}"
  cmake --build "$BUILD_DIR" -j "$JOBS" --target kvault kvault-block-bench kvault_unit_tests kvault_integration_tests
  if [ "${SKIP_TOOLS:-0}" != 1 ]; then
    cmake --build "$BUILD_DIR" -j "$JOBS" --target llama-bench llama-batched-bench llama-server
  fi
  if command -v ccache >/dev/null 2>&1; then ccache -s | head -n 8; fi
}

run_models() {  # the tiny test model is made by the tests' fixture; here the suites' model
  set -e
  mkdir -p "$(dirname "$MODEL")"
  [ -f "$MODEL" ] || "$KVAULT" model make-demo --size "$MODEL_SIZE" --seed 42 --out "$MODEL"
  ls -la "$MODEL"
}

# Full offload: kvault's default --gpu-layers is -1 (all layers) in a GPU build.
# UNIT_TESTS / INTEGRATION_TESTS: ctest -R regexes (default: every test of the binary).
run_unit() {
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 240 -R "${UNIT_TESTS:-^unit\.}"
}
run_integration() {
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 240 -R "${INTEGRATION_TESTS:-^integration\.}"
}

run_health() {  # /health of the offloaded server: offload, the devices and their memory
  set -e
  local port=18931 pid
  "$KVAULT" serve --model "$MODEL" --port "$port" --gpu-layers "${GPU_LAYERS:--1}" --no-persist --pool-tokens 8192 &
  pid=$!
  for _ in $(seq 1 600); do
    python3 -c 'import sys, urllib.request as u; open(sys.argv[2], "wb").write(u.urlopen(sys.argv[1]).read())' \
      "http://127.0.0.1:$port/health" "$OUT/health.json" 2>/dev/null && break
    sleep 0.5
  done
  kill "$pid"
  wait "$pid" || true
  python3 -c 'import json, sys; h = json.load(open(sys.argv[1])); print(json.dumps({k: h[k] for k in ("offload", "devices")}, indent=1))' \
    "$OUT/health.json"
}

run_decode() { "${BENCH[@]}" --suites decode --decode-agents "$DECODE_AGENTS"; }
run_resume() {
  "${BENCH[@]}" --suites resume --resume-words "$RESUME_WORDS" --resume-reps "$BENCH_REPS" --resume-accumulate
}
run_blockio() { "${BENCH[@]}" --suites blockio; }

if [ "${1:-}" = __step ]; then
  "run_$2"
  exit $?
fi

# ---- main ------------------------------------------------------------------------------------------
mkdir -p "$LOGS"
: >"$STEPS_JSON"
if [ "$CPU_ONLY" = 1 ]; then
  say "CPU dry run: no CUDA; $BUILD_DIR, the $MODEL_SIZE model, tiny suites"
else
  say "GPU: $GPU_DESC -> CMAKE_CUDA_ARCHITECTURES=$ARCH; model $MODEL_SIZE; --gpu-layers $GPU_LAYERS"
  nvidia-smi -L
fi
summarize() {  # summary.json and logs.tar.gz, rewritten after every step (a call cut short keeps them)
  python3 - "$STEPS_JSON" "$OUT/summary.json" "$GPU_DESC" "$ARCH" "$MODEL_SIZE" "$GPU_LAYERS" "$CPU_ONLY" "$1" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = {"gpu": sys.argv[3], "cuda_architectures": sys.argv[4], "model_size": sys.argv[5],
       "gpu_layers": int(sys.argv[6]) if sys.argv[6] else None, "cpu_only": sys.argv[7] == "1", "steps": steps}
json.dump(out, open(sys.argv[2], "w"), indent=1)
if sys.argv[8] == "table":
    print(f"{'step':<12} {'status':<10} {'seconds':>8}")
    for s in steps:
        st = s.get("skipped") or ("ok" if s["rc"] == 0 else f"exit {s['rc']}")
        st = "skipped" if st is True else st
        print(f"{s['step']:<12} {st:<10} {s.get('seconds', ''):>8}")
PY
  tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
}
IFS=, read -r -a steps <<<"${STEPS:-deps,build,models,unit,integration,health,decode,resume,blockio}"
for s in "${steps[@]}"; do
  if declare -F "run_$s" >/dev/null; then step "$s"; else say "unknown step '$s'"; exit 2; fi
  summarize quiet
done
summarize table

say "results in $OUT: $(cd "$OUT" && echo *)"
python3 -c 'import json, sys; sys.exit(any(s.get("rc", 0) for s in json.load(open(sys.argv[1]))["steps"]))' \
  "$OUT/summary.json"
