// The canonical GPU job on the real SD-1.5 + PIA architecture with random weights: one
// UNetMotionModel step at 512×512 (64×64 latents), 16 frames, CFG batch 2; one VAE decode of the
// 16 frames; the estimate of a 25-step job. Prints seconds, achieved TFLOP/s (FLOPs of the
// convolutions, linears and attention, counted by wrapping the backend), that as a fraction of
// our own large GEMM's rate measured in the same run, and peak GPU memory. Skips cleanly when
// cuda_api() is null. Run: pia_native_bench cuda [--dtype f16|bf16|f32 via PIA_BENCH_DTYPE]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "../../test/native/sd15_random_weights.h"
#include "bench.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_loader.h"
#include "ops/backend.h"

using namespace pia;

namespace {

bool skip(const char* what) {
  if (cuda_api()) return false;
  std::printf("  skip %s: %s\n", what, cuda_status().reason.c_str());
  return true;
}

// PIA_BENCH_DTYPE=f16|bf16|f32 (default bf16: SD-1.5's VAE overflows in f16 with real weights).
DType bench_dtype() {
  const char* s = std::getenv("PIA_BENCH_DTYPE");
  if (s && !std::strcmp(s, "f16")) return DType::F16;
  if (s && !std::strcmp(s, "f32")) return DType::F32;
  return DType::BF16;
}

double gib(size_t b) { return double(b) / (1024.0 * 1024.0 * 1024.0); }

// Delegates every op, adding the multiply-add FLOPs (×2) of the heavy ones.
class FlopCounter final : public Backend {
 public:
  explicit FlopCounter(std::shared_ptr<Backend> inner) : b_(std::move(inner)) {}
  double flops = 0;

