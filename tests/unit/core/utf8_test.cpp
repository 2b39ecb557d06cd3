#include "core/utf8.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(Utf8Test, AsciiIsComplete) { EXPECT_EQ(Utf8CompletePrefix("hello"), 5u); }

TEST(Utf8Test, EmptyIsComplete) { EXPECT_EQ(Utf8CompletePrefix(""), 0u); }

// Concatenation by append: g++ 12 at -O3 warns falsely (-Wrestrict) on "literal" + std::string.
std::string Cat(std::string a, const std::string& b) { return a.append(b); }

TEST(Utf8Test, HoldsBackSplitCharacters) {
  const std::string euro = "\xE2\x82\xAC";       // €, 3 bytes
  const std::string emoji = "\xF0\x9F\x98\x80";  // 😀, 4 bytes
  EXPECT_EQ(Utf8CompletePrefix(Cat("a", euro)), 4u);
  EXPECT_EQ(Utf8CompletePrefix(Cat("a", euro.substr(0, 1))), 1u);
  EXPECT_EQ(Utf8CompletePrefix(Cat("a", euro.substr(0, 2))), 1u);
  EXPECT_EQ(Utf8CompletePrefix(Cat("ab", emoji.substr(0, 3))), 2u);
  EXPECT_EQ(Utf8CompletePrefix(Cat("ab", emoji)), 6u);
  EXPECT_EQ(Utf8CompletePrefix("\xC3"), 0u);      // first byte of é
  EXPECT_EQ(Utf8CompletePrefix("\xC3\xA9"), 2u);  // é
}

TEST(Utf8Test, InvalidBytesAreNotHeldForever) {
  // A stray continuation byte or an invalid lead can never complete; it must not block output.
  EXPECT_EQ(Utf8CompletePrefix("a\x80"), 2u);
  EXPECT_EQ(Utf8CompletePrefix("a\xFF"), 2u);
}

}  // namespace
}  // namespace kvault
