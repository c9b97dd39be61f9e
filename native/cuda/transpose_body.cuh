#pragma once
// One 32×32 tile of a batched transpose (strided_host.h's Transpose), written once against an
// execution context so that the native tests run this very code on the host (simt_emulator.h):
// the block's 32×8 threads read the tile with r fastest (unit stride in the source), park it in
// shared memory, and write it with c fastest (unit stride in the destination). Block (x, y, z) is
// tile (r0 = 32·x, c0 = 32·y) of batch z.
#include <cstdint>

#include "strided_host.h"

#if defined(__CUDACC__)
#define PIA_TR_FN __device__ __forceinline__
#else
#define PIA_TR_FN inline
#endif

namespace pia_transpose {

constexpr int kTile = 32, kRows = 8, kThreads = kTile * kRows;

template <typename Word>
struct Shared {
  Word tile[kTile][kTile + 1];  // +1: the column reads of the write phase hit 32 banks
};

// Ctx: thread(), block_x/y/z(), sync(), lds(const Word*), sts(Word*, Word).
template <typename Ctx, typename Word>
PIA_TR_FN void tile(Ctx& ctx, Shared<Word>& s, const Word* src, Word* dst,
                                     const pia_cuda::strided::Transpose& t) {
  const int64_t b = ctx.block_z();
  const int64_t r0 = int64_t(ctx.block_x()) * kTile, c0 = int64_t(ctx.block_y()) * kTile;
  const int x = ctx.thread() % kTile, y = ctx.thread() / kTile;
  for (int j = y; j < kTile; j += kRows) {
    const int64_t r = r0 + x, c = c0 + j;
    if (r < t.R && c < t.C) ctx.sts(&s.tile[j][x], src[b * t.s0_b + c * t.s0_c + r]);
  }
  ctx.sync();
  for (int j = y; j < kTile; j += kRows) {
    const int64_t r = r0 + j, c = c0 + x;
    if (r < t.R && c < t.C) dst[b * t.s1_b + r * t.s1_r + c] = ctx.lds(&s.tile[x][j]);
  }
}

}  // namespace pia_transpose
