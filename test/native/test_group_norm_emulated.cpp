// GroupNorm's three CUDA kernels (native/cuda/norm_body.cuh: chunk sums, chunk squared
// deviations, normalisation) run on the host by simt_emulator.h, with the launch geometry of
// norm.cu's group_norm but small chunks, so that units span several blocks and frames pool as
// the motion modules need; compared with the CPU backend. Runs everywhere, GPU or not.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "cuda/norm_body.cuh"
#include "emulated_types.h"
#include "harness.h"
#include "ops/backend.h"
#include "simt_emulator.h"

using namespace pia;

namespace {

template <typename T>
struct Emu : simt::Thread {
  using Elem = T;
  float shfl_xor(float v, int lane_mask) {
    static const char* const kWhat = "__shfl_xor_sync";
    blk->float_slot[tid] = v;
    blk->warp_wait(tid, kWhat);
    const float r = blk->float_slot[(tid & ~31) | ((tid & 31) ^ lane_mask)];
    blk->warp_wait(tid, kWhat);  // nobody overwrites a slot before every lane has read
    return r;
  }
  float to_f(T v) const { return emu::to_f(v); }
  T from_f(float v) const { return emu::from_f<T>(v); }
  float rsqrt(float v) const { return 1.f / std::sqrt(v); }
};

struct Case {
  int64_t N, frames, C, S, groups, chunk;
  bool affine;
  Activation act;
};

// The three passes over the grid (pieces, groups, N), block after block, as group_norm launches
// them; the partials start as NaN so that a partial never written poisons every statistic.
template <typename T>
void emulate(const T* x, T* y, int64_t N, const pia_gn::Geom& q, const T* gamma, const T* beta, float eps, int act) {
  static simt::Block blk(pia_gn::kThreads, sizeof(pia_gn::Shared));
  const size_t partials = size_t(N * q.groups * q.pieces());
  std::vector<float> sums(partials, NAN), sq(partials, NAN);
  auto shared = [&] { return reinterpret_cast<pia_gn::Shared*>(blk.smem()); };
  for (int pass = 0; pass < 3; ++pass) {
    for (int n = 0; n < int(N); ++n)
      for (int g = 0; g < int(q.groups); ++g)
        for (int p = 0; p < int(q.pieces()); ++p)
          blk.run(p, g, n, [&](int tid) {
            Emu<T> ctx{{&blk, tid}};
            if (pass == 0) pia_gn::sum_block(ctx, *shared(), x, q, sums.data());
            if (pass == 1) pia_gn::var_block(ctx, *shared(), x, q, sums.data(), sq.data());
            if (pass == 2) pia_gn::apply_block(ctx, *shared(), x, y, q, sums.data(), sq.data(), gamma, beta, eps, act);
          });
  }
}

template <typename T>
std::vector<T> to_storage(const Tensor& t) {
  std::vector<T> v(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = emu::from_f<T>(t.data<float>()[i]);
  return v;
}

template <typename T>
void run_case(const Case& c, DType dt, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const Shape xs{c.N * c.frames, c.C, c.S};
  auto randn = [&](const Shape& s, float mean, float sd) {
    Tensor t = Tensor::empty(s);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = mean + sd * nd(g);
    return t;
  };
  // An offset mean makes a one-pass E[x²] − E[x]² visibly worse than the two passes.
  Tensor x = randn(xs, 3.f, 1.5f), gamma = randn({c.C}, 1.f, 0.3f), beta = randn({c.C}, 0.f, 0.5f);
  std::vector<T> xb = to_storage<T>(x), gb = to_storage<T>(gamma), bb = to_storage<T>(beta);
  // The CPU gets the same rounded values.
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = emu::to_f(xb[size_t(i)]);
  for (int64_t i = 0; i < c.C; ++i) {
    gamma.data<float>()[i] = emu::to_f(gb[size_t(i)]);
    beta.data<float>()[i] = emu::to_f(bb[size_t(i)]);
  }
  std::vector<T> yb(xb.size() + 16, emu::from_f<T>(NAN));
  const pia_gn::Geom q = pia_gn::make_geom(c.C, c.S, c.groups, c.frames, c.chunk);
  const float eps = 1e-5f;
  emulate<T>(xb.data(), yb.data(), c.N, q, c.affine ? gb.data() : nullptr, c.affine ? bb.data() : nullptr, eps,
             int(c.act));
  for (size_t i = xb.size(); i < yb.size(); ++i) EXPECT(std::isnan(emu::to_f(yb[i])));  // nothing past the end

  auto cpu = make_cpu_backend();
  const Tensor none;
  const Tensor xd = cpu->from_host(x), gd = cpu->from_host(gamma), bd = cpu->from_host(beta);
  Tensor ref = c.frames == 1 ? cpu->group_norm(xd, int(c.groups), c.affine ? gd : none, c.affine ? bd : none, eps, c.act)
                             : cpu->group_norm_frames(xd, c.frames, int(c.groups), c.affine ? gd : none,
                                                      c.affine ? bd : none, eps);
  if (c.frames != 1 && c.act != Activation::None) ref = cpu->activation(ref, c.act);
  ref = cpu->to_host(ref);
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double v = emu::to_f(yb[size_t(i)]), r = ref.data<float>()[i];
    num += std::isfinite(v) ? (v - r) * (v - r) : INFINITY;
    den += r * r;
  }
  const double e = num / den;
  // test_cuda_ops.cpp's op thresholds per type.
  const double threshold = dt == DType::F32 ? 1e-9 : dt == DType::F16 ? 1e-6 : 5e-5;
  char name[200];
  std::snprintf(name, sizeof name, "%s N%lld F%lld C%lld S%lld groups %lld chunk %lld (%lld blocks a unit)%s%s",
                dtype_name(dt), (long long)c.N, (long long)c.frames, (long long)c.C, (long long)c.S,
                (long long)c.groups, (long long)c.chunk, (long long)q.pieces(), c.affine ? " affine" : "",
                c.act == Activation::SiLU ? " SiLU" : "");
  std::printf("     %-66s nmse %.2e (max %.0e)\n", name, e, threshold);
  if (!(e <= threshold)) test::fail(std::string(name) + ": nmse " + std::to_string(e));
}

}  // namespace

PIA_TEST(group_norm_emulated_vs_cpu) {
  const Case cases[] = {
      {2, 1, 8, 37, 4, 24, true, Activation::SiLU},    // 4 chunks a span, the last one short
      {1, 3, 6, 20, 3, 16, false, Activation::None},   // frames 3: 3 spans × 3 chunks pooled
      {1, 16, 4, 5, 2, 8, true, Activation::None},     // frames 16 (the motion modules): 32 chunks
      {2, 1, 4, 9, 2, pia_gn::kChunk, false, Activation::SiLU},  // the real chunk size: one block a unit
      {1, 16, 2, 20, 1, 2, true, Activation::None},    // 320 chunks: partials outnumber the threads
  };
  uint32_t seed = 11;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    // Emulating 960 blocks takes seconds: the last case once, in f32 (the CUDA fp32 parity mode);
    // the element type does not change its indexing.
    const Case& c = cases[i];
    if (i + 1 < sizeof cases / sizeof cases[0]) {
      run_case<emu::F16>(c, DType::F16, seed++);
      run_case<emu::BF16>(c, DType::BF16, seed++);
    }
    if (i == 0 || i + 1 == sizeof cases / sizeof cases[0]) run_case<float>(c, DType::F32, seed++);
  }
}
