// The CUDA backend against the CPU backend (ggml's test-backend-ops idea): every op on random
// inputs with deliberately odd shapes, in each of the CUDA modes (f32, f16, bf16 activations and
// weights), compared by normalised MSE Σ(y − ref)² / Σ ref² with a per-op threshold; then whole
// networks of the SD-1.5 + PIA architecture (CLIP text, VAE, UNetMotion with FreeU) at a small
// size with random weights. Every CUDA case prints `skip` with the reason and passes when
// cuda_api() is null (no driver, no GPU, or a build without libpia_cuda.so), so CI stays green.
//
// The CPU reference is fed the inputs (and weights) already rounded to the mode's dtype, so an
// op's figure measures the kernel (f32 math inside, one rounding of the output) and not the
// rounding of its inputs. Run: pia_native_tests cuda
#include <cmath>
#include <cstdio>
#include <array>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_loader.h"
#include "harness.h"
#include "ops/backend.h"
#include "sd15_random_weights.h"

using namespace pia;

namespace {

bool skip(const char* what) {
  if (cuda_api()) return false;
  std::printf("     skip %s: %s\n", what, cuda_status().reason.c_str());
  return true;
}

Tensor randn(const Shape& s, uint32_t seed, float stddev = 1.f, float mean = 0.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(mean, stddev);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
  return t;
}

Tensor uniform01(const Shape& s, uint32_t seed, float lo, float hi) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
  return t;
}

// The value a tensor has once stored in `dt` (what the CUDA side computes from).
Tensor rounded(const Tensor& t, DType dt) { return t.to(dt).to(DType::F32).contiguous(); }

double nmse(const Tensor& y, const Tensor& ref) {
  const Tensor a = y.to(DType::F32).contiguous(), b = ref.to(DType::F32).contiguous();
  double num = 0, den = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    const double v = a.data<float>()[i], r = b.data<float>()[i];
    if (!std::isfinite(v)) return INFINITY;
    num += (v - r) * (v - r);
    den += r * r;
  }
  return den > 0 ? num / den : num;
}

void check(const std::string& what, const Tensor& got, const Tensor& ref, double threshold) {
  if (got.shape() != ref.shape()) {
    pia::test::fail(what + ": shape " + shape_str(got.shape()) + " != " + shape_str(ref.shape()));
  }
  const double e = nmse(got, ref);
  std::printf("     %-66s nmse %.2e (max %.0e)\n", what.c_str(), e, threshold);
  if (!(e <= threshold)) pia::test::fail(what + ": nmse " + std::to_string(e) + " > " + std::to_string(threshold));
}

struct Mode {
  DType dtype;
  const char* name;
  // Default op threshold: f32 differs from the CPU only by summation order and libm; f16/bf16
  // add one rounding of the output (unit roundoff 2⁻¹¹ / 2⁻⁸: nmse ≈ u²/3 ≈ 8e-8 / 5e-6).
  double op_threshold;
  // Whole networks: activations are rounded after every op, and the error compounds through
  // ~100 layers (measured figures are printed; these bound them loosely).
  double net_threshold;
};
const Mode kModes[] = {
    {DType::F32, "f32", 1e-9, 1e-6},
    {DType::F16, "f16", 1e-6, 2e-3},
    {DType::BF16, "bf16", 5e-5, 3e-2},
};

// cuDNN's algorithms round differently from a direct sum (Winograd and FFT transforms amplify the
// rounding of their f16/bf16 intermediates), and its path rounds the convolution once more before
// the bias/activation epilogue: 10× the op threshold, still far below what a wrong layout, padding
// or algorithm gives (nmse ~1). The figures are printed for the GPU run's log.
constexpr double kCudnnThresholdScale = 10;

struct OpCase {
  std::string name;
  std::vector<Tensor> inputs;  // host float32
  std::function<Tensor(Backend&, std::vector<Tensor>&)> fn;
  double threshold_scale = 1;  // × the mode's op threshold
};

Tensor run_case(Backend& be, const OpCase& c, DType dt) {
  std::vector<Tensor> in;
  for (const Tensor& t : c.inputs) in.push_back(be.from_host(rounded(t, dt)));
  return be.to_host(c.fn(be, in));
}

// diffusers' Downsample2D(padding=0): F.pad (0, 1, 0, 1), then the conv at stride 2.
Conv2dParams downsample_params() {
  Conv2dParams p;
  p.stride = 2;
  p.pad_bottom = 1;
  p.pad_right = 1;
  return p;
}

