#include "lora.h"

#include <map>

#include "../core/errors.h"

namespace pia::nn {

namespace {

thread_local std::vector<LoraTarget>* t_recorder = nullptr;
thread_local const LoraState* t_state = nullptr;
thread_local float t_scale = 1.f;

[[noreturn]] void mismatch(const std::string& module, const std::string& why) {
  throw_error("E_WEIGHTS_MISMATCH", "LoRA for '" + module + "': " + why, module);
}

std::string shape_of(const Tensor& t) { return shape_str(t.shape()); }

// The branch's two matrices in the layout the module's forward uses: 2-D for Linear-held modules
// (a 1×1 conv's [r, in, 1, 1] / [out, r, 1, 1] read as [r, in] / [out, r]), 4-D for convs.
void check_and_shape(const LoraTarget& t, const LoraContribution& c, Tensor& down, Tensor& up) {
  if (!c.down.defined() || !c.up.defined()) mismatch(c.module, "down and up are both required");
  const int64_t r = c.down.size(0);
  if (r < 1) mismatch(c.module, "rank 0");
  const bool conv_shaped = c.down.dim() == 4;
  if (c.up.dim() != c.down.dim()) mismatch(c.module, "down " + shape_of(c.down) + " and up " + shape_of(c.up) + " differ in rank");
  if (t.kind == LoraTargetKind::Linear && conv_shaped) mismatch(c.module, "conv-shaped LoRA " + shape_of(c.down) + " on a Linear");
  if (c.down.dim() != 2 && !conv_shaped) mismatch(c.module, "down must be 2-D or 4-D, got " + shape_of(c.down));
  const int64_t k = t.kind == LoraTargetKind::Conv2d ? t.kernel : 1;
  const Shape want_down = conv_shaped ? Shape{r, t.in, k, k} : Shape{r, t.in};
  const Shape want_up = conv_shaped ? Shape{t.out, r, 1, 1} : Shape{t.out, r};
  if (t.kind == LoraTargetKind::Conv2d && !conv_shaped) mismatch(c.module, "a Conv2d needs 4-D down/up, got " + shape_of(c.down));
  if (c.down.shape() != want_down) mismatch(c.module, "down is " + shape_of(c.down) + ", the module needs " + shape_str(want_down));
  if (c.up.shape() != want_up) mismatch(c.module, "up is " + shape_of(c.up) + ", the module needs " + shape_str(want_up));
  down = c.down.to(DType::F32).contiguous();
  up = c.up.to(DType::F32).contiguous();
  if (t.kind != LoraTargetKind::Conv2d && conv_shaped) {
    down = down.reshape({r, t.in});
    up = up.reshape({t.out, r});
  }
}

}  // namespace

LoraTargetRecorder::LoraTargetRecorder(std::vector<LoraTarget>* targets) : previous_(t_recorder) { t_recorder = targets; }
LoraTargetRecorder::~LoraTargetRecorder() { t_recorder = previous_; }

int lora_register(LoraTarget target) {
  if (!t_recorder) return -1;
  t_recorder->push_back(std::move(target));
  return int(t_recorder->size() - 1);
}

LoraScope::LoraScope(const LoraState* state, float scale) : previous_state_(t_state), previous_scale_(t_scale) {
  t_state = state;
  t_scale = scale;
}
LoraScope::~LoraScope() {
  t_state = previous_state_;
  t_scale = previous_scale_;
}

const LoraSlotState* lora_active(int slot, float* scale) {
  if (!t_state || slot < 0 || size_t(slot) >= t_state->slots.size()) return nullptr;
  const LoraSlotState& s = t_state->slots[size_t(slot)];
  if (s.branches.empty() && !s.fused_weight.defined()) return nullptr;
  *scale = s.scaled ? t_scale : 1.f;
  return &s;
}

Tensor lora_linear(Backend& be, const Tensor& x, const Tensor& weight, const Tensor& bias, Activation act,
                   const LoraSlotState& s, float scale) {
  const Tensor& w = s.fused_weight.defined() ? s.fused_weight : weight;
  // LoRACompatibleLinear: out + scale · lora_layer(x), the activation after both (CLIP's fc1).
  if (s.branches.empty() || scale == 0.f) return be.linear(x, w, bias, act);
  Tensor y = be.linear(x, w, bias);
  for (const LoraBranch& b : s.branches) {
    Tensor u = be.linear(be.linear(x, b.down, {}), b.up, {});
    be.add_(y, u, scale * b.factor);
  }
  return act == Activation::None ? y : be.activation(y, act);
}

Tensor lora_conv2d(Backend& be, const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p,
                   const LoraSlotState& s, float scale) {
  const Tensor& w = s.fused_weight.defined() ? s.fused_weight : weight;
  Tensor y = be.conv2d(x, w, bias, p);
  if (scale == 0.f) return y;
  for (const LoraBranch& b : s.branches) {
    // LoRAConv2dLayer: down has the module's kernel, stride and padding; up is 1×1.
    Tensor u = be.conv2d(be.conv2d(x, b.down, {}, p), b.up, {}, Conv2dParams{});
    be.add_(y, u, scale * b.factor);
  }
  return y;
}

std::shared_ptr<const LoraState> build_lora_state(Backend& be, const std::vector<LoraTarget>& targets,
                                                  const std::vector<LoraContribution>& contributions) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < targets.size(); ++i) index.emplace(targets[i].name, i);
  auto state = std::make_shared<LoraState>();
  state->slots.resize(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) state->slots[i].scaled = targets[i].scaled;

  std::map<size_t, Tensor> fused;  // slot -> float32 device weight being accumulated
  for (const LoraContribution& c : contributions) {
    auto it = index.find(c.module);
    if (it == index.end()) mismatch(c.module, "the network has no Linear or Conv2d of that name");
    const LoraTarget& t = targets[it->second];
    Tensor down, up;
    check_and_shape(t, c, down, up);
    if (!c.fused) {
      state->slots[it->second].branches.push_back({be.upload(down), be.upload(up), c.factor});
      continue;
    }
    // fuse_lora: W + factor · up @ down in float32 (diffusers' _fuse_lora on the float weights).
    const int64_t r = down.size(0);
    Tensor d2 = be.from_host(down.reshape({r, down.numel() / r}));
    Tensor u2 = be.from_host(up.reshape({up.size(0), r}));
    Tensor delta = be.linear(u2, be.contiguous(d2.permute({1, 0})), {});  // up · down: [out, in·k·k]
    auto f = fused.find(it->second);
    if (f == fused.end()) {
      Tensor w = be.from_host(t.host_weight.to(DType::F32).contiguous().reshape({delta.size(0), delta.size(1)}));
      f = fused.emplace(it->second, w).first;
    }
    be.add_(f->second, delta, c.factor);
  }
  for (auto& [slot, w] : fused) {
    Tensor host = be.to_host(w).reshape(targets[slot].host_weight.shape());
    state->slots[slot].fused_weight = be.upload(host);
  }
  return state;
}

}  // namespace pia::nn
