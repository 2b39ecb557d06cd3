#include "core/paths.h"

#include <cstdlib>
#include <vector>

namespace kvault {

namespace fs = std::filesystem;

fs::path DefaultDataDir() {
  if (const char* d = std::getenv("KVAULT_DATA_DIR"); d && *d) return fs::path(d);
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return fs::path(x) / "kvault";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".local/share/kvault";
  return fs::path(".kvault");
}

fs::path ExecutableDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return fs::current_path();
  return exe.parent_path();
}

StatusOr<fs::path> FindSharedFile(const std::string& name) {
  std::vector<fs::path> candidates = {ExecutableDir() / ".." / "share" / "kvault" / name};
#ifdef KVAULT_BUILD_VOCAB_DIR
  if (std::string(KVAULT_BUILD_VOCAB_DIR).size() > 0) {
    candidates.push_back(fs::path(KVAULT_BUILD_VOCAB_DIR) / name);
  }
#endif
  std::string tried;
  for (const auto& c : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(c, ec)) return fs::weakly_canonical(c);
    tried += (tried.empty() ? "" : ", ") + c.string();
  }
  return Status::NotFound("shared file '" + name + "' not found (looked in: " + tried + ")");
}

}  // namespace kvault