std::vector<OpCase> op_cases() {
  std::vector<OpCase> cs;
  uint32_t seed = 100;
  auto r = [&](const Shape& s, float sd = 1.f) { return randn(s, seed++, sd); };
  const Tensor none;

  // --- GEMM ------------------------------------------------------------------------------------
  for (Activation act : {Activation::None, Activation::SiLU, Activation::GELU, Activation::GELUTanh,
                         Activation::QuickGELU}) {
    cs.push_back({"linear [3,37,77]x[53,77] act " + std::to_string(int(act)),
                  {r({3, 37, 77}), r({53, 77}, 0.1f), r({53})},
                  [act](Backend& b, std::vector<Tensor>& i) { return b.linear(i[0], i[1], i[2], act); }});
  }
  // Same shape as above with the bias a view one element into its buffer: cuBLASLt's cached plan
  // must not assume the first call's bias alignment.
  cs.push_back({"linear [3,37,77]x[53,77] bias at offset 1", {r({3, 37, 77}), r({53, 77}, 0.1f), r({54})},
                [](Backend& b, std::vector<Tensor>& i) { return b.linear(i[0], i[1], i[2].narrow(0, 1, 53)); }});
  cs.push_back({"linear no bias [2,300,320]x[640,320]", {r({2, 300, 320}), r({640, 320}, 0.05f)},
                [none](Backend& b, std::vector<Tensor>& i) { return b.linear(i[0], i[1], none); }});
  // Shapes the cp.async GEMM takes in f16/bf16 (K and the copied axis multiples of 8): partial
  // 128-row/column tiles, a K tail shorter than one 32-wide tile, every activation, batches.
  for (Activation act : {Activation::None, Activation::GELU}) {
    cs.push_back({"linear (pipelined) [2,131,40]x[200,40] act " + std::to_string(int(act)),
                  {r({2, 131, 40}), r({200, 40}, 0.1f), r({200})},
                  [act](Backend& b, std::vector<Tensor>& i) { return b.linear(i[0], i[1], i[2], act); }});
  }
  cs.push_back({"linear (pipelined) [1,257,1280]x[320,1280]", {r({1, 257, 1280}), r({320, 1280}, 0.03f), r({320})},
                [](Backend& b, std::vector<Tensor>& i) { return b.linear(i[0], i[1], i[2], Activation::SiLU); }});
  cs.push_back({"matmul (pipelined) [3,130,64]x[3,64,136]", {r({3, 130, 64}), r({3, 64, 136})},
                [](Backend& b, std::vector<Tensor>& i) { return b.matmul(i[0], i[1], false); }});
  cs.push_back({"matmul trans_b (pipelined) [3,70,48]x[3,260,48]", {r({3, 70, 48}), r({3, 260, 48})},
                [](Backend& b, std::vector<Tensor>& i) { return b.matmul(i[0], i[1], true); }});
  cs.push_back({"linear K=1 [5,1]x[7,1]", {r({5, 1}), r({7, 1}), r({7})},
                [](Backend& b, std::vector<Tensor>& i) { return b.linear(i[0], i[1], i[2]); }});
  cs.push_back({"matmul [5,33,47]x[5,47,29]", {r({5, 33, 47}), r({5, 47, 29})},
                [](Backend& b, std::vector<Tensor>& i) { return b.matmul(i[0], i[1], false); }});
  cs.push_back({"matmul trans_b [5,33,47]x[5,29,47]", {r({5, 33, 47}), r({5, 29, 47})},
                [](Backend& b, std::vector<Tensor>& i) { return b.matmul(i[0], i[1], true); }});
  cs.push_back({"matmul broadcast [33,47]x[3,47,70]", {r({33, 47}), r({3, 47, 70})},
                [](Backend& b, std::vector<Tensor>& i) { return b.matmul(i[0], i[1], false); }});

  // --- convolution -----------------------------------------------------------------------------
  // f16/bf16 convolutions may run on cuDNN where it is in use (and timed faster); gpu-run.sh runs
  // this test again with PIA_DISABLE_CUDNN=1, where the tight threshold holds our kernel to account.
  const double conv_scale = cuda_status().cudnn.in_use ? kCudnnThresholdScale : 1;
  cs.push_back({"conv2d 3x3 pad 1 [2,13,19,23]->17", {r({2, 13, 19, 23}), r({17, 13, 3, 3}, 0.1f), r({17})},
                [](Backend& b, std::vector<Tensor>& i) { return b.conv2d(i[0], i[1], i[2], Conv2dParams::same(1)); },
                conv_scale});
  cs.push_back({"conv2d 3x3 conv_in 9->64 [2,9,16,16]", {r({2, 9, 16, 16}), r({64, 9, 3, 3}, 0.1f), r({64})},
                [](Backend& b, std::vector<Tensor>& i) { return b.conv2d(i[0], i[1], i[2], Conv2dParams::same(1)); },
                conv_scale});
  cs.push_back({"conv2d 3x3 stride 2 pad (0,1,0,1) [2,16,20,18]", {r({2, 16, 20, 18}), r({16, 16, 3, 3}, 0.1f), r({16})},
                [](Backend& b, std::vector<Tensor>& i) {
                  return b.conv2d(i[0], i[1], i[2], downsample_params());  // asymmetric: never cuDNN
                }});
  cs.push_back({"conv2d 3x3 stride 2 pad 1 [1,8,15,9]", {r({1, 8, 15, 9}), r({12, 8, 3, 3}, 0.1f), r({12})},
                [](Backend& b, std::vector<Tensor>& i) { return b.conv2d(i[0], i[1], i[2], Conv2dParams::same(1, 2)); },
                conv_scale});
  cs.push_back({"conv2d 1x1 [3,40,9,11]->24 no bias", {r({3, 40, 9, 11}), r({24, 40, 1, 1}, 0.1f)},
                [none](Backend& b, std::vector<Tensor>& i) { return b.conv2d(i[0], i[1], none, Conv2dParams{}); },
                conv_scale});
  cs.push_back({"conv2d 1x1 pad 1 [1,5,4,6]->3", {r({1, 5, 4, 6}), r({3, 5, 1, 1}), r({3})},
                [](Backend& b, std::vector<Tensor>& i) { return b.conv2d(i[0], i[1], i[2], Conv2dParams::same(1)); },
                conv_scale});

  // Convolutions the f16/bf16 modes run as column blocks + the cp.async GEMM where cuDNN does not
  // (C·kh·kw and Ho·Wo multiples of 8); gpu-run.sh reruns them with a tiny PIA_CUDA_IM2COL_BUDGET for
  // several blocks per image, and with PIA_DISABLE_CUDNN=1.
  cs.push_back({"conv2d 3x3 pad 1 (im2col) [2,16,16,12]->40", {r({2, 16, 16, 12}), r({40, 16, 3, 3}, 0.1f), r({40})},
                [](Backend& b, std::vector<Tensor>& i) { return b.conv2d(i[0], i[1], i[2], Conv2dParams::same(1)); },
                conv_scale});
  cs.push_back({"conv2d 3x3 stride 2 pad (0,1,0,1) (im2col) [2,32,16,16]",
                {r({2, 32, 16, 16}), r({24, 32, 3, 3}, 0.1f), r({24})},
                [](Backend& b, std::vector<Tensor>& i) { return b.conv2d(i[0], i[1], i[2], downsample_params()); }});
  cs.push_back({"conv2d 1x1 (pipelined) [2,64,12,12]->136", {r({2, 64, 12, 12}), r({136, 64, 1, 1}, 0.1f), r({136})},
                [](Backend& b, std::vector<Tensor>& i) { return b.conv2d(i[0], i[1], i[2], Conv2dParams{}); },
                conv_scale});

  // --- normalisation ---------------------------------------------------------------------------
  cs.push_back({"group_norm 32 groups [2,64,7,9]", {r({2, 64, 7, 9}, 2.f), r({64}), r({64})},
                [](Backend& b, std::vector<Tensor>& i) { return b.group_norm(i[0], 32, i[1], i[2], 1e-5f); }});
  cs.push_back({"group_norm+SiLU [3,96,5,5] (x offset 3)", {randn({3, 96, 5, 5}, seed++, 1.f, 3.f), r({96}), r({96})},
                [](Backend& b, std::vector<Tensor>& i) {
                  return b.group_norm(i[0], 32, i[1], i[2], 1e-6f, Activation::SiLU);
                }});
  cs.push_back({"group_norm 5-D [2,32,3,5,7] 8 groups no affine", {r({2, 32, 3, 5, 7})},
                [none](Backend& b, std::vector<Tensor>& i) { return b.group_norm(i[0], 8, none, none, 1e-6f); }});
  // Spans longer than one 16384-element chunk: the statistics are pooled across blocks.
  cs.push_back({"group_norm+SiLU [1,64,130,131] (4 chunks a group, offset 2)",
                {randn({1, 64, 130, 131}, seed++, 1.f, 2.f), r({64}), r({64})},
                [](Backend& b, std::vector<Tensor>& i) {
                  return b.group_norm(i[0], 32, i[1], i[2], 1e-6f, Activation::SiLU);
                }});
  for (int64_t F : {1, 3, 16}) {
    cs.push_back({"group_norm_frames F" + std::to_string(F) + " [2·F,64,9,7] 32 groups",
                  {randn({2 * F, 64, 9, 7}, seed++, 1.5f, 1.f), r({64}), r({64})},
                  [F](Backend& b, std::vector<Tensor>& i) { return b.group_norm_frames(i[0], F, 32, i[1], i[2], 1e-6f); }});
  }
  cs.push_back({"group_norm_frames F8 [8,16,100,90] 4 groups no affine (chunked)", {r({8, 16, 100, 90})},
                [none](Backend& b, std::vector<Tensor>& i) { return b.group_norm_frames(i[0], 8, 4, none, none, 1e-6f); }});
  cs.push_back({"layer_norm [3,17,200]", {r({3, 17, 200}, 3.f), r({200}), r({200})},
                [](Backend& b, std::vector<Tensor>& i) { return b.layer_norm(i[0], i[1], i[2], 1e-5f); }});
  cs.push_back({"layer_norm_add frame-major [2·16,9,40] + pe[16] every 9 rows",
                {r({32, 9, 40}), r({40}), r({40}), r({16, 40})},
                [](Backend& b, std::vector<Tensor>& i) { return b.layer_norm_add(i[0], i[1], i[2], 1e-5f, i[3], 9); }});
  cs.push_back({"layer_norm_add [26,16,320] + pe[16]", {r({26, 16, 320}), r({320}), r({320}), r({16, 320})},
                [](Backend& b, std::vector<Tensor>& i) { return b.layer_norm_add(i[0], i[1], i[2], 1e-5f, i[3], 1); }});
  cs.push_back({"layer_norm [2,77,768] no affine", {randn({2, 77, 768}, seed++, 1.f, 2.f)},
                [none](Backend& b, std::vector<Tensor>& i) { return b.layer_norm(i[0], none, none, 1e-5f); }});

  // --- attention -------------------------------------------------------------------------------
  struct A {
    int64_t B, Sq, Sk, H, D, Dv;
    bool causal;
  };
  for (A a : {A{2, 77, 77, 12, 64, 64, true}, A{2, 77, 77, 2, 40, 40, false}, A{2, 130, 77, 8, 80, 80, false},
              A{1, 40, 50, 2, 160, 160, false}, A{3, 9, 9, 2, 4, 4, false}, A{2, 33, 17, 3, 8, 16, false},
              A{1, 70, 70, 1, 512, 512, false}, A{64, 16, 16, 8, 40, 40, false}, A{2, 100, 100, 1, 100, 100, true}}) {
    const std::string name = "attention B" + std::to_string(a.B) + " Sq" + std::to_string(a.Sq) + " Sk" +
                             std::to_string(a.Sk) + " H" + std::to_string(a.H) + " D" + std::to_string(a.D) + "/" +
                             std::to_string(a.Dv) + (a.causal ? " causal" : "");
    const float scale = float(1.0 / std::sqrt(double(a.D)));
    cs.push_back({name, {r({a.B, a.Sq, a.H * a.D}), r({a.B, a.Sk, a.H * a.D}), r({a.B, a.Sk, a.H * a.Dv})},
                  [a, scale](Backend& b, std::vector<Tensor>& i) {
                    AttentionParams p;
                    p.heads = int(a.H);
                    p.scale = scale;
                    p.causal = a.causal;
                    return b.attention(i[0], i[1], i[2], p);
                  }});
  }
  for (int64_t F : {5, 16}) {
    const int64_t B = 2, HW = 13, H = 2, D = 8;
    cs.push_back({"temporal_attention B2 F" + std::to_string(F) + " HW13 H2 D8",
                  {r({B * F, HW, H * D}), r({B * F, HW, H * D}), r({B * F, HW, H * D})},
                  [F](Backend& b, std::vector<Tensor>& i) {
                    AttentionParams p;
                    p.heads = 2;
                    p.scale = float(1.0 / std::sqrt(8.0));
                    return b.temporal_attention(i[0], i[1], i[2], F, p);
                  }});
  }

  // --- elementwise -----------------------------------------------------------------------------
  const char* ops[] = {"add", "sub", "mul", "div"};
  for (int op = 0; op < 4; ++op) {
    cs.push_back({std::string("binary ") + ops[op] + " [2,3,5,7] . [3,1,7]",
                  {r({2, 3, 5, 7}), uniform01({3, 1, 7}, seed++, 0.5f, 2.f)},
                  [op](Backend& b, std::vector<Tensor>& i) { return b.binary(BinaryOp(op), i[0], i[1]); }});
  }
  cs.push_back({"binary mul [1,6,1,1] . [2,6,4,5] (a broadcast)", {r({1, 6, 1, 1}), r({2, 6, 4, 5})},
                [](Backend& b, std::vector<Tensor>& i) { return b.binary(BinaryOp::Mul, i[0], i[1]); }});
  cs.push_back({"binary add of a permuted view [4,6,5]^T", {r({4, 6, 5}), r({4, 5, 6})},
                [](Backend& b, std::vector<Tensor>& i) {
                  return b.binary(BinaryOp::Add, i[0].permute({0, 2, 1}), i[1]);
                }});
  // The forms elementwise.cu picks after merging dims (strided_host.h): no index arithmetic for
  // same-layout operands, one division for a per-channel broadcast over pixels.
  cs.push_back({"binary add same layout [3,7,11,13] (dense)", {r({3, 7, 11, 13}), r({3, 7, 11, 13})},
                [](Backend& b, std::vector<Tensor>& i) { return b.binary(BinaryOp::Add, i[0], i[1]); }});
  cs.push_back({"binary add [4,6,5,7] + [4,6,1,1] (time embedding)", {r({4, 6, 5, 7}), r({4, 6, 1, 1})},
                [](Backend& b, std::vector<Tensor>& i) { return b.binary(BinaryOp::Add, i[0], i[1]); }});
  cs.push_back({"add_ [3,7,11,13] += same layout (dense)", {r({3, 7, 11, 13}), r({3, 7, 11, 13})},
                [](Backend& b, std::vector<Tensor>& i) {
                  Tensor a = b.contiguous(i[0]);
                  b.add_(a, i[1]);
                  return a;
                }});
  cs.push_back({"add_ alpha 0.5 [2,5,7] += [5,7]", {r({2, 5, 7}), r({5, 7})},
                [](Backend& b, std::vector<Tensor>& i) {
                  Tensor a = b.contiguous(i[0]);
                  b.add_(a, i[1], 0.5f);
                  return a;
                }});
  cs.push_back({"affine x*0.18215+0.5 [3,1001]", {r({3, 1001})},
                [](Backend& b, std::vector<Tensor>& i) { return b.affine(i[0], 0.18215f, 0.5f); }});
  for (Activation act : {Activation::SiLU, Activation::GELU, Activation::GELUTanh, Activation::QuickGELU}) {
    cs.push_back({"activation " + std::to_string(int(act)) + " [7,333]", {r({7, 333}, 3.f)},
                  [act](Backend& b, std::vector<Tensor>& i) { return b.activation(i[0], act); }});
  }
  cs.push_back({"geglu [3,11,74]", {r({3, 11, 74}, 2.f)},
                [](Backend& b, std::vector<Tensor>& i) { return b.geglu(i[0]); }});
  cs.push_back({"upsample_nearest2x [2,3,5,7]", {r({2, 3, 5, 7})},
                [](Backend& b, std::vector<Tensor>& i) { return b.upsample_nearest2x(i[0]); }});
  cs.push_back({"embedding [50,33] ids {0,7,49,7}", {r({50, 33})},
                [](Backend& b, std::vector<Tensor>& i) { return b.embedding(i[0], {0, 7, 49, 7}); }});
  cs.push_back({"timestep_embedding dim 320 flip", {},
                [](Backend& b, std::vector<Tensor>&) {
                  return b.timestep_embedding({999.f, 981.f, 1.f}, 320, true, 0.f);
                }});
  cs.push_back({"timestep_embedding dim 33 shift 1", {},
                [](Backend& b, std::vector<Tensor>&) { return b.timestep_embedding({500.f}, 33, false, 1.f); }});
  for (auto hw : {std::pair<int64_t, int64_t>{8, 8}, {7, 9}, {16, 32}, {1, 1}}) {
    cs.push_back({"fourier_filter t1 s0.9 [2,3," + std::to_string(hw.first) + "," + std::to_string(hw.second) + "]",
                  {r({2, 3, hw.first, hw.second})},
                  [](Backend& b, std::vector<Tensor>& i) { return b.fourier_filter(i[0], 1, 0.9f); }});
  }
  cs.push_back({"fourier_filter t3 s0.2 [1,4,10,12]", {r({1, 4, 10, 12})},
                [](Backend& b, std::vector<Tensor>& i) { return b.fourier_filter(i[0], 3, 0.2f); }});

  // --- copies ----------------------------------------------------------------------------------
  cs.push_back({"contiguous of permute [2,3,4,5,6] (0,2,1,3,4)", {r({2, 3, 4, 5, 6})},
                [](Backend& b, std::vector<Tensor>& i) { return b.contiguous(i[0].permute({0, 2, 1, 3, 4})); }});
  // NCHW <-> tokens, as the transformers' proj_in/proj_out need: the tiled transpose.
  cs.push_back({"contiguous of [3,40,130] permuted (0,2,1) (transpose)", {r({3, 40, 130})},
                [](Backend& b, std::vector<Tensor>& i) { return b.contiguous(i[0].permute({0, 2, 1})); }});
  cs.push_back({"contiguous of [2,130,40] permuted (0,2,1) (transpose)", {r({2, 130, 40})},
                [](Backend& b, std::vector<Tensor>& i) { return b.contiguous(i[0].permute({0, 2, 1})); }});
  cs.push_back({"contiguous of [33,70] transposed (2-D)", {r({33, 70})},
                [](Backend& b, std::vector<Tensor>& i) { return b.contiguous(i[0].permute({1, 0})); }});
  cs.push_back({"contiguous of narrow [4,9,5] dim1 2..6", {r({4, 9, 5})},
                [](Backend& b, std::vector<Tensor>& i) { return b.contiguous(i[0].narrow(1, 2, 5)); }});
  cs.push_back({"cat dim 1 of [2,3,4], [2,5,4], narrow view", {r({2, 3, 4}), r({2, 5, 4}), r({2, 9, 4})},
                [](Backend& b, std::vector<Tensor>& i) { return b.cat({i[0], i[1], i[2].narrow(1, 1, 2)}, 1); }});
  cs.push_back({"cat dim 0 of [1,4,3,3] x3", {r({1, 4, 3, 3}), r({1, 4, 3, 3}), r({1, 4, 3, 3})},
                [](Backend& b, std::vector<Tensor>& i) { return b.cat({i[0], i[1], i[2]}, 0); }});
  cs.push_back({"zeros + add_ [3,4]", {r({3, 4})},
                [](Backend& b, std::vector<Tensor>& i) {
                  Tensor z = b.zeros({3, 4});
                  b.add_(z, i[0]);
                  return z;
                }});
  return cs;
}

