// Every op of the CPU backend against a naive double-precision reference on random inputs
// (ggml's test-backend-ops idea): one table of cases, normalised MSE with a per-op threshold.
// Sizes are deliberately odd so that SIMD tails and block edges are exercised. The kernels are
// chosen at run time: run it again with PIA_CPU_NO_AVX512=1 (AVX2 kernels) and PIA_CPU_GENERIC=1
// (portable kernels) to cover every path on an AVX-512 machine.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "harness.h"
#include "cpu/host_allocator.h"
#include "ops/backend.h"

using namespace pia;

namespace {

std::mt19937& rng() {
  static std::mt19937 g(1234);
  return g;
}

Tensor randn(const Shape& s, float stddev = 1.f, float mean = 0.f) {
  Tensor t = Tensor::empty(s);
  std::normal_distribution<float> d(mean, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng());
  return t;
}

std::vector<double> ref_of(const Tensor& t) {
  Tensor c = t.to(DType::F32).contiguous();
  return std::vector<double>(c.data<float>(), c.data<float>() + c.numel());
}

// Σ(y − ref)² / Σ ref², the figure ggml's test-backend-ops compares against its threshold.
double nmse(const Tensor& y, const std::vector<double>& ref) {
  EXPECT(y.numel() == int64_t(ref.size()));
  Tensor c = y.to(DType::F32).contiguous();
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(c.data<float>()[i]) - ref[i];
    if (!std::isfinite(double(c.data<float>()[i]))) return INFINITY;
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? num / den : num;
}

// `pia_native_tests cpu_ --perf` also prints how long each checked op call took (never asserted).
bool perf_mode() {
  static const bool on = [] {
    std::FILE* f = std::fopen("/proc/self/cmdline", "rb");
    if (!f) return false;
    std::string all;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) all.append(buf, n);
    std::fclose(f);
    return all.find(std::string("--perf\0", 7)) != std::string::npos;
  }();
  return on;
}
double g_op_ms = -1;
template <typename F>
Tensor timed(F f) {
  const auto t0 = std::chrono::steady_clock::now();
  Tensor y = f();
  g_op_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return y;
}
#define OP(expr) timed([&] { return (expr); })

void check(const std::string& what, const Tensor& y, const Shape& shape, const std::vector<double>& ref,
           double threshold) {
  if (y.shape() != shape) pia::test::fail(what + ": shape " + shape_str(y.shape()) + " != " + shape_str(shape));
  const double e = nmse(y, ref);
  if (perf_mode() && g_op_ms >= 0) {
    std::printf("     %-58s nmse %.2e (max %.0e) %9.3f ms\n", what.c_str(), e, threshold, g_op_ms);
  } else {
    std::printf("     %-58s nmse %.2e (max %.0e)\n", what.c_str(), e, threshold);
  }
  g_op_ms = -1;
  if (!(e <= threshold)) pia::test::fail(what + ": nmse " + std::to_string(e) + " > " + std::to_string(threshold));
}

Backend& be() {
  static std::shared_ptr<Backend> b = make_cpu_backend();
  return *b;
}

double act_ref(Activation a, double x) {
  switch (a) {
    case Activation::None: return x;
    case Activation::SiLU: return x / (1 + std::exp(-x));
    case Activation::GELU: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Activation::GELUTanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::QuickGELU: return x / (1 + std::exp(-1.702 * x));
  }
  return x;
}
const char* act_name(Activation a) {
  const char* n[] = {"none", "silu", "gelu", "gelu_tanh", "quick_gelu"};
  return n[int(a)];
}
const char* dtype_str(DType t) { return dtype_name(t); }

// Products accumulate K float32 terms; rounding grows about linearly with K, and 1e-9 leaves a
// wide margin above that (a wrong index or a dropped tail shows up as ≥ 1e-3).
constexpr double kGemmTol = 1e-9;
// One or two roundings per element.
constexpr double kElemTol = 1e-12;

}  // namespace

PIA_TEST(cpu_linear) {
  struct C { int64_t rows, in, out; bool bias; Activation act; DType wt; };
  const C cases[] = {{1, 1, 1, true, Activation::None, DType::F32},    {7, 13, 5, true, Activation::SiLU, DType::F32},
                     {33, 77, 19, false, Activation::GELU, DType::F16}, {2, 320, 1280, true, Activation::SiLU, DType::BF16},
                     {77, 768, 97, true, Activation::QuickGELU, DType::F32},
                     {130, 257, 131, true, Activation::GELUTanh, DType::F16},
                     {300, 640, 320, true, Activation::None, DType::F32}};
  for (const C& c : cases) {
    Tensor x = randn({c.rows, c.in}), w = randn({c.out, c.in}, 0.1f).to(c.wt), b = randn({c.out});
    std::vector<double> xr = ref_of(x), wr = ref_of(w), br = ref_of(b), ref(size_t(c.rows * c.out));
    for (int64_t i = 0; i < c.rows; ++i) {
      for (int64_t o = 0; o < c.out; ++o) {
        double s = c.bias ? br[size_t(o)] : 0;
        for (int64_t k = 0; k < c.in; ++k) s += xr[size_t(i * c.in + k)] * wr[size_t(o * c.in + k)];
        ref[size_t(i * c.out + o)] = act_ref(c.act, s);
      }
    }
    // Both ways a weight can arrive: through upload() and raw (widened on the fly).
    for (bool up : {true, false}) {
      Tensor y = OP(be().linear(x, up ? be().upload(w) : w, c.bias ? b : Tensor(), c.act));
      char name[160];
      std::snprintf(name, sizeof name, "linear %lldx%lld->%lld %s %s %s%s", (long long)c.rows, (long long)c.in,
                    (long long)c.out, act_name(c.act), dtype_str(c.wt), c.bias ? "bias" : "nobias", up ? "" : " raw");
      check(name, y, {c.rows, c.out}, ref, kGemmTol);
    }
  }
  // leading dims are kept
  Tensor y = be().linear(randn({2, 3, 5}), randn({4, 5}), Tensor());
  EXPECT((y.shape() == Shape{2, 3, 4}));
  bool threw = false;
  try {
    be().linear(randn({2, 6}), randn({4, 5}), Tensor());
  } catch (const PiaException& e) {
    threw = e.code() == "E_INVALID_ARGUMENT";
  }
  EXPECT(threw);
}

