// A prompt longer than the request context on /v1/messages and /v1/completions (issue #24): a 400
// in the API's own error format, streamed or not, and the server keeps serving with nothing held.
// (/v1/chat/completions is covered by ServerTest.PromptBeyondTheContextIs400NotACrash.)
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;

constexpr int kCtx = 512;

std::string Words(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "word ";
  return s;
}

// "prompt is too long: N tokens > M maximum" exactly (the wording Claude Code parses); N and M out.
bool ParseTooLong(const std::string& message, long* n, long* m) {
  const std::string head = "prompt is too long: ", mid = " tokens > ", tail = " maximum";
  if (message.rfind(head, 0) != 0) return false;
  size_t pos = head.size();
  size_t used = 0;
  *n = std::stol(message.substr(pos), &used);
  pos += used;
  if (message.compare(pos, mid.size(), mid) != 0) return false;
  pos += mid.size();
  *m = std::stol(message.substr(pos), &used);
  pos += used;
  return message.substr(pos) == tail;
}

class ContextLimitsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", std::to_string(kCtx),
                                    "--log-level", "warn"})
                  .release();
    ASSERT_TRUE(server_->WaitHealthy(std::chrono::seconds(60))) << server_->Log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static httplib::Result Post(const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(std::chrono::seconds(60));
    return c.Post(path, {{"anthropic-version", "2023-06-01"}}, body.dump(), "application/json");
  }
  // After a rejection: a normal request on the same route is answered, and nothing is held.
  static void ExpectStillServing(const std::string& path, const json& small) {
    auto ok = Post(path, small);
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200) << ok->body;
    const json h = HealthWhen(server_->port(), [](const json& h) { return h["running"] == 0; });
    EXPECT_EQ(h["running"], 0) << h.dump();
    EXPECT_EQ(h["queue_depth"], 0) << h.dump();
    EXPECT_EQ(h["pool"]["blocks_reserved"], 0) << h.dump();
  }
  static ServerProcess* server_;
};
ServerProcess* ContextLimitsTest::server_ = nullptr;

TEST_F(ContextLimitsTest, AnthropicMessagesOverContextIsInvalidRequestErrorAndServingGoesOn) {
  const json over = {{"max_tokens", 16}, {"messages", {{{"role", "user"}, {"content", Words(700)}}}}};
  json counted_body = over;
  counted_body.erase("max_tokens");
  auto counted = Post("/v1/messages/count_tokens", counted_body);
  ASSERT_TRUE(counted);
  ASSERT_EQ(counted->status, 200) << counted->body;
  const long input_tokens = json::parse(counted->body)["input_tokens"].get<long>();
  for (const bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "stream" : "no stream");
    json body = over;
    body["stream"] = stream;
    auto r = Post("/v1/messages", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");  // not an event stream
    const json j = json::parse(r->body);
    EXPECT_EQ(j["type"], "error") << r->body;
    EXPECT_EQ(j["error"]["type"], "invalid_request_error") << r->body;
    EXPECT_EQ(j["request_id"], r->get_header_value("request-id"));
    long n = 0, m = 0;
    ASSERT_TRUE(ParseTooLong(j["error"]["message"].get<std::string>(), &n, &m)) << r->body;
    EXPECT_EQ(n, input_tokens) << "the N of the message is the prompt count_tokens gives";
    EXPECT_EQ(m, kCtx - 1) << "one position is left for the answer";
    EXPECT_GT(n, m);
  }
  ExpectStillServing("/v1/messages",
                     {{"max_tokens", 4}, {"temperature", 0}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
}

TEST_F(ContextLimitsTest, CompletionsOverContextIsContextLengthExceededAndServingGoesOn) {
  for (const bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "stream" : "no stream");
    auto r = Post("/v1/completions", {{"prompt", Words(700)}, {"max_tokens", 16}, {"stream", stream}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    const json j = json::parse(r->body);
    EXPECT_EQ(j["error"]["type"], "invalid_request_error") << r->body;
    EXPECT_EQ(j["error"]["code"], "context_length_exceeded") << r->body;
    long n = 0, m = 0;
    ASSERT_TRUE(ParseTooLong(j["error"]["message"].get<std::string>(), &n, &m)) << r->body;
    EXPECT_GE(n, 700);  // a raw prompt: at least one token per word
    EXPECT_EQ(m, kCtx - 1);
  }
  ExpectStillServing("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"temperature", 0}});
}

}  // namespace
}  // namespace kvault::testing
