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

TEST(ModelFileTest, TinyDemoModelPasses) {
  EXPECT_TRUE(CheckModelFile(testing::TinyModel()).ok()) << testing::TinyModel();
}

}  // namespace
}  // namespace kvault
