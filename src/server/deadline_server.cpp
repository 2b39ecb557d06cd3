#include "server/deadline_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace kvault {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;

// poll() for `events` on one socket; > 0 ready (or hung up: the next recv says which), 0 timed out,
// < 0 error. Interrupted waits go on with the time left.
int PollFor(int fd, short events, microseconds timeout) {
  const auto end = Clock::now() + std::max(microseconds(0), timeout);
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - Clock::now());
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (r < 0 && errno == EINTR) continue;
    if (r > 0 && (p.revents & POLLNVAL)) return -1;
    return r;
  }
}

ssize_t Recv(int fd, char* buf, size_t n, int flags) {
  ssize_t r;
  do {
    r = ::recv(fd, buf, n, flags);
  } while (r < 0 && errno == EINTR);
  return r;
}

void Address(const sockaddr_storage& addr, socklen_t len, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  ip.clear();
  port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    if (::inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text))) ip = text;
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text))) ip = text;
    port = ntohs(a->sin6_port);
  } else if (addr.ss_family == AF_UNIX && len > 0) {
    ip = "unix";
  }
}

void PeerAddress(int fd, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) Address(addr, len, ip, port);
}

void LocalAddress(int fd, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) Address(addr, len, ip, port);
}

// One connection's socket as cpp-httplib's Stream: buffered reads, each waiting at most the read
// timeout and never past the current request's deadline; writes wait at most the write timeout.
// The deadline covers reading the request (an interim "100 Continue" does not stop it: the body
// must still come in time). A request that missed it gets no answer (the connection is closed).
// Kept for the whole connection, so bytes of a pipelined next request read along with this one
// stay in the buffer for it.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int sock, microseconds read_timeout, microseconds write_timeout)
      : sock_(sock), read_timeout_(read_timeout), write_timeout_(write_timeout), start_(Clock::now()) {}

  // The request now being read must be in by `deadline` (Clock::time_point::max(): no deadline).
  void StartRequest(Clock::time_point deadline) {
    deadline_ = deadline;
    missed_deadline_ = false;
    error_ = httplib::Error::Success;
  }
  bool missed_deadline() const { return missed_deadline_; }

  // Drops empty lines before a request (RFC 9112 2.2: a server SHOULD ignore at least one; some
  // clients send CRLF after a body). False when none is left in the buffer.
  bool SkipBlankLines() {
    while (off_ < size_ && (buf_[off_] == '\r' || buf_[off_] == '\n')) ++off_;
    return off_ < size_;
  }

  bool is_readable() const override { return off_ < size_; }
  bool wait_readable() const override { return is_readable() || PollFor(sock_, POLLIN, ReadWait()) > 0; }
  bool wait_writable() const override { return PollFor(sock_, POLLOUT, write_timeout_) > 0; }
  bool is_peer_alive() const override {
    const int r = PollFor(sock_, POLLIN, microseconds(0));
    if (r == 0) return true;
    if (r < 0) return false;
    char c;
    return Recv(sock_, &c, 1, MSG_PEEK) > 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (off_ < size_) {
      const size_t n = std::min(size, size_ - off_);
      std::memcpy(ptr, buf_.data() + off_, n);
      off_ += n;
      return static_cast<ssize_t>(n);
    }
    const microseconds wait = ReadWait();
    const int ready = wait > microseconds(0) ? PollFor(sock_, POLLIN, wait) : 0;
    if (ready < 0) {
      error_ = httplib::Error::Read;
      return -1;
    }
    if (ready == 0) {
      if (Clock::now() >= deadline_) missed_deadline_ = true;
      error_ = httplib::Error::Timeout;
      return -1;
    }
    // Large reads (bodies) go straight to the caller; small ones (lines) through the buffer.
    const bool direct = size >= buf_.size();
    const ssize_t n = Recv(sock_, direct ? ptr : buf_.data(), direct ? size : buf_.size(), 0);
    if (n <= 0) {
      error_ = n == 0 ? httplib::Error::ConnectionClosed : httplib::Error::Read;
      return n;
    }
    if (direct) return n;
    off_ = 0;
    size_ = static_cast<size_t>(n);
    return read(ptr, size);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (missed_deadline_) return -1;  // no answer to a request that did not arrive in time
    if (!wait_writable()) return -1;
    ssize_t n;
    do {
      n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { PeerAddress(sock_, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { LocalAddress(sock_, ip, port); }
  socket_t socket() const override { return sock_; }
  time_t duration() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_).count();
  }
  void set_read_timeout(time_t sec, time_t usec) override {
    read_timeout_ = std::chrono::seconds(sec) + microseconds(usec);
  }

  const char* buffered_data(size_t& size) const override {
    size = size_ - off_;
    return size ? buf_.data() + off_ : nullptr;
  }
  void consume_buffered(size_t size) override { off_ += std::min(size, size_ - off_); }

 private:
  // How long the next read may wait: the read timeout, cut short by the request's deadline.
  microseconds ReadWait() const {
    if (deadline_ == Clock::time_point::max()) return read_timeout_;
    const auto left = std::chrono::duration_cast<microseconds>(deadline_ - Clock::now());
    return std::min(read_timeout_, left);
  }

  int sock_;
  microseconds read_timeout_;
  microseconds write_timeout_;
  Clock::time_point start_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool missed_deadline_ = false;
  std::vector<char> buf_ = std::vector<char>(16 * 1024);
  size_t off_ = 0;
  size_t size_ = 0;
};

// cpp-httplib's close: half-close, read what the peer still sends for a moment (closing with
// unread data makes the kernel send a reset that can destroy the response in flight), close.
void DrainAndClose(int sock) {
  ::shutdown(sock, SHUT_WR);
  char buf[4096];
  size_t total = 0;
  const auto end = Clock::now() + std::chrono::milliseconds(100);
  while (total < (1u << 20)) {
    const auto left = std::chrono::duration_cast<microseconds>(end - Clock::now());
    if (left <= microseconds(0) || PollFor(sock, POLLIN, left) <= 0) break;
    const ssize_t n = Recv(sock, buf, sizeof(buf), 0);
    if (n <= 0) break;
    total += static_cast<size_t>(n);
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
}

}  // namespace

bool DeadlineServer::WaitForRequest(socket_t sock) const {
  // Checked every 10 ms, as cpp-httplib does, so that stop() ends idle connections at once.
  constexpr microseconds kInterval(10'000);
  const auto end = Clock::now() + std::chrono::seconds(keep_alive_timeout_sec_);
  for (;;) {
    if (svr_sock_ == INVALID_SOCKET) return false;
    const int r = PollFor(sock, POLLIN, kInterval);
    if (r != 0) return r > 0;
    if (Clock::now() >= end) return false;
  }
}

bool DeadlineServer::process_and_close_socket(socket_t sock) {
  std::string remote_addr, local_addr;
  int remote_port = 0, local_port = 0;
  PeerAddress(sock, remote_addr, remote_port);
  LocalAddress(sock, local_addr, local_port);

  bool ret = false;
  // Like cpp-httplib's serve_guarded, nothing thrown here (bad_alloc) may end the worker thread.
  try {
    ConnectionStream strm(sock, std::chrono::seconds(read_timeout_sec_) + microseconds(read_timeout_usec_),
                          std::chrono::seconds(write_timeout_sec_) + microseconds(write_timeout_usec_));
    for (size_t left = std::max<size_t>(1, keep_alive_max_count_); left > 0; --left) {
      if (!strm.SkipBlankLines() && !WaitForRequest(sock)) break;
      strm.StartRequest(request_deadline_.count() > 0 ? Clock::now() + request_deadline_ : Clock::time_point::max());
      const bool close_connection = left == 1;
      bool connection_closed = false;
      ret = serve_guarded([&] {
        return process_request(strm, remote_addr, remote_port, local_addr, local_port, close_connection,
                               connection_closed, nullptr);
      });
      if (strm.missed_deadline()) {
        if (on_deadline_miss_) on_deadline_miss_();
        ret = false;
        break;
      }
      if (!ret || connection_closed) break;
    }
  } catch (...) {
    ret = false;
  }
  DrainAndClose(sock);
  return ret;
}

}  // namespace kvault
