// Captured steps (ops/step_graphs.h, issue 7: one UNet step as a CUDA graph).
//
// On every machine: the cache's logic (eager first, capture second, replay after; LRU eviction;
// invalidation when weights move; a failed or cancelled capture) and the UNet's step body, on
// RecordingBackend — the CPU backend plus a capture that records each op as a closure over the
// same tensors and re-runs the closures on launch. Like a CUDA graph, a recording reads its
// input buffers and weights at launch time and writes the tensors it allocated; ops run while
// recording have their results poisoned with NaN, so a result that skipped the launch shows.
// Host copies fail while recording, as the CUDA library refuses them inside a capture.
//
// With a GPU (skip and pass without): the SD-1.5+PIA-architecture UNet at a small size, graphs on
// against graphs off, bitwise. Run: pia_native_tests step_graphs
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_loader.h"
#include "harness.h"
#include "nn/ip_adapter.h"
#include "nn/unet_motion_model.h"
#include "ops/backend.h"
#include "ops/step_graphs.h"
#include "sd15_random_weights.h"

using namespace pia;

namespace {

// --- RecordingBackend ----------------------------------------------------------------------------

struct RecordingState {
  bool recording = false;
  std::vector<std::function<void()>> tape;
  uint64_t generation = 1;
  int live_steps = 0;
  size_t launches = 0, begins = 0, aborts = 0;
  long fail_at_op = -1;                    // the recorded op with this index throws
  bool fail_end = false;                   // end_capture throws
  std::function<void(size_t)> on_record;  // called with each recorded op's index
};

class RecordedStep final : public CapturedStep {
 public:
  RecordedStep(std::shared_ptr<RecordingState> st, std::vector<std::function<void()>> tape)
      : st_(std::move(st)), tape_(std::move(tape)), generation_(st_->generation) {
    ++st_->live_steps;
  }
  ~RecordedStep() override { --st_->live_steps; }
  bool launch() override {
    if (generation_ != st_->generation) return false;
    for (auto& op : tape_) op();
    ++st_->launches;
    return true;
  }

 private:
  std::shared_ptr<RecordingState> st_;
  std::vector<std::function<void()>> tape_;
  uint64_t generation_;
};

class RecordingBackend final : public Backend {
 public:
  std::shared_ptr<RecordingState> st = std::make_shared<RecordingState>();

  std::string name() const override { return "recording-cpu"; }
  Device device() const override { return Device::CPU; }

