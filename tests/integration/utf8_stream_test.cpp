// Multi-byte text through the real server (issue #24): characters whose bytes arrive in several
// tokens (byte-level BPE pieces) are streamed whole — every SSE event is valid UTF-8, with no
// replacement character — and multi-byte stop sequences stop generation and are cut out exactly,
// streamed or not.
//
// The tiny model's weights are random, so the text is forced: a JSON schema whose only value is
// a string constant (the grammar fixes the text, the model only picks how to spell it in tokens),
// and a logit_bias of -100 on every token that holds one of its multi-byte characters whole, so
// that each of them has to be spelled in pieces that split its bytes.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llama.h"
#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;

const std::string kE = "\xC3\xA9";              // é, 2 bytes
const std::string kEmoji = "\xF0\x9F\x98\x80";  // 😀, 4 bytes
const std::string kHan = "\xE4\xB8\xAD";        // 中, 3 bytes
const std::string kReplacement = "\xEF\xBF\xBD";

// Whether `s` is well-formed UTF-8 (no stray continuation byte, no truncated character).
bool ValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

class Utf8StreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Every token of the vocabulary that holds é, 😀 or 中 whole: banned, so each is split.
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model* model = llama_model_load_from_file(TinyModel().c_str(), mp);
    ASSERT_NE(model, nullptr);
    const llama_vocab* vocab = llama_model_get_vocab(model);
    bias_ = json::object();
    for (llama_token t = 0; t < llama_vocab_n_tokens(vocab); ++t) {
      char buf[256];
      const int n = llama_token_to_piece(vocab, t, buf, sizeof(buf), 0, /*special=*/false);
      if (n <= 0) continue;
      const std::string piece(buf, static_cast<size_t>(n));
      if (piece.find(kE) != std::string::npos || piece.find(kEmoji) != std::string::npos ||
          piece.find(kHan) != std::string::npos) {
        bias_[std::to_string(t)] = -100;
      }
    }
    llama_model_free(model);
    ASSERT_GT(bias_.size(), 0u);
    server_ = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "512", "--log-level", "warn"})
                  .release();
    ASSERT_TRUE(server_->WaitHealthy(std::chrono::seconds(60))) << server_->Log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  // A chat request whose answer can only be the JSON string "é😀中" (plus optional whitespace).
  static json Body(const json& extra = json::object()) {
    json b = {{"messages", {{{"role", "user"}, {"content", "Say it."}}}},
              {"max_tokens", 40},
              {"temperature", 0},
              {"logit_bias", bias_},
              {"response_format",
               {{"type", "json_schema"},
                {"json_schema", {{"name", "word"}, {"schema", {{"type", "string"}, {"const", kE + kEmoji + kHan}}}}}}}};
    b.update(extra);
    return b;
  }

  struct Answer {
    std::string text;
    std::string finish;
    json logprobs;
  };

  static Answer Whole(const json& body) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(std::chrono::seconds(60));
    auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_TRUE(ValidUtf8(r->body));
    const json j = json::parse(r->body);
    return {j["choices"][0]["message"]["content"].get<std::string>(),
            j["choices"][0]["finish_reason"].get<std::string>(), j["choices"][0]["logprobs"]};
  }

  // Streams `body`; every event must be valid UTF-8 JSON and no delta may hold a replacement
  // character (half a character sent, or a character cut between two events).
  static Answer Streamed(json body) {
    body["stream"] = true;
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(std::chrono::seconds(60));
    auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << r->body;
    Answer a;
    size_t pos = 0;
    int deltas = 0;
    while ((pos = r->body.find("data: ", pos)) != std::string::npos) {
      const size_t end = r->body.find('\n', pos);
      const std::string data = r->body.substr(pos + 6, end - pos - 6);
      pos = end;
      if (data == "[DONE]") break;
      EXPECT_TRUE(ValidUtf8(data)) << "an SSE event that is not UTF-8: " << data;
      const json ev = json::parse(data, nullptr, false);
      EXPECT_FALSE(ev.is_discarded()) << data;
      if (ev.is_discarded() || ev["choices"].empty()) continue;
      const json& choice = ev["choices"][0];
      if (choice["delta"].contains("content") && choice["delta"]["content"].is_string()) {
        const std::string d = choice["delta"]["content"].get<std::string>();
        EXPECT_EQ(d.find(kReplacement), std::string::npos) << "delta " << deltas << " holds U+FFFD";
        a.text += d;
        ++deltas;
      }
      if (!choice["finish_reason"].is_null()) a.finish = choice["finish_reason"].get<std::string>();
    }
    return a;
  }

  static json bias_;
  static ServerProcess* server_;
};
json Utf8StreamTest::bias_;
ServerProcess* Utf8StreamTest::server_ = nullptr;

TEST_F(Utf8StreamTest, CharactersSplitAcrossTokensArriveWholeInEveryEvent) {
  const Answer whole = Whole(Body({{"logprobs", true}}));
  // The grammar lets whitespace come before the string.
  const size_t at = whole.text.find("\"" + kE + kEmoji + kHan + "\"");
  ASSERT_NE(at, std::string::npos) << whole.text;
  EXPECT_EQ(whole.text.find_first_not_of(" \t\n"), at) << whole.text;
  EXPECT_EQ(whole.text.find(kReplacement), std::string::npos);
  // The emoji really came in pieces: some generated token holds its first byte but not all of it.
  bool split = false;
  for (const auto& t : whole.logprobs["content"]) {
    std::string bytes;
    for (const auto& b : t["bytes"]) bytes += static_cast<char>(b.get<int>());
    if (bytes.find('\xF0') != std::string::npos && bytes.find(kEmoji) == std::string::npos) split = true;
  }
  EXPECT_TRUE(split) << whole.logprobs.dump();
  const Answer streamed = Streamed(Body());
  EXPECT_EQ(streamed.text, whole.text);
  EXPECT_EQ(streamed.finish, whole.finish);
}

TEST_F(Utf8StreamTest, MultiByteStopSequencesStopAndAreCutOutStreamedOrNot) {
  // The emoji's bytes come in several tokens: the stop matches across them, and none of its
  // bytes (nor the held-back first ones) may leak out.
  const std::string full = Whole(Body()).text;
  ASSERT_NE(full.find(kE + kEmoji + kHan), std::string::npos) << full;
  for (const std::string& stop : {kEmoji, kHan, kE + kEmoji}) {
    SCOPED_TRACE("stop " + stop);
    const std::string before = full.substr(0, full.find(stop));
    const Answer whole = Whole(Body({{"stop", json::array({stop})}}));
    EXPECT_EQ(whole.text, before);
    EXPECT_EQ(whole.finish, "stop");
    const Answer streamed = Streamed(Body({{"stop", json::array({stop})}}));
    EXPECT_EQ(streamed.text, before);
    EXPECT_EQ(streamed.finish, "stop");
  }
}

}  // namespace
}  // namespace kvault::testing
