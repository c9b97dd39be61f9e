#pragma once
// The execution context that runs gemm_pipelined_body.cuh on simt_emulator.h, and the launch of a
// whole grid; shared by the GEMM and the im2col convolution tests.
//
// wmma is emulated by its meaning, which is all our code relies on (it never touches fragment
// elements): a fragment holds the whole 16×16 matrix, and load/store/mma/fill are collectives of
// the 32 lanes, which must pass the same pointer and ldm and hold the same fragments. The
// alignment rules of the CUDA programming guide are checked: a 256-bit aligned pointer, ldm a
// multiple of 8 elements for f16 and bf16, of 4 for f32. Fragment loads and stores go through the
// race detector as the warp's accesses. Products are summed in double and rounded to f32 once per
// mma (the tensor cores' own order is unspecified).
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cuda/gemm_pipelined_body.cuh"
#include "emulated_types.h"
#include "harness.h"
#include "simt_emulator.h"

namespace pia::emu_gemm {


struct Mat {
  float v[256];  // [row][col] of the 16×16 operand (A: m×k, B: k×n, accumulator: m×n)
};

// Per-warp result of the collective in flight (written by lane 0, copied by every lane).
struct WarpScratch {
  Mat m[simt::kWarps];
};

template <typename T, bool TRANS_B>
struct Ctx : simt::Thread {
  using Elem = T;
  static constexpr bool kTransB = TRANS_B;
  struct Acc : Mat {};
  struct FragA : Mat {};
  struct FragB : Mat {};

  WarpScratch* scratch;

  void cp_async16(T* s, const T* g, bool valid) { blk->cp_async16(tid, s, g, valid); }
  void cp_async_commit() { blk->cp_async_commit(tid); }
  void cp_async_wait_one() { blk->cp_async_wait(tid, 1); }
  float to_f(T v) const { return emu::to_f(v); }
  T from_f(float v) const { return emu::from_f<T>(v); }

  void fill(Acc& c, float v) {
    blk->warp_wait(tid, "wmma::fill_fragment");
    for (float& e : c.v) e = v;
  }
  void load_a(FragA& f, const T* s, int ldm) { load(f, s, ldm, false, "wmma::load_matrix_sync(matrix_a)"); }
  void load_b(FragB& f, const T* s, int ldm) { load(f, s, ldm, TRANS_B, "wmma::load_matrix_sync(matrix_b)"); }

  void mma(Acc& c, const FragA& a, const FragB& b) {
    static const char* const kWhat = "wmma::mma_sync";
    const void* args[3] = {&c, &a, &b};
    blk->ptr_slot[tid] = args;
    blk->warp_wait(tid, kWhat);
    if (lane() == 0) {
      uniform_fragments(args, 3, kWhat);
      Mat& d = scratch->m[warp()];
      for (int i = 0; i < 16; ++i) {
        for (int j = 0; j < 16; ++j) {
          double s = c.v[i * 16 + j];
          for (int k = 0; k < 16; ++k) s += double(a.v[i * 16 + k]) * double(b.v[k * 16 + j]);
          d.v[i * 16 + j] = float(s);
        }
      }
    }
    blk->warp_wait(tid, kWhat);
    c = static_cast<const Acc&>(scratch->m[warp()]);
  }

  void store(float* s, const Acc& c, int ldm) {
    static const char* const kWhat = "wmma::store_matrix_sync";
    const void* args[1] = {&c};
    blk->ptr_slot[tid] = args;
    blk->int_slot[tid] = ldm;
    scratch_ptr() = s;
    blk->warp_wait(tid, kWhat);
    if (lane() == 0) {
      uniform_pointer(s, ldm, 4, kWhat);
      uniform_fragments(args, 1, kWhat);
      for (int r = 0; r < 16; ++r) {
        blk->write(simt::Block::warp_actor(warp()), s + r * ldm, 16 * sizeof(float), kWhat);
        std::memcpy(s + r * ldm, c.v + r * 16, 16 * sizeof(float));
      }
    }
    blk->warp_wait(tid, kWhat);
  }