  Tensor upload(const Tensor& h) override {
    no_host_io("upload");
    ++st->generation;
    return cpu_->upload(h);
  }
  Tensor from_host(const Tensor& h) override {
    no_host_io("from_host");
    return cpu_->from_host(h);
  }
  // A copy, never a view of the step's output: what a caller keeps must not change on replay.
  Tensor to_host(const Tensor& x) override {
    no_host_io("to_host");
    return cpu_->to_host(x).clone();
  }
  Tensor zeros(const Shape& s) override {
    auto c = cpu_;
    return rec([c, s] { return c->zeros(s); });
  }
  Tensor contiguous(const Tensor& x) override {
    auto c = cpu_;
    return rec([c, x] { return c->contiguous(x); });
  }
  Tensor cat(const std::vector<Tensor>& xs, int dim) override {
    auto c = cpu_;
    return rec([c, xs, dim] { return c->cat(xs, dim); });
  }
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, Activation act) override {
    auto c = cpu_;
    return rec([c, x, w, b, act] { return c->linear(x, w, b, act); });
  }
  Tensor matmul(const Tensor& a, const Tensor& b, bool tb) override {
    auto c = cpu_;
    return rec([c, a, b, tb] { return c->matmul(a, b, tb); });
  }
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) override {
    auto c = cpu_;
    return rec([c, x, w, b, p] { return c->conv2d(x, w, b, p); });
  }
  Tensor group_norm(const Tensor& x, int g, const Tensor& ga, const Tensor& be, float eps, Activation a) override {
    auto c = cpu_;
    return rec([c, x, g, ga, be, eps, a] { return c->group_norm(x, g, ga, be, eps, a); });
  }
  Tensor layer_norm(const Tensor& x, const Tensor& g, const Tensor& b, float eps) override {
    auto c = cpu_;
    return rec([c, x, g, b, eps] { return c->layer_norm(x, g, b, eps); });
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) override {
    auto c = cpu_;
    return rec([c, q, k, v, p] { return c->attention(q, k, v, p); });
  }
  Tensor temporal_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t f,
                            const AttentionParams& p) override {
    auto c = cpu_;
    return rec([c, q, k, v, f, p] { return c->temporal_attention(q, k, v, f, p); });
  }
  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override {
    auto c = cpu_;
    return rec([c, op, a, b] { return c->binary(op, a, b); });
  }
  void add_(Tensor& a, const Tensor& b, float alpha) override {
    cpu_->add_(a, b, alpha);
    if (st->recording) {
      record_index();
      auto c = cpu_;
      Tensor target = a;  // shares a's storage: the replay adds into the same memory
      st->tape.push_back([c, target, b, alpha]() mutable { c->add_(target, b, alpha); });
    }
  }
  Tensor affine(const Tensor& x, float s, float t) override {
    auto c = cpu_;
    return rec([c, x, s, t] { return c->affine(x, s, t); });
  }
  Tensor activation(const Tensor& x, Activation act) override {
    auto c = cpu_;
    return rec([c, x, act] { return c->activation(x, act); });
  }
  Tensor geglu(const Tensor& x) override {
    auto c = cpu_;
    return rec([c, x] { return c->geglu(x); });
  }
  Tensor upsample_nearest2x(const Tensor& x) override {
    auto c = cpu_;
    return rec([c, x] { return c->upsample_nearest2x(x); });
  }
  // Both take host data, which the CUDA backend copies to the device: not recordable either.
  Tensor embedding(const Tensor& table, const std::vector<int64_t>& ids) override {
    no_host_io("embedding");
    return cpu_->embedding(table, ids);
  }
  Tensor timestep_embedding(const std::vector<float>& t, int dim, bool flip, float shift) override {
    no_host_io("timestep_embedding");
    return cpu_->timestep_embedding(t, dim, flip, shift);
  }
  Tensor fourier_filter(const Tensor& x, int threshold, float scale) override {
    auto c = cpu_;
    return rec([c, x, threshold, scale] { return c->fourier_filter(x, threshold, scale); });
  }
  void set_weights_resident(bool) override { ++st->generation; }

  bool can_capture() const override { return true; }
  void begin_capture() override {
    if (st->recording) throw_error("E_BACKEND", "already recording");
    ++st->begins;
    st->recording = true;
    st->tape.clear();
  }
  std::unique_ptr<CapturedStep> end_capture() override {
    if (!st->recording) throw_error("E_BACKEND", "not recording");
    st->recording = false;
    auto tape = std::move(st->tape);
    st->tape.clear();
    if (st->fail_end) throw_error("E_BACKEND", "end_capture failed (test)");
    return std::make_unique<RecordedStep>(st, std::move(tape));
  }
  void abort_capture() noexcept override {
    if (!st->recording) return;
    st->recording = false;
    st->tape.clear();
    ++st->aborts;
  }
  uint64_t weights_generation() const override { return st->generation; }

 private:
  std::shared_ptr<Backend> cpu_ = make_cpu_backend();

  void no_host_io(const char* what) const {
    if (st->recording) throw_error("E_BACKEND", std::string(what) + " cannot be recorded");
  }
  void record_index() {
    const size_t i = st->tape.size();
    if (st->fail_at_op >= 0 && size_t(st->fail_at_op) == i) throw_error("E_BACKEND", "op cannot be recorded (test)");
    if (st->on_record) st->on_record(i);
  }
  template <typename F>
  Tensor rec(F f) {
    if (!st->recording) return f();
    record_index();
    Tensor y = f();
    // Only a fresh result is poisoned (an op that returned a view of its input keeps it intact).
    if (y.defined() && y.storage().use_count() == 1 && y.dtype() == DType::F32) {
      float* p = y.data<float>();
      for (int64_t i = 0; i < y.numel(); ++i) p[i] = std::numeric_limits<float>::quiet_NaN();
    }
    st->tape.push_back([f, y] {
      const Tensor r = f();
      PIA_CHECK(r.shape() == y.shape() && r.is_contiguous() && y.is_contiguous() && r.dtype() == y.dtype(),
                "E_BACKEND", "recording: a replayed op changed its result's layout");
      if (r.raw() != y.raw()) std::memcpy(y.raw(), r.raw(), r.nbytes());
    });
    return y;
  }
};

