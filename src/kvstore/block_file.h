// The on-disk (and in-RAM) form of one KV block: a safetensors file.
//
//   8 bytes   little-endian header length N
//   N bytes   JSON header (space-padded to a multiple of 8):
//               "tokens": {"dtype":"I32","shape":[T],"data_offsets":[0,4T]}
//               "kv":     {"dtype":"U8","shape":[B],"data_offsets":[4T,4T+B]}
//               "__metadata__": {"format":"kvault-kv-block","format_version":"1","key":…,
//                                "parent":…,"fingerprint":…,"kv_type":…,"token_count":…,
//                                "first_pos":…,"checksum":"<xxh3-64 of the data section, hex>"}
//   data      token ids (int32 LE), then the block's KV cells as llama_state_seq_get_data wrote
//             them for a sequence holding only this block
//
// Any standard safetensors reader can open it. DecodeBlockFile is paranoid: any inconsistency
// (truncation, bad header, checksum mismatch, other format version, other model) is an error,
// never a crash; the KV bytes reach llama.cpp only after the checksum matched. Docs:
// docs/cache-format.md. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "kvstore/block_key.h"
#include "kvstore/buffer_recycler.h"

namespace kvault {

struct BlockRecord {
  BlockKey key;
  BlockKey parent;          // the previous block's key, or the salt for the first block
  std::string fingerprint;  // model fingerprint the KV belongs to
  std::string kv_type;      // e.g. "f16"
  uint32_t first_pos = 0;   // position of the first token
  std::vector<int32_t> tokens;
  std::vector<uint8_t> kv;
  // Memory it holds (its KV buffer may be a recycled one larger than its bytes).
  size_t ByteSize() const { return kv.capacity() + tokens.size() * sizeof(int32_t) + 256; }
};

// `record`, shared; its KV buffer goes back to `buffers` when the last reference is dropped (on
// whichever thread drops it). How the KV store holds every record it makes or reads.
std::shared_ptr<BlockRecord> ShareRecycled(BlockRecord record, std::shared_ptr<BufferRecycler> buffers);

std::vector<uint8_t> EncodeBlockFile(const BlockRecord& record);
// The same into `out`, reusing its memory (the I/O thread's write buffer).
void EncodeBlockFile(const BlockRecord& record, std::vector<uint8_t>* out);

// `expect_fingerprint`: the running model's; a file of another model is Corruption.
// `buffers`: where the record's KV buffer comes from (else new memory).
StatusOr<BlockRecord> DecodeBlockFile(std::span<const uint8_t> bytes, const std::string& expect_fingerprint,
                                      BufferRecycler* buffers = nullptr);

}  // namespace kvault
