// HTTP limits of the real server, with raw sockets where a well-behaved client library would not
// misbehave: idle and slow clients are dropped after their timeouts, a request dripped in byte by
// byte at its deadline, connections past
// --max-connections are closed at once, oversized headers and bodies get 4xx in the API's format,
// and after each the server still answers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "server_process.h"
#include "test_env.h"

namespace kvault::testing {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Whether the server process `pid` has accepted the loopback connection `fd` (a connection the
// kernel completed but nobody accepted yet is in no process's descriptor table): the server-side
// socket's inode, from /proc/net/tcp, is among the server's descriptors.
bool Accepted(pid_t pid, int fd) {
  sockaddr_in local{}, peer{};
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return false;
  len = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return false;
  // The server's end: local = our peer, remote = us.
  char want_local[16], want_remote[16];
  std::snprintf(want_local, sizeof(want_local), ":%04X", ntohs(peer.sin_port));
  std::snprintf(want_remote, sizeof(want_remote), ":%04X", ntohs(local.sin_port));
  // The established socket with those ports (state 01); one not accepted yet has inode 0, and an
  // old connection's TIME_WAIT entry with the same ports may be listed too (inode 0 as well).
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::vector<std::string> targets;
  std::getline(tcp, line);  // header
  while (std::getline(tcp, line)) {
    std::istringstream in(line);
    std::string sl, loc, rem, st, queues, timer, retr, uid, timeout, node;
    in >> sl >> loc >> rem >> st >> queues >> timer >> retr >> uid >> timeout >> node;
    if (st == "01" && node != "0" && loc.size() >= 5 && rem.size() >= 5 &&
        loc.compare(loc.size() - 5, 5, want_local) == 0 && rem.compare(rem.size() - 5, 5, want_remote) == 0) {
      targets.push_back("socket:[" + node + "]");
    }
  }
  if (targets.empty()) return false;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code link_ec;
    const std::string link = std::filesystem::read_symlink(e.path(), link_ec).string();
    if (std::find(targets.begin(), targets.end(), link) != targets.end()) return true;
  }
  return false;
}

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, const std::string& s) {
  ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), (ssize_t)s.size());
}

// Reads until the server closes the connection or `limit` passes; the seconds it took to close
// (-1: still open at the limit). Whatever the server sent is appended to `got`.
double SecondsUntilClosed(int fd, std::chrono::seconds limit, std::string* got = nullptr) {
  const auto start = Clock::now();
  char buf[4096];
  while (Clock::now() - start < limit) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return std::chrono::duration<double>(Clock::now() - start).count();
    if (got) got->append(buf, static_cast<size_t>(n));
  }
  return -1;
}

// Sends `text` one byte every `gap` until all of it is sent or the server closes the connection;
// the seconds from the first byte to the close (-1: all sent and still open a second later).
// Whatever the server sent is appended to `got`.
double DripUntilClosed(int fd, const std::string& text, std::chrono::milliseconds gap, std::string* got) {
  const auto start = Clock::now();
  const auto since = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  char buf[4096];
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && ::send(fd, &text[i], 1, MSG_NOSIGNAL) != 1) return since();
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, i < text.size() ? static_cast<int>(gap.count()) : 1000) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return since();
    got->append(buf, static_cast<size_t>(n));
  }
  return -1;
}

bool Healthy(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(std::chrono::seconds(5));
  auto r = c.Get("/health/live");
  return r && r->status == 200;
}

