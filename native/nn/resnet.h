#pragma once
// diffusers' ResnetBlock2D, Downsample2D and Upsample2D (models/resnet.py, downsampling.py,
// upsampling.py in v0.26.3), shared by the UNet and the VAE.
#include <string>

#include "layers.h"

namespace pia::nn {

// diffusers get_activation(): "swish"/"silu" and "gelu"; anything else is E_UNSUPPORTED.
Activation activation_from_name(const std::string& act_fn);

struct ResnetBlock2DConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;   // 0: same as in_channels
  int64_t temb_channels = 0;  // 0: no time_emb_proj (the VAE passes temb_channels=None)
  int groups = 32;
  int groups_out = 0;  // 0: same as groups
  float eps = 1e-6f;
  std::string non_linearity = "swish";
  std::string time_embedding_norm = "default";  // "scale_shift" is E_UNSUPPORTED
  bool skip_time_act = false;
  float output_scale_factor = 1.f;
  int use_in_shortcut = -1;  // -1: diffusers' default (in_channels != conv_2d_out_channels)
  bool conv_shortcut_bias = true;
  int64_t conv_2d_out_channels = 0;  // 0: out_channels
};

struct ResnetBlock2D {
  GroupNorm norm1, norm2;
  Conv2d conv1, conv2, conv_shortcut;
  Linear time_emb_proj;
  bool has_time_emb_proj = false, has_conv_shortcut = false, skip_time_act = false;
  Activation act = Activation::SiLU;
  float output_scale_factor = 1.f;
  int64_t out_channels = 0;

  void load(WeightStore& w, Backend& be, const std::string& prefix, const ResnetBlock2DConfig& cfg);
  // x [N, Cin, H, W]; temb [N, temb_channels] (undefined when the block has no time_emb_proj).
  Tensor operator()(Backend& be, const Tensor& x, const Tensor& temb = {}) const;
};

// Downsample2D(use_conv=True): a stride-2 conv; padding 0 means diffusers' asymmetric (0, 1, 0, 1)
// F.pad before an unpadded conv (the VAE encoder's "op" downsamplers).
struct Downsample2D {
  Conv2d conv;
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t channels, int64_t out_channels, int padding,
            int kernel_size = 3);
  Tensor operator()(Backend& be, const Tensor& x) const { return conv(be, x); }
};

// Upsample2D(use_conv=True): nearest ×2 (or to output_size), then a 3×3 conv (key ".conv").
struct Upsample2D {
  Conv2d conv;
  void load(WeightStore& w, Backend& be, const std::string& prefix, int64_t channels, int64_t out_channels,
            int kernel_size = 3, int padding = 1);
  // out_h/out_w: diffusers' `output_size` (0: scale_factor 2); 2H-1 / 2W-1 are supported too.
  Tensor operator()(Backend& be, const Tensor& x, int64_t out_h = 0, int64_t out_w = 0) const;
};

}  // namespace pia::nn