// The tensor-core attention kernel (attention_tc.cu: f16/bf16, head dims <= 160) over the shapes
// that stress its bookkeeping: head dims that are and are not multiples of 16 (zero-padded to the
// next one) and of 8 (element-wise instead of 16-byte row loads), D != Dv, query and key counts
// around its 64-row and 64/32-key tiles (1, 7, 16, 77, 130, 1024), causal masks, several batches
// and heads, the temporal layout read in place, and scores of ±30 where the running max moves from
// tile to tile.
//
// Thresholds: the mode's op thresholds. Against the f32 CPU reference (fed the same rounded
// inputs) the kernel adds two roundings: of the output (nmse ≈ u²/3) and of P before P·V. The
// latter changes O_d by Σ_j w_j δ_j (v_jd − O_d) with |δ_j| ≤ u, the normalised weights w summing
// to 1 (l sums the rounded P), so its mean square is ≈ u²/3 · Σ w_j² (v_jd − O_d)², while the
// reference's O_d² is ≈ Σ w_j² v_jd² for random v: another ≈ u²/3. Together ≈ 2u²/3: 1.6e-7 for
// f16 (u = 2⁻¹¹) under its 1e-6, 1.0e-5 for bf16 (u = 2⁻⁸) under its 5e-5. Q·Kᵀ itself is exact
// products summed in f32, like the CPU's. (A numpy replay of the kernel's arithmetic, tiles and
// roundings included, gave 2e-8..8e-8 for f16 and 9e-7..5e-6 for bf16 on shapes of this list.)
std::vector<OpCase> attention_tc_cases() {
  std::vector<OpCase> cs;
  uint32_t seed = 700;
  auto r = [&](const Shape& s, float sd = 1.f) { return randn(s, seed++, sd); };
  auto add = [&](int64_t B, int64_t Sq, int64_t Sk, int64_t H, int64_t D, int64_t Dv, bool causal, float qk_sd = 1.f,
                 bool growing_keys = false) {
    const std::string name = "attention_tc B" + std::to_string(B) + " Sq" + std::to_string(Sq) + " Sk" +
                             std::to_string(Sk) + " H" + std::to_string(H) + " D" + std::to_string(D) + "/" +
                             std::to_string(Dv) + (causal ? " causal" : "") +
                             (qk_sd != 1.f ? " scores~" + std::to_string(std::lround(qk_sd * qk_sd)) : "") +
                             (growing_keys ? " growing" : "");
    Tensor k = r({B, Sk, H * D}, qk_sd);
    if (growing_keys) {
      // Key j scaled by 0.25 + 1.5·j/Sk: later tiles hold larger scores, so the running max rises
      // and every earlier partial sum and O accumulator is rescaled.
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < Sk; ++j)
          for (int64_t c = 0; c < H * D; ++c) k.data<float>()[(b * Sk + j) * H * D + c] *= 0.25f + 1.5f * float(j) / float(Sk);
    }
    const float scale = float(1.0 / std::sqrt(double(D)));
    cs.push_back({name, {r({B, Sq, H * D}, qk_sd), k, r({B, Sk, H * Dv})},
                  [H, scale, causal](Backend& b, std::vector<Tensor>& i) {
                    AttentionParams p;
                    p.heads = int(H);
                    p.scale = scale;
                    p.causal = causal;
                    return b.attention(i[0], i[1], i[2], p);
                  }});
  };
  const std::pair<int64_t, int64_t> seqs[] = {{1, 1},   {1, 77},  {7, 7},      {16, 16},   {77, 77},
                                              {130, 77}, {77, 130}, {130, 130}, {1024, 77}, {16, 1024}};
  int n = 0;
  for (int64_t D : {8, 40, 64, 80, 160}) {
    for (auto [Sq, Sk] : seqs) {
      const int64_t B = 1 + n % 3, H = 1 + (n / 3) % 3;
      add(B, Sq, Sk, H, D, D, n % 2 == 1);
      ++n;
    }
    add(1, 1024, 1024, 2, D, D, false);
    add(1, 1024, 1024, 1, D, D, true);
  }
  // D != Dv, and head dims that are not multiples of 8 (element-wise loads) or 16 (padding).
  add(2, 77, 130, 3, 8, 16, false);
  add(2, 130, 77, 2, 64, 24, true);
  add(1, 77, 77, 2, 160, 40, false);
  add(1, 130, 7, 2, 16, 160, false);
  add(3, 33, 17, 3, 12, 12, false);
  add(2, 70, 70, 2, 5, 5, true);
  add(1, 100, 100, 1, 100, 100, true);
  add(1, 77, 77, 4, 136, 136, false);
  // Scores of about ±30: q and k entries of variance 30 make q·k/sqrt(D) of variance 30².
  add(2, 130, 130, 2, 64, 64, false, std::sqrt(30.f));
  add(1, 1024, 1024, 1, 40, 40, false, std::sqrt(30.f), true);
  add(2, 77, 300, 2, 80, 80, true, std::sqrt(30.f), true);
  add(1, 64, 1024, 1, 160, 160, false, std::sqrt(30.f), true);
  // The temporal layout [B·F, HW, C] read in place: frames are the sequence (F = 16, 24), odd HW.
  for (auto [F, HW, H, D] : {std::array<int64_t, 4>{16, 13, 2, 40}, {24, 37, 1, 8}, {16, 9, 8, 40},
                             {24, 5, 2, 80}, {16, 7, 1, 160}, {16, 11, 3, 12}}) {
    const int64_t B = 2;
    cs.push_back({"attention_tc temporal B2 F" + std::to_string(F) + " HW" + std::to_string(HW) + " H" +
                      std::to_string(H) + " D" + std::to_string(D),
                  {r({B * F, HW, H * D}), r({B * F, HW, H * D}), r({B * F, HW, H * D})},
                  [F, H, D](Backend& b, std::vector<Tensor>& i) {
                    AttentionParams p;
                    p.heads = int(H);
                    p.scale = float(1.0 / std::sqrt(double(D)));
                    return b.temporal_attention(i[0], i[1], i[2], F, p);
                  }});
  }
  return cs;
}

