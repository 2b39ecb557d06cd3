#include "engine/text_stream.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

std::string Feed(TextStream& ts, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += ts.Push(p);
  return out + ts.Flush();
}

TEST(TextStreamTest, PassesTextThroughWithoutStops) {
  TextStream ts;
  EXPECT_EQ(ts.Push("Hello"), "Hello");
  EXPECT_EQ(ts.Push(" world"), " world");
  EXPECT_EQ(ts.Flush(), "");
  EXPECT_FALSE(ts.stopped());
}

TEST(TextStreamTest, NeverSplitsUtf8) {
  TextStream ts;
  EXPECT_EQ(ts.Push("a\xE2\x82"), "a");
  EXPECT_EQ(ts.Push("\xAC!"), "\xE2\x82\xAC!");
}

TEST(TextStreamTest, StopSequenceAcrossPiecesIsCutAndNeverSent) {
  TextStream ts({"STOP"});
  std::string sent;
  sent += ts.Push("abc S");
  EXPECT_EQ(sent, "abc ");  // "S" might start "STOP": held back
  sent += ts.Push("TO");
  EXPECT_EQ(sent, "abc ");
  sent += ts.Push("P and more");
  EXPECT_EQ(sent, "abc ");
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(*ts.matched(), "STOP");
  EXPECT_EQ(ts.Push("x"), "");
  EXPECT_EQ(ts.Flush(), "");
}

TEST(TextStreamTest, FalseStartIsReleased) {
  TextStream ts({"STOP"});
  EXPECT_EQ(Feed(ts, {"ST", "OCK", "!"}), "STOCK!");
  EXPECT_FALSE(ts.stopped());
}

TEST(TextStreamTest, EarliestOfSeveralStopsWins) {
  TextStream ts({"world", "lo w"});
  EXPECT_EQ(Feed(ts, {"hello world"}), "hel");
  EXPECT_EQ(*ts.matched(), "lo w");
}

TEST(TextStreamTest, HeldTextIsFlushedAtTheEnd) {
  TextStream ts({"</end>"});
  EXPECT_EQ(ts.Push("value </e"), "value ");
  EXPECT_EQ(ts.Flush(), "</e");
}

TEST(TextStreamTest, EmptyStopSequencesAreIgnored) {
  TextStream ts({""});
  EXPECT_EQ(Feed(ts, {"abc"}), "abc");
}

}  // namespace
}  // namespace kvault
