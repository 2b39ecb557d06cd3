// The CLI's exit codes and messages, from the real binary.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

TEST(CliTest, VersionAndHelp) {
  std::string out;
  EXPECT_EQ(RunKvault({"--version"}, &out), 0);
  EXPECT_NE(out.find("kvault"), std::string::npos);
  EXPECT_EQ(RunKvault({"serve", "--help"}, &out), 0);
  EXPECT_NE(out.find("--model"), std::string::npos);
}

TEST(CliTest, UnknownOptionIsUsageError) {
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--no-such-flag"}, &out), 2);
  EXPECT_EQ(RunKvault({}, &out), 2);
}

TEST(CliTest, MissingModelExits2WithClearMessage) {
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--model", "/nonexistent/m.gguf", "--port", "0"}, &out), 2);
  EXPECT_NE(out.find("model file not found: /nonexistent/m.gguf"), std::string::npos) << out;
}

TEST(CliTest, NonGgufFileExits2) {
  const auto dir = ScratchDir("cli-notgguf");
  std::ofstream(dir / "model.gguf") << "definitely not gguf";
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--model", (dir / "model.gguf").string(), "--port", "0"}, &out), 2);
  EXPECT_NE(out.find("not a GGUF model file"), std::string::npos) << out;
}

TEST(CliTest, UnreadableModelExits2) {
  if (geteuid() == 0) GTEST_SKIP() << "root can read any file";
  const auto dir = ScratchDir("cli-unreadable");
  std::ofstream(dir / "model.gguf") << "GGUF";
  std::filesystem::permissions(dir / "model.gguf", std::filesystem::perms::none);
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--model", (dir / "model.gguf").string(), "--port", "0"}, &out), 2);
}

TEST(CliTest, TruncatedGgufExits2) {
  const auto dir = ScratchDir("cli-truncated");
  std::ofstream(dir / "model.gguf") << "GGUF\x03\x00\x00\x00garbage";
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--model", (dir / "model.gguf").string(), "--port", "0"}, &out), 2);
  EXPECT_NE(out.find("damaged GGUF model file"), std::string::npos) << out;
}

// A listening socket on a free loopback port (its number in `*port`), so that the port is taken;
// -1 on failure.
int ListenOnLoopback(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 1) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

TEST(CliTest, PortInUseExits2) {
  int port = 0;
  const int fd = ListenOnLoopback(&port);
  ASSERT_GE(fd, 0);
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--model", TinyModel().string(), "--port", std::to_string(port)}, &out), 2);
  EXPECT_NE(out.find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos) << out;
  close(fd);
}

// The test helper's answer to FreePort's race (another process takes the port before the server
// binds it, as under ctest -j): the server is started again on another port.
TEST(CliTest, ATestServerWhosePortIsTakenStartsAgainOnAnother) {
  int taken = 0;
  const int fd = ListenOnLoopback(&taken);
  ASSERT_GE(fd, 0);
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--ctx-size", "256"}, taken);
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  EXPECT_NE(s->port(), taken);
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
  close(fd);
}

TEST(CliTest, DeterministicModeExcludesItsOppositeAndLimitsParallel) {
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--deterministic", "--no-deterministic"}, &out), 2);
  EXPECT_NE(out.find("excludes"), std::string::npos) << out;
  EXPECT_EQ(RunKvault({"serve", "--model", TinyModel().string(), "--port", "0", "--deterministic", "--parallel", "64",
                       "--resident-seqs", "64", "--pool-tokens", "4096"},
                      &out),
            2);
  EXPECT_NE(out.find("deterministic mode allows at most 63 parallel sequences"), std::string::npos) << out;
}