// --- helpers -----------------------------------------------------------------------------------------

bool skip_cuda(const char* what) {
  if (cuda_api()) return false;
  std::printf("     skip %s: %s\n", what, cuda_status().reason.c_str());
  return true;
}

void expect_bitwise(const std::string& what, const Tensor& got, const Tensor& ref) {
  if (got.shape() != ref.shape()) {
    pia::test::fail(what + ": shape " + shape_str(got.shape()) + " != " + shape_str(ref.shape()));
  }
  const Tensor a = got.to(DType::F32).contiguous(), b = ref.to(DType::F32).contiguous();
  if (std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0) {
    std::printf("     %-60s bitwise equal (%lld values)\n", what.c_str(), (long long)a.numel());
    return;
  }
  int64_t first = -1, count = 0;
  double max_diff = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const float x = a.data<float>()[i], y = b.data<float>()[i];
    if (std::memcmp(&x, &y, sizeof x) != 0) {
      if (first < 0) first = i;
      ++count;
      max_diff = std::max(max_diff, double(std::fabs(x - y)));
    }
  }
  pia::test::fail(what + ": " + std::to_string(count) + " values differ (first at " + std::to_string(first) +
                  ", max |diff| " + std::to_string(max_diff) + ")");
}

Tensor pattern(const Shape& s, float offset) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = offset + 0.25f * float(i % 7) - 0.5f * float(i % 3);
  return t;
}

// A small step: y = (x · 2 + 1) ⊙ m, then y += x.
StepBody small_body(Backend& be) {
  return [&be](const std::vector<Tensor>& in) {
    Tensor y = be.binary(BinaryOp::Mul, be.affine(in[0], 2.f, 1.f), in[1]);
    be.add_(y, in[0]);
    return y;
  };
}

Tensor small_expected(const Tensor& x, const Tensor& m) {
  Tensor y = Tensor::empty(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float a = x.data<float>()[i];
    y.data<float>()[i] = (a * 2.f + 1.f) * m.data<float>()[i] + a;
  }
  return y;
}

}  // namespace

// --- the cache's logic, on the CPU ---------------------------------------------------------------------

PIA_TEST(step_graphs_eager_then_capture_then_replay) {
  auto be = std::make_shared<RecordingBackend>();
  StepGraphCache cache(be);
  const StepBody body = small_body(*be);
  std::vector<Tensor> kept;
  for (int call = 0; call < 4; ++call) {
    const Tensor x = pattern({2, 3}, float(call)), m = pattern({2, 3}, 10.f - float(call));
    const Tensor y = cache.run("k", {x, m}, body);
    expect_bitwise("call " + std::to_string(call + 1), y, small_expected(x, m));
    kept.push_back(y);
    const auto s = cache.stats();
    EXPECT(s.eager == 1);
    EXPECT(s.captures == (call >= 1 ? 1u : 0u));
    EXPECT(s.replays == size_t(call));  // the capturing call launches its recording once
    EXPECT(be->st->launches == s.replays);
  }
  EXPECT(be->st->begins == 1);
  // What callers kept from earlier calls is theirs: later replays did not write it.
  for (int call = 0; call < 4; ++call) {
    const Tensor x = pattern({2, 3}, float(call)), m = pattern({2, 3}, 10.f - float(call));
    expect_bitwise("kept result of call " + std::to_string(call + 1), kept[size_t(call)], small_expected(x, m));
  }
  // Other shapes are another key.
  const Tensor x = pattern({4, 3}, 1.f), m = pattern({4, 3}, 2.f);
  expect_bitwise("other shape", cache.run("k", {x, m}, body), small_expected(x, m));
  EXPECT(cache.stats().eager == 2 && cache.size() == 2);
}

