#include "model/model_file.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test_env.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

TEST(ModelFileTest, MissingFile) {
  Status s = CheckModelFile("/nonexistent/model.gguf");
  EXPECT_EQ(s.code(), Status::Code::kNotFound);
  EXPECT_NE(s.message().find("/nonexistent/model.gguf"), std::string::npos);
}

TEST(ModelFileTest, DirectoryIsNotAModel) {
  auto dir = testing::ScratchDir("model_file_dir");
  EXPECT_EQ(CheckModelFile(dir).code(), Status::Code::kInvalidArgument);
}

TEST(ModelFileTest, NotGguf) {
  auto dir = testing::ScratchDir("model_file_notgguf");
  std::ofstream(dir / "x.gguf") << "this is not a model";
  EXPECT_EQ(CheckModelFile(dir / "x.gguf").code(), Status::Code::kCorruption);
  std::ofstream(dir / "short.gguf") << "GG";
  EXPECT_EQ(CheckModelFile(dir / "short.gguf").code(), Status::Code::kCorruption);
}

// A GGUF file cut short (a copy interrupted) is refused by its header or by its tensor table,
// without reading the weights: the model manager relies on it to keep a serving model.
TEST(ModelFileTest, TruncatedGgufIsCorruption) {
  auto dir = testing::ScratchDir("model_file_truncated");
  const auto size = fs::file_size(testing::TinyModel());
  auto cut = [&](const std::string& name, uintmax_t keep) {
    fs::copy_file(testing::TinyModel(), dir / name);
    fs::resize_file(dir / name, keep);
    return CheckModelFile(dir / name);
  };
  // 64 bytes: more than the padding after the last tensor (GGUF aligns to 32 by default).
  const Status tail = cut("tail.gguf", size - 64);
  EXPECT_EQ(tail.code(), Status::Code::kCorruption);
  EXPECT_NE(tail.message().find("truncated"), std::string::npos) << tail.message();
  EXPECT_EQ(cut("half.gguf", size / 2).code(), Status::Code::kCorruption);
  const Status header = cut("header.gguf", 64);
  EXPECT_EQ(header.code(), Status::Code::kCorruption);
  EXPECT_NE(header.message().find("damaged"), std::string::npos) << header.message();
}

TEST(ModelFileTest, TinyDemoModelPasses) {
  EXPECT_TRUE(CheckModelFile(testing::TinyModel()).ok()) << testing::TinyModel();
}

}  // namespace
}  // namespace kvault
