# kvault — thin wrapper over CMake. The two commands a newcomer needs:
#   make serve   install what is missing, build, make the demo model, start the server
#   make test    install what is missing, build, run every test (ctest)
SHELL := /bin/bash

BUILD_DIR        ?= build
KVAULT_DEPS_DIR  ?= $(HOME)/.cache/kvault
# The llama.cpp pin lives in scripts/deps.sh (next to the npm tarball that carries it).
LLAMA_TAG        := $(shell sed -n 's/^LLAMA_TAG=//p' scripts/deps.sh)
LLAMA_SRC        ?= $(KVAULT_DEPS_DIR)/llama.cpp-$(LLAMA_TAG)
JOBS             ?= $(shell nproc)
# make serve passes --host/--port only when HOST/PORT are set, so that KVAULT_HOST/KVAULT_PORT
# and a --config file in SERVE_ARGS work too (the server's defaults: 127.0.0.1:8080).
HOST             ?=
PORT             ?=
SERVE_ARGS       ?=
CMAKE_FLAGS      ?=
# CI treats warnings in kvault's own code as errors.
ifdef CI
CMAKE_FLAGS += -DKVAULT_WERROR=ON
endif

export KVAULT_DEPS_DIR

PYTHON           ?= /usr/bin/python3

FUZZ_SECONDS     ?= 60
FUZZ_BUILD_DIR   ?= build-fuzz
FUZZ_TARGETS     ?= openai_request anthropic_request responses_request sse_writer block_file

.PHONY: all deps configure build serve test test-asan test-tsan reliability bench bench-peers bench-smoke fuzz format clean

all: build

deps:
	@bash scripts/deps.sh

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	    -DKVAULT_LLAMA_SOURCE_DIR=$(LLAMA_SRC) $(CMAKE_FLAGS); \
	fi

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

serve: build
	$(BUILD_DIR)/bin/kvault serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT)) $(SERVE_ARGS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

# The test suite with sanitizers on kvault's code, in their own build trees. ASAN_TESTS=REGEX
# runs only the matching tests and ASAN_TARGETS builds only those targets (CI: the unit and SDK
# end-to-end tests and the fuzz seeds, see .ci/run; the integration tests before releases). TSAN_TESTS /
# TSAN_TARGETS do the same for test-tsan. Per-test time limits are 3× (ASan) and 10× (TSan)
# those of make test. SAN_EXCLUDE: tests left out (by default the benchmark
# smoke run and the SDK end-to-end tests; `SAN_EXCLUDE=bench_smoke ASAN_TESTS=e2e` runs the SDKs
# against the sanitized server, which then fails its test on any report or leak at exit).
SAN_EXCLUDE ?= bench_smoke|e2e
test-asan: deps
	@if [ ! -f build-asan/build.ninja ]; then \
	  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release \
	    -DKVAULT_LLAMA_SOURCE_DIR=$(LLAMA_SRC) -DKVAULT_SANITIZE=address $(CMAKE_FLAGS); \
	fi
	cmake --build build-asan -j $(JOBS) $(if $(ASAN_TARGETS),--target $(ASAN_TARGETS))
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS) -E '$(SAN_EXCLUDE)' $(if $(ASAN_TESTS),-R '$(ASAN_TESTS)')

test-tsan: deps
	@if [ ! -f build-tsan/build.ninja ]; then \
	  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Release \
	    -DKVAULT_LLAMA_SOURCE_DIR=$(LLAMA_SRC) -DKVAULT_SANITIZE=thread $(CMAKE_FLAGS); \
	fi
	cmake --build build-tsan -j $(JOBS) $(if $(TSAN_TARGETS),--target $(TSAN_TARGETS))
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tsan.supp \
	  ctest --test-dir build-tsan --output-on-failure -j $(JOBS) -E '$(SAN_EXCLUDE)' $(if $(TSAN_TESTS),-R '$(TSAN_TESTS)')

bench: build
	$(PYTHON) bench/bench.py

# kvault beside llama-server at its best, from the client's side (decode, TTFT during a prefill,
# agents taking turns with a restart); writes bench/results/peers.json and docs/peers.md.
bench-peers: build
	$(PYTHON) bench/peers.py

# The reliability tests at full length: 50 SIGKILL/restart iterations, a SOAK_MINUTES soak, and
# the stress, fault and HTTP-limit tests (make test runs all of them, shorter).
SOAK_MINUTES     ?= 10
reliability: build
	KVAULT_CRASH_ITERATIONS=50 KVAULT_SOAK_SECONDS=$$(( $(SOAK_MINUTES) * 60 )) \
	  $(BUILD_DIR)/bin/kvault_integration_tests \
	  --gtest_filter='ReliabilityTest.*:FaultsTest.*:StressTest.*:HttpLimitsTest.*:PersistenceTest.Sigkill*'

bench-smoke: build
	$(PYTHON) bench/bench.py --smoke

# libFuzzer runs of every fuzz target (clang, ASan+UBSan), FUZZ_SECONDS each, corpus grown in
# $(FUZZ_BUILD_DIR)/corpus. The first run builds llama.cpp again with clang (minutes).
fuzz: deps
	@command -v clang++ >/dev/null || { echo "clang is missing: apt-get install clang"; exit 1; }
	@if [ ! -f $(FUZZ_BUILD_DIR)/build.ninja ]; then \
	  CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DKVAULT_LLAMA_SOURCE_DIR=$(LLAMA_SRC) -DKVAULT_FUZZ=ON -DKVAULT_BUILD_TESTS=OFF; \
	fi
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@set -e; mkdir -p $(FUZZ_BUILD_DIR)/logs; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD_DIR)/corpus/$$t; \
	  echo "fuzzing $$t for $(FUZZ_SECONDS) s (log: $(FUZZ_BUILD_DIR)/logs/$$t.log)"; \
	  $(FUZZ_BUILD_DIR)/bin/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    $(FUZZ_BUILD_DIR)/corpus/$$t fuzz/corpus/$$t > $(FUZZ_BUILD_DIR)/logs/$$t.log 2>&1 \
	    || { tail -40 $(FUZZ_BUILD_DIR)/logs/$$t.log; exit 1; }; \
	  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|cov:' $(FUZZ_BUILD_DIR)/logs/$$t.log | tail -3; \
	done

format:
	@command -v clang-format >/dev/null || { echo "clang-format is missing: apt-get install clang-format"; exit 1; }
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.h' 'tests/*.cpp' 'tests/*.h')

clean:
	rm -rf $(BUILD_DIR)
