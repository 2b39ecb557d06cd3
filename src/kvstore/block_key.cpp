#include "kvstore/block_key.h"

#include <xxhash.h>

#include <cstdio>
#include <cstring>
#include <memory>

namespace kvault {

namespace {

BlockKey FromHash(XXH128_hash_t h) {
  BlockKey k;
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  std::memcpy(k.bytes.data(), c.digest, 16);
  return k;
}

constexpr const char* kCacheFormat = "kvault-kv-cache-v1";

}  // namespace

std::string BlockKey::Hex() const {
  static const char* digits = "0123456789abcdef";
  std::string s(32, '0');
  for (size_t i = 0; i < 16; ++i) {
    s[2 * i] = digits[bytes[i] >> 4];
    s[2 * i + 1] = digits[bytes[i] & 15];
  }
  return s;
}

bool BlockKey::FromHex(const std::string& hex, BlockKey* out) {
  if (hex.size() != 32) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < 16; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

size_t BlockKeyHash::operator()(const BlockKey& k) const {
  size_t h;
  std::memcpy(&h, k.bytes.data(), sizeof(h));
  return h;
}

BlockKey CacheSalt(const std::string& fingerprint, const std::string& name_space) {
  std::string material = std::string(kCacheFormat) + '\0' + fingerprint + '\0' + name_space;
  return FromHash(XXH3_128bits(material.data(), material.size()));
}

void ExtendBlockKeys(const BlockKey& salt, const std::vector<int32_t>& tokens, uint32_t block_tokens,
                     std::vector<BlockKey>* keys) {
  const size_t n_full = block_tokens ? tokens.size() / block_tokens : 0;
  std::vector<uint8_t> buf(16 + block_tokens * sizeof(int32_t));
  for (size_t i = keys->size(); i < n_full; ++i) {
    const BlockKey& parent = i == 0 ? salt : (*keys)[i - 1];
    std::memcpy(buf.data(), parent.bytes.data(), 16);
    for (uint32_t t = 0; t < block_tokens; ++t) {  // little-endian token ids, whatever the host
      const auto v = static_cast<uint32_t>(tokens[i * block_tokens + t]);
      for (int b = 0; b < 4; ++b) buf[16 + t * 4 + b] = static_cast<uint8_t>(v >> (8 * b));
    }
    keys->push_back(FromHash(XXH3_128bits(buf.data(), buf.size())));
  }
}

std::vector<BlockKey> ComputeBlockKeys(const BlockKey& salt, const std::vector<int32_t>& tokens,
                                       uint32_t block_tokens) {
  std::vector<BlockKey> keys;
  ExtendBlockKeys(salt, tokens, block_tokens, &keys);
  return keys;
}

std::vector<BlockKey> TailBlockKeys(const BlockKey& parent, const int32_t* tokens, size_t n) {
  // One streaming hash, digested after each token: the same value as hashing each prefix at once.
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(), XXH3_freeState);
  XXH3_128bits_reset(st.get());
  XXH3_128bits_update(st.get(), parent.bytes.data(), 16);
  const uint8_t marker[4] = {0xff, 0xff, 0xff, 0xff};  // int32 -1, little-endian
  XXH3_128bits_update(st.get(), marker, 4);
  std::vector<BlockKey> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto v = static_cast<uint32_t>(tokens[i]);
    const uint8_t le[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
                           static_cast<uint8_t>(v >> 24)};
    XXH3_128bits_update(st.get(), le, 4);
    keys.push_back(FromHash(XXH3_128bits_digest(st.get())));
  }
  return keys;
}

std::string HashFileHex(const std::string& path, std::string* error) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) {
    if (error) *error = "cannot open " + path;
    return {};
  }
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(), XXH3_freeState);
  XXH3_128bits_reset(st.get());
  std::vector<char> buf(4 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) XXH3_128bits_update(st.get(), buf.data(), n);
  if (std::ferror(f.get())) {
    if (error) *error = "read error on " + path;
    return {};
  }
  return FromHash(XXH3_128bits_digest(st.get())).Hex();
}

uint64_t Checksum64(const void* data, size_t size) {
  return XXH3_64bits(data, size);
}

}  // namespace kvault
