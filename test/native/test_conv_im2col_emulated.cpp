// The im2col convolution (native/cuda/conv_im2col_body.cuh) run on the host: the column-block
// plan, the im2col kernel's body and, for every block, the emulated cp.async GEMM
// (gemm_pipelined_emulator.h) with the arguments conv_im2col.cu gives it; compared with the CPU
// backend's conv2d. Small budgets split each image into several column blocks, as
// PIA_CUDA_IM2COL_BUDGET does in the GPU suite. Runs everywhere, GPU or not.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "cuda/conv_im2col_body.cuh"
#include "gemm_pipelined_emulator.h"
#include "harness.h"
#include "ops/backend.h"

using namespace pia;

namespace {

// The im2col kernel's context: one thread of a grid-stride loop. The body has no collectives,
// so the threads run one after the other.
template <typename T>
struct Im2colCtx {
  using Elem = T;
  int64_t global_thread, grid_threads;
  int64_t first() const { return global_thread; }
  int64_t stride() const { return grid_threads; }
  T zero() const { return emu::from_f<T>(0.f); }
};

using Buffer = simt::GuardedBuffer;

struct Case {
  const char* what;
  int64_t N, C, H, W, Co, k;
  int stride, pad_top, pad_bottom, pad_left, pad_right;
  size_t budget;         // bytes of column scratch
  int64_t blocks_each;   // column blocks an image that budget gives
  bool bias;
  Activation act;
};

template <typename T>
void run_case(const Case& c, DType dt, uint32_t seed) {
  const bool bf16 = dt == DType::BF16;
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t Ho = (c.H + c.pad_top + c.pad_bottom - c.k) / c.stride + 1;
  const int64_t Wo = (c.W + c.pad_left + c.pad_right - c.k) / c.stride + 1;
  const int64_t K = c.C * c.k * c.k;
  auto fill = [&](Buffer& b, float sd) {
    for (size_t i = 0; i < b.n; ++i) b.data[i] = bf16 ? f32_to_bf16(sd * nd(g)) : f32_to_f16(sd * nd(g));
  };
  Buffer x(size_t(c.N * c.C * c.H * c.W)), w(size_t(c.Co * K)), bias(size_t(c.Co)), y(size_t(c.N * c.Co * Ho * Wo));
  fill(x, 1.f);
  fill(w, 0.2f);
  fill(bias, 1.f);

  PiaConv2dArgs a{};
  a.dtype = bf16 ? 2 : 1;
  a.x = x.data, a.N = c.N, a.C = c.C, a.H = c.H, a.W = c.W;
  a.w = w.data, a.Co = c.Co, a.kh = c.k, a.kw = c.k;
  a.bias = c.bias ? bias.data : nullptr;
  a.stride = c.stride, a.pad_top = c.pad_top, a.pad_left = c.pad_left;
  a.y = y.data, a.Ho = Ho, a.Wo = Wo;
  a.act = int(c.act);

  const int64_t nb = pia_im2col::block_pixels(a, c.budget);
  if (!nb) test::fail(std::string(c.what) + ": the plan refuses the shape");
  PiaGemmArgs ga = pia_im2col::gemm_args(a, nb);
  if (!pia_gemm_pipe::shape_fits(ga)) test::fail(std::string(c.what) + ": the GEMM refuses the blocks");
  Buffer scratch(size_t(K * nb));
  int64_t blocks = 0;
  const int64_t in_plane = c.C * c.H * c.W;
  const int rc = pia_im2col::for_each_block(a, nb, [&](int64_t img, int64_t n0, int64_t cols) {
    ++blocks;
    std::fill(scratch.data, scratch.data + scratch.n, uint16_t(0xffff));  // stale columns are NaN
    const pia_im2col::Params q = pia_im2col::params(a, n0, cols);
    // Two blocks of 256 threads: fewer than the elements, so the grid-stride loop goes round.
    const int64_t grid = 2 * 256;
    for (int64_t t = 0; t < grid; ++t) {
      Im2colCtx<T> ctx{t, grid};
      pia_im2col::im2col(ctx, reinterpret_cast<const T*>(x.data) + img * in_plane,
                         reinterpret_cast<T*>(scratch.data), q);
    }
    pia_im2col::at_block(ga, a, scratch.data, img, n0, cols);
    emu_gemm::emulate<T, false>(ga, {{w.data, w.n * 2}, {scratch.data, size_t(K * cols) * 2}});
    return 0;
  });
  EXPECT(rc == 0);
  if (blocks != c.N * c.blocks_each) {
    test::fail(std::string(c.what) + ": " + std::to_string(blocks) + " column blocks, expected " +
               std::to_string(c.N * c.blocks_each));
  }
  if (!x.guards_intact() || !scratch.guards_intact() || !y.guards_intact()) {
    test::fail(std::string(c.what) + ": a write outside its buffer");
  }

  auto widen = [&](const Buffer& b, const Shape& s) {
    Tensor t = Tensor::empty(s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = bf16 ? bf16_to_f32(b.data[i]) : f16_to_f32(b.data[i]);
    return t;
  };
  auto cpu = make_cpu_backend();
  Conv2dParams cp;
  cp.stride = c.stride;
  cp.pad_top = c.pad_top, cp.pad_bottom = c.pad_bottom, cp.pad_left = c.pad_left, cp.pad_right = c.pad_right;
  const Tensor none;
  Tensor ref = cpu->conv2d(cpu->from_host(widen(x, {c.N, c.C, c.H, c.W})), cpu->from_host(widen(w, {c.Co, c.C, c.k, c.k})),
                           c.bias ? cpu->from_host(widen(bias, {c.Co})) : none, cp);
  if (c.act != Activation::None) ref = cpu->activation(ref, c.act);
  ref = cpu->to_host(ref);
  if (ref.numel() != int64_t(y.n)) test::fail(std::string(c.what) + ": output size differs from the CPU's");
  const Tensor got = widen(y, ref.shape());
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double v = got.data<float>()[i], r = ref.data<float>()[i];
    num += std::isfinite(v) ? (v - r) * (v - r) : INFINITY;
    den += r * r;
  }
  const double e = num / den, threshold = bf16 ? 5e-5 : 1e-6;  // test_cuda_ops.cpp's op thresholds
  char name[200];
  std::snprintf(name, sizeof name, "%s %s: %lld column blocks of %lld", dtype_name(dt), c.what, (long long)blocks,
                (long long)nb);
  std::printf("     %-66s nmse %.2e (max %.0e)\n", name, e, threshold);
  if (!(e <= threshold)) test::fail(std::string(name) + ": nmse " + std::to_string(e));
}

}  // namespace

