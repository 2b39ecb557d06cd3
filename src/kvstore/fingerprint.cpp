#include "kvstore/fingerprint.h"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "core/fs_sync.h"
#include "kvstore/block_key.h"

namespace kvault {

namespace fs = std::filesystem;

StatusOr<std::string> ModelContentHash(const fs::path& model, const fs::path& cache_dir) {
  std::error_code ec;
  const fs::path abs = fs::absolute(model, ec);
  const uint64_t size = fs::file_size(abs, ec);
  if (ec) return Status::IOError("cannot stat " + abs.string() + ": " + ec.message());
  const auto mtime = static_cast<long long>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(fs::last_write_time(abs, ec).time_since_epoch()).count());
  // The status-change time and the inode too: a file replaced by other content that kept the old
  // one's size and mtime (a copy with preserved times, an image with normalised ones) cannot keep
  // them, as no one can set a ctime, so it is hashed again instead of taking the old hash.
  struct stat st {};
  if (::stat(abs.c_str(), &st) != 0) return Status::IOError("cannot stat " + abs.string());
  const std::string id = abs.string() + "\t" + std::to_string(size) + "\t" + std::to_string(mtime) + "\t" +
                         std::to_string(st.st_ctim.tv_sec) + "." + std::to_string(st.st_ctim.tv_nsec) + "\t" +
                         std::to_string(st.st_ino);
  const fs::path memo = cache_dir.empty() ? fs::path() : cache_dir / "model-hashes.tsv";
  if (!memo.empty()) {
    std::ifstream in(memo);
    std::string line;
    while (std::getline(in, line)) {
      const size_t tab = line.rfind('\t');
      if (tab != std::string::npos && line.compare(0, tab, id) == 0) return line.substr(tab + 1);
    }
  }
  std::string error;
  const std::string hash = HashFileHex(abs.string(), &error);
  if (hash.empty()) return Status::IOError(error);
  if (!memo.empty()) {
    // The cache directory is made here first (before DiskTier::Open): durably, or a power loss
    // could take it, with every block that is fsynced in it later (DiskTier finds it existing).
    if (CreateDirsDurably(cache_dir).ok()) std::ofstream(memo, std::ios::app) << id << "\t" << hash << "\n";
  }
  return hash;
}

std::string ModelFingerprint(const std::string& content_hash, const KvConfig& c) {
  std::ostringstream s;
  s << "gguf=" << content_hash << ";type_k=" << c.type_k << ";type_v=" << c.type_v << ";fa=" << c.flash_attn
    << ";unified=" << c.unified << ";swa_full=" << c.swa_full << ";llama=" << c.llama_release;
  // Only when not the CPU: a CPU build's fingerprint (and so its cache directory) is unchanged.
  if (!c.backend.empty()) s << ";backend=" << c.backend;
  return CacheSalt(s.str(), "fingerprint").Hex();
}

}  // namespace kvault
