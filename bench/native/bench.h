#pragma once
// A tiny benchmark registry for pia_native_bench (all bench/native/*.cpp link into that one
// executable). Register with PIA_BENCH(name) { ... } and time with pia::bench::time_it;
// `pia_native_bench [filter] [--threads N] [--min-time S]` runs the cases whose name contains filter.
#include <functional>
#include <string>
#include <vector>

namespace pia::bench {

struct Case {
  std::string name;
  std::function<void()> fn;
};

std::vector<Case>& registry();

struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

// Seconds per call of fn: one warm-up call, then repeated calls until --min-time (default 0.5 s)
// has passed or 50 calls were made; the fastest call counts (least disturbed by other load).
double time_it(const std::function<void()>& fn);

// Process CPU seconds (all threads) of the call time_it last counted: on a shared machine wall
// time includes time other processes had the cores, CPU time does not.
double last_cpu_seconds();

// One result line: `what`, milliseconds per call, and when flops > 0 GFLOP/s over wall time and
// GFLOP per CPU-second (per busy core: robust against other load on the machine).
void report(const std::string& what, double seconds, double flops = 0);

}  // namespace pia::bench

#define PIA_BENCH(name)                                                     \
  static void name();                                                       \
  static ::pia::bench::Register name##_registration(#name, name);           \
  static void name()
