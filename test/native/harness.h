#pragma once
// A tiny test registry for the native harness (no third-party framework: it must build on a bare
// GPU machine with CMake alone).
#include <cmath>
#include <cstring>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace pia::test {

struct Case {
  std::string name;
  std::function<void()> fn;
};

std::vector<Case>& registry();

struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

struct Failure {
  std::string message;
};

[[noreturn]] inline void fail(const std::string& m) { throw Failure{m}; }

}  // namespace pia::test

#define PIA_TEST(name)                                                         \
  static void name();                                                          \
  static ::pia::test::Register name##_registration(#name, name);               \
  static void name()

#define EXPECT(cond)                                                                              \
  do {                                                                                            \
    if (!(cond)) ::pia::test::fail(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #cond); \
  } while (0)
