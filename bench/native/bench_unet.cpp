// One UNetMotionModel forward of the real SD-1.5 + PIA architecture (openmmlab/PIA-condition-adapter
// over runwayml/stable-diffusion-v1-5 configs) with random weights made here: latent 32×32 (256 px),
// 8 frames, batch 2 (classifier-free guidance). Prints seconds per forward, GFLOP/s over the FLOPs of
// its convolutions, linears and attention (counted by wrapping the backend), that figure as a
// fraction of our own large-GEMM rate measured in the same run, and peak resident memory.
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <map>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "../../test/native/sd15_random_weights.h"
#include "bench.h"
#include "core/json.h"
#include "core/thread_pool.h"
#include "nn/unet_motion_model.h"
#include "ops/backend.h"

using namespace pia;

namespace {

// SD-1.5's and PIA's configs and random weights under diffusers keys: test/native/sd15_random_weights.h.
using sd15::kAdapterConfig;
using sd15::kUnetConfig;

Tensor uniform(const Shape& s, float bound) {
  static uint64_t seed = 1u << 20;  // apart from the weights' seeds
  return sd15::uniform(s, bound, seed++);
}

// ---- FLOP counting: the CPU backend, with linear/matmul/conv2d/attention counted ------------------

class CountingBackend : public Backend {
 public:
  explicit CountingBackend(std::shared_ptr<Backend> inner) : b_(std::move(inner)) {}
  double flops = 0;
  // Seconds spent per op kind (where a forward's time goes).
  std::map<std::string, double> seconds;
  struct Timed {
    CountingBackend& self;
    const char* op;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    ~Timed() { self.seconds[op] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
  };

  std::string name() const override { return b_->name(); }
  Device device() const override { return b_->device(); }
  Tensor upload(const Tensor& h) override { return b_->upload(h); }
  Tensor from_host(const Tensor& h) override { Timed _t{*this, "from_host"}; return b_->from_host(h); }
  Tensor to_host(const Tensor& x) override { Timed _t{*this, "to_host"}; return b_->to_host(x); }
  Tensor zeros(const Shape& s) override { return b_->zeros(s); }
  Tensor contiguous(const Tensor& x) override { Timed _t{*this, "contiguous"}; return b_->contiguous(x); }
  Tensor cat(const std::vector<Tensor>& xs, int dim) override { Timed _t{*this, "cat"}; return b_->cat(xs, dim); }
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, Activation act) override { Timed _t{*this, "linear"};
    flops += 2.0 * double(x.numel() / x.size(-1)) * double(w.size(0)) * double(w.size(1));
    return b_->linear(x, w, bias, act);
  }
  Tensor matmul(const Tensor& a, const Tensor& b, bool trans_b) override { Timed _t{*this, "matmul"};
    const double M = double(a.size(-2)), K = double(a.size(-1)), N = double(trans_b ? b.size(-2) : b.size(-1));
    const double batch = a.dim() == 3 ? double(a.size(0)) : 1.0;
    flops += 2.0 * batch * M * K * N;
    return b_->matmul(a, b, trans_b);
  }
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) override { Timed _t{*this, "conv2d"};
    Tensor y = b_->conv2d(x, w, bias, p);
    flops += 2.0 * double(y.numel()) * double(w.size(1) * w.size(2) * w.size(3));
    return y;
  }
  Tensor group_norm(const Tensor& x, int g, const Tensor& gm, const Tensor& bt, float eps, Activation act) override { Timed _t{*this, "group_norm"};
    return b_->group_norm(x, g, gm, bt, eps, act);
  }
  Tensor group_norm_frames(const Tensor& x, int64_t f, int g, const Tensor& gm, const Tensor& bt, float eps) override { Timed _t{*this, "group_norm"};
    return b_->group_norm_frames(x, f, g, gm, bt, eps);
  }
  Tensor layer_norm(const Tensor& x, const Tensor& g, const Tensor& b, float eps) override { Timed _t{*this, "layer_norm"};
    return b_->layer_norm(x, g, b, eps);
  }
  Tensor layer_norm_add(const Tensor& x, const Tensor& g, const Tensor& b, float eps, const Tensor& a, int64_t div) override {
    Timed _t{*this, "layer_norm"};
    return b_->layer_norm_add(x, g, b, eps, a, div);
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) override { Timed _t{*this, "attention"};
    // q·kᵀ and p·v: 2·B·Sq·Sk·(D + Dv) over all heads.
    flops += 2.0 * double(q.size(0)) * double(q.size(1)) * double(k.size(1)) * double(q.size(2) + v.size(2));
    return b_->attention(q, k, v, p);
  }
  Tensor temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t f,
                            const AttentionParams& p) override { Timed _t{*this, "attention"};
    flops += 2.0 * double(q.size(0)) * double(q.size(1)) * double(f) * double(q.size(2) + v.size(2));
    return b_->temporal_attention(q, k, v, f, p);
  }
  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override { Timed _t{*this, "binary"}; return b_->binary(op, a, b); }
  void add_(Tensor& a, const Tensor& b, float alpha) override { Timed _t{*this, "add_"}; b_->add_(a, b, alpha); }
  Tensor affine(const Tensor& x, float s, float t) override { Timed _t{*this, "affine"}; return b_->affine(x, s, t); }
  Tensor activation(const Tensor& x, Activation act) override { Timed _t{*this, "activation"}; return b_->activation(x, act); }
  Tensor geglu(const Tensor& x) override { Timed _t{*this, "geglu"}; return b_->geglu(x); }
  Tensor upsample_nearest2x(const Tensor& x) override { Timed _t{*this, "upsample_nearest2x"}; return b_->upsample_nearest2x(x); }
  Tensor embedding(const Tensor& t, const std::vector<int64_t>& ids) override { return b_->embedding(t, ids); }
  Tensor timestep_embedding(const std::vector<float>& t, int dim, bool flip, float shift) override {
    return b_->timestep_embedding(t, dim, flip, shift);
  }
  Tensor fourier_filter(const Tensor& x, int threshold, float scale) override { Timed _t{*this, "fourier_filter"};
    return b_->fourier_filter(x, threshold, scale);
  }

 private:
  std::shared_ptr<Backend> b_;
};

