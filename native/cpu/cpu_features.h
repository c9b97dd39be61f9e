#pragma once
#include <string>
#include <vector>

namespace pia {

// What the running CPU supports; kernels pick their SIMD path from this at run time.
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  std::vector<std::string> names() const;
};

const CpuFeatures& cpu_features();

}  // namespace pia
