#include "model/model_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "gguf.h"

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
  in.close();
  // The header, metadata and tensor table (no tensor data).
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  gguf_context* meta = gguf_init_from_file(path.c_str(), params);
  if (!meta) return Status::Corruption("damaged GGUF model file (header or metadata unreadable): " + path.string());
  uint64_t need = gguf_get_data_offset(meta);
  for (int64_t i = 0; i < gguf_get_n_tensors(meta); ++i) {
    need = std::max<uint64_t>(
        need, gguf_get_data_offset(meta) + gguf_get_tensor_offset(meta, i) + gguf_get_tensor_size(meta, i));
  }
  gguf_free(meta);
  const uint64_t size = fs::file_size(path, ec);
  if (ec) return Status::IOError("cannot read model file " + path.string() + ": " + ec.message());
  if (size < need) {
    return Status::Corruption("truncated GGUF model file: " + path.string() + " has " + std::to_string(size) +
                              " bytes, its tensors need " + std::to_string(need));
  }
  return Status::Ok();
}

}  // namespace kvault
