#pragma once
// The body of GroupNorm's three kernels (norm.cu has the design notes), written once against an
// execution context X so that the very same code runs on the GPU and, on machines without one,
// under the host emulator of test/native/test_group_norm_emulated.cpp. X supplies the hardware:
//
//   using Elem = T (float, f16 or bf16 storage);
//   int thread(), threads(), block_x(), block_y(), block_z();
//   void sync();                               // every thread of the block
//   float shfl_xor(float v, int lane_mask);    // every lane of the warp
//   float lds(const float* smem);  void sts(float* smem, float v);  // plain shared accesses
//   float to_f(T);  T from_f(float);  float rsqrt(float);
//
// Nothing else here may be CUDA-specific: the host test compiles this header with g++.
#include <cstdint>

#include "activation.cuh"

#if defined(__CUDACC__)
#define PIA_GN_FN __device__ __forceinline__
#define PIA_GN_HD __host__ __device__ __forceinline__
#define PIA_GN_UNROLL _Pragma("unroll")
#else
#define PIA_GN_FN inline
#define PIA_GN_HD inline
#define PIA_GN_UNROLL
#endif

namespace pia_gn {

constexpr int64_t kChunk = 16384;  // elements a block handles (the emulator passes smaller ones)
constexpr int kThreads = 256;

// A unit (sample n, group g) is `frames` contiguous spans of (C/groups)·S elements at a stride of
// C·S, each cut into `parts` chunks of at most `chunk` elements; block (chunk, group, sample)
// handles one chunk.
struct Geom {
  int64_t C, S, groups, frames, parts, span, chunk;
  PIA_GN_HD int64_t units_base(int64_t n, int64_t g) const { return (n * groups + g) * frames * parts; }
  // First element and length of chunk `p` of unit (n, g).
  PIA_GN_HD void chunk_of(int64_t n, int64_t g, int64_t p, int64_t& first, int64_t& len) const {
    const int64_t f = p / parts, part = p % parts;
    const int64_t b = part * chunk;
    first = ((n * frames + f) * C + g * (C / groups)) * S + b;
    len = chunk < span - b ? chunk : span - b;
  }
  // Blocks per unit: the grid is (pieces, groups, N).
  PIA_GN_HD int64_t pieces() const { return frames * parts; }
};

inline Geom make_geom(int64_t C, int64_t S, int64_t groups, int64_t frames, int64_t chunk) {
  Geom q{};
  q.C = C;
  q.S = S;
  q.groups = groups;
  q.frames = frames;
  q.span = (C / groups) * S;
  q.chunk = chunk;
  q.parts = (q.span + chunk - 1) / chunk;
  return q;
}

// block_sum's exchange: one partial a warp, then the total.
struct Shared {
  float part[32];
  float total;
};

template <class X>
PIA_GN_FN float warp_sum(X& x, float v) {
  PIA_GN_UNROLL
  for (int o = 16; o > 0; o >>= 1) v += x.shfl_xor(v, o);
  return v;
}

// Sum over the block (threads a multiple of 32, ≤ 1024); every thread gets the result. Two
// barriers suffice between calls: the next call writes `part` after this call's second barrier,
// which every reader of `part` passed, and `total` after its own first barrier, which every
// reader of this `total` reaches only after reading it (the emulator's race detector agrees).
template <class X>
PIA_GN_FN float block_sum(X& x, Shared& sh, float v) {
  const int lane = x.thread() % 32, warp = x.thread() / 32, warps = x.threads() / 32;
  v = warp_sum(x, v);
  if (lane == 0) x.sts(&sh.part[warp], v);
  x.sync();
  if (warp == 0) {
    float s = lane < warps ? x.lds(&sh.part[lane]) : 0.f;
    s = warp_sum(x, s);
    if (lane == 0) x.sts(&sh.total, s);
  }
  x.sync();
  return x.lds(&sh.total);
}

// The unit's mean (or mean squared deviation) from its chunk partials, in a fixed order, so that
// every block of a unit sees bit-identical statistics.
template <class X>
PIA_GN_FN float unit_mean(X& x, Shared& sh, const float* partial, int64_t count, float denom) {
  float s = 0.f;
  for (int64_t i = x.thread(); i < count; i += x.threads()) s += partial[i];
  return block_sum(x, sh, s) / denom;
}

// Pass 1: the chunk's sum.
template <class X>
PIA_GN_FN void sum_block(X& x, Shared& sh, const typename X::Elem* src, const Geom& q, float* sums) {
  const int64_t p = x.block_x(), g = x.block_y(), n = x.block_z();
  int64_t first, len;
  q.chunk_of(n, g, p, first, len);
  float s = 0.f;
  for (int64_t i = x.thread(); i < len; i += x.threads()) s += x.to_f(src[first + i]);
  s = block_sum(x, sh, s);
  if (x.thread() == 0) sums[q.units_base(n, g) + p] = s;
}

// Pass 2: the chunk's squared deviations from the unit mean.
template <class X>
PIA_GN_FN void var_block(X& x, Shared& sh, const typename X::Elem* src, const Geom& q, const float* sums,
                         float* sq) {
  const int64_t p = x.block_x(), g = x.block_y(), n = x.block_z();
  const int64_t count = q.frames * q.parts;
  const float mean = unit_mean(x, sh, sums + q.units_base(n, g), count, float(q.frames * q.span));
  int64_t first, len;
  q.chunk_of(n, g, p, first, len);
  float v = 0.f;
  for (int64_t i = x.thread(); i < len; i += x.threads()) {
    const float d = x.to_f(src[first + i]) - mean;
    v += d * d;
  }
  v = block_sum(x, sh, v);
  if (x.thread() == 0) sq[q.units_base(n, g) + p] = v;
}

// Pass 3: normalise, affine per channel, activation.
template <class X>
PIA_GN_FN void apply_block(X& x, Shared& sh, const typename X::Elem* src, typename X::Elem* dst, const Geom& q,
                           const float* sums, const float* sq, const typename X::Elem* gamma,
                           const typename X::Elem* beta, float eps, int act) {
  const int64_t p = x.block_x(), g = x.block_y(), n = x.block_z();
  const int64_t count = q.frames * q.parts;
  const float denom = float(q.frames * q.span);
  const float mean = unit_mean(x, sh, sums + q.units_base(n, g), count, denom);
  const float rstd = x.rsqrt(unit_mean(x, sh, sq + q.units_base(n, g), count, denom) + eps);
  int64_t first, len;
  q.chunk_of(n, g, p, first, len);
  const int64_t c0 = g * (q.C / q.groups);
  const int64_t off = (p % q.parts) * q.chunk;  // position of the chunk inside its span
  for (int64_t i = x.thread(); i < len; i += x.threads()) {
    const int64_t c = c0 + (off + i) / q.S;
    float o = (x.to_f(src[first + i]) - mean) * rstd;
    if (gamma) o *= x.to_f(gamma[c]);
    if (beta) o += x.to_f(beta[c]);
    dst[first + i] = x.from_f(pia_cuda::apply_act(o, act));
  }
}

}  // namespace pia_gn

#undef PIA_GN_FN
#undef PIA_GN_HD
#undef PIA_GN_UNROLL