  std::string name() const override { return b_->name(); }
  Device device() const override { return b_->device(); }
  Tensor upload(const Tensor& h) override { return b_->upload(h); }
  Tensor from_host(const Tensor& h) override { return b_->from_host(h); }
  Tensor to_host(const Tensor& x) override { return b_->to_host(x); }
  Tensor zeros(const Shape& s) override { return b_->zeros(s); }
  Tensor contiguous(const Tensor& x) override { return b_->contiguous(x); }
  Tensor cat(const std::vector<Tensor>& xs, int dim) override { return b_->cat(xs, dim); }
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Activation act) override {
    flops += 2.0 * double(x.numel() / x.size(-1)) * double(w.size(0)) * double(w.size(1));
    return b_->linear(x, w, b, act);
  }
  Tensor matmul(const Tensor& a, const Tensor& b, bool tb) override {
    Tensor y = b_->matmul(a, b, tb);
    flops += 2.0 * double(y.numel()) * double(a.size(-1));
    return y;
  }
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) override {
    Tensor y = b_->conv2d(x, w, b, p);
    flops += 2.0 * double(y.numel()) * double(w.size(1) * w.size(2) * w.size(3));
    return y;
  }
  Tensor group_norm(const Tensor& x, int g, const Tensor& ga, const Tensor& be, float eps, Activation a) override {
    return b_->group_norm(x, g, ga, be, eps, a);
  }
  Tensor group_norm_frames(const Tensor& x, int64_t f, int g, const Tensor& ga, const Tensor& be, float eps) override {
    return b_->group_norm_frames(x, f, g, ga, be, eps);
  }
  Tensor layer_norm(const Tensor& x, const Tensor& g, const Tensor& b, float eps) override {
    return b_->layer_norm(x, g, b, eps);
  }
  Tensor layer_norm_add(const Tensor& x, const Tensor& g, const Tensor& b, float eps, const Tensor& a,
                        int64_t div) override {
    return b_->layer_norm_add(x, g, b, eps, a, div);
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) override {
    flops += 2.0 * double(q.size(0)) * double(q.size(1)) * double(k.size(1)) * double(q.size(2) + v.size(2));
    return b_->attention(q, k, v, p);
  }
  Tensor temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t f,
                            const AttentionParams& p) override {
    flops += 2.0 * double(q.size(0)) * double(q.size(1)) * double(f) * double(q.size(2) + v.size(2));
    return b_->temporal_attention(q, k, v, f, p);
  }
  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override { return b_->binary(op, a, b); }
  void add_(Tensor& a, const Tensor& b, float alpha) override { b_->add_(a, b, alpha); }
  Tensor affine(const Tensor& x, float s, float t) override { return b_->affine(x, s, t); }
  Tensor activation(const Tensor& x, Activation a) override { return b_->activation(x, a); }
  Tensor geglu(const Tensor& x) override { return b_->geglu(x); }
  Tensor upsample_nearest2x(const Tensor& x) override { return b_->upsample_nearest2x(x); }
  Tensor embedding(const Tensor& t, const std::vector<int64_t>& ids) override { return b_->embedding(t, ids); }
  Tensor timestep_embedding(const std::vector<float>& t, int dim, bool flip, float shift) override {
    return b_->timestep_embedding(t, dim, flip, shift);
  }
  Tensor fourier_filter(const Tensor& x, int t, float s) override { return b_->fourier_filter(x, t, s); }
  void set_weights_resident(bool on) override { b_->set_weights_resident(on); }
  // Captured steps pass through (a replay issues no ops, so only eager calls are counted).
  bool can_capture() const override { return b_->can_capture(); }
  void begin_capture() override { b_->begin_capture(); }
  std::unique_ptr<CapturedStep> end_capture() override { return b_->end_capture(); }
  void abort_capture() noexcept override { b_->abort_capture(); }
  uint64_t weights_generation() const override { return b_->weights_generation(); }
  void copy_into(Tensor& dst, const Tensor& src) override { b_->copy_into(dst, src); }

 private:
  std::shared_ptr<Backend> b_;
};

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Our GEMM's rate on a large square problem: the "peak" the networks are measured against.
double gemm_tflops(Backend& be, int64_t n) {
  Tensor x = be.from_host(sd15::uniform({n, n}, 1.f, 3)), w = be.upload(sd15::uniform({n, n}, 0.02f, 4)), none;
  be.linear(x, w, none);
  cuda_synchronize(0);
  const int reps = 5;
  cuda_timer_start(0);
  for (int i = 0; i < reps; ++i) be.linear(x, w, none);
  const double s = cuda_timer_stop(0) / reps;
  const double t = 2.0 * double(n) * double(n) * double(n) / s * 1e-12;
  std::printf("  GEMM %lldx%lldx%lld (%s): %.3f ms, %.1f TFLOP/s\n", (long long)n, (long long)n, (long long)n,
              be.name().c_str(), s * 1e3, t);
  return t;
}

// Who ran the convolutions between two snapshots of the counters (cuDNN or our kernel).
void print_conv_routing(const PiaConvStats& a, const PiaConvStats& b) {
  const OptionalLibrary& lib = cuda_status().cudnn;
  std::printf("  convolutions: %llu on cuDNN, %llu on our implicit-GEMM kernel; shapes timed %llu, "
              "cuDNN faster on %llu (cuDNN %s%s)\n",
              (unsigned long long)(b.cudnn_calls - a.cudnn_calls), (unsigned long long)(b.own_calls - a.own_calls),
              (unsigned long long)(b.shapes_timed - a.shapes_timed),
              (unsigned long long)(b.shapes_cudnn_won - a.shapes_cudnn_won),
              lib.in_use ? lib.version.c_str() : "not in use: ", lib.in_use ? "" : lib.note.c_str());
  if (b.cudnn_failures > a.cudnn_failures) std::printf("  cuDNN failures: %llu, last: %s\n",
                                                       (unsigned long long)(b.cudnn_failures - a.cudnn_failures),
                                                       b.last_failure);
}

// Sets the process's convolution policy for one scope (PIA_CUDA_CONV_* of cuda_api.h).
struct ConvPolicy {
  int old;
  explicit ConvPolicy(int p) : old(cuda_set_conv_policy(p)) {}
  ~ConvPolicy() {
    if (old >= 0) cuda_set_conv_policy(old);
  }
};