PIA_TEST(conv_im2col_emulated_vs_cpu) {
  // K = C·9 = 72 (a K tail of 8); budgets in bytes of K·nb 2-byte elements.
  const Case cases[] = {
      {"3x3 pad 1, 3 blocks an image, bias + SiLU", 2, 8, 6, 8, 20, 3, 1, 1, 1, 1, 1, 72 * 2 * 16, 3, true,
       Activation::SiLU},
      {"Downsample2D (0,1,0,1) stride 2, 2 blocks", 1, 8, 8, 8, 12, 3, 2, 0, 1, 0, 1, 72 * 2 * 8, 2, true,
       Activation::None},
      {"3x3 pad 1, budget over the image, no bias", 1, 16, 4, 6, 24, 3, 1, 1, 1, 1, 1, size_t(128) << 20, 1, false,
       Activation::None},
      {"3x3 stride 2 pad 1, uneven last block", 1, 8, 12, 8, 8, 3, 2, 1, 1, 1, 1, 72 * 2 * 16, 2, true,
       Activation::GELU},
  };
  uint32_t seed = 21;
  for (const Case& c : cases) {
    run_case<emu::F16>(c, DType::F16, seed++);
    run_case<emu::BF16>(c, DType::BF16, seed++);
  }
  // Shapes the plan leaves to the implicit GEMM: a pixel count that is not a multiple of 8, and a
  // budget under 8 columns.
  PiaConv2dArgs odd{};
  odd.dtype = 1, odd.C = 8, odd.kh = odd.kw = 3, odd.Ho = 5, odd.Wo = 5;
  EXPECT(pia_im2col::block_pixels(odd, size_t(128) << 20) == 0);
  odd.Ho = odd.Wo = 8;
  EXPECT(pia_im2col::block_pixels(odd, 72 * 2 * 7) == 0);
  EXPECT(pia_im2col::block_pixels(odd, 72 * 2 * 8) == 8);
}