// A copy of a weight store with every tensor rounded to `dt` (the CPU reference's weights).
void rounded_weights(WeightStore& src, WeightStore& dst, DType dt) {
  for (const std::string& k : src.keys()) dst.put(k, rounded(src.get(k), dt));
}

}  // namespace

// Runs on every machine: the default temporal_attention (native/ops/backend.cpp) is the
// permute/attention/permute composition, checked here against a direct per-pixel loop.
PIA_TEST(temporal_attention_default_matches_per_pixel_attention) {
  auto cpu = make_cpu_backend();
  const int64_t B = 2, F = 3, HW = 5, H = 2, D = 4;
  Tensor q = randn({B * F, HW, H * D}, 1), k = randn({B * F, HW, H * D}, 2), v = randn({B * F, HW, H * D}, 3);
  AttentionParams p;
  p.heads = int(H);
  p.scale = 0.5f;
  Tensor o = cpu->to_host(cpu->temporal_attention(cpu->from_host(q), cpu->from_host(k), cpu->from_host(v), F, p));
  EXPECT(o.shape() == Shape({B * F, HW, H * D}));
  double worst = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t px = 0; px < HW; ++px)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < F; ++i) {
          auto at = [&](const Tensor& t, int64_t f, int64_t d) {
            return double(t.data<float>()[((b * F + f) * HW + px) * H * D + h * D + d]);
          };
          std::vector<double> s(static_cast<size_t>(F));
          double mx = -1e300, sum = 0;
          for (int64_t j = 0; j < F; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += at(q, i, d) * at(k, j, d);
            s[size_t(j)] = dot * 0.5;
            mx = std::max(mx, s[size_t(j)]);
          }
          for (double& x : s) sum += (x = std::exp(x - mx));
          for (int64_t d = 0; d < D; ++d) {
            double ref = 0;
            for (int64_t j = 0; j < F; ++j) ref += s[size_t(j)] / sum * at(v, j, d);
            worst = std::max(worst, std::fabs(ref - at(o, i, d)));
          }
        }
  std::printf("     max |error| %.2e\n", worst);
  EXPECT(worst < 1e-5);  // float32 softmax of O(1) scores
}

