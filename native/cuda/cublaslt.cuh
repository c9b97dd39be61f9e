#pragma once
// cuBLASLt behind gemm(): opened at run time, never linked (cublaslt.cu).
#include <cstddef>

#include "cuda_api.h"

namespace pia_cuda {

// Opens cuBLASLt at `path` for every later gemm; writes its version ("12.4.5") into info.
int use_cublaslt(const char* path, char* info, size_t infolen);
// Runs the GEMM through cuBLASLt and returns true (its status in *rc), or returns false when
// cuBLASLt is not loaded or declines the shape, and gemm.cu's kernel should run it.
bool cublaslt_gemm(int device, const PiaGemmArgs& a, int* rc);
bool cublaslt_loaded();

}  // namespace pia_cuda
