#!/usr/bin/env bash
# Installs what kvault needs to build and test on Debian 12, and provides the pinned llama.cpp
# source tree. Idempotent: a second run only checks. Says what it installs.
#
#   KVAULT_DEPS_DIR   where the llama.cpp source and its npm tarball live (default ~/.cache/kvault)
#
# llama.cpp is pinned to the release that npm package node-llama-cpp@3.21.1 ships as a git
# bundle; the tarball's sha512 integrity is checked before anything is unpacked.
set -euo pipefail

NODE_LLAMA_CPP_VERSION=3.21.1
NODE_LLAMA_CPP_INTEGRITY="sha512-E3N0Ev2Va0wzydvXYFwM9Hvyo07PoWjt8T/9GMc43Cvt8YkV/NU/tYUgEMC1grTPv2o9PRjQi0G3Wb5P/awiMg=="
LLAMA_TAG=v0.4.0

CACHE_DIR="${KVAULT_DEPS_DIR:-$HOME/.cache/kvault}"
LLAMA_DIR="$CACHE_DIR/llama.cpp-$LLAMA_TAG"

say() { echo "deps: $*"; }

# ---- Debian packages -------------------------------------------------------------------------
# build: compiler, cmake, ninja, ccache (cheap rebuilds of llama.cpp in fresh clones), git (bundle)
# libs:  CLI11 (command line), spdlog+fmt (logging), xxHash (KV block keys), GoogleTest (tests),
#        hiredis (the shared remote KV tier, --remote-cache)
# redis-server: the remote tier's server, started by the tests on loopback ports
# tools: nodejs+npm (fetches the pinned llama.cpp; runs the SDK end-to-end tests), curl, python3
#        (the benchmark driver, standard library only)
PACKAGES=(build-essential g++ cmake ninja-build ccache git pkg-config ca-certificates curl python3
          libcli11-dev libspdlog-dev libfmt-dev libxxhash-dev libgtest-dev libgmock-dev
          libhiredis-dev redis-server)
need_node=0
command -v node >/dev/null 2>&1 || need_node=1
command -v npm >/dev/null 2>&1 || need_node=1
[ "$need_node" = 1 ] && PACKAGES+=(nodejs npm)
# nginx: the fleet's router (deploy/nginx/kvault.conf, scripts/fleet.sh; the fleet tests run a real
# one on loopback ports). On a host with systemd, Debian's package also enables its own nginx
# service (the default site, port 80); the fleet's nginx runs apart from it.
PACKAGES+=(nginx)
# chromium: test-only, the browser that tests/e2e/dashboard.browser.mjs drives (through npm
#           puppeteer-core, pinned in tests/e2e/package-lock.json) to check the /ui dashboard
PACKAGES+=(chromium)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "deps: need root to install ${missing[*]}: run as root, or install sudo, or: apt-get install -y ${missing[*]}" >&2
      exit 1
    }
    SUDO="sudo"
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

# ---- pinned llama.cpp source -----------------------------------------------------------------
if [ -f "$LLAMA_DIR/.kvault-ok" ]; then
  say "llama.cpp $LLAMA_TAG present at $LLAMA_DIR"
  exit 0
fi

mkdir -p "$CACHE_DIR/npm"
tarball="$CACHE_DIR/npm/node-llama-cpp-$NODE_LLAMA_CPP_VERSION.tgz"
integrity_of() { node -e 'const c=require("crypto"),f=require("fs");
  process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1"; }

if [ ! -f "$tarball" ] || [ "$(integrity_of "$tarball")" != "$NODE_LLAMA_CPP_INTEGRITY" ]; then
  say "fetching node-llama-cpp@$NODE_LLAMA_CPP_VERSION from the npm registry (35 MB)"
  rm -f "$tarball"
  (cd "$CACHE_DIR/npm" && npm pack "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" --silent >/dev/null)
fi
got="$(integrity_of "$tarball")"
if [ "$got" != "$NODE_LLAMA_CPP_INTEGRITY" ]; then
  echo "deps: integrity check FAILED for $tarball" >&2
  echo "deps:   expected $NODE_LLAMA_CPP_INTEGRITY" >&2
  echo "deps:   got      $got" >&2
  exit 1
fi
say "tarball integrity ok"

work="$(mktemp -d "$CACHE_DIR/unpack.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work" package/llama/gitRelease.bundle package/llama/llama.cpp.info.json
tag="$(node -e 'process.stdout.write(require(process.argv[1]).tag)' "$work/package/llama/llama.cpp.info.json")"
if [ "$tag" != "$LLAMA_TAG" ]; then
  echo "deps: node-llama-cpp@$NODE_LLAMA_CPP_VERSION ships llama.cpp $tag, expected $LLAMA_TAG" >&2
  exit 1
fi
rm -rf "$LLAMA_DIR"
git clone -q "$work/package/llama/gitRelease.bundle" "$work/llama.cpp" 2>/dev/null
mv "$work/llama.cpp" "$LLAMA_DIR"
touch "$LLAMA_DIR/.kvault-ok"
say "llama.cpp $LLAMA_TAG cloned into $LLAMA_DIR"
