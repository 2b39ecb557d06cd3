#include "kvstore/block_file.h"

#include <cstring>
#include <nlohmann/json.hpp>

namespace kvault {

using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "kvault-kv-block";
constexpr const char* kFormatVersion = "1";
constexpr size_t kMaxHeader = 1 << 20;

std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

Status Bad(const std::string& why) {
  return Status::Corruption("bad KV block file: " + why);
}

// Gives a record's buffer back to the pool when its last reference goes.
struct Recycle {
  std::shared_ptr<BufferRecycler> pool;
  void operator()(BlockRecord* r) const {
    pool->Give(std::move(r->kv));
    delete r;
  }
};

}  // namespace

std::shared_ptr<BlockRecord> ShareRecycled(BlockRecord record, std::shared_ptr<BufferRecycler> buffers) {
  return std::shared_ptr<BlockRecord>(new BlockRecord(std::move(record)), Recycle{std::move(buffers)});
}

void EncodeBlockFile(const BlockRecord& r, std::vector<uint8_t>* out) {
  const size_t tok_bytes = r.tokens.size() * sizeof(int32_t);
  const size_t data_size = tok_bytes + r.kv.size();
  // The header holds the data's checksum, whose hex form has a fixed width: the header is laid
  // out with a placeholder first, the data written after it, then the real checksum put in.
  auto header = [&](uint64_t checksum) {
    json h = {{"tokens", {{"dtype", "I32"}, {"shape", {r.tokens.size()}}, {"data_offsets", {0, tok_bytes}}}},
              {"kv", {{"dtype", "U8"}, {"shape", {r.kv.size()}}, {"data_offsets", {tok_bytes, data_size}}}},
              {"__metadata__",
               {{"format", kFormat},
                {"format_version", kFormatVersion},
                {"key", r.key.Hex()},
                {"parent", r.parent.Hex()},
                {"fingerprint", r.fingerprint},
                {"kv_type", r.kv_type},
                {"token_count", std::to_string(r.tokens.size())},
                {"first_pos", std::to_string(r.first_pos)},
                {"checksum", Hex64(checksum)}}}};
    std::string text = h.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
  };
  const size_t h_size = header(0).size();
  out->resize(8 + h_size + data_size);  // a reused buffer: no allocation once it has grown
  uint8_t* data = out->data() + 8 + h_size;
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    const auto v = static_cast<uint32_t>(r.tokens[i]);
    for (int b = 0; b < 4; ++b) data[i * 4 + b] = static_cast<uint8_t>(v >> (8 * b));
  }
  if (!r.kv.empty()) std::memcpy(data + tok_bytes, r.kv.data(), r.kv.size());
  const std::string h = header(Checksum64(data, data_size));
  const uint64_t n = h.size();
  for (int b = 0; b < 8; ++b) (*out)[b] = static_cast<uint8_t>(n >> (8 * b));
  std::memcpy(out->data() + 8, h.data(), h.size());
}

std::vector<uint8_t> EncodeBlockFile(const BlockRecord& r) {
  std::vector<uint8_t> out;
  EncodeBlockFile(r, &out);
  return out;
}

StatusOr<BlockRecord> DecodeBlockFile(std::span<const uint8_t> bytes, const std::string& expect_fingerprint,
                                      BufferRecycler* buffers) {
  if (bytes.size() < 8) return Bad("truncated (no header length)");
  uint64_t n = 0;
  for (int b = 0; b < 8; ++b) n |= static_cast<uint64_t>(bytes[b]) << (8 * b);
  if (n == 0 || n > kMaxHeader || n > bytes.size() - 8) return Bad("truncated or implausible header length");
  json h = json::parse(bytes.data() + 8, bytes.data() + 8 + n, nullptr, false);
  if (h.is_discarded() || !h.is_object()) return Bad("header is not JSON");
  const size_t data_start = 8 + n;
  const size_t data_size = bytes.size() - data_start;
  try {
    const json& m = h.at("__metadata__");
    if (m.at("format").get<std::string>() != kFormat) return Bad("not a kvault KV block");
    if (m.at("format_version").get<std::string>() != kFormatVersion) {
      return Bad("format version " + m.at("format_version").get<std::string>() + " (expected 1)");
    }
    BlockRecord r;
    r.fingerprint = m.at("fingerprint").get<std::string>();
    if (r.fingerprint != expect_fingerprint) return Bad("written for another model or configuration");
    if (!BlockKey::FromHex(m.at("key").get<std::string>(), &r.key) ||
        !BlockKey::FromHex(m.at("parent").get<std::string>(), &r.parent)) {
      return Bad("malformed key");
    }
    r.kv_type = m.at("kv_type").get<std::string>();
    const size_t n_tokens = std::stoul(m.at("token_count").get<std::string>());
    r.first_pos = static_cast<uint32_t>(std::stoul(m.at("first_pos").get<std::string>()));
    const auto& t = h.at("tokens");
    const auto& kv = h.at("kv");
    // at(): a const json's operator[] does not check bounds (a one-element array read past its end).
    const size_t t0 = t.at("data_offsets").at(0), t1 = t.at("data_offsets").at(1);
    const size_t k0 = kv.at("data_offsets").at(0), k1 = kv.at("data_offsets").at(1);
    if (n_tokens > data_size / 4) return Bad("more tokens than data");  // before n_tokens * 4 can wrap
    if (t.at("dtype") != "I32" || kv.at("dtype") != "U8" || t0 != 0 || t1 != n_tokens * 4 || k0 != t1 || k1 < k0 ||
        k1 != data_size) {
      return Bad("inconsistent tensor layout or truncated data");
    }
    char want[17];
    std::snprintf(want, sizeof(want), "%016llx",
                  static_cast<unsigned long long>(Checksum64(bytes.data() + data_start, data_size)));
    if (m.at("checksum").get<std::string>() != want) return Bad("checksum mismatch");
    r.tokens.resize(n_tokens);
    for (size_t i = 0; i < n_tokens; ++i) {
      uint32_t v = 0;
      for (int b = 0; b < 4; ++b) v |= static_cast<uint32_t>(bytes[data_start + i * 4 + b]) << (8 * b);
      r.tokens[i] = static_cast<int32_t>(v);
    }
    const uint8_t* kv_bytes = bytes.data() + data_start + k0;
    if (buffers) {
      r.kv = buffers->Take(k1 - k0);
      if (k1 > k0) std::memcpy(r.kv.data(), kv_bytes, k1 - k0);
    } else {
      r.kv.assign(kv_bytes, kv_bytes + (k1 - k0));
    }
    return r;
  } catch (const std::exception& e) {
    return Bad(std::string("malformed header: ") + e.what());
  }
}

}  // namespace kvault
