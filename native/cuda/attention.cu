// Flash-style attention: each block owns 8 query rows of one (batch, head) and streams the keys
// and values through shared memory 32 at a time with an online softmax (running max and sum),
// so the [Sq, Sk] score matrix never exists. Lane j of a warp scores key j of the tile; the
// probabilities are then broadcast by shuffles while each lane accumulates its own output dims.
//
// The same kernel serves the temporal attention of the motion modules: rows are addressed by
// (outer, inner, seq) strides, so attention over the F frames of every pixel reads the
// [B, F, HW, C] activations in place (see PiaAttentionArgs).
//
// f16/bf16 inputs are widened to f32 in shared memory; everything is computed in f32. f16/bf16
// with head dims up to 160 go to the tensor-core kernel (attention_tc.cu) instead, unless
// PIA_CUDA_SIMPLE_ATTENTION=1: this kernel is the reference the GPU suite compares it with.
#include <cfloat>
#include <cstdlib>
#include <cstring>

#include "common.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

constexpr int kWarps = 4;

struct AttnP {
  const void *q, *k, *v;
  void* o;
  PiaAttnStrides sq, sk, sv, so;
  int64_t batch_inner;
  int Sq, Sk, H, D, Dv;
  float scale;
  int causal;
};

__device__ __forceinline__ int64_t row_offset(const PiaAttnStrides& s, int64_t b, int64_t inner, int64_t pos) {
  return (b / inner) * s.outer + (b % inner) * s.inner + pos * s.seq;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// DMAX bounds D and Dv; KT keys per tile (≤ 32: lane j scores key j), RPW query rows per warp.
// Static shared memory (4·RPW + 2·KT)·(DMAX + 1) floats stays under 48 KB: 46 KB for
// <160, 32, 2>, 41 KB for <512, 8, 1> (the VAE's single 512-wide head).
template <typename T, int DMAX, int KT, int RPW>
__global__ void __launch_bounds__(kWarps * 32) attention_kernel(AttnP p) {
  constexpr int DPL = (DMAX + 31) / 32;  // output dims per lane
  constexpr int kRowsPerWarp = RPW, kQRows = kWarps * RPW, kKeyTile = KT;
  static_assert(KT <= 32, "one key per lane");
  __shared__ float Qs[kQRows][DMAX];
  __shared__ float Ks[kKeyTile][DMAX + 1];  // +1: lane j reads row j, conflict-free
  __shared__ float Vs[kKeyTile][DMAX + 1];
  const int64_t bh = blockIdx.x;
  const int64_t b = bh / p.H;
  const int h = int(bh % p.H);
  const int q0 = blockIdx.y * kQRows;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  T* o = static_cast<T*>(p.o);

  for (int e = threadIdx.x; e < kQRows * p.D; e += blockDim.x) {
    const int r = e / p.D, d = e - r * p.D;
    Qs[r][d] = q0 + r < p.Sq ? to_f(q[row_offset(p.sq, b, p.batch_inner, q0 + r) + int64_t(h) * p.D + d]) : 0.f;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][DPL];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[r][i] = 0.f;
  }

  // Causal: no key beyond the block's last query row is ever needed.
  const int q_last = min(q0 + kQRows, p.Sq) - 1;
  const int kend = p.causal ? min(p.Sk, q_last + 1) : p.Sk;
  for (int j0 = 0; j0 < kend; j0 += kKeyTile) {
    __syncthreads();  // the previous tile (and on the first pass Qs) is complete / no longer read
    for (int e = threadIdx.x; e < kKeyTile * p.D; e += blockDim.x) {
      const int j = e / p.D, d = e - j * p.D;
      Ks[j][d] = j0 + j < p.Sk ? to_f(k[row_offset(p.sk, b, p.batch_inner, j0 + j) + int64_t(h) * p.D + d]) : 0.f;
    }
    for (int e = threadIdx.x; e < kKeyTile * p.Dv; e += blockDim.x) {
      const int j = e / p.Dv, d = e - j * p.Dv;
      Vs[j][d] = j0 + j < p.Sk ? to_f(v[row_offset(p.sv, b, p.batch_inner, j0 + j) + int64_t(h) * p.Dv + d]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int qi = q0 + warp * kRowsPerWarp + r;
      if (qi >= p.Sq) continue;  // warp-uniform
      const int key = j0 + lane;
      float s = -INFINITY;
      if (lane < kKeyTile && key < p.Sk && !(p.causal && key > qi)) {
        const float* qr = Qs[warp * kRowsPerWarp + r];
        float dot = 0.f;
        const float* kr = Ks[lane];
        for (int d = 0; d < p.D; ++d) dot = fmaf(qr[d], kr[d], dot);
        s = dot * p.scale;
      }
      const float tile_max = warp_max(s);
      if (tile_max == -INFINITY) continue;  // every key of this tile masked for this row
      const float m_new = fmaxf(m[r], tile_max);
      const float corr = expf(m[r] - m_new);  // 0 on the first tile (m = −inf)
      const float pr = s == -INFINITY ? 0.f : expf(s - m_new);
      l[r] = l[r] * corr + warp_sum(pr);
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[r][i] *= corr;
      const int jn = min(kKeyTile, p.Sk - j0);
      for (int j = 0; j < jn; ++j) {
        const float pj = __shfl_sync(0xffffffffu, pr, j);
#pragma unroll
        for (int i = 0; i < DPL; ++i) {
          const int d = lane + 32 * i;
          if (d < p.Dv) acc[r][i] = fmaf(pj, Vs[j][d], acc[r][i]);
        }
      }
      m[r] = m_new;
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int qi = q0 + warp * kRowsPerWarp + r;
    if (qi >= p.Sq) continue;
    const float inv = 1.f / l[r];
    T* orow = o + row_offset(p.so, b, p.batch_inner, qi) + int64_t(h) * p.Dv;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      const int d = lane + 32 * i;
      if (d < p.Dv) orow[d] = from_f<T>(acc[r][i] * inv);
    }
  }
}

template <int DMAX, int KT, int RPW>
int launch(int dtype, const AttnP& p, int64_t batch_heads) {
  constexpr int rows = kWarps * RPW;
  const int64_t qtiles = (int64_t(p.Sq) + rows - 1) / rows;
  if (qtiles > 65535 || batch_heads > 0x7fffffffLL) {
    set_error("attention: %d queries x %lld batch*heads is too large for one launch", p.Sq, (long long)batch_heads);
    return PIA_CUDA_ERR_ARG;
  }
  const dim3 grid{unsigned(batch_heads), unsigned(qtiles), 1u};
  cudaStream_t s = stream();
  PIA_DISPATCH(dtype, attention_kernel<T, DMAX, KT, RPW><<<grid, kWarps * 32, 0, s>>>(p));
  return check_launch("attention kernel");
}

// PIA_CUDA_SIMPLE_ATTENTION=1 (read once) keeps f16/bf16 on the FMA kernel.
bool simple_attention_forced() {
  static const bool forced = [] {
    const char* s = std::getenv("PIA_CUDA_SIMPLE_ATTENTION");
    return s && *s && std::strcmp(s, "0") != 0;
  }();
  return forced;
}

}  // namespace

