// Storage faults against the real server: the cache directory fills up, turns read-only, or is
// deleted while kvault runs. kvault must keep answering (from the pool and RAM), say so in /health
// and /metrics, and write what RAM kept once the disk takes writes again — so a restart afterwards
// still resumes the turns served during the fault.
//
// Full and read-only disks use a small tmpfs mounted for the test: that needs root (CI runs as
// root here); elsewhere those tests are skipped and say why.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string Prompt(int i) {
  std::string s = "Fault drill " + std::to_string(i) + ": ";
  for (int w = 0; w < 100; ++w) s += "word" + std::to_string((w * 11 + i) % 60) + " ";
  return s;
}

json Chat(int port, const std::string& content) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(60));
  json body = {
      {"messages", json::array({{{"role", "user"}, {"content", content}}})}, {"max_tokens", 8}, {"temperature", 0}};
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body);
}

json Health(int port, int* status = nullptr) {
  json h = GetHealth(port, status);
  EXPECT_FALSE(h.is_null());
  return h;
}

std::string Metrics(int port) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/metrics");
  return r ? r->body : "";
}

// Polls /health until `pred` holds (or 20 s pass).
bool WaitFor(int port, const std::function<bool(const json&)>& pred) {
  for (int i = 0; i < 200; ++i) {
    if (pred(Health(port))) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::unique_ptr<ServerProcess> Serve(const fs::path& data, const fs::path& cache) {
  auto s = ServerProcess::Start({"--model", TinyModel().string(), "--data-dir", data.string(), "--cache-dir",
                                 cache.string(), "--pool-tokens", "4096", "--block-tokens", "16", "--ctx-size", "1024",
                                 "--log-level", "warn"});
  EXPECT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  return s;
}

bool Failing(const json& h) {
  return h["kv_store"]["persistence"]["state"] == "failing";
}
bool Recovered(const json& h) {
  return h["kv_store"]["persistence"]["state"] == "ok" && h["kv_store"]["persistence"]["unpersisted_blocks"] == 0 &&
         h["kv_store"]["pending_writes"] == 0;
}

// A tmpfs of `mib` MiB mounted at `dir` for the test's lifetime.
class TmpfsMount {
 public:
  TmpfsMount(const fs::path& dir, int mib) : dir_(dir) {
    fs::create_directories(dir);
    const std::string opts = "size=" + std::to_string(mib) + "m";
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  bool Remount(bool read_only) {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT | (read_only ? MS_RDONLY : 0), nullptr) == 0;
  }

 private:
  fs::path dir_;
  bool mounted_ = false;
};

// Fills the filesystem holding `dir` until a write fails (ENOSPC); returns the filler's path.
fs::path FillDisk(const fs::path& dir) {
  const fs::path filler = dir / "filler";
  std::ofstream out(filler, std::ios::binary);
  const std::string chunk(64 << 10, 'x');
  while (out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()))) out.flush();
  return filler;
}

