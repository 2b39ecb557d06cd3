// FakeKv: llama.cpp's unified KV cache as KvPool sees it (KvOps), for tests without a model.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>
#include <set>

#include "engine/kv_pool.h"

namespace kvault {

// Simulates llama.cpp's unified KV cache at the level KvPool uses it: which positions each
// sequence has cells for, and which physical cell each is (Copy shares cells, as seq_cp does in a
// unified cache; a cell lives while any sequence holds it).
class FakeKv : public KvOps {
 public:
  void Copy(int src, int dst, int32_t p0, int32_t p1) override {
    ++copies;
    for (const auto& [p, id] : cells[src]) {
      if (p >= p0 && (p1 < 0 || p < p1)) cells[dst][p] = id;
    }
  }
  void Remove(int seq, int32_t p0, int32_t p1) override {
    auto& c = cells[seq];
    for (auto it = c.begin(); it != c.end();) {
      const bool in = (p0 < 0 || it->first >= p0) && (p1 < 0 || it->first < p1);
      it = in ? c.erase(it) : std::next(it);
    }
  }
  // A computed token: a new cell.
  void Add(int seq, int32_t pos) { cells[seq][pos] = next_id++; }
  // The positions `seq` has cells for.
  std::set<int32_t> Positions(int seq) {
    std::set<int32_t> out;
    for (const auto& [p, id] : cells[seq]) out.insert(p);
    return out;
  }
  // Cells in use: what llama.cpp needs room for.
  size_t PhysicalCells() const {
    std::set<int64_t> live;
    for (const auto& [seq, m] : cells) {
      for (const auto& [pos, id] : m) live.insert(id);
    }
    return live.size();
  }
  std::map<int, std::map<int32_t, int64_t>> cells;  // sequence -> position -> physical cell
  int64_t next_id = 0;
  int copies = 0;
};

}  // namespace kvault
