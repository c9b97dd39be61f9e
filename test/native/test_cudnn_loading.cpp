// use_cudnn's loading (native/cuda/cudnn.cu) against stand-ins for cuDNN 9's dispatcher and
// sub-libraries (test/native/fake_cudnn, built by CMakeLists.txt with no RPATH, as in a pip
// wheel's folder): the sub-libraries are opened from the dispatcher's folder before it, so that its
// dlopen by bare soname finds them; a missing or broken required one is a clean error before any
// cuDNN function runs; an optional one that cannot open is tolerated. Runs where there is no GPU
// (CI): libpia_cuda.so is opened directly, and the stand-in's first convolution then fails on the
// missing driver, the error use_cudnn must report rather than crash on. Where a GPU is present the
// process's real cuDNN state must not be disturbed, so it skips there (the GPU suite covers it).
#include <cstdio>
#include <fstream>
#include <string>

#include <dlfcn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cuda/cuda_api.h"
#include "cuda/cuda_loader.h"
#include "harness.h"

using namespace pia;

namespace {

std::string beside_this_executable(const std::string& name) {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return name;
  std::string p(buf, size_t(n));
  return p.substr(0, p.rfind('/') + 1) + name;
}

bool contains(const char* s, const std::string& part) { return s && std::string(s).find(part) != std::string::npos; }

}  // namespace

PIA_TEST(cudnn_loading_sublibraries_first) {
#ifndef PIA_FAKE_CUDNN_DIR
  std::printf("     skip: built without the CUDA backend (no fake cuDNN)\n");
#else
  if (cuda_status().available) {
    std::printf("     skip: a GPU is present (the real cuDNN is in use in this process)\n");
    return;
  }
  const std::string lib = beside_this_executable("libpia_cuda.so");
  void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::printf("     skip: %s does not open: %s\n", lib.c_str(), dlerror());
    return;
  }
  auto get_ops = reinterpret_cast<pia_cuda_get_ops_fn>(dlsym(h, "pia_cuda_get_ops"));
  EXPECT(get_ops != nullptr);
  PiaCudaOps ops{};
  EXPECT(get_ops(&ops, sizeof ops) == 0 && ops.use_cudnn != nullptr);
  const std::string good = std::string(PIA_FAKE_CUDNN_DIR) + "/good";
  char info[64] = {0};

  // Folders made of links to the stand-ins: one lacks the convolution sub-library, one has a
  // file of that name that is no library, one names its dispatcher without a version.
  std::string tmpl = "/tmp/pia_fake_cudnn_XXXXXX";
  const std::string tmp = ::mkdtemp(tmpl.data());
  for (const char* d : {"/no_cnn", "/bad_cnn", "/unversioned"}) EXPECT(::mkdir((tmp + d).c_str(), 0755) == 0);
  for (const char* f : {"libcudnn.so.9", "libcudnn_graph.so.9", "libcudnn_ops.so.9"}) {
    EXPECT(::symlink((good + "/" + f).c_str(), (tmp + "/no_cnn/" + f).c_str()) == 0);
    EXPECT(::symlink((good + "/" + f).c_str(), (tmp + "/bad_cnn/" + f).c_str()) == 0);
  }
  std::ofstream(tmp + "/bad_cnn/libcudnn_cnn.so.9") << "not a library";
  std::ofstream(tmp + "/unversioned/libcudnn.so") << "not a library";

  EXPECT(ops.use_cudnn((tmp + "/no_cnn/libcudnn.so.9").c_str(), info, sizeof info) != 0);
  std::printf("     no cnn: %s\n", ops.last_error());
  EXPECT(contains(ops.last_error(), "libcudnn_cnn.so.9 is not beside it"));

  EXPECT(ops.use_cudnn((tmp + "/bad_cnn/libcudnn.so.9").c_str(), info, sizeof info) != 0);
  std::printf("     broken cnn: %s\n", ops.last_error());
  EXPECT(contains(ops.last_error(), "could not open cuDNN's libcudnn_cnn.so.9"));

  EXPECT(ops.use_cudnn((tmp + "/unversioned/libcudnn.so").c_str(), info, sizeof info) != 0);
  std::printf("     unversioned: %s\n", ops.last_error());
  EXPECT(contains(ops.last_error(), "cannot tell"));

  // The stand-in dispatcher reports 9.1.0 only if graph, ops and cnn were loaded under their
  // sonames before it; then the first convolution fails for want of a driver.
  EXPECT(ops.use_cudnn((good + "/libcudnn.so.9").c_str(), info, sizeof info) != 0);
  std::printf("     stand-in: %s\n", ops.last_error());
  EXPECT(contains(ops.last_error(), "cuDNN 9.1.0"));
  EXPECT(contains(ops.last_error(), "cannot be used"));
  EXPECT(dlopen("libcudnn_heuristic.so.9", RTLD_NOW | RTLD_NOLOAD) != nullptr);  // opened on the second round
  EXPECT(dlopen("libcudnn_engines_runtime_compiled.so.9", RTLD_NOW | RTLD_NOLOAD) == nullptr);  // tolerated
  PiaConvStats st{};
  EXPECT(ops.conv_stats(&st) == 0 && st.cudnn_loaded == 0 && st.policy == PIA_CUDA_CONV_TUNED);
  EXPECT(ops.set_conv_policy(7) == -1 && ops.set_conv_policy(PIA_CUDA_CONV_OURS) == PIA_CUDA_CONV_TUNED);
  EXPECT(ops.set_conv_policy(PIA_CUDA_CONV_TUNED) == PIA_CUDA_CONV_OURS);
#endif
}
