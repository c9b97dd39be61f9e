#pragma once
// The down/mid/up blocks of diffusers' UNetMotionModel (models/unets/unet_3d_blocks.py, v0.26.3):
// CrossAttnDownBlockMotion / DownBlockMotion, UNetMidBlockCrossAttnMotion, UNetMidBlock2DCrossAttn
// (PIA's adapter has no mid-block motion module), CrossAttnUpBlockMotion / UpBlockMotion with FreeU.
// A block "with cross-attention" is the CrossAttn* variant: a Transformer2DModel after each resnet.
#include <atomic>
#include <string>
#include <vector>

#include "resnet.h"
#include "transformer_2d.h"
#include "transformer_temporal.h"

namespace pia::nn {

// The arguments UNetMotionModel passes to get_down_block / get_up_block / the mid blocks.
struct MotionBlockConfig {
  bool has_cross_attention = false;
  int num_layers = 2;
  int64_t in_channels = 0, out_channels = 0, prev_output_channel = 0, temb_channels = 0;
  bool add_resample = false;  // add_downsample / add_upsample
  float resnet_eps = 1e-5f;
  std::string resnet_act_fn = "silu";
  int resnet_groups = 32;
  float output_scale_factor = 1.f;
  int64_t cross_attention_dim = 0;
  int num_attention_heads = 8;
  bool use_linear_projection = false;
  int downsample_padding = 1;
  int temporal_num_attention_heads = 8;
  int temporal_norm_num_groups = 32;
  int64_t temporal_max_seq_length = 32;
  int resolution_idx = -1;
};

// diffusers enable_freeu(s1, s2, b1, b2); "enabled" is the truthiness test the up blocks use
// (`s1 and s2 and b1 and b2`), so a zero anywhere disables FreeU altogether.
// A running forward stops at the next layer with E_ABORTED once this flag becomes true.
using Cancel = const std::atomic<bool>*;
void check_cancel(Cancel cancel);

struct FreeUParams {
  float s1 = 0, s2 = 0, b1 = 0, b2 = 0;
  bool enabled() const { return s1 != 0 && s2 != 0 && b1 != 0 && b2 != 0; }
};

// FreeU as one forward runs it: the parameters, and the backbone factors already on the device,
// one [1, C, 1, 1] tensor (b for the first C/2 channels, 1 for the rest) per up block of
// resolution_idx 0 / 1 and hidden channel count C. They are made on the host and copied in with
// the step's other inputs: nothing inside a captured step may copy from the host.
struct FreeUScale {
  int resolution_idx = 0;
  int64_t channels = 0;
  Tensor scale;
};
struct FreeUCall {
  FreeUParams params;
  std::vector<FreeUScale> scales;
  const Tensor& scale(int resolution_idx, int64_t channels) const;
};
// The host tensor FreeUScale::scale holds for `channels` and factor b.
Tensor freeu_scale_host(int64_t channels, float b);

// CrossAttnDownBlockMotion (has_cross_attention) and DownBlockMotion.
struct DownBlockMotion {
  bool has_cross_attention = false;
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
  std::vector<TransformerTemporalModel> motion_modules;
  bool has_downsampler = false;
  Downsample2D downsampler;

  void load(WeightStore& unet, WeightStore& motion, Backend& be, const std::string& prefix, const MotionBlockConfig& cfg);
  // Appends each layer's output (and the downsampled one) to `res_samples`.
  Tensor operator()(Backend& be, const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                    int64_t num_frames, std::vector<Tensor>& res_samples, Cancel cancel = nullptr) const;
};

// CrossAttnUpBlockMotion (has_cross_attention) and UpBlockMotion.
struct UpBlockMotion {
  bool has_cross_attention = false;
  int resolution_idx = -1;
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
  std::vector<TransformerTemporalModel> motion_modules;
  bool has_upsampler = false;
  Upsample2D upsampler;
  std::vector<int64_t> hidden_channels;  // per layer: the channels of the hidden state FreeU scales

  void load(WeightStore& unet, WeightStore& motion, Backend& be, const std::string& prefix, const MotionBlockConfig& cfg);
  // Whether FreeU acts on this block (diffusers apply_freeu: resolution_idx 0 and 1 only).
  bool freeu_applies() const { return resolution_idx == 0 || resolution_idx == 1; }
  // Consumes resnets.size() skip tensors from the back of `res_samples`. upsample_h/w: diffusers'
  // upsample_size (0: ×2).
  Tensor operator()(Backend& be, const Tensor& x, std::vector<Tensor>& res_samples, const Tensor& temb,
                    const Tensor& encoder_hidden_states, int64_t num_frames, const FreeUCall& freeu,
                    int64_t upsample_h = 0, int64_t upsample_w = 0, Cancel cancel = nullptr) const;
};

// UNetMidBlockCrossAttnMotion (has_motion_modules) and UNetMidBlock2DCrossAttn: resnet, then
// per layer attention (-> motion module) -> resnet.
struct UNetMidBlockMotion {
  bool has_motion_modules = false;
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
  std::vector<TransformerTemporalModel> motion_modules;

  void load(WeightStore& unet, WeightStore& motion, Backend& be, const std::string& prefix, const MotionBlockConfig& cfg,
            bool with_motion_modules);
  Tensor operator()(Backend& be, const Tensor& x, const Tensor& temb, const Tensor& encoder_hidden_states,
                    int64_t num_frames, Cancel cancel = nullptr) const;
};

}  // namespace pia::nn
