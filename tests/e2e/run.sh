#!/usr/bin/env bash
# End-to-end tests: the real kvault server binary, driven by the official OpenAI and Anthropic SDKs
# and by Claude Code itself.
#
#   KVAULT_BIN=build/bin/kvault KVAULT_TEST_MODEL=/tmp/tiny.gguf KVAULT_TEST_TMP=/tmp/kvault-e2e \
#     tests/e2e/run.sh [test files...]
#
# KVAULT_BIN          the kvault server binary
# KVAULT_TEST_MODEL   a .gguf model (e.g. `kvault model make-demo --size tiny --out X --seed 1`)
# KVAULT_TEST_TMP     scratch directory; each server gets a fresh --data-dir in it, named after its
#                     suite (openai-XXXXXX, anthropic-429-XXXXXX, ...), with the server's output in
#                     server.log; they are left there for debugging
# KVAULT_E2E_NO_AUTH  1: start servers without --api-key (the auth and tenant tests then skip)
#
# Test files run one at a time (each starts its own servers; at most two run at once). Without
# arguments: every *.test.mjs. The dashboard's browser test, dashboard.browser.mjs (Chromium through
# puppeteer-core), is its own ctest (e2e.dashboard): run.sh dashboard.browser.mjs.
set -euo pipefail

missing=()
for var in KVAULT_BIN KVAULT_TEST_MODEL KVAULT_TEST_TMP; do
  if [[ -z "${!var:-}" ]]; then missing+=("$var"); fi
done
if (( ${#missing[@]} )); then
  echo "run.sh: required environment variable(s) not set: ${missing[*]}" >&2
  echo "  KVAULT_BIN=<kvault binary> KVAULT_TEST_MODEL=<model.gguf> KVAULT_TEST_TMP=<scratch dir> $0" >&2
  exit 2
fi

# Relative paths are taken from the caller's directory, before the cd below.
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
KVAULT_BIN="$(abspath "$KVAULT_BIN")"
KVAULT_TEST_MODEL="$(abspath "$KVAULT_TEST_MODEL")"
KVAULT_TEST_TMP="$(abspath "$KVAULT_TEST_TMP")"
export KVAULT_BIN KVAULT_TEST_MODEL KVAULT_TEST_TMP

if [[ ! -x "$KVAULT_BIN" ]]; then echo "run.sh: KVAULT_BIN=$KVAULT_BIN is not an executable file" >&2; exit 2; fi
if [[ ! -f "$KVAULT_TEST_MODEL" ]]; then echo "run.sh: KVAULT_TEST_MODEL=$KVAULT_TEST_MODEL is not a file" >&2; exit 2; fi
mkdir -p "$KVAULT_TEST_TMP"

# Test files given as arguments: relative to the caller's directory, or names inside tests/e2e.
files=()
for f in "$@"; do
  if [[ -f "$f" ]]; then files+=("$(abspath "$f")"); else files+=("$f"); fi
done

cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ ! -d node_modules || package-lock.json -nt node_modules ]]; then
  npm ci --no-audit --no-fund --prefer-offline
fi
# Claude Code's package puts its native binary in place with a postinstall script; an npm that
# skipped install scripts leaves a small placeholder: run the script.
claude_bin=node_modules/@anthropic-ai/claude-code/bin/claude.exe
if [[ -f "$claude_bin" ]] && (( $(stat -c %s "$claude_bin") < 1000000 )); then
  (cd node_modules/@anthropic-ai/claude-code && node install.cjs)
fi

if (( ${#files[@]} == 0 )); then files=(*.test.mjs); fi
exec node --test --test-concurrency=1 "${files[@]}"