PIA_TEST(cpu_matmul) {
  struct C { int64_t B, M, K, N; bool tb; bool a2d; };
  const C cases[] = {{1, 1, 1, 1, false, false}, {3, 7, 9, 11, false, false}, {2, 65, 33, 130, true, false},
                     {4, 128, 40, 77, true, false}, {2, 17, 300, 5, false, true}, {1, 200, 200, 200, false, false}};
  for (const C& c : cases) {
    Tensor a = c.a2d ? randn({c.M, c.K}) : randn({c.B, c.M, c.K});
    Tensor b = c.tb ? randn({c.B, c.N, c.K}) : randn({c.B, c.K, c.N});
    std::vector<double> ar = ref_of(a), br = ref_of(b), ref(size_t(c.B * c.M * c.N));
    for (int64_t bb = 0; bb < c.B; ++bb) {
      for (int64_t i = 0; i < c.M; ++i) {
        for (int64_t j = 0; j < c.N; ++j) {
          double s = 0;
          for (int64_t k = 0; k < c.K; ++k) {
            const double av = ar[size_t((c.a2d ? 0 : bb) * c.M * c.K + i * c.K + k)];
            const double bv = c.tb ? br[size_t(bb * c.N * c.K + j * c.K + k)] : br[size_t(bb * c.K * c.N + k * c.N + j)];
            s += av * bv;
          }
          ref[size_t(bb * c.M * c.N + i * c.N + j)] = s;
        }
      }
    }
    char name[160];
    std::snprintf(name, sizeof name, "matmul %lld x %lldx%lldx%lld%s%s", (long long)c.B, (long long)c.M,
                  (long long)c.K, (long long)c.N, c.tb ? " trans_b" : "", c.a2d ? " a2d" : "");
    check(name, OP(be().matmul(a, b, c.tb)), {c.B, c.M, c.N}, ref, kGemmTol);
  }
}

PIA_TEST(cpu_conv2d) {
  struct C { int64_t N, Cin, H, W, Cout, k; Conv2dParams p; bool bias; DType wt; };
  const C cases[] = {
      {1, 1, 1, 1, 1, 1, Conv2dParams::same(0), true, DType::F32},
      {2, 3, 7, 5, 4, 3, Conv2dParams::same(1), true, DType::F32},
      {1, 9, 16, 16, 8, 3, Conv2dParams::same(1), false, DType::F16},
      {2, 13, 11, 9, 7, 1, Conv2dParams::same(0), true, DType::BF16},
      {1, 8, 9, 10, 6, 3, Conv2dParams::same(1, 2), true, DType::F32},
      {1, 6, 12, 14, 5, 3, Conv2dParams{2, 0, 1, 0, 1}, true, DType::F32},  // diffusers Downsample2D(padding=0)
      {1, 5, 8, 8, 3, 3, Conv2dParams{1, 2, 0, 1, 3}, true, DType::F32},   // asymmetric padding
      {1, 4, 10, 10, 3, 1, Conv2dParams::same(0, 2), true, DType::F32},
      {1, 64, 33, 31, 40, 3, Conv2dParams::same(1), true, DType::F32},
      {1, 320, 16, 16, 64, 3, Conv2dParams::same(1), true, DType::F16},
      // batches of small images run as one GEMM whose column panels cross image boundaries
      {3, 8, 16, 16, 13, 3, Conv2dParams::same(1), true, DType::F32},
      {4, 24, 5, 5, 19, 3, Conv2dParams::same(1), false, DType::F32},
      {5, 6, 9, 7, 4, 3, Conv2dParams{2, 0, 1, 0, 1}, true, DType::F32},
      {3, 40, 4, 4, 33, 1, Conv2dParams::same(0), true, DType::F32},
  };
  for (const C& c : cases) {
    Tensor x = randn({c.N, c.Cin, c.H, c.W}), w = randn({c.Cout, c.Cin, c.k, c.k}, 0.2f).to(c.wt), b = randn({c.Cout});
    const auto& p = c.p;
    const int64_t Ho = (c.H + p.pad_top + p.pad_bottom - c.k) / p.stride + 1;
    const int64_t Wo = (c.W + p.pad_left + p.pad_right - c.k) / p.stride + 1;
    std::vector<double> xr = ref_of(x), wr = ref_of(w), br = ref_of(b), ref(size_t(c.N * c.Cout * Ho * Wo));
    for (int64_t n = 0; n < c.N; ++n)
      for (int64_t co = 0; co < c.Cout; ++co)
        for (int64_t oy = 0; oy < Ho; ++oy)
          for (int64_t ox = 0; ox < Wo; ++ox) {
            double s = c.bias ? br[size_t(co)] : 0;
            for (int64_t ci = 0; ci < c.Cin; ++ci)
              for (int64_t r = 0; r < c.k; ++r)
                for (int64_t q = 0; q < c.k; ++q) {
                  const int64_t iy = oy * p.stride - p.pad_top + r, ix = ox * p.stride - p.pad_left + q;
                  if (iy < 0 || iy >= c.H || ix < 0 || ix >= c.W) continue;
                  s += xr[size_t(((n * c.Cin + ci) * c.H + iy) * c.W + ix)] *
                       wr[size_t(((co * c.Cin + ci) * c.k + r) * c.k + q)];
                }
            ref[size_t(((n * c.Cout + co) * Ho + oy) * Wo + ox)] = s;
          }
    char name[160];
    std::snprintf(name, sizeof name, "conv2d %lldx%lldx%lldx%lld->%lld k%lld s%d pad %d,%d,%d,%d %s", (long long)c.N,
                  (long long)c.Cin, (long long)c.H, (long long)c.W, (long long)c.Cout, (long long)c.k, p.stride,
                  p.pad_top, p.pad_bottom, p.pad_left, p.pad_right, dtype_str(c.wt));
    check(name, OP(be().conv2d(x, be().upload(w), c.bias ? b : Tensor(), p)), {c.N, c.Cout, Ho, Wo}, ref, kGemmTol);
  }
}

