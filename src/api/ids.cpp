#include "api/ids.h"

#include <random>

namespace kvault {

std::string NewRandomId(const std::string& prefix, int n) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<size_t> pick(0, sizeof(kAlphabet) - 2);
  std::string id = prefix;
  for (int i = 0; i < n; ++i) id += kAlphabet[pick(rng)];
  return id;
}

}  // namespace kvault