std::unique_ptr<ServerProcess> Serve(std::vector<std::string> extra) {
  std::vector<std::string> args = {"--model", TinyModel().string(), "--no-persist", "--pool-tokens",
                                   "2048",    "--ctx-size",         "512",          "--log-level",
                                   "warn"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto s = ServerProcess::Start(args);
  EXPECT_TRUE(s->WaitHealthy(std::chrono::seconds(60))) << s->Log();
  return s;
}

TEST(HttpLimitsTest, IdleAndSlowClientsAreDroppedAfterTheirTimeouts) {
  auto s = Serve({"--idle-timeout", "1", "--read-timeout", "1"});
  // Connected, never sends a byte.
  int idle = Connect(s->port());
  ASSERT_GE(idle, 0);
  const double idle_closed = SecondsUntilClosed(idle, std::chrono::seconds(10));
  ::close(idle);
  EXPECT_GE(idle_closed, 0.5);
  EXPECT_LT(idle_closed, 4) << "idle connection kept open";

  // Starts a request, then stalls in the middle of its body.
  int slow = Connect(s->port());
  ASSERT_GE(slow, 0);
  SendAll(slow,
          "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          "Content-Length: 200\r\n\r\n{\"messages\":");
  const double slow_closed = SecondsUntilClosed(slow, std::chrono::seconds(10));
  ::close(slow);
  EXPECT_GE(slow_closed, 0.5);
  EXPECT_LT(slow_closed, 4) << "a client stalled mid-request kept its connection";
  EXPECT_TRUE(Healthy(s->port()));
}

TEST(HttpLimitsTest, ARequestDrippedInPastItsDeadlineIsDropped) {
  // Every byte comes well within --read-timeout; the request as a whole does not come within
  // --request-read-timeout. Without the deadline each of these would hold its connection for ~12 s
  // and then be served.
  auto s = Serve({"--read-timeout", "30", "--request-read-timeout", "2"});
  const auto gap = std::chrono::milliseconds(50);
  int fd = Connect(s->port());
  ASSERT_GE(fd, 0);
  std::string got;
  const double head_closed = DripUntilClosed(
      fd, "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(200, 'a') + "\r\n\r\n", gap, &got);
  ::close(fd);
  EXPECT_GE(head_closed, 1.5);
  EXPECT_LT(head_closed, 6) << "a head dripped in kept its connection past the deadline";
  EXPECT_EQ(got.find("\"object\":\"list\""), std::string::npos) << "a request past its deadline was served";

  // The head at once, the body dripped.
  fd = Connect(s->port());
  ASSERT_GE(fd, 0);
  SendAll(fd,
          "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          "Content-Length: 240\r\n\r\n");
  got.clear();
  const double body_closed = DripUntilClosed(fd, std::string(240, ' '), gap, &got);
  ::close(fd);
  EXPECT_GE(body_closed, 1.5);
  EXPECT_LT(body_closed, 6) << "a body dripped in kept its connection past the deadline";

  // Slow but within the deadline: served, on a connection kept alive for a second request.
  fd = Connect(s->port());
  ASSERT_GE(fd, 0);
  got.clear();
  const std::string live = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_EQ(DripUntilClosed(fd, live, std::chrono::milliseconds(10), &got), -1) << got;
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got.substr(0, 200);
  got.clear();
  EXPECT_EQ(DripUntilClosed(fd, live, std::chrono::milliseconds(10), &got), -1) << got;
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << "second request on the connection: " << got.substr(0, 200);
  // Two requests in one packet (pipelined): both answered, in order.
  SendAll(fd, live + live);
  got.clear();
  EXPECT_EQ(SecondsUntilClosed(fd, std::chrono::seconds(1), &got), -1);
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got.substr(0, 200);
  EXPECT_NE(got.find("HTTP/1.1 200", 10), std::string::npos) << "pipelined second request not answered: " << got;
  // A 20 KB body (read past the connection's buffer), a stray CRLF after it (RFC 9112 2.2: to be
  // ignored) and a pipelined request, all in one go: both answered.
  const std::string body =
      R"({"max_tokens":1,"temperature":0,"messages":[{"role":"user","content":"hello"}]})" + std::string(20000, ' ');
  SendAll(fd,
          "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          "Content-Length: " +
              std::to_string(body.size()) + "\r\n\r\n" + body + "\r\n" + live);
  got.clear();
  SecondsUntilClosed(fd, std::chrono::seconds(30), &got);  // both answers, then closed when idle
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got.substr(0, 300);
  EXPECT_NE(got.find("chat.completion"), std::string::npos) << got.substr(0, 300);
  EXPECT_NE(got.find("HTTP/1.1 200", 10), std::string::npos) << "request after a large body not answered: " << got;
  ::close(fd);

  httplib::Client c("127.0.0.1", s->port());
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("kvault_http_slow_requests_total 2\n"), std::string::npos) << m->body.substr(0, 2000);
  EXPECT_TRUE(Healthy(s->port()));
}

TEST(HttpLimitsTest, ConnectionsPastTheCapAreClosedAtOnceAndServiceResumes) {
  // 1 + 1 + 1 HTTP threads at most, 4 connections in all: the fifth is closed on arrival.
  auto s = Serve({"--http-threads", "1", "--parallel", "1", "--max-queue", "1", "--max-connections", "4",
                  "--idle-timeout", "30", "--read-timeout", "30"});
  std::vector<int> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(Connect(s->port()));
    ASSERT_GE(held.back(), 0);
    // Taken in order: each accepted before the next connects.
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (!Accepted(s->pid(), held.back()) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_TRUE(Accepted(s->pid(), held.back())) << "connection " << i << " was not accepted";
  }
  int extra = Connect(s->port());  // the kernel accepts it; kvault closes it
  ASSERT_GE(extra, 0);
  const double closed = SecondsUntilClosed(extra, std::chrono::seconds(5));
  ::close(extra);
  EXPECT_GE(closed, 0) << "a connection past --max-connections was kept";
  for (int fd : held) ::close(fd);
  bool back = false;
  for (const auto deadline = Clock::now() + std::chrono::seconds(30); !back && Clock::now() < deadline;) {
    back = Healthy(s->port());
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(back) << "service did not resume once the held connections closed";
}

TEST(HttpLimitsTest, OversizedHeadersAndBodiesGetClientErrorsInTheApiFormat) {
  auto s = Serve({"--max-body", "1"});
  httplib::Client c("127.0.0.1", s->port());
  // A body over --max-body: 413 in the API's error envelope.
  const std::string big(2u << 20, 'x');
  auto r = c.Post("/v1/messages", httplib::Headers{{"anthropic-version", "2023-06-01"}}, big, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "request_too_large") << r->body;
  r = c.Post("/v1/chat/completions", big, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(json::parse(r->body)["error"].contains("message")) << r->body;

  // One header line over 8 KiB, and more than 100 headers: refused, not crashed.
  int fd = Connect(s->port());
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  std::string got;
  SecondsUntilClosed(fd, std::chrono::seconds(5), &got);
  ::close(fd);
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got.substr(0, 200);
  EXPECT_EQ(got.find("\"object\":\"list\""), std::string::npos) << "an oversized header was served";

  fd = Connect(s->port());
  ASSERT_GE(fd, 0);
  std::string many = "GET /v1/models HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 300; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  SendAll(fd, many + "\r\n");
  got.clear();
  SecondsUntilClosed(fd, std::chrono::seconds(5), &got);
  ::close(fd);
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << "300 headers were served: " << got.substr(0, 200);

  // A request line over the URI limit: the connection is closed without an answer.
  fd = Connect(s->port());
  ASSERT_GE(fd, 0);
  SendAll(fd, "GET /v1/models?" + std::string(70000, 'q') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  got.clear();
  SecondsUntilClosed(fd, std::chrono::seconds(5), &got);
  ::close(fd);
  EXPECT_EQ(got.find("\"object\":\"list\""), std::string::npos);
  EXPECT_TRUE(Healthy(s->port()));
}

}  // namespace
}  // namespace kvault::testing