PIA_TEST(cpu_group_norm) {
  struct C { Shape s; int groups; Activation act; float mean; };
  const C cases[] = {{{1, 1, 1}, 1, Activation::None, 0.f},         {{2, 64, 7, 9}, 32, Activation::SiLU, 0.f},
                     {{1, 3, 5, 5}, 1, Activation::None, 3.f},       {{2, 320, 2, 8, 8}, 32, Activation::None, 0.f},
                     {{1, 96, 13, 11}, 32, Activation::SiLU, 50.f},  {{3, 4, 1}, 2, Activation::GELU, 0.f}};
  for (const C& c : cases) {
    // A large mean checks that the variance is not computed as E[x²] − E[x]² in float.
    Tensor x = randn(c.s, 1.f, c.mean), g = randn({c.s[1]}), b = randn({c.s[1]});
    const float eps = 1e-5f;
    const int64_t N = c.s[0], C = c.s[1], S = x.numel() / (N * C), cg = C / c.groups;
    std::vector<double> xr = ref_of(x), gr = ref_of(g), br = ref_of(b), ref(xr.size());
    for (int64_t n = 0; n < N; ++n)
      for (int64_t gi = 0; gi < c.groups; ++gi) {
        const size_t o = size_t((n * C + gi * cg) * S), m = size_t(cg * S);
        double mu = 0, var = 0;
        for (size_t i = 0; i < m; ++i) mu += xr[o + i];
        mu /= double(m);
        for (size_t i = 0; i < m; ++i) var += (xr[o + i] - mu) * (xr[o + i] - mu);
        var /= double(m);
        for (size_t i = 0; i < m; ++i) {
          const int64_t ch = gi * cg + int64_t(i) / S;
          ref[o + i] = act_ref(c.act, (xr[o + i] - mu) / std::sqrt(var + eps) * gr[size_t(ch)] + br[size_t(ch)]);
        }
      }
    check("group_norm " + shape_str(c.s) + " g" + std::to_string(c.groups) + " " + act_name(c.act) + " mean " +
              std::to_string(int(c.mean)),
          OP(be().group_norm(x, c.groups, g, b, eps, c.act)), c.s, ref, kGemmTol);
  }
}

// The in-place GroupNorm of the motion modules equals the permute/GroupNorm/permute composition
// (Backend's default) on the (N, C, F, S) video.
PIA_TEST(cpu_group_norm_frames) {
  struct C { Shape s; int64_t frames; int groups; float mean; };
  const C cases[] = {{{6, 64, 5, 7}, 3, 32, 0.f}, {{16, 32, 4, 4}, 16, 8, 20.f}, {{2, 8, 3}, 1, 2, 0.f},
                     {{4, 320, 2, 2}, 2, 32, 1.f}};
  for (const C& c : cases) {
    Tensor x = randn(c.s, 1.f, c.mean), g = randn({c.s[1]}), b = randn({c.s[1]});
    const Tensor got = be().group_norm_frames(x, c.frames, c.groups, g, b, 1e-6f);
    const Tensor want = be().Backend::group_norm_frames(x, c.frames, c.groups, g, b, 1e-6f);
    EXPECT(got.shape() == c.s && want.shape() == c.s);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
      worst = std::max(worst, double(std::fabs(got.data<float>()[i] - want.data<float>()[i])));
      scale = std::max(scale, double(std::fabs(want.data<float>()[i])));
    }
    // Pooling per-frame double moments vs one pass over the copy: float rounding of the statistics only.
    if (!(worst <= 1e-5 * std::max(1.0, scale))) {
      pia::test::fail("group_norm_frames " + shape_str(c.s) + " F" + std::to_string(c.frames) + ": max diff " +
                      std::to_string(worst));
    }
  }
  bool threw = false;
  try {
    be().group_norm_frames(randn({5, 8, 2}), 2, 4, Tensor(), Tensor(), 1e-6f);
  } catch (const PiaException& e) {
    threw = e.code() == "E_INVALID_ARGUMENT";
  }
  EXPECT(threw);
}

