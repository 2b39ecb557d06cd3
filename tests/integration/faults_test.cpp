// Storage faults against the real server: the cache directory fills up, turns read-only, or is
// deleted while kvault runs. kvault must keep answering (from the pool and RAM), say so in /health
// and /metrics, and write what RAM kept once the disk takes writes again — so a restart afterwards
// still resumes the turns served during the fault.
//
// Each fault is made two ways. Without privileges, always: a full disk is a file size limit set
// on the running server (RLIMIT_FSIZE through prlimit, 0 bytes: every write fails with EFBIG, as
// for root too; the server inherits SIGXFSZ ignored), lifted to make room again; a cache
// directory that takes no writes is its model directory moved aside with a file in its place
// (ENOTDIR), moved back to repair. With root: a small tmpfs mounted for the test, filled up
// (ENOSPC) or remounted read-only (EROFS); where mounting is not allowed those variants are
// skipped and say why.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <functional>
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

// A way to make the cache directory stop taking writes while the server runs, and to repair it.
struct DiskFault {
  std::function<bool(ServerProcess&)> make;    // false: could not be made
  std::function<bool(ServerProcess&)> repair;  // false: could not be repaired
  std::string error;                           // what /health's last_error says
};

// Full: every write past 0 bytes fails (EFBIG), for root too; lifted to the hard limit to repair.
DiskFault FileSizeLimit() {
  auto set = [](ServerProcess& s, bool limited) {
    rlimit hard{};
    if (::getrlimit(RLIMIT_FSIZE, &hard) != 0) return false;
    const rlimit lim{limited ? 0 : hard.rlim_max, hard.rlim_max};
    return ::prlimit(s.pid(), RLIMIT_FSIZE, &lim, nullptr) == 0;
  };
  return {[=](ServerProcess& s) { return set(s, true); }, [=](ServerProcess& s) { return set(s, false); },
          "File too large"};
}

// Full: the tmpfs at `mnt` filled up (ENOSPC); the filler removed to repair.
DiskFault FilledTmpfs(const fs::path& mnt) {
  return {[=](ServerProcess&) { return !FillDisk(mnt).empty(); },
          [=](ServerProcess&) { return fs::remove(mnt / "filler"); }, "No space left"};
}

// Unwritable: the model's directory under `cache` moved aside and a file put in its place, so
// that no directory or file can be created in it (ENOTDIR); moved back to repair. (The whole
// cache directory would look deleted instead: that is CacheDirectoryDeletedWhileRunning….)
DiskFault DirectoryReplacedByAFile(const fs::path& cache) {
  auto model_dir = [cache](ServerProcess& s) {
    return cache / GetHealth(s.port())["kv_store"]["fingerprint"].get<std::string>();
  };
  return {[=](ServerProcess& s) {
            const fs::path dir = model_dir(s);
            std::error_code ec;
            fs::rename(dir, dir.string() + ".aside", ec);
            if (ec) return false;
            std::ofstream(dir) << "not a directory";
            return fs::is_regular_file(dir);
          },
          [=](ServerProcess& s) {
            const fs::path dir = model_dir(s);
            std::error_code ec;
            fs::remove(dir, ec);
            fs::rename(dir.string() + ".aside", dir, ec);
            return !ec;
          },
          "Not a directory"};
}

// Read-only: the tmpfs at `mnt` remounted read-only (EROFS), then read-write to repair.
DiskFault ReadOnlyTmpfs(TmpfsMount& mnt) {
  return {[&mnt](ServerProcess&) { return mnt.Remount(/*read_only=*/true); },
          [&mnt](ServerProcess&) { return mnt.Remount(/*read_only=*/false); }, "Read-only"};
}

