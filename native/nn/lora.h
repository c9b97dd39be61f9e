#pragma once
// LoRA the way diffusers v0.26.3 applies it without PEFT (models/lora.py: LoRACompatibleLinear,
// LoRACompatibleConv, and the text encoder's PatchedLoraProjection):
//   y = W x + b + s · factor · up(down(x)),   factor = adapter weight · alpha / rank
// as two small extra matmuls per adapter (never a full-size delta per call), and fuse_lora's
// W += factor · up @ down into a copy of the weight.
//
// A network records the modules a LoRA may target while it binds its weights (Linear::load and
// Conv2d::load call lora_register inside a LoraTargetRecorder scope); each module keeps its slot.
// A LoraState (built once per change, immutable) holds per slot the branches and/or the fused
// weight; a forward installs it with the call's scale in a LoraScope, and the layers look their
// slot up there. The scope is thread-local: one forward runs its layers on one thread.
#include <memory>
#include <string>
#include <vector>

#include "../ops/backend.h"

namespace pia::nn {

enum class LoraTargetKind : uint8_t {
  Linear,           // torch.nn.Linear
  Conv2d,           // torch.nn.Conv2d (down: same kernel/stride/padding as the module, up: 1×1)
  Conv1x1AsLinear,  // a 1×1 Conv2d the network holds as a Linear (Transformer2DModel proj_in/out)
};

struct LoraTarget {
  std::string name;  // the module's path (its weight key without ".weight")
  LoraTargetKind kind = LoraTargetKind::Linear;
  int64_t in = 0, out = 0, kernel = 1;
  Conv2dParams params;  // Conv2d only
  // Whether the module sees the per-call scale (diffusers passes cross_attention_kwargs['scale'] /
  // the text lora_scale to it); otherwise it runs at scale 1, as LoRACompatibleLinear's default.
  bool scaled = true;
  Tensor host_weight;  // the bound weight as the network holds it (fuse_lora starts from it)
};

// One adapter's matrices for one module, as given (host float32): down [r, in] or [r, in, k, k],
// up [out, r] or [out, r, 1, 1]. `fused` ones are merged into the weight, the others are branches.
struct LoraContribution {
  std::string module;
  Tensor down, up;
  float factor = 1.f;
  bool fused = false;
};

struct LoraBranch {
  Tensor down, up;  // uploaded; 2-D for Linear-held modules
  float factor = 1.f;
};

struct LoraSlotState {
  std::vector<LoraBranch> branches;
  Tensor fused_weight;  // undefined: the module's own weight
  bool scaled = true;
};

struct LoraState {
  std::vector<LoraSlotState> slots;  // by target index; empty slots have no branches and no fused weight
};

// Records the targets registered while it is alive (on this thread).
class LoraTargetRecorder {
 public:
  explicit LoraTargetRecorder(std::vector<LoraTarget>* targets);
  ~LoraTargetRecorder();
  LoraTargetRecorder(const LoraTargetRecorder&) = delete;
  LoraTargetRecorder& operator=(const LoraTargetRecorder&) = delete;

 private:
  std::vector<LoraTarget>* previous_;
};

// The slot of a newly bound module, or -1 when no recorder is active (networks without LoRA support).
int lora_register(LoraTarget target);

// Installs a state and the call's scale for the layers run on this thread while it is alive.
class LoraScope {
 public:
  LoraScope(const LoraState* state, float scale);
  ~LoraScope();
  LoraScope(const LoraScope&) = delete;
  LoraScope& operator=(const LoraScope&) = delete;

 private:
  const LoraState* previous_state_;
  float previous_scale_;
};

// The active state of a slot (nullptr when nothing applies to it) and the scale its branches use.
const LoraSlotState* lora_active(int slot, float* scale);

// y = x·Wᵀ + b (W the fused weight when there is one) + Σ scale·factor·up(down(x)), then `act`.
Tensor lora_linear(Backend& be, const Tensor& x, const Tensor& weight, const Tensor& bias, Activation act,
                   const LoraSlotState& s, float scale);
Tensor lora_conv2d(Backend& be, const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p,
                   const LoraSlotState& s, float scale);

// Validates every contribution against its target (E_WEIGHTS_MISMATCH naming the module), uploads
// the branches and computes fused weights (float32).
std::shared_ptr<const LoraState> build_lora_state(Backend& be, const std::vector<LoraTarget>& targets,
                                                  const std::vector<LoraContribution>& contributions);

}  // namespace pia::nn