// The fused norm + positions equals layer_norm followed by the broadcast add, bit for bit (the
// same two float roundings), for both layouts the motion modules use.
PIA_TEST(cpu_layer_norm_add) {
  struct C { Shape s; int64_t P, div; };
  for (const C& c : {C{{6, 16, 40}, 16, 1}, C{{2 * 5, 7, 24}, 5, 7}, C{{3, 1, 8}, 1, 1}}) {
    const int64_t D = c.s.back();
    Tensor x = randn(c.s, 1.f, 2.f), g = randn({D}), b = randn({D}), add = randn({c.P, D});
    const Tensor got = be().layer_norm_add(x, g, b, 1e-5f, add, c.div);
    const Tensor want = be().Backend::layer_norm_add(x, g, b, 1e-5f, add, c.div);
    EXPECT(got.shape() == c.s && want.shape() == c.s);
    EXPECT(std::memcmp(got.raw(), want.raw(), size_t(got.numel()) * sizeof(float)) == 0);
  }
  bool threw = false;
  try {
    be().layer_norm_add(randn({4, 3, 8}), Tensor(), Tensor(), 1e-5f, randn({5, 8}), 1);
  } catch (const PiaException& e) {
    threw = e.code() == "E_INVALID_ARGUMENT";
  }
  EXPECT(threw);
}

PIA_TEST(cpu_layer_norm) {
  for (Shape s : {Shape{1, 1}, Shape{2, 77, 768}, Shape{3, 5, 13}, Shape{4096, 320}}) {
    const int64_t D = s.back();
    Tensor x = randn(s, 2.f, 1.f), g = randn({D}), b = randn({D});
    std::vector<double> xr = ref_of(x), gr = ref_of(g), br = ref_of(b), ref(xr.size());
    for (size_t r = 0; r < xr.size() / size_t(D); ++r) {
      double mu = 0, var = 0;
      for (int64_t i = 0; i < D; ++i) mu += xr[r * size_t(D) + size_t(i)];
      mu /= double(D);
      for (int64_t i = 0; i < D; ++i) var += std::pow(xr[r * size_t(D) + size_t(i)] - mu, 2);
      var /= double(D);
      for (int64_t i = 0; i < D; ++i)
        ref[r * size_t(D) + size_t(i)] = (xr[r * size_t(D) + size_t(i)] - mu) / std::sqrt(var + 1e-5) * gr[size_t(i)] + br[size_t(i)];
    }
    check("layer_norm " + shape_str(s), OP(be().layer_norm(x, g, b, 1e-5f)), s, ref, kGemmTol);
  }
}

PIA_TEST(cpu_attention) {
  struct C { int64_t B, Sq, Sk, H, D, Dv; bool causal; };
  const C cases[] = {{1, 1, 1, 1, 8, 8, false},     {2, 77, 77, 12, 64, 64, true},   {1, 300, 77, 8, 40, 40, false},
                     {2, 513, 513, 2, 64, 64, false}, {3, 16, 16, 1, 160, 160, false}, {1, 1100, 1030, 1, 40, 40, false},
                     {2, 5, 3, 3, 8, 24, false},      {1, 70, 70, 2, 16, 16, true},    {32, 16, 16, 8, 40, 40, false}};
  for (const C& c : cases) {
    // Larger-than-unit logits make the online max/rescaling matter.
    Tensor q = randn({c.B, c.Sq, c.H * c.D}, 1.5f), k = randn({c.B, c.Sk, c.H * c.D}, 1.5f),
           v = randn({c.B, c.Sk, c.H * c.Dv});
    const float scale = 1.f / std::sqrt(float(c.D));
    std::vector<double> qr = ref_of(q), kr = ref_of(k), vr = ref_of(v), ref(size_t(c.B * c.Sq * c.H * c.Dv));
    std::vector<double> sc(size_t(c.Sk));
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t h = 0; h < c.H; ++h)
        for (int64_t i = 0; i < c.Sq; ++i) {
          double mx = -INFINITY;
          const int64_t nk = c.causal ? std::min(c.Sk, i + 1) : c.Sk;
          for (int64_t j = 0; j < nk; ++j) {
            double s = 0;
            for (int64_t d = 0; d < c.D; ++d)
              s += qr[size_t((b * c.Sq + i) * c.H * c.D + h * c.D + d)] * kr[size_t((b * c.Sk + j) * c.H * c.D + h * c.D + d)];
            sc[size_t(j)] = s * scale;
            mx = std::max(mx, sc[size_t(j)]);
          }
          double sum = 0;
          for (int64_t j = 0; j < nk; ++j) sum += (sc[size_t(j)] = std::exp(sc[size_t(j)] - mx));
          for (int64_t d = 0; d < c.Dv; ++d) {
            double o = 0;
            for (int64_t j = 0; j < nk; ++j) o += sc[size_t(j)] * vr[size_t((b * c.Sk + j) * c.H * c.Dv + h * c.Dv + d)];
            ref[size_t((b * c.Sq + i) * c.H * c.Dv + h * c.Dv + d)] = o / sum;
          }
        }
    char name[160];
    std::snprintf(name, sizeof name, "attention B%lld Sq%lld Sk%lld H%lld D%lld Dv%lld%s", (long long)c.B,
                  (long long)c.Sq, (long long)c.Sk, (long long)c.H, (long long)c.D, (long long)c.Dv,
                  c.causal ? " causal" : "");
    AttentionParams p;
    p.heads = int(c.H);
    p.scale = scale;
    p.causal = c.causal;
    check(name, OP(be().attention(q, k, v, p)), {c.B, c.Sq, c.H * c.Dv}, ref, kGemmTol);
  }
}