// The server must keep answering while the disk takes no writes, say so (degraded, 200, the error,
// unpersisted blocks, the metric), write what RAM kept once it is repaired, and a restart after
// a SIGKILL (no flush at exit) must resume the turn served during the fault from disk.
void ExpectServingThroughFault(const fs::path& data, const fs::path& cache, const DiskFault& fault, int prompt) {
  std::string during_text;
  {
    auto s = Serve(data, cache);
    Chat(s->port(), Prompt(prompt));  // persisted normally
    ASSERT_TRUE(WaitFor(s->port(), Recovered));
    ASSERT_TRUE(fault.make(*s)) << "could not make the fault";

    json r = Chat(s->port(), Prompt(prompt + 1));  // served while nothing can be written
    during_text = r["choices"][0]["message"]["content"];
    ASSERT_TRUE(WaitFor(s->port(), Failing)) << Health(s->port()).dump();
    int status = 0;
    json h = Health(s->port(), &status);
    EXPECT_EQ(status, 200) << "still serving: degraded, not unavailable";
    EXPECT_EQ(h["status"], "degraded");
    EXPECT_EQ(h["degraded"], json::array({"persistence"}));
    EXPECT_NE(h["kv_store"]["persistence"]["last_error"].get<std::string>().find(fault.error), std::string::npos)
        << "wanted '" << fault.error << "': " << h.dump();
    EXPECT_GT(h["kv_store"]["persistence"]["unpersisted_blocks"].get<int>(), 0);
    EXPECT_NE(Metrics(s->port()).find("kvault_kv_persistence_ok 0"), std::string::npos);
    Chat(s->port(), Prompt(prompt + 2));  // and again: no crash, no 5xx

    ASSERT_TRUE(fault.repair(*s)) << "could not repair the fault";  // the next probe writes what RAM kept
    ASSERT_TRUE(WaitFor(s->port(), Recovered)) << Health(s->port()).dump();
    h = Health(s->port());
    EXPECT_EQ(h["status"], "ok");
    EXPECT_EQ(h["kv_store"]["persistence"]["recoveries"], 1);
    EXPECT_NE(Metrics(s->port()).find("kvault_kv_persistence_ok 1"), std::string::npos);
    EXPECT_EQ(s->Stop(SIGKILL), 128 + SIGKILL);  // no flush at exit: the recovery itself wrote them
  }
  auto s = Serve(data, cache);
  json r = Chat(s->port(), Prompt(prompt + 1));
  EXPECT_EQ(r["choices"][0]["message"]["content"], during_text);
  EXPECT_GT(r["cache"]["disk_tokens"].get<int>(), 90) << "the turn served during the fault resumes from disk";
  std::string out;
  EXPECT_EQ(RunKvault({"cache", "verify", "--cache-dir", cache.string()}, &out), 0) << out;
}

TEST(FaultsTest, FullDiskKeepsServingReportsItAndWritesWhatRamKeptOnceThereIsRoom) {
  // The server inherits SIGXFSZ ignored: a write past the limit fails with EFBIG instead of
  // killing it (a signal ignored at exec stays ignored).
  ::signal(SIGXFSZ, SIG_IGN);
  const auto data = ScratchDir("faults-full-rlimit");
  ExpectServingThroughFault(data, data / "kv", FileSizeLimit(), 1);
}

TEST(FaultsTest, FullTmpfsKeepsServingReportsItAndWritesWhatRamKeptOnceThereIsRoom) {
  const auto data = ScratchDir("faults-full");
  TmpfsMount mnt(data / "mnt", 16);
  if (!mnt.mounted()) GTEST_SKIP() << "mounting a tmpfs needs CAP_SYS_ADMIN (FullDisk… is the unprivileged variant)";
  ExpectServingThroughFault(data, data / "mnt" / "kv", FilledTmpfs(data / "mnt"), 1);
}

TEST(FaultsTest, UnwritableCacheDirectoryKeepsServingAndRecoversWhenWritable) {
  const auto data = ScratchDir("faults-unwritable");
  ExpectServingThroughFault(data, data / "kv", DirectoryReplacedByAFile(data / "kv"), 4);
}

TEST(FaultsTest, ReadOnlyCacheDirectoryKeepsServingAndRecoversWhenWritable) {
  const auto data = ScratchDir("faults-ro");
  TmpfsMount mnt(data / "mnt", 64);
  if (!mnt.mounted())
    GTEST_SKIP() << "mounting a tmpfs needs CAP_SYS_ADMIN (UnwritableCache… is the unprivileged variant)";
  ExpectServingThroughFault(data, data / "mnt" / "kv", ReadOnlyTmpfs(mnt), 4);
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
