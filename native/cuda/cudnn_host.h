#pragma once
// The host-side rules of the cuDNN path (cudnn.cu) with no CUDA and no dlopen in them, so that the
// native tests check them on every machine (test/native/test_library_search.cpp).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_api.h"

namespace pia_cuda::cudnn_rules {

// cuDNN's legacy API pads both sides alike. Our contract fixes the bottom/right padding only through
// Ho/Wo, so cuDNN computes the same output exactly when its own output size, with pad_top on both
// sides, is Ho × Wo: every output pixel then reads the same input window, and the rows and columns
// past the image are zeros in both. Downsample2D's (0, 1, 0, 1) padding fails this and stays ours.
inline bool symmetric_padding_fits(int64_t H, int64_t W, int64_t kh, int64_t kw, int stride, int pad_top,
                                   int pad_left, int64_t Ho, int64_t Wo) {
  if (stride < 1 || pad_top < 0 || pad_left < 0) return false;
  const int64_t h = H + 2 * int64_t(pad_top) - kh, w = W + 2 * int64_t(pad_left) - kw;
  if (h < 0 || w < 0) return false;
  return h / stride + 1 == Ho && w / stride + 1 == Wo;
}

// The legacy descriptors take int dimensions, and cuDNN refuses tensors of 2³¹ elements or more.
inline bool fits_legacy_api(const PiaConv2dArgs& a) {
  constexpr int64_t kMax = 0x7fffffff;
  const int64_t dims[] = {a.N, a.C, a.H, a.W, a.Co, a.kh, a.kw, a.Ho, a.Wo};
  for (int64_t d : dims) {
    if (d <= 0 || d > kMax) return false;
  }
  return a.N * a.C * a.H * a.W <= kMax && a.N * a.Co * a.Ho * a.Wo <= kMax && a.Co * a.C * a.kh * a.kw <= kMax;
}

// Largest power of two (at most 16 bytes, the widest vector load a kernel makes) dividing p.
inline int64_t alignment(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  int64_t a = 16;
  while (a > 1 && v % uintptr_t(a)) a /= 2;
  return a;
}

// Everything a cached plan and a timing decision depend on. Bias and activation do not change
// cuDNN's plan, but they do change who wins: our kernel fuses them, cuDNN needs one more pass.
using ConvKey = std::array<int64_t, 18>;
inline ConvKey conv_key(const PiaConv2dArgs& a) {
  return {a.dtype,  a.N,          a.C,           a.H,         a.W,          a.Co,
          a.kh,     a.kw,         a.stride,      a.pad_top,   a.pad_left,   a.Ho,
          a.Wo,     a.act,        a.bias != nullptr, alignment(a.x), alignment(a.w), alignment(a.y)};
}

// Whether a policy sends this dtype to cuDNN at all, and whether it times it against ours first.
inline bool policy_uses_cudnn(int policy, int dtype) {
  if (policy == PIA_CUDA_CONV_CUDNN_ALL) return true;
  return (policy == PIA_CUDA_CONV_TUNED || policy == PIA_CUDA_CONV_CUDNN) && dtype != 0;
}
inline bool policy_times(int policy, int dtype) { return policy == PIA_CUDA_CONV_TUNED && dtype != 0; }

// cudnnGetVersion(): major·1000 + minor·100 + patch up to cuDNN 8, major·10000 + minor·100 + patch
// from cuDNN 9 on (cudnn_version.h of 8.2.1 and 9.6.0).
inline int version_major(size_t v) { return v >= 90000 ? int(v / 10000) : int(v / 1000); }
inline std::string version_string(size_t v) {
  char s[32];
  if (v >= 90000) std::snprintf(s, sizeof s, "%zu.%zu.%zu", v / 10000, v / 100 % 100, v % 100);
  else std::snprintf(s, sizeof s, "%zu.%zu.%zu", v / 1000, v / 100 % 10, v % 100);
  return s;
}

// The major version in a file name "libcudnn.so.9" or "libcudnn.so.9.1.0"; 0 if it has none.
inline int major_from_name(const std::string& path) {
  const std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  const std::string stem = "libcudnn.so.";
  if (base.compare(0, stem.size(), stem) != 0) return 0;
  int major = 0;
  size_t i = stem.size();
  for (; i < base.size() && base[i] >= '0' && base[i] <= '9'; ++i) major = major * 10 + (base[i] - '0');
  return (i == stem.size() || (i < base.size() && base[i] != '.')) ? 0 : major;
}

// libcudnn.so.N is a small dispatcher that dlopens its sub-libraries by bare soname the first time
// one of their functions is called, and aborts the process when one cannot be found (seen with
// pip wheels, whose folder is on no search path). glibc answers a dlopen by soname with a library
// already loaded under that soname, so cudnn.cu opens the sub-libraries by full path from the
// dispatcher's folder first. `required` hold every function cudnn.cu calls (cuDNN 9: graph = handle
// and version, ops = tensor and filter descriptors, cnn = convolution; cuDNN 8: ops_infer,
// cnn_infer); without one of them cuDNN is not used at all. The other libcudnn_*.so.N beside them
// (engines, heuristics, and whatever later releases add) are opened too where they open, so that
// cuDNN's own later dlopens find this folder's copies rather than another install's.
struct SubLibraries {
  std::vector<std::string> load;              // file names to open, required ones first
  std::vector<std::string> missing_required;  // required file names not in the folder
};
inline std::vector<std::string> required_sublibraries(int major) {
  if (major == 8) return {"libcudnn_ops_infer.so.8", "libcudnn_cnn_infer.so.8"};
  if (major == 9) return {"libcudnn_graph.so.9", "libcudnn_ops.so.9", "libcudnn_cnn.so.9"};
  return {};
}
inline SubLibraries sublibraries(int major, std::vector<std::string> folder_files) {
  SubLibraries s;
  const std::vector<std::string> req = required_sublibraries(major);
  for (const std::string& r : req) {
    if (std::find(folder_files.begin(), folder_files.end(), r) != folder_files.end()) s.load.push_back(r);
    else s.missing_required.push_back(r);
  }
  const std::string prefix = "libcudnn_", suffix = ".so." + std::to_string(major);
  std::sort(folder_files.begin(), folder_files.end());
  for (const std::string& f : folder_files) {
    const bool named = f.size() > prefix.size() + suffix.size() && f.compare(0, prefix.size(), prefix) == 0 &&
                       f.compare(f.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (named && std::find(req.begin(), req.end(), f) == req.end()) s.load.push_back(f);
  }
  return s;
}

}  // namespace pia_cuda::cudnn_rules