 private:
  int lane() const { return tid & 31; }
  int warp() const { return tid >> 5; }
  const void*& scratch_ptr() { return ptrs()[tid]; }
  static const void** ptrs() {
    static const void* p[simt::kMaxThreads];  // each lane's fragment pointer
    return p;
  }

  // Every lane passed this pointer and ldm, the pointer is 256-bit aligned and in shared memory,
  // ldm a multiple of 16 bytes (8 halves, 4 floats).
  void uniform_pointer(const void* p, int ldm, int elem_bytes, const char* what) {
    for (int l = 0; l < 32; ++l) {
      if (ptrs()[warp() * 32 + l] != p || blk->int_slot[warp() * 32 + l] != ldm) {
        blk->fail(std::string(what) + ": the lanes of warp " + std::to_string(warp()) + " disagree on pointer or ldm");
      }
    }
    if (reinterpret_cast<uintptr_t>(p) % 32) blk->fail(std::string(what) + ": pointer not 256-bit aligned");
    if ((ldm * elem_bytes) % 16) blk->fail(std::string(what) + ": ldm " + std::to_string(ldm) + " not a multiple of 16 bytes");
    if (!blk->in_smem(p, 1)) blk->fail(std::string(what) + ": pointer not in shared memory");
  }
  // Every lane's fragments hold the same matrices (our code keeps them warp-uniform).
  void uniform_fragments(const void* const* args, int n, const char* what) {
    for (int l = 1; l < 32; ++l) {
      const void* const* other = static_cast<const void* const*>(blk->ptr_slot[warp() * 32 + l]);
      for (int i = 0; i < n; ++i) {
        if (std::memcmp(args[i], other[i], sizeof(Mat)) != 0) {
          blk->fail(std::string(what) + ": lane " + std::to_string(l) + " holds a different fragment");
        }
      }
    }
  }

  void load(Mat& f, const T* s, int ldm, bool col_major, const char* what) {
    blk->int_slot[tid] = ldm;
    scratch_ptr() = s;
    blk->warp_wait(tid, what);
    if (lane() == 0) {
      uniform_pointer(s, ldm, 2, what);
      Mat& d = scratch->m[warp()];
      // Row-major: element (r, c) at s[r·ldm + c]; column-major: at s[c·ldm + r]. Either way 16
      // runs of 16 contiguous elements.
      for (int run = 0; run < 16; ++run) {
        blk->read(simt::Block::warp_actor(warp()), s + run * ldm, 16 * sizeof(T), what);
        for (int i = 0; i < 16; ++i) {
          const float v = emu::to_f(s[run * ldm + i]);
          if (col_major) d.v[i * 16 + run] = v;
          else d.v[run * 16 + i] = v;
        }
      }
    }
    blk->warp_wait(tid, what);
    f = scratch->m[warp()];
  }
};


using Globals = std::vector<std::pair<const void*, size_t>>;

// Every CTA of the grid, one after the other, as gemm_pipelined launches them.
template <typename T, bool TRANS_B>
void emulate(const PiaGemmArgs& a, const Globals& globals) {
  const pia_gemm_pipe::Params p = pia_gemm_pipe::make_params(a);
  static simt::Block blk(pia_gemm_pipe::THREADS, pia_gemm_pipe::kSmemBytes);
  static WarpScratch scratch;
  blk.clear_globals();
  for (const auto& g : globals) blk.add_global(g.first, g.second);
  const int gx = int((a.M + pia_gemm_pipe::BM - 1) / pia_gemm_pipe::BM);
  const int gy = int((a.N + pia_gemm_pipe::BN - 1) / pia_gemm_pipe::BN);
  for (int z = 0; z < int(a.batch); ++z)
    for (int y = 0; y < gy; ++y)
      for (int x = 0; x < gx; ++x)
        blk.run(x, y, z, [&](int tid) {
          Ctx<T, TRANS_B> ctx{{&blk, tid}, &scratch};
          pia_gemm_pipe::gemm_cta(ctx, p, blk.smem());
        });
}

}  // namespace pia::emu_gemm
