// A main() for the fuzz targets when they are not built with libFuzzer (g++ or a plain build):
// runs every seed file given (files or directories), then `-runs=N` mutations of them (byte
// flips, insertions, deletions, splices), deterministic per `-seed=S`. `make test` uses it so the
// targets cannot rot; real fuzzing is `make fuzz` (clang, -fsanitize=fuzzer,address,undefined).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  long runs = 1000;
  unsigned seed = 1;
  std::vector<std::vector<uint8_t>> corpus;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("-runs=", 0) == 0) {
      runs = std::atol(a.c_str() + 6);
      continue;
    }
    if (a.rfind("-seed=", 0) == 0) {
      seed = static_cast<unsigned>(std::atol(a.c_str() + 6));
      continue;
    }
    if (a.rfind("-", 0) == 0) continue;  // other libFuzzer flags: ignored
    std::vector<fs::path> files;
    if (fs::is_directory(a)) {
      for (const auto& e : fs::directory_iterator(a)) files.push_back(e.path());
    } else {
      files.emplace_back(a);
    }
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  if (corpus.empty()) corpus.emplace_back();
  for (const auto& c : corpus) LLVMFuzzerTestOneInput(c.data(), c.size());
  std::mt19937 rng(seed);
  for (long r = 0; r < runs; ++r) {
    std::vector<uint8_t> x = corpus[rng() % corpus.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const size_t n = x.size();
      switch (rng() % 5) {
        case 0: if (n) x[rng() % n] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 1: if (n) x[rng() % n] = static_cast<uint8_t>(rng()); break;
        case 2: x.insert(x.begin() + static_cast<long>(n ? rng() % (n + 1) : 0), static_cast<uint8_t>(rng())); break;
        case 3: if (n) x.erase(x.begin() + static_cast<long>(rng() % n)); break;
        case 4: {
          const auto& o = corpus[rng() % corpus.size()];
          if (o.empty()) break;
          const size_t from = rng() % o.size(), len = 1 + rng() % std::min<size_t>(o.size() - from, 64);
          x.insert(x.begin() + static_cast<long>(n ? rng() % (n + 1) : 0), o.begin() + static_cast<long>(from),
                   o.begin() + static_cast<long>(from + len));
          break;
        }
      }
    }
    LLVMFuzzerTestOneInput(x.data(), x.size());
  }
  std::printf("%zu seeds and %ld mutations ran without a crash\n", corpus.size(), runs);
  return 0;
}
