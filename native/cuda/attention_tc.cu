// Tensor-core flash attention (FlashAttention-2's forward schedule) for f16 and bf16, head dims up
// to 160, on sm_80 and newer: mma.sync m16n8k16 with f32 accumulators and an f32 online softmax.
//
// One CTA = 4 warps = 64 query rows of one (batch, head) — or 1 warp, 16 rows, for sequences of
// at most 16 queries; warp w owns rows 16w..16w+15 for the whole key loop, so its softmax
// statistics and O accumulators never leave its registers. Per key tile of KT keys (64, or 32
// for head dims above 96 and for one-warp CTAs):
//   shared memory  K as [key][d] and V transposed as [d][key]: both are then "B stored
//                  transposed" (mma_layout.cuh), so every B register is one 32-bit load, and the
//                  padded leading dimensions (+8 halves) make those loads bank-conflict free;
//   S = Q·Kᵀ       Q's A fragments were loaded once into registers; S lands in C fragments;
//   softmax        row max over the quad of lanes that share a row (shuffles 1 and 2), running
//                  max m and sum l per row, O rescaled by exp(m_old − m_new);
//   O += P·V       P rounded to the input type and reused in place as the A operand (the C → A
//                  identity of mma_layout.cuh), V's B fragments from the transposed tile.
// Shared memory is static and at most 27 KB (Shape::kSmemElems: Q is staged through the K/V
// space), under the 48 KB that needs no cudaFuncSetAttribute opt-in on any architecture; the
// registers (95..175 a thread per ptxas; only sm_90's 160-wide four-warp tile spills, one word,
// where ptxas holds it at 168 for three CTAs an SM) rather than shared memory bound occupancy.
// Scores are kept in the log2 domain (scale · log2 e folded into one multiply, exp2f after) —
// mathematically the same softmax.
//
// The body is attention_tc_body.cuh, shared with a host emulator (test_attention_tc_emulated.cpp).
//
// Q, K, V, O are read and written through the same (outer, inner, seq) row addressing as the FMA
// kernel in attention.cu, so temporal attention reads [B, F, HW, C] in place. Rows are loaded in
// chunks of 8 elements: one 16-byte load when the dispatcher proved every row start 16-byte
// aligned, else element by element. Columns beyond D (up to the next multiple of 16) and keys
// beyond Sk are zero-filled in shared memory, because a padded zero times uninitialised shared
// memory could still be NaN; masked keys get a score of −inf, hence P = 0.
#include <atomic>
#include <cmath>

#include "attention_tc_body.cuh"
#include "common.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

using pia_attn_tc::kMaxHeadDim;
using TcParams = pia_attn_tc::Params;

// The execution context of attention_tc_body.cuh on the GPU: the hardware itself.
template <typename T>
struct Gpu;
template <typename T>
struct GpuCommon {
  __device__ __forceinline__ int thread() const { return int(threadIdx.x); }
  __device__ __forceinline__ int threads() const { return int(blockDim.x); }
  __device__ __forceinline__ int block_x() const { return int(blockIdx.x); }
  __device__ __forceinline__ int block_y() const { return int(blockIdx.y); }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  __device__ __forceinline__ float shfl_xor(float v, int m) const { return __shfl_xor_sync(0xffffffffu, v, m); }
  __device__ __forceinline__ float exp2(float v) const { return exp2f(v); }
  __device__ __forceinline__ void load16(const uint16_t* g, uint32_t w[4]) const {
    const uint4 u = *reinterpret_cast<const uint4*>(g);
    w[0] = u.x;
    w[1] = u.y;
    w[2] = u.z;
    w[3] = u.w;
  }
  __device__ __forceinline__ void store16(uint16_t* s, const uint32_t w[4]) const {
    *reinterpret_cast<uint4*>(s) = make_uint4(w[0], w[1], w[2], w[3]);
  }
};
// The element type's conversions and its mma; first element in the low half, as the fragment
// layouts require.
template <>
struct Gpu<__half> : GpuCommon<__half> {
  __device__ __forceinline__ uint16_t bits(float x) const { return __half_as_ushort(__float2half_rn(x)); }
  __device__ __forceinline__ float value(uint16_t b) const { return __half2float(__ushort_as_half(b)); }
  __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // the dispatcher never launches this below sm_80
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
};
template <>
struct Gpu<__nv_bfloat16> : GpuCommon<__nv_bfloat16> {
  __device__ __forceinline__ uint16_t bits(float x) const { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
  __device__ __forceinline__ float value(uint16_t b) const { return __bfloat162float(__ushort_as_bfloat16(b)); }
  __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
};

template <typename T, int DMAX, int KT, int WARPS>
__global__ void __launch_bounds__(WARPS * 32) attention_tc_kernel(TcParams p) {
  __shared__ __align__(16) uint16_t smem[pia_attn_tc::Shape<DMAX, KT, WARPS>::kSmemElems];
  Gpu<T> gpu;
  pia_attn_tc::attention_cta<DMAX, KT, WARPS>(gpu, p, smem);
}

template <typename T, int DMAX, int KT, int WARPS>
int launch_tc(const TcParams& p, int64_t batch_heads) {
  constexpr int rows = pia_attn_tc::Shape<DMAX, KT, WARPS>::kRows;
  const int64_t qtiles = (int64_t(p.Sq) + rows - 1) / rows;
  if (qtiles > 65535 || batch_heads > 0x7fffffffLL) {
    set_error("attention: %d queries x %lld batch*heads is too large for one launch", p.Sq, (long long)batch_heads);
    return PIA_CUDA_ERR_ARG;
  }
  const dim3 grid{unsigned(batch_heads), unsigned(qtiles), 1u};
  attention_tc_kernel<T, DMAX, KT, WARPS><<<grid, WARPS * 32, 0, stream()>>>(p);
  return check_launch("tensor-core attention kernel");
}

template <typename T>
int dispatch_tc(const TcParams& p, int64_t batch_heads) {
  const pia_attn_tc::Bucket k = pia_attn_tc::bucket_for(p.D, p.Dv, p.Sq);
#define PIA_LAUNCH_IF(DMAX, KT, WARPS) \
  if (k.dmax == DMAX && k.kt == KT && k.warps == WARPS) return launch_tc<T, DMAX, KT, WARPS>(p, batch_heads);
  PIA_ATTN_TC_TILES(PIA_LAUNCH_IF)
#undef PIA_LAUNCH_IF
  set_error("attention: no tensor-core tile for head dims %d/%d", p.D, p.Dv);
  return PIA_CUDA_ERR_ARG;
}

// Compute capability major of the current device, asked once per device.
int device_major() {
  static std::atomic<int> cache[64];  // 0 = not asked yet
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0) return 0;
  if (dev < 64) {
    if (int m = cache[dev].load(std::memory_order_relaxed)) return m;
  }
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return 0;
  if (dev < 64) cache[dev].store(major, std::memory_order_relaxed);
  return major;
}

}  // namespace

bool attention_tc_supported(const PiaAttentionArgs* a) {
  return (a->dtype == 1 || a->dtype == 2) && a->D <= kMaxHeadDim && a->Dv <= kMaxHeadDim && device_major() >= 8;
}

int attention_tc(const PiaAttentionArgs* a) {
  const TcParams p = pia_attn_tc::make_params(*a);
  const int64_t bh = a->batch * a->heads;
  if (a->dtype == 1) return dispatch_tc<__half>(p, bh);
  return dispatch_tc<__nv_bfloat16>(p, bh);
}

}  // namespace pia_cuda