PIA_TEST(cpu_binary_and_add_) {
  struct C { Shape a, b; };
  const C cases[] = {{{2, 3, 4, 5}, {2, 3, 4, 5}}, {{2, 3, 4, 5}, {3, 1, 1}}, {{2, 3, 4, 5}, {5}},
                     {{2, 3, 4, 5}, {1}},          {{7, 1, 9}, {1, 6, 1}},   {{1, 320, 1, 1}, {2, 320, 17, 13}},
                     {{3}, {3}}};
  const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div};
  const char* names[] = {"add", "sub", "mul", "div"};
  for (const C& c : cases) {
    Tensor a = randn(c.a), b = randn(c.b);
    // keep divisors away from zero
    for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] += b.data<float>()[i] >= 0 ? 0.5f : -0.5f;
    const size_t nd = std::max(c.a.size(), c.b.size());
    Shape out(nd);
    for (size_t i = 0; i < nd; ++i) {
      const int64_t da = i < nd - c.a.size() ? 1 : c.a[i - (nd - c.a.size())];
      const int64_t db = i < nd - c.b.size() ? 1 : c.b[i - (nd - c.b.size())];
      out[i] = std::max(da, db);
    }
    std::vector<double> ar = ref_of(a), br = ref_of(b);
    auto at = [&](const std::vector<double>& v, const Shape& s, const std::vector<int64_t>& idx) {
      int64_t off = 0;
      for (size_t d = 0; d < s.size(); ++d) {
        const int64_t i = s[d] == 1 ? 0 : idx[d + nd - s.size()];
        off = off * s[d] + i;
      }
      return v[size_t(off)];
    };
    for (int o = 0; o < 4; ++o) {
      std::vector<double> ref(size_t(shape_numel(out)));
      std::vector<int64_t> idx(nd, 0);
      for (size_t f = 0; f < ref.size(); ++f) {
        int64_t rem = int64_t(f);
        for (size_t d = nd; d-- > 0;) {
          idx[d] = rem % out[d];
          rem /= out[d];
        }
        const double x = at(ar, c.a, idx), y = at(br, c.b, idx);
        ref[f] = o == 0 ? x + y : o == 1 ? x - y : o == 2 ? x * y : x / y;
      }
      check(std::string("binary ") + names[o] + " " + shape_str(c.a) + " " + shape_str(c.b), OP(be().binary(ops[o], a, b)),
            out, ref, kElemTol);
    }
    if (out == c.a) {
      Tensor acc = a.clone();
      be().add_(acc, b, 0.5f);
      std::vector<double> ref(ar.size());
      std::vector<int64_t> idx(nd, 0);
      for (size_t f = 0; f < ref.size(); ++f) {
        int64_t rem = int64_t(f);
        for (size_t d = nd; d-- > 0;) {
          idx[d] = rem % out[d];
          rem /= out[d];
        }
        ref[f] = ar[f] + 0.5 * at(br, c.b, idx);
      }
      check("add_ " + shape_str(c.a) + " += 0.5 * " + shape_str(c.b), acc, c.a, ref, kElemTol);
    }
  }
  // A strided view as an operand (permuted NCHW -> NHWC).
  Tensor a = randn({2, 3, 4, 5}), b = randn({2, 4, 5, 3});
  Tensor y = be().binary(BinaryOp::Add, a.permute({0, 2, 3, 1}), b);
  std::vector<double> ref(size_t(b.numel()));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t h = 0; h < 4; ++h)
      for (int64_t w = 0; w < 5; ++w)
        for (int64_t ch = 0; ch < 3; ++ch) {
          const size_t o = size_t(((n * 4 + h) * 5 + w) * 3 + ch);
          ref[o] = double(a.data<float>()[((n * 3 + ch) * 4 + h) * 5 + w]) + b.data<float>()[o];
        }
  check("binary add permuted view", y, {2, 4, 5, 3}, ref, kElemTol);
}