// One of SD-1.5's distinct convolutions at 512×512, 16 frames: N images of C×H×H, Co outputs,
// k×k kernel (padding k/2), `count` times per UNet step (CFG batch 2 × 16 frames = 32 images) or
// per VAE decode of the 16 frames.
struct ConvShape {
  const char* net;
  int64_t N, C, H, Co, k;
  int stride, count;
};

const ConvShape kSd15Convs[] = {
    {"unet", 32, 9, 64, 320, 3, 1, 1},     {"unet", 32, 320, 64, 320, 3, 1, 7},   {"unet", 32, 320, 64, 320, 3, 2, 1},
    {"unet", 32, 320, 32, 640, 3, 1, 1},   {"unet", 32, 640, 32, 640, 3, 1, 6},   {"unet", 32, 320, 32, 640, 1, 1, 1},
    {"unet", 32, 640, 32, 640, 3, 2, 1},   {"unet", 32, 640, 16, 1280, 3, 1, 1},  {"unet", 32, 1280, 16, 1280, 3, 1, 7},
    {"unet", 32, 640, 16, 1280, 1, 1, 1},  {"unet", 32, 1280, 16, 1280, 3, 2, 1}, {"unet", 32, 1280, 8, 1280, 3, 1, 11},
    {"unet", 32, 2560, 8, 1280, 3, 1, 3},  {"unet", 32, 2560, 8, 1280, 1, 1, 3},  {"unet", 32, 2560, 16, 1280, 3, 1, 2},
    {"unet", 32, 1920, 16, 1280, 3, 1, 1}, {"unet", 32, 2560, 16, 1280, 1, 1, 2}, {"unet", 32, 1920, 16, 1280, 1, 1, 1},
    {"unet", 32, 1280, 32, 1280, 3, 1, 1}, {"unet", 32, 1920, 32, 640, 3, 1, 1},  {"unet", 32, 1280, 32, 640, 3, 1, 1},
    {"unet", 32, 960, 32, 640, 3, 1, 1},   {"unet", 32, 1920, 32, 640, 1, 1, 1},  {"unet", 32, 1280, 32, 640, 1, 1, 1},
    {"unet", 32, 960, 32, 640, 1, 1, 1},   {"unet", 32, 640, 64, 640, 3, 1, 1},   {"unet", 32, 960, 64, 320, 3, 1, 1},
    {"unet", 32, 640, 64, 320, 3, 1, 2},   {"unet", 32, 960, 64, 320, 1, 1, 1},   {"unet", 32, 640, 64, 320, 1, 1, 2},
    {"unet", 32, 320, 64, 4, 3, 1, 1},
    {"vae", 16, 4, 64, 4, 1, 1, 1},        {"vae", 16, 4, 64, 512, 3, 1, 1},      {"vae", 16, 512, 64, 512, 3, 1, 10},
    {"vae", 16, 512, 128, 512, 3, 1, 7},   {"vae", 16, 512, 256, 512, 3, 1, 1},   {"vae", 16, 512, 256, 256, 3, 1, 1},
    {"vae", 16, 256, 256, 256, 3, 1, 5},   {"vae", 16, 512, 256, 256, 1, 1, 1},   {"vae", 16, 256, 512, 256, 3, 1, 1},
    {"vae", 16, 256, 512, 128, 3, 1, 1},   {"vae", 16, 128, 512, 128, 3, 1, 5},   {"vae", 16, 256, 512, 128, 1, 1, 1},
    {"vae", 16, 128, 512, 3, 3, 1, 1},
};

// Device seconds per conv2d call: one call first (under TUNED the shape's timing happens there).
double time_conv(Backend& be, const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  be.conv2d(x, w, b, p);
  cuda_synchronize(0);
  const int reps = 3;
  cuda_timer_start(0);
  for (int i = 0; i < reps; ++i) be.conv2d(x, w, b, p);
  return cuda_timer_stop(0) / reps;
}

}  // namespace

