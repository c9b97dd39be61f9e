#pragma once
// diffusers' UNetMotionModel built the way UNetMotionModel.from_unet2d(unet, motion_adapter) builds
// it (models/unets/unet_motion_model.py, v0.26.3): the 2-D UNet's config and weights, the
// MotionAdapter's motion modules, and PIA's conv_in (the adapter's conv_in_channels).
#include <memory>
#include <string>
#include <vector>

#include "../core/json.h"
#include "../ops/step_graphs.h"
#include "embeddings.h"
#include "ip_adapter.h"
#include "lora.h"
#include "unet_motion_blocks.h"

namespace pia::nn {

// The config UNetMotionModel.from_unet2d derives (every key UNetMotionModel.__init__ reads).
struct UNetMotionModelConfig {
  int64_t sample_size = 0;  // informational (0: null)
  int64_t in_channels = 4, out_channels = 4;
  std::vector<std::string> down_block_types, up_block_types;  // *Motion names
  std::vector<int64_t> block_out_channels;
  int layers_per_block = 2;
  int downsample_padding = 1;
  float mid_block_scale_factor = 1.f;
  std::string act_fn = "silu";
  int norm_num_groups = 32;
  float norm_eps = 1e-5f;
  int64_t cross_attention_dim = 1280;
  bool use_linear_projection = false;
  std::vector<int> num_attention_heads;  // per down block
  int64_t motion_max_seq_length = 32;
  int motion_num_attention_heads = 8;
  bool use_motion_mid_block = true;
  // From the adapter: PIA's conv_in input channels (0: the UNet's own conv_in).
  int64_t conv_in_channels = 0;
  int motion_layers_per_block = 2;
  int motion_mid_block_layers_per_block = 1;
  int motion_norm_num_groups = 32;

  // Both configs as parsed config.json objects. Throws E_UNSUPPORTED for what diffusers'
  // UNetMotionModel cannot represent.
  static UNetMotionModelConfig from_unet2d(const JsonValue& unet_config, const JsonValue& adapter_config);
  std::string to_json() const;
};

class UNetMotionModel {
 public:
  // Weights: the 2-D UNet's state dict and the adapter's; every key must be consumed (the
  // adapter's conv_in.bias and its first four conv_in input channels are not, as in diffusers).
  UNetMotionModel(std::shared_ptr<Backend> backend, const UNetMotionModelConfig& config, WeightStore& unet,
                  WeightStore& adapter);

  // sample [B, C, F, H, W], encoder_hidden_states [B, S, cross_attention_dim] (float32 host tensors)
  // -> [B, out_channels, F, H, W]. FreeU (enable_freeu's s1, s2, b1, b2) is a per-call argument so
  // that a loaded model is immutable and one forward never sees another caller's settings. When
  // `cancel` becomes true (from any thread) the call stops at the next layer with E_ABORTED.
  // `lora_scale`: cross_attention_kwargs['scale'] for the attached LoRA (with_lora).
  Tensor forward(const Tensor& sample, float timestep, const Tensor& encoder_hidden_states,
                 const FreeUParams& freeu = {}, Cancel cancel = nullptr, float lora_scale = 1.f) const;
  const UNetMotionModelConfig& config() const { return config_; }
  // The spatial cross-attention layers an IP-Adapter attaches to, in load order (ip_adapter.h).
  const std::vector<IpAttnSite>& ip_attention_sites() const { return ip_sites_; }

  // The Linear / Conv2d modules a LoRA may target (lora.h). `scaled` follows diffusers' forward:
  // only modules of the cross-attention down/mid/up blocks get cross_attention_kwargs['scale'] (their
  // resnets, samplers and Transformer2DModels); conv_in, time_embedding, conv_out, the plain
  // Down/UpBlockMotion and every motion module run their LoRA at scale 1.
  const std::vector<LoraTarget>& lora_targets() const { return lora_targets_; }
  // A copy sharing every weight, with these LoRA contributions in place of the current ones.
  std::shared_ptr<const UNetMotionModel> with_lora(const std::vector<LoraContribution>& contributions) const;

  // One forward recorded once its shapes are known and replayed afterwards (a CUDA graph:
  // ops/step_graphs.h), bitwise equal to running it op by op. On by default where the backend
  // can capture and PIA_CUDA_GRAPHS=1; a recorded step stops for `cancel` only before or after it.
  // Not while a forward of this model runs (tests and benchmarks switch it between calls).
  void set_step_capture(bool on);
  const StepGraphCache* step_graphs() const { return steps_.get(); }

 private:
  std::shared_ptr<Backend> be_;
  UNetMotionModelConfig config_;
  Conv2d conv_in_, conv_out_;
  Timesteps time_proj_;
  TimestepEmbedding time_embedding_;
  std::vector<DownBlockMotion> down_blocks_;
  UNetMidBlockMotion mid_block_;
  std::vector<UpBlockMotion> up_blocks_;
  GroupNorm conv_norm_out_;
  int num_upsamplers_ = 0;
  std::vector<IpAttnSite> ip_sites_;
  std::vector<LoraTarget> lora_targets_;
  std::shared_ptr<const LoraState> lora_;
  // Last: its recordings hold this model's weight addresses, so they go first.
  std::shared_ptr<StepGraphCache> steps_;
};

}  // namespace pia::nn
