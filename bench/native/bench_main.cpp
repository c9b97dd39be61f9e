// pia_native_bench [filter] [--threads N] [--min-time S] [--list]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "bench.h"
#include "core/thread_pool.h"
#include "cpu/cpu_features.h"

namespace pia::bench {

namespace {
double g_min_time = 0.5;
double g_cpu = 0, g_best = -1;
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}
}  // namespace

double last_cpu_seconds() { return g_cpu; }

std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}

double time_it(const std::function<void()>& fn) {
  using clock = std::chrono::steady_clock;
  fn();
  double best = 1e30, total = 0;
  for (int i = 0; i < 50 && (i == 0 || total < g_min_time); ++i) {  // at least one timed run
    const auto t0 = clock::now();
    const double c0 = cpu_now();
    fn();
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    if (s < best) g_cpu = cpu_now() - c0;
    best = std::min(best, s);
    total += s;
  }
  g_best = best;
  return best;
}

void report(const std::string& what, double seconds, double flops) {
  if (flops > 0 && seconds != g_best) {  // not timed by time_it: no CPU time to show
    std::printf("  %-64s %10.3f ms %9.1f GFLOP/s\n", what.c_str(), seconds * 1e3, flops / seconds * 1e-9);
  } else if (flops > 0) {
    std::printf("  %-64s %10.3f ms %9.1f GFLOP/s %9.1f GFLOP/cpu-s\n", what.c_str(), seconds * 1e3,
                flops / seconds * 1e-9, flops / std::max(g_cpu, 1e-12) * 1e-9);
  } else {
    std::printf("  %-64s %10.3f ms\n", what.c_str(), seconds * 1e3);
  }
  std::fflush(stdout);
}

}  // namespace pia::bench

int main(int argc, char** argv) {
  const char* filter = nullptr;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      pia::ThreadPool::set_global_threads(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--min-time") && i + 1 < argc) {
      pia::bench::g_min_time = std::atof(argv[++i]);
    } else if (!std::strcmp(argv[i], "--list")) {
      list = true;
    } else if (argv[i][0] != '-') {
      filter = argv[i];
    } else {
      std::fprintf(stderr, "usage: pia_native_bench [filter] [--threads N] [--min-time S] [--list]\n");
      return 2;
    }
  }
  std::string feats;
  for (const auto& f : pia::cpu_features().names()) feats += (feats.empty() ? "" : ",") + f;
  std::printf("threads %d, cpu features %s\n", pia::ThreadPool::global()->size(), feats.c_str());
  int failed = 0;
  for (const auto& c : pia::bench::registry()) {
    if (filter && c.name.find(filter) == std::string::npos) continue;
    if (list) {
      std::printf("%s\n", c.name.c_str());
      continue;
    }
    std::printf("%s\n", c.name.c_str());
    std::fflush(stdout);
    try {
      c.fn();
    } catch (const std::exception& e) {
      ++failed;
      std::printf("  FAILED: %s\n", e.what());
    }
  }
  return failed ? 1 : 0;
}