// Each of SD-1.5's distinct convolutions on our implicit-GEMM kernel and on cuDNN (its heuristic
// algorithm), with ms and TFLOP/s, and the sums over a UNet step and a VAE decode: ours only,
// cuDNN only, and the faster of the two per shape (what PIA_CUDA_CONV_TUNED picks when its own
// timing agrees). PIA_BENCH_DTYPE as for the job below.
PIA_BENCH(bench_cuda_conv) {
  if (skip("bench_cuda_conv")) return;
  const DType dt = bench_dtype();
  auto be = make_cuda_backend(0, dt);
  const OptionalLibrary& lib = cuda_status().cudnn;
  const bool have_cudnn = lib.in_use;
  std::printf("  convolutions of SD-1.5 + PIA at 512x512, 16 frames (%s); cuDNN %s%s\n", dtype_name(dt),
              have_cudnn ? lib.version.c_str() : "not in use: ", have_cudnn ? "" : lib.note.c_str());
  struct Sum {
    double ours = 0, cudnn = 0, best = 0;
  };
  Sum unet, vae;
  uint64_t seed = 40;
  for (const ConvShape& c : kSd15Convs) {
    const Conv2dParams p = Conv2dParams::same(int(c.k / 2), c.stride);
    const int64_t Ho = (c.H + 2 * (c.k / 2) - c.k) / c.stride + 1;
    const double flops = 2.0 * double(c.N) * double(c.Co) * double(Ho * Ho) * double(c.C * c.k * c.k);
    const Tensor x = be->from_host(sd15::uniform({c.N, c.C, c.H, c.H}, 1.f, seed++));
    const Tensor w = be->upload(sd15::uniform({c.Co, c.C, c.k, c.k}, 1.f / std::sqrt(float(c.C * c.k * c.k)), seed++));
    const Tensor b = be->upload(sd15::uniform({c.Co}, 0.1f, seed++));
    double t_ours = 0, t_cudnn = 0;
    {
      ConvPolicy policy(PIA_CUDA_CONV_OURS);
      t_ours = time_conv(*be, x, w, b, p);
    }
    bool ran_cudnn = false;
    if (have_cudnn) {
      ConvPolicy policy(PIA_CUDA_CONV_CUDNN_ALL);
      const uint64_t before = cuda_conv_stats().cudnn_calls;
      t_cudnn = time_conv(*be, x, w, b, p);
      ran_cudnn = cuda_conv_stats().cudnn_calls > before;
    }
    char line[160];
    std::snprintf(line, sizeof line, "%-4s %4lld->%-4lld %lldx%lld%s @%lld N%lld x%d", c.net, (long long)c.C,
                  (long long)c.Co, (long long)c.k, (long long)c.k, c.stride == 2 ? " s2" : "   ", (long long)c.H,
                  (long long)c.N, c.count);
    std::printf("  %-40s ours %8.3f ms %6.1f TFLOP/s", line, t_ours * 1e3, flops / t_ours * 1e-12);
    if (ran_cudnn) {
      std::printf("  cuDNN %8.3f ms %6.1f TFLOP/s  %s %.2fx\n", t_cudnn * 1e3, flops / t_cudnn * 1e-12,
                  t_cudnn < t_ours ? "cuDNN" : "ours ", t_cudnn < t_ours ? t_ours / t_cudnn : t_cudnn / t_ours);
    } else {
      std::printf("  cuDNN %s\n", have_cudnn ? "declined (see cuDNN failures below)" : "-");
      t_cudnn = t_ours;
    }
    Sum& s = std::string(c.net) == "unet" ? unet : vae;
    s.ours += c.count * t_ours;
    s.cudnn += c.count * t_cudnn;
    s.best += c.count * std::min(t_ours, t_cudnn);
  }
  std::printf("  UNet step convolutions: ours %.1f ms, cuDNN %.1f ms, faster per shape %.1f ms\n", unet.ours * 1e3,
              unet.cudnn * 1e3, unet.best * 1e3);
  std::printf("  VAE decode convolutions: ours %.1f ms, cuDNN %.1f ms, faster per shape %.1f ms\n", vae.ours * 1e3,
              vae.cudnn * 1e3, vae.best * 1e3);
  const PiaConvStats s = cuda_conv_stats();
  if (s.cudnn_failures) {
    std::printf("  cuDNN failures: %llu, last: %s\n", (unsigned long long)s.cudnn_failures, s.last_failure);
  }
}

