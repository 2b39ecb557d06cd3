// BlockKey: the content address of one KV block.
//
// A token sequence is cut into blocks of `block_tokens`; key(i) = XXH3-128(key(i-1) ‖ tokens of
// block i), and key(-1) is the salt: XXH3-128 of the cache format, the model fingerprint and the
// tenant namespace. So a key names a block *and its whole prefix* for one model and one tenant:
// two agents with the same system prompt get the same keys for its blocks (stored once); two
// tenants never do. XXH3-128: fast (GB/s, far below the cost of the KV bytes it names), in
// Debian (libxxhash), and 128 bits make accidental collisions negligible; a stored block also
// carries its tokens, which are compared on load. Pure functions; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace kvault {

struct BlockKey {
  std::array<uint8_t, 16> bytes{};
  std::string Hex() const;
  static bool FromHex(const std::string& hex, BlockKey* out);
  bool operator==(const BlockKey& o) const { return bytes == o.bytes; }
  bool operator!=(const BlockKey& o) const { return bytes != o.bytes; }
  bool operator<(const BlockKey& o) const { return bytes < o.bytes; }
};

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const;
};

// The salt for one model fingerprint and tenant namespace.
BlockKey CacheSalt(const std::string& fingerprint, const std::string& name_space);

// Keys of the full blocks of `tokens` (a trailing partial block has none).
std::vector<BlockKey> ComputeBlockKeys(const BlockKey& salt, const std::vector<int32_t>& tokens, uint32_t block_tokens);

// Keys of the full blocks of `tokens`, continuing a chain: `keys` already holds the first
// keys.size() blocks' keys; appends the rest.
void ExtendBlockKeys(const BlockKey& salt, const std::vector<int32_t>& tokens, uint32_t block_tokens,
                     std::vector<BlockKey>* keys);

// Keys of the tail blocks that continue `parent` (a full block's key, or the salt) with the first
// 1, 2, …, n of `tokens`: out[k-1] = XXH3-128(parent ‖ -1 ‖ tokens[0..k)). A tail block holds the
// KV of the partial last block of a conversation (fewer than block_tokens tokens); the -1, never a
// token id, keeps every tail key apart from every full block's key.
std::vector<BlockKey> TailBlockKeys(const BlockKey& parent, const int32_t* tokens, size_t n);

// XXH3-128 of a file's contents, as hex (model fingerprints).
std::string HashFileHex(const std::string& path, std::string* error);

// XXH3-64 of a byte range (block payload checksums).
uint64_t Checksum64(const void* data, size_t size);

}  // namespace kvault
