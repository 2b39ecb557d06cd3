// AgentRegistry: what the KV store knows about named agents (X-Agent-Id, or the API's user
// field): each agent's latest block chain (its last conversation, prompt and answer: full
// blocks and the partial last one), token count, turns and last use. Agents are scoped by tenant: two tenants'
// "planner" are two agents.
//
// The records are small JSON files under <cache>/<fingerprint>/agents/, named by a hash of
// (tenant, id) — an agent id never becomes a path — written durably by the KV store's I/O thread
// and loaded at start. Thread-safe: the engine thread updates, HTTP threads read.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "kvstore/block_key.h"

namespace kvault {

struct AgentRecord {
  std::string tenant;  // "" without API keys
  std::string id;
  std::vector<BlockKey> chain;  // the latest conversation's blocks, in order (the last may be a tail block)
  uint32_t tokens = 0;          // tokens of that conversation (the chain covers them all)
  uint64_t turns = 0;
  int64_t last_use_ms = 0;  // unix time, milliseconds
};

class AgentRegistry {
 public:
  // 1–256 characters from [A-Za-z0-9._:@-], not "." or "..". Other ids are not recorded (the
  // request still runs; the API layer may reject them first).
  static bool ValidId(const std::string& id);
  // "<32 hex digits>.json": the file name of a (tenant, id) record, a hash of both (ids are
  // client-chosen text; the name never is). Also names stored Responses (server/response_store).
  static std::string FileName(const std::string& tenant, const std::string& id);

  // `dir` empty: in memory only.
  explicit AgentRegistry(std::filesystem::path dir = {});
  // Reads the records in `dir`; unreadable or malformed files are skipped (and counted).
  Status Load();

  // Records a finished turn (replaces the agent's chain). Returns the record's generation (> 0,
  // from a registry-wide counter) when it has a file to write, 0 when in memory only (or the id is
  // invalid); the caller writes the record's file off the engine thread (Snapshot, then Encode).
  uint64_t Update(AgentRecord record);
  // The agent's record as it is now, and its generation; nullopt when there is no such agent
  // (forgotten). A writer that takes the snapshot when it runs, not when it was queued, cannot put
  // an older record (or a forgotten agent) over a newer state.
  struct Versioned {
    AgentRecord record;
    uint64_t generation = 0;
  };
  std::optional<Versioned> Snapshot(const std::string& tenant, const std::string& id) const;
  // The agent's current generation; 0 when there is no such agent.
  uint64_t Generation(const std::string& tenant, const std::string& id) const;
  // A record's file contents (what Load reads back; also the value shared through the remote tier).
  static std::vector<uint8_t> Encode(const AgentRecord& record);
  // Encode's inverse; nullopt for anything malformed (or an invalid id).
  static std::optional<AgentRecord> Decode(std::string_view text);
  // A record another instance wrote (the remote tier, redis_tier.h): it replaces this agent's when
  // it has more turns (or the agent is not known here), provided the agent's generation is still
  // `expected_generation` (0: unknown) — what the caller saw before asking — and the record has
  // more turns than the agent had when it was forgotten here (Remove). True when adopted. Not
  // written to a file here: the agent's next turn (Update, which adds to the adopted turns) is.
  bool Adopt(AgentRecord record, uint64_t expected_generation);

  std::vector<AgentRecord> List() const;
  // Agents with this id (one per tenant that used it); `tenant` narrows to one.
  std::vector<AgentRecord> Find(const std::string& id, const std::optional<std::string>& tenant) const;
  // Forgets an agent. Returns its chain's blocks that no other agent's chain holds, and the
  // record's file (to delete).
  // `turns_removed`: the turns it had. Remembered (the last kMaxForgotten forgotten agents): a later
  // Update of the same id counts on from them, and Adopt refuses records of no more turns.
  std::pair<std::vector<BlockKey>, std::filesystem::path> Remove(const std::string& tenant, const std::string& id,
                                                                 uint64_t* turns_removed = nullptr);

  // In some agent's latest chain (the RAM tier evicts these last).
  bool InLatestChain(const BlockKey& key) const;
  size_t size() const;
  uint64_t bad_files() const { return bad_files_; }

  std::filesystem::path FileFor(const std::string& tenant, const std::string& id) const;

 private:
  using Key = std::pair<std::string, std::string>;  // tenant, id
  void RefLocked(const std::vector<BlockKey>& chain, int delta);

  std::filesystem::path dir_;
  mutable std::mutex mu_;
  std::map<Key, Versioned> agents_;  // generation: bumped by every Update
  uint64_t next_generation_ = 0;
  std::unordered_map<BlockKey, int, BlockKeyHash> refs_;  // block → agents whose chain holds it
  static constexpr size_t kMaxForgotten = 4096;
  std::map<Key, uint64_t> forgotten_;  // agents removed here → their turns then (see Adopt)
  std::deque<Key> forgotten_order_;    // forgotten_'s keys, oldest first (may name erased ones)
  uint64_t bad_files_ = 0;
};

}  // namespace kvault