PIA_BENCH(bench_cuda_gemm_peak) {
  if (skip("bench_cuda_gemm_peak")) return;
  for (DType dt : {DType::F16, DType::BF16, DType::F32}) {
    auto be = make_cuda_backend(0, dt);
    gemm_tflops(*be, dt == DType::F32 ? 4096 : 8192);
  }
}

// Attention alone at SD-1.5 512×512, 16 frames, CFG (32 images, 8 heads): the three self-attention
// levels, cross-attention over 77 text tokens, and the motion modules' temporal attention (frames
// as the sequence, read in place). FLOPs: 4·Sq·Sk·D per (sequence, head) — Q·Kᵀ and P·V.
// f16/bf16 run the tensor-core kernel; with PIA_CUDA_SIMPLE_ATTENTION=1 (read once per process,
// so scripts/gpu-run.sh runs this case a second time with it) the FMA kernel, for the ratio.
PIA_BENCH(bench_cuda_attention) {
  if (skip("bench_cuda_attention")) return;
  const char* env = std::getenv("PIA_CUDA_SIMPLE_ATTENTION");
  const bool simple = env && *env && std::strcmp(env, "0") != 0;
  struct Shape {
    const char* what;
    int64_t B, Sq, Sk, H, D;
    int64_t frames;  // > 0: temporal_attention, B·frames images of Sq pixels
  };
  const Shape shapes[] = {
      {"self-attn 64x64 (4096 tokens, D40)", 32, 4096, 4096, 8, 40, 0},
      {"self-attn 32x32 (1024 tokens, D80)", 32, 1024, 1024, 8, 80, 0},
      {"self-attn 16x16 (256 tokens, D160)", 32, 256, 256, 8, 160, 0},
      {"cross-attn 64x64 x 77 text tokens (D40)", 32, 4096, 77, 8, 40, 0},
      {"temporal 16 frames x 64x64 pixels (D40)", 2, 4096, 16, 8, 40, 16},
      {"temporal 16 frames x 32x32 pixels (D80)", 2, 1024, 16, 8, 80, 16},
  };
  for (DType dt : {DType::F16, DType::BF16}) {
    auto be = make_cuda_backend(0, dt);
    for (const Shape& sh : shapes) {
      const int64_t C = sh.H * sh.D;
      Tensor q, k, v;
      double flops;
      if (sh.frames > 0) {
        q = be->from_host(sd15::uniform({sh.B * sh.frames, sh.Sq, C}, 1.f, 11));
        k = be->from_host(sd15::uniform({sh.B * sh.frames, sh.Sq, C}, 1.f, 12));
        v = be->from_host(sd15::uniform({sh.B * sh.frames, sh.Sq, C}, 1.f, 13));
        flops = 4.0 * double(sh.B * sh.Sq * sh.H) * double(sh.frames) * double(sh.frames) * double(sh.D);
      } else {
        q = be->from_host(sd15::uniform({sh.B, sh.Sq, C}, 1.f, 11));
        k = be->from_host(sd15::uniform({sh.B, sh.Sk, C}, 1.f, 12));
        v = be->from_host(sd15::uniform({sh.B, sh.Sk, C}, 1.f, 13));
        flops = 4.0 * double(sh.B * sh.H) * double(sh.Sq) * double(sh.Sk) * double(sh.D);
      }
      AttentionParams p;
      p.heads = int(sh.H);
      p.scale = float(1.0 / std::sqrt(double(sh.D)));
      auto call = [&] {
        if (sh.frames > 0) return be->temporal_attention(q, k, v, sh.frames, p);
        return be->attention(q, k, v, p);
      };
      call();  // warm-up (allocator, first launch)
      cuda_synchronize(0);
      cuda_timer_start(0);
      call();
      const double once = cuda_timer_stop(0);
      const int reps = int(std::max(1.0, std::min(20.0, 0.25 / std::max(once, 1e-6))));
      cuda_timer_start(0);
      for (int i = 0; i < reps; ++i) call();
      const double s = cuda_timer_stop(0) / reps;
      std::printf("  attention %-42s %-4s %-11s %9.3f ms %7.1f TFLOP/s\n", sh.what, dtype_name(dt),
                  simple ? "simple" : "tensor-core", s * 1e3, flops / s * 1e-12);
    }
  }
}

