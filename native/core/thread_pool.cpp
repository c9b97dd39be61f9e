#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <memory>

namespace pia {

namespace {
thread_local bool t_in_pool = false;
std::mutex g_pool_mu;
std::shared_ptr<ThreadPool> g_pool;
}  // namespace

int ThreadPool::default_threads() {
  if (const char* env = std::getenv("PIA_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return std::min(n, 1024);
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

ThreadPool::ThreadPool(int threads) {
  threads = std::max(1, threads);
  for (int i = 0; i < threads - 1; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

std::shared_ptr<ThreadPool> ThreadPool::global() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool) g_pool = std::make_shared<ThreadPool>(default_threads());
  return g_pool;
}

void ThreadPool::set_global_threads(int threads) {
  std::shared_ptr<ThreadPool> old;
  {
    std::lock_guard<std::mutex> lk(g_pool_mu);
    old = std::move(g_pool);
    g_pool = std::make_shared<ThreadPool>(threads > 0 ? threads : default_threads());
  }
  // Calls still running on the old pool hold their own reference; the last one joins its threads.
}

void ThreadPool::worker_loop(int) {
  t_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    for (;;) {
      int64_t b;
      {
        std::lock_guard<std::mutex> lk(mu_);
        b = next_;
        next_ += job_chunk_;
      }
      if (b >= job_end_) break;
      (*job)(b, std::min(job_end_, b + job_chunk_));
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t begin, int64_t end, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (end <= begin) return;
  grain = std::max<int64_t>(1, grain);
  int64_t n = end - begin;
  int threads = size();
  if (t_in_pool || threads == 1 || n <= grain) {
    fn(begin, end);
    return;
  }
  std::unique_lock<std::mutex> run(run_mu_, std::try_to_lock);
  if (!run.owns_lock()) {  // another JS worker already drives the pool: do the work here
    fn(begin, end);
    return;
  }
  // A few chunks per thread balances uneven work without much locking.
  int64_t chunks = std::min<int64_t>(n / grain, int64_t(threads) * 4);
  int64_t chunk = (n + chunks - 1) / chunks;
  std::exception_ptr error;
  std::mutex err_mu;
  std::function<void(int64_t, int64_t)> guarded = [&](int64_t b, int64_t e) {
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lk(err_mu);
      if (!error) error = std::current_exception();
    }
  };
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = &guarded;
    job_begin_ = begin;
    job_end_ = end;
    job_chunk_ = chunk;
    next_ = begin;
    pending_ = int(workers_.size());
    ++generation_;
  }
  cv_.notify_all();
  t_in_pool = true;
  for (;;) {
    int64_t b;
    {
      std::lock_guard<std::mutex> lk(mu_);
      b = next_;
      next_ += chunk;
    }
    if (b >= end) break;
    guarded(b, std::min(end, b + chunk));
  }
  t_in_pool = false;
  {
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace pia