PIA_TEST(step_graphs_evicts_the_least_recently_used) {
  auto be = std::make_shared<RecordingBackend>();
  StepGraphCache cache(be, 4);
  const StepBody body = small_body(*be);
  const Tensor x = pattern({2, 2}, 1.f), m = pattern({2, 2}, 3.f);
  for (int k = 0; k < 4; ++k) {
    for (int call = 0; call < 2; ++call) cache.run("k" + std::to_string(k), {x, m}, body);
  }
  EXPECT(cache.size() == 4 && be->st->live_steps == 4 && cache.stats().evictions == 0);
  cache.run("k0", {x, m}, body);  // k0 becomes the most recent; k1 is now the oldest
  cache.run("k4", {x, m}, body);
  EXPECT(cache.size() == 4 && cache.stats().evictions == 1);
  EXPECT(be->st->live_steps == 3);  // k1's recording and memory went with it
  const size_t eager = cache.stats().eager;
  expect_bitwise("k1 after eviction", cache.run("k1", {x, m}, body), small_expected(x, m));
  EXPECT(cache.stats().eager == eager + 1);  // a warm-up again
  expect_bitwise("k0 kept", cache.run("k0", {x, m}, body), small_expected(x, m));
  EXPECT(cache.stats().eager == eager + 1);
  cache.clear();
  EXPECT(be->st->live_steps == 0 && cache.size() == 0);
}

PIA_TEST(step_graphs_dropped_when_weights_move) {
  auto be = std::make_shared<RecordingBackend>();
  StepGraphCache cache(be);
  const StepBody body = small_body(*be);
  const Tensor x = pattern({3}, 1.f), m = pattern({3}, 2.f);
  for (int i = 0; i < 3; ++i) cache.run("k", {x, m}, body);
  EXPECT(cache.stats().captures == 1 && be->st->live_steps == 1);
  be->set_weights_resident(false);
  be->set_weights_resident(true);
  expect_bitwise("after offload and reload", cache.run("k", {x, m}, body), small_expected(x, m));
  auto s = cache.stats();
  EXPECT(s.invalidations == 1 && s.eager == 2 && be->st->live_steps == 0);
  cache.run("k", {x, m}, body);
  cache.run("k", {x, m}, body);
  s = cache.stats();
  EXPECT(s.captures == 2 && s.replays == 4);
  // A new weight elsewhere (an adapter loaded) changes the generation too.
  be->upload(Tensor::zeros({1}));
  cache.run("k", {x, m}, body);
  EXPECT(cache.stats().invalidations == 2);
}

PIA_TEST(step_graphs_failed_capture_runs_eagerly_for_good) {
  auto be = std::make_shared<RecordingBackend>();
  StepGraphCache cache(be);
  const StepBody body = small_body(*be);
  const Tensor x = pattern({5}, 1.f), m = pattern({5}, -2.f);
  cache.run("k", {x, m}, body);
  be->st->fail_at_op = 1;  // the second op of the body cannot be recorded
  expect_bitwise("the failing capture's call", cache.run("k", {x, m}, body), small_expected(x, m));
  be->st->fail_at_op = -1;
  EXPECT(cache.stats().capture_failures == 1 && cache.eager_only("k", {x, m}));
  EXPECT(be->st->aborts == 1 && be->st->live_steps == 0);
  expect_bitwise("later calls", cache.run("k", {x, m}, body), small_expected(x, m));
  EXPECT(be->st->begins == 1 && cache.stats().eager == 3);

  // end_capture failing is the same.
  be->st->fail_end = true;
  cache.run("j", {x, m}, body);
  expect_bitwise("end_capture failing", cache.run("j", {x, m}, body), small_expected(x, m));
  be->st->fail_end = false;
  EXPECT(cache.eager_only("j", {x, m}) && cache.stats().capture_failures == 2);

  // A body that copies from the host inside the step cannot be captured (the CUDA library refuses
  // it too): the call still returns the right result.
  StepBody host_copy = [&](const std::vector<Tensor>& in) {
    return be->binary(BinaryOp::Add, in[0], be->from_host(pattern({5}, 4.f)));
  };
  Tensor want = Tensor::empty({5});
  const Tensor p4 = pattern({5}, 4.f);
  for (int i = 0; i < 5; ++i) want.data<float>()[i] = x.data<float>()[i] + p4.data<float>()[i];
  cache.run("h", {x}, host_copy);
  expect_bitwise("host copy inside the step", cache.run("h", {x}, host_copy), want);
  EXPECT(cache.eager_only("h", {x}));
}

