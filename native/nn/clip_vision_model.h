#pragma once
// transformers' CLIPVisionModelWithProjection (modeling_clip.py, v4.38), the IP-Adapter image
// encoder: patch embedding (conv, stride = patch size, no bias), class token, position embeddings,
// pre_layrnorm (sic, the HF name), the CLIP encoder without a mask, post_layernorm of the class
// token and visual_projection (no bias). Weights by their Hugging Face keys.
#include <memory>
#include <string>
#include <vector>

#include "../core/json.h"
#include "../ops/backend.h"
#include "clip_encoder.h"
#include "layers.h"
#include "weight_store.h"

namespace pia::nn {

struct CLIPVisionConfig : CLIPEncoderConfig {
  int64_t projection_dim = 512;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 32;

  // transformers' CLIPVisionConfig defaults (ViT-B/32).
  CLIPVisionConfig() : CLIPEncoderConfig("image encoder") {
    hidden_size = 768;
    intermediate_size = 3072;
    num_attention_heads = 12;
  }

  // config.json of a CLIPVisionModel(WithProjection), or of a whole CLIPModel (its vision_config
  // and projection_dim, as CLIPVisionConfig.from_pretrained reads it). Unsupported values are E_UNSUPPORTED.
  static CLIPVisionConfig from_json(const JsonValue& json);
  int64_t num_positions() const { return (image_size / patch_size) * (image_size / patch_size) + 1; }
};

struct CLIPVisionOutput {
  Tensor image_embeds;                // [B, projection_dim]
  Tensor last_hidden_state;           // [B, num_positions, hidden]
  std::vector<Tensor> hidden_states;  // pre_layrnorm output, then each layer's output (host float32)
};

class CLIPVisionModelWithProjection {
 public:
  CLIPVisionModelWithProjection(const CLIPVisionConfig& config, WeightStore& weights, std::shared_ptr<Backend> backend);

  // pixel_values [B, num_channels, image_size, image_size] (host float32).
  CLIPVisionOutput forward(const Tensor& pixel_values, bool output_hidden_states) const;
  const CLIPVisionConfig& config() const { return config_; }

 private:
  CLIPVisionConfig config_;
  std::shared_ptr<Backend> be_;
  Conv2d patch_embedding_;
  Tensor class_embedding_;  // [1, 1, hidden] float32 on the device
  Tensor position_embedding_;
  LayerNorm pre_layrnorm_, post_layernorm_;
  CLIPEncoder encoder_;
  Linear visual_projection_;
};

}  // namespace pia::nn
