// ApiKeys: who may call the API, and which cache namespace (tenant) each caller gets.
//
// Keys come from --api-key / KVAULT_API_KEYS. Without keys the server is open and every
// request is the anonymous tenant "". A request presents its key as `x-api-key: KEY`
// (Anthropic) or `Authorization: Bearer KEY` (OpenAI); comparison is constant-time (fixed-size
// digests). The tenant is derived from the key's digest, so the same key keeps its cache
// across restarts and key order does not matter. Immutable after construction: any thread.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "core/status.h"

namespace kvault {

class ApiKeys {
 public:
  explicit ApiKeys(const std::vector<std::string>& keys = {});

  bool enabled() const { return !digests_.empty(); }
  // The caller's tenant, or Unauthenticated (a message safe to return: it never echoes the key).
  StatusOr<std::string> Authenticate(const std::string& x_api_key, const std::string& authorization) const;

 private:
  using Digest = std::array<unsigned char, 16>;
  static Digest DigestOf(const std::string& key);
  std::vector<Digest> digests_;
};

}  // namespace kvault
