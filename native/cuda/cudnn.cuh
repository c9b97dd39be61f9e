#pragma once
// cuDNN behind conv2d(): opened at run time, never linked (cudnn.cu).
#include <cstddef>

#include "cuda_api.h"

namespace pia_cuda {

// Opens cuDNN at `path` for every later conv2d; writes its version ("9.1.0") into info.
int use_cudnn(const char* path, char* info, size_t infolen);
// PIA_CUDA_CONV_*; returns the previous policy, -1 for an unknown one.
int set_conv_policy(int policy);
int conv_stats(PiaConvStats* out);
// Runs the convolution through cuDNN and returns true (its status in *rc), or returns false when
// cuDNN is not loaded, the policy keeps this call on our kernel, or cuDNN declines or fails the
// shape; gemm.cu's implicit-GEMM kernel then runs it.
bool cudnn_conv2d(int device, const PiaConv2dArgs& a, int* rc);
// Counts a conv2d that ran on our kernel (conv_stats).
void count_own_conv();

}  // namespace pia_cuda
