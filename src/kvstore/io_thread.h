// IoThread: the KV store's one background thread, where every read and write of the tiers below
// RAM happens (the engine thread never waits for a disk). The store's parts post jobs to it:
// prefetch reads (block_lookup.h), block and agent-record writes (write_behind.h), removals.
//
// Jobs run one at a time, read jobs before write jobs, so that a request waiting for its blocks
// never waits behind another request's blocks being written. Write jobs run in the order posted:
// a job posted after a block's write runs after that write (sync durability, and agent records
// behind their blocks, rely on it). While both queues are empty and `IdleWork::due()` holds, the
// thread calls `IdleWork::run()` every `IdleWork::every` (the write-behind's disk probe while
// writes fail). It runs at a lower priority than the engine (nice 10): on a small machine its
// cycles (encoding, checksums, syscalls) would otherwise be taken from decoding.
//
// Post* and queued_writes: any thread. Start and Stop: the owner. Stop (and the destructor) runs
// every job queued, then joins; a job posted after Stop never runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace kvault {

class IoThread {
 public:
  struct IdleWork {
    std::chrono::milliseconds every{2000};
    std::function<bool()> due;  // called with the queues' lock held: must not post
    std::function<void()> run;
  };

  IoThread() = default;
  ~IoThread();
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  void Start();  // no idle work
  void Start(IdleWork idle);
  void Stop();

  void PostRead(std::function<void()> job);
  void PostWrite(std::function<void()> job);
  // Write jobs posted and not yet started (lets a test that holds the thread know when another
  // thread's job has been queued).
  size_t queued_writes() const;

 private:
  void Loop();
  void Post(std::deque<std::function<void()>>* queue, std::function<void()> job);

  IdleWork idle_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> reads_, writes_;
  bool closing_ = false;
  std::thread thread_;
};

}  // namespace kvault
