// kvault-block-bench: what saving and restoring KV blocks costs with libllama's per-sequence state
// API, by block size; the measurement behind --block-tokens and the KV store's design.
//
//   kvault-block-bench MODEL [CONTEXT_TOKENS=2048] [THREADS=all]
//
// Prefills CONTEXT_TOKENS into sequence 0, then for each block size: saves every block (share its
// cells into a scratch sequence with llama_memory_seq_cp, serialise that sequence with
// llama_state_seq_get_data, drop it), restores them all into sequence 1 (deserialise into the
// scratch sequence, share into sequence 1, drop the scratch), and checks that the next token's
// logits from the restored sequence are bit-identical to the original's. Prints one JSON line
// per block size.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "llama.h"

namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

// Decodes `toks` into `seq`. Like kvault's engine, never submits a single-token batch (a lone
// token gets a companion in sequence 3), so the same CPU kernels run in every step.
bool Decode(llama_context* ctx, const std::vector<llama_token>& toks, int seq, int pos0, bool logits_last) {
  llama_batch batch = llama_batch_init(static_cast<int32_t>(toks.size()) + 1, 0, 1);
  for (size_t i = 0; i < toks.size(); ++i) {
    batch.token[i] = toks[i];
    batch.pos[i] = pos0 + static_cast<int>(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = seq;
    batch.logits[i] = logits_last && i + 1 == toks.size();
  }
  batch.n_tokens = static_cast<int32_t>(toks.size());
  if (toks.size() == 1) {
    batch.token[1] = toks[0];
    batch.pos[1] = 0;
    batch.n_seq_id[1] = 1;
    batch.seq_id[1][0] = 3;
    batch.logits[1] = false;
    batch.n_tokens = 2;
  }
  const bool ok = llama_decode(ctx, batch) == 0;
  llama_memory_seq_rm(llama_get_memory(ctx), 3, -1, -1);
  llama_batch_free(batch);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [CONTEXT_TOKENS] [THREADS]\n", argv[0]);
    return 2;
  }
  const int n_tokens = argc > 2 ? std::atoi(argv[2]) : 2048;
  const int threads = argc > 3 ? std::atoi(argv[3]) : static_cast<int>(std::thread::hardware_concurrency());
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) return 1;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n_tokens * 2 + 1024);
  cp.n_batch = 512;
  cp.n_ubatch = 512;
  cp.n_seq_max = 4;
  cp.kv_unified = true;
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  llama_context* ctx = llama_init_from_model(model, cp);
  llama_memory_t mem = llama_get_memory(ctx);
  const llama_vocab* vocab = llama_model_get_vocab(model);

  std::mt19937 rng(42);
  std::vector<llama_token> toks(static_cast<size_t>(n_tokens));
  for (auto& t : toks) t = static_cast<llama_token>(rng() % 30000 + 1000);
  const auto t_pf = Clock::now();
  for (int i = 0; i < n_tokens; i += 512) {
    std::vector<llama_token> chunk(toks.begin() + i, toks.begin() + std::min(n_tokens, i + 512));
    if (!Decode(ctx, chunk, 0, i, false)) return 1;
  }
  const double prefill_ms = Ms(t_pf, Clock::now());
  const int n_vocab = llama_vocab_n_tokens(vocab);
  const llama_token probe = 1234;

  // Reference logits: the probe token after the original sequence.
  if (!Decode(ctx, {probe}, 0, n_tokens, true)) return 1;
  std::vector<float> ref(llama_get_logits_ith(ctx, 0), llama_get_logits_ith(ctx, 0) + n_vocab);
  llama_memory_seq_rm(mem, 0, n_tokens, -1);

  std::printf("{\"prefill_tokens\": %d, \"prefill_ms\": %.1f, \"threads\": %d}\n", n_tokens, prefill_ms, threads);
  const int scratch = 2;
  for (int bt : {16, 32, 64, 128, 256}) {
    std::vector<std::vector<uint8_t>> blocks;
    size_t bytes = 0;
    const auto t0 = Clock::now();
    for (int p0 = 0; p0 < n_tokens; p0 += bt) {
      llama_memory_seq_cp(mem, 0, scratch, p0, p0 + bt);
      std::vector<uint8_t> buf(llama_state_seq_get_size(ctx, scratch));
      llama_state_seq_get_data(ctx, buf.data(), buf.size(), scratch);
      llama_memory_seq_rm(mem, scratch, -1, -1);
      bytes += buf.size();
      blocks.push_back(std::move(buf));
    }
    const auto t1 = Clock::now();
    bool restored = true;
    for (const auto& buf : blocks) {
      restored = restored && llama_state_seq_set_data(ctx, buf.data(), buf.size(), scratch) == buf.size();
      llama_memory_seq_cp(mem, scratch, 1, -1, -1);
      llama_memory_seq_rm(mem, scratch, -1, -1);
    }
    const auto t2 = Clock::now();
    bool identical = false;
    if (restored && Decode(ctx, {probe}, 1, n_tokens, true)) {
      identical = std::memcmp(ref.data(), llama_get_logits_ith(ctx, 0), ref.size() * sizeof(float)) == 0;
    }
    llama_memory_seq_rm(mem, 1, -1, -1);
    const double save_ms = Ms(t0, t1), load_ms = Ms(t1, t2);
    std::printf("{\"block_tokens\": %d, \"blocks\": %zu, \"bytes_per_block\": %zu, \"save_ms\": %.2f, "
                "\"save_ms_per_block\": %.4f, \"save_mb_s\": %.1f, \"load_ms\": %.2f, \"load_ms_per_block\": %.4f, "
                "\"load_mb_s\": %.1f, \"restored\": %s, \"logits_identical\": %s}\n",
                bt, blocks.size(), blocks.empty() ? 0 : blocks[0].size(), save_ms, save_ms / blocks.size(),
                bytes / 1e6 / (save_ms / 1e3), load_ms, load_ms / blocks.size(), bytes / 1e6 / (load_ms / 1e3),
                restored ? "true" : "false", identical ? "true" : "false");
    std::fflush(stdout);
  }
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