PIA_TEST(step_graphs_cancel) {
  auto be = std::make_shared<RecordingBackend>();
  StepGraphCache cache(be);
  std::atomic<bool> cancel{false};
  const Tensor x = pattern({4}, 1.f), m = pattern({4}, 2.f);
  // The body checks the flag between its ops, as the UNet's blocks do.
  StepBody body = [&](const std::vector<Tensor>& in) {
    Tensor y = be->affine(in[0], 2.f, 1.f);
    if (cancel.load()) throw_error("E_ABORTED", "cancelled (test)");
    y = be->binary(BinaryOp::Mul, y, in[1]);
    be->add_(y, in[0], 1.f);
    return y;
  };
  // A warm-up cut short does not count: the next call warms up again rather than capturing.
  int runs = 0;
  StepBody cut_once = [&](const std::vector<Tensor>& in) {
    if (runs++ == 0) throw_error("E_ABORTED", "cancelled (test)");
    return body(in);
  };
  bool aborted = false;
  try {
    cache.run("w", {x, m}, cut_once, &cancel);
  } catch (const PiaException& e) {
    aborted = e.code() == "E_ABORTED";
  }
  EXPECT(aborted && cache.size() == 0);
  cache.run("w", {x, m}, cut_once, &cancel);
  EXPECT(cache.stats().captures == 0 && be->st->begins == 0);
  cache.run("w", {x, m}, cut_once, &cancel);
  EXPECT(cache.stats().captures == 1);

  cache.run("k", {x, m}, body, &cancel);
  be->st->on_record = [&](size_t i) {
    if (i == 0) cancel = true;
  };
  aborted = false;
  try {
    cache.run("k", {x, m}, body, &cancel);
  } catch (const PiaException& e) {
    aborted = e.code() == "E_ABORTED";
  }
  EXPECT(aborted);
  be->st->on_record = nullptr;
  cancel = false;
  // Not the recording's fault: the key may still be captured.
  EXPECT(!cache.eager_only("k", {x, m}) && be->st->aborts == 1);
  expect_bitwise("capture after a cancelled one", cache.run("k", {x, m}, body, &cancel), small_expected(x, m));
  EXPECT(cache.stats().captures == 2);
  // A recorded step is checked before its launch.
  cancel = true;
  aborted = false;
  const size_t launches = be->st->launches;
  try {
    cache.run("k", {x, m}, body, &cancel);
  } catch (const PiaException& e) {
    aborted = e.code() == "E_ABORTED";
  }
  EXPECT(aborted && be->st->launches == launches);
}

// --- the UNet's step ---------------------------------------------------------------------------------

namespace {

// Two levels, every block kind, FreeU on both up blocks (whose hidden widths differ: 64, then 32).
const char* kTinyUnet = R"({"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
  "block_out_channels": [32, 64], "cross_attention_dim": 32, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
  "in_channels": 4, "layers_per_block": 1, "norm_num_groups": 16, "out_channels": 4,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]})";
const char* kTinyAdapter = R"({"_class_name": "MotionAdapter", "block_out_channels": [32, 64], "conv_in_channels": 9,
  "motion_layers_per_block": 1, "motion_max_seq_length": 32, "motion_mid_block_layers_per_block": 1,
  "motion_norm_num_groups": 16, "motion_num_attention_heads": 4, "use_motion_mid_block": false})";

