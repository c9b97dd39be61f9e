#pragma once
// pia::Activation codes with torch's definitions, shared by the CUDA kernels and, through the
// kernel bodies written against an execution context (gemm_pipelined_body.cuh, norm_body.cuh),
// by the host emulators of test/native: the epilogue those tests check is the one the GPU runs.
#include <cmath>

#if defined(__CUDACC__)
#define PIA_ACT_FN __host__ __device__ __forceinline__
#else
#define PIA_ACT_FN inline
#endif

namespace pia_cuda {

PIA_ACT_FN float apply_act(float x, int act) {
  switch (act) {
    case 1: return x / (1.f + expf(-x));
    case 2: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case 3: {
      const float k = 0.79788456080286536f;  // sqrt(2/pi)
      return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
    case 4: return x / (1.f + expf(-1.702f * x));
    default: return x;
  }
}

}  // namespace pia_cuda

#undef PIA_ACT_FN
