// pia_native_tests [filter] [--perf]: runs every registered case whose name contains the filter.
#include <chrono>
#include <cstring>
#include <exception>

#include "core/errors.h"
#include "harness.h"

namespace pia::test {
std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}
}  // namespace pia::test

int main(int argc, char** argv) {
  const char* filter = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] != '-') filter = argv[i];
  }
  int passed = 0, failed = 0;
  for (const auto& c : pia::test::registry()) {
    if (filter && c.name.find(filter) == std::string::npos) continue;
    auto t0 = std::chrono::steady_clock::now();
    try {
      c.fn();
      ++passed;
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::printf("ok   %s (%.1f ms)\n", c.name.c_str(), ms);
    } catch (const pia::test::Failure& f) {
      ++failed;
      std::printf("FAIL %s: %s\n", c.name.c_str(), f.message.c_str());
    } catch (const pia::PiaException& e) {
      ++failed;
      std::printf("FAIL %s: %s: %s\n", c.name.c_str(), e.code().c_str(), e.what());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s: exception: %s\n", c.name.c_str(), e.what());
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
