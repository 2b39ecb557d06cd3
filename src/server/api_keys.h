// ApiKeys: who may call the API, and which cache namespace (tenant) each caller gets.
//
// Keys come from --api-key, the config file's api-key list and KVAULT_API_KEYS. Without keys the
// server is open and every request is the anonymous tenant "". A request presents its key as
// `x-api-key: KEY` (Anthropic) or `Authorization: Bearer KEY` (OpenAI); comparison is
// constant-time (fixed-size digests).
//
// Each entry is a bare KEY or NAME=KEY (ParseEntry). A named key's tenant is NAME (several keys
// may share one: key rotation). A bare key's tenant is `key-` + 16 hex digits of
// HMAC-SHA256(installation secret, key) (server/tenant_secret.h): stable across restarts and
// independent of key order, and, without the secret, useless for testing guesses of the key.
// Immutable after construction: any thread.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "core/status.h"

namespace kvault {

struct ApiKeyEntry {
  std::string tenant_name;  // empty: a bare key (tenant derived from it)
  std::string key;
};

class ApiKeys {
 public:
  enum class Entries {
    kKeysOrNamed,  // KEY or NAME=KEY (API keys)
    kKeysOnly,     // each entry is a key as written (admin keys: no tenants)
  };

  // `secret` keys the tenant ids of bare keys; empty: a random one for this process (ids then
  // change at every start). Entries are expected to pass Check (one that does not is ignored).
  explicit ApiKeys(const std::vector<std::string>& entries = {}, const std::string& secret = {},
                   Entries kind = Entries::kKeysOrNamed);

  // NAME=KEY when the text before the first '=' is a valid tenant name and the text after it is
  // non-empty and does not start with '=' (so a base64 key's trailing '=' padding never splits
  // it); otherwise the whole entry is a bare key.
  static ApiKeyEntry ParseEntry(const std::string& entry);
  // 1 to 64 of [A-Za-z0-9._-].
  static bool ValidTenantName(const std::string& name);
  // Start-up checks: no name starting with `key-` (reserved for derived ids), no
  // key given to two tenants. The messages never contain a key.
  static Status Check(const std::vector<std::string>& entries);
  // A bare key's tenant: `key-` + the first 8 bytes of HMAC-SHA256(secret, domain || key), hex.
  static std::string DerivedTenant(const std::string& key, const std::string& secret);

  bool enabled() const { return !keys_.empty(); }
  // The caller's tenant, or Unauthenticated (a message safe to return: it never echoes the key).
  StatusOr<std::string> Authenticate(const std::string& x_api_key, const std::string& authorization) const;

 private:
  using Digest = std::array<unsigned char, 16>;
  struct Key {
    Digest digest;
    std::string tenant;
  };
  static Digest DigestOf(const std::string& key);
  std::vector<Key> keys_;
};

}  // namespace kvault
