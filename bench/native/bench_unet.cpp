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

#include "bench.h"
#include "core/json.h"
#include "core/thread_pool.h"
#include "nn/unet_motion_model.h"
#include "ops/backend.h"

using namespace pia;

namespace {

// SD-1.5's unet/config.json and PIA's adapter config (diffusers keys).
const char* kUnetConfig = R"({"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
  "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]})";
const char* kAdapterConfig = R"({"_class_name": "MotionAdapter", "block_out_channels": [320, 640, 1280, 1280],
  "conv_in_channels": 9, "motion_layers_per_block": 2, "motion_max_seq_length": 32,
  "motion_mid_block_layers_per_block": 1, "motion_norm_num_groups": 32, "motion_num_attention_heads": 8,
  "use_motion_mid_block": false})";

// ---- random weights under diffusers keys ---------------------------------------------------------

uint64_t g_seed = 1;

// Uniform(-bound, bound) from a counter hash, filled in parallel (1.3e9 values).
Tensor uniform(const Shape& s, float bound) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  const uint64_t seed = (g_seed++) * 0x9E3779B97F4A7C15ull;
  parallel_for(0, t.numel(), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint64_t z = seed + uint64_t(i) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
      z ^= z >> 29;
      p[i] = bound * (float(z >> 40) * (2.f / 16777216.f) - 1.f);
    }
  });
  return t;
}

Tensor filled(const Shape& s, float v) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = v;
  return t;
}

struct Gen {
  WeightStore& w;
  void linear(const std::string& p, int64_t in, int64_t out, bool bias = true) {
    const float b = 1.f / std::sqrt(float(in));
    w.put(p + ".weight", uniform({out, in}, b));
    if (bias) w.put(p + ".bias", uniform({out}, b));
  }
  void conv(const std::string& p, int64_t in, int64_t out, int64_t k) {
    const float b = 1.f / std::sqrt(float(in * k * k));
    w.put(p + ".weight", uniform({out, in, k, k}, b));
    w.put(p + ".bias", uniform({out}, b));
  }
  void norm(const std::string& p, int64_t c) {
    w.put(p + ".weight", filled({c}, 1.f));
    w.put(p + ".bias", filled({c}, 0.f));
  }
  void resnet(const std::string& p, int64_t in, int64_t out, int64_t temb) {
    norm(p + ".norm1", in);
    conv(p + ".conv1", in, out, 3);
    linear(p + ".time_emb_proj", temb, out);
    norm(p + ".norm2", out);
    conv(p + ".conv2", out, out, 3);
    if (in != out) conv(p + ".conv_shortcut", in, out, 1);
  }
  void attention(const std::string& p, int64_t c, int64_t kv) {
    linear(p + ".to_q", c, c, false);
    linear(p + ".to_k", kv, c, false);
    linear(p + ".to_v", kv, c, false);
    linear(p + ".to_out.0", c, c);
  }
  void block(const std::string& p, int64_t c, int64_t cross) {
    norm(p + ".norm1", c);
    attention(p + ".attn1", c, c);
    norm(p + ".norm2", c);
    attention(p + ".attn2", c, cross ? cross : c);
    norm(p + ".norm3", c);
    linear(p + ".ff.net.0.proj", c, 8 * c);
    linear(p + ".ff.net.2", 4 * c, c);
  }
  void transformer_2d(const std::string& p, int64_t c, int64_t cross) {
    norm(p + ".norm", c);
    conv(p + ".proj_in", c, c, 1);
    block(p + ".transformer_blocks.0", c, cross);
    conv(p + ".proj_out", c, c, 1);
  }
  void motion_module(const std::string& p, int64_t c) {
    norm(p + ".norm", c);
    linear(p + ".proj_in", c, c);
    block(p + ".transformer_blocks.0", c, 0);
    linear(p + ".proj_out", c, c);
  }
};

// Every key of the SD-1.5 UNet (into `unet`) and of the PIA adapter (into `adapter`).
void make_weights(const nn::UNetMotionModelConfig& c, WeightStore& unet, WeightStore& adapter) {
  Gen u{unet}, a{adapter};
  const auto& ch = c.block_out_channels;
  const int64_t C0 = ch[0], temb = 4 * C0, n = int64_t(ch.size()), X = c.cross_attention_dim;
  u.conv("conv_in", 4, C0, 3);
  a.conv("conv_in", c.conv_in_channels, C0, 3);
  u.linear("time_embedding.linear_1", C0, temb);
  u.linear("time_embedding.linear_2", temb, temb);
  int64_t out = C0;
  for (int64_t i = 0; i < n; ++i) {
    const std::string p = "down_blocks." + std::to_string(i);
    const int64_t in = out;
    out = ch[size_t(i)];
    for (int l = 0; l < c.layers_per_block; ++l) {
      const std::string L = std::to_string(l);
      u.resnet(p + ".resnets." + L, l == 0 ? in : out, out, temb);
      if (c.down_block_types[size_t(i)] == "CrossAttnDownBlockMotion") u.transformer_2d(p + ".attentions." + L, out, X);
      a.motion_module(p + ".motion_modules." + L, out);
    }
    if (i + 1 < n) u.conv(p + ".downsamplers.0.conv", out, out, 3);
  }
  const int64_t top = ch.back();
  u.resnet("mid_block.resnets.0", top, top, temb);
  u.transformer_2d("mid_block.attentions.0", top, X);
  u.resnet("mid_block.resnets.1", top, top, temb);
  if (c.use_motion_mid_block) a.motion_module("mid_block.motion_modules.0", top);
  out = ch.back();
  for (int64_t i = 0; i < n; ++i) {
    const std::string p = "up_blocks." + std::to_string(i);
    const int64_t prev = out;
    out = ch[size_t(n - 1 - i)];
    const int64_t in = ch[size_t(std::max<int64_t>(n - 2 - i, 0))];
    for (int l = 0; l <= c.layers_per_block; ++l) {
      const std::string L = std::to_string(l);
      const int64_t skip = l == c.layers_per_block ? in : out;
      u.resnet(p + ".resnets." + L, (l == 0 ? prev : out) + skip, out, temb);
      if (c.up_block_types[size_t(i)] == "CrossAttnUpBlockMotion") u.transformer_2d(p + ".attentions." + L, out, X);
      a.motion_module(p + ".motion_modules." + L, out);
    }
    if (i + 1 < n) u.conv(p + ".upsamplers.0.conv", out, out, 3);
  }
  u.norm("conv_norm_out", C0);
  u.conv("conv_out", C0, c.out_channels, 3);
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
  Tensor layer_norm(const Tensor& x, const Tensor& g, const Tensor& b, float eps) override { Timed _t{*this, "layer_norm"};
    return b_->layer_norm(x, g, b, eps);
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) override { Timed _t{*this, "attention"};
    // q·kᵀ and p·v: 2·B·Sq·Sk·(D + Dv) over all heads.
    flops += 2.0 * double(q.size(0)) * double(q.size(1)) * double(k.size(1)) * double(q.size(2) + v.size(2));
    return b_->attention(q, k, v, p);
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
    make_weights(config, unet, adapter);
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