TEST(FaultsTest, FullDiskKeepsServingReportsItAndWritesWhatRamKeptOnceThereIsRoom) {
  const auto data = ScratchDir("faults-full");
  TmpfsMount mnt(data / "mnt", 16);
  if (!mnt.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root (CAP_SYS_ADMIN)";
  const fs::path cache = data / "mnt" / "kv";
  std::string during_text;
  {
    auto s = Serve(data, cache);
    Chat(s->port(), Prompt(1));  // persisted normally
    ASSERT_TRUE(WaitFor(s->port(), Recovered));
    const fs::path filler = FillDisk(data / "mnt");

    json r = Chat(s->port(), Prompt(2));  // served while nothing can be written
    during_text = r["choices"][0]["message"]["content"];
    ASSERT_TRUE(WaitFor(s->port(), Failing)) << Health(s->port()).dump();
    int status = 0;
    json h = Health(s->port(), &status);
    EXPECT_EQ(status, 200) << "still serving: degraded, not unavailable";
    EXPECT_EQ(h["status"], "degraded");
    EXPECT_EQ(h["degraded"], json::array({"persistence"}));
    EXPECT_NE(h["kv_store"]["persistence"]["last_error"].get<std::string>().find("No space left"), std::string::npos)
        << h.dump();
    EXPECT_GT(h["kv_store"]["persistence"]["unpersisted_blocks"].get<int>(), 0);
    EXPECT_NE(Metrics(s->port()).find("kvault_kv_persistence_ok 0"), std::string::npos);
    Chat(s->port(), Prompt(3));  // and again: no crash, no 5xx

    fs::remove(filler);  // room again: the next probe writes what RAM kept
    ASSERT_TRUE(WaitFor(s->port(), Recovered)) << Health(s->port()).dump();
    h = Health(s->port());
    EXPECT_EQ(h["status"], "ok");
    EXPECT_EQ(h["kv_store"]["persistence"]["recoveries"], 1);
    EXPECT_NE(Metrics(s->port()).find("kvault_kv_persistence_ok 1"), std::string::npos);
    EXPECT_EQ(s->Stop(SIGKILL), 128 + SIGKILL);  // no flush at exit: the recovery itself wrote them
  }
  auto s = Serve(data, cache);
  json r = Chat(s->port(), Prompt(2));
  EXPECT_EQ(r["choices"][0]["message"]["content"], during_text);
  EXPECT_GT(r["cache"]["disk_tokens"].get<int>(), 90) << "the turn served while the disk was full resumes from disk";
}

TEST(FaultsTest, ReadOnlyCacheDirectoryKeepsServingAndRecoversWhenWritable) {
  const auto data = ScratchDir("faults-ro");
  TmpfsMount mnt(data / "mnt", 64);
  if (!mnt.mounted()) GTEST_SKIP() << "mounting a tmpfs needs root (CAP_SYS_ADMIN)";
  const fs::path cache = data / "mnt" / "kv";
  {
    auto s = Serve(data, cache);
    Chat(s->port(), Prompt(4));
    ASSERT_TRUE(WaitFor(s->port(), Recovered));
    ASSERT_TRUE(mnt.Remount(/*read_only=*/true));
    Chat(s->port(), Prompt(5));
    ASSERT_TRUE(WaitFor(s->port(), Failing));
    EXPECT_NE(Health(s->port())["kv_store"]["persistence"]["last_error"].get<std::string>().find("Read-only"),
              std::string::npos)
        << Health(s->port()).dump();
    ASSERT_TRUE(mnt.Remount(/*read_only=*/false));
    ASSERT_TRUE(WaitFor(s->port(), Recovered)) << Health(s->port()).dump();
    EXPECT_EQ(s->Stop(SIGKILL), 128 + SIGKILL);
  }
  auto s = Serve(data, cache);
  EXPECT_GT(Chat(s->port(), Prompt(5))["cache"]["disk_tokens"].get<int>(), 90);
  std::string out;
  EXPECT_EQ(RunKvault({"cache", "verify", "--cache-dir", cache.string()}, &out), 0) << out;
}

TEST(FaultsTest, CacheDirectoryDeletedWhileRunningIsStartedAgainWithWhatRamHolds) {
  const auto data = ScratchDir("faults-deleted");
  const fs::path cache = data / "kv";
  {
    auto s = Serve(data, cache);
    Chat(s->port(), Prompt(6));
    ASSERT_TRUE(WaitFor(s->port(), Recovered));
    fs::remove_all(cache);
    // A lookup of a deleted file is a miss, not an error: the resident copy answers.
    Chat(s->port(), Prompt(6));
    Chat(s->port(), Prompt(7));  // its write notices the directory is gone and starts it again
    ASSERT_TRUE(WaitFor(s->port(), [](const json& h) { return h["kv_store"]["directory_lost"] == 1 && Recovered(h); }))
        << Health(s->port()).dump();
    EXPECT_EQ(Health(s->port())["status"], "ok");
    EXPECT_EQ(s->Stop(SIGKILL), 128 + SIGKILL);
  }
  auto s = Serve(data, cache);
  EXPECT_GT(Chat(s->port(), Prompt(6))["cache"]["disk_tokens"].get<int>(), 90) << "rewritten from RAM";
  EXPECT_GT(Chat(s->port(), Prompt(7))["cache"]["disk_tokens"].get<int>(), 90);
}

TEST(FaultsTest, UnusableCacheDirectoryAtStartServesWithoutPersistenceAndSaysSo) {
  const auto data = ScratchDir("faults-unusable");
  auto s = Serve(data, "/proc/kvault-cannot-create/kv");  // not creatable, even by root
  Chat(s->port(), Prompt(8));
  int status = 0;
  json h = Health(s->port(), &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(h["status"], "degraded");
  EXPECT_EQ(h["degraded"], json::array({"persistence"}));
  EXPECT_EQ(h["kv_store"]["persistent"], false);
  EXPECT_EQ(h["kv_store"]["persistence"]["state"], "unavailable");
  EXPECT_NE(h["kv_store"]["persistence"]["last_error"].get<std::string>().find("/proc/kvault-cannot-create"),
            std::string::npos);
}

}  // namespace
}  // namespace kvault::testing
