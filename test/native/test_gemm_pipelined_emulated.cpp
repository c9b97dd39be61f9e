// The cp.async tensor-core GEMM's own code (native/cuda/gemm_pipelined_body.cuh) run on the host
// by simt_emulator.h (through gemm_pipelined_emulator.h) and compared with a double-precision
// product: the tile loads and their zero fill, the two-stage pipeline and its group counting, the
// barriers, the per-warp staging of the epilogue, bias and activations are those the GPU runs;
// only the hardware is emulated. Runs everywhere, GPU or not.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gemm_pipelined_emulator.h"
#include "harness.h"

using namespace pia;

namespace {

using emu::BF16;
using emu::F16;
using emu_gemm::emulate;
using emu_gemm::Globals;

struct Case {
  int M, N, K, batch;
  bool trans_b;
  int bias;  // 0 none, 1 per row, 2 per column
  int act;
  int pad_a = 0, pad_b = 0, pad_c = 0;  // extra elements per row (multiples of 8)
  bool broadcast_a = false;             // stride_a 0
};

using Buffer = simt::GuardedBuffer;

double act_ref(double v, int act) {
  switch (act) {
    case 1: return v / (1 + std::exp(-v));
    case 2: return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    case 3: return 0.5 * v * (1 + std::tanh(0.79788456080286535588 /* sqrt(2 / pi) */ * (v + 0.044715 * v * v * v)));
    case 4: return v / (1 + std::exp(-1.702 * v));
    default: return v;
  }
}


// Runs one case through the emulated kernel (operands laid out as the CUDA backend passes them)
// and compares with the double-precision product of the same rounded inputs.
void run_case(const Case& c, bool bf16, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  auto bits = [&](float f) { return bf16 ? f32_to_bf16(f) : f32_to_f16(f); };
  auto val = [&](uint16_t b) { return double(bf16 ? bf16_to_f32(b) : f16_to_f32(b)); };
  const int64_t lda = c.K + c.pad_a, ldb = (c.trans_b ? c.K : c.N) + c.pad_b, ldc = c.N + c.pad_c;
  const int64_t a_rows = c.M, b_rows = c.trans_b ? c.N : c.K;
  const int64_t sa = c.broadcast_a ? 0 : a_rows * lda, sb = b_rows * ldb, sc = c.M * ldc;
  Buffer A(size_t(c.broadcast_a ? a_rows * lda : c.batch * a_rows * lda)), B(size_t(c.batch * sb)),
      C(size_t(c.batch * sc)), bias(size_t(c.bias == 1 ? c.M : c.N));
  // Padding columns hold NaN: a kernel that read them would poison the product.
  for (int64_t i = 0; i < int64_t(A.n); ++i) A.data[i] = (i % lda) < c.K ? bits(nd(g)) : 0x7fff;
  for (int64_t i = 0; i < int64_t(B.n); ++i) B.data[i] = (i % ldb) < ldb - c.pad_b ? bits(0.2f * nd(g)) : 0x7fff;
  for (size_t i = 0; i < bias.n; ++i) bias.data[i] = bits(nd(g));
  PiaGemmArgs a{};
  a.dtype = bf16 ? 2 : 1;
  a.M = c.M, a.N = c.N, a.K = c.K, a.batch = c.batch;
  a.A = A.data, a.lda = lda, a.stride_a = sa;
  a.B = B.data, a.ldb = ldb, a.stride_b = sb, a.trans_b = c.trans_b;
  a.C = C.data, a.ldc = ldc, a.stride_c = sc;
  a.bias = c.bias ? bias.data : nullptr;
  a.bias_per_row = c.bias == 1;
  a.act = c.act;
  if (!pia_gemm_pipe::shape_fits(a)) test::fail("case outside gemm_pipelined's shapes");

  // cp.async may read only the operands.
  const Globals globals = {{A.data, A.n * 2}, {B.data, B.n * 2}};
  if (bf16) {
    if (c.trans_b) emulate<BF16, true>(a, globals);
    else emulate<BF16, false>(a, globals);
  } else {
    if (c.trans_b) emulate<F16, true>(a, globals);
    else emulate<F16, false>(a, globals);
  }

  double num = 0, den = 0;
  bool untouched = true;
  for (int64_t z = 0; z < c.batch; ++z) {
    for (int64_t m = 0; m < c.M; ++m) {
      for (int64_t n = 0; n < ldc; ++n) {
        const uint16_t got = C.data[z * sc + m * ldc + n];
        if (n >= c.N) {
          untouched = untouched && got == 0xffff;  // the row's padding is not the kernel's
          continue;
        }
        double s = 0;
        for (int64_t k = 0; k < c.K; ++k) {
          const double av = val(A.data[z * sa + m * lda + k]);
          const double bv = c.trans_b ? val(B.data[z * sb + n * ldb + k]) : val(B.data[z * sb + k * ldb + n]);
          s += av * bv;
        }
        // The kernel adds the bias to the f32 accumulator, then applies the activation.
        if (c.bias) s = double(float(s)) + val(bias.data[c.bias == 1 ? m : n]);
        const double ref = act_ref(s, c.act), v = val(got);
        num += std::isfinite(v) ? (v - ref) * (v - ref) : INFINITY;
        den += ref * ref;
      }
    }
  }
  const double e = num / den;
  // The op thresholds of test_cuda_ops.cpp's f16/bf16 modes: one rounding of the output.
  const double threshold = bf16 ? 5e-5 : 1e-6;
  char name[200];
  std::snprintf(name, sizeof name, "%s M%d N%d K%d batch%d %s bias %s act %d%s%s", bf16 ? "bf16" : "f16", c.M, c.N,
                c.K, c.batch, c.trans_b ? "B^T" : "B", c.bias == 0 ? "none" : c.bias == 1 ? "row" : "col", c.act,
                c.broadcast_a ? " A broadcast" : "", c.pad_a || c.pad_b || c.pad_c ? " padded rows" : "");
  std::printf("     %-66s nmse %.2e (max %.0e)\n", name, e, threshold);
  if (!(e <= threshold)) test::fail(std::string(name) + ": nmse " + std::to_string(e));
  if (!untouched) test::fail(std::string(name) + ": wrote into C's row padding");
  if (!A.guards_intact() || !B.guards_intact() || !C.guards_intact()) test::fail(std::string(name) + ": wrote outside C");
}

}  // namespace

PIA_TEST(gemm_pipelined_emulated_vs_reference) {
  const Case cases[] = {
      // M, N, K, batch, trans_b, bias, act
      {130, 24, 40, 1, true, 2, 0},          // partial tile in M (2 row tiles), K tail 8
      {20, 136, 72, 1, false, 1, 1},         // partial tile in N (2 column tiles), K tail, SiLU
      {33, 40, 8, 1, true, 0, 2},            // K 8: one tile, mostly zero-filled; GELU (erf)
      {16, 48, 64, 1, false, 2, 3},          // K 32·2 exactly; GELU (tanh)
      {24, 16, 96, 1, true, 1, 4, 8, 16, 8},  // K 32·3, padded rows; QuickGELU
      {40, 24, 40, 3, false, 0, 0, 0, 0, 0, true},  // batch 3 with A broadcast (stride 0)
      {17, 32, 72, 2, true, 2, 1},           // batch 2 with strides, B^T
      {150, 140, 40, 1, true, 1, 2},         // 2 × 2 tiles, both partial, B^T
  };
  uint32_t seed = 7;
  for (const Case& c : cases) {
    run_case(c, false, seed++);
    run_case(c, true, seed++);
  }
}