std::unique_ptr<nn::UNetMotionModel> make_unet(std::shared_ptr<Backend> be, const nn::UNetMotionModelConfig& c) {
  WeightStore u, a;
  sd15::unet_weights(c, u, a);
  return std::make_unique<nn::UNetMotionModel>(std::move(be), c, u, a);
}

// LoRA on a few Linear modules, some seeing the call's scale and some not.
std::vector<nn::LoraContribution> lora_for(const nn::UNetMotionModel& m) {
  std::vector<nn::LoraContribution> out;
  int scaled = 0, unscaled = 0;
  uint64_t seed = 900;
  for (const auto& t : m.lora_targets()) {
    if (t.kind != nn::LoraTargetKind::Linear) continue;
    if (t.scaled ? scaled >= 3 : unscaled >= 2) continue;
    (t.scaled ? scaled : unscaled)++;
    nn::LoraContribution c;
    c.module = t.name;
    c.down = sd15::uniform({4, t.in}, 0.3f, seed++);
    c.up = sd15::uniform({t.out, 4}, 0.3f, seed++);
    c.factor = 0.75f;
    out.push_back(c);
  }
  return out;
}

std::shared_ptr<nn::IPAdapter> ip_adapter_for(std::shared_ptr<Backend> be, const nn::UNetMotionModel& m,
                                              int64_t embed_dim) {
  const auto& sites = m.ip_attention_sites();
  const int64_t cross = m.config().cross_attention_dim;
  WeightStore w;
  sd15::Gen g{w, 77};
  g.linear("image_proj.image_embeds", embed_dim, 4 * cross);
  g.norm("image_proj.norm", cross);
  // Ids follow diffusers' attn_processors order (down, up, mid), as IPAdapter reads them.
  int id = 1;
  for (const char* group : {"down_blocks.", "up_blocks.", "mid_block."}) {
    for (const auto& s : sites) {
      if (s.name.rfind(group, 0) != 0) continue;
      const std::string p = "ip_adapter." + std::to_string(id);
      g.linear(p + ".to_k_ip", s.cross_attention_dim, s.hidden_size, false);
      g.linear(p + ".to_v_ip", s.cross_attention_dim, s.hidden_size, false);
      id += 2;
    }
  }
  return std::make_shared<nn::IPAdapter>(std::move(be), w, nn::ImageProjectionKind::Base, sites, cross, 0);
}

struct Inputs {
  Tensor sample, ehs;
  float t = 0;
};

Inputs inputs(const nn::UNetMotionModelConfig& c, int64_t B, int64_t F, int64_t H, int64_t W, int64_t S,
              uint64_t seed, float t) {
  return {sd15::uniform({B, c.in_channels, F, H, W}, 1.f, seed), sd15::uniform({B, S, c.cross_attention_dim}, 1.f, seed + 1),
          t};
}

