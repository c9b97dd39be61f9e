#include "cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace pia {

std::vector<std::string> CpuFeatures::names() const {
  std::vector<std::string> n;
  if (avx2) n.push_back("avx2");
  if (fma) n.push_back("fma");
  if (f16c) n.push_back("f16c");
  if (avx512f) n.push_back("avx512f");
  if (n.empty()) n.push_back("generic");
  return n;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.f16c = __builtin_cpu_supports("f16c");
    c.avx512f = __builtin_cpu_supports("avx512f");
#endif
    // PIA_CPU_GENERIC=1 forces the portable kernels (tests compare both paths).
    if (const char* g = std::getenv("PIA_CPU_GENERIC"); g && std::strcmp(g, "0") != 0) c = CpuFeatures();
    // PIA_CPU_NO_AVX512=1 keeps the AVX2 kernels on an AVX-512 machine (to test or compare them).
    if (const char* g = std::getenv("PIA_CPU_NO_AVX512"); g && std::strcmp(g, "0") != 0) c.avx512f = false;
    return c;
  }();
  return f;
}

}  // namespace pia
