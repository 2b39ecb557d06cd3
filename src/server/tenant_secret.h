// The installation's tenant secret: 32 random bytes that key the HMAC giving each API key its
// tenant id (server/api_keys.h), so that an id (shown by /admin/agents, written in agent
// records, salting the KV cache's block keys) cannot be used to test guesses of the key offline.
//
// Kept in the cache directory as `tenant-secret` (mode 0600), made on first use and read ever
// after, so tenant ids — and with them the tenants' caches — survive restarts. Creation is
// atomic and exclusive: the bytes are written and fsynced under a temporary name, then linked
// to the final name, which fails if the name exists (two servers starting at once: one wins,
// the other reads the winner's secret). Stateless; any thread or process.
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"

namespace kvault {

inline constexpr const char* kTenantSecretFile = "tenant-secret";
inline constexpr size_t kTenantSecretBytes = 32;

// `file`'s secret, creating it (and its directory) first if there is none. A file of another
// size is Corruption (never replaced: that would change every tenant id).
StatusOr<std::string> LoadOrCreateTenantSecret(const std::filesystem::path& file);

// `n` bytes from the kernel's random source (getrandom).
StatusOr<std::string> RandomBytes(size_t n);

}  // namespace kvault
