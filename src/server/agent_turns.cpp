#include "server/agent_turns.h"

#include <algorithm>

namespace kvault {

AgentTurns::AgentTurns(size_t turns_per_agent, size_t max_agents)
    : turns_per_agent_(std::max<size_t>(1, turns_per_agent)), max_agents_(std::max<size_t>(1, max_agents)) {}

void AgentTurns::Record(const std::string& model, const std::string& tenant, const std::string& agent, AgentTurn turn) {
  std::lock_guard<std::mutex> lock(mu_);
  Key key{model, tenant, agent};
  auto it = by_agent_.find(key);
  if (it == by_agent_.end()) {
    while (by_agent_.size() >= max_agents_ && !by_age_.empty()) {
      by_agent_.erase(by_age_.begin()->second);
      by_age_.erase(by_age_.begin());
    }
    it = by_agent_.emplace(key, History{}).first;
  } else {
    by_age_.erase(it->second.last_seq);
  }
  History& h = it->second;
  h.turns.push_back(std::move(turn));
  while (h.turns.size() > turns_per_agent_) h.turns.pop_front();
  h.last_seq = ++seq_;
  by_age_.emplace(h.last_seq, std::move(key));
}

std::vector<AgentTurn> AgentTurns::Turns(const std::string& model, const std::string& tenant,
                                         const std::string& agent) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_agent_.find(Key{model, tenant, agent});
  if (it == by_agent_.end()) return {};
  return {it->second.turns.begin(), it->second.turns.end()};
}

std::optional<AgentTurn> AgentTurns::Last(const std::string& model, const std::string& tenant,
                                          const std::string& agent) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_agent_.find(Key{model, tenant, agent});
  if (it == by_agent_.end() || it->second.turns.empty()) return std::nullopt;
  return it->second.turns.back();
}

void AgentTurns::Forget(const std::string& model, const std::string& tenant, const std::string& agent) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_agent_.find(Key{model, tenant, agent});
  if (it == by_agent_.end()) return;
  by_age_.erase(it->second.last_seq);
  by_agent_.erase(it);
}

size_t AgentTurns::agents() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_agent_.size();
}

}  // namespace kvault
