#include "server/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

namespace kvault {
namespace {

using json = nlohmann::json;

// A server with no engine attached yet: what clients see while a model loads.
class LoadingServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.port = 0;
    server_ = std::make_unique<HttpServer>(o, nullptr);
    ASSERT_TRUE(server_->Bind().ok());
    thread_ = std::thread([this] { server_->Run(); });
    server_->WaitUntilReady();
  }
  void TearDown() override {
    server_->Stop();
    thread_.join();
  }
  httplib::Client Client() { return httplib::Client("127.0.0.1", server_->port()); }

  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

TEST_F(LoadingServerTest, HealthSaysLoading) {
  auto res = Client().Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(json::parse(res->body)["status"], "loading");
}

TEST_F(LoadingServerTest, ApiRoutesAnswer503InTheErrorEnvelope) {
  auto res = Client().Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}]})",
                           "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  json j = json::parse(res->body);
  EXPECT_EQ(j["error"]["type"], "overloaded_error");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("loading"), std::string::npos);
  res = Client().Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
}

TEST_F(LoadingServerTest, UnknownRouteIs404Envelope) {
  auto res = Client().Delete("/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(json::parse(res->body)["error"]["type"], "not_found_error");
}

TEST_F(LoadingServerTest, OversizedBodyIs413) {
  std::string big(33u << 20, 'x');
  auto res = Client().Post("/v1/chat/completions", big, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
}

TEST(HttpServerBindTest, SecondServerOnTheSamePortFails) {
  ServerOptions o;
  o.port = 0;
  HttpServer first(o, nullptr);
  ASSERT_TRUE(first.Bind().ok());
  ServerOptions same;
  same.port = first.port();
  HttpServer second(same, nullptr);
  Status s = second.Bind();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(std::to_string(first.port())), std::string::npos);
}

}  // namespace
}  // namespace kvault
