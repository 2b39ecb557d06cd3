// Stored Responses (`store: true`): each response's id, tenant, the agent its chain runs as, the
// id it continues, its turn's items (the request's input, then its output) and the Response
// object. A chain of responses is one agent: every turn of it runs under the same agent id, so
// its KV blocks are that agent's latest chain in the KV store, restored from RAM or disk — after a
// restart too — when the next turn continues it with `previous_response_id`. This store keeps only
// the conversation's items (what the chat template renders), durable like the agent records.
//
// Records are JSON files named by a hash of tenant and id (one directory, written atomically and
// fsynced); with no directory they live in memory. A lookup from another tenant finds nothing.
// Thread-safe: HTTP threads call it (small synchronous file I/O, never on the engine thread).
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace kvault {

struct StoredResponse {
  std::string id;
  std::string tenant;
  std::string agent;  // the chain's agent: every turn of it runs under this id
  std::string previous_response_id;
  nlohmann::json items = nlohmann::json::array();  // this turn's input items, then its output items
  nlohmann::json response;                         // the Response object
};

class ResponseStore {
 public:
  // `dir` empty: in memory only (--no-persist).
  explicit ResponseStore(std::filesystem::path dir);

  Status Put(const StoredResponse& r);
  // NotFound for an unknown id or another tenant's.
  StatusOr<StoredResponse> Get(const std::string& tenant, const std::string& id) const;
  Status Delete(const std::string& tenant, const std::string& id);
  // The items of `id`'s chain, oldest turn first, and the chain's agent. NotFound when `id` (or a
  // response it continues) is unknown or was deleted.
  StatusOr<std::pair<nlohmann::json, std::string>> History(const std::string& tenant, const std::string& id) const;

 private:
  std::filesystem::path FileFor(const std::string& tenant, const std::string& id) const;
  StatusOr<StoredResponse> GetLocked(const std::string& tenant, const std::string& id) const;

  std::filesystem::path dir_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> memory_;  // dir_ empty: FileFor name → record JSON
};

}  // namespace kvault
