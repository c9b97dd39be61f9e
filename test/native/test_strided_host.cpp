// The strided elementwise kernels' planning (native/cuda/strided_host.h) and the batched transpose
// tile (native/cuda/transpose_body.cuh, run here by simt_emulator.h): coalescing must keep every
// element's offsets in both operands, the transpose must be recognised where NCHW <-> NHWC copies
// need it, and the tile must move every element once. Runs everywhere, GPU or not.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cuda/strided_host.h"
#include "cuda/transpose_body.cuh"
#include "harness.h"
#include "simt_emulator.h"

using pia_cuda::strided::Layout;
namespace strided = pia_cuda::strided;

namespace {

void offsets_of(const Layout& l, int64_t i, int64_t& o0, int64_t& o1) {
  o0 = o1 = 0;
  for (int d = l.nd - 1; d >= 0; --d) {
    const int64_t c = i % l.shape[d];
    i /= l.shape[d];
    o0 += c * l.s0[d];
    o1 += c * l.s1[d];
  }
}

// Strides of a contiguous tensor of `shape` seen through a permutation, a broadcast or a narrow.
Layout random_layout(std::mt19937& g) {
  Layout l;
  l.nd = int(g() % 6);
  for (int d = 0; d < l.nd; ++d) l.shape[d] = 1 + int64_t(g() % 4);
  for (int op = 0; op < 2; ++op) {
    int64_t* s = op == 0 ? l.s0 : l.s1;
    std::vector<int> perm(size_t(l.nd));
    for (int d = 0; d < l.nd; ++d) perm[size_t(d)] = d;
    if (g() % 2) std::shuffle(perm.begin(), perm.end(), g);
    // Lay the dims out in `perm` order (an outer padding of 0..2 extra elements for narrow views).
    int64_t run = 1;
    for (int k = l.nd - 1; k >= 0; --k) {
      const int d = perm[size_t(k)];
      s[d] = run;
      run *= l.shape[d] + int64_t(g() % 3 == 0 ? 1 : 0);
    }
    for (int d = 0; d < l.nd; ++d) {
      if (g() % 5 == 0) s[d] = 0;  // broadcast
    }
  }
  return l;
}

}  // namespace

PIA_TEST(strided_coalesce_keeps_every_offset) {
  std::mt19937 g(7);
  for (int trial = 0; trial < 3000; ++trial) {
    const Layout l = random_layout(g);
    const Layout c = strided::coalesce(l);
    EXPECT(strided::numel(c) == strided::numel(l));
    EXPECT(c.nd >= 1 && c.nd <= (l.nd ? l.nd : 1));
    for (int d = 0; d < c.nd; ++d) EXPECT(c.shape[d] > 1 || c.nd == 1);
    for (int64_t i = 0; i < strided::numel(l); ++i) {
      int64_t a0, a1, b0, b1;
      offsets_of(l, i, a0, a1);
      offsets_of(c, i, b0, b1);
      if (a0 != b0 || a1 != b1) pia::test::fail("trial " + std::to_string(trial) + ": element " + std::to_string(i) + " moved");
    }
  }
}

PIA_TEST(strided_plans_for_the_networks_layouts) {
  auto layout = [](std::vector<int64_t> shape, std::vector<int64_t> s0, std::vector<int64_t> s1) {
    Layout l;
    l.nd = int(shape.size());
    for (int d = 0; d < l.nd; ++d) l.shape[d] = shape[size_t(d)], l.s0[d] = s0[size_t(d)], l.s1[d] = s1[size_t(d)];
    return l;
  };
  // A residual add: one contiguous run.
  EXPECT(strided::dense(strided::coalesce(layout({32, 320, 64, 64}, {1310720, 4096, 64, 1}, {1310720, 4096, 64, 1}))));
  // The time embedding added over pixels: [B·F·C] x [HW], the second operand broadcast.
  const Layout temb = strided::coalesce(layout({32, 320, 64, 64}, {1310720, 4096, 64, 1}, {320, 1, 0, 0}));
  EXPECT(temb.nd == 2 && temb.shape[0] == 32 * 320 && temb.shape[1] == 4096 && temb.s1[1] == 0);
  EXPECT(strided::fits_int32(temb));
  // contiguous() of [B·F, C, HW] permuted to [B·F, HW, C] (proj_in's NCHW -> tokens): a transpose.
  strided::Transpose t;
  const Layout nhwc = strided::coalesce(layout({32, 4096, 320}, {320 * 4096, 1, 4096}, {4096 * 320, 320, 1}));
  EXPECT(strided::as_transpose(nhwc, t));
  EXPECT(t.B == 32 && t.R == 4096 && t.C == 320 && t.s0_c == 4096 && t.s1_r == 320);
  // ... and back (proj_out's tokens -> NCHW).
  const Layout nchw = strided::coalesce(layout({32, 320, 4096}, {4096 * 320, 1, 320}, {320 * 4096, 4096, 1}));
  EXPECT(strided::as_transpose(nchw, t) && t.R == 320 && t.C == 4096);
  // A plain narrow copy is no transpose.
  EXPECT(!strided::as_transpose(strided::coalesce(layout({4, 5, 5}, {45, 5, 1}, {25, 5, 1})), t));
  // 32-bit arithmetic only while every offset fits.
  EXPECT(!strided::fits_int32(layout({3, 1 << 30}, {1 << 30, 1}, {0, 1})));
  EXPECT(strided::fits_int32(layout({2, 1 << 29}, {1 << 29, 1}, {0, 1})));
}

namespace {

template <typename Word>
void check_transpose(int64_t B, int64_t R, int64_t C) {
  // Source [B, C, R] contiguous (unit stride along R), destination [B, R, C] with row padding.
  strided::Transpose t;
  t.B = B, t.R = R, t.C = C;
  t.s0_b = C * R, t.s0_c = R;
  t.s1_r = C + 3, t.s1_b = R * (C + 3);
  std::vector<Word> src(size_t(B * C * R)), dst(size_t(B * R * (C + 3)), Word(0xabcd));
  for (size_t i = 0; i < src.size(); ++i) src[i] = Word(i * 2654435761u);
  static pia::simt::Block blk(pia_transpose::kThreads, sizeof(pia_transpose::Shared<Word>));
  auto* sh = reinterpret_cast<pia_transpose::Shared<Word>*>(blk.smem());
  for (int z = 0; z < int(B); ++z)
    for (int x = 0; x < int((R + 31) / 32); ++x)
      for (int y = 0; y < int((C + 31) / 32); ++y)
        blk.run(x, y, z, [&](int tid) {
          pia::simt::Thread ctx{&blk, tid};
          pia_transpose::tile(ctx, *sh, src.data(), dst.data(), t);
        });
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C + 3; ++c) {
        const Word got = dst[size_t(b * t.s1_b + r * t.s1_r + c)];
        const Word want = c < C ? src[size_t(b * t.s0_b + c * t.s0_c + r)] : Word(0xabcd);
        if (got != want) {
          pia::test::fail("transpose [" + std::to_string(B) + "," + std::to_string(R) + "," + std::to_string(C) +
                          "]: (" + std::to_string(b) + "," + std::to_string(r) + "," + std::to_string(c) + ")");
        }
      }
}

}  // namespace

PIA_TEST(transpose_tile_emulated) {
  check_transpose<uint16_t>(2, 70, 45);  // partial tiles both ways
  check_transpose<uint32_t>(1, 32, 64);  // whole tiles
  check_transpose<uint16_t>(3, 5, 33);
}
