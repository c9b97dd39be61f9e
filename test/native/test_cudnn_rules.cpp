// The host-side rules of the cuDNN path (native/cuda/cudnn_host.h): when a convolution may go to
// cuDNN, what its plan cache is keyed on, how versions read, and which sub-libraries are opened
// before cuDNN's dispatcher. Runs on every machine; cuDNN itself only runs in the GPU suite
// (test_cuda_ops.cpp: cuda_conv2d_cudnn_*).
#include <string>
#include <vector>

#include "cuda/cudnn_host.h"
#include "harness.h"

using namespace pia_cuda::cudnn_rules;

namespace {

PiaConv2dArgs args(int64_t N, int64_t C, int64_t H, int64_t W, int64_t Co, int64_t k, int stride, int pad_top,
                   int pad_left, int64_t Ho, int64_t Wo) {
  PiaConv2dArgs a{};
  a.dtype = 1;
  a.N = N;
  a.C = C;
  a.H = H;
  a.W = W;
  a.Co = Co;
  a.kh = k;
  a.kw = k;
  a.stride = stride;
  a.pad_top = pad_top;
  a.pad_left = pad_left;
  a.Ho = Ho;
  a.Wo = Wo;
  alignas(64) static char buf[256];
  a.x = buf;
  a.w = buf + 64;
  a.y = buf + 128;
  return a;
}

}  // namespace

PIA_TEST(cudnn_rules_symmetric_padding) {
  // SD-1.5's 3×3 convolutions (padding 1) and the UNet's Downsample2D (stride 2, padding 1).
  EXPECT(symmetric_padding_fits(64, 64, 3, 3, 1, 1, 1, 64, 64));
  EXPECT(symmetric_padding_fits(64, 64, 3, 3, 2, 1, 1, 32, 32));
  EXPECT(symmetric_padding_fits(9, 11, 1, 1, 1, 0, 0, 9, 11));
  EXPECT(symmetric_padding_fits(4, 6, 1, 1, 1, 1, 1, 6, 8));
  // The VAE encoder's Downsample2D pads (0, 1, 0, 1): the last output row needs the bottom pad.
  EXPECT(!symmetric_padding_fits(64, 64, 3, 3, 2, 0, 0, 32, 32));
  EXPECT(!symmetric_padding_fits(20, 18, 3, 3, 2, 0, 0, 10, 9));
  // Top 1, bottom 0: fits where a bottom pad row would not have been read anyway (even H, stride 2)
  // ...
  EXPECT(symmetric_padding_fits(16, 16, 3, 3, 2, 1, 1, 8, 8));
  // ... and not where the symmetric output has one row more (odd H).
  EXPECT(!symmetric_padding_fits(15, 15, 3, 3, 2, 1, 1, 7, 7));
  // Top 0, bottom 2 at stride 1: one row more than the symmetric output.
  EXPECT(!symmetric_padding_fits(8, 8, 3, 3, 1, 0, 0, 8, 6));
  EXPECT(!symmetric_padding_fits(2, 2, 3, 3, 1, 0, 0, 1, 1));  // kernel larger than the image
  EXPECT(!symmetric_padding_fits(8, 8, 3, 3, 0, 1, 1, 8, 8));  // stride 0
}

PIA_TEST(cudnn_rules_legacy_api_limits) {
  EXPECT(fits_legacy_api(args(32, 320, 64, 64, 320, 3, 1, 1, 1, 64, 64)));
  // 16 frames of the VAE decoder's 256-channel 512×512 activations: 2³⁰ elements, still fits.
  EXPECT(fits_legacy_api(args(16, 256, 512, 512, 256, 3, 1, 1, 1, 512, 512)));
  // 2³¹ elements in one tensor does not.
  EXPECT(!fits_legacy_api(args(32, 256, 512, 512, 256, 3, 1, 1, 1, 512, 512)));
  EXPECT(!fits_legacy_api(args(0, 4, 8, 8, 4, 3, 1, 1, 1, 8, 8)));
}

PIA_TEST(cudnn_rules_plan_key) {
  const PiaConv2dArgs a = args(2, 320, 16, 16, 320, 3, 1, 1, 1, 16, 16);
  const ConvKey k = conv_key(a);
  PiaConv2dArgs same = a;
  alignas(64) static char other[256];
  same.x = other;  // another buffer of the same alignment
  same.w = other + 32;
  same.y = other + 16 * 7;
  EXPECT(conv_key(same) == k);
  // Every field that changes the plan or the timed verdict changes the key.
  std::vector<PiaConv2dArgs> variants(17, a);
  variants[0].dtype = 2;
  variants[1].N = 3;
  variants[2].C = 321;
  variants[3].H = 17;
  variants[4].W = 17;
  variants[5].Co = 4;
  variants[6].kh = 1;
  variants[7].kw = 1;
  variants[8].stride = 2;
  variants[9].pad_top = 0;
  variants[10].pad_left = 0;
  variants[11].Ho = 15;
  variants[12].Wo = 15;
  variants[13].act = 1;
  variants[14].bias = a.x;
  variants[15].x = static_cast<const char*>(a.x) + 2;  // 2-byte aligned input
  variants[16].y = static_cast<char*>(a.y) + 8;
  for (const PiaConv2dArgs& v : variants) EXPECT(conv_key(v) != k);
  EXPECT(alignment(reinterpret_cast<const void*>(uintptr_t(4096))) == 16);
  EXPECT(alignment(reinterpret_cast<const void*>(uintptr_t(4098))) == 2);
}

