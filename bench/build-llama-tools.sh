#!/usr/bin/env bash
# Builds llama.cpp's own reference programs (llama-bench, llama-batched-bench, llama-server) from
# the same pinned source tree kvault uses, into a cache directory outside the repository, so that
# benchmarks compare kvault with llama.cpp at the same version, flags and machine.
# Prints the directory holding the binaries. Rebuilds are ccache hits (where ccache is installed).
#   KVAULT_LLAMA_TOOLS_CMAKE_FLAGS  more CMake flags for a fresh build directory, e.g.
#                                   "-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90" (scripts/gpu-check.sh)
set -euo pipefail
CACHE_DIR="${KVAULT_DEPS_DIR:-$HOME/.cache/kvault}"
LLAMA_TAG=$(sed -n 's/^LLAMA_TAG=//p' "$(dirname "$0")/../scripts/deps.sh")  # the one pin
SRC="$CACHE_DIR/llama.cpp-$LLAMA_TAG"
BUILD="$CACHE_DIR/llama-tools-$LLAMA_TAG"
[ -f "$SRC/.kvault-ok" ] || bash "$(dirname "$0")/../scripts/deps.sh" >&2
launcher=()
command -v ccache >/dev/null 2>&1 &&
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
read -r -a extra <<<"${KVAULT_LLAMA_TOOLS_CMAKE_FLAGS:-}"
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "${extra[@]}" \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >&2
fi
cmake --build "$BUILD" -j "$(nproc)" --target llama-bench llama-batched-bench llama-server >&2
echo "$BUILD/bin"
