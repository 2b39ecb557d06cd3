#include "kvstore/agent_registry.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/fs_sync.h"

namespace kvault {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool AgentRegistry::ValidId(const std::string& id) {
  if (id.empty() || id.size() > 256 || id == "." || id == "..") return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

AgentRegistry::AgentRegistry(fs::path dir) : dir_(std::move(dir)) {}

std::string AgentRegistry::FileName(const std::string& tenant, const std::string& id) {
  const std::string input = tenant + '\n' + id;
  const XXH128_hash_t h = XXH3_128bits(input.data(), input.size());
  char name[40];
  std::snprintf(name, sizeof(name), "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return std::string(name) + ".json";
}

fs::path AgentRegistry::FileFor(const std::string& tenant, const std::string& id) const {
  if (dir_.empty()) return {};
  return dir_ / FileName(tenant, id);
}

void AgentRegistry::RefLocked(const std::vector<BlockKey>& chain, int delta) {
  for (const auto& k : chain) {
    auto& n = refs_[k];
    n += delta;
    if (n <= 0) refs_.erase(k);
  }
}

Status AgentRegistry::Load() {
  if (dir_.empty()) return Status::Ok();
  // Durable in its parent: the records written into it must survive a power loss.
  if (auto made = CreateDirsDurably(dir_); !made.ok()) return made.status();
  std::error_code ec;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    if (e.path().extension() != ".json") continue;
    std::ifstream in(e.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::optional<AgentRecord> decoded = Decode(text);
    if (!decoded || FileFor(decoded->tenant, decoded->id) != e.path()) {
      ++bad_files_;
      spdlog::warn("kv store: ignoring malformed agent record {}", e.path().string());
      continue;
    }
    AgentRecord r = std::move(*decoded);
    RefLocked(r.chain, +1);
    Key key{r.tenant, r.id};  // before the assignment: its right side (moving r) is evaluated first
    agents_[std::move(key)] = Versioned{std::move(r), ++next_generation_};
  }
  return Status::Ok();
}

uint64_t AgentRegistry::Update(AgentRecord record) {
  if (!ValidId(record.id)) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{record.tenant, record.id};
  auto it = agents_.find(key);
  if (it != agents_.end()) {
    RefLocked(it->second.record.chain, -1);
    record.turns += it->second.record.turns;
  } else if (auto f = forgotten_.find(key); f != forgotten_.end()) {
    // The id again after a forget: its turns go on from the forgotten ones, so that its records
    // are newer than the tombstone the forget left in the remote tier.
    record.turns += f->second;
    forgotten_.erase(f);  // (its place in forgotten_order_ is skipped when it comes up)
  }
  RefLocked(record.chain, +1);
  const uint64_t generation = ++next_generation_;
  agents_[key] = Versioned{std::move(record), generation};
  return dir_.empty() ? 0 : generation;
}

std::optional<AgentRegistry::Versioned> AgentRegistry::Snapshot(const std::string& tenant,
                                                                const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = agents_.find({tenant, id});
  if (it == agents_.end()) return std::nullopt;
  return it->second;
}

std::vector<uint8_t> AgentRegistry::Encode(const AgentRecord& r) {
  json chain = json::array();
  for (const auto& k : r.chain) chain.push_back(k.Hex());
  const std::string text =
      json{{"format", "kvault-agent"}, {"format_version", 1}, {"tenant", r.tenant},           {"id", r.id},
           {"tokens", r.tokens},       {"turns", r.turns},    {"last_use_ms", r.last_use_ms}, {"chain", chain}}
          .dump();
  return std::vector<uint8_t>(text.begin(), text.end());
}

std::optional<AgentRecord> AgentRegistry::Decode(std::string_view text) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  AgentRecord r;
  try {
    r.tenant = j.at("tenant").get<std::string>();
    r.id = j.at("id").get<std::string>();
    r.tokens = j.at("tokens").get<uint32_t>();
    r.turns = j.at("turns").get<uint64_t>();
    r.last_use_ms = j.at("last_use_ms").get<int64_t>();
    for (const auto& h : j.at("chain")) {
      BlockKey k;
      if (!BlockKey::FromHex(h.get<std::string>(), &k)) return std::nullopt;
      r.chain.push_back(k);
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!ValidId(r.id)) return std::nullopt;
  return r;
}

bool AgentRegistry::Adopt(AgentRecord record, uint64_t expected_generation) {
  if (!ValidId(record.id)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  const Key key{record.tenant, record.id};
  auto it = agents_.find(key);
  // Changed since the caller looked (a turn finished here, or the agent was forgotten): the local
  // record is the newer news.
  if ((it == agents_.end() ? 0 : it->second.generation) != expected_generation) return false;
  if (auto f = forgotten_.find(key); f != forgotten_.end() && record.turns <= f->second) return false;
  if (it != agents_.end()) {
    if (it->second.record.turns >= record.turns) return false;
    RefLocked(it->second.record.chain, -1);
  }
  RefLocked(record.chain, +1);
  agents_[key] = Versioned{std::move(record), ++next_generation_};
  return true;
}

uint64_t AgentRegistry::Generation(const std::string& tenant, const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = agents_.find({tenant, id});
  return it == agents_.end() ? 0 : it->second.generation;
}

std::vector<AgentRecord> AgentRegistry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<AgentRecord> out;
  for (const auto& [k, v] : agents_) out.push_back(v.record);
  return out;
}

std::vector<AgentRecord> AgentRegistry::Find(const std::string& id, const std::optional<std::string>& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<AgentRecord> out;
  for (const auto& [k, v] : agents_) {
    if (k.second == id && (!tenant || k.first == *tenant)) out.push_back(v.record);
  }
  return out;
}

std::pair<std::vector<BlockKey>, fs::path> AgentRegistry::Remove(const std::string& tenant, const std::string& id,
                                                                 uint64_t* turns_removed) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = agents_.find({tenant, id});
  if (it == agents_.end()) return {};
  RefLocked(it->second.record.chain, -1);
  if (turns_removed) *turns_removed = it->second.record.turns;
  // Remembered (bounded, the oldest forgotten first), so that a shared record of no more turns is
  // not adopted back.
  const Key key{tenant, id};
  auto [f, added] = forgotten_.try_emplace(key, 0);
  f->second = std::max(f->second, it->second.record.turns);
  if (added) {
    forgotten_order_.push_back(key);
    while (forgotten_order_.size() > kMaxForgotten) {
      forgotten_.erase(forgotten_order_.front());
      forgotten_order_.pop_front();
    }
  }
  std::vector<BlockKey> only_its;
  for (const auto& k : it->second.record.chain) {
    if (!refs_.count(k)) only_its.push_back(k);
  }
  agents_.erase(it);
  return {only_its, FileFor(tenant, id)};
}

bool AgentRegistry::InLatestChain(const BlockKey& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return refs_.count(key) > 0;
}

size_t AgentRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return agents_.size();
}

}  // namespace kvault
