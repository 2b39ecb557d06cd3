// The installation's tenant secret: 32 random bytes that key the HMAC giving each API key its
// tenant id (server/api_keys.h), so that an id (shown by /admin/agents, written in agent
// records, salting the KV cache's block keys) cannot be used to test guesses of the key offline.
//
// Kept in the cache directory as `tenant-secret` (mode 0600), made on first use and read ever
// after, so tenant ids — and with them the tenants' caches — survive restarts. Creation is
// atomic and exclusive: the bytes are written and fsynced under a temporary name, then linked
// to the final name, which fails if the name exists (two servers starting at once: one wins,
// the other reads the winner's secret; where link(2) is not supported, the final name is created
// with O_EXCL and written in place). An existing file is read only if it is a regular file (a
// symbolic link is not followed), owned by this user, with no group or other permission bits; its
// directory is fsynced again after reading (a creator may have stopped before doing so).
// Stateless; any thread or process.
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"

namespace kvault {

inline constexpr const char* kTenantSecretFile = "tenant-secret";
inline constexpr size_t kTenantSecretBytes = 32;

// `file`'s secret, creating it (and its directory) first if there is none. A file of another
// size is Corruption; one that is a symbolic link, not this user's, open to group or others, or
// unreadable is PermissionDenied (never replaced: that would change every tenant id). IOError:
// it could not be created.
StatusOr<std::string> LoadOrCreateTenantSecret(const std::filesystem::path& file);

// `n` bytes from the kernel's random source (getrandom).
StatusOr<std::string> RandomBytes(size_t n);

}  // namespace kvault
