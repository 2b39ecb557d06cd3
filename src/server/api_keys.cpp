#include "server/api_keys.h"

#include <xxhash.h>

#include <cstring>

namespace kvault {

ApiKeys::ApiKeys(const std::vector<std::string>& keys) {
  for (const auto& k : keys) {
    if (!k.empty()) digests_.push_back(DigestOf(k));
  }
}

ApiKeys::Digest ApiKeys::DigestOf(const std::string& key) {
  // A keyed-by-purpose XXH3-128 of the key: comparing fixed-size digests takes the same time
  // whatever the key's length or content (XXH3 is not a password hash; the keys are random
  // tokens, and the digest never leaves the process except through the tenant's cache salt).
  const std::string input = "kvault-api-key:" + key;
  const XXH128_hash_t h = XXH3_128bits(input.data(), input.size());
  Digest d;
  std::memcpy(d.data(), &h.low64, 8);
  std::memcpy(d.data() + 8, &h.high64, 8);
  return d;
}

StatusOr<std::string> ApiKeys::Authenticate(const std::string& x_api_key, const std::string& authorization) const {
  if (!enabled()) return std::string();
  std::string presented = x_api_key;
  static const std::string kBearer = "Bearer ";
  if (presented.empty() && authorization.size() > kBearer.size() && authorization.compare(0, kBearer.size(), kBearer) == 0) {
    presented = authorization.substr(kBearer.size());
  }
  if (presented.empty()) {
    return Status::Unauthenticated("missing API key: send it as 'x-api-key: KEY' or 'Authorization: Bearer KEY'");
  }
  const Digest d = DigestOf(presented);
  int match = -1;
  for (size_t i = 0; i < digests_.size(); ++i) {
    unsigned char diff = 0;
    for (size_t b = 0; b < d.size(); ++b) diff |= static_cast<unsigned char>(d[b] ^ digests_[i][b]);
    if (diff == 0) match = static_cast<int>(i);  // no early exit: every key is compared
  }
  if (match < 0) return Status::Unauthenticated("invalid API key");
  static const char kHex[] = "0123456789abcdef";
  std::string tenant = "key-";
  for (size_t b = 0; b < 8; ++b) {
    tenant += kHex[d[b] >> 4];
    tenant += kHex[d[b] & 15];
  }
  return tenant;
}

}  // namespace kvault