// The scenario both backends run: `graphed` captures its steps (set_step_capture(true)), `eager`
// does not; every call of the first must equal the second's bitwise.
void unet_scenario(const std::string& tag, const std::shared_ptr<Backend>& gbe, nn::UNetMotionModel& graphed,
                   nn::UNetMotionModel& eager, int64_t B, int64_t F, int64_t H, int64_t W) {
  const auto& c = graphed.config();
  const StepGraphCache* cache = graphed.step_graphs();
  EXPECT(cache != nullptr && eager.step_graphs() == nullptr);
  auto same = [&](const std::string& what, const nn::UNetMotionModel& g, const nn::UNetMotionModel& e, const Inputs& in,
                  const nn::FreeUParams& fu = {}, float lora_scale = 1.f) {
    expect_bitwise(tag + " " + what, g.forward(in.sample, in.t, in.ehs, fu, nullptr, lora_scale),
                   e.forward(in.sample, in.t, in.ehs, fu, nullptr, lora_scale));
  };

  // Control: eager runs repeat themselves bitwise (else nothing below could hold).
  {
    const Inputs in = inputs(c, B, F, H, W, 77, 100, 981.f);
    expect_bitwise(tag + " eager control", eager.forward(in.sample, in.t, in.ehs), eager.forward(in.sample, in.t, in.ehs));
  }
  same("call 1 (eager)", graphed, eager, inputs(c, B, F, H, W, 77, 101, 981.f));
  same("call 2 (capture)", graphed, eager, inputs(c, B, F, H, W, 77, 103, 961.f));
  auto s = cache->stats();
  EXPECT(s.eager == 1 && s.captures == 1 && s.replays == 1);
  same("call 3 (replay)", graphed, eager, inputs(c, B, F, H, W, 77, 105, 21.f));
  s = cache->stats();
  EXPECT(s.captures == 1 && s.replays == 2 && s.capture_failures == 0);

  nn::FreeUParams fu{0.9f, 0.2f, 1.2f, 1.4f};
  for (int i = 0; i < 3; ++i) same("FreeU call " + std::to_string(i + 1), graphed, eager, inputs(c, B, F, H, W, 77, 110 + 2 * i, 500.f - 100.f * float(i)), fu);
  fu.b1 = 1.1f;  // b enters as an input; s is a kernel argument: both are in the key
  for (int i = 0; i < 2; ++i) same("FreeU b1 changed, call " + std::to_string(i + 1), graphed, eager, inputs(c, B, F, H, W, 77, 120 + 2 * i, 300.f), fu);
  s = cache->stats();
  EXPECT(s.captures == 3 && s.capture_failures == 0);

  for (int i = 0; i < 3; ++i) {
    same("F-1 frames, S=9, call " + std::to_string(i + 1), graphed, eager, inputs(c, B, F - 1, H, W, 9, 130 + 2 * i, 700.f));
  }
  s = cache->stats();
  EXPECT(s.captures == 4 && s.replays == 7);

  // LoRA: a copy with its own cache; the scale is part of the key.
  const auto contributions = lora_for(graphed);
  EXPECT(!contributions.empty());
  auto glora = graphed.with_lora(contributions);
  auto elora = eager.with_lora(contributions);
  EXPECT(glora->step_graphs() != nullptr && glora->step_graphs() != cache);
  for (float scale : {1.f, 0.5f}) {
    for (int i = 0; i < 3; ++i) {
      same("LoRA scale " + std::to_string(scale) + " call " + std::to_string(i + 1), *glora, *elora,
           inputs(c, B, F, H, W, 77, 140 + 2 * i, 400.f), {}, scale);
    }
  }
  EXPECT(glora->step_graphs()->stats().captures == 2 && glora->step_graphs()->stats().replays == 4 &&
         glora->step_graphs()->stats().capture_failures == 0);

  // IP-Adapter: its tokens are a device input of the step; its scale is in the key.
  {
    const int64_t D = 24;
    auto gip = ip_adapter_for(gbe, graphed, D);
    auto eip = ip_adapter_for(gbe, eager, D);
    const auto before = cache->stats();
    for (float scale : {1.f, 0.6f}) {
      for (int i = 0; i < 3; ++i) {
        const Tensor embeds = sd15::uniform({B, D}, 1.f, 150 + uint64_t(i));
        const Inputs in = inputs(c, B, F, H, W, 77, 160 + 2 * i, 250.f);
        Tensor got, want;
        {
          const nn::IpCall call = nn::make_ip_call(*gip, graphed.ip_attention_sites(), embeds, B, F, scale);
          nn::IpScope scope(&call);
          got = graphed.forward(in.sample, in.t, in.ehs);
        }
        {
          const nn::IpCall call = nn::make_ip_call(*eip, eager.ip_attention_sites(), embeds, B, F, scale);
          nn::IpScope scope(&call);
          want = eager.forward(in.sample, in.t, in.ehs);
        }
        expect_bitwise(tag + " IP-Adapter scale " + std::to_string(scale) + " call " + std::to_string(i + 1), got, want);
      }
    }
    s = cache->stats();
    EXPECT(s.capture_failures == 0 && s.captures == before.captures + 2 && s.replays == before.replays + 4);
  }

  // Weights offloaded and back: every recording is dropped, the next calls warm up and capture again.
  const size_t invalidations = cache->stats().invalidations;
  gbe->set_weights_resident(false);
  gbe->set_weights_resident(true);
  for (int i = 0; i < 3; ++i) same("after offload/reload call " + std::to_string(i + 1), graphed, eager, inputs(c, B, F, H, W, 77, 170 + 2 * i, 100.f));
  s = cache->stats();
  EXPECT(s.invalidations > invalidations && s.capture_failures == 0);
}

}  // namespace

