// CPU op benchmarks at SD-1.5 shapes. bench_gemm's large square figure is "the machine's peak as
// measured by our own GEMM", which the network benchmarks divide by.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "bench.h"
#include "core/tensor.h"
#include "ops/backend.h"

using namespace pia;

namespace {

Tensor rnd(const Shape& s, float scale = 1.f) {
  static std::mt19937 g(7);
  std::normal_distribution<float> d(0.f, scale);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
  return t;
}

Backend& cpu() {
  static std::shared_ptr<Backend> b = make_cpu_backend();
  return *b;
}

std::string dims(std::initializer_list<int64_t> v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : "x") + std::to_string(x);
  return s;
}

}  // namespace

PIA_BENCH(bench_gemm) {
  struct C { int64_t M, K, N; const char* what; };
  const C cases[] = {{1024, 1024, 1024, "square"},
                     {2048, 2048, 2048, "square"},
                     {4096, 320, 320, "attn to_q/to_out, 64x64 latent"},
                     {4096, 320, 2560, "GEGLU proj, 64x64 latent"},
                     {4096, 1280, 320, "ff out, 64x64 latent"},
                     {1024, 640, 640, "to_q, 32x32 latent"},
                     {256, 1280, 1280, "to_q, 16x16 latent"},
                     {154, 768, 320, "to_k on text embeds (2x77)"},
                     {2, 1280, 1280, "time embedding"}};
  for (const C& c : cases) {
    Tensor x = rnd({c.M, c.K}), w = rnd({c.N, c.K}, 0.05f);
    Tensor none;
    const double s = bench::time_it([&] { cpu().linear(x, w, none); });
    bench::report("linear " + dims({c.M, c.K, c.N}) + " (" + c.what + ")", s, 2.0 * c.M * c.K * c.N);
  }
  for (int64_t n : {1024, 2048}) {
    Tensor a = rnd({1, n, n}), b = rnd({1, n, n});
    const double s = bench::time_it([&] { cpu().matmul(a, b); });
    bench::report("matmul " + dims({n, n, n}) + " (B not transposed)", s, 2.0 * n * n * n);
  }
}

PIA_BENCH(bench_conv2d) {
  struct C { int64_t N, Cin, H, Cout, k, stride; const char* what; };
  const C cases[] = {{1, 320, 64, 320, 3, 1, "down block 0, 512 px"},
                     {1, 320, 32, 320, 3, 1, "down block 0, 256 px"},
                     {1, 640, 32, 640, 3, 1, "down block 1, 512 px"},
                     {1, 1280, 16, 1280, 3, 1, "down block 2, 512 px"},
                     {1, 1280, 8, 1280, 3, 1, "mid block, 512 px"},
                     {16, 1280, 8, 1280, 3, 1, "mid block, 512 px, 16 frames"},
                     {16, 2560, 16, 1280, 3, 1, "up block 1, 512 px, 16 frames"},
                     {16, 1280, 4, 1280, 3, 1, "mid block, 256 px, 16 frames"},
                     {1, 320, 64, 320, 3, 2, "downsample, 512 px"},
                     {1, 640, 32, 320, 1, 1, "1x1 shortcut"},
                     {1, 128, 256, 128, 3, 1, "VAE decoder up 3, 256 px"},
                     {1, 9, 64, 320, 3, 1, "conv_in (9 ch), 512 px"}};
  for (const C& c : cases) {
    Tensor x = rnd({c.N, c.Cin, c.H, c.H}), w = rnd({c.Cout, c.Cin, c.k, c.k}, 0.05f), b = rnd({c.Cout});
    const Conv2dParams p = c.stride == 2 ? Conv2dParams{2, 0, 1, 0, 1} : Conv2dParams::same(int(c.k / 2));
    const int64_t Ho = (c.H + p.pad_top + p.pad_bottom - c.k) / c.stride + 1;
    const double s = bench::time_it([&] { cpu().conv2d(x, w, b, p); });
    bench::report("conv2d " + dims({c.N, c.Cin, c.H, c.H}) + " -> " + std::to_string(c.Cout) + " k" +
                      std::to_string(c.k) + " s" + std::to_string(c.stride) + " (" + c.what + ")",
                  s, 2.0 * c.N * c.Cout * Ho * Ho * c.Cin * c.k * c.k);
  }
}

