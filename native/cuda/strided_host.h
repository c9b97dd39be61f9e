#pragma once
// Host-side planning of the strided elementwise kernels (elementwise.cu): the index arithmetic a
// kernel does per element grows with its number of dims, and 64-bit division is many times dearer
// than 32-bit on a GPU, so the dims are first merged as far as every operand allows and the
// kernel then picks the cheapest form (no index math, 32-bit, 64-bit). Plain C++: the native tests
// check it on any machine.
#include <cstdint>
#include <cstdlib>

namespace pia_cuda::strided {

constexpr int kMaxDims = 8;

// Element i of `shape` (row-major) is at Σ coord[d]·s0[d] in operand 0 and Σ coord[d]·s1[d] in 1.
struct Layout {
  int nd = 0;
  int64_t shape[kMaxDims] = {};
  int64_t s0[kMaxDims] = {};
  int64_t s1[kMaxDims] = {};
};

// Drops size-1 dims and merges each dim into its inner neighbour where both operands step over
// the pair as one run (stride[d] = stride[d+1]·shape[d+1]); the row-major order of the elements,
// and so every element's offsets, stay the same. An empty or all-ones shape becomes [1].
inline Layout coalesce(const Layout& in) {
  Layout out;
  for (int d = 0; d < in.nd; ++d) {
    if (in.shape[d] == 1) continue;
    if (out.nd > 0) {
      const int k = out.nd - 1;
      if (out.s0[k] == in.s0[d] * in.shape[d] && out.s1[k] == in.s1[d] * in.shape[d]) {
        out.shape[k] *= in.shape[d];
        out.s0[k] = in.s0[d];
        out.s1[k] = in.s1[d];
        continue;
      }
    }
    out.shape[out.nd] = in.shape[d];
    out.s0[out.nd] = in.s0[d];
    out.s1[out.nd] = in.s1[d];
    ++out.nd;
  }
  if (out.nd == 0) {
    out.nd = 1;
    out.shape[0] = 1;
  }
  return out;
}

inline int64_t numel(const Layout& l) {
  int64_t n = 1;
  for (int d = 0; d < l.nd; ++d) n *= l.shape[d];
  return n;
}

// Whether every element index and both operands' offsets fit 32-bit signed arithmetic.
inline bool fits_int32(const Layout& l) {
  constexpr int64_t kMax = 0x7fffffff;
  if (numel(l) > kMax) return false;
  int64_t m0 = 0, m1 = 0;
  for (int d = 0; d < l.nd; ++d) {
    if (l.s0[d] < 0 || l.s1[d] < 0) return false;
    m0 += (l.shape[d] - 1) * l.s0[d];
    m1 += (l.shape[d] - 1) * l.s1[d];
    if (m0 > kMax || m1 > kMax) return false;
  }
  return true;
}

// Both operands contiguous over the whole (coalesced) layout.
inline bool dense(const Layout& l) { return l.nd == 1 && l.s0[0] == 1 && l.s1[0] == 1; }

// A batched transpose, out-of-place copy from operand 0 to operand 1: [B, R, C] where operand 0
// is unit-stride along R and operand 1 along C (NCHW <-> NHWC and the like). The copy then goes
// through a shared-memory tile so that both the reads and the writes are coalesced.
struct Transpose {
  int64_t B = 1, R = 0, C = 0;
  int64_t s0_b = 0, s0_c = 0;  // operand 0: (b, r, c) at b·s0_b + r + c·s0_c
  int64_t s1_b = 0, s1_r = 0;  // operand 1: (b, r, c) at b·s1_b + r·s1_r + c
};
inline bool as_transpose(const Layout& l, Transpose& t) {
  if (l.nd != 2 && l.nd != 3) return false;
  const int r = l.nd - 2, c = l.nd - 1;
  if (l.s0[r] != 1 || l.s1[c] != 1) return false;
  t.B = l.nd == 3 ? l.shape[0] : 1;
  t.R = l.shape[r];
  t.C = l.shape[c];
  t.s0_b = l.nd == 3 ? l.s0[0] : 0;
  t.s1_b = l.nd == 3 ? l.s1[0] : 0;
  t.s0_c = l.s0[c];
  t.s1_r = l.s1[r];
  return true;
}

}  // namespace pia_cuda::strided