PIA_TEST(step_graphs_unet_replays_equal_eager_runs) {
  const auto c = nn::UNetMotionModelConfig::from_unet2d(sd15::json(kTinyUnet), sd15::json(kTinyAdapter));
  auto rbe = std::make_shared<RecordingBackend>();
  auto graphed = make_unet(rbe, c);
  graphed->set_step_capture(true);
  auto eager = make_unet(make_cpu_backend(), c);
  eager->set_step_capture(false);
  unet_scenario("cpu-recording", rbe, *graphed, *eager, 2, 3, 8, 8);
  EXPECT(rbe->st->launches > 0 && rbe->st->aborts == 0);

  // A capture that fails inside the UNet (an op that cannot be recorded) falls back for that key.
  auto g2 = make_unet(rbe, c);
  g2->set_step_capture(true);
  const Inputs in = inputs(c, 1, 2, 8, 8, 7, 200, 999.f);
  g2->forward(in.sample, in.t, in.ehs);
  rbe->st->fail_at_op = 40;
  expect_bitwise("failed capture in the UNet", g2->forward(in.sample, in.t, in.ehs), eager->forward(in.sample, in.t, in.ehs));
  rbe->st->fail_at_op = -1;
  expect_bitwise("then eager for good", g2->forward(in.sample, in.t, in.ehs), eager->forward(in.sample, in.t, in.ehs));
  EXPECT(g2->step_graphs()->stats().capture_failures == 1 && g2->step_graphs()->stats().replays == 0);
}

// --- on a GPU ----------------------------------------------------------------------------------------

PIA_TEST(cuda_step_graphs_unet_bitwise) {
  if (skip_cuda("cuda_step_graphs_unet_bitwise")) return;
  const auto c =
      nn::UNetMotionModelConfig::from_unet2d(sd15::json(sd15::kSmallUnetConfig), sd15::json(sd15::kSmallAdapterConfig));
  for (DType dt : {DType::F32, DType::F16}) {
    // Two backends as the addon makes them (one per model); the same weights.
    auto gbe = make_cuda_backend(0, dt);
    auto graphed = make_unet(gbe, c);
    graphed->set_step_capture(true);
    auto eager = make_unet(make_cuda_backend(0, dt), c);
    eager->set_step_capture(false);

    // Memory a caller holds across the capture and the replays: the graph's pool never hands it
    // out, so replays cannot write it.
    const Tensor held_host = pattern({1 << 16}, 3.f);
    const Tensor held = gbe->from_host(held_host);
    unet_scenario(std::string("cuda ") + dtype_name(dt), gbe, *graphed, *eager, 2, 4, 16, 16);
    const Tensor after = gbe->from_host(pattern({1 << 16}, -3.f));  // made between replays
    const Inputs in = inputs(c, 2, 4, 16, 16, 77, 300, 10.f);
    for (int i = 0; i < 3; ++i) graphed->forward(in.sample, in.t, in.ehs);
    expect_bitwise(std::string("cuda ") + dtype_name(dt) + " held tensor", gbe->to_host(held), held_host.to(dt).to(DType::F32));
    expect_bitwise(std::string("cuda ") + dtype_name(dt) + " tensor made between replays", gbe->to_host(after),
                   pattern({1 << 16}, -3.f).to(dt).to(DType::F32));
    const CudaMemoryStats before = cuda_memory_stats(0);
    graphed.reset();  // the model's graphs and their pools go with it
    cuda_synchronize(0);
    const CudaMemoryStats gone = cuda_memory_stats(0);
    std::printf("     reserved %.1f MiB with the graphed model, %.1f MiB after disposing of it\n",
                double(before.reserved) / 1048576.0, double(gone.reserved) / 1048576.0);
    EXPECT(gone.reserved < before.reserved);
  }
}
