// BlockTier: what a tier below the RAM tier offers the KV store — encoded blocks (block_file.h)
// by key. The disk (disk_tier.h) is one; a shared remote cache would be another. The store keeps
// its tiers below RAM in one list, fastest first, and reaches each only through this interface:
//
//   - ReadBlocks: the store's read path (block_lookup.h), for keys RAM lacks, on the store's I/O
//     thread — never on the engine thread;
//   - Write, Remove, Probe: the write-behind (write_behind.h) and the store, on that I/O thread;
//   - Contains, MayContain, SizeOf, Touch, wipes: any thread; cheap, no I/O.
//
// A tier stores bytes and trusts nothing it hands out: the reader decodes and verifies every block
// (checksum, model, key, tokens) and calls Reject for one that fails, which the tier then no
// longer serves. A block a tier lacks, or cannot reach, is a miss, never an error to the request.
// Implementations are internally synchronised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "core/status.h"
#include "kvstore/block_key.h"

namespace kvault {

class BlockTier {
 public:
  virtual ~BlockTier() = default;

  // A short name for logs ("disk").
  virtual const char* name() const = 0;
  // Shared by instances (the remote cache): what it serves is counted apart from the disk's.
  virtual bool remote() const { return false; }

  // Whether the tier holds the block, as far as it knows without I/O (a local index): what the
  // store counts as stored.
  virtual bool Contains(const BlockKey& key) const = 0;
  // Whether a read may find the block. A tier with a local index answers Contains; one that cannot
  // know without asking (a remote cache) may answer true for any key, and lookups then ask it for
  // the keys that no tier above it holds.
  virtual bool MayContain(const BlockKey& key) const { return Contains(key); }
  // Bytes stored for the block; 0 when Contains does not hold.
  virtual uint64_t SizeOf(const BlockKey& key) const = 0;
  // The block was used from a tier above it (a RAM hit): a use for the tier's own eviction order.
  virtual void Touch(const BlockKey& key) = 0;

  // Reads `keys`, calling `sink(i, bytes)` once per key, in order, with the bytes of keys[i] or the
  // error that kept them (NotFound: a miss), until the keys end or `sink` returns false. The bytes
  // are valid during that call only. A caller hands over the whole run of keys it wants next, so
  // that a tier that can ask for several at once (a remote one: pipelining) does.
  using ReadSink = std::function<bool(size_t i, const StatusOr<std::span<const uint8_t>>& bytes)>;
  virtual void ReadBlocks(std::span<const BlockKey> keys, const ReadSink& sink) = 0;
  // Stores a block: a reader sees all of it or none of it. Ok when it is stored already.
  virtual Status Write(const BlockKey& key, std::span<const uint8_t> bytes) = 0;
  // Deletes a block. Ok when it was not there.
  virtual Status Remove(const BlockKey& key) = 0;
  // A block read from this tier failed verification (`why`): the tier stops serving it.
  virtual void Reject(const BlockKey& key, const std::string& why) = 0;
  // Whether the tier takes writes again (after failed ones): a small write of its own.
  virtual Status Probe() = 0;
  // How many times the tier found itself emptied behind the store's back (the disk: its directory
  // deleted while the server ran). When it changes, the write-behind writes again what RAM holds.
  virtual uint64_t wipes() const { return 0; }
};

}  // namespace kvault
