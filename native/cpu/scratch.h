#pragma once
// A growable 64-byte-aligned scratch buffer (kept thread_local by the kernels, so a buffer is
// reused across calls instead of faulting in fresh pages each time).
#include <algorithm>
#include <cstdlib>
#include <new>

namespace pia::cpu {

struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      cap = std::max(n, cap * 2);
      p = static_cast<float*>(std::aligned_alloc(64, (cap * sizeof(float) + 63) / 64 * 64));
      if (!p) {
        cap = 0;
        throw std::bad_alloc();
      }
    }
    return p;
  }
};

}  // namespace pia::cpu