PIA_TEST(cpu_elementwise) {
  Tensor x = randn({3, 7, 129}, 3.f);
  std::vector<double> xr = ref_of(x);
  {
    std::vector<double> ref(xr.size());
    for (size_t i = 0; i < xr.size(); ++i) ref[i] = xr[i] * double(0.18215f) + double(-0.5f);
    check("affine", be().affine(x, 0.18215f, -0.5f), x.shape(), ref, kElemTol);
  }
  for (Activation a : {Activation::None, Activation::SiLU, Activation::GELU, Activation::GELUTanh, Activation::QuickGELU}) {
    std::vector<double> ref(xr.size());
    for (size_t i = 0; i < xr.size(); ++i) ref[i] = act_ref(a, xr[i]);
    // libm's expf/erff/tanhf are within a few ulps
    check(std::string("activation ") + act_name(a), be().activation(x, a), x.shape(), ref, 1e-11);
  }
  {
    Tensor g = randn({2, 5, 2 * 37}, 2.f);
    std::vector<double> gr = ref_of(g), ref(size_t(2 * 5 * 37));
    for (size_t r = 0; r < 10; ++r)
      for (size_t i = 0; i < 37; ++i) ref[r * 37 + i] = gr[r * 74 + i] * act_ref(Activation::GELU, gr[r * 74 + 37 + i]);
    check("geglu [2, 5, 74]", be().geglu(g), {2, 5, 37}, ref, 1e-11);
  }
  {
    Tensor u = randn({2, 3, 5, 7});
    std::vector<double> ur = ref_of(u), ref(size_t(2 * 3 * 10 * 14));
    for (int64_t p = 0; p < 6; ++p)
      for (int64_t y = 0; y < 10; ++y)
        for (int64_t xx = 0; xx < 14; ++xx) ref[size_t((p * 10 + y) * 14 + xx)] = ur[size_t((p * 5 + y / 2) * 7 + xx / 2)];
    check("upsample_nearest2x [2, 3, 5, 7]", be().upsample_nearest2x(u), {2, 3, 10, 14}, ref, 0);
  }
  {
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      Tensor table = randn({11, 9}).to(dt);
      std::vector<int64_t> ids = {0, 10, 3, 3, 7};
      std::vector<double> tr = ref_of(table), ref;
      for (int64_t id : ids) ref.insert(ref.end(), tr.begin() + id * 9, tr.begin() + (id + 1) * 9);
      check(std::string("embedding ") + dtype_str(dt), be().embedding(be().upload(table), ids), {5, 9}, ref, 0);
    }
    bool threw = false;
    try {
      be().embedding(randn({4, 2}), {4});
    } catch (const PiaException& e) {
      threw = e.code() == "E_INVALID_ARGUMENT";
    }
    EXPECT(threw);
  }
  {
    Tensor a = randn({2, 3, 4}), b = randn({2, 5, 4}), c = randn({2, 1, 4});
    std::vector<double> ar = ref_of(a), br = ref_of(b), cr = ref_of(c), ref;
    for (int n = 0; n < 2; ++n) {
      ref.insert(ref.end(), ar.begin() + n * 12, ar.begin() + (n + 1) * 12);
      ref.insert(ref.end(), br.begin() + n * 20, br.begin() + (n + 1) * 20);
      ref.insert(ref.end(), cr.begin() + n * 4, cr.begin() + (n + 1) * 4);
    }
    check("cat dim 1", be().cat({a, b, c}, 1), {2, 9, 4}, ref, 0);
    Tensor d = randn({2, 3, 2});
    std::vector<double> dr = ref_of(d), ref2;
    for (int r = 0; r < 6; ++r) {
      ref2.insert(ref2.end(), ar.begin() + r * 4, ar.begin() + (r + 1) * 4);
      ref2.insert(ref2.end(), dr.begin() + r * 2, dr.begin() + (r + 1) * 2);
    }
    check("cat dim -1", be().cat({a, d}, -1), {2, 3, 6}, ref2, 0);
    std::vector<double> ref3 = ar;
    ref3.insert(ref3.end(), ar.begin(), ar.end());
    check("cat dim 0", be().cat({a, a}, 0), {4, 3, 4}, ref3, 0);
  }
  {
    Tensor a = randn({3, 4, 5});
    Tensor p = be().contiguous(a.permute({2, 0, 1}));
    std::vector<double> ref(60);
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 4; ++k) ref[size_t((i * 3 + j) * 4 + k)] = a.data<float>()[(j * 4 + k) * 5 + i];
    check("contiguous permuted", p, {5, 3, 4}, ref, 0);
    EXPECT(p.is_contiguous());
  }
}

PIA_TEST(cpu_timestep_embedding) {
  struct C { int dim; bool flip; float shift; };
  const std::vector<float> t = {0.f, 1.f, 261.f, 999.f, 500.5f};
  for (C c : {C{320, true, 0.f}, C{1280, false, 1.f}, C{7, true, 1.f}, C{2, false, 0.f}}) {
    const int half = c.dim / 2;
    std::vector<double> ref(t.size() * size_t(c.dim), 0.0);
    for (size_t r = 0; r < t.size(); ++r)
      for (int i = 0; i < half; ++i) {
        const double a = double(t[r]) * std::exp(-std::log(10000.0) * i / (half - double(c.shift)));
        ref[r * size_t(c.dim) + size_t(c.flip ? half + i : i)] = std::sin(a);
        ref[r * size_t(c.dim) + size_t(c.flip ? i : half + i)] = std::cos(a);
      }
    // torch evaluates the frequency and t·freq in float32: the argument (up to ~1000) carries a
    // relative error of ~1e-7, i.e. ~1e-4 absolute in sin/cos at the largest t.
    check("timestep_embedding dim " + std::to_string(c.dim) + (c.flip ? " flip" : "") + " shift " +
              std::to_string(int(c.shift)),
          be().timestep_embedding(t, c.dim, c.flip, c.shift), {int64_t(t.size()), c.dim}, ref, 1e-8);
  }
}