// Process CPU seconds (all threads): on a shared machine, work per CPU-second is what the code
// achieves regardless of how many cores other processes left it.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}

}  // namespace

PIA_BENCH(bench_unet_motion_sd15_pia) {
  using clock = std::chrono::steady_clock;
  auto cpu = make_cpu_backend();

  // The machine's peak as our own GEMM reaches it, measured in this run.
  double gemm_gflops = 0, gemm_per_cpu_s = 0;
  {
    const int64_t n = 2048;
    Tensor x = uniform({n, n}, 1.f), w = uniform({n, n}, 0.05f), none;
    const double s = bench::time_it([&] { cpu->linear(x, w, none); });
    gemm_gflops = 2.0 * double(n * n * n) / s * 1e-9;
    bench::report("reference GEMM linear 2048x2048x2048", s, 2.0 * double(n * n * n));
    const double c0 = cpu_seconds();
    for (int i = 0; i < 5; ++i) cpu->linear(x, w, none);
    gemm_per_cpu_s = 5 * 2.0 * double(n * n * n) / (cpu_seconds() - c0) * 1e-9;
    std::printf("  reference GEMM: %.1f GFLOP per CPU-second\n", gemm_per_cpu_s);
  }

  const auto t0 = clock::now();
  const JsonValue ucfg = parse_json(kUnetConfig, std::strlen(kUnetConfig));
  const JsonValue acfg = parse_json(kAdapterConfig, std::strlen(kAdapterConfig));
  const auto config = nn::UNetMotionModelConfig::from_unet2d(ucfg, acfg);
  auto counting = std::make_shared<CountingBackend>(cpu);
  std::unique_ptr<nn::UNetMotionModel> model;
  {
    WeightStore unet, adapter;
    unet.set_label("unet");
    adapter.set_label("motion_adapter");
    sd15::unet_weights(config, unet, adapter);
    model = std::make_unique<nn::UNetMotionModel>(counting, config, unet, adapter);
  }
  const double load_s = std::chrono::duration<double>(clock::now() - t0).count();
  std::printf("  random SD-1.5 + PIA weights built and bound in %.1f s, peak RSS so far %.2f GiB\n", load_s, peak_rss_gib());

  const int64_t B = 2, F = 8, H = 32, W = 32;
  Tensor sample = uniform({B, config.in_channels, F, H, W}, 1.f);
  Tensor ehs = uniform({B, 77, config.cross_attention_dim}, 1.f);
  counting->flops = 0;
  counting->seconds.clear();
  const auto t1 = clock::now();
  const double c1 = cpu_seconds();
  Tensor out = model->forward(sample, 999.f, ehs);
  const double first_cpu = cpu_seconds() - c1;
  const double first_s = std::chrono::duration<double>(clock::now() - t1).count();
  const double flops = counting->flops;
  double sum = 0;
  for (int64_t i = 0; i < out.numel(); ++i) sum += std::fabs(out.data<float>()[i]);
  std::printf("  output %s, mean |out| %.4f\n", shape_str(out.shape()).c_str(), sum / double(out.numel()));

  // One more timed forward when the first took under a minute (the fastest counts).
  double best = first_s;
  if (first_s < 60) {
    const auto t2 = clock::now();
    model->forward(sample, 999.f, ehs);
    best = std::min(best, std::chrono::duration<double>(clock::now() - t2).count());
  }
  const double gflops = flops / best * 1e-9;
  bench::report("UNetMotion forward, SD-1.5 + PIA, B=2 F=8 32x32", best, flops);
  std::printf("  %.1f GFLOP per forward (convs %s linears and attention), %.1f GFLOP/s = %.1f%% of the GEMM's %.1f GFLOP/s\n",
              flops * 1e-9, "+", gflops, 100.0 * gflops / gemm_gflops, gemm_gflops);
  std::printf("  first forward: %.1f s wall, %.1f CPU-s -> %.1f GFLOP per CPU-second = %.1f%% of the GEMM's %.1f\n", first_s,
              first_cpu, flops / first_cpu * 1e-9, 100.0 * (flops / first_cpu * 1e-9) / gemm_per_cpu_s, gemm_per_cpu_s);
  std::printf("  threads %d, peak RSS %.2f GiB\n", ThreadPool::global()->size(), peak_rss_gib());
  std::printf("  time by op over the timed forwards:\n");
  double total = 0;
  for (const auto& kv : counting->seconds) total += kv.second;
  for (const auto& kv : counting->seconds) {
    if (kv.second > 0.001 * total) std::printf("    %-20s %8.2f s  %5.1f%%\n", kv.first.c_str(), kv.second, 100 * kv.second / total);
  }
}
