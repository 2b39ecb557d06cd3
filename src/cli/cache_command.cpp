// `kvault cache ls|stats|verify|gc --cache-dir DIR`: inspect and maintain a KV cache directory
// offline (the server need not run; do not gc a directory a running server uses).
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "kvstore/block_file.h"
#include "kvstore/disk_tier.h"

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
    sub->add_option("--cache-dir", args->cache_dir, "the cache directory (a server's --cache-dir)")->required();
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

int RunCache(const CacheArgs& a) {
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