PIA_TEST(cpu_fourier_filter) {
  using cd = std::complex<double>;
  // Literal transcription of diffusers' fourier_filter with a naive DFT: fftn, fftshift, box mask,
  // ifftshift, ifftn, real.
  auto dft2 = [](std::vector<cd>& f, int64_t H, int64_t W, bool inv) {
    std::vector<cd> g(f.size());
    const double sg = inv ? 1 : -1;
    for (int64_t u = 0; u < H; ++u)
      for (int64_t v = 0; v < W; ++v) {
        cd s = 0;
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x)
            s += f[size_t(y * W + x)] * std::polar(1.0, sg * 2 * M_PI * (double(u * y) / H + double(v * x) / W));
        g[size_t(u * W + v)] = inv ? s / double(H * W) : s;
      }
    f = g;
  };
  auto shift = [](std::vector<cd>& f, int64_t H, int64_t W, int64_t sy, int64_t sx) {
    std::vector<cd> g(f.size());
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) g[size_t(((y + sy) % H + H) % H * W + ((x + sx) % W + W) % W)] = f[size_t(y * W + x)];
    f = g;
  };
  struct C { Shape s; int thr; float scale; };
  for (C c : {C{{1, 2, 8, 8}, 1, 0.9f}, C{{2, 3, 16, 12}, 1, 1.4f}, C{{1, 1, 5, 7}, 2, 0.5f}, C{{1, 2, 9, 9}, 3, 0.2f},
              C{{1, 1, 4, 4}, 4, 0.f}}) {
    Tensor x = randn(c.s);
    const int64_t H = c.s[2], W = c.s[3], planes = c.s[0] * c.s[1];
    std::vector<double> xr = ref_of(x), ref(xr.size());
    for (int64_t p = 0; p < planes; ++p) {
      std::vector<cd> f(size_t(H * W));
      for (int64_t i = 0; i < H * W; ++i) f[size_t(i)] = xr[size_t(p * H * W + i)];
      dft2(f, H, W, false);
      shift(f, H, W, H / 2, W / 2);
      auto clamp_slice = [](int64_t a, int64_t n) { return std::min(n, a < 0 ? std::max<int64_t>(0, a + n) : a); };
      const int64_t r0 = clamp_slice(H / 2 - c.thr, H), r1 = clamp_slice(H / 2 + c.thr, H);
      const int64_t c0 = clamp_slice(W / 2 - c.thr, W), c1 = clamp_slice(W / 2 + c.thr, W);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t q = c0; q < c1; ++q) f[size_t(r * W + q)] *= double(c.scale);
      shift(f, H, W, -(H / 2), -(W / 2));
      dft2(f, H, W, true);
      for (int64_t i = 0; i < H * W; ++i) ref[size_t(p * H * W + i)] = f[size_t(i)].real();
    }
    check("fourier_filter " + shape_str(c.s) + " thr " + std::to_string(c.thr),
          OP(be().fourier_filter(x, c.thr, c.scale)), c.s, ref, kElemTol);
  }
}

PIA_TEST(cpu_contiguous_views) {
  // Against the core's element-by-element Tensor::contiguous(): must be bit-identical.
  struct C { Shape s; std::vector<int64_t> perm; };
  const C cases[] = {{{2, 70, 4100}, {0, 2, 1}},  // [B, C, HW] -> [B, HW, C] around attention
                     {{3, 33, 65}, {0, 2, 1}},     {{2, 5, 3, 37, 41}, {0, 3, 4, 2, 1}},  // frames <-> pixels
                     {{7, 9}, {1, 0}},             {{4, 1, 6}, {2, 1, 0}},
                     {{2, 3, 4}, {0, 1, 2}}};
  for (const C& c : cases) {
    for (DType dt : {DType::F32, DType::F16}) {
      Tensor x = randn(c.s).to(dt);
      Tensor v = x.permute(c.perm);
      Tensor got = be().contiguous(v), want = v.contiguous();
      EXPECT(got.shape() == want.shape() && got.dtype() == dt && got.is_contiguous());
      EXPECT(std::memcmp(got.raw(), want.raw(), want.nbytes()) == 0);
      // a narrowed view of the permuted one
      Tensor n = v.narrow(v.dim() - 1, 1, v.size(-1) - 1);
      Tensor gn = be().contiguous(n), wn = n.contiguous();
      EXPECT(std::memcmp(gn.raw(), wn.raw(), wn.nbytes()) == 0);
    }
  }
  // Strided inputs to ops that need contiguous ones are copied first.
  Tensor x = randn({2, 16, 24}), w = randn({5, 16});
  Tensor a = be().linear(x.permute({0, 2, 1}), w, Tensor());
  Tensor b = be().linear(x.permute({0, 2, 1}).contiguous(), w, Tensor());
  EXPECT(std::memcmp(a.raw(), b.raw(), b.nbytes()) == 0);
  // Half-precision weights stay half in memory after upload(); a view of one is packed correctly.
  Tensor wh = randn({16, 5}).to(DType::F16);
  EXPECT(be().upload(wh).dtype() == DType::F16);
  Tensor c = be().linear(x.permute({0, 2, 1}), wh.permute({1, 0}), Tensor());
  Tensor d = be().linear(x.permute({0, 2, 1}), wh.permute({1, 0}).contiguous().to(DType::F32), Tensor());
  EXPECT(std::memcmp(c.raw(), d.raw(), d.nbytes()) == 0);
}

PIA_TEST(cpu_output_blocks_are_reused) {
  // Large outputs come from the backend's block cache: freeing one and asking for the same size
  // again must hand back the same (already faulted-in) block, and the contents are independent.
  pia::cpu::release_cached();
  Tensor x = randn({512, 1024});  // 2 MiB
  const void* first = nullptr;
  {
    Tensor y = be().affine(x, 2.f);
    first = y.raw();
    EXPECT(y.data<float>()[7] == 2.f * x.data<float>()[7]);
  }
  EXPECT(pia::cpu::cached_bytes() >= size_t(x.nbytes()));
  Tensor z = be().affine(x, 3.f);
  EXPECT(z.raw() == first);
  EXPECT(z.data<float>()[7] == 3.f * x.data<float>()[7]);
  Tensor w = be().affine(x, 4.f);  // the block is taken: a different one
  EXPECT(w.raw() != z.raw() && z.data<float>()[9] == 3.f * x.data<float>()[9]);
  pia::cpu::release_cached();
  EXPECT(pia::cpu::cached_bytes() == 0);
}

