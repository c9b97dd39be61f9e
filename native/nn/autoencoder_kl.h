#pragma once
// diffusers' AutoencoderKL (models/autoencoders/autoencoder_kl.py and vae.py, v0.26.3): Encoder
// (DownEncoderBlock2D ×N, UNetMidBlock2D with attention) + quant_conv, post_quant_conv + Decoder
// (UNetMidBlock2D, UpDecoderBlock2D ×N), with diffusers' slicing and tiling.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/json.h"
#include "../ops/backend.h"
#include "attention_processor.h"
#include "layers.h"
#include "resnet.h"
#include "weight_store.h"

namespace pia::nn {

struct AutoencoderKLConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<std::string> down_block_types{"DownEncoderBlock2D"};
  std::vector<std::string> up_block_types{"UpDecoderBlock2D"};
  std::vector<int64_t> block_out_channels{64};
  int64_t layers_per_block = 1;
  std::string act_fn = "silu";
  int64_t latent_channels = 4;
  int norm_num_groups = 32;
  int64_t sample_size = 32;
  bool sample_size_is_list = false;  // [h, w] in some configs: diffusers' tiling cannot use it
  double scaling_factor = 0.18215;
  bool force_upcast = true;
  // Keys of later diffusers versions with the same meaning there (defaults = 0.26.3's behaviour).
  bool mid_block_add_attention = true;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;

  static AutoencoderKLConfig from_json(const JsonValue& json);
  // 2^(len(block_out_channels) - 1): image pixels per latent pixel.
  int64_t scale_factor() const { return int64_t(1) << (block_out_channels.size() - 1); }
};

// DiagonalGaussianDistribution(moments): mean, logvar clamped to [-30, 20], std = exp(0.5·logvar).
struct LatentDistribution {
  Tensor mean, logvar, std;  // host float32 [B, latent_channels, h, w]
};

class AutoencoderKL {
 public:
  AutoencoderKL(const AutoencoderKLConfig& config, WeightStore& weights, std::shared_ptr<Backend> backend);

  // x: host float32 [B, in_channels, H, W] in [-1, 1]. `slicing`/`tiling` as enable_slicing() /
  // enable_tiling() (tiling applies only when the input exceeds the tile size, as in diffusers).
  // When `cancel` becomes true (from any thread) the call stops at the next block with E_ABORTED.
  LatentDistribution encode(const Tensor& x, bool slicing, bool tiling, const std::atomic<bool>* cancel = nullptr) const;
  // z: host float32 [B, latent_channels, h, w] (no scaling factor applied) -> [B, out_channels, H, W].
  Tensor decode(const Tensor& z, bool slicing, bool tiling, const std::atomic<bool>* cancel = nullptr) const;

  const AutoencoderKLConfig& config() const { return config_; }
  int64_t tile_sample_min_size() const { return config_.sample_size; }
  int64_t tile_latent_min_size() const;

 private:
  struct MidBlock {  // UNetMidBlock2D(num_layers=1): resnet, attention, resnet
    ResnetBlock2D resnet0, resnet1;
    Attention attention;
    bool has_attention = true;
    void load(WeightStore& w, Backend& be, const std::string& prefix, const AutoencoderKLConfig& c, int64_t channels);
    Tensor operator()(Backend& be, const Tensor& x) const;
  };
  struct Block {  // DownEncoderBlock2D / UpDecoderBlock2D
    std::vector<ResnetBlock2D> resnets;
    bool has_downsample = false, has_upsample = false;
    Downsample2D downsample;
    Upsample2D upsample;
  };

  using Cancel = const std::atomic<bool>*;
  Tensor encoder(const Tensor& x, Cancel cancel) const;  // device tensors in and out
  Tensor decoder(const Tensor& z, Cancel cancel) const;
  Tensor encode_moments(const Tensor& x_host, bool slicing, bool tiling, Cancel cancel) const;  // device moments
  Tensor decode_one(const Tensor& z_host, bool tiling, Cancel cancel) const;                    // diffusers' _decode
  Tensor tiled_encode(const Tensor& x_host, Cancel cancel) const;
  Tensor tiled_decode(const Tensor& z_host, Cancel cancel) const;
  Tensor blend_v(const Tensor& a, const Tensor& b, int64_t extent) const;
  Tensor blend_h(const Tensor& a, const Tensor& b, int64_t extent) const;
  Tensor merge_tiles(std::vector<std::vector<Tensor>>& rows, int64_t blend_extent, int64_t row_limit) const;

  AutoencoderKLConfig config_;
  std::shared_ptr<Backend> be_;
  // Encoder
  Conv2d enc_conv_in_, enc_conv_out_;
  std::vector<Block> down_blocks_;
  MidBlock enc_mid_;
  GroupNorm enc_norm_out_;
  Conv2d quant_conv_, post_quant_conv_;
  // Decoder
  Conv2d dec_conv_in_, dec_conv_out_;
  MidBlock dec_mid_;
  std::vector<Block> up_blocks_;
  GroupNorm dec_norm_out_;
};

}  // namespace pia::nn
