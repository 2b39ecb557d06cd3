#include "server/hmac.h"

#include <algorithm>

extern "C" {
#include "hash/sha256/sha256.h"
}

namespace kvault {

namespace {

constexpr size_t kBlock = 64;  // SHA-256's block size

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest d;
  sha256_t ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, Bytes(data), data.size());
  sha256_final(&ctx, d.data());
  return d;
}

Sha256Digest HmacSha256(std::string_view key, std::string_view message) {
  // RFC 2104: H((K ^ opad) || H((K ^ ipad) || message)), K hashed first when longer than a block.
  std::array<unsigned char, kBlock> k{};
  if (key.size() > kBlock) {
    const Sha256Digest hk = Sha256(key);
    std::copy(hk.begin(), hk.end(), k.begin());
  } else {
    std::copy(key.begin(), key.end(), k.begin());
  }
  std::array<unsigned char, kBlock> pad;
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x36;
  Sha256Digest inner;
  sha256_t ctx;
  sha256_init(&ctx);
  sha256_update(&ctx, pad.data(), pad.size());
  sha256_update(&ctx, Bytes(message), message.size());
  sha256_final(&ctx, inner.data());
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x5c;
  Sha256Digest out;
  sha256_init(&ctx);
  sha256_update(&ctx, pad.data(), pad.size());
  sha256_update(&ctx, inner.data(), inner.size());
  sha256_final(&ctx, out.data());
  return out;
}

std::string DigestHex(const Sha256Digest& d, size_t bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < std::min(bytes, d.size()); ++i) {
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 15];
  }
  return out;
}

}  // namespace kvault