PIA_TEST(cpu_results_independent_of_thread_count) {
  // Work is split between threads without changing any summation order, so results are
  // bit-identical whatever the pool size (the attention path choice depends on it too).
  Tensor x = randn({3, 50, 96}), w = randn({70, 96}), b = randn({70});
  Tensor img = randn({3, 24, 9, 11}), cw = randn({17, 24, 3, 3}), cb = randn({17});
  Tensor q = randn({3, 40, 64}), k = randn({3, 300, 64}), v = randn({3, 300, 64});
  Tensor qs = randn({9, 16, 64}), ks = randn({9, 16, 64}), vs = randn({9, 16, 64});
  Tensor q1 = randn({1, 130, 64});
  AttentionParams p;
  p.heads = 4;
  p.scale = 0.125f;
  auto run = [&] {
    return std::vector<Tensor>{be().linear(x, w, b, Activation::GELU), be().conv2d(img, cw, cb, Conv2dParams::same(1)),
                               be().attention(q, k, v, p), be().attention(qs, ks, vs, p),
                               be().attention(q1, k.narrow(0, 0, 1), v.narrow(0, 0, 1), p),
                               be().group_norm(img, 4, Tensor(), Tensor(), 1e-5f, Activation::SiLU)};
  };
  ThreadPool::set_global_threads(1);
  const std::vector<Tensor> one = run();
  ThreadPool::set_global_threads(3);
  const std::vector<Tensor> three = run();
  ThreadPool::set_global_threads(ThreadPool::default_threads());
  for (size_t i = 0; i < one.size(); ++i) EXPECT(std::memcmp(one[i].raw(), three[i].raw(), one[i].nbytes()) == 0);
}

PIA_TEST(cpu_temporal_attention) {
  // Frames of each pixel attend to each other, read in place from [B·F, HW, C]: must equal the
  // permute -> attention -> permute composition (Backend's default) bit for bit, and the double
  // reference within the GEMM tolerance.
  struct C { int64_t B, F, HW, H, D; };
  for (C c : {C{2, 16, 37, 8, 8}, C{1, 3, 5, 2, 40}, C{2, 8, 64, 4, 16}}) {
    Tensor q = randn({c.B * c.F, c.HW, c.H * c.D}), k = randn({c.B * c.F, c.HW, c.H * c.D}),
           v = randn({c.B * c.F, c.HW, c.H * c.D});
    AttentionParams p;
    p.heads = int(c.H);
    p.scale = 1.f / std::sqrt(float(c.D));
    Tensor got = OP(be().temporal_attention(q, k, v, c.F, p));
    auto to_seq = [&](const Tensor& x) {
      return be().contiguous(x.reshape({c.B, c.F, c.HW, c.H * c.D}).permute({0, 2, 1, 3})).reshape({c.B * c.HW, c.F, c.H * c.D});
    };
    Tensor o = be().attention(to_seq(q), to_seq(k), to_seq(v), p);
    Tensor want = be().contiguous(o.reshape({c.B, c.HW, c.F, c.H * c.D}).permute({0, 2, 1, 3})).reshape(got.shape());
    EXPECT(got.shape() == want.shape());
    EXPECT(std::memcmp(got.raw(), want.raw(), want.nbytes()) == 0);
    // double reference for one in every few pixels
    std::vector<double> qr = ref_of(q), kr = ref_of(k), vr = ref_of(v);
    double num = 0, den = 0;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t px = 0; px < c.HW; px += 3)
        for (int64_t h = 0; h < c.H; ++h)
          for (int64_t i = 0; i < c.F; ++i) {
            std::vector<double> s(size_t(c.F));
            double mx = -INFINITY, sum = 0;
            auto at = [&](int64_t f, int64_t d) { return size_t(((b * c.F + f) * c.HW + px) * c.H * c.D + h * c.D + d); };
            for (int64_t j = 0; j < c.F; ++j) {
              double dot = 0;
              for (int64_t d = 0; d < c.D; ++d) dot += qr[at(i, d)] * kr[at(j, d)];
              s[size_t(j)] = dot * p.scale;
              mx = std::max(mx, s[size_t(j)]);
            }
            for (double& x : s) sum += (x = std::exp(x - mx));
            for (int64_t d = 0; d < c.D; ++d) {
              double r = 0;
              for (int64_t j = 0; j < c.F; ++j) r += s[size_t(j)] * vr[at(j, d)];
              r /= sum;
              const double g = got.data<float>()[at(i, d)];
              num += (g - r) * (g - r);
              den += r * r;
            }
          }
    char name[120];
    std::snprintf(name, sizeof name, "temporal_attention B%lld F%lld HW%lld H%lld D%lld", (long long)c.B, (long long)c.F,
                  (long long)c.HW, (long long)c.H, (long long)c.D);
    std::printf("     %-58s nmse %.2e (max %.0e)\n", name, num / den, kGemmTol);
    EXPECT(num / den <= kGemmTol);
  }
}
