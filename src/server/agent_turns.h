// AgentTurns: each agent's recent turns — prompt tokens, how many came from the cache and from
// which tier, tokens computed and generated, time to first token — for the dashboard's agent
// detail (GET /admin/agents/{id}/turns) and the "last turn from cache" column of the agents in
// GET /admin/overview. The KV store keeps an agent's KV and its record (kvstore/agent_registry);
// this keeps what its turns cost, which nothing else records per agent.
//
// In memory only: a restart starts with no history (the agents are still listed, from their
// records). Bounded: the last `turns_per_agent` turns of at most `max_agents` agents; when a new
// agent would exceed that, the agent whose last turn is the oldest is dropped. An agent is keyed
// as in the store: (model, tenant, agent id).
//
// Recorded by the generation routes (server/generation_route) when a named agent's generation
// ends; read and cleared (DELETE /admin/agents/{id}) by the admin routes. Thread-safe: one mutex,
// held for a copy of one agent's turns at most.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace kvault {

struct AgentTurn {
  int64_t unix_ms = 0;  // when the turn ended
  std::string api;      // "openai.chat", "anthropic.messages", …
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens reused instead of computed: pool + ram + disk
  int64_t cached_pool = 0, cached_ram = 0, cached_disk = 0, cached_remote = 0;
  int64_t completion_tokens = 0;
  double ttft_ms = 0;
  double total_ms = 0;
  int64_t computed_tokens() const { return prompt_tokens - cached_tokens; }
};

class AgentTurns {
 public:
  explicit AgentTurns(size_t turns_per_agent = 64, size_t max_agents = 4096);

  void Record(const std::string& model, const std::string& tenant, const std::string& agent, AgentTurn turn);
  // Oldest first; empty for an agent with no turn recorded.
  std::vector<AgentTurn> Turns(const std::string& model, const std::string& tenant, const std::string& agent) const;
  std::optional<AgentTurn> Last(const std::string& model, const std::string& tenant, const std::string& agent) const;
  void Forget(const std::string& model, const std::string& tenant, const std::string& agent);
  size_t agents() const;
  size_t turns_per_agent() const { return turns_per_agent_; }

 private:
  using Key = std::tuple<std::string, std::string, std::string>;  // model, tenant, agent
  struct History {
    std::deque<AgentTurn> turns;
    uint64_t last_seq = 0;  // order of the last Record, for dropping the stalest agent
  };

  const size_t turns_per_agent_;
  const size_t max_agents_;
  mutable std::mutex mu_;
  std::map<Key, History> by_agent_;
  std::map<uint64_t, Key> by_age_;  // last_seq → agent, oldest first
  uint64_t seq_ = 0;
};

}  // namespace kvault
