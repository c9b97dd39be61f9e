#pragma once
// A fixed pool sized to the machine (PIA_NUM_THREADS or set_num_threads() override it).
// parallel_for splits [begin, end) into contiguous chunks; the calling thread takes a chunk too,
// and a nested parallel_for from inside a worker runs inline instead of deadlocking.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace pia {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // fn(chunk_begin, chunk_end); chunks are at least `grain` long.
  void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // The pool in use; hold the pointer for the duration of a call (set_global_threads may swap it).
  static std::shared_ptr<ThreadPool> global();
  // Replaces the global pool; takes effect for calls that start after it returns.
  static void set_global_threads(int threads);
  static int default_threads();

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_begin_ = 0, job_end_ = 0, job_chunk_ = 0;
  int64_t next_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::mutex run_mu_;  // one parallel_for at a time per pool
};

inline void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  ThreadPool::global()->parallel_for(begin, end, grain, fn);
}

}  // namespace pia
