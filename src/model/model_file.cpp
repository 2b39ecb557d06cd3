#include "model/model_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>

namespace kvault {

namespace fs = std::filesystem;

Status CheckModelFile(const fs::path& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return Status::NotFound("model file not found: " + path.string());
  if (!fs::is_regular_file(st)) return Status::InvalidArgument("model path is not a file: " + path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::IOError("cannot read model file " + path.string() + ": " + std::strerror(errno));
  }
  char magic[4] = {};
  in.read(magic, sizeof(magic));
  if (in.gcount() != 4 || std::memcmp(magic, "GGUF", 4) != 0) {
    return Status::Corruption("not a GGUF model file: " + path.string());
  }
  return Status::Ok();
}

}  // namespace kvault