// Runs on every machine: selection by name, and a clear error where CUDA is missing.
PIA_TEST(cuda_backend_selection) {
  EXPECT(make_backend("cpu")->device() == Device::CPU);
  if (!cuda_api()) {
    EXPECT(make_backend("auto")->device() == Device::CPU);
    bool threw = false;
    try {
      make_backend("cuda", DType::F16);
    } catch (const PiaException& e) {
      threw = e.code() == "E_BACKEND" && std::string(e.what()).find(cuda_status().reason) != std::string::npos;
    }
    EXPECT(threw);
    std::printf("     skip the device part: %s\n", cuda_status().reason.c_str());
  } else {
    EXPECT(make_backend("auto")->device() == Device::CUDA);
    EXPECT(make_backend("cuda:0", DType::BF16)->device() == Device::CUDA);
    bool threw = false;
    try {
      make_backend("cuda:999");
    } catch (const PiaException& e) {
      threw = e.code() == "E_INVALID_ARGUMENT";
    }
    EXPECT(threw);
  }
  bool bad_name = false;
  try {
    make_backend("tpu");
  } catch (const PiaException& e) {
    bad_name = e.code() == "E_INVALID_ARGUMENT";
  }
  EXPECT(bad_name);
}

// Every case in every mode (f32 too unless half_only), CUDA against the CPU; all failures are
// listed before the test fails, so one run shows every op that is off.
static void cases_vs_cpu(const std::vector<OpCase>& cases, bool half_only, const char* kind) {
  auto cpu = make_cpu_backend();
  int failures = 0;
  std::string first;
  for (const Mode& m : kModes) {
    if (half_only && m.dtype == DType::F32) continue;
    auto gpu = make_cuda_backend(0, m.dtype);
    for (const OpCase& c : cases) {
      const std::string what = std::string(m.name) + " " + c.name;
      try {
        const Tensor ref = run_case(*cpu, c, m.dtype);
        const Tensor got = run_case(*gpu, c, m.dtype);
        check(what, got, ref, m.op_threshold * c.threshold_scale);
      } catch (const pia::test::Failure& f) {
        ++failures;
        if (first.empty()) first = f.message;
        std::printf("     FAILED %s\n", f.message.c_str());
      } catch (const PiaException& e) {
        ++failures;
        if (first.empty()) first = what + ": " + e.code() + ": " + e.what();
        std::printf("     FAILED %s: %s: %s\n", what.c_str(), e.code().c_str(), e.what());
      }
    }
  }
  if (failures) pia::test::fail(std::to_string(failures) + " " + kind + " case(s) failed, first: " + first);
}

