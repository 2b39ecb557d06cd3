#include "kvstore/io_thread.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace kvault {

IoThread::~IoThread() {
  Stop();
}

void IoThread::Start() {
  Start(IdleWork{});
}

void IoThread::Start(IdleWork idle) {
  idle_ = std::move(idle);
  idle_.every = std::max(idle_.every, std::chrono::milliseconds(1));
  thread_ = std::thread([this] { Loop(); });
}

void IoThread::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void IoThread::Post(std::deque<std::function<void()>>* queue, std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue->push_back(std::move(job));
  }
  cv_.notify_one();
}

void IoThread::PostRead(std::function<void()> job) {
  Post(&reads_, std::move(job));
}

void IoThread::PostWrite(std::function<void()> job) {
  Post(&writes_, std::move(job));
}

size_t IoThread::queued_writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return writes_.size();
}

void IoThread::Loop() {
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto ready = [&] { return closing_ || !reads_.empty() || !writes_.empty(); };
      if (idle_.due && idle_.run && idle_.due()) {
        if (!cv_.wait_for(lock, idle_.every, ready)) {
          lock.unlock();
          idle_.run();
          continue;
        }
      } else {
        cv_.wait(lock, ready);
      }
      auto& q = !reads_.empty() ? reads_ : writes_;
      if (q.empty()) return;  // closing and drained
      job = std::move(q.front());
      q.pop_front();
    }
    job();
  }
}

}  // namespace kvault
