#include "server/api_keys.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>

#include "server/hmac.h"
#include "server/tenant_secret.h"

namespace kvault {

namespace {

constexpr const char* kDerivedPrefix = "key-";

}  // namespace

ApiKeys::ApiKeys(const std::vector<std::string>& entries, const std::string& secret, Entries kind) {
  std::string key_secret = secret;
  if (key_secret.empty() && kind == Entries::kKeysOrNamed && !entries.empty()) {
    auto random = RandomBytes(kTenantSecretBytes);
    if (!random.ok()) {
      // Unkeyed ids would let anyone who sees one test guesses of the key (the server passes a
      // secret; this is for other callers).
      spdlog::critical("api keys: no secret for tenant ids: {}", random.status().message());
      std::abort();
    }
    key_secret = *random;
  }
  for (const auto& entry : entries) {
    if (entry.empty()) continue;
    Key k;
    if (kind == Entries::kKeysOnly) {
      k.digest = DigestOf(entry);
    } else {
      const ApiKeyEntry e = ParseEntry(entry);
      if (e.key.empty()) continue;
      k.digest = DigestOf(e.key);
      k.tenant = e.tenant_name.empty() ? DerivedTenant(e.key, key_secret) : e.tenant_name;
    }
    keys_.push_back(std::move(k));
  }
}

bool ApiKeys::ValidTenantName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

ApiKeyEntry ApiKeys::ParseEntry(const std::string& entry) {
  const size_t eq = entry.find('=');
  if (eq != std::string::npos && eq + 1 < entry.size() && entry[eq + 1] != '=' &&
      ValidTenantName(entry.substr(0, eq))) {
    return {entry.substr(0, eq), entry.substr(eq + 1)};
  }
  return {"", entry};
}

Status ApiKeys::Check(const std::vector<std::string>& entries) {
  std::map<std::string, std::string> tenant_of;  // key -> its tenant name ("" for a bare key)
  for (const auto& entry : entries) {
    if (entry.empty()) continue;  // ignored (an empty item of a comma-separated list)
    const ApiKeyEntry e = ParseEntry(entry);
    // A space or newline pasted with a key would make a key no client sends.
    const auto space = [](unsigned char c) { return std::isspace(c) != 0; };
    if (space(entry.front()) || space(entry.back()) || (!e.key.empty() && space(e.key.front()))) {
      return Status::InvalidArgument(
          (e.tenant_name.empty() ? std::string("an API key") : "the API key of tenant '" + e.tenant_name + "'") +
          " starts or ends with whitespace; remove it (or use a key without)");
    }
    if (e.tenant_name.rfind(kDerivedPrefix, 0) == 0) {
      return Status::InvalidArgument("tenant name '" + e.tenant_name + "': names starting with '" + kDerivedPrefix +
                                     "' are reserved for the ids of keys without a name");
    }
    auto [it, inserted] = tenant_of.emplace(e.key, e.tenant_name);
    if (!inserted && it->second != e.tenant_name) {
      const std::string who = e.tenant_name.empty() ? "an API key" : "the API key of tenant '" + e.tenant_name + "'";
      return Status::InvalidArgument(
          who + " is also given to " +
          (it->second.empty() ? std::string("its own tenant (a bare key)") : "tenant '" + it->second + "'") +
          ": one key, one tenant");
    }
  }
  return Status::Ok();
}

std::string ApiKeys::DerivedTenant(const std::string& key, const std::string& secret) {
  // The domain string keeps these digests apart from any other use of the same secret.
  std::string message = "kvault-tenant-id-v2";
  message += '\0';
  message += key;
  return kDerivedPrefix + DigestHex(HmacSha256(secret, message), 8);
}

ApiKeys::Digest ApiKeys::DigestOf(const std::string& key) {
  // XXH3-128 of the key, for comparison only: comparing fixed-size digests takes the same time
  // whatever the key's length or content (the keys are random tokens; the digest never leaves
  // the process — tenant ids come from DerivedTenant, keyed by the installation's secret).
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
  if (presented.empty() && authorization.size() > kBearer.size() &&
      authorization.compare(0, kBearer.size(), kBearer) == 0) {
    presented = authorization.substr(kBearer.size());
  }
  if (presented.empty()) {
    return Status::Unauthenticated("missing API key: send it as 'x-api-key: KEY' or 'Authorization: Bearer KEY'");
  }
  const Digest d = DigestOf(presented);
  int match = -1;
  for (size_t i = 0; i < keys_.size(); ++i) {
    unsigned char diff = 0;
    for (size_t b = 0; b < d.size(); ++b) diff |= static_cast<unsigned char>(d[b] ^ keys_[i].digest[b]);
    if (diff == 0) match = static_cast<int>(i);  // no early exit: every key is compared
  }
  if (match < 0) return Status::Unauthenticated("invalid API key");
  return keys_[static_cast<size_t>(match)].tenant;
}

}  // namespace kvault