PIA_TEST(cuda_ops_vs_cpu) {
  if (skip("cuda_ops_vs_cpu")) return;
  cases_vs_cpu(op_cases(), false, "op");
}

// f16 and bf16 only: f32 (and PIA_CUDA_SIMPLE_ATTENTION=1, see scripts/gpu-run.sh) runs the FMA kernel.
PIA_TEST(cuda_attention_tc_vs_cpu) {
  if (skip("cuda_attention_tc_vs_cpu")) return;
  cases_vs_cpu(attention_tc_cases(), true, "attention");
}

PIA_TEST(cuda_out_of_memory_is_a_clear_error) {
  if (skip("cuda_out_of_memory_is_a_clear_error")) return;
  auto gpu = make_cuda_backend(0, DType::F16);
  std::string code, msg;
  try {
    gpu->zeros({int64_t(1) << 42});  // 8 TiB
  } catch (const PiaException& e) {
    code = e.code();
    msg = e.what();
  }
  std::printf("     %s: %s\n", code.c_str(), msg.c_str());
  EXPECT(code == "E_OUT_OF_MEMORY");
  EXPECT(msg.find("needed") != std::string::npos && msg.find("free") != std::string::npos);
  // The device is still usable afterwards.
  Tensor ok = gpu->to_host(gpu->zeros({4}));
  EXPECT(ok.numel() == 4 && ok.data<float>()[3] == 0.f);
}

PIA_TEST(cuda_clip_text_vs_cpu) {
  if (skip("cuda_clip_text_vs_cpu")) return;
  const nn::CLIPTextConfig c = nn::CLIPTextConfig::from_json(sd15::json(sd15::kSmallClipConfig));
  std::vector<int64_t> ids(2 * 77, 2);
  std::mt19937 g(5);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = (i % 77) < 20 ? int64_t(3 + g() % 990) : 2;
  for (const Mode& m : kModes) {
    WeightStore w, wr, wg;
    sd15::clip_weights(w, c);
    rounded_weights(w, wr, m.dtype);
    sd15::clip_weights(wg, c);
    nn::CLIPTextModel ref_model(c, wr, make_cpu_backend());
    nn::CLIPTextModel gpu_model(c, wg, make_cuda_backend(0, m.dtype));
    const auto ref = ref_model.forward(ids, 2, 77, false);
    const auto got = gpu_model.forward(ids, 2, 77, false);
    check(std::string(m.name) + " CLIPTextModel last_hidden_state [2,77,96]", got.last_hidden_state,
          ref.last_hidden_state, m.net_threshold);
    check(std::string(m.name) + " CLIPTextModel pooler_output", got.pooler_output, ref.pooler_output, m.net_threshold);
  }
}

PIA_TEST(cuda_vae_vs_cpu) {
  if (skip("cuda_vae_vs_cpu")) return;
  const nn::AutoencoderKLConfig c = nn::AutoencoderKLConfig::from_json(sd15::json(sd15::kSmallVaeConfig));
  for (const Mode& m : kModes) {
    WeightStore w, wr, wg;
    sd15::vae_weights(w, c);
    rounded_weights(w, wr, m.dtype);
    sd15::vae_weights(wg, c);
    nn::AutoencoderKL ref_vae(c, wr, make_cpu_backend());
    nn::AutoencoderKL gpu_vae(c, wg, make_cuda_backend(0, m.dtype));
    const Tensor z = rounded(randn({2, 4, 8, 8}, 11), m.dtype);
    check(std::string(m.name) + " AutoencoderKL decode [2,4,8,8]", gpu_vae.decode(z, false, false),
          ref_vae.decode(z, false, false), m.net_threshold);
    const Tensor x = rounded(uniform01({1, 3, 64, 64}, 12, -1.f, 1.f), m.dtype);
    check(std::string(m.name) + " AutoencoderKL encode mean [1,3,64,64]", gpu_vae.encode(x, false, false).mean,
          ref_vae.encode(x, false, false).mean, m.net_threshold);
    // enable_vae_slicing / enable_vae_tiling on the GPU: a latent above the 8×8 latent tile of
    // sample_size 64 is decoded in blended tiles, the same algorithm as the CPU's.
    check(std::string(m.name) + " AutoencoderKL decode sliced [2,4,8,8]", gpu_vae.decode(z, true, false),
          ref_vae.decode(z, true, false), m.net_threshold);
    const Tensor zt = rounded(randn({1, 4, 12, 12}, 13), m.dtype);
    check(std::string(m.name) + " AutoencoderKL decode tiled [1,4,12,12]", gpu_vae.decode(zt, false, true),
          ref_vae.decode(zt, false, true), m.net_threshold);
  }
}

