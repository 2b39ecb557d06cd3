// `kvault cache ls|stats|verify|gc --cache-dir DIR`: inspect and maintain a KV cache directory
// offline (the server need not run; do not gc a directory a running server uses).
// `kvault cache stats --remote-cache redis://…`: what a fleet's Redis holds (reads only).
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "kvstore/block_file.h"
#include "kvstore/disk_tier.h"
#include "kvstore/redis_inventory.h"

namespace kvault {

namespace fs = std::filesystem;

void AddCacheCommand(CLI::App& app, CacheArgs* args) {
  CLI::App* cache = app.add_subcommand("cache", "Inspect and maintain a KV cache directory");
  cache->require_subcommand(1);
  for (const char* name : {"ls", "stats", "verify", "gc"}) {
    const char* help = std::string(name) == "ls"       ? "List model fingerprints with their blocks and bytes"
                       : std::string(name) == "stats"  ? "Totals over the whole directory"
                       : std::string(name) == "verify" ? "Check every block file; exit 1 if any is bad"
                                                       : "Delete least recently used blocks down to --max-gib";
    CLI::App* sub = cache->add_subcommand(name, help);
    auto* dir = sub->add_option("--cache-dir", args->cache_dir, "the cache directory (a server's --cache-dir)");
    if (std::string(name) == "stats") {
      sub->add_option("--remote-cache", args->remote_cache,
                      "also (or only) a fleet's Redis: redis://[user:password@]host:port[/db]")
          ->envname("KVAULT_REMOTE_CACHE");
    } else {
      dir->required();
    }
    if (std::string(name) == "gc") sub->add_option("--max-gib", args->max_gib, "size to keep, GiB")->required();
    sub->callback([args, name] { args->action = name; });
  }
}

namespace {

// Fingerprint directories: 32 hex digits.
std::vector<fs::path> ModelDirs(const fs::path& root) {
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (auto& e : fs::directory_iterator(root, ec)) {
    BlockKey k;
    if (e.is_directory() && BlockKey::FromHex(e.path().filename().string(), &k)) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

}  // namespace

// `cache stats --remote-cache`: per model fingerprint, the blocks, bytes and agent records in Redis.
static int RemoteStats(const std::string& url_text) {
  auto url = ParseRedisUrl(url_text);
  if (!url.ok()) {
    std::cerr << "kvault: --remote-cache: " << url.status().message() << "\n";
    return kExitUsage;
  }
  auto inv = InventoryRedis(*url);
  if (!inv.ok()) {
    std::cerr << "kvault: " << inv.status().message() << "\n";
    return kExitFailure;
  }
  uint64_t blocks = 0, bytes = 0, agents = 0;
  for (const auto& [fp, m] : inv->models) {
    std::cout << "remote " << fp << "  " << m.blocks << " blocks  " << std::fixed << std::setprecision(1)
              << static_cast<double>(m.bytes) / (1 << 20) << " MiB  " << m.agents << " agents\n";
    blocks += m.blocks;
    bytes += m.bytes;
    agents += m.agents;
  }
  auto or_unknown = [](const std::string& s) { return s.empty() ? std::string("unknown") : s; };
  std::cout << "remote: " << url->Redacted() << "\nremote models: " << inv->models.size()
            << "\nremote blocks: " << blocks << "\nremote bytes: " << bytes << "\nremote agents: " << agents
            << "\nremote other keys: " << inv->other_keys << "\nredis used_memory: " << or_unknown(inv->used_memory)
            << "\nredis maxmemory: " << or_unknown(inv->maxmemory)
            << "\nredis maxmemory_policy: " << or_unknown(inv->maxmemory_policy)
            << "\nredis evicted_keys: " << or_unknown(inv->evicted_keys) << "\n";
  return kExitOk;
}

int RunCache(const CacheArgs& a) {
  if (a.action == "stats" && a.cache_dir.empty()) {
    if (a.remote_cache.empty()) {
      std::cerr << "kvault: cache stats needs --cache-dir, --remote-cache or both\n";
      return kExitUsage;
    }
    return RemoteStats(a.remote_cache);
  }
  const fs::path root = a.cache_dir;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    std::cerr << "kvault: not a directory: " << root << "\n";
    return kExitUsage;
  }
  const auto dirs = ModelDirs(root);
  if (a.action == "ls" || a.action == "stats") {
    uint64_t blocks = 0, bytes = 0, quarantined = 0;
    for (const auto& d : dirs) {
      DiskTier t(d, UINT64_MAX);
      if (!t.Open(DiskTier::Mode::kReadOnly).ok()) continue;
      const auto st = t.stats();
      size_t q = 0;
      for (auto& f : fs::directory_iterator(d / "quarantine", ec)) q += f.is_regular_file() ? 1 : 0;
      blocks += st.blocks;
      bytes += st.bytes;
      quarantined += q;
      if (a.action == "ls") {
        std::cout << d.filename().string() << "  " << st.blocks << " blocks  " << std::fixed << std::setprecision(1)
                  << static_cast<double>(st.bytes) / (1 << 20) << " MiB  " << q << " quarantined\n";
      }
    }
    if (a.action == "stats") {
      std::cout << "models: " << dirs.size() << "\nblocks: " << blocks << "\nbytes: " << bytes
                << "\nquarantined: " << quarantined << "\n";
      if (!a.remote_cache.empty()) return RemoteStats(a.remote_cache);
    }
    return kExitOk;
  }
  if (a.action == "verify") {
    uint64_t good = 0, bad = 0;
    for (const auto& d : dirs) {
      const std::string fingerprint = d.filename().string();
      DiskTier t(d, UINT64_MAX);
      for (auto it = fs::recursive_directory_iterator(d, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec)) {
        if (it->path().filename() == "quarantine") {
          it.disable_recursion_pending();
          continue;
        }
        if (it->path().extension() != ".safetensors") continue;
        BlockKey key;
        const std::string stem = it->path().stem().string();
        std::string why;
        if (!BlockKey::FromHex(stem, &key)) {
          why = "file name is not a block key";
        } else if (auto bytes = t.Read(key); !bytes.ok()) {
          why = bytes.status().message();
        } else if (auto rec = DecodeBlockFile(*bytes, fingerprint); !rec.ok()) {
          why = rec.status().message();
        } else if (rec->key != key) {
          why = "key in the file differs from its name";
        }
        if (why.empty()) {
          ++good;
        } else {
          ++bad;
          std::cout << "BAD " << it->path().string() << ": " << why << "\n";
        }
      }
    }
    std::cout << good << " good, " << bad << " bad\n";
    return bad == 0 ? kExitOk : kExitFailure;
  }
  if (a.action == "gc") {
    // Shared budget: each model directory keeps its share in proportion to its size.
    uint64_t total = 0;
    std::vector<std::pair<fs::path, uint64_t>> sizes;
    for (const auto& d : dirs) {
      DiskTier t(d, UINT64_MAX);
      if (!t.Open(DiskTier::Mode::kReadOnly).ok()) continue;
      sizes.emplace_back(d, t.stats().bytes);
      total += t.stats().bytes;
    }
    const auto budget = static_cast<uint64_t>(a.max_gib * static_cast<double>(1ull << 30));
    uint64_t deleted = 0;
    for (const auto& [d, size] : sizes) {
      const uint64_t share = total <= budget ? size : static_cast<uint64_t>(static_cast<double>(size) * budget / total);
      DiskTier t(d, share);
      if (Status s = t.Open(); s.ok()) {
        deleted += t.stats().gc_deleted;
      } else {
        std::cerr << "kvault: skipped " << d.string() << ": " << s.message() << "\n";
      }
    }
    std::cout << "deleted " << deleted << " blocks\n";
    return kExitOk;
  }
  return kExitUsage;
}

}  // namespace kvault