int attention(int device, const PiaAttentionArgs* a) {
  if (int rc = use_device(device)) return rc;
  const int64_t dmax = a->D > a->Dv ? a->D : a->Dv;
  if (a->heads <= 0 || a->D <= 0 || a->Dv <= 0 || a->Sk <= 0 || a->batch_inner <= 0 || dmax > 512 ||
      a->Sq > 0x7fffffffLL || a->Sk > 0x7fffffffLL) {
    set_error("attention: unsupported sizes (head dims %lld/%lld; at most 512 on CUDA)", (long long)a->D,
              (long long)a->Dv);
    return PIA_CUDA_ERR_ARG;
  }
  if (a->batch == 0 || a->Sq == 0) return PIA_CUDA_OK;
  if (!simple_attention_forced() && attention_tc_supported(a)) return attention_tc(a);
  AttnP p{};
  p.q = a->q;
  p.k = a->k;
  p.v = a->v;
  p.o = a->o;
  p.sq = a->sq;
  p.sk = a->sk;
  p.sv = a->sv;
  p.so = a->so;
  p.batch_inner = a->batch_inner;
  p.Sq = int(a->Sq);
  p.Sk = int(a->Sk);
  p.H = int(a->heads);
  p.D = int(a->D);
  p.Dv = int(a->Dv);
  p.scale = a->scale;
  p.causal = a->causal;
  const int64_t bh = a->batch * a->heads;
  if (dmax <= 64) return launch<64, 32, 2>(a->dtype, p, bh);
  if (dmax <= 160) return launch<160, 32, 2>(a->dtype, p, bh);
  return launch<512, 8, 1>(a->dtype, p, bh);
}

}  // namespace pia_cuda
