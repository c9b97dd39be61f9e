#pragma once
// Which matrix element each lane's registers hold for the warp-wide tensor-core instruction
//   mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32   D[16x8] = A[16x16] · B[16x8] + C
// as the PTX ISA documents it ("Matrix Fragments for mma.m16n8k16 with floating point type").
// With g = lane / 4 ("groupID") and t = lane % 4 ("threadID_in_group"):
//
//   A (16x16, 4 × .b32 = 8 halves a0..a7; a0 in the low half of the first register):
//     row = g for a0,a1,a4,a5; g + 8 for a2,a3,a6,a7
//     col = 2t + (i & 1) for a0..a3; 2t + (i & 1) + 8 for a4..a7
//   B (16x8, K × N, 2 × .b32 = 4 halves b0..b3):
//     row (k) = 2t + (i & 1) for b0,b1; 2t + (i & 1) + 8 for b2,b3;  col (n) = g
//   C and D (16x8, 4 × .f32 c0..c3):
//     row = g for c0,c1; g + 8 for c2,c3;  col = 2t + (i & 1)
//
// Two consequences the attention kernel is built on (both checked on the host by
// test/native/test_mma_layout.cpp with these very functions):
//  * each .b32 register of A holds two elements adjacent in a row (one 32-bit load from a
//    row-major tile), and each register of B two elements adjacent in k (one 32-bit load from a
//    tile stored n-major, i.e. Bᵀ row-major: K as [key][d] for Q·Kᵀ, V transposed for P·V);
//  * the two C fragments of a 16x16 block (columns 0..7 and 8..15) hold, lane by lane, exactly the
//    elements that lane must supply as the A fragment of that block: A element e is C tile e / 4,
//    element e % 4. So the probabilities P computed as the C of Q·Kᵀ become the A of P·V in
//    registers, with no shuffle.
//
// Host and device: the kernel includes this header, and the host test compiles it with the plain
// C++ compiler, so nothing CUDA-specific may appear outside the macro.
#if defined(__CUDACC__)
#define PIA_MMA_FN __host__ __device__ __forceinline__ constexpr
#else
#define PIA_MMA_FN inline constexpr
#endif

namespace pia_mma {

constexpr int kM = 16, kN = 8, kK = 16;
constexpr int kARegs = 4, kBRegs = 2, kCRegs = 4;  // 32-bit registers per lane
constexpr int kAElems = 8, kBElems = 4, kCElems = 4;

PIA_MMA_FN int group_of(int lane) { return lane >> 2; }
PIA_MMA_FN int thread_in_group(int lane) { return lane & 3; }

// A element e (0..7): register e / 2, low half when e is even.
PIA_MMA_FN int a_row(int lane, int e) { return group_of(lane) + 8 * ((e >> 1) & 1); }
PIA_MMA_FN int a_col(int lane, int e) { return 2 * thread_in_group(lane) + (e & 1) + 8 * (e >> 2); }
// B element e (0..3): register e / 2; k is B's row (the reduction index), n its column.
PIA_MMA_FN int b_k(int lane, int e) { return 2 * thread_in_group(lane) + (e & 1) + 8 * (e >> 1); }
PIA_MMA_FN int b_n(int lane, int /*e*/) { return group_of(lane); }
// C/D element e (0..3).
PIA_MMA_FN int c_row(int lane, int e) { return group_of(lane) + 8 * (e >> 1); }
PIA_MMA_FN int c_col(int lane, int e) { return 2 * thread_in_group(lane) + (e & 1); }

// Element offset, in a row-major 16 x k tile with leading dimension ld, of the pair held by A
// register r (the second element of the pair follows it).
PIA_MMA_FN int a_reg_offset(int lane, int r, int ld) { return a_row(lane, 2 * r) * ld + a_col(lane, 2 * r); }
// Element offset, in a tile that stores B transposed (row n holds B[0..k)[n], leading dimension
// ld), of the pair held by B register r.
PIA_MMA_FN int bt_reg_offset(int lane, int r, int ld) { return b_n(lane, 2 * r) * ld + b_k(lane, 2 * r); }

// Reusing a 16x16 block of accumulators (two C tiles) as an A operand: A register r packs
// C tile a_from_c_tile(r), elements a_from_c_elem(r) (low half) and a_from_c_elem(r) + 1 (high).
PIA_MMA_FN int a_from_c_tile(int r) { return r >> 1; }
PIA_MMA_FN int a_from_c_elem(int r) { return 2 * (r & 1); }

}  // namespace pia_mma

#undef PIA_MMA_FN