PIA_BENCH(bench_attention) {
  struct C { int64_t B, Sq, Sk, H, D; const char* what; };
  const C cases[] = {{1, 4096, 4096, 8, 40, "self-attn 64x64 latent (512 px)"},
                     {1, 1024, 1024, 8, 80, "self-attn 32x32 latent"},
                     {1, 4096, 77, 8, 40, "cross-attn 64x64 latent"},
                     {1, 1024, 1024, 8, 40, "self-attn 32x32 latent (256 px)"},
                     {4096, 16, 16, 8, 40, "temporal attn, 16 frames, 64x64"},
                     {2, 77, 77, 12, 64, "CLIP text (causal)"}};
  for (const C& c : cases) {
    Tensor q = rnd({c.B, c.Sq, c.H * c.D}), k = rnd({c.B, c.Sk, c.H * c.D}), v = rnd({c.B, c.Sk, c.H * c.D});
    AttentionParams p;
    p.heads = int(c.H);
    p.scale = 1.f / std::sqrt(float(c.D));
    p.causal = c.Sq == 77 && c.Sk == 77;
    const double s = bench::time_it([&] { cpu().attention(q, k, v, p); });
    bench::report("attention B" + std::to_string(c.B) + " " + dims({c.Sq, c.Sk}) + " H" + std::to_string(c.H) + " D" +
                      std::to_string(c.D) + " (" + c.what + ")",
                  s, 4.0 * c.B * c.H * c.Sq * c.Sk * c.D);
  }
}

PIA_BENCH(bench_temporal_attention) {
  // Motion modules: the 16 frames of every pixel attend to each other, CFG batch 2.
  struct C { int64_t B, F, HW, H, D; const char* what; };
  const C cases[] = {{2, 16, 1024, 8, 40, "32x32 latent (256 px)"}, {2, 16, 4096, 8, 40, "64x64 latent (512 px)"}};
  for (const C& c : cases) {
    Tensor q = rnd({c.B * c.F, c.HW, c.H * c.D}), k = rnd({c.B * c.F, c.HW, c.H * c.D}), v = rnd({c.B * c.F, c.HW, c.H * c.D});
    AttentionParams p;
    p.heads = int(c.H);
    p.scale = 1.f / std::sqrt(float(c.D));
    const double flops = 4.0 * c.B * c.HW * c.H * c.F * c.F * c.D;
    const std::string shape = " [" + std::to_string(c.B * c.F) + ", " + std::to_string(c.HW) + ", " +
                              std::to_string(c.H * c.D) + "] F" + std::to_string(c.F) + " (" + c.what + ")";
    bench::report("temporal_attention in place" + shape, bench::time_it([&] { cpu().temporal_attention(q, k, v, c.F, p); }), flops);
    bench::report("  permute + attention + permute" + shape,
                  bench::time_it([&] { cpu().Backend::temporal_attention(q, k, v, c.F, p); }), flops);
  }
}

PIA_BENCH(bench_norm_and_elementwise) {
  Tensor x = rnd({16, 320, 64, 64}), g = rnd({320}), b = rnd({320});
  bench::report("group_norm+silu [16, 320, 64, 64] (16 frames, 512 px)",
                bench::time_it([&] { cpu().group_norm(x, 32, g, b, 1e-5f, Activation::SiLU); }));
  Tensor t = rnd({16, 4096, 320}), lg = rnd({320}), lb = rnd({320});
  bench::report("layer_norm [16, 4096, 320]", bench::time_it([&] { cpu().layer_norm(t, lg, lb, 1e-5f); }));
  Tensor h = rnd({4096, 2560});
  bench::report("geglu [4096, 2560]", bench::time_it([&] { cpu().geglu(h); }));
  Tensor y = rnd({16, 320, 64, 64});
  bench::report("binary add [16, 320, 64, 64] + [320, 1, 1]",
                bench::time_it([&] { cpu().binary(BinaryOp::Add, y, g.reshape({320, 1, 1})); }));
  bench::report("add_ [16, 320, 64, 64]", bench::time_it([&] { cpu().add_(y, x); }));
  Tensor u = rnd({16, 640, 32, 32});
  bench::report("upsample_nearest2x [16, 640, 32, 32]", bench::time_it([&] { cpu().upsample_nearest2x(u); }));
  Tensor seq = rnd({16, 320, 4096});
  bench::report("contiguous of permute [16, 320, 4096] -> [16, 4096, 320]",
                bench::time_it([&] { cpu().contiguous(seq.permute({0, 2, 1})); }));
  Tensor f = rnd({32, 640, 32, 32});
  bench::report("fourier_filter [32, 640, 32, 32] (FreeU skip, 512 px)",
                bench::time_it([&] { cpu().fourier_filter(f, 1, 0.9f); }));
}