PIA_TEST(cuda_unet_motion_vs_cpu) {
  if (skip("cuda_unet_motion_vs_cpu")) return;
  const auto config =
      nn::UNetMotionModelConfig::from_unet2d(sd15::json(sd15::kSmallUnetConfig), sd15::json(sd15::kSmallAdapterConfig));
  const int64_t B = 2, F = 4, H = 16, W = 16;
  nn::FreeUParams freeu;
  freeu.s1 = 0.9f;
  freeu.s2 = 0.2f;
  freeu.b1 = 1.2f;
  freeu.b2 = 1.4f;
  for (const Mode& m : kModes) {
    WeightStore u, a, ur, ar, ug, ag;
    sd15::unet_weights(config, u, a);
    rounded_weights(u, ur, m.dtype);
    rounded_weights(a, ar, m.dtype);
    sd15::unet_weights(config, ug, ag);
    nn::UNetMotionModel ref_model(make_cpu_backend(), config, ur, ar);
    nn::UNetMotionModel gpu_model(make_cuda_backend(0, m.dtype), config, ug, ag);
    const Tensor sample = rounded(randn({B, config.in_channels, F, H, W}, 21), m.dtype);
    const Tensor ehs = rounded(randn({B, 77, config.cross_attention_dim}, 22), m.dtype);
    // With PIA_CUDA_GRAPHS=1 (scripts/gpu-run.sh runs this test so once more) the third call of each
    // key replays a CUDA graph (the first runs eagerly, the second captures): that one is checked.
    const int calls = gpu_model.step_graphs() ? 3 : 1;
    auto gpu = [&](float t, const nn::FreeUParams& f) {
      Tensor y;
      for (int i = 0; i < calls; ++i) y = gpu_model.forward(sample, t, ehs, f);
      return y;
    };
    check(std::string(m.name) + " UNetMotion (SD-1.5+PIA, small) B2 F4 16x16", gpu(981.f, {}),
          ref_model.forward(sample, 981.f, ehs), m.net_threshold);
    check(std::string(m.name) + " UNetMotion with FreeU", gpu(21.f, freeu), ref_model.forward(sample, 21.f, ehs, freeu),
          m.net_threshold);
    if (const StepGraphCache* g = gpu_model.step_graphs()) {
      const auto st = g->stats();
      std::printf("     CUDA graphs: %zu capture(s), %zu replay(s), %zu failed capture(s)\n", st.captures, st.replays,
                  st.capture_failures);
      EXPECT(st.captures == 2 && st.replays == 4 && st.capture_failures == 0);
    }
  }
}

// --- convolutions through cuDNN (native/cuda/cudnn.cu) ------------------------------------------------
// The conv2d cases run through the ops table directly, since Backend::conv2d has no fused
// activation and cuDNN's path adds bias and activation in its own epilogue. Where cuDNN was not
// found or could not be opened the cases still run (on our kernel) and say so.

namespace {

// Sets the process's convolution policy for one scope (cuda_api.h's PIA_CUDA_CONV_*).
struct ConvPolicy {
  int old;
  explicit ConvPolicy(int p) : old(cuda_set_conv_policy(p)) {}
  ~ConvPolicy() {
    if (old >= 0) cuda_set_conv_policy(old);
  }
};

struct ConvCase {
  std::string name;
  Shape x;
  int64_t Co, k;
  Conv2dParams p;
  bool bias;
  int act;  // pia::Activation code
};

// SD-1.5's kinds of convolution at small sizes, plus odd shapes, each activation and batch > 1.
std::vector<ConvCase> conv_cases() {
  std::vector<ConvCase> cs = {
      {"ResnetBlock2D 3x3 pad 1 [2,320,16,16]->320", {2, 320, 16, 16}, 320, 3, Conv2dParams::same(1), true, 0},
      {"3x3 pad 1 odd [2,13,19,23]->17", {2, 13, 19, 23}, 17, 3, Conv2dParams::same(1), true, 0},
      {"conv_in 4->320 [2,4,12,12]", {2, 4, 12, 12}, 320, 3, Conv2dParams::same(1), true, 0},
      {"PIA conv_in 9->320 [3,9,12,12]", {3, 9, 12, 12}, 320, 3, Conv2dParams::same(1), true, 0},
      {"Downsample2D 3x3 stride 2 pad 1 [2,64,16,16]", {2, 64, 16, 16}, 64, 3, Conv2dParams::same(1, 2), true, 0},
      {"3x3 stride 2 pad 1 odd [1,8,15,9]->12", {1, 8, 15, 9}, 12, 3, Conv2dParams::same(1, 2), true, 0},
      {"VAE Downsample2D stride 2 pad (0,1,0,1) [2,16,20,18] (ours)", {2, 16, 20, 18}, 16, 3, downsample_params(), true,
       0},
      {"1x1 [3,40,9,11]->24 no bias", {3, 40, 9, 11}, 24, 1, Conv2dParams{}, false, 0},
      {"conv_shortcut 1x1 [2,640,8,8]->320", {2, 640, 8, 8}, 320, 1, Conv2dParams{}, true, 0},
      {"1x1 pad 1 [1,5,4,6]->3", {1, 5, 4, 6}, 3, 1, Conv2dParams::same(1), true, 0},
      {"conv_out 320->4 [2,320,12,12]", {2, 320, 12, 12}, 4, 3, Conv2dParams::same(1), true, 0},
  };
  for (int act = 1; act <= 4; ++act) {
    cs.push_back({"3x3 pad 1 [4,32,10,10]->48 act " + std::to_string(act), {4, 32, 10, 10}, 48, 3,
                  Conv2dParams::same(1), true, act});
  }
  return cs;
}

struct ConvInputs {
  Tensor x, w, b;  // host float32
};

ConvInputs conv_inputs(const ConvCase& c, uint32_t seed) {
  const int64_t C = c.x[1];
  ConvInputs in;
  in.x = randn(c.x, seed);
  in.w = randn({c.Co, C, c.k, c.k}, seed + 1, float(1.0 / std::sqrt(double(C * c.k * c.k))));
  if (c.bias) in.b = randn({c.Co}, seed + 2, 0.5f);
  return in;
}

// The CPU reference of the inputs rounded to dt: conv2d, then the activation.
Tensor conv_reference(const ConvCase& c, const ConvInputs& in, DType dt) {
  auto cpu = make_cpu_backend();
  Tensor y = cpu->conv2d(cpu->from_host(rounded(in.x, dt)), cpu->from_host(rounded(in.w, dt)),
                         in.b.defined() ? cpu->from_host(rounded(in.b, dt)) : Tensor(), c.p);
  if (c.act) y = cpu->activation(y, Activation(c.act));
  return cpu->to_host(y);
}

// conv2d with the fused activation through libpia_cuda.so's ops table on device 0.
Tensor conv_on_gpu(Backend& gpu, DType dt, const ConvCase& c, const ConvInputs& in) {
  const Tensor x = gpu.from_host(rounded(in.x, dt)), w = gpu.from_host(rounded(in.w, dt));
  const Tensor b = in.b.defined() ? gpu.from_host(rounded(in.b, dt)) : Tensor();
  const int64_t N = c.x[0], C = c.x[1], H = c.x[2], W = c.x[3];
  const int64_t Ho = (H + c.p.pad_top + c.p.pad_bottom - c.k) / c.p.stride + 1;
  const int64_t Wo = (W + c.p.pad_left + c.p.pad_right - c.k) / c.p.stride + 1;
  Tensor y = gpu.zeros({N, c.Co, Ho, Wo});
  PiaConv2dArgs a{};
  a.dtype = dt == DType::F32 ? 0 : dt == DType::F16 ? 1 : 2;
  a.x = x.raw();
  a.N = N;
  a.C = C;
  a.H = H;
  a.W = W;
  a.w = w.raw();
  a.Co = c.Co;
  a.kh = c.k;
  a.kw = c.k;
  a.bias = b.defined() ? b.raw() : nullptr;
  a.stride = c.p.stride;
  a.pad_top = c.p.pad_top;
  a.pad_left = c.p.pad_left;
  a.y = y.raw();
  a.Ho = Ho;
  a.Wo = Wo;
  a.act = c.act;
  const PiaCudaOps& ops = cuda_api()->ops;
  if (int rc = ops.conv2d(0, &a)) {
    pia::test::fail(c.name + ": conv2d returned " + std::to_string(rc) + ": " + ops.last_error());
  }
  return gpu.to_host(y);
}

}  // namespace

