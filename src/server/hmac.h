// SHA-256 and HMAC-SHA256 (RFC 2104), for the tenant ids of API keys (server/api_keys).
//
// The hash itself is llama.cpp's vendored SHA-256 (vendor/hash/sha256: Igor Pavlov's
// public-domain implementation from 7-Zip, which llama.cpp's own tools use), linked from the
// pinned llama.cpp tree; HMAC is built on it here. Pure functions: any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvault {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);
Sha256Digest HmacSha256(std::string_view key, std::string_view message);

// Lowercase hex of the first `bytes` bytes of `d`.
std::string DigestHex(const Sha256Digest& d, size_t bytes = 32);

}  // namespace kvault
