#include "server/response_store.h"

#include <fstream>
#include <iterator>

#include "api/json_body.h"
#include "kvstore/agent_registry.h"
#include "kvstore/disk_tier.h"

namespace kvault {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxChain = 100000;  // turns followed back through previous_response_id

json ToJson(const StoredResponse& r) {
  return {{"id", r.id},       {"tenant", r.tenant},
          {"agent", r.agent}, {"previous_response_id", r.previous_response_id},
          {"items", r.items}, {"response", r.response}};
}

}  // namespace

ResponseStore::ResponseStore(fs::path dir) : dir_(std::move(dir)) {}

fs::path ResponseStore::FileFor(const std::string& tenant, const std::string& id) const {
  return dir_ / AgentRegistry::FileName(tenant, id);
}

Status ResponseStore::Put(const StoredResponse& r) {
  const std::string text = DumpJson(ToJson(r));
  std::lock_guard<std::mutex> lock(mu_);
  if (dir_.empty()) {
    memory_[FileFor(r.tenant, r.id).string()] = text;
    return Status::Ok();
  }
  // WriteFileDurably makes a new directory durable in its parent (each level created).
  return WriteFileDurably(FileFor(r.tenant, r.id), std::vector<uint8_t>(text.begin(), text.end()));
}

StatusOr<StoredResponse> ResponseStore::GetLocked(const std::string& tenant, const std::string& id) const {
  const fs::path path = FileFor(tenant, id);
  std::string text;
  if (dir_.empty()) {
    auto it = memory_.find(path.string());
    if (it != memory_.end()) text = it->second;
  } else {
    std::ifstream in(path, std::ios::binary);
    if (in) text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const json j = json::parse(text, nullptr, false);
  // The record must name this tenant and id (a hash collision or a damaged file finds nothing).
  if (!j.is_object() || j.value("tenant", "") != tenant || j.value("id", "") != id || !j.contains("items") ||
      !j["items"].is_array()) {
    return Status::NotFound("No response found with id '" + id + "'.");
  }
  StoredResponse r;
  r.id = id;
  r.tenant = tenant;
  r.agent = j.value("agent", "");
  r.previous_response_id = j.value("previous_response_id", "");
  r.items = j["items"];
  r.response = j.value("response", json::object());
  return r;
}

StatusOr<StoredResponse> ResponseStore::Get(const std::string& tenant, const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return GetLocked(tenant, id);
}

Status ResponseStore::Delete(const std::string& tenant, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = GetLocked(tenant, id);
  if (!found.ok()) return found.status();
  const fs::path path = FileFor(tenant, id);
  if (dir_.empty()) {
    memory_.erase(path.string());
    return Status::Ok();
  }
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return Status::IOError("cannot remove " + path.string() + ": " + ec.message());
  return Status::Ok();
}

StatusOr<std::pair<json, std::string>> ResponseStore::History(const std::string& tenant, const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<json> turns;
  std::string agent;
  std::string next = id;
  while (!next.empty()) {
    if (turns.size() >= kMaxChain) return Status::InvalidArgument("'previous_response_id': the chain is too long");
    auto r = GetLocked(tenant, next);
    if (!r.ok()) {
      return Status::NotFound("Previous response with id '" + next + "' not found.");
    }
    if (agent.empty()) agent = r->agent;
    turns.push_back(std::move(r->items));
    next = r->previous_response_id;
  }
  json items = json::array();
  for (auto it = turns.rbegin(); it != turns.rend(); ++it) {
    for (auto& item : *it) items.push_back(std::move(item));
  }
  return std::make_pair(std::move(items), agent);
}

}  // namespace kvault
