#include "model/demo_model.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "core/paths.h"
#include "llama.h"
#include "test_env.h"
#include "unit/core/synced_dirs.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class DemoModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto vocab = FindSharedFile("ggml-vocab-llama-bpe.gguf");
    ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
    vocab_ = *vocab;
    dir_ = testing::ScratchDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  fs::path vocab_;
  fs::path dir_;
};

// The default model is written into a data directory that may not exist yet, and the KV cache
// lives in that directory: each level made is synced in its parent.
TEST_F(DemoModelTest, NewDataDirectoriesAreSyncedInTheirParents) {
  auto spec = DemoModelSpecFor("tiny");
  ASSERT_TRUE(spec.ok());
  const fs::path base = dir_.lexically_normal();
  testing::SyncedDirs synced;
  ASSERT_TRUE(WriteDemoModel(*spec, vocab_, base / "data" / "models" / "m.gguf", 1).ok());
  EXPECT_TRUE(synced.Contains(base));
  EXPECT_TRUE(synced.Contains(base / "data"));
}

TEST_F(DemoModelTest, SameSeedGivesIdenticalBytesOtherSeedDiffers) {
  auto spec = DemoModelSpecFor("tiny");
  ASSERT_TRUE(spec.ok());
  ASSERT_TRUE(WriteDemoModel(*spec, vocab_, dir_ / "a.gguf", 7).ok());
  ASSERT_TRUE(WriteDemoModel(*spec, vocab_, dir_ / "b.gguf", 7).ok());
  ASSERT_TRUE(WriteDemoModel(*spec, vocab_, dir_ / "c.gguf", 8).ok());
  const std::string a = ReadAll(dir_ / "a.gguf");
  EXPECT_GT(a.size(), 1000000u);
  EXPECT_EQ(a, ReadAll(dir_ / "b.gguf"));
  EXPECT_NE(a, ReadAll(dir_ / "c.gguf"));
  EXPECT_FALSE(fs::exists(dir_ / "a.gguf.tmp"));
}

TEST_F(DemoModelTest, LoadsInLlamaCppWithTheRequestedShapeAndTokenizer) {
  auto spec = DemoModelSpecFor("tiny");
  ASSERT_TRUE(WriteDemoModel(*spec, vocab_, dir_ / "tiny.gguf", 1).ok());
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file((dir_ / "tiny.gguf").c_str(), mp);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(llama_model_n_embd(model), 64);
  EXPECT_EQ(llama_model_n_layer(model), 2);
  EXPECT_EQ(llama_model_n_head(model), 2);
  EXPECT_EQ(llama_model_n_head_kv(model), 1);
  const llama_vocab* vocab = llama_model_get_vocab(model);
  EXPECT_EQ(llama_vocab_n_tokens(vocab), 128256);  // the Llama 3 tokenizer
  const char* tmpl = llama_model_chat_template(model, nullptr);
  ASSERT_NE(tmpl, nullptr);
  EXPECT_NE(std::string(tmpl).find("<|start_header_id|>"), std::string::npos);

  // Real BPE tokenizer: "Hello world" is two tokens and round-trips.
  llama_token toks[16];
  const int n = llama_tokenize(vocab, "Hello world", 11, toks, 16, /*add_special=*/false, /*parse_special=*/false);
  ASSERT_EQ(n, 2);
  std::string text;
  for (int i = 0; i < n; ++i) {
    char buf[64];
    const int k = llama_token_to_piece(vocab, toks[i], buf, sizeof(buf), 0, false);
    ASSERT_GT(k, 0);
    text.append(buf, static_cast<size_t>(k));
  }
  EXPECT_EQ(text, "Hello world");
  llama_model_free(model);
}

TEST(DemoModelSpecTest, BenchShapeIsAbout370MParameters) {
  auto spec = DemoModelSpecFor("bench");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->n_embd, 1024u);
  EXPECT_EQ(spec->n_layer, 16u);
  EXPECT_EQ(spec->n_head, 16u);
  EXPECT_EQ(spec->n_head_kv, 4u);
  EXPECT_EQ(spec->n_ff, 4096u);
  const uint64_t params = DemoModelParameterCount(*spec, 128256);
  EXPECT_GT(params, 360'000'000u);
  EXPECT_LT(params, 380'000'000u);
}

// Llama 3 8B's shape (tied output): about 7.5B parameters, GQA 8, a 32K+ context (GPU runs).
TEST(DemoModelSpecTest, EightBShapeIsLlama3EightB) {
  auto spec = DemoModelSpecFor("8b");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->n_embd, 4096u);
  EXPECT_EQ(spec->n_layer, 32u);
  EXPECT_EQ(spec->n_head / spec->n_head_kv, 4u);
  EXPECT_EQ(spec->n_head_kv, 8u);
  EXPECT_GE(spec->n_ctx_train, 32768u);
  const uint64_t params = DemoModelParameterCount(*spec, 128256);
  EXPECT_GT(params, 7'000'000'000u);
  EXPECT_LT(params, 8'100'000'000u);
}

TEST(DemoModelSpecTest, UnknownSizeIsRejected) {
  auto spec = DemoModelSpecFor("huge");
  EXPECT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace kvault