PIA_TEST(cuda_conv2d_cudnn_vs_cpu) {
  if (skip("cuda_conv2d_cudnn_vs_cpu")) return;
  const OptionalLibrary& lib = cuda_status().cudnn;
  std::printf("     cuDNN: %s%s\n", lib.in_use ? lib.version.c_str() : "not in use: ",
              lib.in_use ? "" : lib.note.c_str());
  ConvPolicy policy(PIA_CUDA_CONV_CUDNN_ALL);
  const std::vector<ConvCase> cases = conv_cases();
  uint64_t on_cudnn = 0;
  for (const Mode& m : kModes) {
    auto gpu = make_cuda_backend(0, m.dtype);
    uint32_t seed = 700;
    for (const ConvCase& c : cases) {
      const ConvInputs in = conv_inputs(c, seed += 3);
      const uint64_t before = cuda_conv_stats().cudnn_calls;
      const Tensor got = conv_on_gpu(*gpu, m.dtype, c, in);
      const bool used = cuda_conv_stats().cudnn_calls > before;
      on_cudnn += used;
      check(std::string(m.name) + (used ? " [cuDNN] " : " [ours]  ") + c.name, got, conv_reference(c, in, m.dtype),
            m.op_threshold * kCudnnThresholdScale);
    }
  }
  const PiaConvStats s = cuda_conv_stats();
  std::printf("     %llu of %zu cases ran on cuDNN; cuDNN failures so far %llu%s%s\n", (unsigned long long)on_cudnn,
              cases.size() * 3, (unsigned long long)s.cudnn_failures, s.last_failure[0] ? ", last: " : "",
              s.last_failure);
  // A cuDNN that opened but then ran nothing would leave every convolution on our kernel unnoticed.
  if (lib.in_use) EXPECT(on_cudnn > 0);
}

// PIA_DISABLE_CUDNN's semantics (policy OURS) against cuDNN and the timed choice on the same inputs:
// OURS never calls cuDNN, f32 stays ours outside CUDNN_ALL, a timed shape is timed once, and all
// three agree.
PIA_TEST(cuda_conv2d_cudnn_off_agrees) {
  if (skip("cuda_conv2d_cudnn_off_agrees")) return;
  const std::vector<ConvCase> cases = conv_cases();
  const bool loaded = cuda_status().cudnn.in_use;
  for (const Mode& m : kModes) {
    auto gpu = make_cuda_backend(0, m.dtype);
    uint32_t seed = 900;
    for (const ConvCase& c : cases) {
      const ConvInputs in = conv_inputs(c, seed += 3);
      Tensor ours, cudnn, tuned;
      {
        ConvPolicy p(PIA_CUDA_CONV_OURS);
        const uint64_t before = cuda_conv_stats().cudnn_calls;
        ours = conv_on_gpu(*gpu, m.dtype, c, in);
        EXPECT(cuda_conv_stats().cudnn_calls == before);
      }
      {
        ConvPolicy p(PIA_CUDA_CONV_CUDNN);
        const uint64_t before = cuda_conv_stats().cudnn_calls;
        const Tensor untimed = conv_on_gpu(*gpu, m.dtype, c, in);
        if (m.dtype == DType::F32) EXPECT(cuda_conv_stats().cudnn_calls == before);  // parity mode stays ours
        check(std::string(m.name) + " policy CUDNN vs OURS " + c.name, untimed, ours,
              m.op_threshold * kCudnnThresholdScale);
      }
      {
        ConvPolicy p(PIA_CUDA_CONV_CUDNN_ALL);
        cudnn = conv_on_gpu(*gpu, m.dtype, c, in);
      }
      {
        ConvPolicy p(PIA_CUDA_CONV_TUNED);
        const uint64_t t0 = cuda_conv_stats().shapes_timed;
        tuned = conv_on_gpu(*gpu, m.dtype, c, in);
        const uint64_t t1 = cuda_conv_stats().shapes_timed;
        const Tensor again = conv_on_gpu(*gpu, m.dtype, c, in);
        EXPECT(cuda_conv_stats().shapes_timed == t1);  // the verdict is cached per shape
        EXPECT(t1 - t0 <= 1);
        if (!loaded || m.dtype == DType::F32) EXPECT(t1 == t0);
        // Bitwise: the timed call returns the winner's result, as every later call does (else a
        // graph's warm-up step would differ from its replays).
        check(std::string(m.name) + " policy TUNED twice " + c.name, again, tuned, 0);
      }
      check(std::string(m.name) + " cuDNN vs OURS " + c.name, cudnn, ours, m.op_threshold * kCudnnThresholdScale);
      check(std::string(m.name) + " TUNED vs OURS " + c.name, tuned, ours, m.op_threshold * kCudnnThresholdScale);
    }
  }
  const PiaConvStats s = cuda_conv_stats();
  std::printf("     shapes timed %llu, cuDNN faster on %llu\n", (unsigned long long)s.shapes_timed,
              (unsigned long long)s.shapes_cudnn_won);
}