PIA_BENCH(bench_cuda_sd15_pia_job) {
  if (skip("bench_cuda_sd15_pia_job")) return;
  const DType dt = bench_dtype();
  auto gpu = make_cuda_backend(0, dt);
  const auto& dev = cuda_status().devices.at(0);
  std::printf("  device %s (sm_%d%d, %.1f GiB), activations and weights %s\n", dev.name.c_str(), dev.major, dev.minor,
              gib(dev.total_memory), dtype_name(dt));
  const double peak = gemm_tflops(*gpu, 8192);

  // --- UNetMotionModel step ------------------------------------------------------------------------
  const auto config = nn::UNetMotionModelConfig::from_unet2d(sd15::json(sd15::kUnetConfig), sd15::json(sd15::kAdapterConfig));
  auto counter = std::make_shared<FlopCounter>(gpu);
  double t0 = now();
  std::unique_ptr<nn::UNetMotionModel> unet;
  {
    WeightStore u, a;
    u.set_label("unet");
    a.set_label("motion_adapter");
    sd15::unet_weights(config, u, a);
    unet = std::make_unique<nn::UNetMotionModel>(counter, config, u, a);
  }
  cuda_synchronize(0);
  const CudaMemoryStats after_load = cuda_memory_stats(0);
  std::printf("  UNetMotion weights made and uploaded in %.1f s, %.2f GiB on the GPU\n", now() - t0,
              gib(after_load.in_use));

  const int64_t B = 2, F = 16, H = 64, W = 64;
  const Tensor sample = sd15::uniform({B, config.in_channels, F, H, W}, 1.f, 5);
  const Tensor ehs = sd15::uniform({B, 77, config.cross_attention_dim}, 1.f, 6);
  unet->set_step_capture(false);  // graphs off first (the default without PIA_CUDA_GRAPHS=1)
  cuda_reset_peak_memory(0);
  counter->flops = 0;
  const PiaConvStats conv_before = cuda_conv_stats();
  t0 = now();
  unet->forward(sample, 999.f, ehs);  // first call: allocator warm-up (and the timing of conv shapes)
  const double first = now() - t0;
  const double step_flops = counter->flops;
  double best = first;
  for (int i = 0; i < 3; ++i) {
    t0 = now();
    unet->forward(sample, 999.f - 40.f * float(i), ehs);
    best = std::min(best, now() - t0);
  }
  const CudaMemoryStats unet_mem = cuda_memory_stats(0);
  print_conv_routing(conv_before, cuda_conv_stats());
  bench::report("UNetMotion step SD-1.5+PIA 512x512 F16 CFG B2 (" + std::string(dtype_name(dt)) + ")", best, step_flops);
  std::printf("  %.2f TFLOP per step, %.1f TFLOP/s = %.1f%% of the GEMM's %.1f TFLOP/s (first call %.3f s)\n",
              step_flops * 1e-12, step_flops / best * 1e-12, 100.0 * step_flops / best * 1e-12 / peak, peak, first);
  std::printf("  peak GPU memory in the UNet step: %.2f GiB in use, %.2f GiB reserved\n", gib(unet_mem.peak_in_use),
              gib(unet_mem.peak_reserved));

  // The same step as a CUDA graph (issue 7): call 1 warms up eagerly, call 2 captures and launches
  // once, later calls replay. What a graph saves is host-side launch overhead.
  {
    const Tensor eager_out = unet->forward(sample, 500.f, ehs);
    unet->set_step_capture(true);
    unet->forward(sample, 999.f, ehs);
    t0 = now();
    unet->forward(sample, 999.f, ehs);
    const double capture_s = now() - t0;
    double graph_best = 1e30;
    for (int i = 0; i < 3; ++i) {
      t0 = now();
      unet->forward(sample, 999.f - 40.f * float(i), ehs);
      graph_best = std::min(graph_best, now() - t0);
    }
    const Tensor graph_out = unet->forward(sample, 500.f, ehs);
    const auto st = unet->step_graphs()->stats();
    const bool same = graph_out.shape() == eager_out.shape() &&
                      std::memcmp(graph_out.raw(), eager_out.raw(), graph_out.nbytes()) == 0;
    const CudaMemoryStats graph_mem = cuda_memory_stats(0);
    bench::report("UNetMotion step as a CUDA graph (" + std::string(dtype_name(dt)) + ")", graph_best, step_flops);
    std::printf("  UNet step graphs off %.3f s, on %.3f s (x%.3f); capture call %.3f s; %zu capture(s), %zu "
                "replay(s), %zu failure(s); replay %s the eager output; %.2f GiB reserved with the graph\n",
                best, graph_best, best / graph_best, capture_s, st.captures, st.replays, st.capture_failures,
                same ? "bitwise equals" : "DIFFERS FROM", gib(graph_mem.reserved));
    std::printf("  result unet_step_graph_s=%.6f\n", graph_best);
    unet->set_step_capture(false);
  }
  unet.reset();

  // --- VAE decode of the 16 frames -------------------------------------------------------------------
  const nn::AutoencoderKLConfig vc = nn::AutoencoderKLConfig::from_json(sd15::json(sd15::kVaeConfig));
  auto vcounter = std::make_shared<FlopCounter>(gpu);
  std::unique_ptr<nn::AutoencoderKL> vae;
  {
    WeightStore w;
    w.set_label("vae");
    sd15::vae_weights(w, vc);
    vae = std::make_unique<nn::AutoencoderKL>(vc, w, vcounter);
  }
  const Tensor z = sd15::uniform({F, 4, H, W}, 2.f, 7);
  cuda_reset_peak_memory(0);
  vcounter->flops = 0;
  t0 = now();
  vae->decode(z, false, false);
  double vae_s = now() - t0;
  const double vae_flops = vcounter->flops;
  t0 = now();
  vae->decode(z, false, false);
  vae_s = std::min(vae_s, now() - t0);
  const CudaMemoryStats vae_mem = cuda_memory_stats(0);
  bench::report("AutoencoderKL decode 16 frames 64x64 -> 512x512 (" + std::string(dtype_name(dt)) + ")", vae_s, vae_flops);
  std::printf("  %.2f TFLOP, %.1f TFLOP/s; peak GPU memory %.2f GiB in use, %.2f GiB reserved\n", vae_flops * 1e-12,
              vae_flops / vae_s * 1e-12, gib(vae_mem.peak_in_use), gib(vae_mem.peak_reserved));

  const double job = 25 * best + vae_s;
  std::printf("  25-step job estimate (UNet steps + VAE decode; CLIP and scheduler are negligible): %.2f s, "
              "%.1f TFLOP at %.1f TFLOP/s\n",
              job, (25 * step_flops + vae_flops) * 1e-12, (25 * step_flops + vae_flops) / job * 1e-12);
  // One line for scripts (gpu-run.sh hands unet_step_s to bench/torch_unet_motion.py).
  std::printf("  result unet_step_s=%.6f vae_decode_s=%.6f job_s=%.6f peak_tflops=%.1f\n", best, vae_s, job, peak);
}