TEST(CliTest, MakeDemoWritesALoadableModel) {
  const auto dir = ScratchDir("cli-make-demo");
  const auto model = dir / "t.gguf";
  std::string out;
  ASSERT_EQ(RunKvault({"model", "make-demo", "--size", "tiny", "--out", model.string(), "--seed", "1"}, &out), 0)
      << out;
  // The same seed gives a byte-identical file: the test fixture was made with --seed 1 too.
  auto bytes = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string made = bytes(model);
  EXPECT_GT(made.size(), 1000u);
  EXPECT_TRUE(made == bytes(TinyModel())) << "make-demo --seed 1 differs from the fixture made the same way";
  // It loads and answers: the server reports a Llama-architecture model of that file and generates.
  auto s = ServerProcess::Start({"--model", model.string(), "--ctx-size", "256"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  httplib::Client c("127.0.0.1", s->port());
  c.set_read_timeout(std::chrono::seconds(60));
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  ASSERT_EQ(models->status, 200) << models->body;
  const auto list = nlohmann::json::parse(models->body)["data"];
  ASSERT_EQ(list.size(), 1u) << models->body;
  EXPECT_EQ(list[0]["id"], "t");
  const auto meta = list[0]["meta"];
  EXPECT_EQ(meta["description"].get<std::string>().rfind("llama ", 0), 0u) << models->body;
  EXPECT_GT(meta["n_params"].get<uint64_t>(), 0u) << models->body;
  auto r =
      c.Post("/v1/chat/completions",
             R"({"messages":[{"role":"user","content":"hello"}],"max_tokens":5,"temperature":0})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto answer = nlohmann::json::parse(r->body);
  EXPECT_GT(answer["usage"]["prompt_tokens"].get<int>(), 1) << r->body;
  EXPECT_GT(answer["usage"]["completion_tokens"].get<int>(), 0) << r->body;
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();

  EXPECT_EQ(RunKvault({"model", "make-demo", "--size", "enormous", "--out", (dir / "x.gguf").string()}, &out), 2);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.gguf"));
}

}  // namespace
}  // namespace kvault::testing

namespace kvault::testing {
namespace {

// The value of `key=` in --print-config output.
std::string ConfigValue(const std::string& out, const std::string& key) {
  const size_t at = out.find("\n" + key + "=");
  if (at == std::string::npos) return "<missing>";
  const size_t start = at + key.size() + 2;
  return out.substr(start, out.find('\n', start) - start);
}

TEST(ConfigTest, FlagsBeatEnvironmentBeatFileBeatDefaults) {
  const auto dir = ScratchDir("cli-config");
  std::ofstream(dir / "kvault.toml") << "port = 9001\nctx-size = 2048\nparallel = 3\napi-key = [\"file-secret-key\"]\n";
  const std::string file = (dir / "kvault.toml").string();
  setenv("KVAULT_PORT", "9002", 1);
  setenv("KVAULT_CTX_SIZE", "3072", 1);
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--config", file, "--ctx-size", "1024", "--print-config"}, &out), 0) << out;
  unsetenv("KVAULT_PORT");
  unsetenv("KVAULT_CTX_SIZE");
  out = "\n" + out;
  EXPECT_EQ(ConfigValue(out, "ctx-size"), "1024");  // flag over environment and file
  EXPECT_EQ(ConfigValue(out, "port"), "9002");      // environment over file
  EXPECT_EQ(ConfigValue(out, "parallel"), "3");     // file over default
  EXPECT_EQ(ConfigValue(out, "max-queue"), "64");   // default
  EXPECT_EQ(out.find("file-secret-key"), std::string::npos) << "keys must never be printed";
}

// The offload options: defaults (-1: all layers, every GPU), the file, the environment, a range.
TEST(ConfigTest, OffloadOptionsComeFromFlagsEnvironmentAndFile) {
  const auto dir = ScratchDir("cli-config-offload");
  std::ofstream(dir / "gpu.toml") << "gpu-layers = 20\n";
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--print-config"}, &out), 0) << out;
  out = "\n" + out;
  EXPECT_EQ(ConfigValue(out, "gpu-layers"), "-1");
  EXPECT_EQ(ConfigValue(out, "main-gpu"), "-1");
  setenv("KVAULT_MAIN_GPU", "1", 1);
  EXPECT_EQ(RunKvault({"serve", "--config", (dir / "gpu.toml").string(), "--print-config"}, &out), 0) << out;
  unsetenv("KVAULT_MAIN_GPU");
  out = "\n" + out;
  EXPECT_EQ(ConfigValue(out, "gpu-layers"), "20");
  EXPECT_EQ(ConfigValue(out, "main-gpu"), "1");
  EXPECT_EQ(RunKvault({"serve", "--gpu-layers", "-2", "--print-config"}, &out), 2);
  EXPECT_NE(out.find("--gpu-layers"), std::string::npos) << out;
}

TEST(ConfigTest, UnknownKeysAndBadValuesAreUsageErrorsNamingTheKey) {
  const auto dir = ScratchDir("cli-config-bad");
  std::ofstream(dir / "unknown.toml") << "port = 9001\npoart = 9002\n";
  std::ofstream(dir / "range.toml") << "port = 99999\n";
  std::string out;
  EXPECT_EQ(RunKvault({"serve", "--config", (dir / "unknown.toml").string(), "--print-config"}, &out), 2);
  EXPECT_NE(out.find("poart"), std::string::npos) << out;
  EXPECT_EQ(RunKvault({"serve", "--config", (dir / "range.toml").string(), "--print-config"}, &out), 2);
  EXPECT_NE(out.find("--port"), std::string::npos) << out;
  EXPECT_EQ(RunKvault({"serve", "--config", (dir / "missing.toml").string(), "--print-config"}, &out), 2);
  EXPECT_NE(out.find("missing.toml"), std::string::npos) << out;
  setenv("KVAULT_CTX_SIZE", "lots", 1);
  EXPECT_EQ(RunKvault({"serve", "--print-config"}, &out), 2);
  unsetenv("KVAULT_CTX_SIZE");
  EXPECT_NE(out.find("--ctx-size"), std::string::npos) << out;
}

// --api-key NAME=KEY is read the same from the flag, KVAULT_API_KEYS and the config file: a
// reserved name (key-…) stops the start in each, without printing the key; a good name is
// logged (the name only) and the key works.
TEST(ConfigTest, NamedApiKeysFromFlagsEnvironmentAndFile) {
  const auto dir = ScratchDir("cli-named-keys");
  const std::vector<std::string> base = {"serve", "--model",    TinyModel().string(),   "--port",
                                         "0",     "--data-dir", (dir / "data").string()};
  std::string out;
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  EXPECT_EQ(RunKvault(with({"--api-key", "key-mine=flag-secret"}), &out), 2) << out;
  EXPECT_NE(out.find("reserved"), std::string::npos) << out;
  EXPECT_EQ(out.find("flag-secret"), std::string::npos) << out;
  setenv("KVAULT_API_KEYS", "plain-key,key-mine=env-secret", 1);
  EXPECT_EQ(RunKvault(base, &out), 2) << out;
  unsetenv("KVAULT_API_KEYS");
  EXPECT_NE(out.find("reserved"), std::string::npos) << out;
  EXPECT_EQ(out.find("env-secret"), std::string::npos) << out;
  std::ofstream(dir / "kvault.toml") << "api-key = [\"plain-key\", \"key-mine=file-secret\"]\n";
  EXPECT_EQ(RunKvault(with({"--config", (dir / "kvault.toml").string()}), &out), 2) << out;
  EXPECT_NE(out.find("reserved"), std::string::npos) << out;
  EXPECT_EQ(out.find("file-secret"), std::string::npos) << out;

  std::ofstream(dir / "good.toml") << "api-key = [\"plain-key\", \"team.x=file-secret\"]\n";
  auto s = ServerProcess::Start({"--config", (dir / "good.toml").string(), "--model", TinyModel().string(),
                                 "--data-dir", (dir / "data").string(), "--ctx-size", "512"});
  ASSERT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  EXPECT_NE(s->Log().find("2 API key(s); named tenants: team.x"), std::string::npos) << s->Log();
  EXPECT_EQ(s->Log().find("file-secret"), std::string::npos);
  httplib::Client c("127.0.0.1", s->port());
  EXPECT_EQ(c.Get("/v1/models", httplib::Headers{{"x-api-key", "file-secret"}})->status, 200);
  EXPECT_EQ(c.Get("/v1/models", httplib::Headers{{"x-api-key", "team.x=file-secret"}})->status, 401);
  EXPECT_EQ(s->Stop(SIGTERM), 0) << s->Log();
}

}  // namespace
}  // namespace kvault::testing
