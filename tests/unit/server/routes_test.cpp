#include "server/generation_route.h"

#include <gtest/gtest.h>
#include <httplib.h>

namespace kvault {
namespace {

GenerationEvent Event(GenerationEvent::Kind kind, std::string text = "") {
  GenerationEvent e;
  e.kind = kind;
  e.text = std::move(text);
  return e;
}

// The engine finishes a request (its last text, kDone, Close) in the gap between NextEvent's
// timed wait giving up and its look at whether the channel is closed: the events are still
// there and must be delivered, not turned into "ended without an answer".
TEST(NextEventTest, EventsPushedJustBeforeCloseAreDeliveredNotLost) {
  RequestHandle h;
  httplib::Request req;
  int checks = 0;
  req.is_connection_closed = [&] {
    if (checks++ == 0) {  // runs after the first wait timed out with nothing
      h.events().Push(Event(GenerationEvent::Kind::kText, "last words"));
      h.events().Push(Event(GenerationEvent::Kind::kDone));
      h.events().Close();
    }
    return false;
  };
  auto ev = NextEvent(h, req);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->kind, GenerationEvent::Kind::kText);
  EXPECT_EQ(ev->text, "last words");
  ev = NextEvent(h, req);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->kind, GenerationEvent::Kind::kDone);
  EXPECT_FALSE(h.cancelled());
}

TEST(NextEventTest, AClosedEmptyChannelIsAnInternalError) {
  RequestHandle h;
  h.events().Close();
  httplib::Request req;
  req.is_connection_closed = [] { return false; };
  auto ev = NextEvent(h, req);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->kind, GenerationEvent::Kind::kError);
}

TEST(NextEventTest, AClientThatWentAwayCancelsTheRequest) {
  RequestHandle h;
  httplib::Request req;
  req.is_connection_closed = [] { return true; };
  EXPECT_FALSE(NextEvent(h, req));
  EXPECT_TRUE(h.cancelled());
}

}  // namespace
}  // namespace kvault