PIA_TEST(cudnn_rules_policy) {
  // f32 (dtype 0) is the parity mode: only CUDNN_ALL sends it to cuDNN, nothing times it.
  EXPECT(!policy_uses_cudnn(PIA_CUDA_CONV_OURS, 1));
  EXPECT(!policy_uses_cudnn(PIA_CUDA_CONV_TUNED, 0));
  EXPECT(policy_uses_cudnn(PIA_CUDA_CONV_TUNED, 1) && policy_uses_cudnn(PIA_CUDA_CONV_TUNED, 2));
  EXPECT(!policy_uses_cudnn(PIA_CUDA_CONV_CUDNN, 0) && policy_uses_cudnn(PIA_CUDA_CONV_CUDNN, 2));
  EXPECT(policy_uses_cudnn(PIA_CUDA_CONV_CUDNN_ALL, 0));
  EXPECT(policy_times(PIA_CUDA_CONV_TUNED, 1) && !policy_times(PIA_CUDA_CONV_TUNED, 0));
  EXPECT(!policy_times(PIA_CUDA_CONV_CUDNN, 1) && !policy_times(PIA_CUDA_CONV_CUDNN_ALL, 1));
}

PIA_TEST(cudnn_rules_versions) {
  EXPECT(version_string(90100) == "9.1.0");
  EXPECT(version_string(91003) == "9.10.3");
  EXPECT(version_string(8907) == "8.9.7");
  EXPECT(version_major(90600) == 9 && version_major(8201) == 8);
  EXPECT(major_from_name("/venv/lib/python3.11/site-packages/nvidia/cudnn/lib/libcudnn.so.9") == 9);
  EXPECT(major_from_name("/usr/lib/x86_64-linux-gnu/libcudnn.so.8.9.7") == 8);
  EXPECT(major_from_name("libcudnn.so.10") == 10);
  EXPECT(major_from_name("/usr/lib/libcudnn.so") == 0);
  EXPECT(major_from_name("/usr/lib/libcudnn_ops.so.9") == 0);
  EXPECT(major_from_name("/usr/lib/libcudnn.so.9x") == 0);
}

PIA_TEST(cudnn_rules_sublibraries) {
  // A pip wheel's nvidia/cudnn/lib (cuDNN 9) with some strangers in it.
  const std::vector<std::string> wheel = {
      "__init__.py", "libcudnn.so.9", "libcudnn_ops.so.9", "libcudnn_heuristic.so.9", "libcudnn_cnn.so.9",
      "libcudnn_engines_runtime_compiled.so.9", "libcudnn_graph.so.9", "libcudnn_adv.so.9",
      "libcudnn_engines_precompiled.so.9", "libcudnn_ops.so.9.1.0", "libcudnn_cnn_infer.so.8", "libcudnn_.so.9"};
  const SubLibraries s = sublibraries(9, wheel);
  EXPECT(s.missing_required.empty());
  const std::vector<std::string> want = {"libcudnn_graph.so.9",
                                         "libcudnn_ops.so.9",
                                         "libcudnn_cnn.so.9",
                                         "libcudnn_adv.so.9",
                                         "libcudnn_engines_precompiled.so.9",
                                         "libcudnn_engines_runtime_compiled.so.9",
                                         "libcudnn_heuristic.so.9"};
  EXPECT(s.load == want);
  // Without the convolution sub-library cuDNN is not used at all (its dispatcher would abort).
  std::vector<std::string> no_cnn;
  for (const std::string& f : wheel) {
    if (f != "libcudnn_cnn.so.9") no_cnn.push_back(f);
  }
  const SubLibraries m = sublibraries(9, no_cnn);
  EXPECT(m.missing_required == std::vector<std::string>{"libcudnn_cnn.so.9"});
  // cuDNN 8's split.
  const SubLibraries e = sublibraries(8, {"libcudnn.so.8", "libcudnn_cnn_infer.so.8", "libcudnn_ops_infer.so.8",
                                          "libcudnn_ops_train.so.8", "libcudnn_graph.so.9"});
  EXPECT(e.missing_required.empty());
  EXPECT((e.load == std::vector<std::string>{"libcudnn_ops_infer.so.8", "libcudnn_cnn_infer.so.8",
                                             "libcudnn_ops_train.so.8"}));
  EXPECT(sublibraries(7, {"libcudnn.so.7"}).load.empty());
}
