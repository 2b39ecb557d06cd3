#include "kvstore/block_file.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kvault {
namespace {

BlockRecord Sample() {
  BlockRecord r;
  r.parent = CacheSalt("fp", "");
  r.tokens = {1, 2, 3, 70000, -5};
  r.key = ComputeBlockKeys(r.parent, r.tokens, 5)[0];
  r.fingerprint = "fp";
  r.kv_type = "f16";
  r.first_pos = 0;
  for (int i = 0; i < 1000; ++i) r.kv.push_back(static_cast<uint8_t>(i * 7));
  return r;
}

TEST(BlockFileTest, RoundTrip) {
  const BlockRecord r = Sample();
  auto bytes = EncodeBlockFile(r);
  auto back = DecodeBlockFile(bytes, "fp");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->key, r.key);
  EXPECT_EQ(back->parent, r.parent);
  EXPECT_EQ(back->tokens, r.tokens);
  EXPECT_EQ(back->kv, r.kv);
  EXPECT_EQ(back->kv_type, "f16");
}

TEST(BlockFileTest, ReusedBuffersGiveTheSameBytes) {
  const BlockRecord r = Sample();
  std::vector<uint8_t> out(50000, 0xAB);  // a larger, dirty buffer from an earlier write
  EncodeBlockFile(r, &out);
  EXPECT_EQ(out, EncodeBlockFile(r));
  BufferRecycler pool(1 << 20);
  std::vector<uint8_t> kv(r.kv.size(), 0xCD);
  const uint8_t* memory = kv.data();
  pool.Give(std::move(kv));
  auto back = DecodeBlockFile(out, "fp", &pool);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->kv, r.kv);
  EXPECT_EQ(back->kv.data(), memory);  // decoded into the pool's buffer
}

TEST(BlockFileTest, IsAValidSafetensorsFile) {
  auto bytes = EncodeBlockFile(Sample());
  uint64_t n = 0;
  for (int b = 0; b < 8; ++b) n |= static_cast<uint64_t>(bytes[b]) << (8 * b);
  EXPECT_EQ(n % 8, 0u);
  auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header["tokens"]["dtype"], "I32");
  EXPECT_EQ(header["kv"]["dtype"], "U8");
  EXPECT_EQ(header["kv"]["data_offsets"][1].get<size_t>(), bytes.size() - 8 - n);
  for (auto& [k, v] : header["__metadata__"].items()) EXPECT_TRUE(v.is_string()) << k;
}

TEST(BlockFileTest, EveryCorruptionIsAnErrorNotACrash) {
  const auto good = EncodeBlockFile(Sample());
  // Truncation at every length.
  for (size_t n = 0; n < good.size(); n += 7) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
    EXPECT_FALSE(DecodeBlockFile(cut, "fp").ok()) << n;
  }
  // A flipped bit anywhere.
  for (size_t i = 0; i < good.size(); i += 3) {
    auto bad = good;
    bad[i] ^= 0x10;
    auto r = DecodeBlockFile(bad, "fp");
    if (r.ok()) {
      // Only header whitespace padding may change harmlessly; the data must be intact.
      EXPECT_EQ(r->kv, Sample().kv) << i;
      EXPECT_EQ(r->tokens, Sample().tokens) << i;
    }
  }
  EXPECT_EQ(DecodeBlockFile(good, "another-model").status().code(), Status::Code::kCorruption);
  EXPECT_FALSE(DecodeBlockFile(std::vector<uint8_t>(100, 0xFF), "fp").ok());
}

// Found by libFuzzer (make fuzz): a header whose data_offsets has one element was read past the
// array's end, and a huge token_count could wrap n_tokens * 4. Both must be clean errors.
TEST(BlockFileTest, MalformedOffsetsAndTokenCountsAreErrors) {
  const auto good = EncodeBlockFile(Sample());
  uint64_t n = 0;
  for (int b = 0; b < 8; ++b) n |= static_cast<uint64_t>(good[b]) << (8 * b);
  const std::string header(good.begin() + 8, good.begin() + 8 + static_cast<long>(n));
  const std::vector<uint8_t> data(good.begin() + 8 + static_cast<long>(n), good.end());
  auto with_header = [&](std::string h) {
    std::string out;
    for (int b = 0; b < 8; ++b) out.push_back(static_cast<char>(h.size() >> (8 * b)));
    out += h;
    out.append(data.begin(), data.end());
    return std::vector<uint8_t>(out.begin(), out.end());
  };
  auto j = nlohmann::json::parse(header);
  auto one = j;
  one["tokens"]["data_offsets"] = {0};
  EXPECT_EQ(DecodeBlockFile(with_header(one.dump()), "fp").status().code(), Status::Code::kCorruption);
  auto huge = j;
  huge["__metadata__"]["token_count"] = "4611686018427387905";  // × 4 wraps to 4
  EXPECT_EQ(DecodeBlockFile(with_header(huge.dump()), "fp").status().code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace kvault
