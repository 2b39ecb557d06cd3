// DeadlineServer: cpp-httplib's Server with one addition — a request must arrive in full (request
// line, headers and body) within a deadline counted from its first byte. cpp-httplib's own read
// timeout bounds each silence between two reads, so without this a client sending one byte every
// few seconds holds a connection, and an HTTP thread, for as long as the header and body limits
// allow (days). Routing, keep-alive, limits and responses stay cpp-httplib's.
//
// Only HttpServer uses it. It replaces cpp-httplib's per-connection loop (keep-alive waits, one
// socket stream per connection); WebSocket upgrades, which kvault does not serve, are not handled.
#pragma once

#include <httplib.h>

#include <chrono>
#include <functional>

namespace kvault {

class DeadlineServer : public httplib::Server {
 public:
  // Zero: no deadline (cpp-httplib's behaviour). Set before the server listens.
  void set_request_deadline(std::chrono::milliseconds deadline) { request_deadline_ = deadline; }

  // Called (on an HTTP thread) for each connection closed because a request had not arrived in
  // full by its deadline. Set before the server listens.
  void set_deadline_miss_handler(std::function<void()> handler) { on_deadline_miss_ = std::move(handler); }

 private:
  bool process_and_close_socket(socket_t sock) override;
  // Waits for the next request's first byte, at most the keep-alive timeout; false when it did not
  // come, the peer left or the server is stopping.
  bool WaitForRequest(socket_t sock) const;

  std::chrono::milliseconds request_deadline_{0};
  std::function<void()> on_deadline_miss_;
};

}  // namespace kvault
