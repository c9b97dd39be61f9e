// The f16/bf16 GEMM for machines without cuBLASLt (most npm users have a driver and nothing else):
// 128×128 block tiles, 8 warps of 64×32 on tensor cores (wmma 16×16×16, fp32 accumulators), and
// the next K tile copied into shared memory with cp.async while the current one is multiplied,
// so the tensor cores are not left waiting on global loads as in gemm.cu's simple kernel.
//
// cp.async moves 16-byte chunks, so this path takes only operands whose rows are 16-byte aligned
// and a multiple of 8 elements long along the copied axis (then a chunk is wholly inside or wholly
// outside the matrix, and outside chunks are zero-filled by the copy itself). Everything else —
// and every shape when PIA_CUDA_SIMPLE_GEMM=1 — stays on gemm.cu's kernel.
//
// The body is gemm_pipelined_body.cuh, shared with a host emulator
// (test/native/test_gemm_pipelined_emulated.cpp); this file supplies the hardware.
#include <mma.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "common.cuh"
#include "gemm_pipelined_body.cuh"
#include "kernels.cuh"

namespace pia_cuda {

namespace {

using pia_gemm_pipe::BM;
using pia_gemm_pipe::BN;
using pia_gemm_pipe::THREADS;

// The execution context of gemm_pipelined_body.cuh on the GPU: wmma, cp.async and the CTA itself.
template <typename T, bool TRANS_B>
struct Gpu {
  using Elem = T;
  static constexpr bool kTransB = TRANS_B;
  using Acc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;
  using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, T, nvcuda::wmma::row_major>;
  using FragB = nvcuda::wmma::fragment<
      nvcuda::wmma::matrix_b, 16, 16, 16, T,
      typename std::conditional<TRANS_B, nvcuda::wmma::col_major, nvcuda::wmma::row_major>::type>;

  __device__ __forceinline__ int thread() const { return int(threadIdx.x); }
  __device__ __forceinline__ int block_x() const { return int(blockIdx.x); }
  __device__ __forceinline__ int block_y() const { return int(blockIdx.y); }
  __device__ __forceinline__ int block_z() const { return int(blockIdx.z); }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  __device__ __forceinline__ void syncwarp() const { __syncwarp(); }
  __device__ __forceinline__ void cp_async16(T* smem, const T* gmem, bool valid) const {
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    // A source size of 0 writes 16 zero bytes and reads nothing: the tile edges.
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
  }
  __device__ __forceinline__ void cp_async_commit() const { asm volatile("cp.async.commit_group;\n" ::); }
  __device__ __forceinline__ void cp_async_wait_one() const { asm volatile("cp.async.wait_group 1;\n" ::); }
  __device__ __forceinline__ void fill(Acc& c, float v) const { nvcuda::wmma::fill_fragment(c, v); }
  __device__ __forceinline__ void load_a(FragA& f, const T* s, int ldm) const {
    nvcuda::wmma::load_matrix_sync(f, s, ldm);
  }
  __device__ __forceinline__ void load_b(FragB& f, const T* s, int ldm) const {
    nvcuda::wmma::load_matrix_sync(f, s, ldm);
  }
  __device__ __forceinline__ void mma(Acc& c, const FragA& a, const FragB& b) const {
    nvcuda::wmma::mma_sync(c, a, b, c);
  }
  __device__ __forceinline__ void store(float* s, const Acc& c, int ldm) const {
    nvcuda::wmma::store_matrix_sync(s, c, ldm, nvcuda::wmma::mem_row_major);
  }
  __device__ __forceinline__ float lds(const float* s) const { return *s; }
  __device__ __forceinline__ float to_f(T v) const { return pia_cuda::to_f(v); }
  __device__ __forceinline__ T from_f(float v) const { return pia_cuda::from_f<T>(v); }
};

// Two CTAs an SM need at most 128 registers a thread. sm_90's allocation stays under that by
// itself (asking for two there makes ptxas spill; even an explicit minimum of one raised it to
// 134..155), while sm_80's bf16 kernel with a dense B takes 138 without the bound (one CTA an SM)
// and 128 without spills with it.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define PIA_GP_BOUNDS __launch_bounds__(THREADS, 2)
#else
#define PIA_GP_BOUNDS __launch_bounds__(THREADS)
#endif

template <typename T, bool TRANS_B>
__global__ void PIA_GP_BOUNDS gemm_pipelined_kernel(pia_gemm_pipe::Params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(128) unsigned char smem[pia_gemm_pipe::kSmemBytes];
  Gpu<T, TRANS_B> gpu;
  pia_gemm_pipe::gemm_cta(gpu, p, smem);
#else
  __trap();  // built only for sm_80 and newer (CMAKE_CUDA_ARCHITECTURES)
#endif
}

bool simple_gemm_forced() {
  static const bool forced = [] {
    const char* v = std::getenv("PIA_CUDA_SIMPLE_GEMM");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return forced;
}

}  // namespace

bool gemm_pipelined_fits(const PiaGemmArgs& a) {
  if (a.dtype != 1 && a.dtype != 2) return false;
  if (simple_gemm_forced()) return false;
  return pia_gemm_pipe::shape_fits(a);
}

int gemm_pipelined(const PiaGemmArgs& a) {
  const pia_gemm_pipe::Params p = pia_gemm_pipe::make_params(a);
  const dim3 grid{unsigned((a.M + BM - 1) / BM), unsigned((a.N + BN - 1) / BN), unsigned(a.batch)};
  cudaStream_t s = stream();
  if (a.dtype == 1) {
    if (a.trans_b) gemm_pipelined_kernel<__half, true><<<grid, THREADS, 0, s>>>(p);
    else gemm_pipelined_kernel<__half, false><<<grid, THREADS, 0, s>>>(p);
  } else {
    if (a.trans_b) gemm_pipelined_kernel<__nv_bfloat16, true><<<grid, THREADS, 0, s>>>(p);
    else gemm_pipelined_kernel<__nv_bfloat16, false><<<grid, THREADS, 0, s>>>(p);
  }
  return check_launch("gemm (pipelined) kernel");
}

}  // namespace pia_cuda
